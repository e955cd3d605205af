import * as z from 'zod';

/**
 * The API's shapes, in zod: requests are validated with them, responses serialised through them, and the
 * OpenAPI document at /api/v1/openapi.json is generated from them, so the three cannot drift apart.
 * Registered with ids, so the document names them as components.
 */

const int = z.int().min(0);
const iso = z.string().describe('ISO 8601 time');

export const errorBody = z
  .object({
    error: z.object({
      code: z.string().describe('the ShuttleError code (USAGE, AUTH, …; see src/errors.ts)'),
      message: z.string(),
    }),
  })
  .meta({ id: 'Error' });

export const jobState = z.enum(['queued', 'running', 'done', 'failed', 'cancelled', 'interrupted']);

export const jobSnapshot = z
  .object({
    id: int,
    key: z.string(),
    kind: z.enum(['card', 'folder', 'camera', 'hotfolder']),
    label: z.string(),
    origin: z.string(),
    state: jobState,
    createdAt: iso,
    startedAt: iso.optional(),
    finishedAt: iso.optional(),
    waitingFor: z.string().optional(),
    progress: z
      .object({
        filesTotal: int.describe('files known so far (a source still being listed may add more)'),
        filesDone: int,
        filesLeft: int,
        bytesTotal: int,
        bytesDone: int,
        bytesLeft: int,
        current: z.string().optional().describe('the file being copied'),
        phase: z
          .enum(['verifying', 'waiting-for-cloud'])
          .optional()
          .describe(
            'verifying: the wipe policy is reading the source a second time; waiting-for-cloud: every local copy is verified and the wipe waits for the uploads (the card may be ejected, giving up its wipe)',
          ),
      })
      .optional(),
    rateBytesPerSec: z.number().min(0).optional(),
    etaSeconds: z.number().min(0).optional(),
    result: z
      .object({
        status: z.enum(['complete', 'failed', 'interrupted']),
        files: int,
        copied: int,
        alreadyVerified: int,
        failed: int,
        bytes: int,
        errors: z.array(z.object({ code: z.string(), message: z.string(), path: z.string().optional() })).describe('the first 20 errors'),
        errorCounts: z.record(z.string(), int).optional().describe('every error of the job, counted by code'),
        skipped: z.array(z.object({ path: z.string(), reason: z.string() })),
      })
      .optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    history: z.array(z.object({ state: jobState, at: iso, reason: z.string().optional() })),
  })
  .meta({ id: 'Job' });

export const stationState = z.enum(['idle', 'ingesting', 'verifying', 'uploading', 'safe-to-pull', 'attention']);

const uploadState = z.enum(['idle', 'uploading', 'backing-off', 'waiting-for-lock', 'failed', 'paused', 'stopped']);

export const station = z
  .object({
    name: z.string(),
    version: z.string(),
    startedAt: iso,
    state: stationState,
    reason: z.string(),
    eventId: int.describe('the newest event id: GET /api/v1/events?lastEventId=… continues from this state'),
    devices: z.array(
      z.object({
        id: z.string(),
        kind: z.enum(['camera', 'card']),
        label: z.string(),
        uri: z.string(),
        state: z.enum(['waiting', 'queued', 'ingesting', 'safe-to-pull', 'attention']),
        job: int.optional(),
        attachedAt: iso,
      }),
    ),
    destinations: z.array(z.object({ path: z.string(), freeBytes: int.optional(), totalBytes: int.optional(), error: z.string().optional() })),
    uploads: z
      .object({
        target: z.string(),
        state: uploadState,
        paused: z.boolean(),
        depth: int.describe('files queued or uploading'),
        bytes: int.describe('their bytes'),
        failed: int,
        bytesPerSecond: int,
      })
      .optional(),
    network: z.object({
      links: z.array(z.object({ name: z.string(), addresses: z.array(z.string()) })).describe('interfaces with an address beyond loopback'),
      cloud: z.enum(['reachable', 'unreachable', 'unknown', 'none']).describe('the upload target, as the uploader last found it; none without one'),
    }),
    cpuTemperatureC: z.number().optional(),
  })
  .meta({ id: 'Station' });

export const jobs = z.object({ active: z.array(jobSnapshot), recent: z.array(jobSnapshot) }).meta({ id: 'Jobs' });

