// Upload benchmark: `shuttle upload` against Debian's `rclone copy` (s3 remote, provider Other), both
// sending the same local library to the same throwaway Swift s3api server, measured in one run.
// Run:  ./node_modules/.bin/node --import ./test/support/ts-resolve-hooks.mjs bench/upload.ts [MB]   (default 300)
// Memory: the same command with rss [MiB] (default 4096): one file of that size, Shuttle only, peak RSS against the 250 MB goal.
// As root the page cache is dropped before each timed run. Needs swift (see test/support/swift.ts) and rclone.
// BENCH_RUNS (default 1) rounds, each timing every side once, in alternating order; BENCH_BEFORE=path/to/main.js
// times an earlier build in the same rounds. Every Shuttle run uploads the same queue (a copy of the journal
// the untimed ingest left) into an emptied bucket; figures are medians over the rounds.
// Shuttle does its full verification (Content-MD5 and a signed payload SHA-256 per request, both checked by
// Swift, the bytes read hashed against the journal, HEAD with size, ETag and stored hashes); rclone checks
// the MD5 of what it sent.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { startSwift } from '../test/support/swift.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = process.env['BENCH_DIR'] ?? join(root, '.tmp', 'bench-upload');
const rssMode = process.argv[2] === 'rss';
const megabytes = Number(process.argv[rssMode ? 3 : 2] ?? (rssMode ? '4096' : '300'));
const RSS_GOAL_MB = 250;
const node = process.execPath;
// BENCH_SHUTTLE_MAIN: a build of one's own (other builds of dist/ may be under way meanwhile).
const main = process.env['BENCH_SHUTTLE_MAIN'] ?? join(root, 'dist', 'main.js');
// BENCH_SHUTTLE_NODE_ARGS: extra node flags for the timed Shuttle run, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
const shuttleNodeArgs = process.env['BENCH_SHUTTLE_NODE_ARGS'] ?? '';
const CONCURRENCY = 4;
const runs = Math.max(1, Number(process.env['BENCH_RUNS'] ?? '1'));
const before = process.env['BENCH_BEFORE'];

function sh(cmd: string, env: NodeJS.ProcessEnv = process.env): void {
  execFileSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'], env });
}

function dropCaches(): boolean {
  try {
    sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds used so far by the Swift servers (every process whose command is swift-*-server). */
function serverCpuSecs(): number {
  const ticksPerSec = 100;
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!name.startsWith('swift-')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process ended while listed
    }
  }
  return ticks / ticksPerSec;
}

interface Timing {
  secs: number;
  rssMb: number;
  /** User and system CPU seconds of the command and its children (GNU time). */
  userSecs: number;
  sysSecs: number;
  /** CPU seconds the Swift servers spent during the run. */
  serverSecs: number;
}

