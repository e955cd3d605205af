/**
 * kill -9 at random points of multipart uploads to a real S3 server, restarting each time: the object
 * must end up complete and correct, no part may be sent again once its completion was durably recorded,
 * and no unfinished multipart upload may be left on the server. The multipart state lives in the journal,
 * as the product keeps it (JournalUploadStateStore).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { MiB } from '../src/upload/multipart.js';
import { Journal } from '../src/store/journal.js';
import { JournalUploadStateStore } from '../src/upload/journal-state.js';
import { startSwift, type SwiftServer } from './support/swift.js';
import type { KillChildConfig } from './support/upload-kill-child.js';
import { expectedMultipartEtag, headOrUndefined, sha256OfObject, unfinishedUploads, writeTestFile, type TestFile } from './support/upload-fixtures.js';

const BUCKET = 'shuttle-kill';
const KILLS_WANTED = 20;
const PART_SIZE = 5 * MiB;
const HOOKS = join(process.cwd(), 'test/support/ts-resolve-hooks.mjs');
const CHILD = join(process.cwd(), 'test/support/upload-kill-child.ts');

let swift: SwiftServer;
let admin: S3Client;
let dir: string;
let file: TestFile;

interface RunOutcome {
  exit: 'completed' | 'killed';
  events: string[];
  killedAfter: string | undefined;
}

beforeAll(async () => {
  swift = await startSwift();
  await swift.createBucket(BUCKET);
  admin = swift.adminClient();
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-kill-'));
  file = await writeTestFile(dir, 'card-dump.mxf', 6 * PART_SIZE + 4321);
});

afterAll(async () => {
  admin?.destroy();
  await swift?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const randomInt = (min: number, max: number): number => min + Math.floor(Math.random() * (max - min + 1));

/**
 * Where to kill: after a random delay, or right after the child reports a step. The steps include the
 * narrow windows that matter most: an upload created but not yet recorded, a part confirmed by the server
 * but not yet recorded, a completion not yet recorded.
 */
type KillPlan = { kind: 'time'; ms: number } | { kind: 'event'; prefix: string; occurrence: number; delayMs: number };
const EVENT_TRIGGERS = ['done CreateMultipartUpload', 'done UploadPart', 'recorded', 'send UploadPart', 'done CompleteMultipartUpload', 'begin', 'send ListParts', ''];

function planKill(run: number): KillPlan {
  if (run % 2 === 0) return { kind: 'time', ms: randomInt(150, 2200) };
  const prefix = EVENT_TRIGGERS[Math.floor(run / 2) % EVENT_TRIGGERS.length] ?? '';
  // '' = any step: the k-th line the child prints.
  return { kind: 'event', prefix, occurrence: prefix === '' ? randomInt(1, 24) : randomInt(1, 3), delayMs: randomInt(0, 10) };
}

/** Runs the child once and kill -9s it as planned (unless it finishes first). */
function runChild(cfg: KillChildConfig, plan: KillPlan): Promise<RunOutcome> {
  const child = spawn(process.execPath, ['--import', HOOKS, CHILD, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: string[] = [];
  let stderr = '';
  let killed = false;
  let killedAfter: string | undefined;
  const kill = (): void => {
    if (killed || child.exitCode !== null) return;
    killed = true;
    killedAfter = events.at(-1);
    child.kill('SIGKILL');
  };
  let timer: NodeJS.Timeout | undefined;
  if (plan.kind === 'time') timer = setTimeout(kill, plan.ms);
  let seen = 0;
  let pending = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      events.push(line);
      if (plan.kind === 'event' && line.startsWith(plan.prefix) && ++seen === plan.occurrence) {
        if (plan.delayMs === 0) kill();
        else setTimeout(kill, plan.delayMs);
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (killed && signal === 'SIGKILL') resolve({ exit: 'killed', events, killedAfter });
      else if (code === 0 && events.some((e) => e.startsWith('result '))) resolve({ exit: 'completed', events, killedAfter: undefined });
      else reject(new Error(`upload child failed (code ${code}, signal ${signal}):\n${stderr}\nlast events: ${events.slice(-5).join(' | ')}`));
    });
  });
}

describe('uploads killed with SIGKILL and restarted', () => {
  it(`survive ${KILLS_WANTED}+ kills mid-upload: object correct, no recorded part re-sent, no orphaned uploads`, { timeout: 170_000 }, async () => {
    const stateDir = join(dir, 'state');
    const journal = Journal.open(stateDir);
    onTestFinished(() => journal.close());
    const store = new JournalUploadStateStore(journal);
    const expectedEtag = `"${await expectedMultipartEtag(file.path, PART_SIZE)}"`;
    let kills = 0;
    let runs = 0;
    let resumedRuns = 0;
    const killPoints: string[] = [];
    const violations: string[] = [];

    for (let round = 1; kills < KILLS_WANTED; round++) {
      const key = `kill/round-${round}/card-dump.mxf`;
      for (let attempt = 1; ; attempt++) {
        expect(attempt, `round ${round} never completed`).toBeLessThan(60);
        // What was durable before this run: these parts must not be sent again under this upload id.
        const before = await store.load({ bucket: BUCKET, key });
        const recorded = new Set(before?.status === 'uploading' ? before.parts.map((p) => p.partNumber) : []);
        if (recorded.size > 0) resumedRuns++;
        const sendLog = join(dir, `sends-${round}-${attempt}.log`);
        const outcome = await runChild(
          {
            endpoint: swift.endpoint,
            accessKeyId: swift.accessKeyId,
            secretAccessKey: swift.secretAccessKey,
            bucket: BUCKET,
            key,
            path: file.path,
            size: file.size,
            sha256: file.sha256,
            stateDir,
            sendLog,
            partSize: PART_SIZE,
            concurrency: 2,
            bytesPerSecond: 12 * MiB,
          },
          planKill(runs),
        );
        runs++;
        const sends = (await readFile(sendLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
        for (const line of sends) {
          const [uploadId, part] = line.split(' ');
          if (uploadId === before?.uploadId && recorded.has(Number(part))) violations.push(`round ${round} run ${attempt}: re-sent recorded part ${part}`);
        }
        if (outcome.exit === 'completed') break;
        // Count kills that hit the upload itself, not the process start-up or its exit after the result.
        if (outcome.events.length > 0 && !outcome.events.some((e) => e.startsWith('result '))) {
          kills++;
          killPoints.push(outcome.killedAfter ?? '(start)');
        }
      }
      const head = await headOrUndefined(admin, BUCKET, key);
      expect(head?.ContentLength).toBe(file.size);
      expect(head?.ETag).toBe(expectedEtag);
      expect(head?.Metadata?.['sha256']).toBe(file.sha256);
      expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: file.sha256, size: file.size });
      expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
      expect((await store.load({ bucket: BUCKET, key }))?.status).toBe('completed');
    }

    expect(violations).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(KILLS_WANTED);
    expect(resumedRuns).toBeGreaterThan(0);
    // Where the kills landed, for whoever reads the test output.
    console.info(`kill -9 test: ${kills} kills in ${runs} runs; killed after: ${killPoints.join(', ')}`);
  });
});
