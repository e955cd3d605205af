/**
 * Sony's remote protocol (SDIO), as far as tethering needs it: the connect sequence that puts the body
 * in remote mode, the objects-in-memory property that says a shot waits for the host, and the shutter
 * buttons pressed through SetControlDeviceB. Wire facts from libgphoto2's camlibs/ptp2 (ptp.h, ptp.c,
 * ptp-pack.c, library.c); the data layouts are decoded and built here (pure, no I/O) and the two
 * sequences run over a PtpSession.
 *
 * A Sony body speaks this only with its USB connection set to "PC Remote": then a capture, fired from
 * here or with the body's own shutter button, goes to the camera's memory and waits there for the host
 * at one virtual handle, one object after another (RAW, then JPEG). A body in mass-storage or MTP mode
 * offers no SDIOConnect; it is then tethered as a camera without events (its card's handles are compared)
 * and cannot be fired.
 */
import { PtpReader, PtpWriter, protocolError } from './codec.js';
import type { PtpSession } from './session.js';

export const SonyOperation = {
  SdioConnect: 0x9201,
  GetExtDeviceInfo: 0x9202,
  SetExtDevicePropValue: 0x9205,
  /** SetControlDeviceB: a button "pressed" (2) or "released" (1), a u16 in the data phase. */
  ControlDevice: 0x9207,
  GetAllDevicePropData: 0x9209,
} as const;

export const SonyEventCode = {
  ObjectAdded: 0xc201,
  ObjectRemoved: 0xc202,
  DevicePropChanged: 0xc203,
} as const;

export const SonyProperty = {
  /** 0 or below 0x8000 while nothing is ready; 0x8000 + n once n objects wait at SONY_MEMORY_OBJECT_HANDLE. */
  ObjectInMemory: 0xd215,
  FocusFound: 0xd213,
  PriorityMode: 0xd25a,
  ShutterHalfRelease: 0xd2c1,
  ShutterRelease: 0xd2c2,
} as const;

/** Where a Sony body serves the oldest shot in its memory (libgphoto2: 0xffffc001). */
export const SONY_MEMORY_OBJECT_HANDLE = 0xffffc001;

/** ObjectInMemory's "ready" bit: libgphoto2 notes that reading the object before it is set crashes the firmware. */
const READY = 0x8000;

/** The extension protocol version asked for (libgphoto2 calls 0x12C "3.00", 0xC8 "2.00"). */
export const SONY_PROTOCOL_VERSION = 0x12c;

const DataType = { INT8: 0x0001, UINT8: 0x0002, INT16: 0x0003, UINT16: 0x0004, INT32: 0x0005, UINT32: 0x0006 } as const;
const SIZE_OF: Readonly<Record<number, number>> = { 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4 };

/** Shots waiting in memory according to ObjectInMemory (0 while the value has no ready bit). */
export function objectsInMemory(value: number): number {
  return value > READY ? value - READY : 0;
}

export function objectInMemoryValue(count: number): number {
  return count > 0 ? READY + count : 0;
}

/** The op, event and property codes GetExtDeviceInfo lists (libgphoto2 sorts them by `code & 0x7000`). */
export interface SonyExtDeviceInfo {
  version: number;
  /** Properties, then controls: as on the wire, two u16 arrays. */
  properties: number[];
  controls: number[];
}

export function decodeSonyExtDeviceInfo(bytes: Uint8Array): SonyExtDeviceInfo | undefined {
  if (bytes.byteLength === 0) return undefined;
  const r = new PtpReader(bytes, 'Sony GetExtDeviceInfo');
  const version = r.u16('version');
  const array = (what: string): number[] => {
    if (r.remaining === 0) return [];
    const n = r.u32(`${what} count`);
    if (n * 2 > r.remaining) throw protocolError('Sony GetExtDeviceInfo', `${what} declares ${n} codes but ${r.remaining} bytes follow`, { expected: n * 2, actual: r.remaining });
    return Array.from({ length: n }, (_, i) => r.u16(`${what} ${i}`));
  };
  const properties = array('properties');
  const controls = array('controls');
  return { version, properties, controls };
}

export function encodeSonyExtDeviceInfo(info: SonyExtDeviceInfo): Buffer {
  const w = new PtpWriter().u16(info.version);
  for (const list of [info.properties, info.controls]) {
    w.u32(list.length);
    for (const c of list) w.u16(c);
  }
  return w.toBuffer();
}

/** One property of GetAllDevicePropData, reduced to what the host reads: an integer's current value. */
export interface SonyPropValue {
  code: number;
  dataType: number;
  value: number;
}

