/**
 * Hash and read-back throughput on one large file, next to the system's own tools measured in the same run.
 *
 *   ./node_modules/.bin/node bench/hashes.ts
 *
 * Environment: BENCH_SIZE_MIB (default 1024), BENCH_DIR (default the OS temp folder; must be disk-backed for
 * the direct read-back line), BENCH_RUNS (best of, default 2). The buffered read-back line copies the file to
 * a ramfs (which refuses O_DIRECT, so readBack takes its fallback path) and needs root to mount it.
 *
 * Node runs this file by stripping its types. The project's sources import each other with `.js`
 * specifiers that only exist after a build, so a resolve hook retries a missing relative `.js` as `.ts`
 * (this file imports them the same way, which also keeps tsc happy); the modules measured are the real ones.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMD5, createXXHash128 } from 'hash-wasm';
import { Xxh64 } from '@node-rs/xxhash';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      throw err;
    }
  },
});
const { MultiHasher } = await import('../src/io/hashing.js');
const { readBack } = await import('../src/io/readback.js');

const SIZE = Number(process.env.BENCH_SIZE_MIB ?? 1024) * 1024 * 1024;
const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const CHUNK = 4 * 1024 * 1024;

interface Row {
  name: string;
  from: string;
  seconds: number;
  digest: string;
  reference?: string;
}

function mbps(seconds: number): number {
  return SIZE / 1e6 / seconds;
}

async function best(fn: () => Promise<string> | string): Promise<{ seconds: number; digest: string }> {
  let seconds = Infinity;
  let digest = '';
  for (let i = 0; i < RUNS; i++) {
    const start = process.hrtime.bigint();
    digest = await fn();
    seconds = Math.min(seconds, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { seconds, digest };
}

/** Reads the file in 4 MiB chunks from the page cache into one reused buffer, feeding `update`. */
async function hashFile(path: string, update: (chunk: Buffer) => void): Promise<void> {
  const handle = await open(path, 'r');
  const buffer = Buffer.allocUnsafe(CHUNK);
  try {
    for (let position = 0; ; ) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) return;
      update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

function cli(cmd: string, args: string[], path: string): string {
  const r = spawnSync(cmd, [...args, path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return r.stdout.split(/\s+/)[0] ?? '';
}

const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'shuttle-bench-'));
const file = join(dir, 'data.bin');
const ramfs = join(dir, 'ramfs');
let ramfsMounted = false;
try {
  {
    const handle = await open(file, 'w');
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (let written = 0; written < SIZE; written += CHUNK) {
      randomFillSync(buffer);
      await handle.write(buffer, 0, Math.min(CHUNK, SIZE - written));
    }
    await handle.sync();
    await handle.close();
  }
  await hashFile(file, () => undefined); // make sure every page is cached before the cached-read lines

  const rows: Row[] = [];
  const add = async (name: string, from: string, fn: () => Promise<string> | string, reference?: string) => {
    const r = await best(fn);
    rows.push({ name, from, ...r, ...(reference ? { reference } : {}) });
  };

  await add('sha256sum', 'cache', () => cli('sha256sum', [], file));
  await add('xxhsum -H2 (xxh128)', 'cache', () => cli('xxhsum', ['-H2'], file));
  await add('xxhsum -H1 (xxh64)', 'cache', () => cli('xxhsum', ['-H1'], file));
  await add('md5sum', 'cache', () => cli('md5sum', [], file));

  await add(
    'sha256 node:crypto',
    'cache',
    async () => {
      const h = createHash('sha256');
      await hashFile(file, (c) => h.update(c));
      return h.digest('hex');
    },
    'sha256sum',
  );
  await add(
    'xxh128 hash-wasm',
    'cache',
    async () => {
      const h = await createXXHash128();
      h.init();
      await hashFile(file, (c) => h.update(c));
      return h.digest('hex');
    },
    'xxhsum -H2 (xxh128)',
  );
  await add(
    'xxh64 @node-rs/xxhash',
    'cache',
    async () => {
      const h = new Xxh64(0n);
      await hashFile(file, (c) => h.update(c));
      return h.digest().toString(16).padStart(16, '0');
    },
    'xxhsum -H1 (xxh64)',
  );
  await add(
    'md5 hash-wasm',
    'cache',
    async () => {
      const h = await createMD5();
      h.init();
      await hashFile(file, (c) => h.update(c));
      return h.digest('hex');
    },
    'md5sum',
  );
  await add(
    'MultiHasher sha256+xxh128',
    'cache',
    async () => {
      const h = await MultiHasher.create(['sha256', 'xxh128']);
      await hashFile(file, (c) => h.update(c));
      const d = h.digest();
      return `${d.sha256} ${d.xxh128}`;
    },
    'sha256sum',
  );

  try {
    mkdirSync(ramfs);
    execFileSync('mount', ['-t', 'ramfs', 'ramfs', ramfs], { stdio: 'ignore' });
    ramfsMounted = true;
  } catch {
    console.log('(could not mount a ramfs: buffered read-back lines left out)');
  }
  if (ramfsMounted) {
    copyFileSync(file, join(ramfs, 'data.bin'));
    for (const algorithms of [['sha256', 'xxh128'], ['xxh64']] as const) {
      await add(`readBack ${algorithms.join('+')} buffered`, 'ramfs', async () => {
        const r = await readBack(join(ramfs, 'data.bin'), algorithms);
        if (r.direct) throw new Error('ramfs unexpectedly accepted O_DIRECT');
        return Object.values(r.hashes).join(' ');
      });
    }
  }
  for (const algorithms of [['sha256', 'xxh128'], ['xxh64']] as const) {
    const buffered = `readBack ${algorithms.join('+')} buffered`;
    await add(
      `readBack ${algorithms.join('+')} O_DIRECT`,
      'disk',
      async () => {
        const r = await readBack(file, algorithms);
        if (!r.direct) throw new Error(`${file} is not on an O_DIRECT-capable filesystem; set BENCH_DIR`);
        return Object.values(r.hashes).join(' ');
      },
      ramfsMounted ? buffered : undefined,
    );
  }

  const byName = new Map(rows.map((r) => [r.name, r]));
  const agree = (r: Row): string => {
    const ref = r.reference ? byName.get(r.reference) : undefined;
    if (r.name.startsWith('MultiHasher')) {
      const want = `${byName.get('sha256sum')?.digest} ${byName.get('xxhsum -H2 (xxh128)')?.digest}`;
      return r.digest === want ? 'yes' : 'NO';
    }
    if (r.name.startsWith('readBack')) {
      const cached = r.name.includes('xxh64') ? byName.get('xxhsum -H1 (xxh64)')?.digest : `${byName.get('sha256sum')?.digest} ${byName.get('xxhsum -H2 (xxh128)')?.digest}`;
      return r.digest === cached ? 'yes' : 'NO';
    }
    return ref ? (r.digest === ref.digest ? 'yes' : 'NO') : '';
  };
  console.log(`\n${(SIZE / 1024 / 1024).toFixed(0)} MiB, best of ${RUNS}, MB = 10^6 bytes, node ${process.version}\n`);
  const header = ['what', 'reads from', 's', 'MB/s', 'speed ratio', 'relative to', 'digest agrees'];
  const lines = rows.map((r) => {
    const ref = r.reference ? byName.get(r.reference) : undefined;
    return [r.name, r.from, r.seconds.toFixed(2), mbps(r.seconds).toFixed(0), ref ? `${(ref.seconds / r.seconds).toFixed(2)}x` : '', ref ? ref.name : '', agree(r)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  for (const l of [header, widths.map((w) => '-'.repeat(w)), ...lines]) {
    console.log(l.map((c, i) => (i === 2 || i === 3 || i === 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  '));
  }
} finally {
  if (ramfsMounted) execFileSync('umount', [ramfs]);
  rmSync(dir, { recursive: true, force: true });
}
