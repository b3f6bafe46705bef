// SeqlockCells in one thread (writer and reader instances over one SharedArrayBuffer).
// The cross-thread check is in test/integration/ring-seqlock-threads.test.ts.
import { describe, expect, it } from 'vitest';
import { SEQLOCK_COUNT_MAX, SEQLOCK_READ_MS_MAX, SeqlockCells } from '../../src/ring/seqlock-cells.js';

describe('SeqlockCells', () => {
  it.each([0, -1, 1.5, SEQLOCK_COUNT_MAX + 1, NaN])('rejects a count of %s with a RangeError', (count) => {
    expect(() => SeqlockCells.create(count)).toThrow(RangeError);
  });

  it('starts at zero and shows values to readers only once the write ends', () => {
    const writer = SeqlockCells.create(3);
    const reader = new SeqlockCells(writer.sab);
    const out = new Float64Array(3);
    reader.read(out);
    expect(Array.from(out)).toEqual([0, 0, 0]);
    writer.begin();
    writer.set(0, 2 ** 40 + 1);
    writer.set(2, 2 ** 53 - 1);
    expect(reader.sequence() % 2).toBe(1); // odd: a reader now retries
    writer.end();
    expect(reader.sequence()).toBe(2);
    reader.read(out);
    expect(Array.from(out)).toEqual([2 ** 40 + 1, 0, 2 ** 53 - 1]);
    expect(reader.get(0)).toBe(2 ** 40 + 1);
    expect(reader.get(1)).toBe(0);
    expect(reader.get(2)).toBe(2 ** 53 - 1);
  });

  it('keeps float64 values exactly, including -1 and fractions', () => {
    const writer = SeqlockCells.create(2);
    writer.begin();
    writer.set(0, -1);
    writer.set(1, 0.1);
    writer.end();
    const reader = new SeqlockCells(writer.sab);
    expect(reader.get(0)).toBe(-1);
    expect(reader.get(1)).toBe(0.1);
  });

  it('refuses set outside begin/end, nested begin, end without begin and indexes out of range', () => {
    const cells = SeqlockCells.create(2);
    expect(() => cells.set(0, 1)).toThrow(/outside begin/);
    expect(() => cells.end()).toThrow(/without begin/);
    cells.begin();
    expect(() => cells.begin()).toThrow(/inside a write/);
    expect(() => cells.set(2, 1)).toThrow(/in range/);
    cells.end();
    expect(() => cells.get(-1)).toThrow(/in range/);
    expect(() => cells.read(new Float64Array(1))).toThrow(/holds every value/);
  });

  it('throws INTERNAL instead of spinning forever when the writer stopped inside a write', () => {
    const writer = SeqlockCells.create(1);
    const reader = new SeqlockCells(writer.sab);
    writer.begin(); // and never end(): as if the writer thread died here
    const startedMs = Date.now();
    expect(() => reader.get(0)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
    expect(() => reader.read(new Float64Array(1))).toThrow(/writer thread die/);
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(2 * SEQLOCK_READ_MS_MAX - 50);
    writer.end();
    expect(reader.get(0)).toBe(0);
  });

  it('attaches to existing cells and refuses a buffer that is not one', () => {
    const cells = SeqlockCells.create(4);
    expect(new SeqlockCells(cells.sab).count).toBe(4);
    expect(() => new SeqlockCells(new SharedArrayBuffer(cells.sab.byteLength))).toThrow(/not SeqlockCells/);
  });
});
