#!/usr/bin/env node
// Launcher: Shuttle needs Node >= 22.13 (node:sqlite). The project ships a supported runtime as the
// `node` dependency; when started by an older system node, re-exec under that runtime.
import { spawn } from 'node:child_process';
import module, { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The re-exec'd child is told which of its file descriptors is a pipe from this launcher; the variable
// goes at once, so that nothing Shuttle starts inherits it.
const PARENT_FD = 'SHUTTLE_LAUNCHER_FD';
// Tests set this to take the re-exec path whatever the system node's version.
const FORCE = 'SHUTTLE_LAUNCHER_REEXEC';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 13) || process.env[FORCE] === '1') {
  const require = createRequire(import.meta.url);
  let runtime;
  try {
    runtime = join(dirname(require.resolve('node/package.json')), 'bin', 'node');
  } catch {
    process.stderr.write(`shuttle: Node ${process.versions.node} is too old (need >= 22.13) and no bundled runtime was found\n`);
    process.exit(2);
  }
  reexec(runtime);
} else {
  if (process.env[PARENT_FD] !== undefined) stopWhenLauncherIsGone();
  await start();
}

/**
 * Runs this script under `runtime` and stands in for it: signals sent to the launcher go to the child,
 * and the launcher ends as the child did: with its exit code, or killed by the same signal (a shell
 * then sees 128+N), so that a supervisor, `timeout` or a test stopping the pid it started stops Shuttle.
 * The child runs in a session of its own, so that a terminal's Ctrl-C reaches it once, through here,
 * and not a second time directly (a second SIGINT means "exit now, without the clean stop").
 * Node has no exec() before 22.15, so replacing this process is not an option on the Nodes that get here.
 * If this process is killed outright (SIGKILL), the child sees the pipe between them close and stops
 * itself as on SIGTERM.
 */
function reexec(runtime) {
  const env = { ...process.env, [PARENT_FD]: '3' };
  delete env[FORCE];
  const child = spawn(runtime, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    detached: true,
    env,
  });
  const forward = (sig) => child.kill(sig);
  const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT'];
  for (const sig of forwarded) process.on(sig, forward);
  // Job control: the child's session has no terminal, so Ctrl-Z must stop it from here (SIGCONT above
  // resumes it when the shell resumes this process).
  process.on('SIGTSTP', () => {
    child.kill('SIGSTOP');
    process.kill(process.pid, 'SIGSTOP');
  });
  child.once('error', (err) => {
    process.stderr.write(`shuttle: could not start ${runtime}: ${err.message}\n`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    if (code !== null) process.exit(code);
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    // Still here: a signal whose default action in Node is not to end the process (SIGUSR1 opens the inspector).
    process.exit(128 + constants.signals[signal]);
  });
}

/** In the re-exec'd child: the launcher's end of the pipe closing means it is gone; stop as on SIGTERM. */
function stopWhenLauncherIsGone() {
  const fd = Number(process.env[PARENT_FD]);
  delete process.env[PARENT_FD];
  const launcher = new Socket({ fd, readable: true, writable: false });
  launcher.once('close', () => process.kill(process.pid, 'SIGTERM'));
  launcher.on('error', () => {});
  launcher.resume();
  // Watching must not keep a finished command alive.
  launcher.unref();
}

async function start() {
  // Compiling Shuttle's modules is most of a command's start-up on a small box, and seconds under
  // emulation: keep V8's compiled code between runs. Only in a directory this user owns (systemd's
  // CacheDirectory, or the user's cache), never Node's default in the shared /tmp, where another user
  // could plant entries. NODE_COMPILE_CACHE, when set, has already enabled it.
  if (!process.env.NODE_COMPILE_CACHE) {
    const base = process.env.CACHE_DIRECTORY?.split(':')[0] || process.env.XDG_CACHE_HOME || (process.env.HOME ? join(homedir(), '.cache') : '');
    if (base) module.enableCompileCache(join(base, process.env.CACHE_DIRECTORY ? '' : 'shuttle', 'node-compile-cache'));
  }
  const here = dirname(fileURLToPath(import.meta.url));
  await import(join(here, '..', 'dist', 'main.js'));
}
