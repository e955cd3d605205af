import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { DEFAULT_NAME_TEMPLATE, nameFieldsFrom, renderName, sanitizePath, sanitizeSegment, type NameFields } from '../src/ingest/naming.js';
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES, withCollisionSuffix } from '../src/shot-names.js';
import { readCaptureMetadata } from '../src/ingest/metadata.js';

const date = { year: 2024, month: 5, day: 6, hour: 7, minute: 8, second: 9, millisecond: 0 };
const fields = (over: Partial<NameFields> = {}): NameFields => ({ name: 'IMG_0001.JPG', date, ...over });
const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
const reasons = (r: { renamed: { reason: string }[] }): string[] => r.renamed.map((x) => x.reason);

function expectThrowsCode(fn: () => unknown, code: string, messagePart: string): void {
  try {
    fn();
  } catch (e) {
    expect(isShuttleError(e, code as never), String(e)).toBe(true);
    expect((e as Error).message).toContain(messagePart);
    return;
  }
  expect.unreachable('expected a ShuttleError');
}

describe('name templates', () => {
  test('default-template-files-by-year-and-day-under-the-camera-name', () => {
    expect(DEFAULT_NAME_TEMPLATE).toBe('{YYYY}/{YYYY-MM-DD}/{name}');
    expect(renderName(DEFAULT_NAME_TEMPLATE, fields())).toEqual({ path: '2024/2024-05-06/IMG_0001.JPG', renamed: [] });
  });

  test('every-token-renders-its-field', () => {
    const r = renderName('{YYYY}{MM}{DD}-{hh}{mm}{ss}/{make}/{model}/{serial}/{job}/{seq}_{stem}.{ext}|{name}', {
      name: 'IMG_0042.CR2',
      date,
      make: 'Canon',
      model: 'Canon EOS R5',
      serial: '032021001234',
      seq: 7,
      job: 'wedding',
    });
    expect(r.path).toBe('20240506-070809/Canon/Canon EOS R5/032021001234/wedding/0007_IMG_0042.CR2_IMG_0042.CR2');
    expect(reasons(r)).toEqual(['fat-invalid-character']);
  });

  test('a-string-seq-is-used-as-is-and-missing-values-read-unknown', () => {
    expect(renderName('{seq}-{make}-{model}-{serial}-{job}', fields({ seq: 'A7' })).path).toBe('A7-unknown-unknown-unknown-unknown');
  });

  test('a-name-without-extension-gives-an-empty-ext-and-the-whole-name-as-stem', () => {
    expect(renderName('{stem}.{ext}', fields({ name: 'README' })).path).toBe('README');
    expect(renderName('{stem}-{ext}', fields({ name: 'a.b.c' })).path).toBe('a.b-c');
  });

  test('name-token-uses-only-the-last-segment-of-a-source-path', () => {
    expect(renderName('{name}', fields({ name: 'DCIM/100CANON/IMG_0001.JPG' })).path).toBe('IMG_0001.JPG');
  });

  test('unknown-token-is-a-config-error-quoting-the-token', () => {
    expectThrowsCode(() => renderName('{YYYY}/{camera}/{name}', fields()), 'CONFIG_INVALID', '"{camera}"');
  });

  test('unmatched-brace-is-a-config-error', () => {
    expectThrowsCode(() => renderName('{YYYY/{name}', fields()), 'CONFIG_INVALID', 'unmatched "{"');
    expectThrowsCode(() => renderName('YYYY}/{name}', fields()), 'CONFIG_INVALID', 'unmatched "}"');
  });

  test('a-slash-in-a-metadata-value-never-adds-a-folder', () => {
    const r = renderName('{model}/{name}', fields({ model: 'EOS 5D/Mark IV', name: 'x.JPG' }));
    expect(r.path).toBe('EOS 5D_Mark IV/x.JPG');
    expect(r.renamed).toEqual([{ from: 'EOS 5D/Mark IV', to: 'EOS 5D_Mark IV', reason: 'separator-in-value' }]);
  });

  test('a-hostile-model-value-is-sanitized-like-any-name', () => {
    const r = renderName('{model}/{serial}/{name}', fields({ model: '..', serial: 'a\u0000b?' }));
    expect(r.path).toBe('_/a_b_/IMG_0001.JPG');
    expect(reasons(r)).toEqual(['dot-segment', 'control-character', 'fat-invalid-character']);
  });

  test('fields-come-from-capture-metadata', async () => {
    const meta = await readCaptureMetadata(Buffer.alloc(0), { mtimeMs: Date.UTC(2023, 0, 2, 3, 4, 5) }, { timeZone: 'UTC' });
    const f = nameFieldsFrom('IMG_1.JPG', meta, { seq: 3, job: 'j' });
    expect(renderName('{YYYY-MM-DD}_{hh}{mm}{ss}_{seq}_{job}_{name}', f).path).toBe('2023-01-02_030405_0003_j_IMG_1.JPG');
  });
});

