/**
 * ShuttleError's context typed per code (ErrorContexts in src/errors.ts). The type half of these tests is
 * checked by `tsc --noEmit`, which includes test/: each @ts-expect-error fails the check when the throw it
 * marks compiles after all.
 */
import { describe, expect, expectTypeOf, test } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { protocolError } from '../src/device/ptp/codec.js';
import { responseCodeOf } from '../src/device/ptp/session.js';

describe('error context typed per code', () => {
  test('a-typed-code-is-thrown-only-with-its-required-facts-of-the-right-types', () => {
    // @ts-expect-error a PTP_PROTOCOL error names the operation it was decoding
    const bare = new ShuttleError('PTP_PROTOCOL', 'truncated');
    // @ts-expect-error the operation is required in its context too
    const withoutOperation = new ShuttleError('PTP_PROTOCOL', 'truncated', { context: { offset: 4 } });
    // @ts-expect-error a response code is a number
    const badType = new ShuttleError('PTP_RESPONSE', 'refused', { context: { operation: 'GetObject', responseCode: '0x2009' } });
    expect([bare, withoutOperation, badType].map((e) => e.code)).toEqual(['PTP_PROTOCOL', 'PTP_PROTOCOL', 'PTP_RESPONSE']);
    // Codes not typed yet, and facts beyond the typed ones, stay open.
    const open = new ShuttleError('PTP_PROTOCOL', 'bad', { context: { operation: 'USB receive', vid: 0x04a9 } });
    expect(open.context).toEqual({ operation: 'USB receive', vid: 0x04a9 });
    expect(new ShuttleError('INTERNAL', 'bug').context).toEqual({});
  });

  test('source-destination-lock-manifest-and-upload-codes-carry-their-facts-typed-too', () => {
    // @ts-expect-error an unreadable source names the path it could not read
    const unreadable = new ShuttleError('SOURCE_UNREADABLE', 'EIO');
    // @ts-expect-error a copy that does not match names the source file, the destination and both hashes
    const mismatch = new ShuttleError('VERIFY_MISMATCH', 'differs', { context: { path: 'DCIM/IMG_0001.CR3', destination: '/srv/a' } });
    // @ts-expect-error a manifest error names the manifest file
    const manifest = new ShuttleError('MANIFEST_INVALID', 'bad chain', { context: { sequence: 2 } });
    // @ts-expect-error a lock's wait is in milliseconds, a number
    const locked = new ShuttleError('LOCKED', 'busy', { context: { path: '/run/shuttle/locks/x', waitedMs: '5000' } });
    // @ts-expect-error an HTTP status is a number
    const upload = new ShuttleError('UPLOAD_FAILED', 'refused', { context: { status: '503' } });
    // @ts-expect-error a destination that cannot be written names itself
    const notWritable = new ShuttleError('DEST_NOT_WRITABLE', 'EROFS', { context: { errno: 'EROFS' } });
    expect([unreadable, mismatch, manifest, locked, upload, notWritable].map((e) => e.code)).toEqual([
      'SOURCE_UNREADABLE',
      'VERIFY_MISMATCH',
      'MANIFEST_INVALID',
      'LOCKED',
      'UPLOAD_FAILED',
      'DEST_NOT_WRITABLE',
    ]);
    const err: unknown = new ShuttleError('UPLOAD_FAILED', 'S3 PutObject failed', { context: { op: 'PutObject', bucket: 'b', key: 'k', status: 503 } });
    if (!isShuttleError(err, 'UPLOAD_FAILED')) throw new Error('expected an UPLOAD_FAILED error');
    expectTypeOf(err.context.status).toEqualTypeOf<number | undefined>();
    expect(err.context.status).toBe(503);
    const space = new ShuttleError('DEST_NO_SPACE', 'full', { context: { path: '/srv/a', neededBytes: 10, availableBytes: 5 } });
    expectTypeOf(space.context.path).toEqualTypeOf<string>();
    expect(space.context).toEqual({ path: '/srv/a', neededBytes: 10, availableBytes: 5 });
  });

  test('narrowing-by-code-types-the-context-as-its-code-says', () => {
    const err: unknown = new ShuttleError('PTP_RESPONSE', 'GetObject failed', { context: { operation: 'GetObject', responseCode: 0x2009 } });
    if (!isShuttleError(err, 'PTP_RESPONSE')) throw new Error('expected a PTP_RESPONSE error');
    expectTypeOf(err.context.responseCode).toEqualTypeOf<number | undefined>();
    expectTypeOf(err.context.operation).toEqualTypeOf<string>();
    expect(responseCodeOf(err)).toBe(0x2009);
    const decode = protocolError('ObjectInfo', 'truncated', { offset: 12 });
    expectTypeOf(decode.context.offset).toEqualTypeOf<number | undefined>();
    expect(decode.context).toEqual({ operation: 'ObjectInfo', offset: 12 });
  });
});
