import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { FolderSource, displayName } from '../src/device/card/folder-source.js';
import type { SourceEntry, SourceFault, SourceItem } from '../src/device/source.js';
import { isShuttleError } from '../src/errors.js';
import { runIngest, type IngestSummary } from '../src/ingest/pipeline.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { ingestJson, runCli, type CliResult } from './support/cli.js';
import { killLeftoverDaemons, spawnDaemon, type RunningDaemon } from './support/daemon-helpers.js';
import { bytes, ingestSettings, writeBytes, writeJpeg } from './support/fixtures.js';
import { listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * Nothing on a source is dropped without being named: what cannot be read fails the ingest (errors,
 * log, journal), names that are not UTF-8 are ingested under a visible name, and links, FIFOs, sockets
 * and devices are listed as skipped, never opened or followed.
 */

let work: { path: string; cleanup: () => Promise<void> };
let src: string;
let dest: string;
let state: string;
const nobody = { uid: 65534, gid: 65534 };

beforeEach(async () => {
  work = await tempDir('shuttle-source-faults-');
  src = join(work.path, 'card');
  dest = join(work.path, 'lib');
  state = join(work.path, 'state');
  await mkdir(src, { recursive: true });
  await writeJpeg(join(src, 'DCIM/100CANON/IMG_0001.JPG'), { date: '2026:03:14 15:09:26', seed: 1 });
  await writeBytes(join(src, 'DCIM/100CANON/IMG_0002.CR3'), bytes(200_000, 2));
});
afterEach(async () => {
  // Permission bits a test took away would stop the clean-up (as root they do not, but be plain).
  execFileSync('chmod', ['-R', 'u+rwx', work.path]);
  await work.cleanup();
});

/** Source, destination and state as the unprivileged user sees them: only bits it is given apply. */
async function asNobody(): Promise<void> {
  await chmod(work.path, 0o755);
  for (const d of [dest, state]) {
    await mkdir(d, { recursive: true });
    await chown(d, nobody.uid, nobody.gid);
  }
}

/** The CLI's JSON log lines on stderr. */
function logLines(r: CliResult): Array<Record<string, unknown>> {
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface FileRowSeen {
  rel_path: string;
  state: string;
  error: string | null;
  path_bytes: Uint8Array | null;
}

function journalFiles(): FileRowSeen[] {
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    return db.prepare('SELECT rel_path, state, error, path_bytes FROM files ORDER BY rel_path').all() as unknown as FileRowSeen[];
  } finally {
    db.close();
  }
}

async function statusJson(): Promise<{ files: Record<string, number>; ingests: Array<{ status: string; summary: { errors: Array<{ path?: string }> } }> }> {
  const r = await runCli(['status', '--json', '--state', state]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Awaited<ReturnType<typeof statusJson>>;
}

describe('what the source cannot read fails the ingest, named', () => {
  test('a-folder-that-cannot-be-listed-fails-the-ingest-and-is-named-in-errors-log-and-journal', async () => {
    await writeJpeg(join(src, 'DCIM/101CANON/IMG_0101.JPG'), { seed: 5 });
    await chmod(join(src, 'DCIM/101CANON'), 0o000);
    await asNobody();
    const r = await ingestJson([src, '--dest', dest, '--state', state], { asUser: nobody });
    expect(r.code, r.stderr).toBe(1);
    expect(r.summary).toMatchObject({ status: 'failed', files: 2, copied: 2, failed: 1 });
    expect(r.summary.errors).toEqual([expect.objectContaining({ path: 'DCIM/101CANON', code: 'SOURCE_UNREADABLE' })]);
    expect(r.summary.errors[0]!.message).toContain('EACCES');
    expect(logLines(r).some((l) => l['path'] === 'DCIM/101CANON' && l['msg'] === 'could not read from the source')).toBe(true);
    expect(journalFiles().find((f) => f.rel_path === 'DCIM/101CANON')).toMatchObject({ state: 'failed', error: expect.stringContaining('EACCES') });
    const s = await statusJson();
    expect(s.files['failed']).toBe(1);
    expect(s.ingests[0]).toMatchObject({ status: 'failed', summary: { errors: [expect.objectContaining({ path: 'DCIM/101CANON' })] } });
  });

  test('files-in-a-folder-that-can-be-listed-but-not-entered-fail-each-by-name', async () => {
    // r-- without x: the names can be read, the files cannot even be stat'ed.
    await writeBytes(join(src, 'DCIM/102CANON/A.JPG'), bytes(1000, 7));
    await writeBytes(join(src, 'DCIM/102CANON/B.JPG'), bytes(1000, 8));
    await chmod(join(src, 'DCIM/102CANON'), 0o444);
    await asNobody();
    const r = await ingestJson([src, '--dest', dest, '--state', state], { asUser: nobody });
    expect(r.code, r.stderr).toBe(1);
    expect(r.summary).toMatchObject({ status: 'failed', copied: 2, failed: 2 });
    expect(r.summary.errors.map((e) => e.path).sort()).toEqual(['DCIM/102CANON/A.JPG', 'DCIM/102CANON/B.JPG']);
    const failed = journalFiles()
      .filter((f) => f.state === 'failed')
      .map((f) => f.rel_path);
    expect(failed).toEqual(['DCIM/102CANON/A.JPG', 'DCIM/102CANON/B.JPG']);
  });

  test('an-unreadable-file-is-a-failed-file-in-errors-log-and-journal', async () => {
    await chmod(join(src, 'DCIM/100CANON/IMG_0002.CR3'), 0o000);
    await asNobody();
    const r = await ingestJson([src, '--dest', dest, '--state', state], { asUser: nobody });
    expect(r.code, r.stderr).toBe(1);
    expect(r.summary).toMatchObject({ status: 'failed', files: 2, copied: 1, failed: 1 });
    expect(r.summary.errors).toEqual([expect.objectContaining({ path: 'DCIM/100CANON/IMG_0002.CR3', code: 'SOURCE_UNREADABLE' })]);
    expect(logLines(r).some((l) => l['path'] === 'DCIM/100CANON/IMG_0002.CR3' && l['level'] === 40)).toBe(true);
    expect(journalFiles().find((f) => f.rel_path === 'DCIM/100CANON/IMG_0002.CR3')?.state).toBe('failed');
    expect((await statusJson()).files['failed']).toBe(1);
    expect(await tempFilesUnder(dest)).toEqual([]);
  });
});

describe('names that are not UTF-8', () => {
  test('are-ingested-under-a-visible-name-reported-as-renamed-with-the-original-bytes-journaled', async () => {
    const raw = Buffer.concat([Buffer.from(`${src}/DCIM/100CANON/IMG_`), Buffer.from([0xe9, 0x25, 0xff]), Buffer.from('.JPG')]);
    const content = bytes(5000, 9);
    await writeFile(raw, content);
    const shown = 'DCIM/100CANON/IMG_%E9%25%FF.JPG';
    const r = await ingestJson([src, '--dest', dest, '--state', state]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ status: 'complete', files: 3, copied: 3, failed: 0 });
    expect(r.summary.renamed).toEqual([{ from: 'DCIM/100CANON/IMG_\uFFFD%\uFFFD.JPG', to: shown, reason: 'not-utf8' }]);
    const copies = [...(await listTree(dest, { skipShuttle: true })).entries()].filter(([p]) => p.endsWith('IMG_%E9%25%FF.JPG'));
    expect(copies).toHaveLength(1);
    expect(copies[0]![1].size).toBe(content.length);
    const row = journalFiles().find((f) => f.rel_path === shown);
    expect(row?.state).toBe('verified');
    expect(Buffer.from(row!.path_bytes!)).toEqual(raw.subarray(Buffer.byteLength(src) + 1));
    // Valid names keep no bytes.
    expect(journalFiles().filter((f) => f.path_bytes !== null)).toHaveLength(1);

    const again = await ingestJson([src, '--dest', dest, '--state', state]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.summary).toMatchObject({ files: 3, copied: 0, alreadyVerified: 3 });
  });

  test('the-shown-name-escapes-exactly-the-bytes-outside-valid-utf8-sequences-and-percent', () => {
    const b = (...x: Array<number | string>): Buffer => Buffer.concat(x.map((v) => (typeof v === 'string' ? Buffer.from(v) : Buffer.from([v]))));
    expect(displayName(b('Caf\u00e9 100%.JPG'))).toBeUndefined();
    expect(displayName(b('Caf', 0xe9, ' 100%.JPG'))).toBe('Caf%E9 100%25.JPG');
    // Overlong form, UTF-16 surrogate, a sequence cut short: each byte shown; valid neighbours kept.
    expect(displayName(b(0xc0, 0x80, '\u00e9'))).toBe('%C0%80\u00e9');
    expect(displayName(b(0xed, 0xa0, 0x80))).toBe('%ED%A0%80');
    expect(displayName(b('x', 0xe2, 0x82))).toBe('x%E2%82');
  });

  test('a-name-that-would-read-like-another-in-its-folder-fails-instead-of-standing-for-both', async () => {
    await writeBytes(join(src, 'DCIM/100CANON/X%FF.JPG'), bytes(100, 1));
    await writeFile(Buffer.concat([Buffer.from(`${src}/DCIM/100CANON/X`), Buffer.from([0xff]), Buffer.from('.JPG')]), bytes(100, 2));
    const items = await collect(new FolderSource(src));
    const twins = items.filter((e) => e.path === 'DCIM/100CANON/X%FF.JPG');
    expect(twins).toHaveLength(2);
    expect(twins.filter(isItem)).toHaveLength(1);
    const fault = twins.find(isFault);
    expect(fault?.error.code).toBe('NAME_INVALID');
    expect(fault?.pathBytes).toEqual(Buffer.from([...Buffer.from('DCIM/100CANON/X'), 0xff, ...Buffer.from('.JPG')]));
  });
});

const isFault = (e: SourceEntry): e is SourceFault => 'error' in e;
const isItem = (e: SourceEntry): e is SourceItem => 'size' in e;

async function collect(source: FolderSource): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  for await (const e of source.list()) out.push(e);
  return out;
}

