import { createLogger, type Logger } from '../log.js';
import { loadConfig, resolveStateDir, type Config } from '../config/index.js';

export interface GlobalOptions {
  config?: string;
  state?: string;
  logLevel?: string;
}

export interface CommandContext {
  config: Config;
  stateDir: string;
  logger: Logger;
}

/**
 * Config, state dir and logger for one CLI command. CLI commands log to stderr so that stdout carries
 * only their output; pretty only when a person is watching.
 */
export function commandContext(opts: GlobalOptions, overrides?: Parameters<typeof loadConfig>[0]['overrides']): CommandContext {
  const config = loadConfig({ file: opts.config, env: process.env, overrides });
  const stateDir = resolveStateDir({ flag: opts.state, env: process.env, config });
  const logger = createLogger({ fd: 2, level: opts.logLevel ?? config.logLevel, pretty: process.stderr.isTTY === true });
  return { config, stateDir, logger };
}

/** An AbortSignal that fires on SIGINT/SIGTERM; a second signal exits at once. */
export function signalOnTermination(): AbortSignal {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort(new Error(`received ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ac.signal;
}
