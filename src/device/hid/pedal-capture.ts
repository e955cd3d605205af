/**
 * A pedal's `capture` in a session that can fire a camera (`shuttle tether`, the daemon's tethered
 * cameras): every press fires one capture, each with its own AbortSignal so that the session's end stops
 * the ones in flight. A capture that fails is reported and logged; the pedal stays live for the next press.
 */
import { ShuttleError, isShuttleError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { describeHid } from './monitor.js';
import type { PedalPress, PedalWatcher } from './pedal.js';

export interface PedalCaptureOptions<T> {
  /** Fires the camera; resolves once the new shot is verified. */
  capture: (signal: AbortSignal) => Promise<T>;
  logger: Logger;
  /** A press that fired a capture (before it is done). */
  onFired?: ((press: PedalPress) => void) | undefined;
  onDone?: ((result: T, press: PedalPress) => void) | undefined;
  /** A capture that failed (not one stopped by close). */
  onFailed?: ((err: ShuttleError, press: PedalPress) => void) | undefined;
}

export interface PedalCaptures {
  /** Stops firing, aborts the captures in flight and waits for them to unwind. */
  close(): Promise<void>;
}

export function captureOnPedal<T>(watcher: PedalWatcher, opts: PedalCaptureOptions<T>): PedalCaptures {
  const inFlight = new Set<Promise<void>>();
  const stop = new AbortController();
  const unsubscribe = watcher.onAction((press) => {
    if (press.action !== 'capture' || stop.signal.aborted) return;
    opts.logger.info({ by: 'pedal', key: press.key, device: describeHid(press.device) }, 'capture requested');
    opts.onFired?.(press);
    const run = opts.capture(stop.signal).then(
      (result) => opts.onDone?.(result, press),
      (err: unknown) => {
        const e = isShuttleError(err) ? err : new ShuttleError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
        if (stop.signal.aborted) {
          opts.logger.info({ err: e, by: 'pedal' }, 'capture stopped: the session ended');
          return;
        }
        opts.logger.warn({ err: e, by: 'pedal' }, 'capture by pedal failed');
        opts.onFailed?.(e, press);
      },
    );
    inFlight.add(run);
    void run.finally(() => inFlight.delete(run));
  });
  return {
    async close() {
      unsubscribe();
      stop.abort(new ShuttleError('ABORTED', 'the session ended'));
      await Promise.allSettled(inFlight);
    },
  };
}