describe('two files a source names alike', () => {
  test('the-second-of-two-entries-with-one-name-size-and-time-fails-named-instead-of-passing-as-the-first-already-verified', async () => {
    const when = new Date('2026-03-14T12:00:00Z');
    const first = bytes(100_000, 7);
    const second = bytes(100_000, 8);
    await writeBytes(join(src, 'DCIM/101CANON/IMG_0009.CR3'), first, when);
    await writeBytes(join(src, 'DCIM/102CANON/IMG_0009.CR3'), second, when);
    // As a camera that names two objects alike would list them: a folder cannot.
    class Twins extends FolderSource {
      override async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
        for await (const e of super.list(signal)) yield e.path === 'DCIM/102CANON/IMG_0009.CR3' ? { ...e, path: 'DCIM/101CANON/IMG_0009.CR3' } : e;
      }
    }
    const journal = Journal.open(state);
    const run = (): Promise<IngestSummary> =>
      runIngest({
        sources: [new Twins(src)],
        destinations: [{ path: dest }],
        journal,
        settings: ingestSettings('{name}'),
        logger: silentLogger,
        signal: new AbortController().signal,
      });
    try {
      // A first run copies the first; a second finds it verified. Without the check, the second file
      // passed as that one, already verified, and was never copied, in a complete run.
      await run();
      const again = await run();
      expect(again).toMatchObject({ status: 'failed', failed: 1, alreadyVerified: 3 });
      expect(again.errors).toEqual([
        expect.objectContaining({ code: 'NAME_INVALID', path: 'DCIM/101CANON/IMG_0009.CR3', message: expect.stringContaining('a second file by this name') }),
      ]);
    } finally {
      journal.close();
    }
    const copied = [...(await listTree(dest, { skipShuttle: true })).values()].map((c) => c.sha256);
    expect(copied).toContain(createHash('sha256').update(first).digest('hex'));
    expect(
      journalFiles()
        .filter((f) => f.rel_path === 'DCIM/101CANON/IMG_0009.CR3')
        .map((f) => f.state)
        .sort(),
    ).toEqual(['failed', 'verified']);
  });
});

