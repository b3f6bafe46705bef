import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ATTRIBUTES_OFFSET,
  decodeBatch,
  encodeBatch,
  forEachBatch,
  readBatchHeader,
  RecordBatchBuilder,
  logAppendTimeOf,
  restampProducerFields,
  stampLogAppendTime,
  validateBatch,
  type RecordInput,
} from '../../src/persist/record-batch.js';
import { crc32c } from '../../src/persist/crc32c.js';

const YEAR_MS = 365 * 24 * 3600 * 1000;

const bytesArb = (maxLength: number) => fc.uint8Array({ maxLength });
const nullableBytes = (maxLength: number) => fc.option(bytesArb(maxLength), { nil: null, freq: 4 });

const headerArb = fc.record({
  key: fc.string({ unit: 'grapheme', maxLength: 12 }),
  value: nullableBytes(16),
});

const recordArb = (timestampBase: number): fc.Arbitrary<RecordInput> =>
  fc.record({
    key: nullableBytes(40),
    value: nullableBytes(120),
    // Spread over ten years either side of the base: deltas need multi-byte varlongs.
    timestamp: fc.integer({ min: timestampBase - 10 * YEAR_MS, max: timestampBase + 10 * YEAR_MS }),
    headers: fc.array(headerArb, { maxLength: 4 }),
  });

const batchArb = fc
  .record({
    baseOffset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 1_000 }),
    timestampBase: fc.integer({ min: 11 * YEAR_MS, max: 60 * YEAR_MS }),
    count: fc.integer({ min: 1, max: 12 }),
  })
  .chain(({ baseOffset, timestampBase, count }) =>
    fc.record({
      baseOffset: fc.constant(baseOffset),
      records: fc.array(recordArb(timestampBase), { minLength: count, maxLength: count }),
    }),
  );

