/**
 * How the simulated camera behaves on the wire for one maker, as far as a PTP initiator can tell: what
 * DeviceInfo says, which vendor operations exist, and how new objects are announced (interrupt events,
 * a Canon EOS or Nikon event queue the initiator polls, a Sony property the initiator reads, or nothing
 * at all, as on Fujifilm bodies). The
 * device model (./simulator.ts) says what happened; the personality's outlet turns that into what that
 * maker's camera would send. Wire facts come from libgphoto2's camlibs/ptp2 (ptp.h, library.c).
 */
import { EventCode, OperationCode, VendorExtension } from '../ptp/codes.js';
import type { DeviceInfo } from '../ptp/datasets.js';
import { CanonEosEventCode, NIKON_SDRAM_OBJECT_HANDLE, NikonEventCode, encodeCanonEosEvents, encodeNikonEvents, type CanonEosEvent } from '../ptp/vendor-events-decode.js';
import { CanonEosOperation } from '../ptp/vendor-events.js';
import { SONY_MEMORY_OBJECT_HANDLE, SonyEventCode, SonyOperation, SonyProperty } from '../ptp/sony.js';

export const SIMULATOR_VENDORS = ['generic', 'canon', 'nikon', 'sony', 'fuji'] as const;
export type SimulatorVendor = (typeof SIMULATOR_VENDORS)[number];

/** Where a captured image goes: onto the card, or only into the camera's memory for the host to fetch at once. */
export type CaptureTarget = 'card' | 'host';

export const NikonOperation = {
  InitiateCaptureRecInSdram: 0x90c0,
  DelImageSdram: 0x90c3,
  GetEvent: 0x90c7,
  DeviceReady: 0x90c8,
  AfCaptureSdram: 0x90cb,
} as const;

export const CanonEosSimOperation = {
  GetStorageIds: 0x9101,
  GetStorageInfo: 0x9102,
  RemoteRelease: 0x910f,
} as const;

const FUJI_CURRENT_STATE = 0xd212;

/** EOS properties the first GetEvent reports as a state dump (battery level, shots left). */
const CANON_STATE_PROPERTIES = [0xd111, 0xd11b];

/** What happened on the simulated body, as the device model reports it to each connected initiator. */
export type BodyEvent =
  | { kind: 'object-added'; handle: number; storageId: number; format: number; size: number; parent: number; filename: string }
  | { kind: 'object-removed'; handle: number }
  | { kind: 'object-changed'; handle: number }
  /** A captured image held in camera memory only (capture target host). */
  | { kind: 'in-memory'; handle: number; format: number; size: number; filename: string }
  /** How many captures the camera's memory holds now (exposed and waiting). */
  | { kind: 'memory-changed'; count: number }
  | { kind: 'capture-complete'; transactionId: number };

/** One initiator's view of the body's events. */
export interface EventOutlet {
  announce(e: BodyEvent): void;
  /** The polled queue's content as the vendor's GetEvent data, emptied; undefined for bodies without one. */
  drain?(): Uint8Array;
}

export interface Personality {
  readonly vendor: SimulatorVendor;
  /** The DeviceInfo this maker's camera reports, from the generic one. */
  deviceInfo(base: DeviceInfo, canCapture: boolean): DeviceInfo;
  /** Events for one initiator; `send` writes an interrupt event on its event connection. */
  outlet(send: (code: number, transactionId: number, params: number[]) => void): EventOutlet;
  /** The vendor operation that fires the shutter, if this maker has one of its own. */
  readonly captureOperations: readonly number[];
  /** Where a vendor capture operation puts the image (Nikon's SDRAM operations always go to memory). */
  captureTargetOf(code: number, configured: CaptureTarget): CaptureTarget;
  /** Handle for the next in-memory object (Nikon and Sony reuse one virtual handle; EOS numbers them). */
  readonly memoryHandle: ((n: number) => number) | undefined;
  /**
   * Sony in PC Remote mode: the card is not offered to the host, every shot (fired by the host or with
   * the body's own button) goes to memory, and an object leaves memory once it was read to its end.
   */
  readonly pcRemote?: boolean;
}

