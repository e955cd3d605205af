import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// This module sits one level below the program root both as source (src/version.ts) and built (a file in
// dist/, see scripts/build.mjs): the root is found from here, not from each caller's own place.
const ROOT_URL = new URL('..', import.meta.url);

/** The folder holding package.json, dist/ and bin/ (an installed tree or a checkout), without a trailing slash. */
export const PROGRAM_ROOT: string = fileURLToPath(ROOT_URL).replace(/\/$/, '');

/** Shuttle's version, from its package.json (one source of truth for --version, logs and manifests). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('package.json', ROOT_URL), 'utf8')) as { version: string }).version;
