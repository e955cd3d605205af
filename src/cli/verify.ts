import { Command } from 'commander';
import { resolve } from 'node:path';
import { hostname } from 'node:os';
import { verifyDestination, type VerifyReport } from '../ingest/verify.js';
import { acquireLock, destinationLockPath } from '../store/lock.js';
import { VERSION } from '../version.js';
import { commandContext, signalOnTermination, type GlobalOptions } from './context.js';
import { EXIT } from './exit.js';

export function verifyCommand(globals: () => GlobalOptions): Command {
  return new Command('verify')
    .description('re-hash a destination against its ASC MHL manifests: verified, missing, mismatched and unlisted files')
    .argument('<dir>', 'destination library')
    .option('--json', 'print one JSON report on stdout')
    .option('--strict', 'unlisted files count as failures')
    .option('--record', 'write the outcome as a new manifest generation (otherwise nothing is written)')
    .addHelpText('after', '\nExit codes: 0 every listed file matches; 1 something is missing or mismatched; 2 usage error.')
    .action(async (dir: string, opts: { json?: boolean; strict?: boolean; record?: boolean }) => {
      const ctx = commandContext(globals());
      const root = resolve(dir);
      const signal = signalOnTermination();
      // Only a recording run writes, so only it needs the destination to itself.
      const lock = opts.record ? await acquireLock(destinationLockPath(root), { owner: { command: 'verify --record' }, wait: 0, signal }) : undefined;
      try {
        const report = await verifyDestination(root, {
          strict: opts.strict === true,
          record: opts.record === true,
          signal,
          creator: { tool: { name: 'shuttle', version: VERSION }, hostname: hostname() },
        });
        ctx.logger.info({ destination: root, ok: report.ok }, 'verify finished');
        if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        else process.stdout.write(humanReport(root, report));
        process.exitCode = report.ok ? EXIT.ok : EXIT.failed;
      } finally {
        lock?.release();
      }
    });
}

function humanReport(root: string, r: VerifyReport): string {
  const c = r.counts;
  const lines = [
    `${root}: ${c.verified} verified, ${c.missing} missing, ${c.mismatched} mismatched, ${c.unverifiable} unreadable, ${c.unlisted} unlisted — ${r.ok ? 'OK' : 'FAILED'}`,
  ];
  for (const p of r.missing.slice(0, 50)) lines.push(`  missing: ${p}`);
  for (const m of r.mismatched.slice(0, 50)) lines.push(`  mismatched: ${JSON.stringify(m)}`);
  for (const u of r.unverifiable.slice(0, 50)) lines.push(`  unreadable: ${JSON.stringify(u)}`);
  for (const p of r.unlisted.slice(0, 50)) lines.push(`  unlisted: ${p}`);
  if (r.recorded) lines.push(`  recorded generation ${r.recorded.sequence}: ${r.recorded.file}`);
  return `${lines.join('\n')}\n`;
}