/**
 * Decodes GetAllDevicePropData: `u32 count, u32 0`, then per property `u16 code, u16 type, u8 get/set,
 * u8 enabled, default, current, u8 form flag` and the form (1 range: three values; 2 enumeration: u16
 * count and values; some bodies send a second u16-counted list, which is skipped the same way). Integer
 * properties only: decoding stops at the first other type, since its length cannot be known here, and
 * returns what came before it.
 */
export function decodeSonyProps(bytes: Uint8Array): SonyPropValue[] {
  const r = new PtpReader(bytes, 'Sony GetAllDevicePropData');
  const out: SonyPropValue[] = [];
  if (r.remaining < 8) return out;
  r.skip(8, 'header');
  while (r.remaining >= 6) {
    const code = r.u16('property code');
    const dataType = r.u16('data type');
    const size = SIZE_OF[dataType];
    if (size === undefined) break;
    r.skip(2, 'get/set and enabled');
    const read = (what: string): number => (size === 1 ? r.u8(what) : size === 2 ? r.u16(what) : r.u32(what));
    read('default value');
    const value = read('current value');
    out.push({ code, dataType, value });
    if (r.remaining === 0) break;
    const form = r.u8('form flag');
    if (form === 1) for (let i = 0; i < 3; i++) read('range');
    else if (form === 2) {
      const n = r.u16('enumeration count');
      for (let i = 0; i < n; i++) read('enumeration value');
    }
  }
  return out;
}

export function encodeSonyProps(props: readonly SonyPropValue[]): Buffer {
  const w = new PtpWriter().u32(props.length).u32(0);
  for (const p of props) {
    const size = SIZE_OF[p.dataType] ?? 2;
    const put = (v: number): void => {
      if (size === 1) w.u8(v);
      else if (size === 2) w.u16(v);
      else w.u32(v);
    };
    w.u16(p.code).u16(p.dataType).u8(0).u8(1);
    put(0);
    put(p.value);
    w.u8(0);
  }
  return w.toBuffer();
}

export const SonyDataType = DataType;

/**
 * Puts the body in remote mode, as libgphoto2 does: SDIOConnect phases 1 and 2, GetExtDeviceInfo until
 * it lists something (a body still waking answers empty), phase 3, then the priority mode "application"
 * so that the host's settings win over the dials. Returns the extension's code lists.
 */
export async function sonyConnect(session: PtpSession, signal?: AbortSignal): Promise<SonyExtDeviceInfo | undefined> {
  for (const phase of [1, 2]) await session.runDataIn({ code: SonyOperation.SdioConnect, params: [phase, 0, 0], signal });
  let info: SonyExtDeviceInfo | undefined;
  for (let tries = 0; tries < 20 && !info; tries++) {
    const { data } = await session.runDataIn({ code: SonyOperation.GetExtDeviceInfo, params: [SONY_PROTOCOL_VERSION, 1], signal });
    info = decodeSonyExtDeviceInfo(data);
  }
  await session.runDataIn({ code: SonyOperation.SdioConnect, params: [3, 0, 0], signal });
  await session.runDataOut({ code: SonyOperation.SetExtDevicePropValue, params: [SonyProperty.PriorityMode], signal }, Uint8Array.of(1));
  return info;
}

/** ObjectInMemory's current value from one GetAllDevicePropData (0 when the body does not list it). */
export async function sonyObjectInMemory(session: PtpSession, signal?: AbortSignal, timeoutMs?: number): Promise<number> {
  const { data } = await session.runDataIn({ code: SonyOperation.GetAllDevicePropData, signal, ...(timeoutMs === undefined ? {} : { timeoutMs }) }, 1024 * 1024);
  return decodeSonyProps(data).find((p) => p.code === SonyProperty.ObjectInMemory)?.value ?? 0;
}

const PRESSED = 2;
const RELEASED = 1;

/** Fires the shutter: half-press, full press, then both released, each a SetControlDeviceB with a u16. */
export async function sonyRelease(session: PtpSession, signal?: AbortSignal): Promise<void> {
  const press = (button: number, state: number): Promise<unknown> =>
    session.runDataOut({ code: SonyOperation.ControlDevice, params: [button], signal }, new PtpWriter().u16(state).toBuffer());
  await press(SonyProperty.ShutterHalfRelease, PRESSED);
  await press(SonyProperty.ShutterRelease, PRESSED);
  await press(SonyProperty.ShutterRelease, RELEASED);
  await press(SonyProperty.ShutterHalfRelease, RELEASED);
}
