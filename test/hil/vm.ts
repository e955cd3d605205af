/**
 * The hardware-in-the-loop guest: a QEMU (TCG) machine booting Debian's kernel with a busybox initramfs
 * that mounts this machine's root read-only over 9p, so Shuttle and node run inside it unchanged while
 * QEMU emulates the USB hardware (an MTP camera, a card reader). One guest at a time: it takes both cores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const GUEST_DIR = join(ROOT, 'test/hil/guest');
/** The project's Node runtime, as the guest sees it through the shared root. */
export const GUEST_NODE = join(ROOT, 'node_modules/node/bin/node');
/** The built CLI the guest runs; SHUTTLE_HIL_MAIN points the suite at another build. */
export const SHUTTLE_MAIN = process.env['SHUTTLE_HIL_MAIN'] ?? join(ROOT, 'dist/main.js');
const CACHE_DIR = join(ROOT, '.tmp/hil');

/** Debian packages the suite needs on this machine, and how to tell each is there. */
const REQUIREMENTS: Array<{ pkg: string; present: () => boolean }> = [
  { pkg: 'qemu-system-x86', present: () => onPath('qemu-system-x86_64') },
  { pkg: 'linux-image-amd64', present: () => kernelVersion() !== undefined },
  { pkg: 'busybox-static', present: () => existsSync('/bin/busybox') && spawnSync('ldd', ['/bin/busybox']).status !== 0 },
  { pkg: 'cpio', present: () => onPath('cpio') },
  { pkg: 'e2fsprogs', present: () => onPath('mkfs.ext4') && onPath('debugfs') },
];

