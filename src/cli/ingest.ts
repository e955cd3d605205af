import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { Journal } from '../store/journal.js';
import { openSources } from '../device/detect.js';
import type { Source } from '../device/source.js';
import { ShuttleError } from '../errors.js';
import { runIngest, type IngestSummary, type Progress } from '../ingest/pipeline.js';
import { startHashWorker } from '../io/hash-worker-client.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../ingest/settings.js';
import { commandContext, signalOnTermination, type CommandContext, type GlobalOptions } from './context.js';
import type { IngestUpload, IngestUploadFlags, IngestUploadSummary } from './upload.js';
import { OverlappedSecondReads, describeWipe, wipeError, wipeSource, type WipePolicy, type WipeReport } from '../ingest/wipe.js';
import { DONE_MARK_NAME } from '../device/source.js';
import { uploadSettings } from '../config/index.js';
import { EXIT } from './exit.js';
import { formatBytes } from './format.js';

interface IngestOptions extends IngestUploadFlags {
  dest: string[];
  json?: boolean;
  wait: string;
  wipe?: boolean;
  wipeAfterCloud?: boolean;
  markDone?: boolean;
}

/** The wipe the flags ask for; USAGE for flags that contradict each other or the upload settings. */
function wipePolicyOf(opts: IngestOptions, upload: IngestUpload | undefined): Exclude<WipePolicy, 'never'> | undefined {
  const asked = [opts.wipe && '--wipe', opts.wipeAfterCloud && '--wipe-after-cloud', opts.markDone && '--mark-done'].filter((f): f is string => typeof f === 'string');
  if (asked.length > 1) throw new ShuttleError('USAGE', `${asked.join(' and ')}: give one of them`);
  if (opts.wipeAfterCloud) {
    if (upload === undefined) throw new ShuttleError('USAGE', '--wipe-after-cloud needs an upload: --upload s3://bucket/prefix or [upload] target in the config');
    if (!upload.waits) throw new ShuttleError('USAGE', '--wipe-after-cloud waits for the uploads to be verified: it cannot be combined with --no-wait');
    return 'after-cloud';
  }
  return opts.wipe ? 'after-local' : opts.markDone ? 'mark-done' : undefined;
}

/** `--no-wait` is about uploads; without its own name commander would take it as the negation of `--wait <seconds>`. */
export class NoUploadWaitOption extends Option {
  override attributeName(): string {
    return 'uploadWait';
  }
}

