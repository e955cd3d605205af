import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES, keyAlternative, keyPrecedes, parseS3Url, renderKey, sanitizeKeySegment } from '../src/upload/keys.js';

const day = new Date(2026, 2, 7, 14, 5, 9); // local time: 2026-03-07 14:05:09

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isShuttleError(error) ? error.code : 'not-a-shuttle-error';
  }
  return undefined;
}

describe('S3 key templates', () => {
  it('renders the default template as station/year/day/name in local time', () => {
    expect(renderKey(DEFAULT_KEY_TEMPLATE, { station: 'studio-a', name: 'IMG_0001.CR3', date: day })).toBe('studio-a/2026/2026-03-07/IMG_0001.CR3');
  });

  it('prepends the prefix of an s3:// destination', () => {
    const { bucket, prefix } = parseS3Url('s3://shoots/clients/acme/');
    expect(bucket).toBe('shoots');
    expect(renderKey(DEFAULT_KEY_TEMPLATE, { station: 's1', name: 'a.jpg', date: day }, { prefix })).toBe('clients/acme/s1/2026/2026-03-07/a.jpg');
  });

  it('renders time tokens and extra tokens', () => {
    const key = renderKey('{camera}/{YYYY}{MM}{DD}-{hh}{mm}{ss}/{name}', { station: 's', name: 'x.nef', date: day, extra: { camera: 'Nikon Z9' } });
    expect(key).toBe('Nikon_Z9/20260307-140509/x.nef');
  });

  it('renders dates in UTC when asked', () => {
    const utc = new Date(Date.UTC(2026, 11, 31, 23, 30));
    expect(renderKey('{YYYY-MM-DD}/{name}', { station: 's', name: 'n', date: utc }, { utc: true })).toBe('2026-12-31/n');
  });

  it('keeps a token value from adding folders or climbing out of its place', () => {
    const key = renderKey(DEFAULT_KEY_TEMPLATE, { station: '..', name: '../../etc/pass wd?.jpg', date: day });
    expect(key).toBe('__/2026/2026-03-07/.._.._etc_pass_wd_.jpg');
    expect(key.split('/')).toHaveLength(4);
  });

  it('keeps the folders of {path} but neutralises dot segments and unsafe characters', () => {
    const key = renderKey('{station}/{path}', { station: 's', name: 'n', date: day, path: 'DCIM/../100CANON//IMG 0001#.JPG' });
    expect(key).toBe('s/DCIM/__/100CANON/IMG_0001_.JPG');
  });

  it('composes Unicode to NFC and keeps letters of any script', () => {
    expect(sanitizeKeySegment('Cafe\u0301 東京.jpg')).toBe('Café_東京.jpg');
  });

  it('rejects an unknown token, naming it', () => {
    expect(() => renderKey('{statoin}/{name}', { station: 's', name: 'n', date: day })).toThrow(/\{statoin\}/);
    expect(codeOf(() => renderKey('{statoin}/{name}', { station: 's', name: 'n', date: day }))).toBe('CONFIG_INVALID');
  });

  it('rejects unbalanced braces and empty token values', () => {
    expect(codeOf(() => renderKey('{station/{name}', { station: 's', name: 'n', date: day }))).toBe('CONFIG_INVALID');
    expect(codeOf(() => renderKey(DEFAULT_KEY_TEMPLATE, { station: ' ', name: 'n', date: day }))).toBe('NAME_INVALID');
  });

  it('rejects keys longer than S3 allows', () => {
    expect(codeOf(() => renderKey('{name}', { station: 's', name: 'é'.repeat(MAX_KEY_BYTES / 2 + 1), date: day }))).toBe('NAME_INVALID');
    expect(renderKey('{name}', { station: 's', name: 'é'.repeat(MAX_KEY_BYTES / 2), date: day })).toHaveLength(MAX_KEY_BYTES / 2);
  });

  it('parses s3:// destinations and rejects malformed ones', () => {
    expect(parseS3Url('s3://bucket')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Url('S3://my.bucket-1/a/b')).toEqual({ bucket: 'my.bucket-1', prefix: 'a/b' });
    for (const bad of ['bucket/prefix', 's3://', 's3://ab', 's3://-bucket/x', 's3://bucket/a/../b', 'https://bucket/x']) {
      expect(
        codeOf(() => parseS3Url(bad)),
        bad,
      ).toBe('CONFIG_INVALID');
    }
  });

  it('sanitizes any string to a safe, non-empty, non-dot segment', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const seg = sanitizeKeySegment(s);
        expect(seg).toMatch(/^[\p{L}\p{N}\-_.!*'()]+$/u);
        expect(seg).not.toBe('.');
        expect(seg).not.toBe('..');
      }),
    );
  });

  it('never renders an empty or dot segment, whatever the token values', () => {
    const nonBlank = fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }).filter((s) => s.trim() !== '');
    fc.assert(
      fc.property(nonBlank, nonBlank, nonBlank, (station, name, path) => {
        const key = renderKey('{station}/{path}/{name}', { station, name, path, date: day });
        for (const seg of key.split('/')) expect(['', '.', '..']).not.toContain(seg);
      }),
    );
  });
});

describe('keyPrecedes', () => {
  it('holds for the base and the lower alternatives the queue tries before a key, and nothing else', () => {
    expect(keyPrecedes('s/2026/IMG_0001.CR3', 's/2026/IMG_0001_1.CR3')).toBe(true);
    expect(keyPrecedes('s/2026/IMG_0001.CR3', 's/2026/IMG_0001_2.CR3')).toBe(true);
    expect(keyPrecedes('s/2026/IMG_0001_1.CR3', 's/2026/IMG_0001_2.CR3')).toBe(true);
    // The suffix goes before a sidecar's shot extension.
    expect(keyPrecedes('s/IMG_0001.CR2.xmp', 's/IMG_0001_1.CR2.xmp')).toBe(true);
    // Later alternatives, the key itself, other folders and other names do not precede.
    expect(keyPrecedes('s/2026/IMG_0001_2.CR3', 's/2026/IMG_0001_1.CR3')).toBe(false);
    expect(keyPrecedes('s/2026/IMG_0001_1.CR3', 's/2026/IMG_0001_1.CR3')).toBe(false);
    expect(keyPrecedes('s/2025/IMG_0001.CR3', 's/2026/IMG_0001_1.CR3')).toBe(false);
    expect(keyPrecedes('s/2026/IMG_0002.CR3', 's/2026/IMG_0002_1.JPG')).toBe(false);
    // A name of its own that ends in digits is no alternative of anything.
    expect(keyPrecedes('s/IMG.CR3', 's/IMG_0001.CR3')).toBe(false);
    expect(keyPrecedes('s/IMG.CR3', 's/IMG_1.CR3')).toBe(true);
  });

  it('agrees with keyAlternative for any name and suffix', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('/')),
        fc.integer({ min: 1, max: 50 }),
        (name, n) => {
          const base = `p/${name}.JPG`;
          const key = keyAlternative(base, n);
          if (key === undefined) return;
          expect(keyPrecedes(base, key)).toBe(true);
          for (let m = 1; m < n; m++) expect(keyPrecedes(keyAlternative(base, m) as string, key)).toBe(true);
          expect(keyPrecedes(key, base)).toBe(false);
        },
      ),
    );
  });
});
