import { Command } from 'commander';
import { resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { ControlClient } from '../daemon/control.js';
import { clientSocketPaths } from '../daemon/socket-path.js';
import type { JobSnapshot } from '../daemon/status.js';
import { ShuttleError } from '../errors.js';
import type { GlobalOptions } from './context.js';
import { EXIT } from './exit.js';
import { formatBytes } from './format.js';

interface RequestOptions {
  socket?: string;
  json?: boolean;
}

/** How long a cancelled `request ingest --wait` waits for the daemon to confirm before giving up. */
const CANCEL_GRACE_MS = 20_000;

function connect(globals: GlobalOptions, opts: RequestOptions): Promise<ControlClient> {
  const config = loadConfig({ file: globals.config, env: process.env });
  const configured = opts.socket ? resolve(opts.socket) : config.daemon.controlSocket;
  return ControlClient.connect(clientSocketPaths(configured, process.env));
}

/**
 * A camera (`usb:…`, `ptpip:…`) goes as written; anything else is a path, made absolute here since the
 * daemon does not know this shell's working directory (`x:/card` is the folder `x:` below it).
 */
function sourceArgument(source: string): string {
  return /^(usb|ptpip):/i.test(source) ? source : resolve(source);
}

function exitCodeFor(job: JobSnapshot): number {
  if (job.state === 'done') return EXIT.ok;
  if (job.state === 'failed') return EXIT.failed;
  return EXIT.incomplete;
}

export function describeJob(job: JobSnapshot): string {
  const r = job.result;
  const figures = r ? `: ${r.files} files, ${r.copied} copied, ${r.alreadyVerified} already done, ${r.failed} failed, ${formatBytes(r.bytes)} written` : '';
  const why = job.history[job.history.length - 1]?.reason;
  return `job ${job.id} ${job.state} (${job.label})${figures}${why && job.state !== 'done' ? ` — ${why}` : ''}`;
}

/**
 * `shuttle request ingest PATH|URI` and `shuttle request cancel JOB`: ask the running daemon. This is
 * what udev-started units call for a card they have mounted: with --wait the command lasts as long as
 * the job, its exit code is the job's outcome, and stopping it (the unit is stopped because the card
 * went away) cancels the job.
 */
export function requestCommand(globals: () => GlobalOptions): Command {
  const request = new Command('request')
    .description('ask the running daemon (`shuttle run`) to ingest a source or cancel a job')
    .option('--socket <path>', 'control socket of the daemon (default: as the daemon resolves it)')
    .option('--json', 'print the job as one JSON object');

  const ingest = new Command('ingest')
    .description('ingest a mounted card or folder (PATH) or a camera (usb:…, ptpip:HOST[:PORT]) with the daemon')
    .argument(
      '<source>',
      'a card or folder inside the card mount base, [daemon] watch_mounts, hot_folders or allowed_sources; a USB camera attached now; a network camera the daemon discovered or [daemon] network_cameras lists',
    )
    .option('--wait', 'wait until the job has finished; exit 0 done, 1 failed, 3 cancelled or interrupted')
    .action(async (source: string, sub: { wait?: boolean }) => {
      const opts = request.opts<RequestOptions>();
      const client = await connect(globals(), opts);
      try {
        const { job, created } = (await client.request('ingest', { source: sourceArgument(source) })) as { job: JobSnapshot; created: boolean };
        if (!sub.wait) {
          process.stdout.write(opts.json ? `${JSON.stringify({ job, created })}\n` : `job ${job.id} ${created ? job.state : `already ${job.state}`} (${job.label})\n`);
          return;
        }
        if (!opts.json) process.stderr.write(`job ${job.id} ${created ? job.state : `already ${job.state}`} (${job.label}); waiting\n`);
        const final = await waitCancellingOnSignal(client, job.id);
        process.stdout.write(opts.json ? `${JSON.stringify({ job: final, created })}\n` : `${describeJob(final)}\n`);
        process.exitCode = exitCodeFor(final);
      } finally {
        client.close();
      }
    });

  const cancel = new Command('cancel')
    .description('cancel a queued or running job of the daemon')
    .argument('<job>', 'job number (see `shuttle status`)')
    .action(async (jobArg: string) => {
      const opts = request.opts<RequestOptions>();
      const id = Number(jobArg);
      if (!Number.isInteger(id) || id < 1) throw new ShuttleError('USAGE', `"${jobArg}" is not a job number`);
      const client = await connect(globals(), opts);
      try {
        const { job } = (await client.request('cancel', { job: id })) as { job: JobSnapshot };
        process.stdout.write(opts.json ? `${JSON.stringify({ job })}\n` : `job ${job.id} ${job.state === 'running' ? 'stopping' : job.state} (${job.label})\n`);
      } finally {
        client.close();
      }
    });

  for (const sub of [ingest, cancel]) request.addCommand(sub.exitOverride());
  return request;
}

/** Waits for the job; SIGTERM or SIGINT cancel it and then wait (briefly) for the daemon to confirm. */
async function waitCancellingOnSignal(client: ControlClient, id: number): Promise<JobSnapshot> {
  let cancelled = false;
  const onSignal = (): void => {
    if (cancelled) process.exit(EXIT.incomplete);
    cancelled = true;
    void client.request('cancel', { job: id, stopping: true }).catch(() => {});
    setTimeout(() => process.exit(EXIT.incomplete), CANCEL_GRACE_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const { job } = (await client.request('wait', { job: id })) as { job: JobSnapshot };
    return job;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