describe('links, FIFOs, sockets and devices', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
  });

  test('are-listed-as-skipped-with-why-never-opened-or-followed-and-the-ingest-completes', async () => {
    const outside = join(work.path, 'outside');
    await writeBytes(join(outside, 'secret.JPG'), bytes(3000, 66));
    await writeBytes(join(outside, 'folder/inner.JPG'), bytes(3000, 67));
    await symlink(join(outside, 'secret.JPG'), join(src, 'DCIM/100CANON/LINK.JPG'));
    await symlink(join(outside, 'folder'), join(src, 'DCIM/LINKDIR'));
    // Opening a FIFO for reading waits for a writer: the test finishing shows it was never opened.
    execFileSync('mkfifo', [join(src, 'DCIM/100CANON/PIPE.JPG')]);
    server = createServer();
    await new Promise<void>((r) => server!.listen(join(src, 'DCIM/100CANON/SOCK.JPG'), r));
    execFileSync('mknod', [join(src, 'DCIM/100CANON/NULL.JPG'), 'c', '1', '3']);

    const r = await ingestJson([src, '--dest', dest, '--state', state], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ status: 'complete', files: 2, copied: 2, failed: 0, errors: [] });
    expect(r.summary.skipped).toEqual([
      { path: 'DCIM/100CANON/LINK.JPG', reason: 'symbolic link (not followed)' },
      { path: 'DCIM/100CANON/NULL.JPG', reason: 'device (never opened)' },
      { path: 'DCIM/100CANON/PIPE.JPG', reason: 'FIFO (never opened)' },
      { path: 'DCIM/100CANON/SOCK.JPG', reason: 'socket (never opened)' },
      { path: 'DCIM/LINKDIR', reason: 'symbolic link (not followed)' },
    ]);
    const copied = [...(await listTree(dest, { skipShuttle: true })).keys()].map((p) => p.split('/').pop());
    expect(copied.sort()).toEqual(['IMG_0001.JPG', 'IMG_0002.CR3']);
  });

  test('a-file-excluded-by-the-config-is-named-as-skipped', async () => {
    const config = join(work.path, 'shuttle.toml');
    await writeFile(config, '[ingest]\nexclude = ["*.CR3"]\n');
    const r = await ingestJson(['--config', config, src, '--dest', dest, '--state', state]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ files: 1, copied: 1, skipped: [{ path: 'DCIM/100CANON/IMG_0002.CR3', reason: 'excluded by include/exclude' }] });
  });
});

