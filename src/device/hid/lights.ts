/**
 * USB status lights: what each station state looks like, and per light the exact reports that show it.
 * Drivers are pure (state in, report bytes out), so their bytes are unit-tested and the StatusLight that
 * writes them is the only part that touches a device.
 *
 * Byte layouts, from the makers' documents and public implementations (facts only):
 * - blink(1) (ThingM): 8-byte feature reports with report ID 1 (sent in a 9-byte buffer): `c` fade to
 *   RGB in 10 ms ticks, `n` set now, `P` write a pattern line, `D` "server down" tickle. When the tickle
 *   is not renewed in time the light plays its pattern memory; every line of it is written black first,
 *   so a Shuttle that died leaves the light dark, not showing its last state.
 * - Luxafor Flag: 8-byte output report (no report IDs): 0x01 = static colour, LED 0xFF = all. It keeps
 *   its last colour forever.
 * - Kuando Busylight (Alpha/Omega): 64-byte output report, seven 8-byte steps (opcode 0x1 jump with
 *   repeat, red, green, blue as PWM 0–100, on and off time in 0.1 s, audio byte; opcode 0x8 keep-alive
 *   with a timeout in seconds), then sensitivity, timeout, trigger, three 0xFF pad bytes and a 16-bit
 *   big-endian sum of bytes 0–61. Without a keep-alive the light goes dark by itself.
 * - Embrava Blynclight: 9-byte output report: 0x00, red, blue, green (that order), a control byte (bit 0
 *   off, bit 1 dim, bit 2 flash, bits 3–5 flash speed 1/2/4), two sound bytes, then 0xFF 0x22. It keeps
 *   its last colour forever.
 */
import type { LightDriverName } from '../../hid-vocabulary.js';
import type { HidReport } from './reports.js';

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

/** What a light shows: a colour, steady or blinking about once a second. */
export interface LightSignal {
  color: Rgb;
  blink: boolean;
}

export const STATION_STATES = ['idle', 'ingesting', 'verifying', 'uploading', 'safe-to-pull', 'attention'] as const;
export type StationState = (typeof STATION_STATES)[number];

/**
 * The one mapping of station state to light. Busy states are blue (do not pull), safe to pull is steady
 * green, attention blinks red: a blink tells it from green for colour-blind crews too.
 */
export const STATE_SIGNALS: Readonly<Record<StationState, LightSignal>> = Object.freeze({
  idle: { color: { r: 40, g: 40, b: 40 }, blink: false },
  ingesting: { color: { r: 0, g: 0, b: 255 }, blink: false },
  verifying: { color: { r: 0, g: 0, b: 255 }, blink: true },
  uploading: { color: { r: 160, g: 0, b: 255 }, blink: false },
  'safe-to-pull': { color: { r: 0, g: 255, b: 0 }, blink: false },
  attention: { color: { r: 255, g: 0, b: 0 }, blink: true },
});

export const BLACK: Rgb = Object.freeze({ r: 0, g: 0, b: 0 });

export interface UsbId {
  vendorId: number;
  productId: number;
}

export interface LightDriver {
  readonly name: LightDriverName;
  readonly label: string;
  readonly ids: readonly UsbId[];
  /** How long the light stays lit without a rewrite; undefined for a light that keeps its last colour until told otherwise. */
  readonly timeoutMs: number | undefined;
  /** The light blinks by itself; otherwise the StatusLight alternates lit and dark. */
  readonly blinksItself: boolean;
  /** Written once after opening. */
  setup(): HidReport[];
  /** Shows `signal` (dark when `lit` is false, for a blink the host times) and arms the light's own timeout. */
  show(signal: LightSignal, lit: boolean): HidReport[];
  /** Written periodically while the signal stays: renews the timeout, or rewrites a light that has none. */
  keepAlive(signal: LightSignal, lit: boolean): HidReport[];
  /** Dark, timeouts disarmed: written when Shuttle closes the light. */
  off(): HidReport[];
}

