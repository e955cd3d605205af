import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import * as z from 'zod';
import { previewPathFor } from '../../ingest/preview.js';
import type { ListedFile } from '../../store/file-list.js';
import type { StationEventType } from '../events.js';
import { previewUrl, thumbnailPathFor, writeThumbnail } from '../previews.js';
import type { DaemonUploadStatus, JobSnapshot } from '../status.js';
import { setLoginCookies, type ApiAuth } from './auth.js';
import type { ApiBackend } from './backend.js';
import { cpuTemperature, diskSpace, networkLinks } from './host.js';
import * as s from './schemas.js';
import { httpError } from './errors.js';
import type { EventStream } from './sse.js';

export type ZodApp = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, ZodTypeProvider>;

/** Which job copied a file, from the events (the journal does not know jobs); the newest are kept. */
const MAX_FILE_JOBS = 20_000;

/** 4xx/5xx answers every route may give, in the document. */
const errors = { 400: s.errorBody, 401: s.errorBody, 403: s.errorBody, 404: s.errorBody } as const;

export function registerRoutes(app: ZodApp, ctx: { backend: ApiBackend; auth: ApiAuth; stream: EventStream }): void {
  const { backend: b, auth, stream } = ctx;
  const fileJobs = new Map<number, number>();
  const off = b.events.subscribe((e) => {
    if (e.type !== 'file.verified' && e.type !== 'file.failed') return;
    fileJobs.set(e.fileId, e.job);
    if (fileJobs.size > MAX_FILE_JOBS) fileJobs.delete(fileJobs.keys().next().value!);
  });
  app.addHook('onClose', async () => off());

  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/api/v1/station', { schema: { summary: 'The station: its state, devices, destinations, uploads and network', response: { 200: s.station, ...errors } } }, async () => {
    const view = b.view();
    const devices = b.devices();
    const up = b.uploads?.status();
    const [destinations, cpu] = await Promise.all([Promise.all(b.destinations().map((d) => diskSpace(d))), cpuTemperature()]);
    return {
      name: b.name,
      version: b.version,
      startedAt: b.startedAt,
      state: view.state,
      reason: view.reason,
      eventId: b.events.lastId,
      devices: devices.map((d) => ({
        id: d.id,
        kind: d.kind,
        label: d.label,
        uri: d.uri,
        state: view.devices.find((v) => v.id === d.id)?.state ?? 'waiting',
        job: d.job,
        attachedAt: d.attachedAt,
      })),
      destinations,
      ...(up && b.uploads
        ? {
            uploads: {
              target: up.target,
              state: up.state,
              paused: b.uploads.paused,
              depth: up.depth,
              bytes: up.bytesPending,
              failed: up.failed,
              bytesPerSecond: up.bytesPerSecond,
            },
          }
        : {}),
      network: { links: networkLinks(), cloud: cloudReachability(up) },
      ...(cpu === undefined ? {} : { cpuTemperatureC: cpu }),
    };
  });

  app.get('/api/v1/jobs', { schema: { summary: 'Queued and running jobs, and recently finished ones (newest first)', response: { 200: s.jobs, ...errors } } }, async () => {
    const j = b.jobs();
    return { active: j.active.map(jobView), recent: j.recent.map(jobView) };
  });

  app.get('/api/v1/jobs/:id', { schema: { params: s.idParams, response: { 200: s.jobSnapshot, ...errors } } }, async (req) => {
    const job = b.job(req.params.id);
    if (!job) throw httpError(404, `no job ${req.params.id} (finished jobs are forgotten after a while, and on restart)`);
    return jobView(job);
  });

  app.post(
    '/api/v1/jobs/:id/cancel',
    { schema: { summary: 'Stops a job: a queued one at once, a running one at its next safe point', params: s.idParams, response: { 200: s.jobSnapshot, ...errors } } },
    async (req) => {
      const job = b.cancel(req.params.id);
      if (!job) throw httpError(404, `no job ${req.params.id}`);
      return jobView(job);
    },
  );

  app.get(
    '/api/v1/files',
    { schema: { summary: 'Files the journal knows, newest first, a page at a time', querystring: s.filesQuery, response: { 200: s.filesPage, ...errors } } },
    async (req) => {
      const { limit, before } = req.query;
      const page = b.files.page(limit + 1, before);
      const more = page.length > limit;
      const items = await Promise.all(page.slice(0, limit).map((f) => fileView(f)));
      return { items, ...(more ? { next: items[items.length - 1]!.fileId } : {}) };
    },
  );

  app.get('/api/v1/files/:fileId', { schema: { params: s.fileParams, response: { 200: s.fileItem, ...errors } } }, async (req) => {
    const f = b.files.get(req.params.fileId);
    if (!f) throw httpError(404, `no file ${req.params.fileId}`);
    return fileView(f);
  });

  // Thumbnails being made on request, by path: a page asking twice at once makes one.
  const makingThumbs = new Map<string, Promise<string>>();
  app.get(
    '/api/v1/files/:fileId/preview',
    { schema: { summary: "The file's preview (image/jpeg), or with size=thumb its thumbnail", params: s.fileParams, querystring: s.previewQuery } },
    async (req, reply) => {
      const f = b.files.get(req.params.fileId);
      const preview = f === undefined ? undefined : await previewOf(f);
      if (preview === undefined) throw httpError(404, `no preview of file ${req.params.fileId}`);
      const path = req.query.size === 'thumb' ? await thumbnailOf(preview) : preview;
      // Made once per verified copy: it changes only when the same name is verified again.
      return reply.type('image/jpeg').header('cache-control', 'private, max-age=300').send(createReadStream(path));
    },
  );

  app.get(
    '/api/v1/uploads',
    { schema: { summary: 'The upload queue, in the order it will go', querystring: s.uploadsQuery, response: { 200: s.uploadsView, ...errors } } },
    async (req) => {
      const u = requireUploads();
      const st = u.status();
      return {
        target: st.target,
        state: st.state,
        paused: u.paused,
        depth: st.depth,
        bytes: st.bytesPending,
        items: u.pending(req.query.limit).map((r) => ({
          fileId: r.fileId,
          bucket: r.bucket,
          key: r.key,
          size: r.size,
          state: r.state,
          priority: r.priority,
          attempts: r.attempts,
          ...(r.state === 'queued' && r.nextAttemptAt > Date.now() ? { nextAttemptAt: new Date(r.nextAttemptAt).toISOString() } : {}),
          ...(r.lastError === null ? {} : { lastError: r.lastError }),
        })),
      };
    },
  );

  app.post(
    '/api/v1/uploads/pause',
    { schema: { summary: 'Stops claiming files for upload (those in flight finish) until resumed, also across restarts', response: { 200: s.pausedResult, ...errors } } },
    async () => {
      const u = requireUploads();
      await u.pause();
      return { paused: u.paused, state: u.status().state };
    },
  );

  app.post('/api/v1/uploads/resume', { schema: { response: { 200: s.pausedResult, ...errors } } }, async () => {
    const u = requireUploads();
    await u.resume();
    return { paused: u.paused, state: u.status().state };
  });

  app.post(
    '/api/v1/uploads/:fileId/priority',
    { schema: { summary: 'Moves a queued file in the upload order', params: s.fileParams, body: s.priorityBody, response: { 200: s.priorityResult, ...errors } } },
    async (req) => {
      const changed = requireUploads().setPriority(req.params.fileId, req.body.priority);
      if (changed === 0) throw httpError(404, `file ${req.params.fileId} has no queued upload`);
      return { fileId: req.params.fileId, changed };
    },
  );

  app.get('/api/v1/errors', { schema: { summary: 'Recent error events, oldest first', querystring: s.errorsQuery, response: { 200: s.errorsView, ...errors } } }, async (req) => ({
    items: b.events.recent(req.query.limit, new Set<StationEventType>(['error', 'file.failed'])).map((e) => ({ ...e }) as z.output<typeof s.eventBody>),
  }));

  app.post(
    '/api/v1/devices/:id/eject',
    {
      schema: {
        summary: 'Unmounts a card and powers its reader off (409 while its job runs)',
        params: s.deviceParams,
        response: { 200: s.ejectResult, 409: s.errorBody, 500: s.errorBody, ...errors },
      },
    },
    async (req) => ({ device: req.params.id, ...(await b.eject(req.params.id)) }),
  );

  app.post(
    '/api/v1/capture',
    {
      schema: {
        summary: 'Fires the tethered camera and answers once the new shot is verified (409 when no camera is tethered)',
        response: { 200: s.capturedShot, 409: s.errorBody, 500: s.errorBody, ...errors },
      },
    },
    async (_req, reply) => {
      // A client that goes away stops waiting (the shot itself is still copied and verified).
      const gone = new AbortController();
      const onClose = (): void => {
        if (!reply.raw.writableFinished) gone.abort(httpError(499, 'the client went away'));
      };
      reply.raw.once('close', onClose);
      try {
        const shot = await b.capture(gone.signal);
        return { ...shot, previewUrl: shot.preview === null ? null : previewUrl(shot.fileId) };
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.get(
    '/api/v1/events',
    {
      sse: 'only',
      schema: {
        summary: 'Server-Sent Events: id, event type, data (the event as JSON); honours Last-Event-ID; `event: reset` when the missed events are gone',
        querystring: s.eventsQuery,
      },
    },
    async (req, reply) => {
      const header = req.headers['last-event-id'];
      const fromHeader = typeof header === 'string' && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
      const lastId = fromHeader ?? req.query.lastEventId;
      const types = req.query.types ? new Set(req.query.types.split(',').map((t) => t.trim()) as StationEventType[]) : undefined;
      reply.sse.keepAlive();
      reply.sse.sendHeaders();
      // Tells the browser how soon to reconnect, before anything else.
      reply.raw.write('retry: 2000\n\n');
      stream.attach(reply.raw, lastId, types);
    },
  );

  app.get('/metrics', { schema: { summary: 'Prometheus metrics (text exposition format)' } }, async (_req, reply) =>
    reply.type(b.metrics.contentType).send(await b.metrics.text()),
  );

  app.get('/login', { schema: { hide: true } }, async (req, reply) => {
    const failed = (req.query as Record<string, string | undefined>)['failed'] !== undefined;
    return reply.type('text/html; charset=utf-8').send(loginPage(auth.enabled, failed));
  });

  app.post(
    '/api/v1/login',
    { schema: { summary: 'Logs a browser in: sets the session and CSRF cookies', body: s.loginBody, response: { 200: z.object({ ok: z.literal(true) }), ...errors } } },
    async (req, reply) => {
      const form = req.headers['content-type']?.startsWith('application/x-www-form-urlencoded') === true;
      if (!auth.accepts(req.body.token)) {
        if (form) return reply.redirect('/login?failed', 303);
        throw httpError(401, 'wrong API token', 'AUTH');
      }
      setLoginCookies(reply, auth.loginCookies(), req.protocol === 'https');
      if (form) return reply.redirect('/', 303);
      return { ok: true as const };
    },
  );

  function requireUploads(): NonNullable<ApiBackend['uploads']> {
    if (!b.uploads) throw httpError(404, 'no upload target is configured ([upload] target)');
    return b.uploads;
  }

  /**
   * The thumbnail of a preview; made now when missing or older than the preview (a preview from before
   * thumbnails, one `shuttle tether` made again, one whose thumbnail failed), else the preview itself
   * rather than nothing.
   */
  async function thumbnailOf(preview: string): Promise<string> {
    const thumb = thumbnailPathFor(b.stateDir, preview);
    const [t, p] = await Promise.all([stat(thumb).catch(() => undefined), stat(preview).catch(() => undefined)]);
    if (t?.isFile() && (p === undefined || t.mtimeMs >= p.mtimeMs)) return thumb;
    let making = makingThumbs.get(thumb);
    if (making === undefined) {
      making = writeThumbnail(b.stateDir, preview).finally(() => makingThumbs.delete(thumb));
      makingThumbs.set(thumb, making);
    }
    return making.catch((err: unknown) => {
      app.log.warn({ err, preview }, 'no thumbnail; serving the preview');
      return preview;
    });
  }

  async function previewOf(f: ListedFile): Promise<string | undefined> {
    for (const c of f.copies) {
      if (c.state !== 'verified' || c.rel === undefined) continue;
      const path = previewPathFor(b.stateDir, c.rel);
      if (await isFile(path)) return path;
    }
    return undefined;
  }

  async function fileView(f: ListedFile): Promise<z.output<typeof s.fileItem>> {
    const preview = await previewOf(f);
    const job = fileJobs.get(f.fileId);
    return {
      fileId: f.fileId,
      ...(job === undefined ? {} : { job }),
      source: f.source,
      sourceKey: f.sourceKey,
      path: f.path,
      size: f.size,
      mtime: new Date(f.mtimeMs).toISOString(),
      state: f.state,
      ...(f.error === undefined ? {} : { error: f.error }),
      copies: f.copies.map((c) => ({ destination: c.root, ...(c.rel === undefined ? {} : { path: join(c.root, c.rel) }), state: c.state, ...(c.error ? { error: c.error } : {}) })),
      cloud: f.uploads.map((u) => ({
        bucket: u.bucket,
        key: u.key,
        state: u.state,
        ...(u.uploadedAt ? { uploadedAt: u.uploadedAt } : {}),
        ...(u.lastError ? { lastError: u.lastError } : {}),
      })),
      ...(preview === undefined ? {} : { preview: previewUrl(f.fileId), thumbnail: previewUrl(f.fileId, 'thumb') }),
    };
  }
}

function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (st) => st.isFile(),
    () => false,
  );
}

