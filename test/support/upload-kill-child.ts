/**
 * Child process for the kill -9 test (test/upload-kill.test.ts): one uploadFile() with the multipart
 * state in the journal, as `shuttle upload` and the daemon keep it (JournalUploadStateStore). It reports every step on stdout (one line each, written synchronously so the parent can
 * kill right after a given step), and appends "<uploadId> <partNumber>" to `sendLog` before each
 * UploadPart request leaves, so that the parent can prove no recorded part was sent again.
 *
 * Run: node --import ./test/support/ts-resolve-hooks.mjs test/support/upload-kill-child.ts '<json config>'
 */
import { appendFileSync, writeSync } from 'node:fs';
import { createS3Client } from '../../src/upload/client.js';
import { RateLimiter } from '../../src/upload/rate-limit.js';
import { Journal } from '../../src/store/journal.js';
import { JournalUploadStateStore } from '../../src/upload/journal-state.js';
import type { NewUploadState, PartRecord, UploadRef, UploadStatus } from '../../src/upload/state.js';
import { uploadFile } from '../../src/upload/uploader.js';

export interface KillChildConfig {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  key: string;
  path: string;
  size: number;
  sha256: string;
  stateDir: string;
  sendLog: string;
  partSize: number;
  concurrency: number;
  bytesPerSecond: number | null;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as KillChildConfig;
const emit = (line: string): void => void writeSync(1, `${line}\n`);

const { client } = createS3Client({
  provider: 'swift',
  endpoint: cfg.endpoint,
  credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey },
});
client.middlewareStack.add(
  (next, context) => async (args) => {
    const name = (context.commandName ?? '?').replace(/Command$/, '');
    const input = args.input as { UploadId?: string; PartNumber?: number };
    if (name === 'UploadPart') appendFileSync(cfg.sendLog, `${input.UploadId} ${input.PartNumber}\n`);
    emit(`send ${name}${input.PartNumber !== undefined ? ` ${input.PartNumber}` : ''}`);
    const out = await next(args);
    emit(`done ${name}${input.PartNumber !== undefined ? ` ${input.PartNumber}` : ''}`);
    return out;
  },
  { step: 'initialize', name: 'killTestEvents' },
);

class ReportingStore extends JournalUploadStateStore {
  override async begin(state: NewUploadState): Promise<void> {
    await super.begin(state);
    emit(`begin ${state.uploadId}`);
  }
  override async recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void> {
    await super.recordPart(ref, uploadId, part);
    emit(`recorded ${part.partNumber}`);
  }
  override async setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void> {
    await super.setStatus(ref, uploadId, status);
    emit(`status ${status}`);
  }
}

const journal = Journal.open(cfg.stateDir);
const result = await uploadFile({
  client,
  provider: 'swift',
  bucket: cfg.bucket,
  key: cfg.key,
  path: cfg.path,
  size: cfg.size,
  expected: { sha256: cfg.sha256 },
  store: new ReportingStore(journal),
  partSize: cfg.partSize,
  concurrency: cfg.concurrency,
  retry: { baseDelayMs: 20, maxDelayMs: 200 },
  ...(cfg.bytesPerSecond === null ? {} : { rateLimit: new RateLimiter({ bytesPerSecond: cfg.bytesPerSecond }) }),
});
emit(`result ${JSON.stringify(result)}`);
client.destroy();
journal.close();
