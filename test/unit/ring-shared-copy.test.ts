// copyBytes: the copy into and out of shared memory that the rings and owner handles use.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyBytes, MEMCPY_MIN_BYTES } from '../../src/ring/shared-copy.js';

const AREA_BYTES = 3 * MEMCPY_MIN_BYTES + 64;

function area(shared: boolean, seed: number): Uint8Array {
  const bytes = new Uint8Array(shared ? new SharedArrayBuffer(AREA_BYTES) : new ArrayBuffer(AREA_BYTES));
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

describe('copyBytes', () => {
  it('copies exactly the source to the target offset, both sides of the memcpy threshold, any alignment, shared or not', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 * MEMCPY_MIN_BYTES }),
        fc.integer({ min: 0, max: 63 }),
        fc.integer({ min: 0, max: 63 }),
        (sourceShared, targetShared, length, sourceStart, targetOffset) => {
          const source = area(sourceShared, 7).subarray(sourceStart, sourceStart + length);
          const target = area(targetShared, 99);
          const before = target.slice();
          copyBytes(target, targetOffset, source);
          expect(Buffer.from(target.subarray(targetOffset, targetOffset + length)).equals(Buffer.from(source))).toBe(true);
          // Nothing outside the copied range changed.
          expect(Buffer.from(target.subarray(0, targetOffset)).equals(Buffer.from(before.subarray(0, targetOffset)))).toBe(true);
          expect(Buffer.from(target.subarray(targetOffset + length)).equals(Buffer.from(before.subarray(targetOffset + length)))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws a RangeError, as set does, when the source does not fit, and writes nothing', () => {
    for (const length of [10, MEMCPY_MIN_BYTES, 2 * MEMCPY_MIN_BYTES]) {
      const target = new Uint8Array(new SharedArrayBuffer(length + 5));
      const source = new Uint8Array(length).fill(1);
      expect(() => copyBytes(target, 6, source)).toThrow(RangeError);
      expect(() => copyBytes(target, -1, source)).toThrow(RangeError);
      expect(target.every((b) => b === 0)).toBe(true);
    }
  });

  it('copies an empty source as a no-op', () => {
    const target = new Uint8Array(8);
    copyBytes(target, 8, new Uint8Array(0));
    expect(target.every((b) => b === 0)).toBe(true);
  });
});
