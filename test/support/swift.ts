/**
 * A real S3-compatible server for tests: a throwaway one-node OpenStack Swift with s3api on 127.0.0.1.
 * Builds rings and configs in a temp dir, starts the account, container, object and proxy servers on free
 * ports, waits until a signed S3 request succeeds, and stops them all (whole process groups) on `stop()`.
 * Installs nothing: when Swift is missing it fails with the apt command to run.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePorts } from './ports.js';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';

const execFileAsync = promisify(execFile);
const TEMPLATES = join(dirname(fileURLToPath(import.meta.url)), 'swift');

export const SWIFT_APT_COMMAND = 'apt-get install --no-install-recommends swift swift-proxy swift-account swift-container swift-object';
const BINARIES = ['swift-ring-builder', 'swift-account-server', 'swift-container-server', 'swift-object-server', 'swift-proxy-server'];
const STORAGE = ['account', 'container', 'object'] as const;

export interface SwiftServer {
  /** http://127.0.0.1:PORT, path-style. */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly port: number;
  readonly dir: string;
  /** A plain SDK client for test set-up and inspection (never retries, no checksum trailers). */
  adminClient(): S3Client;
  createBucket(name: string): Promise<void>;
  /** Tail of the server logs, to attach to a failing assertion. */
  logs(): Promise<string>;
  stop(): Promise<void>;
}

function which(bin: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, bin);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  return undefined;
}

/** The interpreter Swift's own tools run under (their shebang), which can import the `swift` package. */
function swiftPython(): string {
  const tool = which('swift-ring-builder') as string;
  const shebang = readFileSync(tool, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\s*(\S+)/.exec(shebang);
  return m?.[1] ?? 'python3';
}

export function missingSwiftBinaries(): string[] {
  return BINARIES.filter((b) => which(b) === undefined);
}

async function render(template: string, vars: Record<string, string>): Promise<string> {
  const text = await readFile(join(TEMPLATES, template), 'utf8');
  return text.replace(/\{\{([A-Z_]+)\}\}/g, (_m, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new Error(`swift template ${template} uses unknown {{${name}}}`);
    return v;
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort if a test run dies without teardown: never leave Swift servers behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    live.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pgid = child.pid;
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    // group already gone
  }
  const gone = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
  // The server's worker may outlive its parent for a moment; make sure the whole group is gone.
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
  if (!gone) await exited;
  live.delete(child);
}

export interface StartSwiftOptions {
  /** How long to wait for the servers to answer a signed S3 request (default 30 s). */
  timeoutMs?: number;
}

export async function startSwift(options: StartSwiftOptions = {}): Promise<SwiftServer> {
  const missing = missingSwiftBinaries();
  if (missing.length > 0) {
    throw new Error(`OpenStack Swift is not installed (missing ${missing.join(', ')}). Install it with:\n  sudo ${SWIFT_APT_COMMAND}`);
  }
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), 'shuttle-swift-'));
  const etc = join(dir, 'etc');
  const devices = join(dir, 'srv');
  const logDir = join(dir, 'log');
  await Promise.all([mkdir(etc), mkdir(join(devices, 'd1'), { recursive: true }), mkdir(logDir)]);
  const [proxyPort, ...storagePorts] = (await freePorts(4)) as [number, number, number, number];
  const user = userInfo().username;
  const children: ChildProcess[] = [];

  const stopAll = async (): Promise<void> => {
    await Promise.all(children.map(stopChild));
  };

  try {
    await writeFile(join(etc, 'swift.conf'), await readFile(join(TEMPLATES, 'swift.conf'), 'utf8'));
    await execFileAsync(swiftPython(), [join(TEMPLATES, 'build-rings.py'), ...STORAGE.map((service, i) => `${join(etc, service)}:${storagePorts[i] as number}`)]);
    for (const [i, service] of STORAGE.entries()) {
      await writeFile(
        join(etc, `${service}-server.conf`),
        await render('storage-server.conf', { SERVICE: service, SWIFT_DIR: etc, DEVICES: devices, PORT: String(storagePorts[i]), USER: user }),
      );
    }
    await writeFile(join(etc, 'proxy-server.conf'), await render('proxy-server.conf', { SWIFT_DIR: etc, PORT: String(proxyPort), USER: user }));

    for (const service of [...STORAGE, 'proxy']) {
      const logFd = openSync(join(logDir, `${service}.log`), 'a');
      // Own process group (detached), so stop() can signal the server and the worker it forks together.
      const child = spawn(`swift-${service}-server`, [join(etc, `${service}-server.conf`), '--verbose'], {
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
      closeSync(logFd);
      children.push(child);
      live.add(child);
      child.once('exit', () => live.delete(child));
    }

    const endpoint = `http://127.0.0.1:${proxyPort}`;
    const adminClient = (): S3Client =>
      new S3Client({
        endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: { accessKeyId: 'test:tester', secretAccessKey: 'testing' },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: 1,
      });

    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    const probe = adminClient();
    let lastError: unknown;
    for (;;) {
      const exited = children.find((c) => c.exitCode !== null || c.signalCode !== null);
      if (exited !== undefined) throw new Error(`a Swift server exited during start-up (code ${exited.exitCode}, signal ${exited.signalCode})`);
      const allUp = (await Promise.all([proxyPort, ...storagePorts].map(canConnect))).every(Boolean);
      if (allUp) {
        try {
          await probe.send(new ListBucketsCommand({}));
          break;
        } catch (error) {
          lastError = error;
        }
      }
      if (Date.now() > deadline) throw new Error(`Swift did not answer S3 requests within ${options.timeoutMs ?? 30_000} ms: ${String(lastError)}`);
      await sleep(200);
    }
    probe.destroy();

    const logs = async (): Promise<string> => {
      const parts = await Promise.all(
        [...STORAGE, 'proxy'].map(async (s) => {
          const text = await readFile(join(logDir, `${s}.log`), 'utf8').catch(() => '');
          return `--- ${s} ---\n${text.split('\n').slice(-40).join('\n')}`;
        }),
      );
      return parts.join('\n');
    };

    let stopped = false;
    return {
      endpoint,
      region: 'us-east-1',
      accessKeyId: 'test:tester',
      secretAccessKey: 'testing',
      port: proxyPort,
      dir,
      adminClient,
      async createBucket(name: string) {
        const c = adminClient();
        try {
          await c.send(new CreateBucketCommand({ Bucket: name }));
        } finally {
          c.destroy();
        }
      },
      logs,
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    const logText = await Promise.all(
      [...STORAGE, 'proxy'].map((s) =>
        readFile(join(logDir, `${s}.log`), 'utf8').then(
          (t) => `--- ${s} ---\n${t.slice(-2000)}`,
          () => '',
        ),
      ),
    );
    await stopAll();
    await rm(dir, { recursive: true, force: true });
    throw new Error(`could not start Swift: ${error instanceof Error ? error.message : String(error)}\n${logText.join('\n')}`, { cause: error });
  }
}
