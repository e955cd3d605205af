import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { ConfigInput } from '../src/config/index.js';
import type { Daemon } from '../src/daemon/daemon.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { nextEvent, startApiDaemon, type TestWatcher } from './support/api-daemon.js';
import { launchChromium, PHONE } from './support/browser.js';
import { writeJpeg } from './support/fixtures.js';
import { GatedCard } from './support/gated-card.js';
import { seedVerifiedShots } from './support/journal-seed.js';
import { tempDir } from './support/tree.js';

/**
 * The dashboard in a real browser (Debian's Chromium, headless) against a real daemon: a card is
 * attached through a device watcher, its files are let through one at a time, and the page must show
 * what the daemon did. Screenshots go to test-results/dashboard/ (and, with SHUTTLE_UPDATE_SCREENSHOT=1,
 * the README's docs/dashboard.png).
 */

const SHOTS = join(process.cwd(), 'test-results', 'dashboard');
const README_SHOT = join(process.cwd(), 'docs', 'dashboard.png');
/** Shots per page of the contact sheet (web/model.js PAGE). */
const PAGE = 60;

let browser: Browser;
beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe('dashboard', () => {
  let work: string;
  let cleanup: () => Promise<void>;
  let daemon: Daemon | undefined;
  let page: Page | undefined;
  const pageErrors: string[] = [];
  /** Paths (with query) of the API requests the page made. */
  const apiRequests: string[] = [];

  beforeEach(async () => {
    ({ path: work, cleanup } = await tempDir('shuttle-dashboard-'));
    pageErrors.length = 0;
    apiRequests.length = 0;
  });
  afterEach(async () => {
    await page?.context().close();
    page = undefined;
    await daemon?.stop();
    daemon = undefined;
    await cleanup();
    // A script error in the page fails the test that caused it.
    expect(pageErrors).toEqual([]);
  });

  async function start(opts: { api?: ConfigInput['api']; uploads?: boolean; extra?: Partial<ConfigInput> } = {}): Promise<{ d: Daemon; url: string; watcher: TestWatcher }> {
    const none = join(work, 'none');
    // An upload queue whose server never answers: enough to pause and resume, nothing leaves the machine.
    const started = opts.uploads
      ? await startApiDaemon(
          work,
          opts.api,
          { ...opts.extra, upload: { target: 's3://bucket/shots', endpoint: 'http://127.0.0.1:9' } },
          {
            AWS_ACCESS_KEY_ID: 'test',
            AWS_SECRET_ACCESS_KEY: 'test-secret',
            AWS_REGION: 'us-east-1',
            AWS_CONFIG_FILE: none,
            AWS_SHARED_CREDENTIALS_FILE: none,
          },
        )
      : await startApiDaemon(work, opts.api);
    daemon = started.daemon;
    return { d: started.daemon, url: `${started.url}/`, watcher: started.watcher };
  }

  async function open(url: string, viewport = { width: 1280, height: 900 }): Promise<Page> {
    // Reduced motion: the progress bars are not caught halfway through their animation in a screenshot.
    const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/')) apiRequests.push(u.pathname + u.search);
    });
    await page.goto(url);
    return page;
  }

  async function cardWith(n: number, label: string): Promise<{ root: string; card: GatedCard }> {
    const root = join(work, label);
    for (let i = 1; i <= n; i++) await writeJpeg(join(root, 'DCIM', '100CANON', `IMG_${String(i).padStart(4, '0')}.JPG`), { seed: 40 * i + 30 });
    return { root, card: new GatedCard(root, label) };
  }

  test('a-card-s-shots-appear-on-the-contact-sheet-as-they-verify-progress-moves-and-it-shows-safe-to-pull', async () => {
    const { d, url, watcher } = await start();
    const p = await open(url);
    await p.getByRole('heading', { level: 1, name: 'Waiting for card' }).waitFor();

    const { root, card } = await cardWith(4, 'EOS_DIGITAL');
    const started = nextEvent(d.events, (e) => e.type === 'job.started');
    watcher.events.attach({ id: 'mount:8:17', kind: 'card', label: 'EOS_DIGITAL', uri: root, jobKey: pathJobKey(root), open: async () => card });
    await started;
    const device = p.locator('article[data-device="mount:8:17"]');
    await device.getByText('Copying — do not pull').waitFor();
    const filesBar = device.getByRole('progressbar', { name: 'Files' });

    // One file at a time: the sheet gains that shot and the bar moves, each step seen in the page.
    const seen: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const verified = nextEvent(d.events, (e) => e.type === 'file.verified');
      card.release(1);
      const e = await verified;
      const fileId = e.type === 'file.verified' ? e.fileId : -1;
      const shot = p.locator(`li.shot[data-file-id="${fileId}"]`);
      await shot.waitFor();
      // The preview itself, decoded: not a placeholder.
      await expect
        .poll(() => shot.locator('img').evaluate((img: { complete: boolean; naturalWidth: number }) => img.complete && img.naturalWidth > 0), { timeout: 10_000 })
        .toBe(true);
      await expect.poll(() => filesBar.getAttribute('aria-valuetext'), { timeout: 10_000 }).toMatch(new RegExp(`^${i} of 4`));
      seen.push(Number(await filesBar.getAttribute('aria-valuenow')));
      await expect.poll(() => p.getByRole('heading', { level: 1 }).textContent()).toMatch(new RegExp(`^Copying \\d+% — ${i} of 4 files`));
    }
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen[2]).toBeGreaterThan(seen[0]!);
    await p.screenshot({ path: join(SHOTS, 'copying.png'), fullPage: true });
    if (process.env.SHUTTLE_UPDATE_SCREENSHOT === '1') {
      await mkdir(dirname(README_SHOT), { recursive: true });
      await copyFile(join(SHOTS, 'copying.png'), README_SHOT);
    }

    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    card.release(1);
    await safe;
    await p.getByRole('heading', { level: 1, name: 'SAFE TO PULL' }).waitFor();
    await device.getByText('SAFE TO PULL', { exact: true }).waitFor();
    await expect.poll(() => p.locator('li.shot').count()).toBe(4);
    await p.screenshot({ path: join(SHOTS, 'safe-to-pull.png'), fullPage: true });
    // No upload target: the page never asked for an upload queue, however many events came.
    expect(apiRequests.filter((r) => r.startsWith('/api/v1/station')).length).toBeGreaterThan(1);
    expect(apiRequests.filter((r) => r.startsWith('/api/v1/uploads'))).toEqual([]);
    // Eject reaches the daemon, and its refusal is shown: the card folder here is no mount point to release.
    await device.getByRole('button', { name: 'Eject' }).click();
    await p
      .getByRole('status')
      .filter({ hasText: `Eject: ${root} is no longer mounted` })
      .waitFor();

    // On a phone: one column, nothing wider than the screen, the state still in large type, buttons big enough to tap.
    await p.setViewportSize(PHONE);
    await p.getByRole('heading', { level: 1, name: 'SAFE TO PULL' }).waitFor();
    const layout = await p.evaluate<{ scrollWidth: number; width: number; headlinePx: number; buttonHeights: number[] }>(`({
      scrollWidth: document.documentElement.scrollWidth,
      width: window.innerWidth,
      headlinePx: parseFloat(getComputedStyle(document.querySelector('h1')).fontSize),
      buttonHeights: [...document.querySelectorAll('button')].map((b) => b.getBoundingClientRect().height),
    })`);
    expect(layout.scrollWidth).toBeLessThanOrEqual(layout.width);
    expect(layout.headlinePx).toBeGreaterThanOrEqual(32);
    expect(layout.buttonHeights.length).toBeGreaterThan(0);
    for (const h of layout.buttonHeights) expect(h).toBeGreaterThanOrEqual(36);
    await p.screenshot({ path: join(SHOTS, 'phone.png') });
  });

  test('a-tile-loads-the-small-thumbnail-and-a-click-shows-the-full-preview', async () => {
    const { d, url, watcher } = await start();
    const p = await open(url);
    await p.getByRole('heading', { level: 1, name: 'Waiting for card' }).waitFor();
    const root = join(work, 'BIG_CARD');
    const shot = join(root, 'DCIM', '100CANON', 'IMG_0001.JPG');
    await mkdir(dirname(shot), { recursive: true });
    await sharp({ create: { width: 3000, height: 2000, channels: 3, background: { r: 200, g: 120, b: 40 } } })
      .jpeg({ quality: 80 })
      .toFile(shot);
    const ready = nextEvent(d.events, (e) => e.type === 'preview.ready');
    watcher.card('mount:8:65', root);
    const e = await ready;
    const fileId = e.type === 'preview.ready' ? e.fileId : -1;
    const img = p.locator(`li.shot[data-file-id="${fileId}"] img`);
    const natural = (): Promise<number> => img.evaluate((i: { complete: boolean; naturalWidth: number }) => (i.complete ? i.naturalWidth : 0));
    await expect.poll(natural, { timeout: 10_000 }).toBeGreaterThan(0);
    // The tile's image is the thumbnail (long edge 320), not the 1600-pixel preview.
    expect(await natural()).toBe(320);
    expect(await img.getAttribute('src')).toContain('size=thumb');
    const thumbs = apiRequests.filter((r) => r.startsWith(`/api/v1/files/${fileId}/preview`));
    expect(thumbs.length).toBeGreaterThan(0);
    expect(thumbs.every((r) => r.includes('size=thumb'))).toBe(true);

    await img.click();
    const viewer = p.getByRole('dialog');
    const full = viewer.locator('img');
    await expect.poll(() => full.evaluate((i: { complete: boolean; naturalWidth: number }) => (i.complete ? i.naturalWidth : 0)), { timeout: 10_000 }).toBe(1600);
    await p.screenshot({ path: join(SHOTS, 'preview.png') });
    await p.keyboard.press('Escape');
    await expect.poll(() => viewer.count()).toBe(0);
  });

  test('cancel-on-the-page-stops-a-running-job-and-the-card-does-not-show-safe-to-pull', async () => {
    const { d, url, watcher } = await start();
    const { root, card } = await cardWith(3, 'LONG_CARD');
    const started = nextEvent(d.events, (e) => e.type === 'job.started');
    watcher.events.attach({ id: 'mount:8:33', kind: 'card', label: 'LONG_CARD', uri: root, jobKey: pathJobKey(root), open: async () => card });
    const job = await started;
    const jobId = job.type === 'job.started' ? job.job.id : -1;
    const p = await open(url);
    const device = p.locator('article[data-device="mount:8:33"]');
    // Eject waits until the copy is over.
    await expect.poll(() => device.getByRole('button', { name: 'Eject' }).isDisabled()).toBe(true);

    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    await device.getByRole('button', { name: 'Cancel' }).click();
    const end = await finished;
    expect(end.type === 'job.finished' && end.job).toMatchObject({ id: jobId, state: 'cancelled' });
    // The copy really stopped: the file waiting to be read was abandoned, nothing was verified.
    expect(card.aborted).toBeGreaterThan(0);
    await p.getByRole('heading', { level: 1, name: /^ATTENTION/ }).waitFor();
    await device.getByText('Cancelled').waitFor();
    await device.getByText('ATTENTION — do not pull').waitFor();
    expect(await p.getByText('SAFE TO PULL').count()).toBe(0);
    await p.screenshot({ path: join(SHOTS, 'cancelled.png'), fullPage: true });
  });

  test('a-file-the-card-cannot-give-shows-in-errors-and-on-the-sheet-and-the-card-asks-for-attention', async () => {
    const { d, url, watcher } = await start();
    const { root, card } = await cardWith(2, 'BAD_CARD');
    const p = await open(url);
    const started = nextEvent(d.events, (e) => e.type === 'job.started');
    watcher.events.attach({ id: 'mount:8:49', kind: 'card', label: 'BAD_CARD', uri: root, jobKey: pathJobKey(root), open: async () => card });
    await started;
    // Listed, then gone before it was read: the copy of that file fails.
    await card.listed(2);
    await rm(join(root, 'DCIM', '100CANON', 'IMG_0002.JPG'));
    const failed = nextEvent(d.events, (e) => e.type === 'file.failed');
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    card.release(2);
    const f = await failed;
    await finished;
    expect(f).toMatchObject({ path: 'DCIM/100CANON/IMG_0002.JPG' });
    const errors = d.events.recent(undefined, new Set(['error']));
    expect(errors.length).toBeGreaterThan(0);
    await p.getByRole('heading', { level: 1, name: /^ATTENTION/ }).waitFor();
    await p.locator('article[data-device="mount:8:49"]').getByText('ATTENTION — do not pull').waitFor();
    await p
      .locator(`li.shot.failed[data-file-id="${f.type === 'file.failed' ? f.fileId : -1}"]`)
      .getByText('FAILED')
      .waitFor();
    await p
      .locator('.error-list')
      .getByText(errors[0]!.type === 'error' ? errors[0]!.code : '?')
      .first()
      .waitFor();
    await p.screenshot({ path: join(SHOTS, 'attention.png'), fullPage: true });
  });

  test('pause-and-resume-uploads-from-the-page', async () => {
    const { d, url } = await start({ uploads: true });
    const p = await open(url);
    await p.getByRole('button', { name: 'Pause uploads' }).click();
    await p.getByRole('button', { name: 'Resume uploads' }).waitFor();
    // With a target the page reads the queue.
    expect(apiRequests.filter((r) => r.startsWith('/api/v1/uploads?')).length).toBeGreaterThan(0);
    // The daemon's own uploader is paused, not only the page's button.
    expect(d.status().uploads?.state).toBe('paused');
    await p.getByText('paused', { exact: true }).waitFor();
    await p.getByRole('button', { name: 'Resume uploads' }).click();
    await p.getByRole('button', { name: 'Pause uploads' }).waitFor();
    expect(d.status().uploads?.state).not.toBe('paused');
  });

  test('an-upload-error-event-makes-the-page-read-the-upload-queue-again', async () => {
    const { d, url } = await start({ uploads: true });
    const p = await open(url);
    await p.getByText('live', { exact: true }).waitFor();
    const reads = (): number => apiRequests.filter((r) => r.startsWith('/api/v1/uploads?')).length;
    await expect.poll(reads).toBeGreaterThan(0);
    const before = reads();
    // What the uploader publishes when a file fails for good (here without a server to fail against).
    d.events.publish({
      type: 'error',
      code: 'UPLOAD_VERIFY',
      message: 'every local copy of shots/IMG_0001.JPG is damaged (1); not uploading it',
      upload: { fileId: 1, bucket: 'bucket', key: 'shots/IMG_0001.JPG', outcome: 'failed', cloudMismatch: false },
    });
    await p.locator('.error-list').getByText('UPLOAD_VERIFY').first().waitFor();
    await expect.poll(reads).toBe(before + 1);
  });

  test('a-card-whose-job-only-waits-for-the-cloud-can-be-ejected-from-the-page', async () => {
    const { d, url, watcher } = await start({ uploads: true, extra: { cards: { wipe: 'after-cloud' } } });
    // A mount of its own, for the eject to unmount; the cloud never answers, so the wipe waits for it.
    const root = join(work, 'CLOUD_CARD');
    await mkdir(root);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', root]);
    try {
      await writeJpeg(join(root, 'DCIM', '100CANON', 'IMG_0001.JPG'), { seed: 5 });
      const p = await open(url);
      const waiting = nextEvent(d.events, (e) => e.type === 'job.progress' && e.job.progress?.phase === 'waiting-for-cloud');
      watcher.card('CLOUD_CARD', root);
      await waiting;
      const device = p.locator('article[data-device="CLOUD_CARD"]');
      await device.getByText('Verified here — waiting for the cloud to wipe it').waitFor();
      const eject = device.getByRole('button', { name: 'Eject' });
      await expect.poll(() => eject.isEnabled()).toBe(true);
      expect(await eject.getAttribute('title')).toMatch(/it will not be wiped/);
      const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
      await eject.click();
      await p.getByText('Ejected CLOUD_CARD').waitFor();
      expect(await finished).toMatchObject({ job: { state: 'cancelled', result: { wiped: 0 } } });
      expect(spawnSync('mountpoint', ['-q', root]).status).not.toBe(0);
    } finally {
      spawnSync('umount', [root]);
    }
  });

  test('with-a-token-the-page-sends-the-browser-to-the-login-form-and-its-buttons-work-after-login', async () => {
    const token = 'dashboard-test-token-0123456789';
    const { d, url } = await start({
      api: { token },
      uploads: true,
    });
    const p = await open(url);
    expect(new URL(p.url()).pathname).toBe('/login');
    await p.locator('input[name="token"]').fill('not-the-token-at-all');
    await p.locator('input[name="token"]').press('Enter');
    await p.getByText('Wrong token.').waitFor();
    await p.locator('input[name="token"]').fill(token);
    await p.locator('input[name="token"]').press('Enter');
    await p.getByRole('heading', { level: 1, name: 'Waiting for card' }).waitFor();
    // An action from the page carries the CSRF header the daemon asks of cookie sessions.
    await p.getByRole('button', { name: 'Pause uploads' }).click();
    await p.getByRole('button', { name: 'Resume uploads' }).waitFor();
    expect(d.status().uploads?.state).toBe('paused');
  });

  test('five-thousand-shots-in-the-session-load-one-page-of-thumbnails-at-a-time', async () => {
    const { fileIds } = await seedVerifiedShots(join(work, 'state'), 5000, { destination: join(work, 'earlier') });
    const { url } = await start();
    const p = await open(url);
    const shots = p.locator('li.shot');
    await expect.poll(() => shots.count()).toBe(PAGE);
    const newest = [...fileIds].sort((a, b) => b - a);
    const ids = async (): Promise<number[]> => await shots.evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-file-id'))));
    expect(await ids()).toEqual(newest.slice(0, PAGE));
    expect(await p.locator('img').count()).toBeLessThanOrEqual(PAGE);

    await p.getByRole('button', { name: 'Older shots' }).click();
    await expect.poll(ids).toEqual(newest.slice(PAGE, 2 * PAGE));
    await p.getByRole('button', { name: 'Older shots' }).click();
    await expect.poll(ids).toEqual(newest.slice(2 * PAGE, 3 * PAGE));
    await p.getByRole('button', { name: 'Newer' }).click();
    await expect.poll(ids).toEqual(newest.slice(PAGE, 2 * PAGE));
    await p.getByRole('button', { name: 'Show newest' }).click();
    await expect.poll(ids).toEqual(newest.slice(0, PAGE));
    expect(await shots.count()).toBe(PAGE);
    await p.screenshot({ path: join(SHOTS, 'five-thousand.png') });
  });
});
