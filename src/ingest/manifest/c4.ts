import { createHash, type Hash } from 'node:crypto';
import { ShuttleError } from '../../errors.js';

/**
 * C4 ID (SMPTE ST 2114), the hash the ASC MHL chain uses to seal each generation: SHA-512 of the bytes,
 * read as one big-endian integer, written in base 58 with the C4 alphabet (no 0, O, I, l), left-padded
 * with the alphabet's zero ('1') to 88 digits, after the prefix "c4": always 90 characters.
 */
const C4_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const C4_DIGITS = 88;
const C4_ID = /^c4[1-9A-HJ-NP-Za-km-z]{88}$/;

export function isC4Id(text: string): boolean {
  return C4_ID.test(text);
}

export function c4FromSha512(digest: Uint8Array): string {
  if (digest.byteLength !== 64) {
    throw new ShuttleError('INTERNAL', `a C4 ID needs a 64-byte SHA-512 digest, got ${digest.byteLength} bytes`);
  }
  let n = BigInt(`0x${Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex')}`);
  const digits: string[] = [];
  while (n > 0n) {
    digits.push(C4_ALPHABET[Number(n % 58n)]!);
    n /= 58n;
  }
  return `c4${digits.reverse().join('').padStart(C4_DIGITS, C4_ALPHABET[0])}`;
}

/** Incremental C4 over chunks, for hashing a manifest while it is being written. */
export class C4Hasher {
  #sha: Hash = createHash('sha512');

  update(chunk: Uint8Array): void {
    this.#sha.update(chunk);
  }

  digest(): string {
    return c4FromSha512(this.#sha.digest());
  }
}

export function c4OfBytes(data: Uint8Array): string {
  const h = new C4Hasher();
  h.update(data);
  return h.digest();
}
