import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { once } from 'node:events';
import { ShuttleError } from '../errors.js';
import { KEY_NAMES, LIGHT_DRIVERS, PEDAL_ACTIONS, type LightDriverName, type PedalAction } from '../hid-vocabulary.js';
import {
  PedalWatcher,
  STATION_STATES,
  StatusLight,
  describeHid,
  isKeyboard,
  nodeHidBackend,
  parsePedalDevice,
  pedalBindings,
  type HidDeviceInfo,
  type PedalBinding,
  type StationState,
} from '../device/hid/index.js';
import { driverForIds } from '../device/hid/lights.js';
import { commandContext, signalOnTermination, type GlobalOptions } from './context.js';

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** One HID interface as `shuttle hid list --json` prints it. */
function deviceJson(d: HidDeviceInfo): Record<string, unknown> {
  return {
    id: `${hex4(d.vendorId)}:${hex4(d.productId)}`,
    path: d.path ?? null,
    manufacturer: d.manufacturer ?? null,
    product: d.product ?? null,
    serial: d.serialNumber ?? null,
    interface: d.interface,
    keyboard: isKeyboard(d),
    light: driverForIds(d.vendorId, d.productId)?.name ?? null,
  };
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`not a positive whole number: ${value}`);
  return n;
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`not a number of seconds: ${value}`);
  return n;
}

function parseKey(value: string): string {
  const k = value.trim().toLowerCase();
  if (!KEY_NAMES.includes(k)) throw new InvalidArgumentError(`not a key name: ${value} (like b, space, enter, pageup, f5, f13, leftshift)`);
  return k;
}

