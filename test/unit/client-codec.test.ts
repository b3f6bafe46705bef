import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from '../../src/client/backoff.js';
import { decodePayload, finishProducerBatch, type BatchIdentity, type ClientCompression } from '../../src/client/codec.js';
import { CreditAccount } from '../../src/client/credit.js';
import { murmur2, partitionForKey, toPositive } from '../../src/client/murmur2.js';
import { crc32c } from '../../src/persist/crc32c.js';
import { crc32cJs, crc32cJsUpdate } from '../../src/persist/crc32c-js.js';
import {
  decodeBatch,
  forEachRecordSpan,
  nullKeyRecordIndex,
  readBatchHeader,
  rebuildBatch,
  recordCountProblem,
  RECORDS_OFFSET,
  validateBatch,
} from '../../src/persist/record-batch.js';
import { RecordBatchBuilder, type RecordInput } from '../../src/persist/record-batch-codec.js';

const utf8 = (s: string) => new TextEncoder().encode(s);

/** A producer batch as the producer builds one: each record appended to a RecordBatchBuilder, then finished. */
async function encodeProducerBatch(records: RecordInput[], options: BatchIdentity & { compression: ClientCompression; now: number; headroomBytes?: number }): Promise<Uint8Array> {
  const builder = new RecordBatchBuilder(options.headroomBytes ?? 0, 0);
  for (const r of records) builder.append(r.key ?? null, r.value, r.headers ?? [], r.timestamp ?? options.now);
  return finishProducerBatch(builder, options);
}

describe('murmur2 (Kafka default partitioner)', () => {
  // Kafka's own vectors (clients UtilsTest.testMurmur2) and kafkajs's Java-generated ones
  // (src/producer/partitioners/default/murmur2.spec.js).
  const vectors: Record<string, number> = {
    '21': -973932308,
    foobar: -790332482,
    'a-little-bit-long-string': -985981536,
    'a-little-bit-longer-string': -1486304829,
    lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8: -58897971,
    abc: 479470107,
    '0': 971027396,
    '1': -1993445489,
    '12': 126087238,
    '123': -267702483,
    '1234': -1614185708,
    '12345': -1188365604,
    '128': -326012175,
    '2187': -1508407203,
    '16384': -325739742,
    '78125': -1654490814,
    '279936': 1462227128,
    '823543': -2014198330,
    '2097152': 607668903,
    '4782969': -1182699775,
    '10000000': -1830336757,
    '19487171': -1603849305,
    '35831808': -857013643,
    '62748517': -1167431028,
    '105413504': -381294639,
    '170859375': -1658323481,
    '100:48069': 1009543857,
  };
  for (const [key, hash] of Object.entries(vectors)) {
    it(`hashes ${JSON.stringify(key)} as Kafka does`, () => {
      expect(murmur2(utf8(key))).toBe(hash);
    });
  }

  it('maps a key to toPositive(murmur2) % partitions, never negative', () => {
    expect(toPositive(-973932308)).toBe(-973932308 & 0x7fffffff);
    expect(partitionForKey(utf8('21'), 6)).toBe((-973932308 & 0x7fffffff) % 6);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 1000 }), (key, n) => {
        const p = partitionForKey(key, n);
        return p >= 0 && p < n && p === partitionForKey(key.slice(), n);
      }),
      { seed: 42 },
    );
  });
});

describe('crc32c-js', () => {
  it('matches fast-crc32c on random data and the RFC 3720 check value', () => {
    expect(crc32cJs(utf8('123456789'))).toBe(0xe3069283);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 300 }), (bytes, cut) => {
        const c = Math.min(cut, bytes.length);
        return crc32cJs(bytes) === crc32c(bytes) && crc32cJsUpdate(crc32cJs(bytes.subarray(0, c)), bytes.subarray(c)) === crc32c(bytes);
      }),
      { seed: 7 },
    );
  });
});