const output = (...bytes: number[]): HidReport => ({ kind: 'output', bytes: Uint8Array.from(bytes) });
const feature = (...bytes: number[]): HidReport => ({ kind: 'feature', bytes: Uint8Array.from(bytes) });

// ---- blink(1) ----

const BLINK1_REPORT_ID = 1;
/** Pattern memory lines (mk2 and mk3): all are written black, since mk3 firmware plays the whole pattern on a tickle timeout. */
const BLINK1_PATTERN_LINES = 32;
/** The tickle's timeout: the light goes dark this long after the last write from a Shuttle that died. */
export const BLINK1_TIMEOUT_MS = 4000;
const BLINK1_FADE_MS = 100;

const ticks = (ms: number): [number, number] => {
  const t = Math.round(ms / 10);
  return [(t >> 8) & 0xff, t & 0xff];
};

function blink1(cmd: string, ...args: number[]): HidReport {
  const a = [...args, 0, 0, 0, 0, 0, 0].slice(0, 6);
  return feature(BLINK1_REPORT_ID, cmd.charCodeAt(0), ...a, 0);
}

/** `D`: on, timeout, st=1 (keep the colour now), play positions 0–31 on timeout (all black). */
const blink1Tickle = (): HidReport => blink1('D', 1, ...ticks(BLINK1_TIMEOUT_MS), 1, 0, BLINK1_PATTERN_LINES - 1);

export const blink1Driver: LightDriver = {
  name: 'blink1',
  label: 'ThingM blink(1)',
  ids: [{ vendorId: 0x27b8, productId: 0x01ed }],
  timeoutMs: BLINK1_TIMEOUT_MS,
  blinksItself: false,
  // A black line with a zero fade time is skipped by the firmware, so each gets a short fade.
  setup: () => Array.from({ length: BLINK1_PATTERN_LINES }, (_, pos) => blink1('P', 0, 0, 0, ...ticks(BLINK1_FADE_MS), pos)),
  show(signal, lit) {
    const c = lit ? signal.color : BLACK;
    return [blink1('c', c.r, c.g, c.b, ...ticks(BLINK1_FADE_MS), 0), blink1Tickle()];
  },
  keepAlive: () => [blink1Tickle()],
  // Tickle off with st=0 also turns the LEDs off; `n` black makes sure on firmware that ignores st.
  off: () => [blink1('D', 0, 0, 0, 0, 0, 0), blink1('n', 0, 0, 0, 0, 0, 0)],
};

// ---- Luxafor Flag ----

const LUXAFOR_STATIC = 0x01;
const LUXAFOR_ALL_LEDS = 0xff;
const luxaforColor = (c: Rgb): HidReport => output(0x00, LUXAFOR_STATIC, LUXAFOR_ALL_LEDS, c.r, c.g, c.b, 0, 0, 0);

export const luxaforDriver: LightDriver = {
  name: 'luxafor',
  label: 'Luxafor Flag',
  ids: [{ vendorId: 0x04d8, productId: 0xf372 }],
  timeoutMs: undefined,
  blinksItself: false,
  setup: () => [],
  show: (signal, lit) => [luxaforColor(lit ? signal.color : BLACK)],
  keepAlive: (signal, lit) => [luxaforColor(lit ? signal.color : BLACK)],
  off: () => [luxaforColor(BLACK)],
};

// ---- Kuando Busylight ----

const BUSYLIGHT_JUMP = 0x1;
const BUSYLIGHT_KEEP_ALIVE = 0x8;
/** The keep-alive's timeout in seconds (the field holds 0–15): the light goes dark this long after the last write. */
export const BUSYLIGHT_TIMEOUT_S = 5;
/** On and off time of a blink, in 0.1 s. */
const BUSYLIGHT_BLINK_TENTHS = 5;
const pwm = (v: number): number => Math.round((v * 100) / 255);