/** Byte equality without building arrays (values reach 1 MiB). */
function same(a: Uint8Array | null, b: Uint8Array | null | undefined): boolean {
  if (a === null || b == null) return a === null && b == null;
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

function throws(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
}

function expectRoundTrip(records: RecordInput[], baseOffset: number): Uint8Array {
  const bytes = encodeBatch(records, { baseOffset });
  const { header, records: decoded } = decodeBatch(bytes);
  expect(header.baseOffset).toBe(baseOffset);
  expect(header.recordCount).toBe(records.length);
  expect(header.maxTimestamp).toBe(Math.max(...records.map((r) => r.timestamp!)));
  expect(decoded).toHaveLength(records.length);
  decoded.forEach((d, i) => {
    const r = records[i];
    expect(d.offset).toBe(baseOffset + i);
    expect(d.timestamp).toBe(r.timestamp);
    expect(same(d.key, r.key)).toBe(true);
    expect(same(d.value, r.value)).toBe(true);
    const headers = r.headers ?? [];
    expect(d.headers.map((h) => h.key)).toEqual(headers.map((h) => h.key));
    d.headers.forEach((h, k) => expect(same(h.value, headers[k].value)).toBe(true));
  });
  return bytes;
}

describe('RecordBatch v2 codec (properties)', () => {
  it('a RecordBatchBuilder, a record at a time, decodes like encodeBatch: any order of timestamps, growth from a tiny buffer, headroom left untouched', () => {
    fc.assert(
      fc.property(batchArb, fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 300 }), ({ records }, headroom, initialBytes) => {
        const builder = new RecordBatchBuilder(headroom, initialBytes);
        let appended = 0;
        for (const r of records) appended += builder.append(r.key ?? null, r.value, r.headers ?? [], r.timestamp!);
        expect(builder.sizeBytes).toBe(61 + appended);
        const batch = builder.finish(crc32c, { producerId: 5, producerEpoch: 1, baseSequence: 7 });
        expect(batch.byteOffset).toBe(headroom);
        expect(batch.length).toBe(61 + appended);
        expect(new Uint8Array(batch.buffer, 0, headroom).every((b) => b === 0)).toBe(true);
        const header = validateBatch(batch);
        expect(header).toMatchObject({ recordCount: records.length, producerId: 5, producerEpoch: 1, baseSequence: 7, baseTimestamp: records[0].timestamp });
        expect(header.maxTimestamp).toBe(Math.max(...records.map((r) => r.timestamp!)));
        const decoded = decodeBatch(batch).records;
        decoded.forEach((d, i) => {
          const r = records[i];
          expect(d.offset).toBe(i);
          expect(d.timestamp).toBe(r.timestamp);
          expect(same(d.key, r.key ?? null)).toBe(true);
          expect(same(d.value, r.value)).toBe(true);
          expect(d.headers.map((h) => h.key)).toEqual((r.headers ?? []).map((h) => h.key));
        });
        // Renumbering in place keeps the batch valid, with the new fields.
        restampProducerFields(crc32c, batch, 6, 2, 1000);
        expect(validateBatch(batch)).toMatchObject({ producerId: 6, producerEpoch: 2, baseSequence: 1000, recordCount: records.length });
        expect(readBatchHeader(new DataView(batch.buffer, batch.byteOffset, batch.length), 0).crc).toBe(validateBatch(batch).crc);
      }),
      { numRuns: 200 },
    );
  });

  it('a RecordBatchBuilder refuses a timestamp that is not a safe integer, and an empty batch, appending nothing', () => {
    const builder = new RecordBatchBuilder(0, 0);
    expect(() => builder.append(null, null, [], 1.5)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(builder.recordCount).toBe(0);
    expect(() => builder.finish(crc32c)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('decode(encode(records)) gives the records back: null and empty keys and values, headers, timestamps over years', () => {
    fc.assert(
      fc.property(batchArb, ({ baseOffset, records }) => {
        expectRoundTrip(records, baseOffset);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips the varint widths at their edges: lengths and deltas of 63/64, 8191/8192 and negative deltas, one and two bytes and more', () => {
    const sizes = [0, 1, 62, 63, 64, 65, 127, 128, 8190, 8191, 8192, 8193, 20_000];
    const base = 1_700_000_000_000;
    const deltas = [0, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 1 << 20, -(1 << 20)];
    const records: RecordInput[] = [];
    for (let i = 0; i < 300; i++) {
      const size = sizes[i % sizes.length];
      records.push({
        key: i % 3 === 0 ? null : new Uint8Array(sizes[(i * 7) % sizes.length] % 9000).fill(i & 0xff),
        value: new Uint8Array(size).fill((i * 13) & 0xff),
        timestamp: base + deltas[i % deltas.length],
      });
    }
    expectRoundTrip(records, 0);
  });

  it('round-trips values up to 1 MiB', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100_000, max: 1 << 20 }), fc.integer({ min: 0, max: 255 }), (size, fill) => {
        const value = new Uint8Array(size);
        for (let i = 0; i < size; i += 4096) value[i] = (fill + i) & 0xff;
        expectRoundTrip([{ key: null, value, timestamp: 1_700_000_000_000 }, { value: new Uint8Array(0), timestamp: 1 }], 42);
      }),
      { numRuns: 4 },
    );
  });

  it('validateBatch detects any single byte changed in the CRC-covered part (offset >= 21)', () => {
    fc.assert(
      fc.property(
        batchArb,
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.integer({ min: 1, max: 255 }),
        ({ baseOffset, records }, where, mask) => {
          const bytes = encodeBatch(records, { baseOffset });
          const pos = ATTRIBUTES_OFFSET + Math.floor(where * (bytes.length - ATTRIBUTES_OFFSET));
          bytes[pos] ^= mask;
          if (!throws(() => validateBatch(bytes))) throw new Error(`byte ${pos} ^ ${mask} went unnoticed`);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('every byte of a small batch, flipped in turn, is detected', () => {
    const bytes = encodeBatch([{ key: new Uint8Array([1, 2]), value: new Uint8Array([3]), timestamp: 5, headers: [{ key: 'h', value: null }] }]);
    for (let pos = ATTRIBUTES_OFFSET; pos < bytes.length; pos++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const copy = bytes.slice();
        copy[pos] ^= mask;
        expect(() => validateBatch(copy), `byte ${pos} mask ${mask}`).toThrow();
      }
    }
  });

  it('rejects a batch cut at every split point', () => {
    fc.assert(
      fc.property(batchArb, ({ baseOffset, records }) => {
        const bytes = encodeBatch(records, { baseOffset });
        for (let k = 0; k < bytes.length; k++) {
          if (!throws(() => validateBatch(bytes.subarray(0, k)))) throw new Error(`validateBatch accepted ${k} of ${bytes.length} bytes`);
          if (!throws(() => decodeBatch(bytes.subarray(0, k)))) throw new Error(`decodeBatch accepted ${k} of ${bytes.length} bytes`);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('forEachBatch yields only the whole batches of a buffer cut anywhere', () => {
    const a = encodeBatch([{ value: new Uint8Array(10), timestamp: 1 }], { baseOffset: 0 });
    const b = encodeBatch([{ value: new Uint8Array(20), timestamp: 2 }, { value: null, timestamp: 3 }], { baseOffset: 1 });
    const all = new Uint8Array(a.length + b.length);
    all.set(a);
    all.set(b, a.length);
    for (let k = 0; k <= all.length; k++) {
      const seen: number[] = [];
      forEachBatch(all.subarray(0, k), (_batch, h) => seen.push(h.baseOffset));
      expect(seen).toEqual(k < a.length ? [] : k < all.length ? [0] : [0, 1]);
    }
  });
});

describe('LogAppendTime', () => {
  it('stamps a batch where it lies: the type bit, maxTimestamp and a CRC that verifies; readers take that time for every record', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ key: nullableBytes(8), value: nullableBytes(40), timestamp: fc.integer({ min: 0, max: 2 ** 42 }) }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 2 ** 47 }), fc.nat(64), (records, now, pad) => {
        const batch = encodeBatch(records.map((r) => ({ ...r, headers: [] })), { baseOffset: 7, compression: 'none' });
        // At an arbitrary place inside a larger buffer, as in the owner's log ring.
        const ring = new Uint8Array(pad + batch.length + 16);
        ring.set(batch, pad);
        const view = new DataView(ring.buffer);
        stampLogAppendTime(crc32c, ring, view, pad, batch.length, now);
        const stamped = ring.subarray(pad, pad + batch.length);
        const header = validateBatch(stamped, Number.MAX_SAFE_INTEGER, 'stored');
        expect(header.maxTimestamp).toBe(now);
        expect(logAppendTimeOf(header)).toBe(now);
        expect(header.attributes & ~0x08).toBe(validateBatch(batch).attributes);
        const decoded = decodeBatch(stamped);
        expect(decoded.records.map((r) => r.timestamp)).toEqual(records.map(() => now));
        expect(decoded.records.map((r) => r.value)).toEqual(records.map((r) => r.value));
        expect(ring.subarray(0, pad).every((b) => b === 0) && ring.subarray(pad + batch.length).every((b) => b === 0)).toBe(true);
      }),
    );
  });

  it('leaves a CreateTime batch to its records\' own timestamps', () => {
    const batch = encodeBatch([{ key: null, value: null, timestamp: 5, headers: [] }, { key: null, value: null, timestamp: 9, headers: [] }]);
    expect(logAppendTimeOf(validateBatch(batch))).toBeNull();
    expect(decodeBatch(batch).records.map((r) => r.timestamp)).toEqual([5, 9]);
  });
});
