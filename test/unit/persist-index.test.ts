import { readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeOffsetIndex, OFFSET_ENTRY_BYTES, OffsetIndex } from '../../src/persist/offset-index.js';
import { PartitionLog } from '../../src/persist/partition-log.js';
import { encodeBatch } from '../../src/persist/record-batch.js';
import { decodeTimeIndex, TIME_ENTRY_BYTES, TimeIndex } from '../../src/persist/time-index.js';
import { concat, SMALL_CONFIG, tempDir, valueOf } from './persist-helpers.js';

describe('OffsetIndex', () => {
  it('grows past its initial capacity and finds the largest entry at or below a target', () => {
    const index = new OffsetIndex();
    for (let i = 0; i < 1000; i++) index.add(i * 10, i * 100 + 7);
    expect(index.count).toBe(1000);
    expect(index.lookup(-1)).toBe(-1);
    expect(index.lookup(0)).toBe(0);
    expect(index.lookup(9)).toBe(0);
    expect(index.lookup(10)).toBe(1);
    expect(index.lookup(5555)).toBe(555);
    expect(index.lookup(1e9)).toBe(999);
    expect(index.positionFor(5555)).toBe(55507);
    expect(new OffsetIndex().positionFor(12)).toBe(0);
  });

  it('encodes big-endian 8-byte entries that decode to an equal index', () => {
    const index = new OffsetIndex();
    index.add(1, 0x01020304);
    index.add(0xfffffffe, 0x7fffffff);
    const bytes = index.encode();
    expect(bytes.length).toBe(2 * OFFSET_ENTRY_BYTES);
    expect(Array.from(bytes.subarray(0, 8))).toEqual([0, 0, 0, 1, 1, 2, 3, 4]);
    const decoded = decodeOffsetIndex(bytes, 0x80000000);
    expect(decoded.ok && decoded.index.equals(index)).toBe(true);
  });

  it('rejects sizes that are not a multiple of 8, entries that do not increase, positions past the segment', () => {
    const index = new OffsetIndex();
    index.add(1, 10);
    index.add(2, 20);
    const bytes = index.encode();
    expect(decodeOffsetIndex(bytes.subarray(0, 12), 100)).toMatchObject({ ok: false });
    expect(decodeOffsetIndex(bytes, 20)).toMatchObject({ ok: false }); // position 20 is not inside 20 bytes
    const flat = bytes.slice();
    flat.copyWithin(8, 0, 8);
    expect(decodeOffsetIndex(flat, 100)).toMatchObject({ ok: false });
    expect(decodeOffsetIndex(new Uint8Array(0), 0)).toMatchObject({ ok: true });
  });

  it('asserts that entries increase', () => {
    const index = new OffsetIndex();
    index.add(5, 50);
    expect(() => index.add(5, 60)).toThrow(/assertion/);
    expect(() => index.add(6, 50)).toThrow(/assertion/);
  });
});

describe('TimeIndex', () => {
  it('adds an entry only when the timestamp grows, and looks up the largest at or below a target', () => {
    const index = new TimeIndex();
    expect(index.maybeAdd(-1, 0)).toBe(false); // no timestamp is never indexed
    expect(index.maybeAdd(100, 0)).toBe(true);
    expect(index.maybeAdd(100, 1)).toBe(false);
    expect(index.maybeAdd(90, 2)).toBe(false);
    for (let i = 1; i < 200; i++) expect(index.maybeAdd(100 + i * 10, i * 3)).toBe(true);
    expect(index.lookup(99)).toBe(-1);
    expect(index.lookup(100)).toBe(0);
    expect(index.lookup(115)).toBe(1);
    expect(index.lastTimestamp).toBe(100 + 199 * 10);
  });

  it('encodes big-endian 12-byte entries, timestamps beyond 32 bits, and decodes them back', () => {
    const index = new TimeIndex();
    index.maybeAdd(1_700_000_000_123, 0);
    index.maybeAdd(2 ** 50, 9);
    const bytes = index.encode();
    expect(bytes.length).toBe(2 * TIME_ENTRY_BYTES);
    const view = new DataView(bytes.buffer);
    expect(view.getBigInt64(0, false)).toBe(1_700_000_000_123n);
    expect(view.getUint32(20, false)).toBe(9);
    const decoded = decodeTimeIndex(bytes, 10);
    expect(decoded.ok && decoded.index.equals(index)).toBe(true);
    expect(decodeTimeIndex(bytes, 9)).toMatchObject({ ok: false }); // offset 9 past the segment end
    expect(decodeTimeIndex(bytes.subarray(0, 13), 10)).toMatchObject({ ok: false });
    expect(decodeTimeIndex(concat([bytes.subarray(12), bytes.subarray(0, 12)]), 10)).toMatchObject({ ok: false });
  });
});

describe('index policy', () => {
  it('indexes written by appends, however grouped, are byte for byte the indexes a rebuild produces', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ count: fc.integer({ min: 1, max: 4 }), valueBytes: fc.integer({ min: 0, max: 400 }), tsStep: fc.integer({ min: -50, max: 100 }) }), {
          minLength: 1,
          maxLength: 60,
        }),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 600 }),
        (batches, groups, indexIntervalBytes) => {
          const dir = tempDir();
          const config = { ...SMALL_CONFIG, segmentBytes: 3000, indexIntervalBytes };
          const log = PartitionLog.open({ dir, config });
          let ts = 1_000_000;
          let b = 0;
          let g = 0;
          while (b < batches.length) {
            const n = Math.min(groups[g++ % groups.length], batches.length - b);
            const parts: Uint8Array[] = [];
            const first = log.logEndOffset;
            let next = first;
            for (let k = 0; k < n; k++, b++) {
              const spec = batches[b];
              const records = Array.from({ length: spec.count }, (_, i) => ({ value: valueOf(next + i, spec.valueBytes), timestamp: (ts += spec.tsStep) }));
              parts.push(encodeBatch(records, { baseOffset: next }));
              next += spec.count;
            }
            log.append(concat(parts), first, next);
          }
          const bases = log.segmentBaseOffsets();
          log.close({ clean: true });
          const names = bases.flatMap((base) => ['.index', '.timeindex'].map((s) => String(base).padStart(20, '0') + s));
          const written = names.map((n) => readFileSync(join(dir, n)));
          for (const n of names) unlinkSync(join(dir, n));
          const again = PartitionLog.open({ dir, config });
          // Every index file was missing, so every one was rebuilt, and equals what appends wrote.
          expect(again.recoveryReport.indexesRebuilt.sort()).toEqual([...names].sort());
          names.forEach((n, i) => expect(readFileSync(join(dir, n))).toEqual(written[i]));
          again.close({ clean: true });
        },
      ),
      { numRuns: 25 },
    );
  });
});
