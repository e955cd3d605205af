import { Command, Option } from 'commander';
import { basename, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeyedOutcomes } from '../async.js';
import { ShuttleError, isShuttleError } from '../errors.js';
import type { Reconnected } from '../device/camera-reopen.js';
import { openTetheredCamera } from '../device/tethered-source.js';
import { isGvfs, type DeviceHolder } from '../device/usb/holders.js';
import { runIngest, type FileOutcome, type FileReading, type IngestSummary, type ReadTap } from '../ingest/pipeline.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../ingest/settings.js';
import { TetherPreviews } from '../ingest/tether-previews.js';
import { startHashWorker } from '../io/hash-worker-client.js';
import { Journal } from '../store/journal.js';
import { commandContext, type GlobalOptions } from './context.js';
import { GVFS_FIX } from './doctor-checks.js';
import { EXIT } from './exit.js';
import { NoUploadWaitOption, uploadIfAsked } from './ingest.js';
import { defaultTetherSocket, serveTetherControl, type TetherControl } from './tether-control.js';
import { startTetherPedals } from './tether-pedals.js';
import type { IngestUploadFlags } from './upload.js';

interface TetherOptions extends IngestUploadFlags {
  dest: string[];
  json?: boolean;
  all?: boolean;
  socket?: string;
  captureTarget: 'card' | 'host';
  client?: string;
  session?: string;
  reconnectTimeout?: number;
}

/** One verified shot as the session reports it (stdout with --json, and the answer to `shuttle capture`). */
export interface VerifiedLine {
  event: 'verified';
  name: string;
  files: string[];
  preview: string | null;
  ms: { verified: number; preview: number | null } | null;
  queued?: boolean;
}

/**
 * Signals of a tethering session: the first SIGINT/SIGTERM stops watching for shots (those in flight
 * finish), a second aborts them, a third exits at once.
 */