function listCommand(globals: () => GlobalOptions): Command {
  return new Command('list')
    .description('list HID devices: USB id, name, path, whether it is a keyboard (a pedal can be) and which status-light driver fits it')
    .option('--json', 'print one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      commandContext(globals());
      const devices = (await nodeHidBackend().devices()).filter((d) => d.path !== undefined);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ devices: devices.map(deviceJson) })}\n`);
        return;
      }
      if (devices.length === 0) {
        process.stdout.write('no HID devices found\n');
        return;
      }
      for (const d of devices) {
        const light = driverForIds(d.vendorId, d.productId);
        process.stdout.write(`${describeHid(d)}${isKeyboard(d) ? '  [keyboard]' : ''}${light ? `  [light: ${light.name}]` : ''}\n`);
      }
    });
}

interface PedalOptions {
  device?: string;
  key?: string;
  action: PedalAction;
  json?: boolean;
  count?: number;
}

function pedalCommand(globals: () => GlobalOptions): Command {
  return new Command('pedal')
    .description('watch the configured foot pedals ([[pedals]], or --device and --key) and print every action a press fires, to try a pedal set-up')
    .option('--device <id>', 'the pedal: VID:PID in hex, or "keyboard" for any keyboard (instead of [[pedals]])')
    .option('--key <name>', 'with --device: the key it sends (b, space, pageup, f13…)', parseKey)
    .addOption(new Option('--action <name>', 'with --device: the action a press fires').choices(PEDAL_ACTIONS).default('capture'))
    .option('--json', 'print one JSON object per line: ready, then one per action')
    .option('--count <n>', 'exit after this many actions', parseCount)
    .action(async (opts: PedalOptions) => {
      const ctx = commandContext(globals());
      let bindings: PedalBinding[];
      if (opts.device !== undefined || opts.key !== undefined) {
        if (opts.device === undefined || opts.key === undefined) throw new ShuttleError('USAGE', '--device and --key go together');
        bindings = [{ device: parsePedalDevice(opts.device), key: opts.key, action: opts.action }];
      } else {
        bindings = pedalBindings(ctx.config.pedals ?? []);
      }
      if (bindings.length === 0) throw new ShuttleError('USAGE', 'no pedals configured: add [[pedals]] to the config or give --device and --key');
      const stop = signalOnTermination();
      const watcher = new PedalWatcher({ bindings, logger: ctx.logger });
      const done = new AbortController();
      let fired = 0;
      watcher.onAction((press) => {
        fired++;
        const device = `${hex4(press.device.vendorId)}:${hex4(press.device.productId)}`;
        process.stdout.write(
          opts.json
            ? `${JSON.stringify({ event: 'action', action: press.action, key: press.key, device, path: press.device.path ?? null })}\n`
            : `${press.action} (${press.key} on ${describeHid(press.device)})\n`,
        );
        if (opts.count !== undefined && fired >= opts.count) done.abort();
      });
      await watcher.start();
      const connected = watcher.connected.map((d) => ({ device: `${hex4(d.vendorId)}:${hex4(d.productId)}`, path: d.path ?? null }));
      process.stdout.write(
        opts.json
          ? `${JSON.stringify({ event: 'ready', bindings: bindings.length, connected })}\n`
          : `watching ${bindings.length} pedal binding(s); ${connected.length === 0 ? 'no pedal connected yet' : `connected: ${connected.map((c) => c.path).join(', ')}`}; press a pedal (Ctrl-C ends)\n`,
      );
      await once(AbortSignal.any([stop, done.signal]), 'abort');
      await watcher.close();
    });
}

interface LightOptions {
  driver?: LightDriverName | 'auto';
  path?: string;
  serial?: string;
  hold?: number;
  json?: boolean;
}

function lightCommand(globals: () => GlobalOptions): Command {
  return new Command('light')
    .description('show a station state on the status light ([status_light], or --driver/--path), to try a light: it stays until Ctrl-C (or --hold), then goes off')
    .addArgument(new Argument('<state>', 'the state to show').choices(STATION_STATES))
    .addOption(new Option('--driver <name>', 'the kind of light').choices(['auto', ...LIGHT_DRIVERS]))
    .option('--path <path>', 'only the light at this HID path (e.g. /dev/hidraw3)')
    .option('--serial <serial>', 'only the light with this USB serial number')
    .option('--hold <seconds>', 'turn the light off and exit after this long', parseSeconds)
    .option('--json', 'print one JSON object per line: every report written, then off')
    .action(async (state: StationState, opts: LightOptions) => {
      const ctx = commandContext(globals());
      const configured = ctx.config.statusLight;
      const stop = signalOnTermination();
      const light = new StatusLight({
        driver: opts.driver ?? configured?.driver ?? 'auto',
        path: opts.path ?? configured?.path,
        serialNumber: opts.serial ?? configured?.serial,
        logger: ctx.logger,
        onWrite: (report, device) => {
          if (opts.json)
            process.stdout.write(`${JSON.stringify({ event: 'write', kind: report.kind, bytes: Buffer.from(report.bytes).toString('hex'), path: device.path ?? null })}\n`);
        },
      });
      await light.setState(state);
      await light.start();
      const shown = light.device;
      if (!shown) {
        await light.close();
        throw new ShuttleError('SOURCE_NOT_FOUND', 'no status light found (see `shuttle hid list`; --driver and --path pick one)');
      }
      const what = { event: 'shown', state, driver: shown.driver, path: shown.device.path ?? null };
      process.stdout.write(opts.json ? `${JSON.stringify(what)}\n` : `${state} on ${describeHid(shown.device)} (${shown.driver}); Ctrl-C turns it off\n`);
      const held = opts.hold === undefined ? [] : [AbortSignal.timeout(opts.hold * 1000)];
      await once(AbortSignal.any([stop, ...held]), 'abort');
      await light.close();
      if (opts.json) process.stdout.write(`${JSON.stringify({ event: 'off' })}\n`);
    });
}

export function hidCommand(globals: () => GlobalOptions): Command {
  return new Command('hid')
    .description('HID devices: list them, try a foot pedal, try a status light')
    .addCommand(listCommand(globals))
    .addCommand(pedalCommand(globals))
    .addCommand(lightCommand(globals));
}
