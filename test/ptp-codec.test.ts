import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { PtpReader, PtpWriter, encodePtpString, formatPtpDate, parsePtpDate } from '../src/device/ptp/codec.js';
import {
  decodeDeviceInfo,
  decodeObjectInfo,
  decodeStorageIds,
  decodeStorageInfo,
  encodeDeviceInfo,
  encodeObjectInfo,
  encodeStorageInfo,
  encodeU32Array,
  isStorageAvailable,
  type DeviceInfo,
  type ObjectInfo,
  type StorageInfo,
} from '../src/device/ptp/datasets.js';
import { operationName, responseName } from '../src/device/ptp/codes.js';

function protocolFailure(fn: () => unknown): ShuttleError {
  try {
    fn();
  } catch (err) {
    if (isShuttleError(err, 'PTP_PROTOCOL')) return err;
    throw err;
  }
  throw new Error('expected PTP_PROTOCOL, nothing was thrown');
}

/** Only PTP_PROTOCOL may escape a decoder fed garbage. */
function onlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!isShuttleError(err, 'PTP_PROTOCOL')) throw err;
  }
}

/** No lone UTF-16 surrogates (they cannot survive any UTF-16 decoder). */
function wellFormed(s: string): boolean {
  return !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''));
}

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ptpString = fc.string({ maxLength: 254, unit: 'binary' }).filter((s) => s.length <= 254 && !s.includes('\0') && wellFormed(s));

describe('PTP strings', () => {
  test('a string is a count byte including the NUL, then UTF-16LE', () => {
    const b = encodePtpString('IMG_0001.JPG');
    expect(b[0]).toBe(13);
    expect(b.length).toBe(1 + 13 * 2);
    expect(b.readUInt16LE(b.length - 2)).toBe(0);
    expect(new PtpReader(b, 't').string('s')).toBe('IMG_0001.JPG');
  });

  test('the empty string is the single byte 0', () => {
    expect([...encodePtpString('')]).toEqual([0]);
    expect(new PtpReader(Uint8Array.of(0), 't').string('s')).toBe('');
  });

  test('a count that runs past the data is refused with the offset', () => {
    const bytes = Uint8Array.of(0xaa, 5, 0x41, 0, 0x42, 0);
    const r = new PtpReader(bytes, 'ObjectInfo');
    r.u8('pad');
    const err = protocolFailure(() => r.string('Filename'));
    expect(err.context['operation']).toBe('ObjectInfo');
    expect(err.context['offset']).toBe(1);
    expect(String(err.context['expected'])).toContain('Filename');
  });

  test('strings longer than 254 units cannot be encoded', () => {
    protocolFailure(() => encodePtpString('x'.repeat(255)));
    expect(encodePtpString('x'.repeat(254))[0]).toBe(255);
  });

  test('round-trips any string of up to 254 UTF-16 units', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 254, unit: 'grapheme' }), (s) => {
        fc.pre(s.length <= 254 && !s.includes('\0') && wellFormed(s));
        expect(new PtpReader(encodePtpString(s), 't').string('s')).toBe(s);
      }),
    );
  });
});

describe('arrays', () => {
  test('a declared count larger than the data is refused before allocating', () => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(0xffffffff, 0);
    const err = protocolFailure(() => new PtpReader(b, 'ObjectHandles').u32Array('handles'));
    expect(err.message).toContain('4294967295');
  });

  test('u16 and u32 arrays round-trip', () => {
    fc.assert(
      fc.property(fc.array(u16, { maxLength: 50 }), fc.array(u32, { maxLength: 50 }), (a, b) => {
        const r = new PtpReader(new PtpWriter().u16Array(a).u32Array(b).toBuffer(), 't');
        expect(r.u16Array('a')).toEqual(a);
        expect(r.u32Array('b')).toEqual(b);
        expect(r.remaining).toBe(0);
      }),
    );
  });
});

