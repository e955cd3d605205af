import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

export interface StateDirInputs {
  /** `--state DIR` */
  flag?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  config?: { readonly stateDir?: string | undefined } | undefined;
}

function set(v: string | undefined): v is string {
  return v !== undefined && v !== '';
}

/**
 * Where the journal and state live, first match wins: `--state`, `$SHUTTLE_STATE_DIR`, config
 * `state_dir`, systemd's `$STATE_DIRECTORY` (first of its colon-separated paths), `$XDG_STATE_HOME/shuttle`,
 * `~/.local/state/shuttle`. Always an absolute path.
 */
export function resolveStateDir(inputs: StateDirInputs = {}): string {
  const env = inputs.env ?? process.env;
  if (set(inputs.flag)) return resolve(inputs.flag);
  if (set(env['SHUTTLE_STATE_DIR'])) return resolve(env['SHUTTLE_STATE_DIR']);
  if (set(inputs.config?.stateDir)) return resolve(inputs.config.stateDir);
  const systemd = env['STATE_DIRECTORY']?.split(':').find((p) => p !== '');
  if (set(systemd)) return resolve(systemd);
  // The XDG spec says a relative $XDG_STATE_HOME is invalid and must be ignored.
  const xdg = env['XDG_STATE_HOME'];
  if (set(xdg) && isAbsolute(xdg)) return join(xdg, 'shuttle');
  const home = set(env['HOME']) ? env['HOME'] : homedir();
  return join(home, '.local', 'state', 'shuttle');
}