/** A job with what is left of it (the dashboard's "files and bytes remaining"). */
export function jobView(j: JobSnapshot): z.output<typeof s.jobSnapshot> {
  const p = j.progress;
  return {
    ...j,
    progress: p && { ...p, filesLeft: Math.max(0, p.filesTotal - p.filesDone), bytesLeft: Math.max(0, p.bytesTotal - p.bytesDone) },
  };
}

function cloudReachability(u: DaemonUploadStatus | undefined): 'reachable' | 'unreachable' | 'unknown' | 'none' {
  if (u === undefined) return 'none';
  if (u.state === 'uploading') return 'reachable';
  if (u.state === 'backing-off' || u.state === 'failed') return 'unreachable';
  return u.sinceStart.uploaded + u.sinceStart.alreadyPresent > 0 ? 'reachable' : 'unknown';
}

function loginPage(enabled: boolean, failed: boolean): string {
  const body = enabled
    ? `<form method="post" action="/api/v1/login"><label>API token <input name="token" type="password" autocomplete="current-password" autofocus required></label> <button>Log in</button></form>${failed ? '<p role="alert">Wrong token.</p>' : ''}`
    : '<p>This station needs no token: <a href="/">open the dashboard</a>.</p>';
  return `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Shuttle: log in</title><body style="font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem"><h1>Shuttle</h1>${body}</body></html>`;
}
