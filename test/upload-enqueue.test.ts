import { afterEach, beforeEach, expect, test } from 'vitest';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Journal } from '../src/store/journal.js';
import { ingestJson, runCli } from './support/cli.js';
import { killLeftoverDaemons, spawnDaemon, until, type RunningDaemon } from './support/daemon-helpers.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * Verified files that could not be put in the upload queue would stay local while the run looked fine:
 * the ingest (CLI) and the job (daemon) fail instead, naming the error. The queue write fails for real:
 * a trigger in the journal refuses every new upload_queue row, as a full or broken disk would.
 */
let work: { path: string; cleanup: () => Promise<void> };
let state: string;
let dest: string;
const daemons: RunningDaemon[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-enqueue-');
  state = join(work.path, 'state');
  dest = join(work.path, 'lib');
  Journal.open(state).close();
  const db = new DatabaseSync(join(state, 'journal.sqlite'));
  try {
    db.exec(`CREATE TRIGGER refuse_queue BEFORE INSERT ON upload_queue BEGIN SELECT RAISE(ABORT, 'upload queue refused (test)'); END`);
  } finally {
    db.close();
  }
});
afterEach(async () => {
  killLeftoverDaemons(daemons);
  await work.cleanup();
});

test('ingest-with-upload-exits-1-naming-the-error-when-its-files-cannot-be-queued', async () => {
  const card = join(work.path, 'card');
  await writeBytes(join(card, 'one.bin'), bytes(40_000, 5), new Date('2026-02-01T10:00:00Z'));
  const r = await ingestJson([card, '--dest', dest, '--state', state, '--upload', 's3://bucket/cart', '--no-wait']);
  expect(r.code, r.stderr).toBe(1);
  // The copies were made and say so; the run failed because the upload was not queued.
  expect(r.summary).toMatchObject({ files: 1, copied: 1, failed: 0, status: 'failed' });
  expect(r.summary.errors).toEqual([
    { code: 'JOURNAL', message: expect.stringMatching(/^could not queue 1 files for upload to s3:\/\/bucket\/cart: .*upload queue refused \(test\)/) as unknown as string },
  ]);
});

test('a-daemon-job-fails-naming-the-error-when-its-files-cannot-be-queued-for-upload', async () => {
  const hot = join(work.path, 'hot');
  const staging = join(work.path, 'staging');
  await mkdir(hot, { recursive: true });
  await writeBytes(join(staging, 'IMG_0001.JPG'), bytes(40_000, 6));
  const config = join(work.path, 'shuttle.toml');
  await writeFile(config, `[ingest]\ntime_zone = "UTC"\n[upload]\ntarget = "s3://bucket/daemon"\n`);
  const env = {
    SHUTTLE_DAEMON_CONTROL_SOCKET: join(work.path, 'run', 'control.sock'),
    SHUTTLE_LOCK_DIR: join(work.path, 'locks'),
    SHUTTLE_DAEMON_SETTLE_MS: '200',
    SHUTTLE_DAEMON_BATCH_MS: '100',
    SHUTTLE_DAEMON_USB_CAMERAS: 'false',
  };
  const d = await spawnDaemon(['--config', config, '--state', state, '--dest', dest, '--hot-folder', hot, '--log-level', 'info'], env);
  daemons.push(d);
  await rename(join(staging, 'IMG_0001.JPG'), join(hot, 'IMG_0001.JPG'));
  const finished = (
    await until(
      'the job to finish',
      async () => d.logs,
      (logs) => logs.some((l) => l.msg === 'job done' || l.msg === 'job failed'),
    )
  ).find((l) => l.msg === 'job done' || l.msg === 'job failed');
  expect(finished).toMatchObject({
    msg: 'job failed',
    reason: expect.stringMatching(/^could not queue 1 files for upload to s3:\/\/bucket\/daemon: .*upload queue refused/) as unknown as string,
  });
  const status = await runCli(['status', '--json', '--state', state, '--config', config], { env });
  expect(status.code, status.stderr).toBe(0);
  const job = (
    JSON.parse(status.stdout) as {
      daemon: { jobs: { recent: Array<{ state: string; result: { status: string; copied: number; errors: Array<{ code: string; message: string }> } }> } };
    }
  ).daemon.jobs.recent[0];
  expect(job).toMatchObject({ state: 'failed', result: { status: 'failed', copied: 1 } });
  expect(job?.result.errors.map((e) => e.code)).toEqual(['JOURNAL']);
  d.child.kill('SIGTERM');
  expect(await d.exited).toMatchObject({ code: 0 });
});
