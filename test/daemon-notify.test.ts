import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadSdNotify, SD_NOTIFY_ADDON, SystemdNotifier } from '../src/daemon/notify.js';
import { captureLog, notifyReceiver } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

let dir: string;
let cleanup: () => Promise<void>;
let receiver: { messages: string[]; senders: number[]; child: ChildProcess; path: string } | undefined;

beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir('shuttle-notify-'));
});

afterEach(async () => {
  receiver?.child.kill();
  receiver = undefined;
  await cleanup();
});

/** An sd_notify datagram as its variables (their order is systemd-notify's business). */
function fields(message: string): Record<string, string> {
  return Object.fromEntries(message.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out; got ${JSON.stringify(receiver?.messages)}`);
    await sleep(10);
  }
}

describe('sd_notify from this process (the addon)', () => {
  test('the-addon-is-built-and-loads-in-this-runtime', () => {
    // npm ci builds it (binding.gyp); a missing build must fail here, not quietly take the fallback.
    expect(existsSync(SD_NOTIFY_ADDON), SD_NOTIFY_ADDON).toBe(true);
    const addon = loadSdNotify();
    expect(addon).not.toBeInstanceOf(Error);
  });

  test('ready-status-and-stopping-reach-the-notify-socket-sent-by-our-own-pid', async () => {
    receiver = await notifyReceiver(join(dir, 'notify.sock'));
    const log = captureLog();
    const n = new SystemdNotifier({ logger: log.logger, env: { ...process.env, NOTIFY_SOCKET: receiver.path } });
    expect(n.enabled).toBe(true);
    await n.ready('idle; 1 hot folder');
    await n.status('job 1 /media/card 3/10 files');
    await n.stopping('stopping: received SIGTERM');
    await until(() => receiver!.messages.length >= 3);
    expect(receiver.messages).toEqual(['READY=1\nSTATUS=idle; 1 hot folder', 'STATUS=job 1 /media/card 3/10 files', 'STOPPING=1\nSTATUS=stopping: received SIGTERM']);
    // What NotifyAccess=main checks: the kernel's word on who sent each datagram.
    expect(receiver.senders).toEqual([process.pid, process.pid, process.pid]);
    expect(log.lines).toEqual([]);
  });

  test('an-abstract-notify-socket-is-reached-by-its-at-sign-name', async () => {
    receiver = await notifyReceiver(`@shuttle-test-${process.pid}-${randomBytes(4).toString('hex')}`);
    const n = new SystemdNotifier({ logger: captureLog().logger, env: { NOTIFY_SOCKET: receiver.path } });
    await n.ready('idle');
    await until(() => receiver!.messages.length >= 1);
    expect(receiver.messages).toEqual(['READY=1\nSTATUS=idle']);
    expect(receiver.senders).toEqual([process.pid]);
  });

  test('a-notify-socket-that-cannot-take-the-message-is-logged-with-its-errno-not-thrown', async () => {
    const log = captureLog();
    const n = new SystemdNotifier({ logger: log.logger, env: { NOTIFY_SOCKET: join(dir, 'gone.sock') } });
    await n.ready('idle');
    const relative = new SystemdNotifier({ logger: log.logger, env: { NOTIFY_SOCKET: 'notify.sock' } });
    await relative.status('x');
    expect(log.lines.map((l) => [l['level'], l.msg, l['code']])).toEqual([
      [40, 'sd_notify failed', 'ENOENT'],
      [40, 'sd_notify failed', 'EAFNOSUPPORT'],
    ]);
  });

  test('the-watchdog-is-pinged-at-half-its-period-only-while-healthy', async () => {
    receiver = await notifyReceiver(join(dir, 'notify.sock'));
    const n = new SystemdNotifier({ logger: captureLog().logger, env: { ...process.env, NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '300000' } });
    expect(n.watchdogIntervalMs).toBe(150);
    let healthy = true;
    n.startWatchdog(() => healthy);
    await until(() => receiver!.messages.filter((m) => m === 'WATCHDOG=1').length >= 2);
    healthy = false;
    await sleep(200);
    const count = receiver.messages.length;
    await sleep(450);
    n.stopWatchdog();
    expect(receiver.messages.length).toBe(count);
    expect(new Set(receiver.senders)).toEqual(new Set([process.pid]));
  });

  test('a-watchdog-meant-for-another-pid-or-no-notify-socket-means-no-messages', async () => {
    const log = captureLog();
    const other = new SystemdNotifier({ logger: log.logger, env: { NOTIFY_SOCKET: join(dir, 'x.sock'), WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(process.pid + 1) } });
    expect(other.watchdogIntervalMs).toBeUndefined();
    // Not under systemd: nothing is loaded or spawned (a missing addon or command would be logged otherwise).
    const off = new SystemdNotifier({ logger: log.logger, env: {}, addon: join(dir, 'no-such.node'), command: join(dir, 'no-such-systemd-notify') });
    expect(off.enabled).toBe(false);
    await off.ready('idle');
    await off.status('x');
    expect(log.lines).toEqual([]);
  });
});

describe('sd_notify through systemd-notify when the addon cannot load', () => {
  test('messages-still-arrive-naming-our-pid-as-main-pid-and-the-missing-addon-is-logged-once', async () => {
    receiver = await notifyReceiver(join(dir, 'notify.sock'));
    const log = captureLog();
    const n = new SystemdNotifier({ logger: log.logger, env: { ...process.env, NOTIFY_SOCKET: receiver.path }, addon: join(dir, 'no-such.node') });
    await n.ready('idle; 1 hot folder');
    await n.status('job 1 /media/card 3/10 files');
    await n.stopping('stopping: received SIGTERM');
    await n.flush();
    await until(() => receiver!.messages.length >= 3);
    const pid = String(process.pid);
    expect(receiver.messages.map(fields)).toEqual([
      { READY: '1', STATUS: 'idle; 1 hot folder', MAINPID: pid },
      { STATUS: 'job 1 /media/card 3/10 files', MAINPID: pid },
      { STOPPING: '1', STATUS: 'stopping: received SIGTERM', MAINPID: pid },
    ]);
    expect(log.lines.map((l) => [l['level'], l.msg])).toEqual([[50, expect.stringMatching(/^the sd_notify addon did not load .* NotifyAccess=all$/)]]);
  });

  test('a-missing-systemd-notify-is-reported-once-not-per-message', async () => {
    const log = captureLog();
    const n = new SystemdNotifier({
      logger: log.logger,
      env: { NOTIFY_SOCKET: join(dir, 'x.sock') },
      addon: join(dir, 'no-such.node'),
      command: join(dir, 'no-such-systemd-notify'),
    });
    await n.ready('idle');
    await n.status('still idle');
    const missing = log.lines.filter((l) => l['level'] === 50 && /is not installed/.test(l.msg ?? ''));
    expect(missing).toHaveLength(1);
    expect(missing[0]!.msg).toMatch(/is not installed: systemd will not learn that Shuttle is ready/);
  });
});
