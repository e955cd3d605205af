import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { getSystemErrorName } from 'node:util';
import { errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { PROGRAM_ROOT } from '../version.js';

/**
 * sd_notify for a Type=notify service: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.
 *
 * $NOTIFY_SOCKET is a unix *datagram* socket, which Node cannot send to (node:dgram knows only udp4/udp6;
 * node:net is stream-only). A small Node-API addon built at install time (native/sd_notify.c, see
 * binding.gyp) sends each message from this process, so the unit can keep NotifyAccess=main: systemd
 * takes a message only when the kernel says it came from the main PID.
 *
 * When the addon cannot load (not built: npm ran with --ignore-scripts, or a tree copied from another
 * machine type), each message is sent by `systemd-notify --pid=<our pid>` as a child process instead,
 * which a unit only accepts with NotifyAccess=all; that is logged once, as an error, since the shipped
 * unit then never hears READY. systemd-notify waits until the service manager has processed the message
 * (sd_notify_barrier), so the child's exit does not race PID 1's lookup of the sender's unit.
 *
 * Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
 */

export interface NotifierOptions {
  logger: Logger;
  env?: NodeJS.ProcessEnv | undefined;
  /** The compiled addon (tests point it elsewhere to take the fallback). */
  addon?: string | undefined;
  /** The systemd-notify binary of the fallback (tests point it elsewhere). */
  command?: string | undefined;
  timeoutMs?: number | undefined;
}

/** Where node-gyp leaves the addon, below the program root in a checkout and in an installed tree alike. */
export const SD_NOTIFY_ADDON = join(PROGRAM_ROOT, 'build', 'Release', 'sd_notify.node');

interface Addon {
  /** Sends one datagram; throws an Error with a positive `errno` and the `syscall` when it cannot. */
  notify(socketPath: string, message: string): void;
}

/** Loads the addon, or says why it cannot be used. */
export function loadSdNotify(path: string = SD_NOTIFY_ADDON): Addon | Error {
  try {
    const mod = { exports: {} as Partial<Addon> };
    process.dlopen(mod, path);
    const notify = mod.exports.notify;
    if (typeof notify !== 'function') return new Error(`${path} has no notify()`);
    return { notify };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

interface Pending {
  /** The message's assignments, one per line of the datagram. */
  lines: string[];
  kind: 'status' | 'other';
  done: Array<() => void>;
}

export class SystemdNotifier {
  readonly enabled: boolean;
  /** How often to ping the watchdog: half of WatchdogSec=, or undefined when systemd does not watch us. */
  readonly watchdogIntervalMs: number | undefined;
  readonly #opts: NotifierOptions;
  readonly #env: NodeJS.ProcessEnv;
  readonly #socket: string;
  /** The addon, or undefined when messages go through systemd-notify (or nowhere, when not enabled). */
  readonly #addon: Addon | undefined;
  /** The fallback's messages, in order, one child at a time; a status update waiting behind a slow one is replaced by the newer text. */
  readonly #queue: Pending[] = [];
  #sending = false;
  #missingReported = false;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(opts: NotifierOptions) {
    this.#opts = opts;
    this.#env = opts.env ?? process.env;
    this.#socket = this.#env['NOTIFY_SOCKET'] ?? '';
    this.enabled = this.#socket !== '';
    const usec = Number(this.#env['WATCHDOG_USEC'] ?? '');
    const pid = this.#env['WATCHDOG_PID'];
    const forUs = pid === undefined || pid === '' || Number(pid) === process.pid;
    this.watchdogIntervalMs = this.enabled && forUs && Number.isFinite(usec) && usec > 0 ? Math.max(1, Math.floor(usec / 2000)) : undefined;
    if (!this.enabled) return;
    const addon = loadSdNotify(opts.addon);
    if (addon instanceof Error) {
      opts.logger.error(
        { err: addon, addon: opts.addon ?? SD_NOTIFY_ADDON },
        'the sd_notify addon did not load (npm ci builds it in a checkout; an installed tree carries it): sending through systemd-notify, whose messages systemd takes only with NotifyAccess=all',
      );
    } else {
      this.#addon = addon;
    }
  }

  ready(status?: string): Promise<void> {
    return this.#send(['READY=1', ...(status === undefined ? [] : [`STATUS=${oneLine(status)}`])], 'other');
  }

  status(text: string): Promise<void> {
    return this.#send([`STATUS=${oneLine(text)}`], 'status');
  }

  stopping(status?: string): Promise<void> {
    this.stopWatchdog();
    return this.#send(['STOPPING=1', ...(status === undefined ? [] : [`STATUS=${oneLine(status)}`])], 'other');
  }

  /** Pings the watchdog at half its period while `healthy()` says so; a wedged daemon stops pinging and systemd restarts it. */
  startWatchdog(healthy: () => boolean): void {
    const every = this.watchdogIntervalMs;
    if (every === undefined || this.#watchdog) return;
    this.#watchdog = setInterval(() => {
      // A ping still waiting behind others would arrive late anyway; do not pile them up.
      if (this.#queue.some((p) => p.lines[0] === 'WATCHDOG=1')) return;
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
      else this.#queue.push({ lines: [], kind: 'other', done: [resolve] });
      this.#pump();
    });
  }

  #send(lines: string[], kind: Pending['kind']): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.#addon) {
      try {
        this.#addon.notify(this.#socket, lines.join('\n'));
      } catch (err) {
        const errno = (err as { errno?: unknown }).errno;
        const code = typeof errno === 'number' ? getSystemErrorName(-errno) : undefined;
        this.#opts.logger.warn({ err, code, socket: this.#socket, message: lines }, 'sd_notify failed');
      }
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const last = this.#queue[this.#queue.length - 1];
      if (kind === 'status' && last?.kind === 'status') {
        last.lines = lines;
        last.done.push(resolve);
      } else {
        this.#queue.push({ lines, kind, done: [resolve] });
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
    if (next.lines.length === 0) return finish();
    const cmd = this.#opts.command ?? 'systemd-notify';
    // systemd-notify sends VARIABLE=VALUE arguments as they are; --pid= names us as the main PID.
    execFile(cmd, [`--pid=${process.pid}`, ...next.lines], { env: this.#env, timeout: this.#opts.timeoutMs ?? 5_000 }, (err, _stdout, stderr) => {
      if (err) this.#failed(cmd, next.lines, err, stderr);
      finish();
    });
  }

  #failed(cmd: string, lines: string[], err: Error, stderr: string): void {
    if (errnoCode(err) === 'ENOENT') {
      if (this.#missingReported) return;
      this.#missingReported = true;
      this.#opts.logger.error({ command: cmd }, `${cmd} is not installed: systemd will not learn that Shuttle is ready (install systemd, or run with Type=simple)`);
      return;
    }
    this.#opts.logger.warn({ err, command: cmd, args: lines, stderr: stderr.trim() }, 'sd_notify through systemd-notify failed (the unit needs NotifyAccess=all)');
  }
}

/** STATUS= is one line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').slice(0, 400);
}
