import { expect, test } from 'vitest';
import { nameFilter } from '../src/ingest/filter.js';

test('no-patterns-take-everything', () => {
  expect(nameFilter({})('DCIM/100CANON/IMG_0001.CR3')).toBe(true);
});

test('include-takes-only-matching-names-case-insensitively', () => {
  const f = nameFilter({ include: ['*.cr3', '*.jpg'] });
  expect(f('DCIM/100CANON/IMG_0001.CR3')).toBe(true);
  expect(f('DCIM/100CANON/img_0001.jpg')).toBe(true);
  expect(f('DCIM/100CANON/IMG_0001.XMP')).toBe(false);
  expect(f('DCIM/100CANON.jpg/IMG_0001.XMP')).toBe(false);
});

test('exclude-wins-over-include-and-supports-classes-and-single-characters', () => {
  const f = nameFilter({ include: ['img_*'], exclude: ['*.t?p', 'img_[0-4]*'] });
  expect(f('IMG_5000.JPG')).toBe(true);
  expect(f('IMG_5000.TMP')).toBe(false);
  expect(f('IMG_1000.JPG')).toBe(false);
  expect(nameFilter({ exclude: ['[!a]*'] })('a.jpg')).toBe(true);
  expect(nameFilter({ exclude: ['[!a]*'] })('b.jpg')).toBe(false);
});

test('regex-characters-in-patterns-are-literal', () => {
  const f = nameFilter({ include: ['shot(1)+.jpg'] });
  expect(f('shot(1)+.jpg')).toBe(true);
  expect(f('shot11.jpg')).toBe(false);
});