describe('dates', () => {
  test('a date without zone is camera-local time in the given IANA zone', () => {
    expect(parsePtpDate('20240315T143000', 'Europe/Berlin')).toBe(Date.UTC(2024, 2, 15, 13, 30, 0));
    expect(parsePtpDate('20240715T143000', 'Europe/Berlin')).toBe(Date.UTC(2024, 6, 15, 12, 30, 0));
    expect(parsePtpDate('20240715T143000', 'America/New_York')).toBe(Date.UTC(2024, 6, 15, 18, 30, 0));
  });

  test('Z and ±hhmm carry their own offset; tenths are kept', () => {
    expect(parsePtpDate('20240315T143000Z', 'Asia/Tokyo')).toBe(Date.UTC(2024, 2, 15, 14, 30, 0));
    expect(parsePtpDate('20240315T143000.5+0530', 'UTC')).toBe(Date.UTC(2024, 2, 15, 9, 0, 0, 500));
    expect(parsePtpDate('20240315T143000-0800', 'UTC')).toBe(Date.UTC(2024, 2, 15, 22, 30, 0));
  });

  test('malformed or out-of-range dates are protocol errors', () => {
    for (const bad of ['', '2024031T143000', '20241315T143000', '20240230T120000', '20240315T253000', '20240315 143000', '20240315T143000+2500']) {
      protocolFailure(() => parsePtpDate(bad, 'UTC'));
    }
  });

  test('an unknown zone name is a configuration error', () => {
    expect(() => parsePtpDate('20240315T143000', 'Mars/Olympus')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  test('format then parse gives back the instant (to the second) in any zone', () => {
    const zones = ['UTC', 'Europe/Berlin', 'America/Los_Angeles', 'Asia/Kolkata', 'Australia/Lord_Howe'];
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2090, 0, 1) }),
        fc.constantFrom(...zones),
        fc.constantFrom('none', 'offset' as const),
        (t, zone, marker) => {
          const s = Math.floor(t / 1000) * 1000;
          const text = formatPtpDate(s, { timeZone: zone, zoneMarker: marker });
          const back = parsePtpDate(text, zone);
          if (marker === 'offset') expect(back).toBe(s);
          // Local time is ambiguous for the hour a DST change repeats; it is then one of the two instants.
          else expect([0, 3_600_000, -3_600_000, 1_800_000, -1_800_000]).toContain(back - s);
        },
      ),
    );
  });
});

const deviceInfo: fc.Arbitrary<DeviceInfo> = fc.record({
  standardVersion: u16,
  vendorExtensionId: u32,
  vendorExtensionVersion: u16,
  vendorExtensionDesc: ptpString,
  functionalMode: u16,
  operationsSupported: fc.array(u16, { maxLength: 40 }),
  eventsSupported: fc.array(u16, { maxLength: 10 }),
  devicePropertiesSupported: fc.array(u16, { maxLength: 10 }),
  captureFormats: fc.array(u16, { maxLength: 5 }),
  imageFormats: fc.array(u16, { maxLength: 10 }),
  manufacturer: ptpString,
  model: ptpString,
  deviceVersion: ptpString,
  serialNumber: ptpString,
});

const storageInfo: fc.Arbitrary<StorageInfo> = fc.record({
  storageType: u16,
  filesystemType: u16,
  accessCapability: u16,
  maxCapacity: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  freeSpaceInBytes: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  freeSpaceInImages: u32,
  storageDescription: ptpString,
  volumeLabel: ptpString,
});

const objectInfo: fc.Arbitrary<ObjectInfo> = fc.record({
  storageId: u32,
  objectFormat: u16,
  protectionStatus: u16,
  compressedSize: u32,
  thumbFormat: u16,
  thumbCompressedSize: u32,
  thumbPixWidth: u32,
  thumbPixHeight: u32,
  imagePixWidth: u32,
  imagePixHeight: u32,
  imageBitDepth: u32,
  parentObject: u32,
  associationType: u16,
  associationDesc: u32,
  sequenceNumber: u32,
  filename: ptpString,
  captureDate: fc.constantFrom('', '20240315T143000', '20240315T143000.0Z'),
  modificationDate: fc.constantFrom('', '20240315T143001', '20240315T143001+0100'),
  keywords: ptpString,
});

