import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { renderName, templateUsesShot, type NameFields } from '../src/ingest/naming.js';
import { Journal } from '../src/store/journal.js';
import { ingestJson } from './support/cli.js';
import { dropFiles, rawWithThumbnail, shotJpeg, startTether } from './support/tether-session.js';
import { libraryFiles, tempDir } from './support/tree.js';

/**
 * Naming for shoots: `{job}`, `{client}`, `{session}` and `{shot}`, a number that a shot's files (RAW,
 * JPEG) share and that the journal keeps, so that a restart goes on counting where the shoot stopped.
 */
const date = { year: 2026, month: 3, day: 14, hour: 9, minute: 26, second: 53, millisecond: 0 };
const fields = (f: Partial<NameFields>): NameFields => ({ name: 'DSC_0001.NEF', date, ...f });

describe('shoot tokens', () => {
  test('client-session-job-and-shot-render-with-the-shot-padded-to-4-digits', () => {
    const r = renderName('{job}/{client}/{session}/{client}_{shot}.{ext}', fields({ job: 'lookbook', client: 'acme', session: 'day-1', shot: 7 }));
    expect(r).toEqual({ path: 'lookbook/acme/day-1/acme_0007.NEF', renamed: [] });
    expect(templateUsesShot('{client}_{shot}.{ext}')).toBe(true);
    expect(templateUsesShot('{client}_{seq}.{ext}')).toBe(false);
  });

  test('hostile-client-and-session-names-are-sanitised-like-every-value-and-never-leave-the-destination', () => {
    const climb = renderName('{client}/{session}/{name}', fields({ client: '..', session: '../../etc' }));
    expect(climb.path).toBe('_/.._.._etc/DSC_0001.NEF');
    expect(climb.renamed.map((x) => x.reason)).toEqual(['separator-in-value', 'dot-segment']);
    const odd = renderName('{client}/{session}_{name}', fields({ client: 'ascmhl', session: 'a\u0000b:c ' }));
    expect(odd.path).toBe('_ascmhl/a_b_c _DSC_0001.NEF');
    expect(odd.renamed.map((x) => x.reason)).toEqual(['control-character', 'fat-invalid-character', 'reserved-name']);
    // Unset values read as "unknown", as every token without a value does.
    expect(renderName('{client}/{session}/{name}', fields({})).path).toBe('unknown/unknown/DSC_0001.NEF');
  });
});

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-naming-shoot-');
});
afterEach(async () => {
  await work.cleanup();
});

test('the-journal-numbers-a-shot-once-and-goes-on-counting-per-shoot-after-a-reopen', async () => {
  const state = join(work.path, 'state');
  await mkdir(state);
  let journal = Journal.open(state);
  const source = journal.upsertSource({ kind: 'camera', key: 'camera:x', label: 'x', details: {} });
  const shoot = JSON.stringify(['job', 'acme', 'day-1']);
  expect(journal.shotNumber(shoot, source, 'DCIM/dsc_0001')).toBe(1);
  expect(journal.shotNumber(shoot, source, 'DCIM/dsc_0002')).toBe(2);
  // The same shot (its second file) keeps its number.
  expect(journal.shotNumber(shoot, source, 'DCIM/dsc_0001')).toBe(1);
  // Another session of the shoot counts from 1.
  expect(journal.shotNumber(JSON.stringify(['job', 'acme', 'day-2']), source, 'DCIM/dsc_0001')).toBe(1);
  journal.close();
  journal = Journal.open(state);
  expect(journal.shotNumber(shoot, source, 'DCIM/dsc_0003')).toBe(3);
  journal.close();
});