function onPath(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** The newest kernel with both an image in /boot and modules in /lib/modules. */
export function kernelVersion(): string | undefined {
  let versions: string[];
  try {
    versions = readdirSync('/lib/modules');
  } catch {
    return undefined;
  }
  const usable = versions.filter((v) => existsSync(`/boot/vmlinuz-${v}`));
  return usable.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop();
}

/** Throws, naming the apt packages to install, when the suite cannot run here. It installs nothing. */
export function requireHilPackages(extra: Array<{ pkg: string; tool: string }> = []): void {
  const missing = REQUIREMENTS.filter((r) => !r.present()).map((r) => r.pkg);
  for (const e of extra) if (!onPath(e.tool)) missing.push(e.pkg);
  if (missing.length > 0) {
    throw new Error(
      `the hardware-in-the-loop suite needs Debian packages that are missing: ${[...new Set(missing)].join(' ')} (apt-get install -y ${[...new Set(missing)].join(' ')})`,
    );
  }
  if (!existsSync(GUEST_NODE)) throw new Error(`no project Node runtime at ${GUEST_NODE} (npm ci)`);
  if (!existsSync(SHUTTLE_MAIN)) throw new Error(`no built CLI at ${SHUTTLE_MAIN} (npm run build)`);
}

export interface GuestImage {
  kernel: string;
  initramfs: string;
  kernelVersion: string;
  /** V8 compile cache warmed on this machine and read by the guest (it saves a third of node's start-up under TCG). */
  compileCache: string;
}

let image: GuestImage | undefined;

/** Builds the initramfs once per kernel version into .tmp/hil/<version>/ and reuses it afterwards. */
export function ensureGuestImage(): GuestImage {
  if (image) return image;
  const kver = kernelVersion();
  if (!kver) throw new Error('no kernel in /boot with modules in /lib/modules (apt-get install -y linux-image-amd64)');
  const dir = join(CACHE_DIR, kver);
  const stamp = join(dir, 'kernel-version');
  if (!existsSync(stamp) || !existsSync(join(dir, 'initramfs.gz')) || !existsSync(join(dir, 'vmlinuz'))) {
    const r = spawnSync(join(GUEST_DIR, 'build-initramfs.sh'), [dir, kver], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`building the guest initramfs failed:\n${r.stdout}\n${r.stderr}`);
  }
  const compileCache = join(CACHE_DIR, 'node-compile-cache');
  // Compile what the guest will load into the cache, as a box's launcher keeps it between runs (the guest
  // reads it but cannot write it: its root is read-only). The build is a bundle of chunks loaded on
  // demand, so every one of them is imported (they only define things; main.js runs the CLI, so it is
  // loaded by --version), which also compiles the packages they import. Cheap when warm.
  const dist = dirname(SHUTTLE_MAIN);
  const chunks = readdirSync(dist)
    .filter((f) => f.endsWith('.js') && f !== 'main.js')
    .map((f) => join(dist, f));
  const warm = spawnSync(GUEST_NODE, ['--input-type=module', '-e', `for (const f of ${JSON.stringify(chunks)}) await import(f);`], {
    env: { ...process.env, NODE_COMPILE_CACHE: compileCache },
    stdio: 'ignore',
    timeout: 60_000,
  });
  const warmMain = spawnSync(GUEST_NODE, [SHUTTLE_MAIN, '--version'], { env: { ...process.env, NODE_COMPILE_CACHE: compileCache }, stdio: 'ignore', timeout: 60_000 });
  // A cold cache only makes the guest slower; it must not stop a run, but it should not go unnoticed.
  for (const r of [warm, warmMain]) if (r.status !== 0) process.stderr.write(`hil: warming the guest's compile cache failed (${r.error?.message ?? `exit ${r.status}`})\n`);
  image = { kernel: join(dir, 'vmlinuz'), initramfs: join(dir, 'initramfs.gz'), kernelVersion: kver, compileCache };
  return image;
}

export interface GuestOptions {
  /** Shell script run as the guest's init (after the root is mounted); it ends with `poweroff -f`. */
  script: string;
  /** Variables for the script, written to a file it sources (`hil.env=` on the kernel command line). */
  env: Record<string, string>;
  /** Scratch folder of this guest on the host: serial log, QMP socket, env file. */
  workDir: string;
  /** Extra QEMU arguments (devices, drives). An xHCI controller `xhci` is always there. */
  qemuArgs: string[];
  memoryMb?: number;
  /** Longest the guest may run before it is killed. */
  timeoutMs: number;
  /** Called with every serial console line as it arrives. */
  onLine?: (line: string) => void;
}

export interface RunningGuest {
  readonly qmpPath: string;
  /** Resolves with the first console line matching `pattern` (rejects if the guest exits first). */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Everything the console printed so far. */
  readonly output: string;
  /** Resolves when QEMU has exited (after poweroff, a kill or the timeout). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }>;
  qmp(): Promise<Qmp>;
  kill(): void;
}

export async function startGuest(opts: GuestOptions): Promise<RunningGuest> {
  const img = ensureGuestImage();
  await mkdir(opts.workDir, { recursive: true });
  const envFile = join(opts.workDir, 'guest.env');
  const env = {
    HIL_NODE: GUEST_NODE,
    HIL_SHUTTLE: SHUTTLE_MAIN,
    HIL_COMPILE_CACHE: img.compileCache,
    HIL_LIB: join(GUEST_DIR, 'common.sh'),
    ...opts.env,
  };
  await writeFile(
    envFile,
    Object.entries(env)
      .map(([k, v]) => `${k}='${v.replace(/'/g, `'\\''`)}'\n`)
      .join(''),
  );
  const qmpPath = join(opts.workDir, 'qmp.sock');
  const args = [
    '-accel',
    'tcg',
    '-cpu',
    'max',
    '-m',
    String(opts.memoryMb ?? 2048),
    '-smp',
    '2',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-serial',
    'stdio',
    '-kernel',
    img.kernel,
    '-initrd',
    img.initramfs,
    '-append',
    `console=ttyS0 quiet loglevel=3 panic=-1 hil.script=${opts.script} hil.env=${envFile}`,
    '-virtfs',
    'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-qmp',
    `unix:${qmpPath},server=on,wait=off`,
    '-device',
    'qemu-xhci,id=xhci',
    ...opts.qemuArgs,
  ];
  const child: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let pending = '';
  const watchers = new Set<{ pattern: RegExp; resolve: (l: string) => void }>();
  const onLine = (line: string): void => {
    opts.onLine?.(line);
    for (const w of watchers) {
      if (w.pattern.test(line)) {
        watchers.delete(w);
        w.resolve(line);
      }
    }
  };
  const take = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    output += text;
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(
        pending
          .slice(0, nl)
          .replace(/\r$/, '')
          .replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, ''),
      );
      pending = pending.slice(nl + 1);
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut });
    });
  });
  let qmpClient: Promise<Qmp> | undefined;
  return {
    qmpPath,
    get output() {
      return output;
    },
    exited,
    waitForLine(pattern, timeoutMs) {
      for (const line of output.split('\n')) if (pattern.test(line.replace(/\r$/, ''))) return Promise.resolve(line);
      return new Promise<string>((resolve, reject) => {
        const w = {
          pattern,
          resolve: (l: string) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          watchers.delete(w);
          reject(new Error(`guest printed nothing matching ${pattern} within ${timeoutMs} ms`));
        }, timeoutMs);
        watchers.add(w);
        void exited.then(() => {
          if (watchers.delete(w)) {
            clearTimeout(t);
            reject(new Error(`guest exited before printing ${pattern}`));
          }
        });
      });
    },
    qmp() {
      qmpClient ??= Qmp.connect(qmpPath);
      return qmpClient;
    },
    kill() {
      child.kill('SIGKILL');
    },
  };
}

/** A minimal QMP client: one command at a time, events kept for `waitForEvent`. */
export class Qmp {
  private buffer = '';
  private readonly events: Array<Record<string, unknown>> = [];
  private reply: ((msg: Record<string, unknown>) => void) | undefined;
  private eventWaiters = new Set<{ name: string; resolve: (e: Record<string, unknown>) => void }>();
  private readonly socket: net.Socket;

  // No parameter properties: bench/usb.ts loads this file through Node's type stripping.
  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.onMessage(JSON.parse(line) as Record<string, unknown>);
      }
    });
  }

  static async connect(path: string, timeoutMs = 20_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.next(); // greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private onMessage(msg: Record<string, unknown>): void {
    if (typeof msg['event'] === 'string') {
      for (const w of this.eventWaiters) {
        if (w.name === msg['event']) {
          this.eventWaiters.delete(w);
          w.resolve(msg);
          return;
        }
      }
      this.events.push(msg);
      return;
    }
    const r = this.reply;
    this.reply = undefined;
    r?.(msg);
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => (this.reply = resolve));
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const answer = this.next();
    this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const msg = await answer;
    if (msg['error']) throw new Error(`QMP ${command} failed: ${JSON.stringify(msg['error'])}`);
    return msg['return'];
  }

  waitForEvent(name: string, timeoutMs: number): Promise<Record<string, unknown>> {
    // An event that already arrived is consumed, so that waiting twice waits for two.
    const i = this.events.findIndex((e) => e['event'] === name);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0] as Record<string, unknown>);
    return new Promise((resolve, reject) => {
      const w = {
        name,
        resolve: (e: Record<string, unknown>) => {
          clearTimeout(t);
          resolve(e);
        },
      };
      const t = setTimeout(() => {
        this.eventWaiters.delete(w);
        reject(new Error(`no QMP ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.eventWaiters.add(w);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
