import { setTimeout as sleep } from 'node:timers/promises';
import { uploadSettings, type Config, type WipePolicy } from '../config/index.js';
import { ShuttleError } from '../errors.js';
import { parseS3Url } from '../upload/keys.js';
import type { JobKind } from './status.js';

/**
 * The daemon's wipe policies ([cards] wipe, [cameras] wipe), resolved once at start. Folders and hot
 * folders are never wiped: only the jobs of cards and cameras are.
 */
export interface WipePolicies {
  cards: WipePolicy;
  cameras: WipePolicy;
  /** after-cloud: the upload target whose verified objects count. */
  cloud?: { bucket: string; prefix: string } | undefined;
  /** after-cloud: how the job waits for the daemon's uploader to verify the files. */
  waitForCloud?: ((state: unknown, signal: AbortSignal) => Promise<void>) | undefined;
}

/** How often a job waiting for the cloud looks at the upload queue again (a journal query). */
const CLOUD_POLL_MS = 2_000;

/** USAGE when a policy needs the cloud and [upload] has no target: refused at start, not at each card. */
export function wipePolicies(config: Config): WipePolicies {
  const { cards, cameras } = config;
  const target = uploadSettings(config).target;
  const needsCloud = cards.wipe === 'after-cloud' || cameras.wipe === 'after-cloud';
  if (needsCloud && target === undefined) {
    throw new ShuttleError('USAGE', 'wipe = "after-cloud" needs [upload] target: without an upload nothing is ever verified in the cloud', {
      context: { cards: cards.wipe, cameras: cameras.wipe },
    });
  }
  const loc = target === undefined ? undefined : parseS3Url(target);
  return {
    cards: cards.wipe,
    cameras: cameras.wipe,
    ...(needsCloud && loc
      ? { cloud: { bucket: loc.bucket, prefix: loc.prefix }, waitForCloud: (_state, signal) => sleep(CLOUD_POLL_MS, undefined, { signal }).catch(() => undefined) }
      : {}),
  };
}

/** The policy for a job of this kind. */
export function policyFor(policies: WipePolicies | undefined, kind: JobKind | undefined): WipePolicy {
  if (policies === undefined) return 'never';
  return kind === 'card' ? policies.cards : kind === 'camera' ? policies.cameras : 'never';
}