describe('FolderSource.open', () => {
  async function listed(path: string): Promise<{ source: FolderSource; item: SourceItem }> {
    const source = new FolderSource(src);
    const item = (await collect(source)).filter(isItem).find((e) => e.path === path);
    if (!item) throw new Error(`${path} not listed`);
    return { source, item };
  }
  async function openError(source: FolderSource, item: SourceItem, recycle: number): Promise<unknown> {
    return source.open(item, { recycle }).then(
      (s) => {
        s.destroy();
        return undefined;
      },
      (e: unknown) => e,
    );
  }
  const file = 'DCIM/100CANON/IMG_0002.CR3';

  test.each([0, 1])('a-file-swapped-for-a-symlink-after-listing-is-changed-and-not-followed (recycle %i)', async (recycle) => {
    const { source, item } = await listed(file);
    const outside = join(work.path, 'outside.bin');
    // Same size as the listed file, so only the link itself gives it away.
    await writeBytes(outside, bytes(200_000, 3));
    await rm(join(src, file));
    await symlink(outside, join(src, file));
    const e = await openError(source, item, recycle);
    expect(isShuttleError(e, 'SOURCE_CHANGED'), String(e)).toBe(true);
    expect((e as Error).message).toContain('symbolic link; not followed');
  });

  test.each([0, 1])('a-file-swapped-for-a-fifo-after-listing-is-changed-and-never-waited-on (recycle %i)', async (recycle) => {
    const { source, item } = await listed(file);
    await rm(join(src, file));
    execFileSync('mkfifo', [join(src, file)]);
    // Without O_NONBLOCK this open would wait for a writer that never comes, and the test time out.
    const e = await openError(source, item, recycle);
    expect(isShuttleError(e, 'SOURCE_CHANGED'), String(e)).toBe(true);
    expect((e as Error).message).toContain('FIFO');
  });

  test('a-file-replaced-by-another-of-a-different-size-is-changed', async () => {
    const { source, item } = await listed(file);
    await writeBytes(join(src, 'other.bin'), bytes(1000, 4));
    await rename(join(src, 'other.bin'), join(src, file));
    const e = await openError(source, item, 1);
    expect(isShuttleError(e, 'SOURCE_CHANGED'), String(e)).toBe(true);
    expect((e as Error).message).toMatch(/size 200000 → 1000/);
  });

  test('the-last-chunk-of-a-recycled-read-stays-the-readers-after-the-file-ended-while-another-file-is-read', async () => {
    // What the ingest's head read does (readHead): it keeps a small file's only chunk, a view of the
    // stream's buffer, and pulls no further. Another read (a wipe's overlapped second read) must not be
    // handed that buffer when the first file's stream reaches its end.
    const other = 'DCIM/100CANON/IMG_0001.CR3';
    await writeBytes(join(src, other), bytes(200_000, 9));
    const { source, item } = await listed(file);
    const otherItem = (await collect(source)).filter(isItem).find((e) => e.path === other)!;
    const first = await source.open(item, { recycle: 1 });
    // The stream has read to the file's end (it reads ahead of the consumer): 'readable' then says so, or
    // 'end' where the stream ends itself.
    const atEnd = new Promise<void>((resolve) => {
      const check = (): void => {
        if (first.readableEnded || (first as unknown as { _readableState: { ended: boolean } })._readableState.ended) resolve();
      };
      first.on('readable', check);
      first.on('end', check);
    });
    const iter = first[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const held = (await iter.next()).value as Buffer;
    expect(held.length).toBe(200_000);
    // A recycled chunk is a view of a page-aligned shared block: fanOut writes and hashes it where it is.
    expect(held.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(held.byteOffset).toBe(0);
    const expected = Buffer.from(held);
    await atEnd;
    // Where the stream ends itself at the end, it gives its buffers back once its file is closed.
    if (first.readableEnded && !first.closed) await once(first, 'close');
    const second = await source.open(otherItem, { recycle: 1 });
    let n = 0;
    for await (const chunk of second) n += (chunk as Buffer).length;
    second.destroy();
    expect(n).toBe(200_000);
    expect(held.equals(expected)).toBe(true);
    first.destroy();
  });

  test('a-job-cancelled-after-a-recycled-read-ended-but-before-its-reader-let-go-raises-no-unhandled-error', async () => {
    // The ingest reads a file to its end, then hashes and syncs before it destroys the stream: a cancel in
    // that window aborts the stream's signal while nobody listens for its errors any more.
    const { source, item } = await listed(file);
    const cancel = new AbortController();
    const s = await source.open(item, { recycle: 1, signal: cancel.signal });
    let n = 0;
    for await (const chunk of s) n += (chunk as Buffer).length;
    expect(n).toBe(200_000);
    const errors: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      errors.push(err);
    };
    process.on('uncaughtException', onUncaught);
    try {
      const closed = new Promise((resolve) => s.once('close', resolve));
      cancel.abort(new Error('cancelled on request'));
      await closed;
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(s.destroyed).toBe(true);
    expect(errors).toEqual([]);
  });

  test('the-listed-file-opens-and-reads-whole', async () => {
    const { source, item } = await listed(file);
    const s = await source.open(item);
    let n = 0;
    for await (const chunk of s) n += (chunk as Buffer).length;
    expect(n).toBe(200_000);
  });
});

describe('the card unit', () => {
  const daemons: RunningDaemon[] = [];
  afterEach(() => killLeftoverDaemons(daemons));

  test('request-ingest-wait-exits-1-for-a-card-with-an-entry-it-cannot-read-so-the-card-stays-powered', async () => {
    // What shuttle-card@.service runs; its ExecStopPost powers the card off only on exit 0 (systemd.test.ts).
    // The fault here is one root meets too (the daemon runs as root in tests): two names that read alike.
    await writeBytes(join(src, 'DCIM/100CANON/X%FF.JPG'), bytes(100, 1));
    await writeFile(Buffer.concat([Buffer.from(`${src}/DCIM/100CANON/X`), Buffer.from([0xff]), Buffer.from('.JPG')]), bytes(100, 2));
    // The daemon ingests only folders its config allows.
    const env = { SHUTTLE_DAEMON_CONTROL_SOCKET: join(work.path, 'run/control.sock'), SHUTTLE_LOCK_DIR: join(work.path, 'locks'), SHUTTLE_DAEMON_ALLOWED_SOURCES: src };
    const d = await spawnDaemon(['--state', state, '--dest', dest, '--log-level', 'info'], env);
    daemons.push(d);
    const r = await runCli(['request', 'ingest', src, '--wait'], { env });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^job \d+ failed \(.*card\): 3 files, 3 copied, 0 already done, 1 failed/);
    d.child.kill('SIGTERM');
    expect(await d.exited).toEqual({ code: 0, signal: null });
  });
});
