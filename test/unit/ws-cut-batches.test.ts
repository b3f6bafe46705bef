/**
 * cutBatches: what a subscription push sends out of a fetch result. Whole batches that fit
 * the credit (or one oversized batch when the whole window is free); bytes that do not frame
 * as whole batches are refused with CORRUPT_MESSAGE, never pushed to a client.
 */
import { describe, expect, it } from 'vitest';
import { cutBatches } from '../../src/ws-gateway/connection.js';
import { encodeBatch } from '../../src/persist/record-batch.js';

function batches(...counts: number[]): { bytes: Uint8Array; sizes: number[] } {
  let base = 0;
  const parts = counts.map((n) => {
    const b = encodeBatch(Array.from({ length: n }, (_, i) => ({ value: new Uint8Array(20).fill(i) })), { baseOffset: base });
    base += n;
    return b;
  });
  const bytes = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, sizes: parts.map((p) => p.length) };
}

describe('cutBatches', () => {
  it('takes the whole batches that fit the credit, and one oversized batch only with the whole window free, counting their records', () => {
    const { bytes, sizes } = batches(3, 5, 2);
    expect(cutBatches(bytes, 1 << 20, 1 << 20)).toEqual({ bytes: bytes.length, nextOffset: 10, records: 10 });
    expect(cutBatches(bytes, sizes[0] + sizes[1], 1 << 20)).toEqual({ bytes: sizes[0] + sizes[1], nextOffset: 8, records: 8 });
    expect(cutBatches(bytes, sizes[0] - 1, 1 << 20)).toBe(null);
    expect(cutBatches(bytes, sizes[0] - 1, sizes[0] - 1)).toEqual({ bytes: sizes[0], nextOffset: 3, records: 3 });
    expect(cutBatches(new Uint8Array(0), 100, 100)).toBe(null);
  });

  it('refuses bytes that do not start at a batch boundary or end inside a batch', () => {
    const { bytes, sizes } = batches(3, 5);
    expect(() => cutBatches(bytes.subarray(7), 1 << 20, 1 << 20)).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
    expect(() => cutBatches(bytes.subarray(0, sizes[0] + 70), 1 << 20, 1 << 20)).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
    const damaged = bytes.slice();
    damaged[sizes[0] + 16] = 6; // the second batch's magic
    expect(() => cutBatches(damaged, 1 << 20, 1 << 20)).toThrow(/magic 6/);
  });
});