function tetherSignals(): { stop: AbortSignal; abort: AbortSignal } {
  const stop = new AbortController();
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (abort.signal.aborted) process.exit(130);
    if (stop.signal.aborted) abort.abort(new Error(`received ${sig} again`));
    else stop.abort(new Error(`received ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { stop: stop.signal, abort: abort.signal };
}

const round = (ms: number): number => Math.round(ms);
/** The gvfs processes a claim refused "busy" names as holding the camera (see usb-source.ts). */
function gvfsHolders(err: unknown): DeviceHolder[] {
  const heldBy = isShuttleError(err) ? (err.context as { heldBy?: DeviceHolder[] } | undefined)?.heldBy : undefined;
  return (heldBy ?? []).filter((h) => isGvfs(h.name));
}

/** A warning line for each gvfs process holding the camera, the first time it is seen. */
export function gvfsWarnings(print: (line: Record<string, unknown>, human: string) => void): (err: unknown) => void {
  const told = new Set<number>();
  return (err) => {
    for (const h of gvfsHolders(err)) {
      if (told.has(h.pid)) continue;
      told.add(h.pid);
      const message = `${h.name} (pid ${h.pid}) holds the camera, so Shuttle cannot claim it`;
      print({ event: 'warning', code: 'CAMERA_HELD', process: h.name, pid: h.pid, message, fix: GVFS_FIX }, `warning: ${message}; ${GVFS_FIX}`);
    }
  };
}

const parseSeconds = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ShuttleError('USAGE', `--reconnect-timeout: ${v} is not a number of seconds`);
  return n;
};

export function tetherCommand(globals: () => GlobalOptions): Command {
  return new Command('tether')
    .description('keep a camera session open and copy every new shot, verified, into every destination as it is taken')
    .argument('<source>', 'the camera: usb:, usb:VID:PID, usb:BUS-PORT or ptpip:HOST[:PORT]')
    .addOption(
      new Option('-d, --dest <dir>', 'destination library (repeatable; adds to the configured destinations)')
        .argParser((v: string, prev: string[] = []) => [...prev, v])
        .default([]),
    )
    .option('--all', 'first copy what is on the camera already (else only shots taken from now on)')
    .option('--json', 'print one JSON object per line on stdout: ready, then per shot preview (as soon as it is made) and verified or failed, then stopped')
    .option('--socket <path>', 'control socket for `shuttle capture` (default: $XDG_RUNTIME_DIR/shuttle/tether.sock, else tether.sock in the state folder)')
    .addOption(
      new Option('--capture-target <where>', 'where `shuttle capture` has the camera put the image: its card, or its memory (host) to be fetched at once')
        .choices(['card', 'host'])
        .default('card'),
    )
    .option('--client <name>', 'who the shoot is for: {client} in the name template (default: ingest.client)')
    .option('--session <name>', 'this session of the shoot: {session} in the name template; {shot} counts per job, client and session (default: ingest.session)')
    .option('--reconnect-timeout <seconds>', 'how long a camera that dropped is tried again before the session ends (default: [tether] reconnect_timeout, 120)', parseSeconds)
    .option('--upload <s3url>', 'queue each verified shot for upload to s3://bucket/prefix (default: upload.target), uploaded when the session ends')
    .addOption(new NoUploadWaitOption('--no-wait', 'with --upload: exit when the session ends, its shots durably queued for `shuttle upload` or the daemon'))
    .option('--upload-timeout <seconds>', 'with --upload: keep retrying an unreachable server this long, then exit 3 with the rest queued')
    .option('--s3-provider <name>', 'with --upload: S3 flavour (aws, minio, ceph, swift, r2, b2, generic)')
    .addHelpText(
      'after',
      `
Previews of JPEG shots (and of RAWs with an embedded JPEG preview; a RAW+JPEG pair shows its RAW's when that is at least the preview's size, else its JPEG's) go to <state>/previews (long edge: [tether] preview_long_edge), made from the bytes as they arrive. SIGINT/SIGTERM ends
the session once the shots in flight are verified. Exit codes: 0 every shot verified at every destination;
1 some failed; 2 usage or configuration error; 3 incomplete (interrupted, busy, or uploads still queued);
4 the camera went away and did not come back within --reconnect-timeout (a camera that drops is opened
again by itself until then: shots taken meanwhile are copied once it is back, a file cut off is read on).`,
    )
    .action(async (name: string, opts: TetherOptions) => {
      const ctx = commandContext(globals(), { destinations: opts.dest.map((p) => ({ path: resolve(p) })) });
      const { stop, abort } = tetherSignals();
      startHashWorker();
      const upload = await uploadIfAsked(ctx, opts);
      const longEdge = ctx.config.tether.previewLongEdge;
      const print = (line: Record<string, unknown>, human: string): void => {
        process.stdout.write(opts.json ? `${JSON.stringify(line)}\n` : `${human}\n`);
      };
      const warnHeld = gvfsWarnings(print);
      const reconnectMs = (opts.reconnectTimeout ?? ctx.config.tether.reconnectTimeout) * 1000;
      const journal = Journal.open(ctx.stateDir);
      const previews = new Set<Promise<void>>();
      const shotPreviews = new TetherPreviews({
        stateDir: ctx.stateDir,
        longEdge,
        logger: ctx.logger,
        onPreview: (path, made) => {
          const announced = source.announcedAt(path);
          if (opts.json) print({ event: 'preview', name: path, preview: made.path, ms: announced === undefined ? null : round(made.at - announced) }, '');
        },
      });
      const waiters = new KeyedOutcomes<VerifiedLine>();
      let control: TetherControl | undefined;
      let summary: IngestSummary;
      const source = await openTetheredCamera(
        name,
        { stateDir: ctx.stateDir, timeZone: ctx.config.ingest.timeZone, logger: ctx.logger, signal: abort },
        {
          existing: opts.all === true,
          stop,
          logger: ctx.logger,
          captureTarget: opts.captureTarget,
          reopen: { timeoutMs: reconnectMs },
          onDropped: (cause: unknown) => {
            const message = cause instanceof Error ? cause.message : String(cause);
            print({ event: 'dropped', source: name, message }, `camera dropped (${message}); opening it again for up to ${Math.round(reconnectMs / 1000)} s`);
          },
          onReopenFailed: warnHeld,
          onReconnected: (r: Reconnected) => {
            print(
              { event: 'reconnected', source: r.source, attempts: r.attempts, downMs: r.downMs, reconnects: r.reconnects, found: r.found },
              `camera back after ${(r.downMs / 1000).toFixed(1)} s (${r.attempts} attempt(s))${r.found > 0 ? `; ${r.found} shot(s) taken meanwhile follow` : ''}`,
            );
          },
          onWatching: () => {
            const id = source.camera.camera.identity();
            const camera = `${id.manufacturer} ${id.model}`.trim();
            const destinations = destinationsFromConfig(ctx.config).map((d) => d.path);
            const socket = control?.path ?? null;
            print({ event: 'ready', source: source.uri, camera, destinations, all: opts.all === true, socket }, `tethered to ${camera} (${source.uri}); waiting for shots`);
          },
        },
      ).catch((err: unknown) => {
        warnHeld(err);
        journal.close();
        throw err;
      });
      /**
       * Fires the camera and resolves with the new shot's verified line: what `shuttle capture` and a foot
       * pedal call. The session owns it; it works while the session watches for shots.
       */
      const requestCapture = async (signal: AbortSignal): Promise<VerifiedLine> => {
        const both = AbortSignal.any([signal, stop]);
        const path = await source.trigger(both);
        return waiters.wait(path, both);
      };
      let pedals: Awaited<ReturnType<typeof startTetherPedals>>;
      try {
        control = await serveTetherControl({ path: opts.socket ?? defaultTetherSocket(ctx.stateDir), capture: requestCapture, logger: ctx.logger });
        pedals = await startTetherPedals({ pedals: ctx.config.pedals, capture: requestCapture, print, logger: ctx.logger });
      } catch (err) {
        await control?.close().catch(() => undefined);
        await source.close().catch(() => undefined);
        journal.close();
        throw err;
      }
      const onFile = (f: FileOutcome): void => {
        const verifiedAt = performance.now();
        const announced = source.announcedAt(f.path);
        if (f.state === 'failed') {
          void shotPreviews.forFile(f);
          waiters.settle(f.path, { error: new ShuttleError('DEST_WRITE_FAILED', `${f.path} was not verified at every destination (see the log)`, { context: { path: f.path } }) });
          print({ event: 'failed', name: f.path }, `${basename(f.path)}: FAILED (see the log)`);
          return;
        }
        // A shot the camera keeps in memory for us is safe here now: the camera may free it.
        source.release(f.path).catch((err: unknown) => ctx.logger.warn({ err, path: f.path }, 'the camera did not free a shot it held in memory'));
        // Queued as it lands, so that the daemon or `shuttle upload` finds it even if this session dies.
        let queued: boolean | undefined;
        if (upload) {
          try {
            upload.queue(journal, [f.fileId]);
            queued = true;
          } catch (err) {
            queued = false;
            ctx.logger.error({ err, path: f.path }, 'shot not queued for upload');
          }
        }
        const job = (async () => {
          const made = await shotPreviews.forFile(f);
          const preview = made?.path ?? null;
          const previewAt = made?.at;
          const ms = announced === undefined ? null : { verified: round(verifiedAt - announced), preview: previewAt === undefined ? null : round(previewAt - announced) };
          const files = f.copies.map((c) => join(c.root, c.rel));
          const took = ms === null ? '' : ` in ${(ms.verified / 1000).toFixed(1)} s`;
          const line: VerifiedLine = { event: 'verified', name: f.path, files, preview, ms, ...(queued === undefined ? {} : { queued }) };
          print({ ...line }, `${basename(f.path)}: verified at ${files.length} destination(s)${took}${preview ? ', preview ready' : ''}`);
          waiters.settle(f.path, { value: line });
        })();
        previews.add(job);
        void job.finally(() => previews.delete(job));
      };
      try {
        summary = await runIngest({
          sources: [source],
          destinations: destinationsFromConfig(ctx.config),
          settings: {
            ...ingestSettingsFromConfig(ctx.config, 0, upload !== undefined),
            ...(opts.client === undefined ? {} : { client: opts.client }),
            ...(opts.session === undefined ? {} : { session: opts.session }),
          },
          journal,
          logger: ctx.logger,
          signal: abort,
          onFile,
          onRead: shotPreviews.onRead,
        });
      } catch (err) {
        // The camera went away (or the run could not go on): the shots verified so far stay verified.
        const code = isShuttleError(err) ? err.code : 'INTERNAL';
        if (opts.json) print({ event: 'stopped', status: 'failed', error: { code, message: (err as Error).message } }, '');
        throw err;
      } finally {
        await pedals?.close().catch((e: unknown) => ctx.logger.warn({ err: e }, 'closing the pedals failed'));
        await control.close().catch((e: unknown) => ctx.logger.warn({ err: e }, 'closing the control socket failed'));
        await Promise.allSettled(previews);
        await source.close().catch((e: unknown) => ctx.logger.warn({ err: e, source: source.uri }, 'closing the camera failed'));
        journal.close();
      }
      const uploads = upload !== undefined && summary.status !== 'interrupted' ? await upload.run(abort, summary.fileIds) : undefined;
      if (uploads?.queueError) {
        summary.errors.push(uploads.queueError);
        summary.status = 'failed';
      }
      ctx.logger.info({ summary }, 'tethering ended');
      const { copied, alreadyVerified, failed, status, errors } = summary;
      // The camera went away (or its listing broke off otherwise): the session ended for that reason.
      const ended = errors.find((e) => e.source !== undefined);
      if (ended) process.stderr.write(`shuttle: ${ended.message}\n`);
      print(
        {
          event: 'stopped',
          copied,
          alreadyVerified,
          failed,
          status,
          errors,
          ...(ended ? { error: { code: ended.code, message: ended.message } } : {}),
          ...(uploads ? { upload: uploads } : {}),
        },
        `session ended: ${copied} shots copied, ${failed} failed — ${status}`,
      );
      const gone = ended?.code === 'DEVICE_GONE';
      const local = status === 'interrupted' ? EXIT.incomplete : gone ? EXIT.cameraGone : status === 'failed' ? EXIT.failed : EXIT.ok;
      process.exitCode = local === EXIT.ok && uploads && upload ? upload.exitCode(uploads) : local;
    });
}