describe('client batch codec', () => {
  const records = [
    { key: utf8('k'), value: utf8('v1'), headers: [{ key: 'h', value: utf8('x') }], timestamp: 5000 },
    { key: null, value: null, headers: [], timestamp: 5003 },
  ];

  it('encodes an idempotent batch the broker validates, with producer id, epoch and sequence in the header', async () => {
    const bytes = await encodeProducerBatch(records, { producerId: 9, producerEpoch: 0, baseSequence: 42, compression: 'none', now: 1 });
    const header = validateBatch(bytes);
    expect(header).toMatchObject({ producerId: 9, producerEpoch: 0, baseSequence: 42, recordCount: 2, baseTimestamp: 5000, maxTimestamp: 5003 });
    expect(decodeBatch(bytes).records[0].headers[0].key).toBe('h');
  });

  it('gzips the records section, sets the attribute bits, and decodes it back', async () => {
    const big = Array.from({ length: 20 }, (_, i) => ({ key: null, value: utf8('y'.repeat(200)), headers: [], timestamp: 100 + i }));
    const bytes = await encodeProducerBatch(big, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'gzip', now: 1 });
    const header = readBatchHeader(new DataView(bytes.buffer), 0);
    expect(header.attributes & 7).toBe(1);
    expect(bytes.length).toBeLessThan(1000);
    validateBatch(bytes);
    const decoded = await decodePayload(bytes, { topic: 't', partition: 0, offsetMin: 5 });
    expect(decoded.records.map((r) => r.offset)).toEqual(Array.from({ length: 15 }, (_, i) => i + 5));
    expect(decoded.records[0].value!.length).toBe(200);
    expect(decoded.nextOffset).toBe(20);
  });

  it('decodes back-to-back batches and refuses a corrupt one', async () => {
    const a = await encodeProducerBatch(records, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'none', now: 1 });
    const b = await encodeProducerBatch(records, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'gzip', now: 1 });
    new DataView(b.buffer).setBigInt64(0, 2n, false);
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    const decoded = await decodePayload(both, { topic: 't', partition: 3, offsetMin: 0 });
    expect(decoded.records.map((r) => [r.partition, r.offset])).toEqual([[3, 0], [3, 1], [3, 2], [3, 3]]);
    expect(decoded.nextOffset).toBe(4);
    both[both.length - 1] ^= 1;
    await expect((async () => decodePayload(both, { topic: 't', partition: 3, offsetMin: 0 }))()).rejects.toMatchObject({ code: 'CORRUPT_MESSAGE' });
  });

  it('decodes a payload without gzip batches synchronously, and one with them as a promise, to the same records', async () => {
    const plain = await encodeProducerBatch(records, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'none', now: 1 });
    const zipped = await encodeProducerBatch(records, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'gzip', now: 1 });
    const sync = decodePayload(plain, { topic: 't', partition: 0, offsetMin: 0 });
    expect(sync).not.toBeInstanceOf(Promise);
    const later = decodePayload(zipped, { topic: 't', partition: 0, offsetMin: 0 });
    expect(later).toBeInstanceOf(Promise);
    expect(await later).toEqual(sync);
    // A corrupt batch before any gzip one throws at once; after one, the promise rejects.
    const corrupt = plain.slice();
    corrupt[corrupt.length - 1] ^= 1;
    expect(() => decodePayload(corrupt, { topic: 't', partition: 0, offsetMin: 0 })).toThrow(expect.objectContaining({ code: 'CORRUPT_MESSAGE' }));
    const both = new Uint8Array(zipped.length + corrupt.length);
    both.set(zipped);
    both.set(corrupt, zipped.length);
    new DataView(both.buffer).setBigInt64(zipped.length, 2n, false);
    await expect(decodePayload(both, { topic: 't', partition: 0, offsetMin: 0 })).rejects.toMatchObject({ code: 'CORRUPT_MESSAGE' });
  });

  it('decodes a batch that compaction thinned: each record at baseOffset + its offsetDelta, gaps skipped', async () => {
    const five = Array.from({ length: 5 }, (_, i) => ({ key: utf8(`k${i}`), value: utf8(`v${i}`), headers: [], timestamp: 10 + i }));
    const full = await encodeProducerBatch(five, { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'none', now: 1 });
    new DataView(full.buffer).setBigInt64(0, 100n, false);
    // Keep records 1 and 4 (offsets 101 and 104), as compaction would: their bytes, unchanged.
    const spans: [number, number][] = [];
    forEachRecordSpan(full.subarray(RECORDS_OFFSET), readBatchHeader(new DataView(full.buffer), 0), (span) => {
      if (span.offsetDelta === 1 || span.offsetDelta === 4) spans.push([span.start, span.end]);
    });
    const section = full.subarray(RECORDS_OFFSET);
    const kept = new Uint8Array(spans.reduce((n, [a, b]) => n + b - a, 0));
    let at = 0;
    for (const [a, b] of spans) {
      kept.set(section.subarray(a, b), at);
      at += b - a;
    }
    const thinned = rebuildBatch(full, kept, 2);
    expect(readBatchHeader(new DataView(thinned.buffer), 0)).toMatchObject({ baseOffset: 100, lastOffsetDelta: 4, recordCount: 2 });
    const decoded = await decodePayload(thinned, { topic: 't', partition: 0, offsetMin: 102 });
    expect(decoded.records.map((r) => [r.offset, new TextDecoder().decode(r.value!), r.timestamp])).toEqual([[104, 'v4', 14]]);
    expect(decoded.nextOffset).toBe(105);
    const all = await decodePayload(thinned, { topic: 't', partition: 0, offsetMin: 0 });
    expect(all.records.map((r) => r.offset)).toEqual([101, 104]);
    // A producer may not send such a batch: the owner's check is strict.
    expect(() => validateBatch(thinned)).toThrow(/recordCount 2 does not match lastOffsetDelta 4/);
    expect(validateBatch(thinned, Number.MAX_SAFE_INTEGER, 'stored').recordCount).toBe(2);
  });

  it('record count rules: a produced batch fills its offset range, a stored one at most fills it', () => {
    expect(recordCountProblem(3, 2, 'produced')).toBeNull();
    expect(recordCountProblem(2, 2, 'produced')).not.toBeNull();
    expect(recordCountProblem(2, 2, 'stored')).toBeNull();
    expect(recordCountProblem(1, 0, 'stored')).toBeNull();
    expect(recordCountProblem(4, 2, 'stored')).not.toBeNull();
    expect(recordCountProblem(0, 2, 'stored')).not.toBeNull();
  });

  it('finds the first record without a key by walking varints', async () => {
    const recs = [{ key: utf8('a'), value: utf8('1') }, { key: utf8(''), value: null }, { key: null, value: utf8('3') }, { key: null, value: null }];
    const bytes = await encodeProducerBatch(recs.map((r) => ({ ...r, headers: [{ key: 'h', value: null }], timestamp: 1 })), { producerId: -1, producerEpoch: -1, baseSequence: -1, compression: 'none', now: 1 });
    expect(nullKeyRecordIndex(bytes.subarray(RECORDS_OFFSET), 4)).toBe(2);
    expect(nullKeyRecordIndex(bytes.subarray(RECORDS_OFFSET), 2)).toBe(-1);
  });
});