/** Seconds, CPU seconds and peak RSS (MB, GNU time) of one cold run of a shell command. */
function timed(label: string, cmd: string, env: NodeJS.ProcessEnv): Timing {
  const cold = dropCaches();
  const server0 = serverCpuSecs();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', 'bash', '-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], env });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const serverSecs = serverCpuSecs() - server0;
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr.slice(-3000)}`);
  const [rssKb, userSecs, sysSecs] = (r.stderr.trim().split('\n').at(-1) ?? '').split(' ').map(Number) as [number, number, number];
  process.stderr.write(`${label}: ${secs.toFixed(2)} s, CPU ${userSecs.toFixed(2)} user + ${sysSecs.toFixed(2)} sys${cold ? '' : ' (page cache NOT dropped: run as root)'}\n`);
  return { secs, rssMb: rssKb / 1024, userSecs, sysSecs, serverSecs };
}

if (!existsSync(main)) sh(`${node} ${join(root, 'scripts', 'build.mjs')}`);
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const card = join(work, 'card');
const lib = join(work, 'lib');
const state = join(work, 'state');
if (rssMode) {
  // One clip of `megabytes` MiB: the biggest multipart upload, alone in the queue, so it gets every slot.
  mkdirSync(join(card, 'DCIM', '100CANON'), { recursive: true });
  sh(`head -c ${megabytes * 1024 * 1024} /dev/urandom > ${join(card, 'DCIM', '100CANON', 'MVI_0001.MP4')}`);
} else {
  // 25 MB RAW + 8 MB JPEG per shot (plus sidecars): files of one or two parts, as a card holds them.
  const shots = Math.max(1, Math.round((megabytes * 1e6) / 33e6));
  sh(`${node} ${main} sample ${card} --count ${shots} --raw-size 25000000 --jpeg-size 8000000 --seed 11`);
}

const swift = await startSwift();
try {
  for (const b of ['bench-shuttle', 'bench-rclone', 'bench-warmup']) await swift.createBucket(b);
  // A fresh Swift pays for lazy imports, connection set-up and cache fills on its first object PUTs and HEADs:
  // done here, untimed, so that the side timed first does not pay them for both.
  const warm = swift.adminClient();
  const body = Buffer.alloc(4 * 1024 * 1024, 1);
  await Promise.all(
    [1, 2, 3, 4].map(async (i) => {
      await warm.send(new PutObjectCommand({ Bucket: 'bench-warmup', Key: `warm/${i}.bin`, Body: body, ContentLength: body.length }));
    }),
  );
  warm.destroy();
  const config = join(work, 'shuttle.toml');
  writeFileSync(config, `station = "bench"\n[upload]\nprovider = "swift"\nconcurrency = ${CONCURRENCY}\n`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: swift.accessKeyId,
    AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
    AWS_REGION: swift.region,
    AWS_ENDPOINT_URL_S3: swift.endpoint,
  };
  // Local verified copies to upload from, queued but not sent (not timed).
  const queue = (build: string, into: string): void =>
    sh(`${node} ${build} --state ${into} --config ${config} --log-level warn ingest ${card} --dest ${lib} --upload s3://bench-shuttle/lib --no-wait --json > /dev/null`, env);
  queue(main, state);
  // The earlier build gets a journal of its own making: it may not read a newer build's schema. Its ingest
  // finds the copies already there (the same bytes) and queues them alike.
  const stateBefore = join(work, 'state-before');
  if (before !== undefined) queue(before, stateBefore);
  const stateOf = (build: string): string => (build === main ? state : stateBefore);

  // The installed command (bin/shuttle.js) keeps V8's compiled code between runs; run directly, each build
  // gets the same cache the launcher would give it, filled by an untimed run (see warm-up below).
  const upload = (build: string, runState: string): string =>
    `NODE_COMPILE_CACHE=${join(work, 'compile-cache', build.replace(/\W/g, '_'))} ${node} ${shuttleNodeArgs} ${build} --state ${runState} --config ${config} --log-level warn upload --json > /dev/null`;
  if (rssMode) {
    const shuttle = timed('shuttle upload', upload(main, state), env);
    const mb = megabytes * 1.048576;
    process.stdout.write(`\nUpload of one ${megabytes} MiB file to a local Swift s3api, cold cache\n`);
    process.stdout.write(`shuttle ${shuttle.secs.toFixed(2)} s (${(mb / shuttle.secs).toFixed(0)} MB/s), peak RSS ${shuttle.rssMb.toFixed(0)} MB (goal ≤ ${RSS_GOAL_MB} MB)\n`);
    process.exitCode = shuttle.rssMb <= RSS_GOAL_MB ? 0 : 1;
  } else {
    // rclone reads AWS_CA_BUNDLE for plain-http endpoints too and then fails (LoadCustomCABundleError).
    const rcloneEnv: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_CA_BUNDLE: undefined,
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENDPOINT: swift.endpoint,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: swift.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: swift.secretAccessKey,
      RCLONE_CONFIG_BENCH_REGION: swift.region,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    };
    delete rcloneEnv['AWS_CA_BUNDLE'];
    const admin = swift.adminClient();
    const sides: Array<{ name: string; bucket: string; run: () => Timing; timings: Timing[] }> = [
      { name: 'shuttle', bucket: 'bench-shuttle', run: () => timed('shuttle upload', upload(main, fresh(state)), env), timings: [] },
      ...(before === undefined
        ? []
        : [{ name: 'before', bucket: 'bench-shuttle', run: () => timed('shuttle upload (before)', upload(before, fresh(stateBefore)), env), timings: [] }]),
      {
        name: 'rclone',
        bucket: 'bench-rclone',
        run: () =>
          timed(
            'rclone copy',
            `rclone copy ${lib} bench:bench-rclone/lib --exclude '.shuttle/**' --exclude 'ascmhl/**' --transfers ${CONCURRENCY} --s3-upload-concurrency ${CONCURRENCY} --config /dev/null`,
            rcloneEnv,
          ),
        timings: [],
      },
    ];
    // Untimed: fills each build's compile cache, as a user's earlier runs of the command would have.
    for (const build of before === undefined ? [main] : [main, before]) {
      sh(upload(build, fresh(stateOf(build))), env);
      await emptyBucket(admin, 'bench-shuttle');
    }
    let reference: { objects: number; bytes: number } | undefined;
    for (let round = 0; round < runs; round++) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
        await emptyBucket(admin, side.bucket);
        side.timings.push(side.run());
        const stored = await count(admin, side.bucket);
        reference ??= stored;
        if (stored.objects !== reference.objects || stored.bytes !== reference.bytes) {
          throw new Error(`the uploads differ: ${side.name} ${JSON.stringify(stored)}, first ${JSON.stringify(reference)}`);
        }
      }
    }
    admin.destroy();

    const [shuttle, ...others] = sides.map((side) => ({ name: side.name, t: medianTiming(side.timings) }));
    const rclone = others.find((o) => o.name === 'rclone')!.t;
    const old = others.find((o) => o.name === 'before')?.t;
    const s = reference!;
    const table = [
      ['comparison', 'shuttle s', 'rclone s', 'ratio', 'goal'],
      [
        `upload ${s.objects} files, ${(s.bytes / 1e6).toFixed(0)} MB, ${CONCURRENCY} transfers`,
        shuttle!.t.secs.toFixed(2),
        rclone.secs.toFixed(2),
        (shuttle!.t.secs / rclone.secs).toFixed(2),
        '≤ 1.0',
      ],
      ...(old === undefined ? [] : [['the same, before', old.secs.toFixed(2), rclone.secs.toFixed(2), (old.secs / rclone.secs).toFixed(2), '']]),
    ];
    const width = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    process.stdout.write(`\nUpload benchmark to a local Swift s3api, cold cache per run, median of ${runs} interleaved rounds\n`);
    for (const row of table) process.stdout.write(`${row.map((c, i) => c.padEnd(width[i]!)).join('  ')}\n`);
    for (const side of sides) {
      process.stdout.write(
        `per round, ${side.name}: ${side.timings.map((t) => t.secs.toFixed(2)).join(' / ')} s, ratio to rclone ${side.timings.map((t, i) => (t.secs / sides.at(-1)!.timings[i]!.secs).toFixed(2)).join(' / ')}\n`,
      );
    }
    const cpu = (t: Timing): string => `${(t.userSecs + t.sysSecs).toFixed(2)} s (${t.userSecs.toFixed(2)} user + ${t.sysSecs.toFixed(2)} sys)`;
    process.stdout.write(
      `peak RSS: shuttle ${shuttle!.t.rssMb.toFixed(0)} MB${old === undefined ? '' : `, before ${old.rssMb.toFixed(0)} MB`}, rclone ${rclone.rssMb.toFixed(0)} MB\n`,
    );
    process.stdout.write(`CPU: shuttle ${cpu(shuttle!.t)}${old === undefined ? '' : `, before ${cpu(old)}`}, rclone ${cpu(rclone)}\n`);
    process.stdout.write(
      `Swift servers' CPU during the run: shuttle ${shuttle!.t.serverSecs.toFixed(2)} s${old === undefined ? '' : `, before ${old.serverSecs.toFixed(2)} s`}, rclone ${rclone.serverSecs.toFixed(2)} s\n`,
    );
    if (old !== undefined) {
      process.stdout.write(
        `after / before: time ${(shuttle!.t.secs / old.secs).toFixed(2)}, CPU ${((shuttle!.t.userSecs + shuttle!.t.sysSecs) / (old.userSecs + old.sysSecs)).toFixed(2)}\n`,
      );
    }
  }
} finally {
  await swift.stop();
  rmSync(work, { recursive: true, force: true });
}

