import { Command, InvalidArgumentError, Option } from 'commander';
import { isShuttleError } from '../errors.js';
import { createLogger } from '../log.js';
import { SIMULATOR_VENDORS, type CaptureTarget, type SimulatorVendor } from '../device/ptpip/personality.js';
import type { CameraSimulator } from '../device/ptpip/simulator.js';

function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`not a TCP port: ${value}`);
  return n;
}

/**
 * `shuttle simulate-camera`: serves a folder as a PTP/IP camera until SIGINT/SIGTERM. Logs JSON lines to
 * stderr; prints nothing on stdout but the listening address (one line), so scripts can read the port.
 */
export function simulateCameraCommand(): Command {
  return new Command('simulate-camera')
    .description('serve a folder as a PTP/IP camera (for trying Shuttle, gphoto2 or a test without a camera)')
    .requiredOption('--dir <dir>', 'folder served as the camera card')
    .option('--port <port>', 'TCP port (0 picks a free one)', parsePort, 15740)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--pool <dir>', 'images that a capture "shoots", in name order')
    .addOption(
      new Option(
        '--vendor <maker>',
        'whose camera to play: generic (interrupt events), canon (EOS GetEvent polling), nikon (CheckEvent polling, SDRAM capture), sony (PC Remote: shots through camera memory, counted by a property), fuji (no events)',
      )
        .choices(SIMULATOR_VENDORS)
        .default('generic'),
    )
    .addOption(new Option('--capture-target <where>', 'where a capture goes: the card, or camera memory only (host)').choices(['card', 'host']).default('card'))
    .option('--serial <serial>', 'serial number (default: derived from the folder)')
    .option('--time-zone <zone>', 'IANA zone of the simulated camera clock (default: this host)')
    .option('--deletable', "let initiators delete the folder's files (DeleteObject), as from a camera's card; default: write-protected")
    .option('--reuse-memory-name', 'give every capture into camera memory the same file name, as Nikon bodies do (default: numbered)')
    .action(
      async (
        opts: {
          dir: string;
          port: number;
          host: string;
          pool?: string;
          serial?: string;
          timeZone?: string;
          vendor: SimulatorVendor;
          captureTarget: CaptureTarget;
          deletable?: boolean;
          reuseMemoryName?: boolean;
        },
        cmd: Command,
      ) => {
        // --log-level is the program's global option.
        const level = cmd.parent?.opts<{ logLevel?: string }>().logLevel;
        const logger = createLogger(level === undefined ? { fd: 2 } : { fd: 2, level });
        let sim: CameraSimulator;
        try {
          const { CameraSimulator } = await import('../device/ptpip/simulator.js');
          sim = await CameraSimulator.start({
            dir: opts.dir,
            port: opts.port,
            host: opts.host,
            pool: opts.pool,
            deletable: opts.deletable === true,
            serialNumber: opts.serial,
            timeZone: opts.timeZone,
            vendor: opts.vendor,
            captureTarget: opts.captureTarget,
            reuseMemoryName: opts.reuseMemoryName === true,
            logger,
          });
        } catch (err) {
          logger.error({ err: isShuttleError(err) ? err.toJSON() : err }, 'camera simulator could not start');
          process.exitCode = 1;
          return;
        }
        // Listening for the stop signals before the address is printed: whoever read it may stop us at once.
        const stopped = new Promise<void>((resolve) => {
          const stop = (sig: NodeJS.Signals): void => {
            logger.info({ signal: sig }, 'stopping camera simulator');
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            resolve();
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
        process.stdout.write(`${JSON.stringify({ host: sim.host, port: sim.port })}\n`);
        await stopped;
        await sim.stop();
      },
    );
}
