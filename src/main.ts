import { Command, CommanderError } from 'commander';
import { ShuttleError, isShuttleError } from './errors.js';
import { VERSION } from './version.js';
import { envVariablesHelp } from './config/index.js';
import { ingestCommand } from './cli/ingest.js';
import { statusCommand } from './cli/status.js';
import { runCommand } from './cli/run.js';
import { requestCommand } from './cli/request.js';
import { uploadCommand } from './cli/upload.js';
import { verifyCommand } from './cli/verify.js';
import { sampleCardCommand } from './cli/sample.js';
import { simulateCameraCommand } from './cli/simulate-camera.js';
import { doctorCommand } from './cli/doctor.js';
import { EXIT, exitCodeForError } from './cli/exit.js';
import type { GlobalOptions } from './cli/context.js';

// `shuttle ... | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const program = new Command('shuttle')
  .description('Shuttle: verified ingest of cards, cameras and folders into local libraries (and the cloud)')
  .version(VERSION)
  .option('-c, --config <file>', 'config file (TOML); see config/shuttle.example.toml')
  .option('-s, --state <dir>', 'state directory holding the journal (else SHUTTLE_STATE_DIR, STATE_DIRECTORY, XDG state dir)')
  .option('--log-level <level>', 'trace, debug, info, warn, error, fatal')
  .showHelpAfterError()
  .exitOverride()
  .addHelpText('after', `\nEnvironment overrides:\n${envVariablesHelp()}`);

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
for (const cmd of [ingestCommand(globals), verifyCommand(globals), statusCommand(globals), runCommand(globals), requestCommand(globals), uploadCommand(globals), doctorCommand(globals), sampleCardCommand(), simulateCameraCommand()]) {
  cmd.exitOverride();
  program.addCommand(cmd);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with exit code 0; parse errors were already printed.
    process.exitCode = err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    const e = isShuttleError(err) ? err : new ShuttleError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
    process.stderr.write(`shuttle: ${e.message}${e.code === 'INTERNAL' && err instanceof Error && err.stack ? `\n${err.stack}` : ''}\n`);
    process.exitCode = exitCodeForError(e);
  }
}
