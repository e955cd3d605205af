// Latency of one big file's verified copy: from its first byte read to its copy verified (read back past
// the page cache, published, journaled), and the part of it after its last byte was written, which is
// what the read-back adds to the copy. The source is a folder whose file is in the page cache (a fast
// camera or card), or, with --source-mbps N, comes at N MB/s (a camera on USB or Wi-Fi: the disk waits for
// it); the destination's cache is dropped before each run (as root).
//
//   ./node_modules/.bin/node bench/verify-latency.ts [MB] [--before TREE] [--source-mbps N]
//
// TREE: a checkout of an earlier commit's sources (e.g. `git archive <commit> src package.json | tar -x -C
// TREE`), timed in the same interleaved rounds. Each run is a fresh process (its own hash worker).
// Prints medians of BENCH_RUNS (default 7) runs: total and after-written milliseconds, CPU seconds.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { dropCaches, root, sh, work } from './common.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { before: { type: 'string' }, child: { type: 'string' }, 'source-mbps': { type: 'string' } } });
const hooks = join(root, 'test', 'support', 'ts-resolve-hooks.mjs');

if (values.child !== undefined) {
  // One run, in a process of its own: ingest the folder, print the timings as JSON.
  const [src, dest, state] = positionals as [string, string, string];
  const tree = values.child;
  const { runIngest } = await import(join(tree, 'src/ingest/pipeline.ts'));
  const { FolderSource } = await import(join(tree, 'src/device/card/folder-source.ts'));
  const { Journal } = await import(join(tree, 'src/store/journal.ts'));
  const { createLogger } = await import(join(tree, 'src/log.ts'));
  const journal = Journal.open(state);
  const source = new FolderSource(src);
  const mbps = Number(values['source-mbps'] ?? '0');
  if (mbps > 0) {
    // Each chunk copied (the source lends its buffer only until the next pull) and let out at the given rate.
    const open = source.open.bind(source);
    source.open = async (item: unknown, opts: unknown) => {
      const stream = await open(item, opts);
      const t0 = performance.now();
      let n = 0;
      return Readable.from(
        (async function* () {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            n += chunk.length;
            const wait = t0 + n / (mbps * 1000) - performance.now();
            const copy = Buffer.from(chunk);
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            yield copy;
          }
        })(),
        { objectMode: false },
      );
    };
  }
  const cpu0 = process.cpuUsage();
  const t: Record<string, number> = {};
  await runIngest({
    sources: [source],
    destinations: [{ path: dest }],
    journal,
    settings: {
      template: '{name}',
      manifestHashes: ['xxh128'],
      job: '',
      timeZone: 'UTC',
      verifyRetries: 2,
      changeRetries: 2,
      station: 'bench',
      lockWaitMs: 0,
      tool: { name: 'shuttle', version: 'bench' },
    },
    logger: createLogger({ level: 'warn' }),
    signal: new AbortController().signal,
    onRead: () => {
      t.first = performance.now();
      return { chunk: () => {}, end: () => void (t.written = performance.now()) };
    },
    onFile: (f: { state: string }) => {
      if (f.state !== 'verified') throw new Error(`not verified: ${JSON.stringify(f)}`);
      t.verified = performance.now();
    },
  });
  const cpu = process.cpuUsage(cpu0);
  journal.close();
  process.stdout.write(`${JSON.stringify({ total: t.verified! - t.first!, afterWritten: t.verified! - t.written!, cpu: (cpu.user + cpu.system) / 1e6 })}\n`);
  process.exit(0);
}

const mb = Number(positionals[0] ?? '25');
const runs = Number(process.env.BENCH_RUNS ?? '7');
const trees: Array<[string, string]> = [['after', root], ...(values.before ? ([['before', resolve(values.before)]] as Array<[string, string]>) : [])];
const base = join(work, 'latency');
const src = join(base, 'src');
rmSync(base, { recursive: true, force: true });
mkdirSync(src, { recursive: true });
const bytes = Buffer.alloc(mb * 1_000_000);
for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
writeFileSync(join(src, 'IMG_0001.CR3'), bytes);
utimesSync(join(src, 'IMG_0001.CR3'), new Date('2026-04-01T10:00:00Z'), new Date('2026-04-01T10:00:00Z'));

type Result = { total: number; afterWritten: number; cpu: number };
const results = new Map<string, Result[]>(trees.map(([name]) => [name, []]));
for (let round = 0; round < runs; round++) {
  for (const [name, tree] of round % 2 === 0 ? trees : [...trees].reverse()) {
    const dest = join(base, 'dest');
    const state = join(base, 'state');
    rmSync(dest, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
    dropCaches();
    // The source back in the cache: the file comes in as fast as a quick camera or card gives it.
    sh(`cat ${join(src, 'IMG_0001.CR3')} > /dev/null`);
    const rate = values['source-mbps'] === undefined ? [] : ['--source-mbps', values['source-mbps']];
    const r = spawnSync(
      process.execPath,
      ['--experimental-transform-types', '--no-warnings', '--import', hooks, import.meta.filename, '--child', tree, ...rate, src, dest, state],
      {
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) throw new Error(`${name} run failed: ${r.stderr}`);
    const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Result;
    results.get(name)!.push(res);
    process.stderr.write(`${name}: ${res.total.toFixed(0)} ms, after written ${res.afterWritten.toFixed(0)} ms, CPU ${res.cpu.toFixed(2)} s\n`);
  }
}
rmSync(base, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const how = values['source-mbps'] === undefined ? 'from the page cache' : `at ${values['source-mbps']} MB/s`;
process.stdout.write(`\nOne ${mb} MB file read ${how}, first byte read to copy verified, median of ${runs} interleaved runs\n`);
for (const [name] of trees) {
  const rs = results.get(name)!;
  process.stdout.write(
    `${name.padEnd(7)} total ${median(rs.map((r) => r.total))
      .toFixed(0)
      .padStart(5)} ms   after written ${median(rs.map((r) => r.afterWritten))
      .toFixed(0)
      .padStart(5)} ms   CPU ${median(rs.map((r) => r.cpu)).toFixed(2)} s\n`,
  );
}
