import { Command } from 'commander';
import { basename } from 'node:path';
import { commandContext, signalOnTermination, type GlobalOptions } from './context.js';
import { EXIT } from './exit.js';
import { defaultTetherSocket, requestCapture } from './tether-control.js';
import type { VerifiedLine } from './tether.js';

/** `shuttle capture`: fires the camera of the running `shuttle tether` and waits for the shot to be verified. */
export function captureCommand(globals: () => GlobalOptions): Command {
  return new Command('capture')
    .description('fire the camera of the running tethering session and wait until the new shot is verified')
    .option('--socket <path>', "the session's control socket (default: as shuttle tether picks it)")
    .option('--json', "print the shot's verified line as JSON")
    .addHelpText('after', '\nExit codes: 0 the shot was verified at every destination; 1 it failed, the camera did not fire or no session answered; 2 usage.')
    .action(async (opts: { socket?: string; json?: boolean }) => {
      const ctx = commandContext(globals());
      const line = (await requestCapture(opts.socket ?? defaultTetherSocket(ctx.stateDir), signalOnTermination())) as VerifiedLine;
      const took = line.ms === null ? '' : ` in ${(line.ms.verified / 1000).toFixed(1)} s`;
      process.stdout.write(opts.json ? `${JSON.stringify(line)}\n` : `${basename(line.name)}: verified at ${line.files.length} destination(s)${took}\n`);
      process.exitCode = EXIT.ok;
    });
}
