import { mkdirSync, readdirSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

type Sluice = Awaited<ReturnType<typeof loadSluice>>;
let S: Sluice;
beforeAll(async () => {
  S = await loadSluice();
});
const cleanups = cleanupsAfterEach();

function batch(producerId: number, producerEpoch: number, baseSequence: number, n: number, tag: string, padBytes = 0): Uint8Array {
  const records = Array.from({ length: n }, (_, i) => ({ value: S.utf8(`${tag}-${baseSequence + i}`), key: padBytes > 0 ? new Uint8Array(padBytes) : null }));
  return S.encodeBatch(records, { producerId, producerEpoch, baseSequence });
}

async function values(engine: any, topic: string): Promise<string[]> {
  const out: string[] = [];
  let offset = 0;
  for (;;) {
    const res = await engine.fetch(topic, 0, offset);
    if (res.records.length === 0) return out;
    S.forEachBatch(res.records, (b: Uint8Array) => {
      for (const r of S.decodeBatch(b).records) if (r.offset >= offset) out.push(Buffer.from(r.value!).toString());
    });
    offset = out.length;
  }
}

describe('idempotent produce', () => {
  it('stores a batch re-sent after a lost acknowledgement once, answering with its original offset', async () => {
    const dir = tempDir('idem');
    cleanups.push(() => dir.remove());
    const engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.unshift(() => engine.close());
    await engine.createTopic('t', { partitions: 1 });
    const { producerId, producerEpoch } = await engine.initProducerId();
    expect(await engine.produce('t', 0, batch(producerId, producerEpoch, 0, 3, 'a'))).toBe(0);
    expect(await engine.produce('t', 0, batch(producerId, producerEpoch, 3, 2, 'a'))).toBe(3);
    // The acknowledgement of the second batch was "lost": the producer sends it again.
    expect(await engine.produce('t', 0, batch(producerId, producerEpoch, 3, 2, 'a'), { acks: 1 })).toBe(3);
    await expect(engine.produce('t', 0, batch(producerId, producerEpoch, 9, 1, 'a'))).rejects.toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE' });
    await expect(engine.produce('t', 0, batch(producerId, producerEpoch, 5, 1, 'a'))).resolves.toBe(5);
    expect(await values(engine, 't')).toEqual(['a-0', 'a-1', 'a-2', 'a-3', 'a-4', 'a-5']);
  });

  it('keeps every batch once with many sends in flight and re-sends mixed in', async () => {
    const dir = tempDir('idem-many');
    cleanups.push(() => dir.remove());
    const engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger: memoryLogger() });
    cleanups.unshift(() => engine.close());
    await engine.createTopic('m', { partitions: 1 });
    const { producerId } = await engine.initProducerId();
    const sends: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) {
      sends.push(engine.produce('m', 0, batch(producerId, 0, i * 2, 2, 'm')));
      // Every tenth batch is also re-sent right behind itself, while earlier ones are in flight.
      if (i % 10 === 0) sends.push(engine.produce('m', 0, batch(producerId, 0, i * 2, 2, 'm')));
    }
    const offsets = await Promise.all(sends);
    expect(new Set(offsets).size).toBe(100);
    const stored = await values(engine, 'm');
    expect(stored).toHaveLength(200);
    expect(stored).toEqual(Array.from({ length: 200 }, (_, i) => `m-${i}`));
  });

  it('answers the batches a failed flush did write as stored, fails only the rest, and still recognises their re-sends', async () => {
    const dir = tempDir('idem-flushfail');
    cleanups.push(() => dir.remove());
    const engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.unshift(() => engine.close());
    await engine.createTopic('t', { partitions: 1, segmentBytes: 16 * 1024 });
    const { producerId, producerEpoch } = await engine.initProducerId();
    const x = batch(producerId, producerEpoch, 0, 2, 'x');
    const y = S.encodeBatch([{ value: S.utf8('y'.repeat(20_000)) }]);
    // The roll y needs (at offset 2) cannot create its segment: a directory holds that name.
    const blocker = join(dir.path, 't-0', '00000000000000000002.log');
    mkdirSync(blocker);
    // Sent together so that one flush writes x, skips the duplicate's void entry and fails on y.
    const answers = await Promise.allSettled([
      engine.produce('t', 0, x, { acks: 1 }),
      engine.produce('t', 0, x, { acks: 1 }),
      engine.produce('t', 0, y, { acks: 1 }),
    ]);
    expect(engine.describeTopic('t').partitions[0].highWatermark).toBe(2); // x is in the log
    expect(answers.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as { code: string }).code))).toEqual([0, 0, 'STORAGE_ERROR']);
    rmdirSync(blocker);
    // A re-send of x (as after any lost answer) is recognised, not stored a second time.
    expect(await engine.produce('t', 0, x, { acks: 1 })).toBe(0);
    expect(await engine.produce('t', 0, batch(producerId, producerEpoch, 2, 1, 'x'), { acks: 'all' })).toBe(2);
    expect(await values(engine, 't')).toEqual(['x-0', 'x-1', 'x-2']);
  });

  it('recognises a re-sent batch after a broker restart, and never reuses a producer id', async () => {
    const dir = tempDir('idem-restart');
    cleanups.push(() => dir.remove());
    const e1 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    await e1.createTopic('r', { partitions: 1 });
    const first = await e1.initProducerId();
    await e1.produce('r', 0, batch(first.producerId, 0, 0, 4, 'r'));
    await e1.close();
    const e2 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.unshift(() => e2.close());
    expect(await e2.produce('r', 0, batch(first.producerId, 0, 0, 4, 'r'))).toBe(0);
    expect(await e2.produce('r', 0, batch(first.producerId, 0, 4, 1, 'r'))).toBe(4);
    expect(await values(e2, 'r')).toHaveLength(5);
    const second = await e2.initProducerId();
    expect(second.producerId).not.toBe(first.producerId);
    expect(second.producerId).toBeGreaterThan(first.producerId);
  });

  it('recognises re-sent batches stored segments before the active one after a restart, clean or not', async () => {
    const dir = tempDir('idem-snapshots');
    cleanups.push(() => dir.remove());
    const e1 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    // Small segments: each of a's batches (about 9 KB) fills one, so they end up in closed segments.
    await e1.createTopic('s', { partitions: 1, segmentBytes: 16 * 1024 });
    const pad = 3000;
    const a = await e1.initProducerId();
    const b = await e1.initProducerId();
    const stored: number[] = [];
    for (let i = 0; i < 6; i++) stored.push(await e1.produce('s', 0, batch(a.producerId, 0, i * 3, 3, 'a', pad)));
    // Another producer's batches fill the segments after a's.
    for (let i = 0; i < 6; i++) await e1.produce('s', 0, batch(b.producerId, 0, i * 2, 2, 'b', pad));
    expect(e1.describeTopic('s').partitions[0].logEndOffset).toBe(30);
    await e1.close();
    const e2 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    // Every one of a's batches is answered with its original offset, none stored again.
    for (let i = 0; i < 6; i++) expect(await e2.produce('s', 0, batch(a.producerId, 0, i * 3, 3, 'a', pad))).toBe(stored[i]);
    expect(await e2.produce('s', 0, batch(a.producerId, 0, 18, 1, 'a'))).toBe(30);
    expect(await values(e2, 's')).toHaveLength(31);
    await e2.close();
    // Without the newest snapshot (as if a crash spoiled it), the one before it and a longer replay give the same answers.
    const partitionDir = join(dir.path, 's-0');
    const snapshots = readdirSync(partitionDir).filter((n) => n.endsWith('.snapshot')).sort();
    expect(snapshots.length).toBe(2);
    writeFileSync(join(partitionDir, snapshots[1]), 'garbage');
    const e3 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    for (let i = 0; i < 6; i++) expect(await e3.produce('s', 0, batch(a.producerId, 0, i * 3, 3, 'a', pad))).toBe(stored[i]);
    expect(await values(e3, 's')).toHaveLength(31);
    await e3.close();
    // Without any snapshot (a data dir from before them), the last two segments are replayed:
    // b's resends there are recognised, and older ones are not stored again either.
    for (const name of readdirSync(partitionDir).filter((n) => n.endsWith('.snapshot'))) unlinkSync(join(partitionDir, name));
    const logger = memoryLogger();
    const e4 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger });
    cleanups.unshift(() => e4.close());
    expect(await e4.produce('s', 0, batch(b.producerId, 0, 10, 2, 'b', pad))).toBe(28);
    expect(await e4.produce('s', 0, batch(b.producerId, 0, 6, 2, 'b', pad))).toBe(24);
    await expect(e4.produce('s', 0, batch(b.producerId, 0, 0, 2, 'b', pad))).rejects.toMatchObject({ code: 'DUPLICATE_SEQUENCE_NUMBER' });
    expect(await values(e4, 's')).toHaveLength(31);
    expect(logger.lines.some((l) => /no producer state snapshot/.test(l.msg ?? ''))).toBe(true);
  });

  it('answers a re-sent batch older than the remembered ones with DUPLICATE_SEQUENCE_NUMBER, not a retriable error', async () => {
    const dir = tempDir('idem-old');
    cleanups.push(() => dir.remove());
    const engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.unshift(() => engine.close());
    await engine.createTopic('o', { partitions: 1 });
    const { producerId } = await engine.initProducerId();
    for (let i = 0; i < 20; i++) await engine.produce('o', 0, batch(producerId, 0, i, 1, 'o'));
    // 16 batches are remembered (RECENT_BATCHES): the first four are past.
    expect(await engine.produce('o', 0, batch(producerId, 0, 4, 1, 'o'))).toBe(4);
    const err = await engine.produce('o', 0, batch(producerId, 0, 0, 1, 'o')).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'DUPLICATE_SEQUENCE_NUMBER', retriable: false });
    await expect(engine.produce('o', 0, batch(producerId, 0, 25, 1, 'o'))).rejects.toMatchObject({ code: 'OUT_OF_ORDER_SEQUENCE', retriable: true });
    expect(await values(engine, 'o')).toHaveLength(20);
  });

  it('without producer-ids.json, continues ids after the highest one the partitions remember', async () => {
    const dir = tempDir('idem-ids-lost');
    cleanups.push(() => dir.remove());
    const e1 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    await e1.createTopic('l', { partitions: 2 });
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push((await e1.initProducerId()).producerId);
    await e1.produce('l', 1, batch(ids[4], 0, 0, 3, 'old'));
    await e1.close();
    unlinkSync(join(dir.path, 'producer-ids.json'));
    const logger = memoryLogger();
    const e2 = await S.Engine.open({ dataDir: dir.path, workers: 1, logger });
    cleanups.unshift(() => e2.close());
    expect(logger.lines.some((l: { msg?: string }) => /producer-ids.json is missing/.test(l.msg ?? ''))).toBe(true);
    const fresh = await e2.initProducerId();
    expect(fresh.producerId).toBeGreaterThan(ids[4]);
    // The new producer's first batch is stored, not taken for the old producer's.
    expect(await e2.produce('l', 1, batch(fresh.producerId, 0, 0, 3, 'new'))).toBe(3);
    expect(await e2.produce('l', 1, batch(ids[4], 0, 0, 3, 'old'))).toBe(0);
  });

  it('fences a zombie producer with an older epoch', async () => {
    const dir = tempDir('idem-epoch');
    cleanups.push(() => dir.remove());
    const engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.unshift(() => engine.close());
    await engine.createTopic('z', { partitions: 1 });
    const { producerId } = await engine.initProducerId();
    await engine.produce('z', 0, batch(producerId, 1, 0, 1, 'z'));
    await expect(engine.produce('z', 0, batch(producerId, 0, 1, 1, 'z'))).rejects.toMatchObject({ code: 'INVALID_PRODUCER_EPOCH' });
    expect(await values(engine, 'z')).toEqual(['z-0']);
  });
});