describe('path sanitizing', () => {
  test('dot-dot-segments-cannot-climb-out', () => {
    const r = sanitizePath('../../etc/passwd');
    expect(r.path).toBe('_/_/etc/passwd');
    expect(reasons(r)).toEqual(['dot-segment', 'dot-segment']);
  });

  test('dot-segments-are-dropped', () => {
    const r = sanitizePath('./a/./b');
    expect(r.path).toBe('a/b');
    expect(reasons(r)).toEqual(['dot-segment', 'dot-segment']);
  });

  test('absolute-paths-become-relative', () => {
    const r = sanitizePath('/abs/x.JPG');
    expect(r.path).toBe('abs/x.JPG');
    expect(r.renamed).toEqual([{ from: '/abs/x.JPG', to: 'abs/x.JPG', reason: 'absolute-path' }]);
  });

  test('empty-segments-are-dropped', () => {
    const r = sanitizePath('a//b/');
    expect(r.path).toBe('a/b');
    expect(reasons(r)).toEqual(['empty-segment', 'empty-segment']);
  });

  test('a-path-that-collapses-to-nothing-becomes-underscore', () => {
    for (const p of ['', '/', '.', './/.']) expect(sanitizePath(p).path, JSON.stringify(p)).toBe('_');
    expect(reasons(sanitizePath(''))).toEqual(['empty-path']);
  });

  test('control-characters-are-replaced', () => {
    const r = sanitizeSegment('a\u0000b\u0001c\nd\u001fe\u007ff');
    expect(r.path).toBe('a_b_c_d_e_f');
    expect(reasons(r)).toEqual(['control-character']);
  });

  test('backslash-is-replaced', () => {
    const r = sanitizePath('dir\\sub\\x.JPG');
    expect(r.path).toBe('dir_sub_x.JPG');
    expect(reasons(r)).toEqual(['backslash']);
  });

  test('fat-invalid-characters-are-replaced', () => {
    const r = sanitizeSegment('a<b>c:d"e|f?g*h.JPG');
    expect(r.path).toBe('a_b_c_d_e_f_g_h.JPG');
    expect(reasons(r)).toEqual(['fat-invalid-character']);
  });

  test('trailing-dots-and-spaces-are-trimmed', () => {
    expect(sanitizeSegment('name. . ')).toEqual({ path: 'name', renamed: [{ from: 'name. . ', to: 'name', reason: 'trailing-dot-or-space' }] });
    expect(sanitizeSegment(' lead').path).toBe(' lead');
  });

  test('a-name-of-only-dots-and-spaces-becomes-underscore', () => {
    const r = sanitizeSegment('... ');
    expect(r.path).toBe('_');
    expect(reasons(r)).toEqual(['trailing-dot-or-space', 'empty-name']);
  });

  test('unicode-is-normalized-to-nfc', () => {
    const nfd = 'Cafe\u0301.JPG';
    const r = sanitizeSegment(nfd);
    expect(r.path).toBe('Caf\u00e9.JPG');
    expect(r.renamed).toEqual([{ from: nfd, to: 'Caf\u00e9.JPG', reason: 'unicode-nfc' }]);
  });

  test('lone-surrogates-become-replacement-characters', () => {
    const r = sanitizeSegment('a\ud800b.JPG');
    expect(r.path).toBe('a\ufffdb.JPG');
    expect(reasons(r)).toEqual(['invalid-unicode']);
  });

  test('a-255-byte-segment-of-multibyte-characters-is-cut-on-a-code-point-keeping-the-extension', () => {
    const long = `${'日'.repeat(100)}.JPG`; // 304 bytes
    const r = sanitizeSegment(long);
    expect(bytes(r.path)).toBeLessThanOrEqual(MAX_SEGMENT_BYTES);
    expect(r.path).toBe(`${'日'.repeat(83)}.JPG`); // 249 + 4 bytes: an 84th character would not fit
    expect(reasons(r)).toEqual(['segment-too-long']);
    const emoji = `${'😀'.repeat(70)}.CR2.xmp`;
    const e = sanitizeSegment(emoji).path;
    expect(e.endsWith('.CR2.xmp')).toBe(true);
    expect(bytes(e)).toBeLessThanOrEqual(MAX_SEGMENT_BYTES);
    expect(e.slice(0, -8)).toBe('😀'.repeat(61));
  });

  test('a-segment-of-exactly-255-bytes-is-kept', () => {
    const exact = `${'é'.repeat(125)}.JPG1`; // 250 + 5
    expect(bytes(exact)).toBe(255);
    expect(sanitizeSegment(exact)).toEqual({ path: exact, renamed: [] });
  });

  test('a-long-name-without-extension-is-cut-and-cannot-end-in-a-space', () => {
    const r = sanitizeSegment(`${'a'.repeat(254)} bbbb`);
    expect(r.path).toBe('a'.repeat(254));
    expect(reasons(r)).toEqual(['segment-too-long', 'trailing-dot-or-space']);
  });

  test('reserved-names-are-not-producible', () => {
    expect(sanitizePath('ascmhl/x.mhl').path).toBe('_ascmhl/x.mhl');
    expect(sanitizePath('ASCMHL').path).toBe('_ASCMHL');
    expect(sanitizePath('.shuttle/journal').path).toBe('_.shuttle/journal');
    // The ASC MHL reference tool ignores these names at any depth and reads a nested ascmhl/ as a child history.
    expect(sanitizePath('2024/ascmhl').path).toBe('2024/_ascmhl');
    expect(sanitizePath('2024/ascmhl/0001_x.mhl').path).toBe('2024/_ascmhl/0001_x.mhl');
    expect(sanitizePath('a/.Shuttle/b').path).toBe('a/_.Shuttle/b');
    expect(sanitizePath('2024/IMG_0001.JPG.shuttle-tmp').path).toBe('2024/IMG_0001.JPG.shuttle-tmp_');
    expect(sanitizePath('x.SHUTTLE-TMP/y').path).toBe('x.SHUTTLE-TMP_/y');
    expect(reasons(sanitizePath('ascmhl/x'))).toEqual(['reserved-name']);
    expect(reasons(sanitizePath('a/b.shuttle-tmp'))).toEqual(['reserved-name']);
  });

  test('a-template-cannot-write-into-the-manifest-folder', () => {
    expect(renderName('ascmhl/{name}', fields()).path).toBe('_ascmhl/IMG_0001.JPG');
    expect(renderName('{make}/{name}', fields({ make: '.shuttle' })).path).toBe('_.shuttle/IMG_0001.JPG');
  });

  test('a-template-cannot-write-into-the-reports-folder-at-the-root-but-may-use-the-name-below-it', () => {
    expect(renderName('shuttle-reports/{name}', fields()).path).toBe('_shuttle-reports/IMG_0001.JPG');
    expect(renderName('{name}', fields({ name: 'Shuttle-Reports' })).path).toBe('_Shuttle-Reports');
    expect(reasons(sanitizePath('shuttle-reports/x'))).toEqual(['reserved-name']);
    expect(sanitizePath('2024/shuttle-reports/x').path).toBe('2024/shuttle-reports/x');
  });

  test('windows-device-names-are-prefixed', () => {
    expect(sanitizeSegment('CON.JPG').path).toBe('_CON.JPG');
    expect(sanitizeSegment('lpt1').path).toBe('_lpt1');
    expect(sanitizeSegment('CONSOLE.JPG').path).toBe('CONSOLE.JPG');
    expect(reasons(sanitizeSegment('nul.txt'))).toEqual(['windows-reserved-name']);
  });

  test('a-path-over-4096-bytes-is-refused', () => {
    const seg = 'a'.repeat(250);
    const ok = Array.from({ length: 16 }, () => seg).join('/'); // 4015 bytes
    expect(sanitizePath(ok).path).toBe(ok);
    expectThrowsCode(() => sanitizePath(`${ok}/${seg}`), 'NAME_INVALID', `${MAX_PATH_BYTES}-byte`);
  });

  test('clean-paths-pass-unchanged', () => {
    for (const p of ['2024/2024-05-06/IMG_0001.JPG', 'Été – 日本/Café_0001.JPG', '.hidden', 'a b/c d.e']) {
      expect(sanitizePath(p)).toEqual({ path: p, renamed: [] });
    }
  });

  test('sanitized-paths-are-safe-and-sanitizing-them-again-changes-nothing', () => {
    const chars = fc.constantFrom(
      'a',
      'Z',
      '.',
      ' ',
      '/',
      '\\',
      ':',
      '*',
      '\u0000',
      '\u001f',
      '\u007f',
      'é',
      'e\u0301',
      '日',
      '😀',
      '\ud800',
      '..',
      'ascmhl',
      '.shuttle-tmp',
      'CON',
    );
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 400 }), (parts) => {
        const input = parts.join('');
        const { path } = sanitizePath(input);
        const segs = path.split('/');
        for (const s of segs) {
          expect(s === '' || s === '.' || s === '..').toBe(false);
          expect(bytes(s)).toBeLessThanOrEqual(MAX_SEGMENT_BYTES);
          expect(/[\u0000-\u001f\u007f\\<>:"|?*]/.test(s)).toBe(false);
          expect(/[. ]$/.test(s)).toBe(false);
          expect(/\.shuttle-tmp$/i.test(s)).toBe(false);
          expect(s.normalize('NFC')).toBe(s);
        }
        expect(['ascmhl', '.shuttle']).not.toContain(segs[0]!.toLowerCase());
        expect(sanitizePath(path)).toEqual({ path, renamed: [] });
      }),
      { numRuns: 500 },
    );
  });
});