describe('datasets', () => {
  test('DeviceInfo, StorageInfo and ObjectInfo round-trip', () => {
    fc.assert(
      fc.property(deviceInfo, (d) => {
        expect(decodeDeviceInfo(encodeDeviceInfo(d))).toEqual(d);
      }),
    );
    fc.assert(
      fc.property(storageInfo, (s) => {
        expect(decodeStorageInfo(encodeStorageInfo(s))).toEqual(s);
      }),
    );
    fc.assert(
      fc.property(objectInfo, (o) => {
        expect(decodeObjectInfo(encodeObjectInfo(o))).toEqual(o);
      }),
    );
  });

  test('every truncation of a dataset is a protocol error naming the dataset, or a shorter valid one', () => {
    fc.assert(
      fc.property(deviceInfo, objectInfo, fc.double({ min: 0, max: 1, noNaN: true }), (d, o, cut) => {
        for (const [bytes, decode, name] of [
          [encodeDeviceInfo(d), decodeDeviceInfo, 'DeviceInfo'],
          [encodeObjectInfo(o), decodeObjectInfo, 'ObjectInfo'],
        ] as const) {
          const truncated = bytes.subarray(0, Math.floor(cut * bytes.length));
          try {
            decode(truncated);
          } catch (err) {
            expect(isShuttleError(err, 'PTP_PROTOCOL')).toBe(true);
            expect((err as ShuttleError).context['operation']).toBe(name);
          }
        }
      }),
    );
  });

  test('arbitrary bytes decode to a dataset or fail with PTP_PROTOCOL', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        onlyProtocolErrors(() => decodeDeviceInfo(bytes));
        onlyProtocolErrors(() => decodeObjectInfo(bytes, { detectObjectSize64: true }));
        onlyProtocolErrors(() => decodeStorageInfo(bytes));
        onlyProtocolErrors(() => decodeStorageIds(bytes));
      }),
    );
  });

  test('DeviceInfo without the trailing strings still decodes (they are optional in practice)', () => {
    const full = encodeDeviceInfo({
      standardVersion: 100,
      vendorExtensionId: 6,
      vendorExtensionVersion: 100,
      vendorExtensionDesc: 'microsoft.com: 1.0',
      functionalMode: 0,
      operationsSupported: [0x1001],
      eventsSupported: [],
      devicePropertiesSupported: [],
      captureFormats: [],
      imageFormats: [],
      manufacturer: 'Acme',
      model: '',
      deviceVersion: '',
      serialNumber: '',
    });
    const info = decodeDeviceInfo(full.subarray(0, full.length - 3));
    expect(info.manufacturer).toBe('Acme');
    expect(info.serialNumber).toBe('');
  });

  test('storage ids whose low 16 bits are 0 are empty slots', () => {
    const ids = decodeStorageIds(encodeU32Array([0x00010001, 0x00020000, 0x00020001]));
    expect(ids.filter(isStorageAvailable)).toEqual([0x00010001, 0x00020001]);
  });

  test('a 64-bit ObjectCompressedSize (Samsung) is read when the quirk asks for detection', () => {
    const o: ObjectInfo = {
      storageId: 0x10001,
      objectFormat: 0x3801,
      protectionStatus: 0,
      compressedSize: 0,
      thumbFormat: 0,
      thumbCompressedSize: 0,
      thumbPixWidth: 0,
      thumbPixHeight: 0,
      imagePixWidth: 0,
      imagePixHeight: 0,
      imageBitDepth: 0,
      parentObject: 0,
      associationType: 0,
      associationDesc: 0,
      sequenceNumber: 0,
      filename: 'BIG.MP4',
      captureDate: '',
      modificationDate: '',
      keywords: '',
    };
    const normal = encodeObjectInfo(o);
    const size = 5_000_000_000;
    const wide = Buffer.concat([normal.subarray(0, 8), Buffer.alloc(8), normal.subarray(12)]);
    wide.writeBigUInt64LE(BigInt(size), 8);
    const decoded = decodeObjectInfo(wide, { detectObjectSize64: true });
    expect(decoded.compressedSize).toBe(size);
    expect(decoded.filename).toBe('BIG.MP4');
    expect(decodeObjectInfo(normal, { detectObjectSize64: true }).filename).toBe('BIG.MP4');
  });
});

test('codes have names for logs and errors', () => {
  expect(operationName(0x101b)).toBe('GetPartialObject');
  expect(responseName(0x2019)).toBe('DeviceBusy');
  expect(responseName(0xa001)).toBe('Response_0xa001');
});
