import { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { ShuttleError } from '../errors.js';
import type { GlobalOptions } from './context.js';

/**
 * `shuttle config get KEY`: one value of the resolved configuration (file, then SHUTTLE_* variables),
 * strings as they are and anything else as JSON. For scripts that must follow the daemon's config, such
 * as the card unit's helper, which mounts a card read-write only when `cards.wipe` says so.
 */
export function configCommand(globals: () => GlobalOptions): Command {
  const config = new Command('config').description('show the resolved configuration');
  config
    .command('get')
    .description('print one resolved value, e.g. `shuttle config get cards.wipe`')
    .argument('<key>', 'dotted key as written in the TOML file (snake_case)')
    .action((key: string) => {
      let value: unknown = loadConfig({ file: globals().config, env: process.env });
      for (const part of key.split('.')) {
        const name = part.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
        if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, name)) {
          throw new ShuttleError('USAGE', `config get: no key ${JSON.stringify(key)}`, { context: { key } });
        }
        value = (value as Record<string, unknown>)[name];
      }
      process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value ?? null)}\n`);
    });
  return config;
}