describe('credit accounting', () => {
  it('grants back once half the window is consumed, and the rest by the idle grant', () => {
    const credit = new CreditAccount(1000);
    expect(credit.refillBytes).toBe(500);
    credit.received(300);
    credit.received(300);
    credit.received(300);
    expect(credit.consumed(300)).toBe(0); // 300 returnable, 600 still held
    expect(credit.idle).toBe(false);
    expect(credit.idleGrant()).toBe(0); // the application still holds records
    expect(credit.consumed(300)).toBe(600); // reached the threshold
    expect(credit.consumed(300)).toBe(0); // nothing held any more, under the threshold: not at once...
    expect(credit.idle).toBe(true);
    expect(credit.idleGrant()).toBe(300); // ...but by the idle grant (CREDIT_IDLE_GRANT_MS later)
    expect(credit.returnableBytes).toBe(0);
    expect(credit.idle).toBe(false);
    credit.received(100);
    credit.consumed(100);
    credit.received(50); // more arrived before the idle grant: not idle, nothing granted
    expect(credit.idleGrant()).toBe(0);
  });

  it('counts DATA frames, which the idle grant waits to stop for CREDIT_IDLE_GRANT_MS', () => {
    const credit = new CreditAccount(1000);
    expect(credit.framesReceived).toBe(0);
    credit.received(10);
    credit.received(0);
    expect(credit.framesReceived).toBe(2);
    credit.reset(); // a resubscription: the count goes on (a timer set before compares it)
    expect(credit.framesReceived).toBe(2);
  });

  it('grants nothing while paused and the accumulated bytes on resume', () => {
    const credit = new CreditAccount(100);
    credit.received(80);
    credit.pause();
    expect(credit.consumed(80)).toBe(0);
    expect(credit.resume()).toBe(80);
    // Under the threshold: not at resume, but by the idle grant.
    credit.received(30);
    credit.pause();
    expect(credit.consumed(30)).toBe(0);
    expect(credit.idle).toBe(false); // paused
    expect(credit.idleGrant()).toBe(0);
    expect(credit.resume()).toBe(0);
    expect(credit.idle).toBe(true);
    expect(credit.idleGrant()).toBe(30);
  });

  it('never holds more than it was granted plus one oversized batch (model check)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 50 }), (sizes) => {
        const window = 256;
        const credit = new CreditAccount(window);
        let serverCredit = window;
        const held: number[] = [];
        let granted = 0;
        for (const size of sizes) {
          // the server sends when the batch fits, or alone when credit = window (rule 2)
          while (!(size <= serverCredit || serverCredit === window)) {
            const bytes = held.shift();
            // With nothing held, the consumer's idle timer fires and grants what it owes.
            const g = bytes === undefined ? credit.idleGrant() : credit.consumed(bytes);
            if (bytes === undefined && g === 0) return false; // would deadlock
            serverCredit += g;
            granted += g;
          }
          serverCredit -= size;
          credit.received(size);
          held.push(size);
          if (credit.heldBytes > window + 400) return false;
        }
        // Once the application has finished with everything and the idle grant ran, the server is back at the window.
        for (const bytes of held.splice(0)) serverCredit += credit.consumed(bytes);
        serverCredit += credit.idleGrant();
        return granted >= 0 && serverCredit === window;
      }),
      { seed: 3 },
    );
  });
});

