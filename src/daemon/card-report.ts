import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { formatBytes } from '../bytes.js';
import { errnoCode } from '../errors.js';
import { ASCMHL_FOLDER, sequenceOfFileName } from '../ingest/manifest/naming.js';
import { REPORTS_FOLDER, sanitizeSegment } from '../ingest/naming.js';
import { ensureDir, publishNoReplace, tempPathFor, writeNewFile } from '../io/durable.js';
import { readMarker } from '../io/local-destination.js';
import type { Journal } from '../store/journal.js';
import type { WipeReport } from '../ingest/wipe.js';
import type { FinishedIngest } from './ingest-job.js';

/**
 * The per-card report: what a DIT hands over with a card. It names the card, what was copied and how
 * each destination verified it, where the ASC MHL generation that lists the files is, the second read of
 * the source, the cloud, and everything that failed or was left out. It is written, as text and as JSON,
 * next to the files on every destination (in `shuttle-reports/` at the root, which no naming template can
 * produce and manifests ignore), and sent with the done or failed notification.
 */

export const REPORT_FORMAT = 'shuttle-card-report/1';

export interface ReportDestination {
  path: string;
  verified: number;
  failed: number;
  /** Bytes written by this ingest. */
  bytes: number;
  /**
   * How this ingest's files were checked there: read back past the page cache (O_DIRECT), read back
   * through it (the filesystem refused O_DIRECT, so the read may have come from memory), or found already
   * there with the same bytes (compared byte for byte with the verified copy).
   */
  readBack: { pastCache: number; throughCache: number; existing: number };
  /** The ASC MHL generations (in `ascmhl/`) that list the source's files. */
  manifests: Array<{ sequence: number; file?: string | undefined }>;
  /** The report's own files there, relative to the destination; absent when it could not be written. */
  report?: { text: string; json: string } | undefined;
  reportError?: string | undefined;
}

export interface CardReport {
  format: typeof REPORT_FORMAT;
  station: string;
  job: number;
  ingest: number;
  source: { uri: string; kind?: string | undefined; label: string; key?: string | undefined; details?: Readonly<Record<string, string | number>> | undefined };
  status: 'complete' | 'failed' | 'interrupted';
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  files: { listed: number; copied: number; alreadyVerified: number; failed: number; skipped: number; bytes: number };
  destinations: ReportDestination[];
  /** Whether the source was read a second time, past its cache, and matched (the wipe's precondition). */
  secondSourceRead: { done: boolean; note: string };
  cloud: { target?: string | undefined; state: string };
  skipped: Array<{ path: string; reason: string }>;
  errors: Array<{ path?: string | undefined; destination?: string | undefined; source?: string | undefined; code: string; message: string }>;
  renamed: Array<{ from: string; to: string; reason: string }>;
}

export interface ReportContext {
  station: string;
  journal: Journal;
  destinations: readonly { path: string }[];
  /** The cloud's side, as far as it is known when the ingest ends. */
  cloud: { target?: string | undefined; state: string };
}

/** Builds the report of a finished ingest from its summary and what the journal recorded per copy. */
export async function buildCardReport(done: FinishedIngest, ctx: ReportContext): Promise<CardReport> {
  const { summary } = done;
  const destinations: ReportDestination[] = [];
  for (const spec of ctx.destinations) {
    const row = ctx.journal.destinationByPath(spec.path);
    const sum = summary.destinations.find((d) => d.path === spec.path);
    const readBack = { pastCache: 0, throughCache: 0, existing: 0 };
    const sequences = new Set<number>();
    if (row) {
      for (const fileId of new Set(summary.fileIds)) {
        for (const c of ctx.journal.copiesOf(fileId)) {
          if (c.dest_id !== row.id || c.state !== 'verified') continue;
          if (c.manifest_seq !== null) sequences.add(c.manifest_seq);
          if (c.readback === 'direct') readBack.pastCache++;
          else if (c.readback === 'cached') readBack.throughCache++;
          else if (c.readback === 'existing') readBack.existing++;
        }
      }
    }
    destinations.push({
      path: spec.path,
      verified: sum?.verified ?? 0,
      failed: sum?.failed ?? 0,
      bytes: sum?.bytes ?? 0,
      readBack,
      manifests: await generationFiles(
        spec.path,
        [...sequences].sort((a, b) => a - b),
      ),
    });
  }
  const id = done.identity;
  return {
    format: REPORT_FORMAT,
    station: ctx.station,
    job: done.job,
    ingest: summary.ingestId,
    source: { uri: done.source, kind: id?.kind, label: id?.label ?? done.source, key: id?.key, details: id?.details },
    status: summary.status,
    startedAt: done.startedAt.toISOString(),
    finishedAt: done.finishedAt.toISOString(),
    durationSeconds: Math.round((done.finishedAt.getTime() - done.startedAt.getTime()) / 100) / 10,
    files: {
      listed: summary.files,
      copied: summary.copied,
      alreadyVerified: summary.alreadyVerified,
      failed: summary.failed,
      skipped: summary.skipped.length,
      bytes: summary.bytes,
    },
    destinations,
    secondSourceRead: secondRead(done.wipe),
    cloud: ctx.cloud,
    skipped: summary.skipped,
    errors: summary.errors,
    renamed: summary.renamed,
  };
}

