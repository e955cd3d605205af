/** Source names as the CLI and the daemon read them (src/device/detect.ts): no device needed. */
import { mkdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, test } from 'vitest';
import { cameraScheme, openSource, sourceOpener } from '../src/device/detect.js';
import { isShuttleError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { tempDir } from './support/tree.js';

const ctx = (stateDir: string) => ({ stateDir, logger: silentLogger, signal: new AbortController().signal });

describe('source names', () => {
  test('usb-and-ptpip-in-any-case-name-cameras-and-everything-else-is-a-path', () => {
    expect(cameraScheme('usb:')).toBe('usb');
    expect(cameraScheme('USB:1-4')).toBe('usb');
    expect(cameraScheme('PtpIp:10.0.0.5')).toBe('ptpip');
    for (const path of ['/media/usb:x', 'x:/card', 'card', 'usb', 'mtp:x']) expect(cameraScheme(path), path).toBeUndefined();
  });

  test('a-camera-scheme-without-a-camera-address-is-a-usage-error-before-anything-is-opened', () => {
    for (const bad of ['mtp:x', 'ptpip:', 'ptpip:host:0', 'ptpip:host:65536', 'ptpip:[::1', 'ptpip:a:b:c']) {
      let err: unknown;
      try {
        sourceOpener(bad);
      } catch (e) {
        err = e;
      }
      expect(isShuttleError(err, 'USAGE'), bad).toBe(true);
      expect((err as Error).message).toContain('ptpip:HOST[:PORT]');
    }
  });

  test('a-malformed-usb-selector-is-a-usage-error', async () => {
    const work = await tempDir();
    try {
      const err = await openSource('usb:04a9', ctx(work.path)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isShuttleError(err, 'USAGE')).toBe(true);
    } finally {
      await work.cleanup();
    }
  });

  test('a-relative-path-is-a-folder-named-by-its-absolute-path', async () => {
    const work = await tempDir();
    try {
      const card = join(work.path, 'card');
      await mkdir(card);
      const src = await openSource(relative(process.cwd(), card), ctx(work.path));
      expect(src.uri).toBe(card);
      expect((await src.identity()).kind).toBe('folder');
      await src.close();
    } finally {
      await work.cleanup();
    }
  });
});
