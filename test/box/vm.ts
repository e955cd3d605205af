/**
 * The "box" guest (build-image.sh) under QEMU: builds and caches its image in .tmp/box, boots a
 * throwaway copy with two 9p shares (/artifact read-only, /out read-write) and a QMP socket for
 * hot-plugging USB devices, runs shell scripts in the guest as root, and stops it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const BUILD_SCRIPT = fileURLToPath(new URL('./build-image.sh', import.meta.url));

/** The image folder for this build script and kernel, built when missing. */
export function ensureBoxImage(): string {
  const kernel = readdirSync('/lib/modules').sort().pop() ?? 'none';
  const key = createHash('sha256').update(readFileSync(BUILD_SCRIPT)).update(kernel).digest('hex').slice(0, 16);
  const dir = join(REPO, '.tmp', 'box', `image-${key}`);
  if (!existsSync(join(dir, 'rootfs.img'))) {
    const r = spawnSync(BUILD_SCRIPT, [dir], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
    if (r.status !== 0) throw new Error(`building the box image failed:\n${r.stderr}`);
  }
  return dir;
}

/** Line-by-line QMP: one command at a time, events skipped. */
class Qmp {
  readonly #socket: Socket;
  #buffer = '';
  #waiters: Array<(line: string) => void> = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        this.#waiters.shift()?.(line);
      }
    });
  }

  static async open(path: string, deadline: number): Promise<Qmp> {
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.#line(); // greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  #line(): Promise<string> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    for (;;) {
      const reply = JSON.parse(await this.#line()) as { return?: unknown; error?: { desc: string }; event?: string };
      if (reply.error) throw new Error(`QMP ${command}: ${reply.error.desc}`);
      if ('return' in reply) return reply.return;
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

export interface GuestRun {
  rc: number;
  output: string;
}

export interface Box {
  readonly out: string;
  readonly qmp: Qmp;
  /** Console output so far (serial). */
  console(): string;
  /** Runs a shell script in the guest as root; resolves when it has finished. */
  run(script: string, timeoutMs: number): Promise<GuestRun>;
  /** Kills QEMU at once, as pulling the plug would: what the guest had not flushed is lost; the disk is kept. */
  powerCut(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The guest's agent (build-image.sh starts /out/agent.sh after boot): runs each /out/cmd-N.sh in turn,
 * output to cmd-N.out, exit status to cmd-N.rc when done.
 */
const AGENT = `#!/bin/sh
n=0
touch /out/ready
while :; do
  if [ -f /out/cmd-$n.sh ]; then
    sh /out/cmd-$n.sh > /out/cmd-$n.out 2>&1
    echo $? > /out/cmd-$n.rc.tmp && mv /out/cmd-$n.rc.tmp /out/cmd-$n.rc
    n=$((n + 1))
  else
    sleep 0.3
  fi
done
`;

export interface BootOptions {
  image: string;
  /** Shared read-only at /artifact. */
  artifactDir: string;
  /** Shared read-write at /out. */
  outDir: string;
  memoryMiB?: number;
  bootTimeoutMs?: number;
  /** Boot the disk a previous boot left (after `powerCut`) instead of a fresh copy of the image. */
  reuseDisk?: boolean;
}

export async function bootBox(opts: BootOptions): Promise<Box> {
  // A previous boot's commands would run again: the agent numbers them from 0 on every boot.
  for (const name of readdirSync(opts.outDir)) {
    if (name === 'ready' || /^cmd-\d+\./.test(name)) await rm(join(opts.outDir, name), { force: true });
  }
  await writeFile(join(opts.outDir, 'agent.sh'), AGENT);
  const disk = join(opts.outDir, 'run.img');
  if (!opts.reuseDisk || !existsSync(disk)) {
    // A throwaway copy, holes kept: the image is 2 GB, mostly empty.
    const cp = spawnSync('cp', ['--reflink=auto', '--sparse=always', join(opts.image, 'rootfs.img'), disk], { encoding: 'utf8' });
    if (cp.status !== 0) throw new Error(`copying the box image failed: ${cp.stderr}`);
  }
  const qmpPath = join(opts.outDir, 'qmp.sock');
  let consoleText = '';
  const child: ChildProcess = spawn(
    'qemu-system-x86_64',
    [
      '-accel',
      'tcg',
      // The CPU the guest sees: TCG's default (qemu64) lacks SSE4.2, which sharp's libvips needs (without
      // it the daemon makes no previews or thumbnails).
      '-cpu',
      'max',
      '-m',
      String(opts.memoryMiB ?? 2048),
      '-smp',
      '2',
      '-nographic',
      '-no-reboot',
      '-kernel',
      join(opts.image, 'vmlinuz'),
      '-initrd',
      join(opts.image, 'initrd.img'),
      '-append',
      'root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0',
      '-drive',
      `file=${disk},format=raw,if=virtio`,
      '-virtfs',
      `local,path=${opts.artifactDir},mount_tag=artifact,security_model=none,readonly=on,multidevs=remap`,
      '-virtfs',
      `local,path=${opts.outDir},mount_tag=out,security_model=none,multidevs=remap`,
      '-device',
      'qemu-xhci,id=xhci',
      // User networking: the guest reaches servers the test starts on the host's loopback at 10.0.2.2.
      '-nic',
      'user,model=virtio-net-pci',
      '-qmp',
      `unix:${qmpPath},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d: Buffer) => (consoleText += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (consoleText += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let commands = 0;
  let qmp: Qmp;
  try {
    qmp = await Qmp.open(qmpPath, Date.now() + 30_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`QEMU did not start: ${(err as Error).message}\n${consoleText}`);
  }
  // The agent starts after boot: wait for it (a TCG boot takes one to two minutes).
  const bootDeadline = Date.now() + (opts.bootTimeoutMs ?? 420_000);
  while (!existsSync(join(opts.outDir, 'ready'))) {
    if (child.exitCode !== null || Date.now() > bootDeadline) {
      child.kill('SIGKILL');
      throw new Error(`the guest did not boot to its agent:\n${consoleText.slice(-3000)}`);
    }
    await sleep(500);
  }
  return {
    out: opts.outDir,
    qmp,
    console: () => consoleText,
    async run(script, timeoutMs) {
      const n = commands++;
      const base = join(opts.outDir, `cmd-${n}`);
      await writeFile(`${base}.tmp`, script);
      await rename(`${base}.tmp`, `${base}.sh`);
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && child.exitCode === null) {
        if (existsSync(`${base}.rc`)) {
          return { rc: Number((await readFile(`${base}.rc`, 'utf8')).trim()), output: await readFile(`${base}.out`, 'utf8') };
        }
        await sleep(300);
      }
      const output = await readFile(`${base}.out`, 'utf8').catch(() => '(no output)');
      throw new Error(`guest script ${n} did not finish within ${timeoutMs} ms:\n${script}\noutput so far:\n${output}\nconsole:\n${consoleText.slice(-3000)}`);
    },
    async powerCut() {
      qmp.close();
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    async stop() {
      qmp.close();
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      await rm(disk, { force: true });
    },
  };
}
