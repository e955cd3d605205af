import { createHash } from 'node:crypto';

/**
 * xoshiro128** : a small, fast generator whose output depends only on its seed, so a sample card is the
 * same bytes on every machine. Not for anything secret.
 */
export class Prng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** Seeds from a number and a label (a file's path), so every file gets its own stream. */
  static from(seed: number, label: string): Prng {
    const d = createHash('sha256').update(`${seed}\u0000${label}`).digest();
    return new Prng(d.readUInt32LE(0), d.readUInt32LE(4), d.readUInt32LE(8), d.readUInt32LE(12));
  }

  constructor(a: number, b: number, c: number, d: number) {
    this.#s0 = a >>> 0;
    this.#s1 = b >>> 0;
    this.#s2 = c >>> 0;
    this.#s3 = d >>> 0;
    // An all-zero state would stay zero forever.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 0x9e3779b9;
  }

  nextU32(): number {
    const s1 = this.#s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Fills `buf` with pseudo-random bytes (fast path through a 32-bit view when aligned). */
  fill(buf: Uint8Array): void {
    let i = 0;
    if (buf.byteOffset % 4 === 0) {
      const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2);
      // The same steps as nextU32 on local variables: this loop is what makes gigabytes quick.
      let s0 = this.#s0;
      let s1 = this.#s1;
      let s2 = this.#s2;
      let s3 = this.#s3;
      for (let w = 0; w < words.length; w++) {
        const x = Math.imul(s1, 5);
        words[w] = Math.imul((x << 7) | (x >>> 25), 9);
        const t = s1 << 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 11) | (s3 >>> 21);
      }
      this.#s0 = s0 >>> 0;
      this.#s1 = s1 >>> 0;
      this.#s2 = s2 >>> 0;
      this.#s3 = s3 >>> 0;
      i = words.length * 4;
    }
    for (; i < buf.byteLength; i++) buf[i] = this.nextU32() & 0xff;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafeSlow(n);
    this.fill(b);
    return b;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