describe('reconnect back-off', () => {
  it('doubles from the initial delay up to the cap, with bounded jitter', () => {
    const opts = { initialMs: 50, maxMs: 5000, multiplier: 2, jitter: 0.2 };
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelayMs(a, opts, () => 0.5))).toEqual([50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    expect(backoffDelayMs(0, opts, () => 0)).toBe(40);
    expect(backoffDelayMs(0, opts, () => 0.999999)).toBe(60);
    expect(backoffDelayMs(20, opts, () => 0.999999)).toBe(5000);
  });
});

describe('browser safety', () => {
  it('imports nothing Node-only from src/client/index.ts, transitively', () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/client/index.ts');
    const seen = new Set<string>();
    const queue = [root];
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const source = readFileSync(file, 'utf8');
      for (const m of source.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)) {
        const spec = m[1];
        expect(spec.startsWith('.'), `${file} imports ${spec}`).toBe(true);
        queue.push(join(dirname(file), spec.replace(/\.js$/, '.ts')));
      }
      expect(/\bimport\(\s*'/.test(source), `${file} has a static dynamic import`).toBe(false);
      expect(source.includes('node:'), `${file} mentions node:`).toBe(false);
    }
    expect(seen.size).toBeGreaterThan(8);
    expect([...seen].some((f) => f.endsWith('record-batch.ts'))).toBe(false);
  });
});
