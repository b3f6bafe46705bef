import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LOG_RING_BUDGET_BYTES, LOG_RING_BYTES, LOG_RING_BYTES_MAX, logRingBytesFor } from '../../src/engine/engine.js';

describe('log ring size per partition', () => {
  it('gives a lone partition the deepest ring and many partitions the smallest', () => {
    expect(logRingBytesFor(1)).toBe(LOG_RING_BYTES_MAX);
    expect(logRingBytesFor(2)).toBe(8 * 1024 * 1024);
    expect(logRingBytesFor(3)).toBe(4 * 1024 * 1024);
    expect(logRingBytesFor(4)).toBe(4 * 1024 * 1024);
    expect(logRingBytesFor(5)).toBe(LOG_RING_BYTES);
    expect(logRingBytesFor(64)).toBe(LOG_RING_BYTES);
    expect(logRingBytesFor(100_000)).toBe(LOG_RING_BYTES);
  });

  it('is a power of two within its bounds, never grows with more partitions, and stays in the budget unless at the floor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (n) => {
        const bytes = logRingBytesFor(n);
        expect(bytes & (bytes - 1)).toBe(0);
        expect(bytes).toBeGreaterThanOrEqual(LOG_RING_BYTES);
        expect(bytes).toBeLessThanOrEqual(LOG_RING_BYTES_MAX);
        expect(logRingBytesFor(n + 1)).toBeLessThanOrEqual(bytes);
        if (bytes > LOG_RING_BYTES) expect(bytes * n).toBeLessThanOrEqual(LOG_RING_BUDGET_BYTES);
        if (bytes < LOG_RING_BYTES_MAX) expect(bytes * 2 * n).toBeGreaterThan(LOG_RING_BUDGET_BYTES); // the largest that fits
      }),
    );
  });

  it('refuses an owner holding no partition', () => {
    expect(() => logRingBytesFor(0)).toThrow();
    expect(() => logRingBytesFor(1.5)).toThrow();
  });
});
