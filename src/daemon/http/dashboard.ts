import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
// The `hide` flag of route schemas: these routes are files, not part of the API's OpenAPI document.
import type {} from '@fastify/swagger';
import { PROGRAM_ROOT } from '../../version.js';

/**
 * The dashboard's files: web/ at `/` (index.html, its modules and style), the login form at `/login`,
 * and the ES module builds of Preact and htm at `/vendor/` straight from node_modules, so the browser
 * loads the same code the lockfile pinned, without a bundler or a CDN.
 */

export const WEB_ROOT = join(PROGRAM_ROOT, 'web');

/** Paths the page's import map names, and the package specifier whose ESM build each one is. */
const VENDOR: Record<string, string> = {
  '/vendor/preact/preact.mjs': 'preact',
  '/vendor/preact/hooks.mjs': 'preact/hooks',
  '/vendor/htm/htm.mjs': 'htm',
};

/** What a browser may load before it has logged in: the login form and what it needs. */
export const DASHBOARD_PUBLIC_PATHS: ReadonlySet<string> = new Set(['/login', '/login.js', '/style.css']);

export async function registerDashboard(app: FastifyInstance): Promise<void> {
  // Read once at start: a few kilobytes, and a missing package fails the start, not a page load.
  const vendor = new Map<string, Buffer>();
  for (const [path, spec] of Object.entries(VENDOR)) vendor.set(path, await readFile(fileURLToPath(import.meta.resolve(spec))));
  for (const [path, body] of vendor) {
    app.get(path, { schema: { hide: true } }, async (_req, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(body));
  }
  // One route per file found at start (no wildcard): an unknown path under /api/ stays the API's 404.
  await app.register(fastifyStatic, { root: WEB_ROOT, prefix: '/', wildcard: false, index: ['index.html'], cacheControl: false, schemaHide: true });
  app.get('/login', { schema: { hide: true } }, async (_req, reply) => reply.sendFile('login.html'));
}
