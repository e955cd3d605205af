#!/usr/bin/env node
// npm's install step for Shuttle itself (package.json "install"): builds the sd_notify addon
// (binding.gyp → build/Release/sd_notify.node) with the node-gyp that npm carries. It compiles against
// the headers of the runtime Shuttle runs on, which the `node` dependency unpacks with its release into
// node_modules/node/node_modules/node-linux-ARCH, so the build needs no download and no system Node of
// the same version. Where that folder is gone (a later `npm install` prunes it), node-gyp finds headers
// its usual way ($npm_config_nodedir, or its cache): the addon uses Node-API only, whose binary
// interface does not change between Node versions, so that build loads in the runtime all the same.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const nodeGyp = process.env.npm_config_node_gyp;
if (!nodeGyp) {
  process.stderr.write('build-addon: run through npm (npm ci, npm rebuild), which names its node-gyp in $npm_config_node_gyp\n');
  process.exit(2);
}
// node-gyp takes npm's settings from the environment, over its own command line.
const env = { ...process.env };
try {
  const runtime = dirname(createRequire(import.meta.url).resolve('node/package.json'));
  const release = join(runtime, 'node_modules', `node-${process.platform}-${process.arch}`);
  if (existsSync(join(release, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = release;
} catch {
  // No bundled runtime: node-gyp's own choice.
}
const r = spawnSync(process.execPath, [nodeGyp, 'rebuild'], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
