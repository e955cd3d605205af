import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from '../store/journal.js';
import { UploadQueue } from '../store/upload-queue.js';
import { formatDaemonStatus, queryDaemonStatus, storedUploadPause } from '../daemon/status-report.js';
import { commandContext, type GlobalOptions } from './context.js';

export function statusCommand(globals: () => GlobalOptions): Command {
  return new Command('status')
    .description('what the journal knows: files and copies by state, destinations, the last ingests')
    .option('--json', 'print one JSON object on stdout')
    .option('--last <n>', 'how many recent ingests to show', '5')
    .action(async (opts: { json?: boolean; last: string }) => {
      const ctx = commandContext(globals());
      // The running daemon's live view comes first; without one, the output is the journal's alone.
      const daemon = await queryDaemonStatus(ctx.config.daemon.controlSocket);
      if (daemon.problem) process.stderr.write(`shuttle: cannot ask the daemon (${daemon.problem}); showing the journal only\n`);
      const live = daemon.status ? { daemon: daemon.status } : {};
      const daemonLines = daemon.status ? formatDaemonStatus(daemon.status) : [];
      if (!existsSync(join(ctx.stateDir, 'journal.sqlite'))) {
        const empty = { stateDir: ctx.stateDir, journal: false, files: {}, copies: {}, destinations: [], ingests: [], ...live };
        process.stdout.write(opts.json ? `${JSON.stringify(empty)}\n` : `${[...daemonLines, `no journal yet in ${ctx.stateDir}`].join('\n')}\n`);
        return;
      }
      const journal = Journal.open(ctx.stateDir);
      try {
        const counts = journal.stateCounts();
        const ingests = journal.lastIngests(Math.max(1, Number(opts.last) || 5)).map((i) => ({
          id: i.id,
          startedAt: i.started_at,
          finishedAt: i.finished_at,
          status: i.status,
          sources: JSON.parse(i.sources) as string[],
          destinations: JSON.parse(i.destinations) as string[],
          summary: i.summary ? (JSON.parse(i.summary) as Record<string, unknown>) : null,
        }));
        const q = new UploadQueue(journal).stats();
        const pause = storedUploadPause(ctx.stateDir);
        const upload = {
          paused: pause !== undefined,
          pausedAt: pause?.pausedAt ?? null,
          depth: q.depth,
          queued: q.queued,
          uploading: q.uploading,
          uploaded: q.uploaded,
          failed: q.failed,
          bytesPending: q.bytesPending,
          bytesPerSecond: q.bytesPerSecond,
          nextAttemptAt: q.nextAttemptAt === null ? null : new Date(q.nextAttemptAt).toISOString(),
          lastError: q.lastError,
        };
        const out = {
          stateDir: ctx.stateDir,
          journal: true,
          schema: journal.schemaVersion,
          files: counts.files,
          copies: counts.copies,
          destinations: journal.destinations(),
          ingests,
          upload,
          problems: journal.inconsistencies(),
          ...live,
        };
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(out)}\n`);
          return;
        }
        const lines = [...daemonLines, `journal: ${journal.path}`, `files: ${fmtCounts(counts.files)}`, `copies: ${fmtCounts(counts.copies)}`];
        for (const d of out.destinations) lines.push(`destination ${d.path} (marker ${d.marker_id})`);
        for (const i of ingests) {
          const s = i.summary as { files?: number; copied?: number; failed?: number } | null;
          lines.push(
            `ingest #${i.id} ${i.startedAt} ${i.status}: ${i.sources.join(', ')} → ${i.destinations.join(', ')}${s ? ` (${s.files} files, ${s.copied} copied, ${s.failed} failed)` : ''}`,
          );
        }
        lines.push(
          `upload queue: ${upload.depth} pending (${upload.bytesPending} bytes), ${upload.failed} failed, ${upload.uploaded} uploaded; ${upload.bytesPerSecond} bytes/s over the last 10 min`,
        );
        // The running daemon's lines say it already; without one the stored pause is all there is.
        if (pause !== undefined && !daemon.status)
          lines.push(`uploads paused${pause.pausedAt ? ` since ${pause.pausedAt}` : ''}: the daemon starts paused (resume from the dashboard or POST /api/v1/uploads/resume)`);
        if (upload.lastError) lines.push(`last upload error (${upload.lastError.key}, ${upload.lastError.at ?? '?'}): ${upload.lastError.code ?? ''} ${upload.lastError.message}`);
        for (const p of out.problems) lines.push(`problem: ${p}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      } finally {
        journal.close();
      }
    });
}

function fmtCounts(c: Record<string, number>): string {
  const parts = Object.entries(c).map(([k, v]) => `${v} ${k}`);
  return parts.length ? parts.join(', ') : 'none';
}
