/**
 * Bounds on one listing of a camera. A broken or hostile device can list objects without end, nest
 * folders without end or list the same handles over and over; each is counted here and stops the listing
 * with SOURCE_LIMIT once past its bound, before memory and the ingest plan grow with it.
 */
import { ShuttleError } from '../../errors.js';

export interface ListingLimits {
  /** Files listed, over every storage of the camera. */
  maxObjects: number;
  /** Folders from a storage's root down to a file. */
  maxDepth: number;
  /**
   * Handles in every object list the camera returned (files, folders and repeats), over every storage.
   * Above maxObjects: a device that lists a whole storage at once and then folder by folder names each
   * object twice.
   */
  maxListedEntries: number;
}

export const DEFAULT_LISTING_LIMITS: Readonly<ListingLimits> = Object.freeze({
  maxObjects: 200_000,
  maxDepth: 32,
  maxListedEntries: 400_000,
});

/** What one listing has used of its limits; shared by the walks of a camera's storages. */
export class ListingBudget {
  readonly limits: ListingLimits;
  private objects = 0;
  private entries = 0;

  constructor(
    limits: Partial<ListingLimits> = {},
    private readonly context: Record<string, unknown> = {},
  ) {
    this.limits = { ...DEFAULT_LISTING_LIMITS, ...limits };
  }

  /** Counts the handles of one object list (or storage list) the camera returned. */
  entriesListed(n: number): void {
    this.entries += n;
    const max = this.limits.maxListedEntries;
    if (this.entries > max) {
      throw this.exceeded(`the camera listed more than ${max} entries (objects, folders and repeats); a camera that lists without end is broken`, {
        limit: 'maxListedEntries',
        max,
        listed: this.entries,
      });
    }
  }

  /** Counts one file about to be handed on. */
  objectListed(): void {
    this.objects += 1;
    const max = this.limits.maxObjects;
    if (this.objects > max) throw this.exceeded(`the camera lists more than ${max} files`, { limit: 'maxObjects', max });
  }

  /** Checks the depth of a folder about to be entered; `at` names it in the error. */
  folderDepth(depth: number, at: string): void {
    const max = this.limits.maxDepth;
    if (depth > max) throw this.exceeded(`the camera nests folders more than ${max} deep (at ${at})`, { limit: 'maxDepth', max, at });
  }

  private exceeded(message: string, context: Record<string, unknown>): ShuttleError {
    return new ShuttleError('SOURCE_LIMIT', `${message}; listing stopped`, { context: { ...this.context, ...context } });
  }
}
