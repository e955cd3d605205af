import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { JobScheduler, type JobContext, type JobOutcome, type JobSpec } from '../src/daemon/jobs.js';
import { RateMeter, etaSeconds } from '../src/daemon/status.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { captureLog } from './support/daemon-helpers.js';

/**
 * A job body the test steers: it runs until the test finishes it, or until its signal aborts (then it
 * unwinds the way the ingest pipeline does, reporting itself interrupted).
 */
class Steered {
  ctx: JobContext | undefined;
  started = false;
  #finish!: (o: JobOutcome) => void;
  #fail!: (e: unknown) => void;

  spec(key: string, resources: string[] = [], extra: Partial<JobSpec> = {}): JobSpec {
    return {
      key,
      kind: 'folder',
      label: key,
      origin: 'test',
      resources,
      run: (ctx) => {
        this.ctx = ctx;
        this.started = true;
        return new Promise<JobOutcome>((resolve, reject) => {
          this.#finish = resolve;
          this.#fail = reject;
          ctx.signal.addEventListener('abort', () => resolve({ status: 'interrupted' }), { once: true });
        });
      },
      ...extra,
    };
  }

  finish(o: JobOutcome = { status: 'complete' }): void {
    this.#finish(o);
  }

  fail(e: unknown): void {
    this.#fail(e);
  }
}

/**
 * The scheduler decides synchronously and starts a job's work on a microtask: once one event-loop turn
 * has passed, every job it started is in its run() and every decision can be checked. No clock involved.
 */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function scheduler(maxRunning = 4) {
  const log = captureLog();
  return { s: new JobScheduler({ logger: log.logger, maxRunning }), log };
}

