import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { SystemdNotifier } from '../src/daemon/notify.js';
import { captureLog, notifyReceiver } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

let dir: string;
let cleanup: () => Promise<void>;
let receiver: { messages: string[]; child: ChildProcess; path: string } | undefined;

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

describe('sd_notify through systemd-notify', () => {
  test('ready-status-and-stopping-reach-the-notify-socket-with-our-pid-as-main-pid', async () => {
    receiver = await notifyReceiver(join(dir, 'notify.sock'));
    const n = new SystemdNotifier({ logger: captureLog().logger, env: { ...process.env, NOTIFY_SOCKET: receiver.path } });
    expect(n.enabled).toBe(true);
    await n.ready('idle; 1 hot folder');
    await n.status('job 1 /media/card 3/10 files');
    await n.stopping('stopping: received SIGTERM');
    await until(() => receiver!.messages.length >= 3);
    const pid = String(process.pid);
    expect(receiver.messages.map(fields)).toEqual([
      { READY: '1', STATUS: 'idle; 1 hot folder', MAINPID: pid },
      { STATUS: 'job 1 /media/card 3/10 files', MAINPID: pid },
      { STOPPING: '1', STATUS: 'stopping: received SIGTERM', MAINPID: pid },
    ]);
  });

  test('the-watchdog-is-pinged-at-half-its-period-only-while-healthy', async () => {
    receiver = await notifyReceiver(join(dir, 'notify.sock'));
    const n = new SystemdNotifier({ logger: captureLog().logger, env: { ...process.env, NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '300000' } });
    expect(n.watchdogIntervalMs).toBe(150);
    let healthy = true;
    n.startWatchdog(() => healthy);
    await until(() => receiver!.messages.filter((m) => fields(m)['WATCHDOG'] === '1').length >= 2);
    healthy = false;
    await sleep(200);
    const count = receiver.messages.length;
    await sleep(450);
    n.stopWatchdog();
    expect(receiver.messages.length).toBe(count);
  });

  test('a-watchdog-meant-for-another-pid-or-no-notify-socket-means-no-messages', async () => {
    const log = captureLog();
    const other = new SystemdNotifier({ logger: log.logger, env: { NOTIFY_SOCKET: join(dir, 'x.sock'), WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(process.pid + 1) } });
    expect(other.watchdogIntervalMs).toBeUndefined();
    // Not under systemd: nothing is spawned (a missing command would be logged otherwise).
    const off = new SystemdNotifier({ logger: log.logger, env: {}, command: join(dir, 'no-such-systemd-notify') });
    expect(off.enabled).toBe(false);
    await off.ready('idle');
    await off.status('x');
    expect(log.lines).toEqual([]);
  });

  test('a-missing-systemd-notify-is-reported-once-not-per-message', async () => {
    const log = captureLog();
    const n = new SystemdNotifier({ logger: log.logger, env: { NOTIFY_SOCKET: join(dir, 'x.sock') }, command: join(dir, 'no-such-systemd-notify') });
    await n.ready('idle');
    await n.status('still idle');
    const errors = log.lines.filter((l) => l['level'] === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/is not installed: systemd will not learn that Shuttle is ready/);
  });
});