/** A copy of the journal the ingest left, so that every run uploads the same queue from the start. */
function fresh(from: string): string {
  const to = `${from}-run`;
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true });
  return to;
}

async function count(client: S3Client, bucket: string): Promise<{ objects: number; bytes: number }> {
  let objects = 0;
  let bytes = 0;
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of r.Contents ?? []) {
      objects++;
      bytes += o.Size ?? 0;
    }
    token = r.NextContinuationToken;
  } while (token !== undefined);
  return { objects, bytes };
}

async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (r.Contents ?? []).map((o) => o.Key).filter((k): k is string => k !== undefined);
    if (keys.length === 0) return;
    await Promise.all(keys.map((Key) => client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))));
  }
}

/** Per field, the median over the rounds (an odd count gives a value measured; an even one, the lower middle). */
function medianTiming(ts: Timing[]): Timing {
  const mid = (f: (t: Timing) => number): number => {
    const v = ts.map(f).sort((a, b) => a - b);
    return v[Math.floor((v.length - 1) / 2)]!;
  };
  return { secs: mid((t) => t.secs), rssMb: mid((t) => t.rssMb), userSecs: mid((t) => t.userSecs), sysSecs: mid((t) => t.sysSecs), serverSecs: mid((t) => t.serverSecs) };
}