describe('job scheduler', () => {
  test('a-job-goes-queued-running-done-and-each-state-change-is-a-log-line-and-in-its-history', async () => {
    const { s, log } = scheduler();
    const body = new Steered();
    const { job, created } = s.submit(body.spec('card-a'));
    expect(created).toBe(true);
    await tick();
    expect(s.get(job.id)?.state).toBe('running');
    body.finish({ status: 'complete', result: { status: 'complete', files: 3, copied: 3, alreadyVerified: 0, failed: 0, bytes: 300, errors: [], skipped: [] } });
    const final = await s.wait(job.id);
    expect(final.state).toBe('done');
    expect(final.history.map((h) => h.state)).toEqual(['queued', 'running', 'done']);
    const stateLines = log.lines.filter((l) => l['job'] === job.id && typeof l['state'] === 'string' && /^job /.test(l.msg ?? ''));
    expect(stateLines.map((l) => l.msg)).toEqual(['job queued', 'job running', 'job done']);
    expect(stateLines[2]).toMatchObject({ jobKey: 'card-a', result: { copied: 3 } });
    expect(s.totals).toMatchObject({ jobs: 1, filesCopied: 3, bytesCopied: 300, failedJobs: 0 });
  });

  test('a-waiter-whose-signal-aborts-stops-waiting-with-the-reason-while-the-job-runs-on', async () => {
    const { s } = scheduler();
    const body = new Steered();
    const { job } = s.submit(body.spec('card-a'));
    await tick();
    const client = new AbortController();
    const waiting = s.wait(job.id, client.signal);
    const gone = new ShuttleError('ABORTED', 'the client disconnected');
    client.abort(gone);
    await expect(waiting).rejects.toBe(gone);
    await expect(s.wait(job.id, client.signal)).rejects.toBe(gone);
    expect(body.ctx!.signal.aborted).toBe(false);
    expect(s.get(job.id)?.state).toBe('running');
    body.finish();
    const other = new AbortController();
    expect((await s.wait(job.id, other.signal)).state).toBe('done');
  });

  test('a-source-already-queued-or-running-is-not-started-twice', async () => {
    const { s } = scheduler();
    const first = new Steered();
    const second = new Steered();
    const a = s.submit(first.spec('card-a'));
    await tick();
    const again = s.submit(second.spec('card-a'));
    expect(again.created).toBe(false);
    expect(again.job.id).toBe(a.job.id);
    await tick();
    expect(second.started).toBe(false);
    first.finish();
    await s.wait(a.job.id);
    // Once finished, the same source is new work again.
    expect(s.submit(second.spec('card-a')).created).toBe(true);
  });

  test('cancelling-one-job-aborts-only-its-own-signal', async () => {
    const { s } = scheduler();
    const a = new Steered();
    const b = new Steered();
    const ja = s.submit(a.spec('camera-1', ['dest-1'])).job;
    const jb = s.submit(b.spec('card-2', ['dest-2'])).job;
    await tick();
    expect(a.started && b.started).toBe(true);
    s.cancel(ja.id);
    const fa = await s.wait(ja.id);
    expect(fa.state).toBe('cancelled');
    expect(a.ctx!.signal.aborted).toBe(true);
    expect(b.ctx!.signal.aborted).toBe(false);
    expect(s.get(jb.id)?.state).toBe('running');
    b.finish();
    expect((await s.wait(jb.id)).state).toBe('done');
  });

  test('a-detached-device-cancels-its-job-by-key-with-DEVICE_GONE', async () => {
    const { s } = scheduler();
    const body = new Steered();
    const { job } = s.submit(body.spec('usb:1-2'));
    await tick();
    expect(s.cancelKey('usb:1-2', 'detach', 'camera unplugged')?.id).toBe(job.id);
    const final = await s.wait(job.id);
    expect(final.state).toBe('cancelled');
    expect(final.history.at(-1)?.reason).toBe('camera unplugged');
    const reason: unknown = body.ctx!.signal.reason;
    expect(isShuttleError(reason, 'DEVICE_GONE')).toBe(true);
    expect(s.cancelKey('usb:9-9', 'detach')).toBeUndefined();
  });

  test('jobs-sharing-a-destination-take-turns-while-a-job-on-another-destination-runs-alongside', async () => {
    const { s } = scheduler();
    const a = new Steered();
    const b = new Steered();
    const c = new Steered();
    const ja = s.submit(a.spec('card-a', ['dest-1'])).job;
    const jb = s.submit(b.spec('card-b', ['dest-1'])).job;
    const jc = s.submit(c.spec('card-c', ['dest-2'])).job;
    await tick();
    expect([a.started, b.started, c.started]).toEqual([true, false, true]);
    expect(s.get(jb.id)?.waitingFor).toBe(`dest-1 (used by job ${ja.id})`);
    a.finish();
    await s.wait(ja.id);
    await tick();
    expect(b.started).toBe(true);
    b.finish();
    c.finish();
    expect((await s.wait(jb.id)).state).toBe('done');
    expect((await s.wait(jc.id)).state).toBe('done');
  });

  test('no-more-than-max-running-jobs-run-at-once', async () => {
    const { s } = scheduler(2);
    const bodies = [new Steered(), new Steered(), new Steered()];
    const jobs = bodies.map((b, i) => s.submit(b.spec(`card-${i}`)).job);
    await tick();
    expect(bodies.map((b) => b.started)).toEqual([true, true, false]);
    expect(s.get(jobs[2]!.id)?.waitingFor).toMatch(/free slot/);
    bodies[1]!.finish();
    await s.wait(jobs[1]!.id);
    await tick();
    expect(bodies[2]!.started).toBe(true);
  });

  test('cancelling-a-queued-job-ends-it-at-once-without-running-it', async () => {
    const { s } = scheduler(1);
    const a = new Steered();
    const b = new Steered();
    s.submit(a.spec('card-a'));
    const jb = s.submit(b.spec('card-b')).job;
    await tick();
    expect(s.cancel(jb.id)?.state).toBe('cancelled');
    a.finish();
    await tick();
    expect(b.started).toBe(false);
    expect((await s.wait(jb.id)).history.map((h) => h.state)).toEqual(['queued', 'cancelled']);
  });

  test('a-job-that-throws-ends-failed-with-its-error-code-and-the-next-job-starts', async () => {
    const { s, log } = scheduler(1);
    const a = new Steered();
    const b = new Steered();
    const ja = s.submit(a.spec('card-a')).job;
    const jb = s.submit(b.spec('card-b')).job;
    await tick();
    a.fail(new ShuttleError('DEST_MARKER_MISSING', '/mnt/backup is not the destination it was'));
    const fa = await s.wait(ja.id);
    expect(fa.state).toBe('failed');
    expect(fa.error).toEqual({ code: 'DEST_MARKER_MISSING', message: '/mnt/backup is not the destination it was' });
    expect(log.lines.some((l) => l['job'] === ja.id && l.msg === 'job failed' && l['state'] === 'failed')).toBe(true);
    await tick();
    expect(b.started).toBe(true);
    expect(s.totals.failedJobs).toBe(1);
    b.finish();
    await s.wait(jb.id);
  });

  test('an-outcome-with-failed-files-ends-failed-and-names-the-first-error', async () => {
    const { s } = scheduler();
    const a = new Steered();
    const { job } = s.submit(a.spec('card-a'));
    await tick();
    a.finish({
      status: 'failed',
      result: {
        status: 'failed',
        files: 2,
        copied: 1,
        alreadyVerified: 0,
        skipped: [],
        failed: 1,
        bytes: 10,
        errors: [{ code: 'SOURCE_UNREADABLE', message: 'reading IMG_2.CR3 failed: EIO' }],
      },
    });
    const f = await s.wait(job.id);
    expect(f.state).toBe('failed');
    expect(f.history.at(-1)?.reason).toBe('reading IMG_2.CR3 failed: EIO');
  });

  test('shutdown-interrupts-running-and-queued-jobs-waits-for-them-to-unwind-and-refuses-new-ones', async () => {
    const { s } = scheduler(1);
    const a = new Steered();
    const b = new Steered();
    let unwound = false;
    const ja = s.submit(
      a.spec('card-a', [], {
        run: async (ctx) => {
          a.started = true;
          await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
          await sleep(50); // removing temp files, finishing the journal
          unwound = true;
          return { status: 'interrupted' };
        },
      }),
    ).job;
    const jb = s.submit(b.spec('card-b')).job;
    await tick();
    await s.shutdown('SIGTERM');
    expect(unwound).toBe(true);
    expect(s.get(ja.id)?.state).toBe('interrupted');
    expect(s.get(jb.id)?.state).toBe('interrupted');
    expect(b.started).toBe(false);
    expect(() => s.submit(new Steered().spec('card-c'))).toThrow(/shutting down/);
  });

  test('progress-gives-a-rate-and-an-eta-while-running', async () => {
    const { s } = scheduler();
    const a = new Steered();
    const { job } = s.submit(a.spec('card-a'));
    await tick();
    a.ctx!.progress({ filesTotal: 10, filesDone: 0, bytesTotal: 10_000_000, bytesDone: 0 });
    await sleep(250);
    a.ctx!.progress({ filesTotal: 10, filesDone: 2, bytesTotal: 10_000_000, bytesDone: 2_000_000 });
    const snap = s.get(job.id)!;
    expect(snap.progress).toMatchObject({ filesDone: 2, bytesDone: 2_000_000 });
    expect(snap.rateBytesPerSec).toBeGreaterThan(2_000_000); // 2 MB in ~0.25 s
    expect(snap.rateBytesPerSec).toBeLessThan(9_000_000);
    expect(snap.etaSeconds).toBeGreaterThanOrEqual(1);
    a.finish();
    expect((await s.wait(job.id)).rateBytesPerSec).toBeUndefined();
  });

  test('finished-jobs-are-kept-for-status-up-to-a-limit-newest-first', async () => {
    const log = captureLog();
    const s = new JobScheduler({ logger: log.logger, keepFinished: 2 });
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      const b = new Steered();
      const { job } = s.submit(b.spec(`card-${i}`));
      ids.push(job.id);
      await tick();
      b.finish();
      await s.wait(job.id);
    }
    expect(s.snapshot().recent.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(s.get(ids[0]!)).toBeUndefined();
    await expect(s.wait(ids[0]!)).rejects.toThrow(/no job/);
  });
});

describe('rate meter', () => {
  test('the-rate-is-the-slope-over-the-window-so-a-stall-shows', () => {
    let now = 0;
    const m = new RateMeter(10_000, () => now);
    m.sample(0);
    expect(m.rate()).toBeUndefined();
    now = 1_000;
    m.sample(50_000_000);
    expect(m.rate()).toBe(50_000_000);
    now = 2_000; // nothing more read for a second
    expect(m.rate()).toBe(25_000_000);
    now = 30_000;
    m.sample(60_000_000);
    now = 31_000;
    m.sample(70_000_000);
    // Only the last sample before the window and those in it count: 10 MB in 1 s.
    expect(m.rate()).toBeCloseTo(10_000_000 / 1, -5);
    expect(etaSeconds({ filesTotal: 1, filesDone: 0, bytesTotal: 90_000_000, bytesDone: 70_000_000 }, 10_000_000)).toBe(2);
  });
});