/** Standard interrupt events: ObjectAdded, ObjectRemoved, ObjectInfoChanged, CaptureComplete. */
function interruptOutlet(send: (code: number, transactionId: number, params: number[]) => void, objectEvents: boolean): EventOutlet {
  return {
    announce(e) {
      switch (e.kind) {
        case 'object-added':
        case 'in-memory':
          if (objectEvents) send(EventCode.ObjectAdded, 0xffffffff, [e.handle]);
          break;
        case 'object-removed':
          if (objectEvents) send(EventCode.ObjectRemoved, 0xffffffff, [e.handle]);
          break;
        case 'object-changed':
          if (objectEvents) send(EventCode.ObjectInfoChanged, 0xffffffff, [e.handle]);
          break;
        case 'capture-complete':
          if (objectEvents) send(EventCode.CaptureComplete, e.transactionId, []);
          break;
      }
    },
  };
}

const STANDARD_EVENTS = [EventCode.ObjectAdded, EventCode.ObjectRemoved, EventCode.ObjectInfoChanged, EventCode.CaptureComplete];

const generic: Personality = {
  vendor: 'generic',
  deviceInfo: (base) => ({ ...base, eventsSupported: STANDARD_EVENTS }),
  outlet: (send) => interruptOutlet(send, true),
  captureOperations: [],
  captureTargetOf: (_code, configured) => configured,
  memoryHandle: (n) => 0x7f000000 + n,
};

/** Canon EOS: nothing on the event connection; everything waits in a queue read with GetEvent (0x9116). */
const canon: Personality = {
  vendor: 'canon',
  deviceInfo: (base, canCapture) => ({
    ...base,
    vendorExtensionId: VendorExtension.Canon,
    vendorExtensionDesc: '',
    manufacturer: 'Canon Inc.',
    model: 'Canon EOS Shuttle Simulator',
    operationsSupported: [
      ...base.operationsSupported,
      CanonEosSimOperation.GetStorageIds,
      CanonEosSimOperation.GetStorageInfo,
      CanonEosOperation.SetRemoteMode,
      CanonEosOperation.SetEventMode,
      CanonEosOperation.GetEvent,
      CanonEosOperation.TransferComplete,
      CanonEosOperation.KeepDeviceOn,
      ...(canCapture ? [CanonEosSimOperation.RemoteRelease] : []),
    ],
    eventsSupported: [],
  }),
  outlet: () => {
    // The first GetEvent after the initiator connects dumps the camera's state, as EOS bodies do.
    const queue: CanonEosEvent[] = CANON_STATE_PROPERTIES.map((property) => ({ kind: 'prop-changed', code: CanonEosEventCode.PropValueChanged, property }));
    return {
      announce(e) {
        switch (e.kind) {
          case 'object-added':
            queue.push({ ...e, kind: 'object-added', code: CanonEosEventCode.ObjectAddedEx });
            break;
          case 'in-memory':
            queue.push({ kind: 'object-transfer', code: CanonEosEventCode.RequestObjectTransfer, handle: e.handle, format: e.format, size: e.size, filename: e.filename });
            break;
          case 'object-removed':
            queue.push({ kind: 'other', code: CanonEosEventCode.ObjectRemoved, length: 12 });
            break;
          default:
            break;
        }
      },
      drain: () => encodeCanonEosEvents(queue.splice(0)),
    };
  },
  captureOperations: [CanonEosSimOperation.RemoteRelease],
  captureTargetOf: (_code, configured) => configured,
  memoryHandle: (n) => 0x90000000 + n,
};