function busylightPacket(step0: number[]): HidReport {
  const packet = new Uint8Array(64);
  packet.set(step0, 0);
  // Steps 1–6 stay zero; sensitivity, timeout and trigger (bytes 56–58) are unused by Alpha and Omega.
  packet.set([0xff, 0xff, 0xff], 59);
  let sum = 0;
  for (let i = 0; i < 62; i++) sum += packet[i] as number;
  packet[62] = (sum >> 8) & 0xff;
  packet[63] = sum & 0xff;
  return output(0x00, ...packet);
}

function busylightShow(c: Rgb, blink: boolean): HidReport {
  const t = blink ? BUSYLIGHT_BLINK_TENTHS : 0;
  // Jump to step 0: the step repeats forever; audio byte 0 leaves the ringtone alone (none is ever started).
  return busylightPacket([(BUSYLIGHT_JUMP << 4) | 0, 0, pwm(c.r), pwm(c.g), pwm(c.b), t, t, 0x00]);
}

const busylightKeepAlive = (): HidReport => busylightPacket([(BUSYLIGHT_KEEP_ALIVE << 4) | BUSYLIGHT_TIMEOUT_S]);

export const busylightDriver: LightDriver = {
  name: 'busylight',
  label: 'Kuando Busylight',
  ids: [
    { vendorId: 0x04d8, productId: 0xf848 },
    { vendorId: 0x27bb, productId: 0x3bca },
    { vendorId: 0x27bb, productId: 0x3bcb },
    { vendorId: 0x27bb, productId: 0x3bcd },
    { vendorId: 0x27bb, productId: 0x3bce },
    { vendorId: 0x27bb, productId: 0x3bcf },
  ],
  timeoutMs: BUSYLIGHT_TIMEOUT_S * 1000,
  blinksItself: true,
  setup: () => [],
  show: (signal) => [busylightShow(signal.color, signal.blink), busylightKeepAlive()],
  keepAlive: () => [busylightKeepAlive()],
  off: () => [busylightShow(BLACK, false)],
};

// ---- Embrava Blynclight ----

const BLYNC_OFF = 0x01;
const BLYNC_FLASH = 0x04;
const BLYNC_SPEED_MEDIUM = 0x02 << 3;

function blynclightReport(c: Rgb, blink: boolean): HidReport {
  const dark = c.r === 0 && c.g === 0 && c.b === 0;
  const control = dark ? BLYNC_OFF : blink ? BLYNC_FLASH | BLYNC_SPEED_MEDIUM : 0;
  return output(0x00, c.r, c.b, c.g, control, 0x00, 0x00, 0xff, 0x22);
}

export const blynclightDriver: LightDriver = {
  name: 'blynclight',
  label: 'Embrava Blynclight',
  ids: [
    { vendorId: 0x2c0d, productId: 0x0001 },
    { vendorId: 0x2c0d, productId: 0x000a },
    { vendorId: 0x2c0d, productId: 0x000c },
    { vendorId: 0x2c0d, productId: 0x0010 },
    { vendorId: 0x0e53, productId: 0x2516 },
    { vendorId: 0x0e53, productId: 0x2517 },
    { vendorId: 0x047f, productId: 0xd005 },
  ],
  timeoutMs: undefined,
  blinksItself: true,
  setup: () => [],
  show: (signal) => [blynclightReport(signal.color, signal.blink)],
  keepAlive: (signal) => [blynclightReport(signal.color, signal.blink)],
  off: () => [blynclightReport(BLACK, false)],
};

export const LIGHT_DRIVER_TABLE: Readonly<Record<LightDriverName, LightDriver>> = Object.freeze({
  blink1: blink1Driver,
  luxafor: luxaforDriver,
  busylight: busylightDriver,
  blynclight: blynclightDriver,
});

/** The driver for a light with these USB ids, if Shuttle knows it. */
export function driverForIds(vendorId: number, productId: number): LightDriver | undefined {
  return Object.values(LIGHT_DRIVER_TABLE).find((d) => d.ids.some((id) => id.vendorId === vendorId && id.productId === productId));
}