test('ingest-gives-raw-and-jpeg-one-shot-number-and-a-second-run-goes-on-counting', async () => {
  const card = join(work.path, 'card');
  const dest = join(work.path, 'lib');
  const state = join(work.path, 'state');
  const config = join(work.path, 'shuttle.toml');
  await mkdir(join(card, 'DCIM', '100NIKON'), { recursive: true });
  await writeFile(config, '[ingest]\ntemplate = "{client}/{session}/{client}_{shot}.{ext}"\nclient = "acme"\nsession = "day-1"\n');
  const put = async (name: string, data: Buffer): Promise<void> => writeFile(join(card, 'DCIM', '100NIKON', name), data);
  await put('DSC_0001.NEF', rawWithThumbnail(await shotJpeg('t1')));
  await put('DSC_0001.JPG', await shotJpeg('DSC_0001.JPG'));
  await put('DSC_0002.JPG', await shotJpeg('DSC_0002.JPG'));
  const args = [card, '--dest', dest, '--state', state, '--config', config];
  const first = await ingestJson(args);
  expect(first.code, first.stderr).toBe(0);
  const names = async (): Promise<string[]> => (await libraryFiles(dest)).sort();
  expect(await names()).toEqual(['acme/day-1/acme_0001.JPG', 'acme/day-1/acme_0001.NEF', 'acme/day-1/acme_0002.JPG']);
  // A new run (Shuttle restarted) with the next card: the shoot goes on from 3.
  await rm(card, { recursive: true });
  await mkdir(join(card, 'DCIM', '100NIKON'), { recursive: true });
  await put('DSC_0003.NEF', rawWithThumbnail(await shotJpeg('t3')));
  await put('DSC_0003.JPG', await shotJpeg('DSC_0003.JPG'));
  const second = await ingestJson(args);
  expect(second.code, second.stderr).toBe(0);
  expect(second.summary).toMatchObject({ copied: 2, alreadyVerified: 0 });
  expect(await names()).toEqual(['acme/day-1/acme_0001.JPG', 'acme/day-1/acme_0001.NEF', 'acme/day-1/acme_0002.JPG', 'acme/day-1/acme_0003.JPG', 'acme/day-1/acme_0003.NEF']);
  expect((await readFile(join(dest, 'acme/day-1/acme_0003.JPG'))).equals(await shotJpeg('DSC_0003.JPG'))).toBe(true);
});

test('tether-client-and-session-flags-name-the-shots-and-a-restarted-session-continues-the-numbers', async () => {
  const card = join(work.path, 'card');
  const dest = join(work.path, 'lib');
  const state = join(work.path, 'state');
  const config = join(work.path, 'shuttle.toml');
  await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
  await writeFile(config, '[ingest]\ntemplate = "{client}/{session}/{shot}_{stem}.{ext}"\n');
  const sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC' });
  const children: ChildProcess[] = [];
  try {
    const drop = (files: Map<string, Buffer>): Promise<void> => dropFiles(files, join(work.path, 'incoming'), join(card, 'DCIM', '100CANON'));
    const session = (client: string) =>
      startTether(children, [
        `ptpip:127.0.0.1:${sim.port}`,
        '--dest',
        dest,
        '--state',
        state,
        '--config',
        config,
        '--socket',
        join(state, 't.sock'),
        '--client',
        client,
        '--session',
        'day-1',
      ]);
    const first = session('../acme');
    await first.waitFor('ready');
    await drop(
      new Map([
        ['IMG_0001.CR2', rawWithThumbnail(await shotJpeg('t1'))],
        ['IMG_0001.JPG', await shotJpeg('IMG_0001.JPG')],
      ]),
    );
    await first.waitFor('verified', 2);
    expect((await first.stop()).code, first.stderr()).toBe(0);
    const second = session('../acme');
    await second.waitFor('ready');
    await drop(new Map([['IMG_0002.JPG', await shotJpeg('IMG_0002.JPG')]]));
    const [v] = await second.waitFor('verified');
    expect(v!.files![0]).toBe(join(dest, '.._acme', 'day-1', '0002_IMG_0002.JPG'));
    expect((await second.stop()).code, second.stderr()).toBe(0);
    const library = (await libraryFiles(dest)).sort();
    expect(library).toEqual(['.._acme/day-1/0001_IMG_0001.CR2', '.._acme/day-1/0001_IMG_0001.JPG', '.._acme/day-1/0002_IMG_0002.JPG']);
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await sim.stop();
  }
});