export const idParams = z.object({ id: z.coerce.number().int().min(1) });
export const fileParams = z.object({ fileId: z.coerce.number().int().min(1) });
export const deviceParams = z.object({ id: z.string().min(1).max(4096) });

export const fileItem = z
  .object({
    fileId: int,
    job: int.optional().describe('the job that copied it, while the daemon remembers'),
    source: z.string(),
    sourceKey: z.string(),
    path: z.string().describe('path on the source'),
    size: z.int().describe('bytes (-1: a path that could not be read)'),
    mtime: iso.describe('modification time on the source'),
    state: z.enum(['seen', 'copying', 'verified', 'failed']),
    error: z.string().optional(),
    copies: z.array(
      z.object({
        destination: z.string(),
        path: z.string().optional().describe('absolute path of the copy'),
        state: z.enum(['copying', 'verified', 'failed', 'pruned']),
        error: z.string().optional(),
      }),
    ),
    cloud: z
      .array(
        z.object({
          bucket: z.string(),
          key: z.string(),
          state: z.enum(['queued', 'uploading', 'uploaded', 'failed']),
          uploadedAt: iso.optional(),
          lastError: z.string().optional(),
        }),
      )
      .describe('its upload rows: one per S3 target it was queued for'),
    preview: z.string().optional().describe('URL of its preview, when one was made'),
    thumbnail: z.string().optional().describe('URL of the small version of its preview (for tiles), when a preview was made'),
  })
  .meta({ id: 'File' });

export const previewQuery = z.object({
  size: z.enum(['full', 'thumb']).default('full').describe('thumb: the small version (long edge 320 pixels) for tiles'),
});

export const filesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: z.coerce.number().int().min(1).optional().describe('a fileId: the page of files older than it'),
});

export const filesPage = z.object({ items: z.array(fileItem), next: int.optional().describe('before= of the next page') }).meta({ id: 'FilePage' });

export const uploadsQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

export const uploadsView = z
  .object({
    target: z.string(),
    state: uploadState,
    paused: z.boolean(),
    depth: int,
    bytes: int,
    items: z.array(
      z.object({
        fileId: int,
        bucket: z.string(),
        key: z.string(),
        size: int,
        state: z.enum(['queued', 'uploading', 'uploaded', 'failed']),
        priority: z.int().describe('lower goes first'),
        attempts: int,
        nextAttemptAt: iso.optional(),
        lastError: z.string().optional(),
      }),
    ),
  })
  .meta({ id: 'Uploads' });

export const priorityBody = z.object({ priority: z.int().min(-1_000_000).max(1_000_000).describe('lower goes first; the configured extension order gives 0, 1, 2, …') });

export const priorityResult = z.object({ fileId: int, changed: int.describe('queued rows moved') });

export const pausedResult = z.object({ paused: z.boolean(), state: uploadState });

export const eventBody = z.looseObject({ id: int, at: iso, type: z.string() }).meta({ id: 'Event', description: 'a StationEvent (src/daemon/events.ts)' });

export const errorsView = z.object({ items: z.array(eventBody) });

export const errorsQuery = z.object({ limit: z.coerce.number().int().min(1).max(2000).default(100) });

export const ejectResult = z.object({
  device: z.string(),
  unmounted: z.boolean(),
  poweredOff: z.boolean(),
  note: z.string().optional().describe('why it was not powered off'),
});

export const capturedShot = z
  .object({
    event: z.literal('verified'),
    name: z.string().describe("the shot's path on the camera"),
    files: z.array(z.string()).describe('its verified copies'),
    preview: z.string().nullable().describe('its preview under the state folder, when one was made'),
    previewUrl: z.string().nullable().describe('URL of its preview, when one was made'),
    ms: z.object({ verified: int, preview: int.nullable() }).nullable().describe("milliseconds from the camera's new-object event to verified, and to the preview"),
    job: int.describe('the tethering session'),
    fileId: int,
    camera: z.string().describe("the tethered camera's device id"),
  })
  .meta({ id: 'CapturedShot' });

export const loginBody = z.object({ token: z.string().min(1).max(4096) });

export const eventsQuery = z.object({
  types: z.string().max(1000).optional().describe('comma-separated event types to receive (default: all)'),
  lastEventId: z.coerce.number().int().min(0).optional().describe('as the Last-Event-ID header, for the first connection'),
});