/** The generation files of these sequence numbers in a destination's `ascmhl/` folder. */
async function generationFiles(root: string, sequences: number[]): Promise<ReportDestination['manifests']> {
  if (sequences.length === 0) return [];
  let names: string[] = [];
  try {
    names = await readdir(join(root, ASCMHL_FOLDER));
  } catch {
    // The report still names the sequence numbers the journal recorded.
  }
  return sequences.map((sequence) => ({ sequence, file: names.find((n) => sequenceOfFileName(n) === sequence) }));
}

/**
 * Writes the report as `shuttle-reports/<date>_<time>_<card>.txt` and `.json` to every destination that
 * still carries its Shuttle marker (never to an empty mount point or a swapped drive). Each file is written
 * durably and never replaces anything: a name already taken gets a `_2`, `_3`… suffix. Records in the report
 * where it went; a destination it could not be written to is named there, never fatal.
 */
export async function writeCardReport(report: CardReport): Promise<void> {
  const stem = reportStem(report);
  for (const d of report.destinations) {
    try {
      if (!(await readMarker(d.path))) throw new Error('the destination has no Shuttle marker (not mounted?)');
      const dir = join(d.path, REPORTS_FOLDER);
      await ensureDir(dir);
      d.report = await publishPair(dir, stem, report, d);
    } catch (err) {
      d.reportError = errnoCode(err) ?? (err instanceof Error ? err.message : String(err));
    }
  }
}

async function publishPair(dir: string, stem: string, report: CardReport, d: ReportDestination): Promise<{ text: string; json: string }> {
  for (let n = 1; n < 1000; n++) {
    const name = n === 1 ? stem : `${stem}_${n}`;
    const rel = { text: `${REPORTS_FOLDER}/${name}.txt`, json: `${REPORTS_FOLDER}/${name}.json` };
    // The copy written to this destination names itself.
    const own = { ...report, destinations: report.destinations.map((x) => (x === d ? { ...x, report: rel, reportError: undefined } : x)) };
    if (!(await publishNew(join(dir, `${name}.txt`), renderCardReport(own)))) continue;
    if (!(await publishNew(join(dir, `${name}.json`), `${JSON.stringify(own, null, 2)}\n`))) continue;
    return rel;
  }
  throw new Error(`no free report name for ${stem} in ${dir}`);
}

/** Temp, fsync, then the final name without replacing anything (false when the name is taken). */
async function publishNew(path: string, content: string): Promise<boolean> {
  const temp = tempPathFor(path);
  await writeNewFile(temp, content);
  if ((await publishNoReplace(temp, path)) === 'published') return true;
  await unlink(temp).catch(() => undefined);
  return false;
}

