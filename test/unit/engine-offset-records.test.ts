/**
 * The records of __consumer_offsets (src/engine/offset-records.ts): round trips for
 * arbitrary keys and values, and every truncation or version change refused with
 * CORRUPT_MESSAGE (the loader skips such records).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeOffsetKey, decodeOffsetValue, encodeOffsetKey, encodeOffsetValue } from '../../src/engine/offset-records.js';
import { GROUP_ID_BYTES_MAX, OFFSET_METADATA_BYTES_MAX } from '../../src/engine/group-limits.js';

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;
const groupId = fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }).filter((s) => utf8Bytes(s) <= GROUP_ID_BYTES_MAX);
const topic = fc.stringMatching(/^[a-zA-Z0-9._-]{1,40}$/);
const key = fc.record({ groupId, topic, partition: fc.integer({ min: 0, max: 2 ** 31 - 1 }) });
const value = fc.record({
  offset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  commitTimestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  metadata: fc.string({ maxLength: 100, unit: 'grapheme' }),
});

describe('offsets topic records', () => {
  it('round-trips keys and values', () => {
    fc.assert(
      fc.property(key, value, (k, v) => {
        expect(decodeOffsetKey(encodeOffsetKey(k))).toEqual(k);
        expect(decodeOffsetValue(encodeOffsetValue(v))).toEqual(v);
      }),
    );
  });

  it('refuses every truncation and a foreign version as CORRUPT_MESSAGE', () => {
    fc.assert(
      fc.property(key, value, (k, v) => {
        const kb = encodeOffsetKey(k);
        const vb = encodeOffsetValue(v);
        for (let n = 0; n < kb.length; n++) expect(() => decodeOffsetKey(kb.subarray(0, n))).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
        for (let n = 0; n < vb.length; n++) expect(() => decodeOffsetValue(vb.subarray(0, n))).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
        const kv = kb.slice();
        kv[1] = 9;
        expect(() => decodeOffsetKey(kv)).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
        const longer = new Uint8Array(vb.length + 1);
        longer.set(vb);
        expect(() => decodeOffsetValue(longer)).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
      }),
      { numRuns: 50 },
    );
  });

  it('refuses what cannot be stored', () => {
    expect(() => encodeOffsetKey({ groupId: '', topic: 't', partition: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => encodeOffsetKey({ groupId: 'x'.repeat(GROUP_ID_BYTES_MAX + 1), topic: 't', partition: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => encodeOffsetValue({ offset: 1, commitTimestamp: 0, metadata: 'x'.repeat(OFFSET_METADATA_BYTES_MAX + 1) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
