import { Command, CommanderError } from 'commander';
import { ShuttleError, isShuttleError } from './errors.js';
import { VERSION } from './version.js';
import { envVariablesHelp } from './config/index.js';
import type { Command as CommandType } from 'commander';
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
  // Made only when help is shown: listing the variables walks the whole config schema.
  .addHelpText('after', () => `\nEnvironment overrides:\n${envVariablesHelp()}`);

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
const commands: Record<string, () => Promise<CommandType>> = {
  ingest: async () => (await import('./cli/ingest.js')).ingestCommand(globals),
  tether: async () => (await import('./cli/tether.js')).tetherCommand(globals),
  capture: async () => (await import('./cli/capture.js')).captureCommand(globals),
  verify: async () => (await import('./cli/verify.js')).verifyCommand(globals),
  status: async () => (await import('./cli/status.js')).statusCommand(globals),
  run: async () => (await import('./cli/run.js')).runCommand(globals),
  request: async () => (await import('./cli/request.js')).requestCommand(globals),
  upload: async () => (await import('./cli/upload.js')).uploadCommand(globals),
  doctor: async () => (await import('./cli/doctor.js')).doctorCommand(globals),
  devices: async () => (await import('./cli/devices.js')).devicesCommand(globals),
  config: async () => (await import('./cli/config.js')).configCommand(globals),
  hid: async () => (await import('./cli/hid.js')).hidCommand(globals),
  sample: async () => (await import('./cli/sample.js')).sampleCardCommand(),
  'simulate-camera': async () => (await import('./cli/simulate-camera.js')).simulateCameraCommand(),
};
// Only the command being run is loaded: the daemon's memory and the start-up of `shuttle request` (run by
// the card unit on every insert) pay for no other command. Help without a command loads them all.
const named = process.argv.slice(2).find((a) => Object.hasOwn(commands, a));
for (const name of named ? [named] : Object.keys(commands)) {
  const cmd = await commands[name]!();
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