/** `2026-12-06_143015_EOS_DIGITAL`: the ingest's start in the station's local time, and the card. */
function reportStem(r: CardReport): string {
  const t = new Date(r.startedAt);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const date = `${p(t.getFullYear(), 4)}-${p(t.getMonth() + 1)}-${p(t.getDate())}_${p(t.getHours())}${p(t.getMinutes())}${p(t.getSeconds())}`;
  const label = sanitizeSegment(r.source.label.replace(/[/\s]+/g, '_')).path.slice(0, 80);
  return `${date}_${label}`;
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** One line a notification's title can carry: `EOS_DIGITAL: 120 files verified (2.3 GB)`. */
export function reportHeadline(r: CardReport): string {
  const f = r.files;
  if (r.status === 'complete') return `${r.source.label}: ${f.listed} files verified (${formatBytes(f.bytes)}), safe to pull`;
  if (r.status === 'interrupted') return `${r.source.label}: interrupted after ${f.copied} of ${f.listed} files; not safe to pull`;
  // The first error is the one a crew acts on (a refusal before copying is the only one then).
  const first = r.errors[0] === undefined ? '' : `: ${r.errors[0].message}`;
  return `${r.source.label}: FAILED, ${f.failed} failed, ${r.errors.length} errors; not safe to pull${first}`;
}

/** The report as plain text, for the file on each destination and the body of a mail. */
export function renderCardReport(r: CardReport): string {
  const f = r.files;
  const lines: string[] = [];
  const add = (label: string, value: string): void => void lines.push(`${`${label}:`.padEnd(14)}${value}`);
  lines.push('Shuttle card report', '===================', '');
  add('Card', `${r.source.label}${r.source.kind ? ` (${r.source.kind})` : ''}`);
  add('Source', r.source.uri);
  if (r.source.key) add('Identity', r.source.key);
  for (const [k, v] of Object.entries(r.source.details ?? {})) add(`  ${k}`, String(v));
  add('Station', `${r.station}, job ${r.job}, journal ingest ${r.ingest}`);
  add('Started', r.startedAt);
  add('Finished', `${r.finishedAt} (${duration(r.durationSeconds)})`);
  add('Result', reportHeadline(r));
  add('Files', `${f.listed} on the source: ${f.copied} copied, ${f.alreadyVerified} verified by an earlier ingest, ${f.failed} failed, ${f.skipped} left out`);
  add('Bytes', `${formatBytes(f.bytes)} (${f.bytes} bytes)`);
  lines.push('', 'Destinations');
  for (const d of r.destinations) {
    lines.push(`  ${d.path}`);
    lines.push(`    ${d.verified} files verified, ${d.failed} failed, ${formatBytes(d.bytes)} written`);
    const rb = d.readBack;
    const how: string[] = [];
    if (rb.pastCache) how.push(`${rb.pastCache} read back past the page cache (O_DIRECT)`);
    if (rb.throughCache) how.push(`${rb.throughCache} read back through the page cache (the filesystem refused O_DIRECT)`);
    if (rb.existing) how.push(`${rb.existing} already there with the same bytes`);
    lines.push(`    verification: ${how.length ? how.join('; ') : 'no copy made by this ingest'}`);
    const gens = d.manifests.map((m) => (m.file ? `${ASCMHL_FOLDER}/${m.file}` : `generation ${m.sequence}`));
    lines.push(`    ASC MHL: ${gens.length ? gens.join(', ') : 'no generation lists these files'}`);
    if (d.report) lines.push(`    this report: ${d.report.text}`);
    if (d.reportError) lines.push(`    report not written here: ${d.reportError}`);
  }
  lines.push('');
  add('Second read', r.secondSourceRead.note);
  add('Cloud', r.cloud.target ? `${r.cloud.target}: ${r.cloud.state}` : r.cloud.state);
  const section = (title: string, items: string[]): void => {
    if (items.length === 0) return;
    lines.push('', `${title} (${items.length})`);
    for (const i of items) lines.push(`  ${i}`);
  };
  section(
    'Failed',
    r.errors.map((e) => `${e.code} ${e.path ?? e.destination ?? e.source ?? ''}: ${e.message}`),
  );
  section(
    'Left out',
    r.skipped.map((s) => `${s.path}: ${s.reason}`),
  );
  section(
    'Renamed',
    r.renamed.map((n) => `${n.from} -> ${n.to} (${n.reason})`),
  );
  return `${lines.join('\n')}\n`;
}

/** What the report says of the second read of the source, which only a wipe policy asks for. */
function secondRead(w: WipeReport | undefined): CardReport['secondSourceRead'] {
  if (w === undefined) return { done: false, note: 'not done: the source was read once (no wipe policy applies)' };
  const read = w.secondRead.direct + w.secondRead.cached;
  if (read === 0) return { done: false, note: `not done: ${w.reason?.message ?? 'nothing to read again'}` };
  const how = w.secondRead.cached ? `${w.secondRead.direct} past the page cache, ${w.secondRead.cached} where the filesystem refused O_DIRECT` : 'past the page cache';
  if (w.reason) return { done: false, note: `${read} files read again (${how}); ${w.reason.message}` };
  const then = w.policy === 'mark-done' ? `the card marked done (${w.marked ?? 'marker written'})` : `${w.wiped} files deleted from the source`;
  return { done: true, note: `${read} files read again (${how}) and matched; ${then}` };
}