export function ingestCommand(globals: () => GlobalOptions): Command {
  return new Command('ingest')
    .description('copy every file under each SOURCE into every destination, verified by read-back, journaled')
    .argument(
      '<source...>',
      'folders or mounted cards; USB cameras as usb:, usb:VID:PID or usb:BUS-PORT; network cameras as ptpip:HOST[:PORT], or ptpip: for every one announcing itself',
    )
    .addOption(
      new Option('-d, --dest <dir>', 'destination library (repeatable; adds to the configured destinations)')
        .argParser((v: string, prev: string[] = []) => [...prev, v])
        .default([]),
    )
    .option('--json', 'print one JSON summary object on stdout at the end')
    .option('--wait <seconds>', 'wait this long for a source or destination another Shuttle is working on', '0')
    .option('--upload <s3url>', 'after local verification, upload the verified files to s3://bucket/prefix (default: upload.target)')
    .addOption(new NoUploadWaitOption('--no-wait', 'with --upload: exit after local verification, files durably queued for `shuttle upload` or the daemon'))
    .option('--upload-timeout <seconds>', 'with --upload: keep retrying an unreachable server this long, then exit 3 with the rest queued')
    .option('--s3-provider <name>', 'with --upload: S3 flavour (aws, minio, ceph, swift, r2, b2, generic)')
    .option(
      '--wipe',
      'then delete the ingested files from each source (card, folder, camera), only if every file verified at every destination and a second read of the source matched the first; any failure deletes nothing',
    )
    .option('--wipe-after-cloud', 'as --wipe, and only once every file is also verified in the cloud (needs an upload; waits for it)')
    .option('--mark-done', `as --wipe, but instead of deleting write ${DONE_MARK_NAME} at the source's root listing what was verified`)
    .addHelpText(
      'after',
      `
Exit codes: 0 every file verified at every destination (and wiped, if asked); 1 some files failed, or a wipe
was refused or failed; 2 usage or configuration error; 3 incomplete (interrupted, or a source/destination is
busy, or uploads still queued).`,
    )
    .action(async (sources: string[], opts: IngestOptions) => {
      const ctx = commandContext(globals(), { destinations: opts.dest.map((p) => ({ path: resolve(p) })) });
      const waitSeconds = Number(opts.wait);
      if (!Number.isFinite(waitSeconds) || waitSeconds < 0) throw new ShuttleError('USAGE', `--wait: "${opts.wait}" is not a number of seconds`);
      const signal = signalOnTermination();
      // Booting the hash thread takes a second or more on a slow CPU: it boots on the other core while this
      // one loads the USB library and opens the camera's session.
      startHashWorker();
      const upload = await uploadIfAsked(ctx, opts);
      const wipePolicy = wipePolicyOf(opts, upload);
      const journal = Journal.open(ctx.stateDir);
      const bar = !opts.json && process.stderr.isTTY ? await progressBar() : undefined;
      // With a progress bar on screen, routine log lines would tear it: only problems, unless asked.
      if (bar && globals().logLevel === undefined && process.env['SHUTTLE_LOG_LEVEL'] === undefined) ctx.logger.level = 'warn';
      const opened: Source[] = [];
      let summary: IngestSummary;
      let uploads: IngestUploadSummary | undefined;
      const wipes: WipeReport[] = [];
      const secondReads = new Map<Source, OverlappedSecondReads>();
      try {
        for (const uri of sources) opened.push(...(await openSources(uri, { stateDir: ctx.stateDir, timeZone: ctx.config.ingest.timeZone, logger: ctx.logger, signal })));
        // A wipe's second read of each file runs during the ingest, once the file is verified (see wipe.ts).
        if (wipePolicy !== undefined) for (const src of opened) secondReads.set(src, new OverlappedSecondReads(src, signal));
        summary = await runIngest({
          sources: opened,
          destinations: destinationsFromConfig(ctx.config),
          settings: ingestSettingsFromConfig(ctx.config, waitSeconds * 1000, upload !== undefined),
          journal,
          logger: ctx.logger,
          signal,
          refuseWhatCannotFit: true,
          ...(bar ? { onProgress: bar.update } : {}),
          ...(secondReads.size > 0 ? { onFile: (f) => f.source && secondReads.get(f.source)?.fileDone(f) } : {}),
        });
        bar?.stop();
        // Uploads (src/cli/upload.ts): queue this run's verified files, then upload them unless --no-wait.
        uploads = upload !== undefined && summary.status !== 'interrupted' ? await upload.run(signal, summary.fileIds) : undefined;
        if (uploads?.queueError) {
          summary.errors.push(uploads.queueError);
          summary.status = 'failed';
        }
        // The sources stay open for their wipe (src/ingest/wipe.ts), which is decided after the uploads.
        if (wipePolicy !== undefined) {
          for (const src of opened) {
            const cloud = wipePolicy === 'after-cloud' ? upload?.target : undefined;
            wipes.push(
              await wipeSource({
                source: src,
                policy: wipePolicy,
                summary,
                journal,
                logger: ctx.logger,
                signal,
                cloud,
                station: ctx.config.station,
                secondReads: secondReads.get(src),
              }),
            );
          }
          noteWipes(summary, wipes);
        }
      } finally {
        bar?.stop();
        for (const reads of secondReads.values()) await reads.close();
        for (const src of opened) await src.close().catch((e: unknown) => ctx.logger.warn({ err: e, source: src.uri }, 'closing the source failed'));
        journal.close();
      }
      // Peak memory is part of the contract (flat whatever the file size): log it for tests and benchmarks.
      ctx.logger.info({ summary, maxRssBytes: process.resourceUsage().maxRSS * 1024 }, 'ingest finished');
      if (opts.json) {
        const { files, bytes, copied, alreadyVerified, failed, destinations, skipped } = summary;
        process.stdout.write(
          `${JSON.stringify({ files, bytes, copied, alreadyVerified, failed, destinations, status: summary.status, errors: summary.errors, renamed: summary.renamed, skipped, wiped: wipes.reduce((n, w) => n + w.wiped, 0), ...(wipePolicy ? { wipe: wipes } : {}), ...(uploads ? { upload: uploads } : {}) })}\n`,
        );
      } else {
        process.stdout.write(humanSummary(summary));
        for (const w of wipes) process.stdout.write(`${describeWipe(w)}\n`);
        if (uploads)
          process.stdout.write(
            `upload to ${uploads.target}: ${uploads.queued} queued, ${uploads.uploaded} uploaded and verified, ${uploads.failed} failed, ${uploads.pending} pending\n`,
          );
      }
      const local = summary.status === 'interrupted' ? EXIT.incomplete : summary.status === 'failed' ? EXIT.failed : EXIT.ok;
      const afterUploads = local === EXIT.ok && uploads && upload ? upload.exitCode(uploads) : local;
      // A wipe still waiting for the cloud is incomplete, not failed.
      process.exitCode = afterUploads === EXIT.ok && wipes.some((w) => w.reason !== undefined) ? EXIT.incomplete : afterUploads;
    });
}

