/**
 * The offset store over a real engine (dist/): commits are durable records of
 * __consumer_offsets, read back into memory when the engine opens again; newer commits win;
 * tombstones delete; records that do not decode are skipped.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, DIST, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

type Server = Awaited<ReturnType<typeof loadSluice>>;
type Store = typeof import('../../src/engine/offset-store.js');
type Batch = typeof import('../../src/persist/record-batch.js');
let S: Server;
let O: Store;
let B: Batch;

beforeAll(async () => {
  S = await loadSluice();
  O = (await import(new URL('engine/offset-store.js', DIST).href)) as Store;
  B = (await import(new URL('persist/record-batch.js', DIST).href)) as Batch;
});

const cleanups = cleanupsAfterEach();

describe('offset store', () => {
  it('keeps the latest commit per partition across reopenings, deletes on tombstones, skips junk', async () => {
    const dir = tempDir('offset-store');
    cleanups.push(() => dir.remove());
    let engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    let store = await O.OffsetStore.open(engine);
    // Created by the first commit, not by open.
    expect(engine.listTopics()).not.toContain(O.OFFSETS_TOPIC);
    await Promise.all([store.commit('g0', [{ topic: 'a', partition: 0, offset: 1, metadata: '' }]), store.commit('g9', [{ topic: 'a', partition: 0, offset: 2, metadata: '' }])]);
    expect(engine.describeTopic(O.OFFSETS_TOPIC).config).toMatchObject({ partitions: O.OFFSETS_TOPIC_PARTITIONS, cleanupPolicy: 'compact' });
    await store.commit('g1', [
      { topic: 'a', partition: 0, offset: 5, metadata: 'm' },
      { topic: 'a', partition: 1, offset: 7, metadata: '' },
    ]);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.commit('g1', [{ topic: 'a', partition: 0, offset: 10 + i, metadata: '' }])));
    await store.commit('g2', [{ topic: 'b', partition: 3, offset: 1, metadata: '' }]);
    await store.deleteOffsets('g2', [{ topic: 'b', partition: 3 }]);
    expect(store.get('g1').map((o) => [o.partition, o.offset])).toEqual([
      [0, 59],
      [1, 7],
    ]);
    expect(store.groupIds()).toEqual(['g0', 'g1', 'g9']);
    // Junk in the offsets topic (a record whose key does not decode) is skipped on load.
    await engine.produce(O.OFFSETS_TOPIC, O.OffsetStore.partitionOf('g1', O.OFFSETS_TOPIC_PARTITIONS), B.encodeBatch([{ key: new Uint8Array([0, 9, 1]), value: new Uint8Array([1]) }]));
    await engine.close();

    engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
    cleanups.push(() => engine.close());
    const logger = memoryLogger();
    store = await O.OffsetStore.open(engine, { logger });
    expect(store.get('g1').map((o) => [o.partition, o.offset, o.metadata])).toEqual([
      [0, 59, ''],
      [1, 7, ''],
    ]);
    expect(store.get('g2')).toEqual([]);
    expect(logger.lines.some((l) => l.level === 'warn')).toBe(true);
  });
});
