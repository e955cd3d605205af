import { Command } from 'commander';
import { basename } from 'node:path';
import { ControlClient } from '../daemon/control.js';
import { clientSocketPaths } from '../daemon/socket-path.js';
import { isShuttleError } from '../errors.js';
import { commandContext, signalOnTermination, type CommandContext, type GlobalOptions } from './context.js';
import { EXIT } from './exit.js';
import { defaultTetherSocket, requestCapture } from './tether-control.js';
import type { VerifiedLine } from './tether.js';

/** The daemon's tethered camera (`[tether] cameras`), through its control socket. */
async function captureByDaemon(ctx: CommandContext, signal: AbortSignal): Promise<VerifiedLine> {
  const client = await ControlClient.connect(clientSocketPaths(ctx.config.daemon.controlSocket, process.env), { signal });
  try {
    return (await client.request('capture', {}, { signal })) as VerifiedLine;
  } finally {
    client.close();
  }
}

/**
 * `shuttle capture`: fires the camera of the running `shuttle tether`, or else the daemon's tethered
 * camera, and waits for the shot to be verified. With --socket, that socket (a session's or the daemon's:
 * both speak the same protocol).
 */
export function captureCommand(globals: () => GlobalOptions): Command {
  return new Command('capture')
    .description('fire the camera of the running tethering session (or of the daemon, with [tether] cameras) and wait until the new shot is verified')
    .option('--socket <path>', "the session's or the daemon's control socket (default: shuttle tether's, else the daemon's)")
    .option('--json', "print the shot's verified line as JSON")
    .addHelpText('after', '\nExit codes: 0 the shot was verified at every destination; 1 it failed, the camera did not fire or no session answered; 2 usage.')
    .action(async (opts: { socket?: string; json?: boolean }) => {
      const ctx = commandContext(globals());
      const signal = signalOnTermination();
      let line: VerifiedLine;
      if (opts.socket !== undefined) {
        line = (await requestCapture(opts.socket, signal)) as VerifiedLine;
      } else {
        try {
          line = (await requestCapture(defaultTetherSocket(ctx.stateDir), signal)) as VerifiedLine;
        } catch (err) {
          // No `shuttle tether` here: the daemon may hold the camera.
          if (!isShuttleError(err, 'TRANSPORT') || err.context['reason'] !== 'no-session') throw err;
          line = await captureByDaemon(ctx, signal);
        }
      }
      const took = line.ms === null ? '' : ` in ${(line.ms.verified / 1000).toFixed(1)} s`;
      process.stdout.write(opts.json ? `${JSON.stringify(line)}\n` : `${basename(line.name)}: verified at ${line.files.length} destination(s)${took}\n`);
      process.exitCode = EXIT.ok;
    });
}
