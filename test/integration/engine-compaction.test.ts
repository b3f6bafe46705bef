import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, loadSluice, memoryLogger, openTestEngine, tempDir } from '../helpers/dist.js';
import { seededRandom } from '../helpers/random.js';

type Sluice = Awaited<ReturnType<typeof loadSluice>>;
type Engine = Awaited<ReturnType<Sluice['Engine']['open']>>;
let S: Sluice;

beforeAll(async () => {
  S = await loadSluice();
});

const cleanups = cleanupsAfterEach();

async function openEngine(dataDir?: string): Promise<{ engine: Engine; dataDir: string }> {
  return openTestEngine(cleanups, { dataDir, prefix: 'compaction' });
}

interface Rec {
  offset: number;
  key: string | null;
  value: string | null;
}

const gunzip = (_c: string, blob: Uint8Array) => new Uint8Array(gunzipSync(blob));

/** The whole partition from offset 0, as a consumer reads it: batch by batch, moving past each batch's last offset. */
async function readAll(engine: Engine, topic: string, partition = 0): Promise<Rec[]> {
  const out: Rec[] = [];
  let offset = 0;
  for (;;) {
    const res = await engine.fetch(topic, partition, offset, { maxBytes: 64 * 1024 });
    if (res.records.length === 0) break;
    let next = offset;
    S.forEachBatch(res.records, (batch, h) => {
      for (const r of S.decodeBatch(batch, gunzip).records) {
        if (r.offset >= offset) out.push({ offset: r.offset, key: r.key && Buffer.from(r.key).toString(), value: r.value && Buffer.from(r.value).toString() });
      }
      next = h.baseOffset + h.lastOffsetDelta + 1;
    });
    expect(next).toBeGreaterThan(offset);
    offset = next;
    if (offset >= res.highWatermark) break;
  }
  for (let i = 1; i < out.length; i++) expect(out[i].offset).toBeGreaterThan(out[i - 1].offset);
  return out;
}

function batchOf(records: { key: string | null; value: string | null }[]): Uint8Array {
  return S.encodeBatch(records.map((r) => ({ key: r.key === null ? null : S.utf8(r.key), value: r.value === null ? null : S.utf8(r.value) })));
}