describe('collision suffixes', () => {
  test('suffix-goes-before-the-extension', () => {
    expect(withCollisionSuffix('2024/2024-05-06/IMG_0001.JPG', 1)).toBe('2024/2024-05-06/IMG_0001_1.JPG');
    expect(withCollisionSuffix('IMG_0001.JPG', 12)).toBe('IMG_0001_12.JPG');
    expect(withCollisionSuffix('dir/README', 2)).toBe('dir/README_2');
    expect(withCollisionSuffix('dir/.hidden', 1)).toBe('dir/.hidden_1');
  });

  test('a-shot-sidecar-keeps-its-double-extension-so-the-group-stays-paired', () => {
    expect(withCollisionSuffix('d/IMG_0001.CR2.xmp', 1)).toBe('d/IMG_0001_1.CR2.xmp');
    expect(withCollisionSuffix('d/IMG_0001.CR2', 1)).toBe('d/IMG_0001_1.CR2');
  });

  test('a-suffixed-name-stays-within-255-bytes-cutting-on-a-code-point', () => {
    const name = `${'日'.repeat(83)}.JPG`; // 253 bytes
    const out = withCollisionSuffix(`x/${name}`, 123);
    expect(out).toBe(`x/${'日'.repeat(82)}_123.JPG`);
    expect(bytes(out.slice(2))).toBeLessThanOrEqual(MAX_SEGMENT_BYTES);
  });

  test('suffixes-are-deterministic-and-distinct', () => {
    const seen = new Set(Array.from({ length: 50 }, (_, i) => withCollisionSuffix('a/IMG.JPG', i + 1)));
    expect(seen.size).toBe(50);
    expect(withCollisionSuffix('a/IMG.JPG', 7)).toBe(withCollisionSuffix('a/IMG.JPG', 7));
  });

  test('a-suffixed-sanitized-path-is-still-sanitized', () => {
    const chars = fc.constantFrom('a', '.', ' ', '/', ':', 'é', 'e\u0301', '日', '😀', 'CON', '.CR2', '.xmp', 'ascmhl');
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 300 }), fc.integer({ min: 1, max: 1_000_000 }), (parts, n) => {
        const { path } = sanitizePath(parts.join(''));
        const suffixed = withCollisionSuffix(path, n);
        expect(suffixed).not.toBe(path);
        expect(sanitizePath(suffixed)).toEqual({ path: suffixed, renamed: [] });
      }),
      { numRuns: 300 },
    );
  });

  test('suffix-number-below-one-is-refused', () => {
    expectThrowsCode(() => withCollisionSuffix('a.JPG', 0), 'INTERNAL', 'integer >= 1');
    expectThrowsCode(() => withCollisionSuffix('a.JPG', 1.5), 'INTERNAL', 'integer >= 1');
  });
});
