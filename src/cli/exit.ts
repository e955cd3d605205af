import { isShuttleError } from '../errors.js';

/** Process exit codes, part of the CLI's contract with scripts and systemd. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  incomplete: 3,
  /** `shuttle tether`: the camera went away and did not come back within the reconnect timeout. */
  cameraGone: 4,
} as const;

export function exitCodeForError(err: unknown): number {
  if (isShuttleError(err)) {
    switch (err.code) {
      case 'USAGE':
      case 'CONFIG_INVALID':
      case 'CONFIG_UNREADABLE':
        return EXIT.usage;
      case 'ABORTED':
      case 'LOCKED':
        return EXIT.incomplete;
      default:
        return EXIT.failed;
    }
  }
  return EXIT.failed;
}