describe('compacted topics', () => {
  it('under concurrent appends and repeated passes, keeps every key\'s last value at the offset its produce returned, and survives a restart', async () => {
    const { engine, dataDir } = await openEngine();
    await engine.createTopic('kv', { partitions: 1, cleanupPolicy: 'compact', segmentBytes: 16 * 1024 });
    const random = seededRandom(7);
    const KEYS = 200;
    const RECORDS = 3000;
    const PER_BATCH = 10;
    const IN_FLIGHT = 8;
    const byOffset = new Map<number, { key: string; value: string | null }>();
    const lastByKey = new Map<string, { offset: number; value: string | null }>();
    let produced = 0;
    let producing = true;

    async function producer(): Promise<void> {
      while (produced < RECORDS) {
        const records: { key: string; value: string | null }[] = [];
        for (let i = 0; i < PER_BATCH; i++, produced++) {
          const key = `key-${Math.floor(random() * KEYS)}`;
          // One record in fifty is a tombstone (kept: deleteRetentionMs is a day).
          records.push({ key, value: random() < 0.02 ? null : `${key}=${produced}-${'p'.repeat(20)}` });
        }
        const base = await engine.produce('kv', 0, batchOf(records));
        records.forEach((r, i) => {
          byOffset.set(base + i, r);
          const last = lastByKey.get(r.key);
          if (!last || last.offset < base + i) lastByKey.set(r.key, { offset: base + i, value: r.value });
        });
      }
    }
    let passes = 0;
    let removed = 0;
    async function compactor(): Promise<void> {
      while (producing) {
        const r = await engine.compact('kv', 0);
        passes++;
        removed += r.recordsRemoved;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    let reads = 0;
    async function reader(): Promise<void> {
      while (producing) {
        // A read racing a swap sees whole batches with the offsets they were given.
        for (const r of await readAll(engine, 'kv')) {
          const p = byOffset.get(r.offset);
          if (p) expect(r).toEqual({ offset: r.offset, key: p.key, value: p.value });
        }
        reads++;
        // Fetches served from the log ring resolve without a macrotask: let the engine breathe.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    const work = Promise.all(Array.from({ length: IN_FLIGHT }, producer));
    const background = Promise.all([compactor(), reader()]);
    await work;
    producing = false;
    await background;
    // Passes swapped segments while batches were being appended and read.
    expect(passes).toBeGreaterThan(1);
    expect(reads).toBeGreaterThan(0);
    expect(removed).toBeGreaterThan(0);
    await engine.compact('kv');

    const check = async (e: Engine) => {
      const all = await readAll(e, 'kv');
      expect(all.length).toBeLessThan(RECORDS);
      for (const r of all) expect(r).toEqual({ offset: r.offset, ...byOffset.get(r.offset)! });
      const latestRead = new Map<string, Rec>();
      for (const r of all) latestRead.set(r.key!, r);
      expect(latestRead.size).toBe(lastByKey.size);
      for (const [key, last] of lastByKey) expect(latestRead.get(key)).toEqual({ offset: last.offset, key, value: last.value });
      return all;
    };
    const before = await check(engine);
    const d = engine.describeTopic('kv').partitions[0];
    // About 14 segments rolled; the closed ones merged as they shrank (200 live keys of about
    // 60 bytes, in thinned batches, fill one or two 16 KiB segments beside the active one).
    expect(d.segmentCount).toBeGreaterThanOrEqual(2);
    expect(d.segmentCount).toBeLessThanOrEqual(4);
    expect(d.highWatermark).toBe(RECORDS);
    const verified = await S.verifyDataDir({ dataDir, threads: 1 });
    expect(verified.ok).toBe(true);

    await engine.close();
    const reopened = await S.Engine.open({ dataDir, workers: 2, logger: memoryLogger() });
    cleanups.push(() => reopened.close());
    expect(await check(reopened)).toEqual(before);
    // A pass after the restart maps everything again and finds nothing new to drop.
    expect((await reopened.compact('kv')).recordsRemoved).toBe(0);
    expect(await readAll(reopened, 'kv')).toEqual(before);
  });

  it('refuses a batch with a record without key (INVALID_RECORD), plain or gzip, and stores nothing of it', async () => {
    const { engine } = await openEngine();
    await engine.createTopic('c', { cleanupPolicy: 'compact' });
    await engine.createTopic('d', {});
    const records = [{ key: 'a', value: '1' }, { key: null, value: '2' }];
    await expect(engine.produce('c', 0, batchOf(records))).rejects.toMatchObject({ code: 'INVALID_RECORD' });
    const inputs = records.map((r) => ({ key: r.key === null ? null : S.utf8(r.key), value: S.utf8(r.value) }));
    const plain = S.encodeBatch(inputs);
    const gz = S.encodeBatch(inputs, { compression: 'gzip', compressedRecords: gzipSync(plain.subarray(61)) });
    await expect(engine.produce('c', 0, gz)).rejects.toMatchObject({ code: 'INVALID_RECORD' });
    expect(engine.describeTopic('c').partitions[0].logEndOffset).toBe(0);
    expect(await engine.produce('c', 0, batchOf([{ key: 'a', value: '1' }]))).toBe(0);
    // A 'delete' topic takes records without key.
    expect(await engine.produce('d', 0, batchOf(records))).toBe(0);
  });

  it('refuses a gzip batch that inflates past INFLATED_BATCH_BYTES_MAX on a compacted topic, without inflating it all', async () => {
    const { engine } = await openEngine();
    await engine.createTopic('bomb', { cleanupPolicy: 'compact' });
    // 80 MiB of zeros deflate to about 80 KB: a small batch that would take the owner a while and 80 MiB.
    const blob = gzipSync(new Uint8Array(80 * 1024 * 1024), { level: 1 });
    expect(blob.length).toBeLessThan(1024 * 1024);
    const bomb = S.encodeBatch([{ key: S.utf8('k'), value: S.utf8('v') }], { compression: 'gzip', compressedRecords: blob });
    await expect(engine.produce('bomb', 0, bomb)).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE', message: expect.stringMatching(/inflates to more than/) });
    expect(engine.describeTopic('bomb').partitions[0].logEndOffset).toBe(0);
    expect(await engine.produce('bomb', 0, batchOf([{ key: 'a', value: '1' }]))).toBe(0);
  });

  it('describes cleanupPolicy and deleteRetentionMs, checks them, and compacts only compacted topics', async () => {
    const { engine } = await openEngine();
    const plain = await engine.createTopic('plain');
    expect(plain.config).toMatchObject({ cleanupPolicy: 'delete', deleteRetentionMs: 86_400_000 });
    const both = await engine.createTopic('both', { cleanupPolicy: 'delete,compact' as never, deleteRetentionMs: 0 });
    expect(both.config).toMatchObject({ cleanupPolicy: 'compact,delete', deleteRetentionMs: 0 });
    expect(engine.describeTopic('both').config.cleanupPolicy).toBe('compact,delete');
    await expect(engine.createTopic('bad', { cleanupPolicy: 'shred' as never })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.createTopic('bad', { deleteRetentionMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.createTopic('bad', { deleteRetentionMs: 1.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.compact('plain')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(engine.compact('both', 3)).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    expect(await engine.compact('both')).toEqual({ segmentsExamined: 0, segmentsRewritten: 0, segmentsMerged: 0, bytesBefore: 0, bytesAfter: 0, recordsRemoved: 0 });
  });

  it('loads a topics.json written before cleanupPolicy existed as delete topics', async () => {
    const dir = tempDir('compaction-old');
    cleanups.push(() => dir.remove());
    writeFileSync(
      join(dir.path, 'topics.json'),
      JSON.stringify({ version: 1, topics: { legacy: { partitions: 2, config: { retentionMs: 1000, retentionBytes: -1, segmentBytes: 16384, segmentMs: 60000 }, createdAt: 1 } } }),
    );
    const { engine } = await openEngine(dir.path);
    expect(engine.describeTopic('legacy').config).toEqual({
      partitions: 2, retentionMs: 1000, retentionBytes: -1, segmentBytes: 16384, segmentMs: 60000, cleanupPolicy: 'delete', deleteRetentionMs: 86_400_000, timestampType: 'CreateTime',
    });
  });

  it('housekeeping compacts a partition whose closed segments changed, without being asked', async () => {
    const { engine } = await openEngine();
    await engine.createTopic('auto', { cleanupPolicy: 'compact', segmentBytes: 16 * 1024 });
    for (let i = 0; i < 120; i++) {
      await engine.produce('auto', 0, batchOf(Array.from({ length: 10 }, (_, k) => ({ key: `k${k}`, value: `${i}-${'v'.repeat(30)}` }))), { acks: 1 });
    }
    const before = engine.describeTopic('auto').partitions[0];
    expect(before.segmentCount).toBeGreaterThan(2);
    await engine.runHousekeeping();
    const deadline = Date.now() + 10_000;
    while (engine.describeTopic('auto').partitions[0].sizeBytes >= before.sizeBytes && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(engine.describeTopic('auto').partitions[0].sizeBytes).toBeLessThan(before.sizeBytes);
    const all = await readAll(engine, 'auto');
    for (let k = 0; k < 10; k++) expect(all.filter((r) => r.key === `k${k}`).at(-1)!.value).toBe(`119-${'v'.repeat(30)}`);
  });
});

describe('createPartitions and onTopicsChanged', () => {
  it('adds partitions that take data at once and survive a restart; tells listeners of every change', async () => {
    const { engine, dataDir } = await openEngine();
    const events: unknown[] = [];
    const stop = engine.onTopicsChanged((e) => events.push(e));
    engine.onTopicsChanged(() => {
      throw new Error('a broken listener does not stop the others');
    });
    await engine.createTopic('t', { partitions: 2, cleanupPolicy: 'compact' });
    expect(events).toEqual([{ topic: 't', kind: 'created', partitions: 2 }]);
    await engine.produce('t', 1, batchOf([{ key: 'a', value: 'one' }]));

    const d = await engine.createPartitions('t', 5);
    expect(d.partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3, 4]);
    expect(d.config).toMatchObject({ partitions: 5, cleanupPolicy: 'compact' });
    expect(events.at(-1)).toEqual({ topic: 't', kind: 'partitions', partitions: 5 });
    for (let p = 0; p < 5; p++) expect(engine.ownerIndexOf('t', p)).toBe(d.partitions[p].owner);
    expect(await engine.produce('t', 4, batchOf([{ key: 'b', value: 'four' }]))).toBe(0);
    // The new partitions have the topic's config: records need keys.
    await expect(engine.produce('t', 3, batchOf([{ key: null, value: 'x' }]))).rejects.toMatchObject({ code: 'INVALID_RECORD' });

    for (const bad of [5, 4, 0, 1025, 2.5]) {
      await expect(engine.createPartitions('t', bad)).rejects.toMatchObject({ code: 'INVALID_PARTITIONS' });
    }
    await expect(engine.createPartitions('nope', 3)).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    expect(events).toHaveLength(2);

    await engine.close();
    const reopened = await S.Engine.open({ dataDir, workers: 2, logger: memoryLogger() });
    cleanups.push(() => reopened.close());
    expect(reopened.describeTopic('t').partitions).toHaveLength(5);
    expect((await readAll(reopened, 't', 4)).map((r) => r.value)).toEqual(['four']);
    expect((await readAll(reopened, 't', 1)).map((r) => r.value)).toEqual(['one']);

    const seen: unknown[] = [];
    const unsubscribe = reopened.onTopicsChanged((e) => seen.push(e));
    await reopened.deleteTopic('t');
    expect(seen).toEqual([{ topic: 't', kind: 'deleted', partitions: 5 }]);
    unsubscribe();
    await reopened.createTopic('u');
    expect(seen).toHaveLength(1);
    stop();
  });
});
