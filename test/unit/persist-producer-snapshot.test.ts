import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeProducerSnapshot,
  encodeProducerSnapshot,
  parseSnapshotFileName,
  snapshotFileName,
  SNAPSHOT_BATCHES_MAX,
  type ProducerSnapshotEntry,
} from '../../src/persist/producer-snapshot.js';

const entries = (offset: number) =>
  fc.array(
    fc.record({
      producerId: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      epoch: fc.integer({ min: -32768, max: 32767 }),
      lastSequence: fc.integer({ min: 0, max: 0x7fff_ffff }),
      batches: fc.array(fc.tuple(fc.integer({ min: 0, max: 0x7fff_ffff }), fc.integer({ min: 0, max: 0x7fff_ffff }), fc.integer({ min: 0, max: offset - 1 })), { maxLength: SNAPSHOT_BATCHES_MAX }),
    }),
    { maxLength: 20 },
  ) as fc.Arbitrary<ProducerSnapshotEntry[]>;

describe('producer state snapshot file', () => {
  it('decodes what it encodes, for any state', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 50 }).chain((offset) => fc.tuple(fc.constant(offset), entries(offset))), ([offset, producers]) => {
        const decoded = decodeProducerSnapshot(encodeProducerSnapshot(offset, producers));
        expect(decoded).toEqual({ ok: true, offset, producers });
      }),
    );
  });

  it('refuses any cut or flipped byte with a reason, never a wrong state', () => {
    const bytes = encodeProducerSnapshot(1000, [
      { producerId: 7, epoch: 0, lastSequence: 29, batches: [[0, 9, 10], [10, 29, 20]] },
      { producerId: 9, epoch: 1, lastSequence: 4, batches: [[0, 4, 40]] },
    ]);
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.nat({ max: bytes.length - 1 }), (at, flip, cut) => {
        const flipped = bytes.slice();
        flipped[at] ^= flip;
        const a = decodeProducerSnapshot(flipped);
        expect(a.ok).toBe(false);
        const b = decodeProducerSnapshot(bytes.subarray(0, cut));
        expect(b.ok).toBe(false);
        if (!a.ok) expect(a.reason).toMatch(/\w/);
      }),
    );
  });

  it('names its file by the offset in 20 digits, as the segments', () => {
    expect(snapshotFileName(12345)).toBe('00000000000000012345.snapshot');
    expect(parseSnapshotFileName('00000000000000012345.snapshot')).toBe(12345);
    for (const name of ['00000000000000012345.log', '12345.snapshot', '00000000000000012345.snapshot.tmp']) expect(parseSnapshotFileName(name)).toBeNull();
  });
});
