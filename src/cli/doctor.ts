import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { loadConfig, normalizeConfig, resolveStateDir, type Config } from '../config/index.js';
import { isShuttleError } from '../errors.js';
import { PROGRAM_ROOT, VERSION } from '../version.js';
import { signalOnTermination, type GlobalOptions } from './context.js';
import { runDoctorChecks, serviceStateDir, type CheckResult, type CheckStatus } from './doctor-checks.js';
import { EXIT } from './exit.js';

/** The config the service reads (shuttle.service passes it with --config). */
export const SERVICE_CONFIG_FILE = '/etc/shuttle/config.toml';

const LABEL: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

/** One line per check, the fix indented below it; then the counts. */
export function formatDoctorReport(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.id.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${LABEL[r.status]}  ${r.id.padEnd(width)}  ${r.detail}`);
    if (r.fix) for (const [i, l] of r.fix.split('\n').entries()) lines.push(`${' '.repeat(width + 8)}${i === 0 ? 'fix: ' : '     '}${l}`);
  }
  const n = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  lines.push('', `${n('ok')} ok, ${n('warn')} warning${n('warn') === 1 ? '' : 's'}, ${n('fail')} failure${n('fail') === 1 ? '' : 's'}`);
  return `${lines.join('\n')}\n`;
}

/** The service's config, or the problem with it as a failed check (the other checks then run on defaults). */
function configForDoctor(file: string | undefined): { config: Config; problem?: CheckResult } {
  const path = file ?? (existsSync(SERVICE_CONFIG_FILE) ? SERVICE_CONFIG_FILE : undefined);
  try {
    return { config: loadConfig({ file: path, env: process.env }) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const unreadable = isShuttleError(err, 'CONFIG_UNREADABLE');
    return {
      config: normalizeConfig({}),
      problem: {
        id: 'config',
        status: 'fail',
        detail: `${path ?? 'config'}: ${message}`,
        fix: unreadable
          ? 'run doctor as root (sudo shuttle doctor): the config is readable by root and the service only'
          : `fix ${path ?? 'the config'}, then: sudo systemctl restart shuttle`,
      },
    };
  }
}

/** `shuttle doctor [--json]`: what keeps Shuttle from working on this machine, and what to do about it. */
export function doctorCommand(globals: () => GlobalOptions): Command {
  return new Command('doctor')
    .description(
      'check what keeps Shuttle from working here: installed units and rules, eject unit and polkit rule, udevd, the CPU, camera permissions, desktop services grabbing cameras, state and destinations, clock, S3',
    )
    .option('--json', 'print one JSON object on stdout: {"ok","checks":[{"id","status","detail","fix"}]}')
    .action(async (opts: { json?: boolean }) => {
      const g = globals();
      const { config, problem } = configForDoctor(g.config);
      const explicitState = Boolean(g.state || process.env['SHUTTLE_STATE_DIR'] || config.stateDir);
      const stateDir = await serviceStateDir(resolveStateDir({ flag: g.state, env: process.env, config }), explicitState);
      const checks = await runDoctorChecks({
        config,
        stateDir,
        programRoot: PROGRAM_ROOT,
        version: VERSION,
        signal: signalOnTermination(),
      });
      const results = problem ? [problem, ...checks] : checks;
      const failed = results.some((r) => r.status === 'fail');
      process.stdout.write(opts.json ? `${JSON.stringify({ ok: !failed, checks: results })}\n` : formatDoctorReport(results));
      process.exitCode = failed ? EXIT.failed : EXIT.ok;
    });
}
