import { readFileSync } from 'node:fs';

/** Shuttle's version, from its package.json (one source of truth for --version, logs and manifests). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
