import { execFile } from 'node:child_process';
import { errnoCode } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * sd_notify for a Type=notify service: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.
 *
 * $NOTIFY_SOCKET is a unix *datagram* socket, and Node cannot send unix datagrams (node:dgram knows only
 * udp4/udp6; node:net is stream-only, and connecting a stream socket to it fails with EPROTOTYPE). No
 * maintained binding is installed, so each message is sent by `systemd-notify --pid=<our pid>` as a
 * child process. Two consequences for the unit:
 *
 * - `NotifyAccess=all` is required: the datagram comes from the child, not from the main PID, and the
 *   default (`main`) drops it. `--pid=` names our process as the main PID in the same message.
 * - systemd-notify (systemd ≥ 246) waits until the service manager has processed the message
 *   (sd_notify_barrier), so the child's exit does not race PID 1's lookup of the sender's unit.
 *
 * Without $NOTIFY_SOCKET (not under systemd) every call does nothing. Messages go out in order, one
 * child at a time; a status update waiting behind a slow one is replaced by the newer text.
 */

export interface NotifierOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv | undefined;
  /** The systemd-notify binary (tests point it elsewhere). */
  command?: string | undefined;
  timeoutMs?: number | undefined;
}

interface Pending {
  args: string[];
  kind: 'status' | 'other';
  done: Array<() => void>;
}

export class SystemdNotifier {
  readonly enabled: boolean;
  /** How often to ping the watchdog: half of WatchdogSec=, or undefined when systemd does not watch us. */
  readonly watchdogIntervalMs: number | undefined;
  readonly #opts: NotifierOptions;
  readonly #env: NodeJS.ProcessEnv;
  readonly #queue: Pending[] = [];
  #sending = false;
  #missingReported = false;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(opts: NotifierOptions) {
    this.#opts = opts;
    this.#env = opts.env ?? process.env;
    this.enabled = (this.#env['NOTIFY_SOCKET'] ?? '') !== '';
    const usec = Number(this.#env['WATCHDOG_USEC'] ?? '');
    const pid = this.#env['WATCHDOG_PID'];
    const forUs = pid === undefined || pid === '' || Number(pid) === process.pid;
    this.watchdogIntervalMs = this.enabled && forUs && Number.isFinite(usec) && usec > 0 ? Math.max(1, Math.floor(usec / 2000)) : undefined;
  }

  ready(status?: string): Promise<void> {
    return this.#send(['--ready', ...(status === undefined ? [] : [`--status=${oneLine(status)}`])], 'other');
  }

  status(text: string): Promise<void> {
    return this.#send([`--status=${oneLine(text)}`], 'status');
  }

  stopping(status?: string): Promise<void> {
    this.stopWatchdog();
    return this.#send(['STOPPING=1', ...(status === undefined ? [] : [`--status=${oneLine(status)}`])], 'other');
  }

  /** Pings the watchdog at half its period while `healthy()` says so; a wedged daemon stops pinging and systemd restarts it. */
  startWatchdog(healthy: () => boolean): void {
    const every = this.watchdogIntervalMs;
    if (every === undefined || this.#watchdog) return;
    this.#watchdog = setInterval(() => {
      // A ping still waiting behind others would arrive late anyway; do not pile them up.
      if (this.#queue.some((p) => p.args[0] === 'WATCHDOG=1')) return;
      let ok = false;
      try {
        ok = healthy();
      } catch (err) {
        this.#opts.logger.error({ err }, 'health check failed; not answering the watchdog');
      }
      if (ok) void this.#send(['WATCHDOG=1'], 'other');
      else this.#opts.logger.error('unhealthy; not answering the watchdog');
    }, every);
    this.#watchdog.unref();
  }

  stopWatchdog(): void {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
  }

  /** Resolves when every queued message has been handed to the service manager (or failed). */
  async flush(): Promise<void> {
    if (this.#queue.length === 0 && !this.#sending) return;
    await new Promise<void>((resolve) => {
      const last = this.#queue[this.#queue.length - 1];
      if (last) last.done.push(resolve);
      else this.#queue.push({ args: [], kind: 'other', done: [resolve] });
      this.#pump();
    });
  }

  #send(args: string[], kind: Pending['kind']): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise((resolve) => {
      const last = this.#queue[this.#queue.length - 1];
      if (kind === 'status' && last?.kind === 'status') {
        last.args = args;
        last.done.push(resolve);
      } else {
        this.#queue.push({ args, kind, done: [resolve] });
      }
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#sending) return;
    const next = this.#queue.shift();
    if (!next) return;
    this.#sending = true;
    const finish = (): void => {
      this.#sending = false;
      for (const d of next.done) d();
      this.#pump();
    };
    if (next.args.length === 0) return finish();
    const cmd = this.#opts.command ?? 'systemd-notify';
    execFile(cmd, [`--pid=${process.pid}`, ...next.args], { env: this.#env, timeout: this.#opts.timeoutMs ?? 5_000 }, (err, _stdout, stderr) => {
      if (err) this.#failed(cmd, next.args, err, stderr);
      finish();
    });
  }

  #failed(cmd: string, args: string[], err: Error, stderr: string): void {
    if (errnoCode(err) === 'ENOENT') {
      if (this.#missingReported) return;
      this.#missingReported = true;
      this.#opts.logger.error({ command: cmd }, `${cmd} is not installed: systemd will not learn that Shuttle is ready (install systemd, or run with Type=simple)`);
      return;
    }
    this.#opts.logger.warn({ err, command: cmd, args, stderr: stderr.trim() }, 'sd_notify failed (the unit needs NotifyAccess=all)');
  }
}

/** STATUS= is one line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').slice(0, 400);
}