/**
 * A wipe that did not happen after a complete ingest fails the run (named in its errors), except one
 * still waiting for the cloud, which leaves it incomplete. After a failed ingest the ingest's own errors
 * already say why nothing was wiped.
 */
function noteWipes(summary: IngestSummary, wipes: readonly WipeReport[]): void {
  if (summary.status !== 'complete') return;
  for (const w of wipes) {
    const e = wipeError(w);
    if (e === undefined || w.reason?.why === 'cloud-pending') continue;
    summary.errors.push({ source: w.source, ...(w.reason?.path ? { path: w.reason.path } : {}), code: e.code, message: e.message });
    summary.status = 'failed';
  }
}

function humanSummary(s: IngestSummary): string {
  const lines = [`${s.files} files (${formatBytes(s.bytes)}): ${s.copied} copied, ${s.alreadyVerified} already done, ${s.failed} failed — ${s.status}`];
  for (const d of s.destinations) lines.push(`  ${d.path}: ${d.verified} verified, ${d.failed} failed, ${formatBytes(d.bytes)} written`);
  for (const e of s.errors.slice(0, 20)) lines.push(`  error ${e.code}: ${e.message}`);
  if (s.errors.length > 20) lines.push(`  … and ${s.errors.length - 20} more errors (see the log)`);
  for (const k of s.skipped.slice(0, 20)) lines.push(`  skipped ${k.path}: ${k.reason}`);
  if (s.skipped.length > 20) lines.push(`  … and ${s.skipped.length - 20} more skipped (see the log)`);
  return `${lines.join('\n')}\n`;
}

/** Loaded only for a terminal: a scripted or daemon-run ingest starts without it. */
async function progressBar(): Promise<{ update: (p: Progress) => void; stop: () => void }> {
  const { default: cliProgress } = await import('cli-progress');
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: '{bar} {percentage}% | {files} files | {sizeDone}/{sizeTotal} | {rate} | ETA {eta_formatted}', etaBuffer: 50, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let startedBar = false;
  return {
    update: (p) => {
      const secs = Math.max((Date.now() - started) / 1000, 0.001);
      const payload = {
        files: `${p.filesDone}/${p.filesTotal}`,
        sizeDone: formatBytes(p.bytesDone),
        sizeTotal: formatBytes(p.bytesTotal),
        rate: `${(p.bytesDone / secs / 1e6).toFixed(1)} MB/s`,
      };
      // The total grows while the source is still being listed: the bar is of the bytes known so far.
      if (!startedBar) {
        bar.start(Math.max(p.bytesTotal, 1), p.bytesDone, payload);
        startedBar = true;
      } else {
        bar.setTotal(Math.max(p.bytesTotal, 1));
        bar.update(p.bytesDone, payload);
      }
    },
    stop: () => {
      if (startedBar) bar.stop();
    },
  };
}

/**
 * The run's upload, when a flag or the config asks for one: the upload code is loaded only then, and the
 * AWS SDK (a large share of start-up on a small box) only once the copies are done and the upload starts.
 */
export async function uploadIfAsked(ctx: CommandContext, flags: IngestUploadFlags): Promise<IngestUpload | undefined> {
  const asked =
    flags.upload !== undefined ||
    flags.uploadWait === false ||
    flags.uploadTimeout !== undefined ||
    flags.s3Provider !== undefined ||
    uploadSettings(ctx.config).target !== undefined;
  return asked ? (await import('./upload.js')).prepareIngestUpload(ctx, flags) : undefined;
}
