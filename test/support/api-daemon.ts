import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { normalizeConfig, type ConfigInput } from '../../src/config/index.js';
import { Daemon, type DaemonOptions } from '../../src/daemon/daemon.js';
import { captureLog, type CapturedLog } from './daemon-helpers.js';
import { TestWatcher } from './test-watcher.js';

export { events, nextEvent, TestWatcher } from './test-watcher.js';

export interface ApiDaemon {
  daemon: Daemon;
  url: string;
  watcher: TestWatcher;
  log: CapturedLog;
}

/** A daemon with the HTTP API on 127.0.0.1, a port of its own (0), and a test watcher. */
export async function startApiDaemon(
  work: string,
  api: ConfigInput['api'] = {},
  extra: Partial<ConfigInput> = {},
  env: NodeJS.ProcessEnv = {},
  heartbeatMs?: number,
  more: Pick<DaemonOptions, 'systemdEject'> = {},
): Promise<ApiDaemon> {
  const config = normalizeConfig({
    destinations: [{ path: join(work, 'dest') }],
    daemon: { control_socket: join(work, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
    ...extra,
    api: { listen: '127.0.0.1:0', ...api },
  });
  const watcher = new TestWatcher();
  const log = captureLog();
  const daemon = await Daemon.start({
    config,
    stateDir: join(work, 'state'),
    logger: log.logger,
    env,
    watchers: [watcher],
    api: { sseMaxBufferBytes: 64 * 1024, heartbeatMs },
    ...more,
  });
  const url = daemon.status().api?.url;
  if (url === undefined) throw new Error('the daemon reports no API address');
  return { daemon, url, watcher, log };
}

/**
 * A request with full control of its headers (fetch forbids Host, Origin and Sec-Fetch-* on some
 * runtimes); the body as text.
 */
export function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
