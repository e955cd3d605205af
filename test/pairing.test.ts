import { describe, expect, test } from 'vitest';
import type { SourceItem } from '../src/device/source.js';
import { groupItems, priority, roleOf } from '../src/ingest/pairing.js';
import { splitShotName } from '../src/shot-names.js';

const item = (path: string, size = 1): SourceItem => ({ path, size, mtimeMs: 0 });
const paths = (g: { members: readonly { item: SourceItem }[] }): string[] => g.members.map((m) => m.item.path);

describe('pairing', () => {
  test('raw-jpeg-and-xmp-of-one-shot-form-one-group-with-the-jpeg-first', () => {
    const groups = groupItems([item('DCIM/100CANON/IMG_0001.XMP'), item('DCIM/100CANON/IMG_0001.CR2'), item('DCIM/100CANON/IMG_0001.JPG')]);
    expect(groups).toHaveLength(1);
    expect(paths(groups[0]!)).toEqual(['DCIM/100CANON/IMG_0001.JPG', 'DCIM/100CANON/IMG_0001.CR2', 'DCIM/100CANON/IMG_0001.XMP']);
    expect(groups[0]!.members.map((m) => m.role)).toEqual(['image', 'raw', 'sidecar']);
    expect(groups[0]!.dir).toBe('DCIM/100CANON');
  });

  test('stems-match-across-case-differences', () => {
    const groups = groupItems([item('DCIM/img_0001.jpg'), item('DCIM/IMG_0001.CR2'), item('DCIM/Img_0001.xmp')]);
    expect(groups).toHaveLength(1);
    expect(paths(groups[0]!)).toEqual(['DCIM/img_0001.jpg', 'DCIM/IMG_0001.CR2', 'DCIM/Img_0001.xmp']);
    expect(groups[0]!.stem).toBe('img_0001');
  });

  test('a-double-extension-sidecar-joins-its-shot', () => {
    const groups = groupItems([item('D/IMG_0002.CR2.xmp'), item('D/IMG_0002.CR2'), item('D/IMG_0002.JPG'), item('D/IMG_0002.jpg.XMP')]);
    expect(groups).toHaveLength(1);
    expect(paths(groups[0]!)).toEqual(['D/IMG_0002.JPG', 'D/IMG_0002.CR2', 'D/IMG_0002.CR2.xmp', 'D/IMG_0002.jpg.XMP']);
  });

  test('a-dotted-stem-that-is-not-a-media-extension-stays-part-of-the-stem', () => {
    expect(splitShotName('trip.day1.xmp')).toEqual({ stem: 'trip.day1', ext: '.xmp' });
    expect(splitShotName('IMG_0001.NEF.xmp')).toEqual({ stem: 'IMG_0001', ext: '.NEF.xmp' });
    expect(splitShotName('.hidden')).toEqual({ stem: '.hidden', ext: '' });
    expect(splitShotName('README')).toEqual({ stem: 'README', ext: '' });
  });

  test('repeated-names-in-different-folders-stay-separate-groups', () => {
    const groups = groupItems([item('DCIM/101CANON/IMG_0001.JPG'), item('DCIM/100CANON/IMG_0001.JPG'), item('DCIM/100CANON/IMG_0001.CR2'), item('DCIM/101CANON/IMG_0001.CR2')]);
    expect(groups.map((g) => g.key)).toEqual(['DCIM/100CANON/img_0001', 'DCIM/101CANON/img_0001']);
    expect(paths(groups[0]!)).toEqual(['DCIM/100CANON/IMG_0001.JPG', 'DCIM/100CANON/IMG_0001.CR2']);
    expect(paths(groups[1]!)).toEqual(['DCIM/101CANON/IMG_0001.JPG', 'DCIM/101CANON/IMG_0001.CR2']);
  });

  test('a-video-with-its-thm-and-wav-pairs-and-the-video-leads', () => {
    const groups = groupItems([item('M/MVI_0007.THM'), item('M/MVI_0007.WAV'), item('M/MVI_0007.MP4')]);
    expect(groups.map(paths)).toEqual([['M/MVI_0007.MP4', 'M/MVI_0007.THM', 'M/MVI_0007.WAV']]);
    expect(groups[0]!.members.map((m) => m.role)).toEqual(['video', 'sidecar', 'sidecar']);
  });

  test('every-listed-raw-format-is-a-raw-and-heic-is-an-image', () => {
    for (const ext of ['CR2', 'CR3', 'NEF', 'NRW', 'ARW', 'SR2', 'RAF', 'ORF', 'RW2', 'DNG', 'PEF', 'SRW', '3FR', 'IIQ', 'RWL', 'X3F']) {
      expect(roleOf(`a/X.${ext}`), ext).toBe('raw');
      expect(roleOf(`a/x.${ext.toLowerCase()}`), ext).toBe('raw');
    }
    for (const ext of ['JPG', 'jpeg', 'HEIC', 'heif', 'HIF', 'png', 'TIF', 'tiff']) expect(roleOf(`x.${ext}`), ext).toBe('image');
    for (const ext of ['MP4', 'mov', 'MXF', 'AVI', 'MTS', 'm2ts']) expect(roleOf(`x.${ext}`), ext).toBe('video');
    expect(roleOf('MISC/AUTPRINT.MRK')).toBe('other');
    expect(roleOf('MISC/README')).toBe('other');
  });

  test('priority-puts-previews-before-raws-before-video-before-sidecars', () => {
    const order = ['a.CR3', 'a.XMP', 'a.MOV', 'a.HEIC', 'a.dat'].map((p) => item(p)).sort((x, y) => priority(x) - priority(y));
    expect(order.map((i) => i.path)).toEqual(['a.HEIC', 'a.CR3', 'a.MOV', 'a.dat', 'a.XMP']);
  });

  test('files-with-other-stems-or-no-partner-are-groups-of-their-own', () => {
    const groups = groupItems([item('MISC/AUTPRINT.MRK'), item('D/IMG_0001.JPG'), item('D/IMG_00010.JPG'), item('top.WAV')]);
    expect(groups.map(paths)).toEqual([['top.WAV'], ['D/IMG_0001.JPG'], ['D/IMG_00010.JPG'], ['MISC/AUTPRINT.MRK']]);
    expect(groups[0]!.dir).toBe('');
  });

  test('group-order-is-the-same-whatever-the-listing-order', () => {
    const items = ['B/IMG_2.JPG', 'A/IMG_1.CR2', 'A/IMG_1.JPG', 'B/IMG_1.JPG', 'A/IMG_2.XMP', 'A/IMG_2.NEF'].map((p) => item(p));
    const a = groupItems(items).map(paths);
    const b = groupItems([...items].reverse()).map(paths);
    expect(b).toEqual(a);
    expect(a).toEqual([['A/IMG_1.JPG', 'A/IMG_1.CR2'], ['A/IMG_2.NEF', 'A/IMG_2.XMP'], ['B/IMG_1.JPG'], ['B/IMG_2.JPG']]);
  });

  // How fast: bench/steps.ts.
  test('ten-thousand-items-group-into-their-shots', () => {
    const items: SourceItem[] = [];
    for (let i = 0; i < 2500; i++) {
      const dir = `DCIM/${100 + Math.floor(i / 999)}CANON`;
      const stem = `IMG_${String((i % 999) + 1).padStart(4, '0')}`;
      for (const ext of ['.JPG', '.CR2', '.XMP', '.CR2.xmp']) items.push(item(`${dir}/${stem}${ext}`));
    }
    const groups = groupItems(items.reverse());
    expect(groups).toHaveLength(2500);
    expect(groups.every((g) => g.members.length === 4 && g.members[0]!.role === 'image')).toBe(true);
  });
});
