import { readFileSync } from 'node:fs';
import { ControlClient } from './control.js';
import { clientSocketPaths } from './socket-path.js';
import type { DaemonStatus, DaemonUploadStatus, JobSnapshot } from './status.js';
import { errnoCode, isShuttleError } from '../errors.js';
import { uploadsPausedPath } from './uploads.js';

/**
 * `shuttle status` asks the running daemon first; when none answers it shows only what the journal
 * knows, exactly as before there was a daemon.
 */

export interface DaemonQuery {
  status?: DaemonStatus | undefined;
  /** Why a daemon that seems to exist could not be asked (permissions), for a note on stderr. */
  problem?: string | undefined;
}

export async function queryDaemonStatus(configuredSocket: string | undefined, env: NodeJS.ProcessEnv = process.env, timeoutMs = 2_000): Promise<DaemonQuery> {
  let client: ControlClient;
  try {
    client = await ControlClient.connect(clientSocketPaths(configuredSocket, env), { timeoutMs });
  } catch (err) {
    const errno = isShuttleError(err) ? err.context['errno'] : undefined;
    // No socket or nobody listening: no daemon, nothing to say. Anything else is worth a note.
    if (errno === 'ENOENT' || errno === 'ECONNREFUSED') return {};
    return { problem: err instanceof Error ? err.message : String(err) };
  }
  try {
    const timeout = AbortSignal.timeout(timeoutMs);
    return { status: (await client.request('status', {}, { signal: timeout })) as DaemonStatus };
  } catch (err) {
    return { problem: err instanceof Error ? err.message : String(err) };
  } finally {
    client.close();
  }
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}

export function describeJobLine(j: JobSnapshot): string {
  const head = `job ${j.id} ${j.state}: ${j.label}`;
  if (j.state === 'queued') return `${head}${j.waitingFor ? ` — waiting for ${j.waitingFor}` : ''}`;
  if (j.state === 'running') {
    const p = j.progress;
    if (!p) return `${head} — starting`;
    if (p.phase === 'waiting-for-cloud') return `${head} — ${p.filesTotal} files verified here; waiting for the cloud before wiping (an eject now gives the wipe up)`;
    const rate = j.rateBytesPerSec !== undefined ? `, ${mb(j.rateBytesPerSec)}/s` : '';
    const eta = j.etaSeconds !== undefined ? `, ETA ${duration(j.etaSeconds)}` : '';
    return `${head} — ${p.filesDone}/${p.filesTotal} files, ${mb(p.bytesDone)}/${mb(p.bytesTotal)}${rate}${eta}`;
  }
  const r = j.result;
  const figures = r ? ` (${r.files} files, ${r.copied} copied, ${r.alreadyVerified} already done, ${r.failed} failed)` : '';
  const why = j.error?.message ?? (j.state !== 'done' ? j.history[j.history.length - 1]?.reason : undefined);
  return `${head}${figures}${j.finishedAt ? ` at ${j.finishedAt}` : ''}${why ? ` — ${why}` : ''}`;
}

/** The daemon's part of `shuttle status`, as lines. */
export function formatDaemonStatus(s: DaemonStatus, recent = 5): string[] {
  const lines = [`daemon: running (pid ${s.pid}, up ${duration(s.uptimeSeconds)}, ${mb(s.process.rssBytes)} RSS), socket ${s.controlSocket}, state ${s.stateDir}`];
  // Older daemons (before the station view) answer without it.
  if (s.station) lines.push(`station: ${s.station.state} — ${s.station.reason}`);
  if (s.api) lines.push(`dashboard and API: ${s.api.url}`);
  if (s.jobs.active.length === 0) lines.push('jobs: none running');
  for (const j of s.jobs.active) lines.push(describeJobLine(j));
  for (const h of s.hotFolders) {
    const parts = [h.watching ? 'watching' : 'not watching', `${h.waiting} waiting`, `${h.settling} being written`, `${h.delivered} handed to jobs`];
    if (h.retryAt) parts.push(`retry at ${h.retryAt}`);
    if (h.error) parts.push(`error: ${h.error}`);
    lines.push(`hot folder ${h.path}: ${parts.join(', ')}`);
  }
  if (s.uploads) lines.push(...describeUploads(s.uploads));
  for (const d of s.devices) {
    const state = s.station?.devices.find((v) => v.id === d.id)?.state;
    lines.push(`device ${d.label} (${d.kind}, ${d.watcher})${d.job ? ` → job ${d.job}` : ''}${state ? `: ${state}` : ''}`);
  }
  for (const j of s.jobs.recent.slice(0, recent)) lines.push(describeJobLine(j));
  lines.push(`since start: ${s.totals.jobs} jobs (${s.totals.failedJobs} failed), ${s.totals.filesCopied} files copied, ${mb(s.totals.bytesCopied)} written`);
  return lines;
}

/** The uploader's lines: what it does now, what is left, and the latest error. */
export function describeUploads(u: DaemonUploadStatus): string[] {
  const doing =
    u.state === 'backing-off'
      ? `backing off${u.retryAt ? ` until ${u.retryAt}` : ''}`
      : u.state === 'waiting-for-lock'
        ? `waiting: ${u.lockHolder ?? 'another process uploads'}`
        : u.state === 'failed'
          ? `not running: ${u.uploaderError?.message ?? 'failed'}`
          : u.state;
  const lines = [
    `uploads to ${u.target}: ${doing} — ${u.depth} pending (${mb(u.bytesPending)}), ${u.failed} failed, ${mb(u.bytesPerSecond)}/s over ${u.rateWindowSeconds / 60} min; since start ${u.sinceStart.uploaded} uploaded (${mb(u.sinceStart.bytesSent)} sent)`,
  ];
  if (u.lastError) lines.push(`last upload error (${u.lastError.key}${u.lastError.at ? `, ${u.lastError.at}` : ''}): ${u.lastError.code ?? ''} ${u.lastError.message}`);
  return lines;
}

/**
 * The upload pause the daemon keeps in the state folder (uploadsPausedPath), for `shuttle status` when no
 * daemon answers: a paused station must not look as if it would upload once started. `pausedAt` is null
 * when the file cannot be read as the daemon writes it (it is still paused: the file alone says so).
 */
export function storedUploadPause(stateDir: string): { pausedAt: string | null } | undefined {
  let text: string;
  try {
    text = readFileSync(uploadsPausedPath(stateDir), 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    return { pausedAt: null };
  }
  try {
    const at = (JSON.parse(text) as { pausedAt?: unknown }).pausedAt;
    return { pausedAt: typeof at === 'string' ? at : null };
  } catch {
    return { pausedAt: null };
  }
}
