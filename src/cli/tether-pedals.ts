/**
 * `shuttle tether`'s foot pedals: the `[[pedals]]` bound to `capture` fire the session's camera. Each
 * press is a line of the session's output (`{"event":"capture","by":"pedal",…}`, then the shot's
 * verified line as for any shot); a capture that fails is a `capture-failed` line and the session goes
 * on. No pedal plugged in, or none at all, is normal.
 */
import type { PedalConfig } from '../config/index.js';
import { PedalWatcher, describeHid, pedalBindings, type HidBackend } from '../device/hid/index.js';
import { captureOnPedal } from '../device/hid/pedal-capture.js';
import type { Logger } from '../log.js';

export interface TetherPedalsOptions {
  pedals: readonly PedalConfig[] | undefined;
  capture: (signal: AbortSignal) => Promise<unknown>;
  /** One line of the session's output: JSON with --json, else the human text. */
  print: (line: Record<string, unknown>, human: string) => void;
  logger: Logger;
  backend?: HidBackend | undefined;
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** Watches the pedals bound to capture; undefined when none is configured. */
export async function startTetherPedals(opts: TetherPedalsOptions): Promise<{ close(): Promise<void> } | undefined> {
  const bindings = pedalBindings(opts.pedals ?? []).filter((b) => b.action === 'capture');
  if (bindings.length === 0) return undefined;
  const watcher = new PedalWatcher({ bindings, logger: opts.logger, ...(opts.backend ? { backend: opts.backend } : {}) });
  const captures = captureOnPedal(watcher, {
    capture: opts.capture,
    logger: opts.logger,
    onFired: (press) =>
      opts.print(
        { event: 'capture', by: 'pedal', key: press.key, device: `${hex4(press.device.vendorId)}:${hex4(press.device.productId)}` },
        `capture: pedal ${press.key} on ${describeHid(press.device)}`,
      ),
    onFailed: (err) => opts.print({ event: 'capture-failed', by: 'pedal', error: { code: err.code, message: err.message } }, `capture by pedal failed: ${err.message}`),
  });
  await watcher.start();
  return {
    async close() {
      await captures.close();
      await watcher.close();
    },
  };
}