/** Nikon: events wait in a queue read with CheckEvent (0x90C7); SDRAM captures use one virtual handle. */
const nikon: Personality = {
  vendor: 'nikon',
  deviceInfo: (base, canCapture) => ({
    ...base,
    vendorExtensionId: VendorExtension.Nikon,
    vendorExtensionDesc: 'microsoft.com: 1.0',
    manufacturer: 'Nikon Corporation',
    model: 'Z Shuttle Simulator',
    operationsSupported: [
      ...base.operationsSupported,
      NikonOperation.GetEvent,
      NikonOperation.DeviceReady,
      NikonOperation.DelImageSdram,
      ...(canCapture ? [NikonOperation.InitiateCaptureRecInSdram, NikonOperation.AfCaptureSdram] : []),
    ],
    eventsSupported: [...STANDARD_EVENTS, NikonEventCode.ObjectAddedInSdram, NikonEventCode.CaptureCompleteRecInSdram],
  }),
  outlet: () => {
    const queue: Array<{ code: number; param: number }> = [];
    return {
      announce(e) {
        switch (e.kind) {
          case 'object-added':
            queue.push({ code: EventCode.ObjectAdded, param: e.handle });
            break;
          case 'in-memory':
            // Nikon bodies report the SDRAM object with handle 0; it is then read as the virtual handle.
            queue.push({ code: NikonEventCode.ObjectAddedInSdram, param: e.handle === NIKON_SDRAM_OBJECT_HANDLE ? 0 : e.handle });
            break;
          case 'object-removed':
            queue.push({ code: EventCode.ObjectRemoved, param: e.handle });
            break;
          case 'object-changed':
            queue.push({ code: EventCode.ObjectInfoChanged, param: e.handle });
            break;
          case 'capture-complete':
            queue.push({ code: NikonEventCode.CaptureCompleteRecInSdram, param: 0 });
            break;
        }
      },
      drain: () => encodeNikonEvents(queue.splice(0)),
    };
  },
  captureOperations: [NikonOperation.InitiateCaptureRecInSdram, NikonOperation.AfCaptureSdram],
  captureTargetOf: (code, configured) => (code === NikonOperation.InitiateCaptureRecInSdram || code === NikonOperation.AfCaptureSdram ? 'host' : configured),
  memoryHandle: () => NIKON_SDRAM_OBJECT_HANDLE,
};

/**
 * Sony in PC Remote mode: the SDIO operations, shots counted by the ObjectInMemory property (read with
 * GetAllDevicePropData; the body signals a change with its DevicePropChanged 0xC203) and fetched one after
 * another at one virtual handle, and the shutter fired through SetControlDeviceB.
 */
const sony: Personality = {
  vendor: 'sony',
  deviceInfo: (base, canCapture) => ({
    ...base,
    // Sony's own extension id, as its bodies report on USB (some report MTP with this manufacturer instead).
    vendorExtensionId: VendorExtension.Sony,
    vendorExtensionDesc: 'sony.net: 1.0',
    manufacturer: 'Sony Corporation',
    model: 'ILCE-Shuttle Simulator',
    operationsSupported: [
      ...base.operationsSupported.filter((code) => code !== OperationCode.InitiateCapture),
      SonyOperation.SdioConnect,
      SonyOperation.GetExtDeviceInfo,
      SonyOperation.SetExtDevicePropValue,
      SonyOperation.GetAllDevicePropData,
      ...(canCapture ? [SonyOperation.ControlDevice] : []),
    ],
    eventsSupported: [],
  }),
  outlet: (send) => ({
    announce(e) {
      if (e.kind === 'in-memory') send(SonyEventCode.ObjectAdded, 0, [e.handle]);
      else if (e.kind === 'memory-changed') send(SonyEventCode.DevicePropChanged, 0, [SonyProperty.ObjectInMemory]);
    },
  }),
  captureOperations: [SonyOperation.ControlDevice],
  captureTargetOf: () => 'host',
  memoryHandle: () => SONY_MEMORY_OBJECT_HANDLE,
  pcRemote: true,
};

/** Fujifilm: no object events at all; an initiator finds new shots only by listing the handles again. */
const fuji: Personality = {
  vendor: 'fuji',
  deviceInfo: (base) => ({
    ...base,
    vendorExtensionId: VendorExtension.Fuji,
    vendorExtensionDesc: 'fujifilm.co.jp: 1.0;',
    manufacturer: 'FUJIFILM',
    model: 'X-Shuttle Simulator',
    eventsSupported: [],
    // Fujifilm's "current state" property: what libgphoto2 takes as the sign of a body to diff handles on.
    devicePropertiesSupported: [FUJI_CURRENT_STATE],
  }),
  outlet: (send) => interruptOutlet(send, false),
  captureOperations: [],
  captureTargetOf: () => 'card',
  memoryHandle: undefined,
};

const PERSONALITIES: Readonly<Record<SimulatorVendor, Personality>> = { generic, canon, nikon, sony, fuji };

export function personalityOf(vendor: SimulatorVendor): Personality {
  return PERSONALITIES[vendor];
}
