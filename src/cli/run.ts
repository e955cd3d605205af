import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { loadConfig, resolveStateDir, unknownEnvVariables } from '../config/index.js';
import { Daemon } from '../daemon/daemon.js';
import { createLogger } from '../log.js';
import type { GlobalOptions } from './context.js';
import { EXIT } from './exit.js';

interface RunOptions {
  dest: string[];
  hotFolder: string[];
  socket?: string;
}

const repeatable = (v: string, prev: string[] = []): string[] => [...prev, v];

/**
 * `shuttle run`: the daemon. Logs JSON lines to stdout (journald keeps them); SIGTERM or SIGINT stop it
 * cleanly: running jobs are interrupted at a safe point, their temp files removed and the journal left
 * consistent, then it exits 0. A second signal exits at once (the journal is still consistent: every
 * step is durable before it is recorded, and the next start cleans what was in flight).
 */
export function runCommand(globals: () => GlobalOptions): Command {
  return new Command('run')
    .description('the daemon: ingests hot folders, cards and cameras as they appear; `shuttle status` and `shuttle request` talk to it')
    .addOption(new Option('-d, --dest <dir>', 'destination library (repeatable; adds to the configured destinations)').argParser(repeatable).default([]))
    .addOption(new Option('--hot-folder <dir>', 'watch this folder (repeatable; adds to [daemon] hot_folders)').argParser(repeatable).default([]))
    .option('--socket <path>', 'control socket (else [daemon] control_socket, $RUNTIME_DIRECTORY/control.sock, /run/shuttle/control.sock)')
    .addHelpText(
      'after',
      `
Under systemd use Type=notify; the daemon sends sd_notify from its own process, so NotifyAccess=main
(the default) will do when ExecStart= runs it on Node >= 22.13 (bin/shuttle does); NotifyAccess=all when
an older node's launcher re-executes it as a child, or when the sd_notify addon is not built.
Exit codes: 0 stopped cleanly; 1 failed; 2 usage or configuration error; 3 another daemon holds the state dir or socket.`,
    )
    .action(async (opts: RunOptions) => {
      const g = globals();
      const config = loadConfig({
        file: g.config,
        env: process.env,
        overrides: {
          destinations: opts.dest.map((p) => ({ path: resolve(p) })),
          ...(opts.socket ? { daemon: { control_socket: resolve(opts.socket) } } : {}),
        },
      });
      const stateDir = resolveStateDir({ flag: g.state, env: process.env, config });
      const logger = createLogger({ fd: 1, level: g.logLevel ?? config.logLevel, pretty: process.stdout.isTTY === true });
      const unknown = unknownEnvVariables(process.env);
      if (unknown.length) logger.warn({ variables: unknown }, 'SHUTTLE_* variables that mean nothing to Shuttle (typos?)');

      // Handlers go in before the start, so that a SIGTERM during start-up still stops cleanly.
      let daemon: Daemon | undefined;
      let stopReason: string | undefined;
      const onSignal = (sig: NodeJS.Signals): void => {
        if (sig === 'SIGHUP') {
          logger.info('SIGHUP: configuration reload is not supported; restart the service to apply changes');
          return;
        }
        if (stopReason !== undefined) {
          logger.warn({ signal: sig }, 'second signal while stopping: exiting now');
          process.exit(130);
        }
        stopReason = `received ${sig}`;
        if (daemon) void daemon.stop(stopReason);
      };
      const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
      for (const sig of signals) process.on(sig, onSignal);
      try {
        daemon = await Daemon.start({ config, stateDir, logger, hotFolders: opts.hotFolder.map((p) => resolve(p)) });
        if (stopReason !== undefined) void daemon.stop(stopReason);
        await daemon.stopped;
      } finally {
        for (const sig of signals) process.off(sig, onSignal);
      }
      process.exitCode = EXIT.ok;
    });
}
