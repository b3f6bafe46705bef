/**
 * The client (as built in dist/, the file browsers get) against the real gateway and
 * engine (dist/, worker threads). `npm test` builds first.
 */
import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, loadClient, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';
import { restartablePort } from '../helpers/net.js';

type Server = Awaited<ReturnType<typeof loadSluice>>;
type Client = typeof import('../../src/client/index.js');
let S: Server;
let C: Client;

beforeAll(async () => {
  S = await loadSluice();
  C = await loadClient();
});

const cleanups = cleanupsAfterEach();

const str = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

async function start() {
  const dir = tempDir('client-gw');
  const engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger: memoryLogger() });
  // Below the ephemeral range: one test restarts the gateway on the same port (helpers/net.ts).
  const state = { gateway: await S.startGateway({ engine, host: '127.0.0.1', port: await restartablePort() }) };
  cleanups.push(async () => {
    await state.gateway.close();
    await engine.close();
    dir.remove();
  });
  const client = await C.connect({ url: `ws://127.0.0.1:${state.gateway.port}/`, clientId: 'it', WebSocket: WebSocket as never, reconnectBackoff: { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0 } });
  cleanups.push(() => client.close());
  return { engine, state, client };
}

async function take<T>(iter: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const r = await iter.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe('client through the real gateway', () => {
  it('produces keyed records with headers (plain and gzip) and consumes them in order per partition', async () => {
    const { client } = await start();
    await client.createTopic('events', { partitions: 3 });
    const plain = client.producer({ lingerMs: 2 });
    const zipped = client.producer({ lingerMs: 2, compression: 'gzip' });
    const n = 300;
    const metas = await Promise.all(
      Array.from({ length: n }, (_, i) => (i % 2 ? zipped : plain).send({ topic: 'events', key: `key-${i % 11}`, value: `value-${i}`, headers: { i: String(i) }, timestamp: 1_700_000_000_000 + i })),
    );
    for (let i = 0; i < n; i++) expect(metas[i].partition).toBe(C.partitionForKey(new TextEncoder().encode(`key-${i % 11}`), 3));
    const consumer = client.consumer({ from: 'earliest', windowBytes: 4096 });
    await consumer.subscribe('events');
    const got = await take(consumer[Symbol.asyncIterator](), n);
    expect(got).toHaveLength(n);
    const seen = new Set<number>();
    const last = new Map<number, number>();
    for (const r of got) {
      const i = Number(str(r.headers[0].value));
      seen.add(i);
      expect([str(r.key), str(r.value), r.timestamp, r.partition, r.offset]).toEqual([`key-${i % 11}`, `value-${i}`, 1_700_000_000_000 + i, metas[i].partition, metas[i].offset]);
      expect(r.offset).toBeGreaterThan(last.get(r.partition) ?? -1);
      last.set(r.partition, r.offset);
    }
    expect(seen.size).toBe(n);
    await consumer.close();
  });

  it('a seek inside run({ eachRecord }) stops the batch in hand there; the seek sets what a commit takes', async () => {
    const { client } = await start();
    await client.createTopic('sought', { partitions: 1 });
    // One batch of 30 records (sendMany seals them together).
    await client.producer({ lingerMs: 50 }).sendMany(Array.from({ length: 30 }, (_, i) => ({ topic: 'sought', value: `v${i}` })));
    const consumer = client.consumer({ from: 'earliest' });
    await consumer.assign([{ topic: 'sought', partition: 0 }]);
    const got: number[] = [];
    let seeks = 0;
    const running = consumer.run({
      eachRecord: (r) => {
        got.push(r.offset);
        if (r.offset === 5 && seeks++ === 0) {
          consumer.seek('sought', 0, 20);
          expect(consumer.processedOffsets()).toEqual([{ topic: 'sought', partition: 0, offset: 20 }]);
        }
      },
    });
    for (const until = Date.now() + 10_000; got.length < 16 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200)); // nothing more may come
    expect(got).toEqual([0, 1, 2, 3, 4, 5, ...Array.from({ length: 10 }, (_, i) => 20 + i)]);
    expect(consumer.processedOffsets()).toEqual([{ topic: 'sought', partition: 0, offset: 30 }]);
    await consumer.close();
    await running;
  });

  it('a consumer has one reader at a time: a second run() or for-await loop is refused, and the first gets every record', async () => {
    const { client } = await start();
    await client.createTopic('one-reader', { partitions: 1 });
    const consumer = client.consumer({ from: 'earliest' });
    await consumer.assign([{ topic: 'one-reader', partition: 0 }]);
    const got: string[] = [];
    const running = consumer.run({ eachRecord: (r) => void got.push(str(r.value)!) });
    await expect(consumer.run({ eachRecord: () => undefined })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(consumer[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await client.producer().sendMany(Array.from({ length: 100 }, (_, i) => ({ topic: 'one-reader', value: `r${i}` })));
    for (const until = Date.now() + 10_000; got.length < 100 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `r${i}`));
    await consumer.close();
    await running; // ends on close
    // Once the first reader ended, another may read.
    const again = client.consumer({ from: 'earliest' });
    await again.assign([{ topic: 'one-reader', partition: 0 }]);
    expect((await take(again[Symbol.asyncIterator](), 1)).map((r) => str(r.value))).toEqual(['r0']);
    await again.close();
  });

  it('sees partitions another client added: a send to one of them asks the broker, and a subscribe counts them', async () => {
    const { client, state } = await start();
    await client.createTopic('grown', { partitions: 2 });
    const other = await C.connect({ url: `ws://127.0.0.1:${state.gateway.port}/`, clientId: 'other', WebSocket: WebSocket as never });
    cleanups.push(() => other.close());
    const producer = other.producer({ lingerMs: 0 });
    expect(await producer.send({ topic: 'grown', value: 'a', partition: 1 })).toMatchObject({ partition: 1 });
    await client.createPartitions('grown', 4); // the other client's count is now stale
    expect(await producer.send({ topic: 'grown', value: 'b', partition: 3 })).toMatchObject({ partition: 3, offset: 0 });
    await expect(producer.send({ topic: 'grown', value: 'c', partition: 4 })).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    await expect(producer.send({ topic: 'grown', value: 'd', partition: 1.5 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await client.createPartitions('grown', 5);
    const consumer = other.consumer({ from: 'earliest' });
    await consumer.subscribe('grown');
    expect(consumer.assignment().map((p) => p.partition).sort()).toEqual([0, 1, 2, 3, 4]);
    await consumer.close();
  });

  it('close({ timeoutMs }) ends while the broker is gone: what is still pending fails with CLIENT_CLOSED', async () => {
    const { client, state } = await start();
    await client.createTopic('orphan', { partitions: 1 });
    const producer = client.producer({ lingerMs: 0 });
    await producer.send({ topic: 'orphan', value: 'kept' });
    await state.gateway.close(); // the client retries its connection from now on
    const pending = producer.send({ topic: 'orphan', value: 'never' }).then(
      () => 'stored',
      (err: { code?: string }) => err.code,
    );
    const startedMs = Date.now();
    await client.close({ timeoutMs: 300 });
    expect(Date.now() - startedMs).toBeLessThan(5_000);
    expect(await pending).toBe('CLIENT_CLOSED');
    await expect(client.close({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('a record not acknowledged within deliveryTimeoutMs fails with DELIVERY_TIMEOUT, flush returns, and the producer goes on once the broker is back', async () => {
    const { engine, state, client } = await start();
    await client.createTopic('late', { partitions: 1 });
    const producer = client.producer({ lingerMs: 0, deliveryTimeoutMs: 800 });
    await producer.send({ topic: 'late', value: 'kept' });
    const port = state.gateway.port;
    await state.gateway.close();
    const startedMs = Date.now();
    const lost = producer.send({ topic: 'late', value: 'given-up' }).then(
      () => 'stored',
      (err: { code?: string }) => err.code,
    );
    await producer.flush();
    const waitedMs = Date.now() - startedMs;
    expect(await lost).toBe('DELIVERY_TIMEOUT');
    expect(waitedMs).toBeGreaterThanOrEqual(700);
    expect(waitedMs).toBeLessThan(5_000);
    state.gateway = await S.startGateway({ engine, host: '127.0.0.1', port });
    const after = await producer.send({ topic: 'late', value: 'after' });
    expect(after.offset).toBe(1);
    const consumer = client.consumer({ from: 'earliest' });
    await consumer.subscribe('late');
    const got = await take(consumer[Symbol.asyncIterator](), 2);
    expect(got.map((r) => str(r.value))).toEqual(['kept', 'after']);
    await consumer.close();
    await producer.close();
  });

  it("a LogAppendTime topic stamps each batch with the broker's clock: consumers see that time and the type, lookups by time use it, and the setting survives a restart", async () => {
    const { client, engine, state } = await start();
    await client.createTopic('appended', { partitions: 1, timestampType: 'LogAppendTime' });
    await client.createTopic('created', { partitions: 1, configs: { 'message.timestamp.type': 'CreateTime' } });
    await expect(client.createTopic('bad', { configs: { 'message.timestamp.type': 'LogApendTime' } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await client.describeConfigs('appended')).toMatchObject({ 'message.timestamp.type': 'LogAppendTime' });
    expect(await client.describeConfigs('created')).toMatchObject({ 'message.timestamp.type': 'CreateTime' });
    const producer = client.producer({ lingerMs: 0 });
    const before = Date.now();
    await producer.sendMany([{ topic: 'appended', value: 'a1', timestamp: 1000 }, { topic: 'appended', value: 'a2', timestamp: 2000 }]);
    await producer.send({ topic: 'created', value: 'c', timestamp: 1000 });
    const after = Date.now();
    const read = async (topic: string) => {
      const consumer = client.consumer({ from: 'earliest' });
      await consumer.subscribe(topic);
      const got = await take(consumer[Symbol.asyncIterator](), topic === 'appended' ? 2 : 1);
      await consumer.close();
      return got;
    };
    const appended = await read('appended');
    expect(appended.map((r) => r.timestampType)).toEqual(['LogAppendTime', 'LogAppendTime']);
    for (const r of appended) {
      expect(r.timestamp).toBeGreaterThanOrEqual(before);
      expect(r.timestamp).toBeLessThanOrEqual(after);
    }
    expect((await read('created')).map((r) => [r.timestampType, r.timestamp])).toEqual([['CreateTime', 1000]]);
    // By the broker's clock: the batch is at its append time (the producer's 1000 and 2000 do not count).
    expect(await client.listOffsets('appended', 0, { timestamp: 1000 })).toBe(0);
    expect(await client.listOffsets('appended', 0, { timestamp: before })).toBe(0);
    expect(await client.listOffsets('appended', 0, { timestamp: after + 60_000 })).toBe(-1); // none that late (Kafka's answer too)
    await state.gateway.close();
    await engine.close();
    const reopened = await S.Engine.open({ dataDir: engine.dataDir, workers: 2, logger: memoryLogger() });
    cleanups.push(() => reopened.close());
    expect(reopened.describeTopic('appended').config.timestampType).toBe('LogAppendTime');
    const base = await reopened.produce('appended', 0, S.encodeBatch([{ key: null, value: new TextEncoder().encode('a3'), timestamp: 3000, headers: [] }]));
    const fetched = await reopened.fetch('appended', 0, base);
    let stamped = -1;
    S.forEachBatch(fetched.records, (batch) => {
      for (const r of S.decodeBatch(batch).records) stamped = r.timestamp;
    });
    expect(stamped).toBeGreaterThanOrEqual(after);
  });

  it('a for-await loop left with break and started again goes on with the next record: none of the batch in hand is skipped', async () => {
    const { client } = await start();
    await client.createTopic('resume', { partitions: 2 });
    const producer = client.producer({ lingerMs: 5 });
    await producer.sendMany(Array.from({ length: 40 }, (_, i) => ({ topic: 'resume', key: `k${i}`, value: `v${i}` })));
    for (const options of [{ from: 'earliest' as const }, { groupId: 'resumers', topics: ['resume'], fromBeginning: true }]) {
      const consumer = client.consumer(options);
      if (!('groupId' in options)) await consumer.subscribe('resume');
      const seen: string[] = [];
      for (let i = 0; i < 40; i++) {
        // One record per loop, as a helper that reads "the next record" would.
        for await (const r of consumer) {
          seen.push(`${r.partition}:${r.offset}`);
          break;
        }
      }
      expect(new Set(seen).size).toBe(40);
      await consumer.close();
    }
  });

  it('sendMany answers once for many records, with the partition and offset of each in order, and rejects with the first error', async () => {
    const { client } = await start();
    await client.createTopic('many', { partitions: 2 });
    const producer = client.producer({ lingerMs: 1 });
    const records = Array.from({ length: 500 }, (_, i) => ({ topic: 'many', key: `k${i % 5}`, value: `v${i}` }));
    const metas = await producer.sendMany(records);
    expect(metas).toHaveLength(500);
    const offsets = new Set(metas.map((m) => `${m.partition}:${m.offset}`));
    expect(offsets.size).toBe(500);
    for (let i = 0; i < 500; i++) expect(metas[i].partition).toBe(C.partitionForKey(new TextEncoder().encode(`k${i % 5}`), 2));
    expect(await producer.sendMany([])).toEqual([]);
    await expect(producer.sendMany([{ topic: 'many', value: 'ok' }, { topic: 'many', value: 'x', partition: 9 }])).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    await producer.close();
  });

  it('resumes producing and consuming after the gateway restarts, without loss or duplicates', async () => {
    const { engine, state, client } = await start();
    await client.createTopic('resume', { partitions: 2 });
    const producer = client.producer({ lingerMs: 1 });
    const consumer = client.consumer({ from: 'earliest', windowBytes: 2048 });
    await consumer.subscribe('resume');
    const iter = consumer[Symbol.asyncIterator]();
    await Promise.all(Array.from({ length: 40 }, (_, i) => producer.send({ topic: 'resume', key: `k${i % 4}`, value: `a${i}` })));
    const before = await take(iter, 15);
    const port = state.gateway.port;
    await state.gateway.close();
    const during = Array.from({ length: 40 }, (_, i) => producer.send({ topic: 'resume', key: `k${i % 4}`, value: `b${i}` }));
    await new Promise((r) => setTimeout(r, 100));
    state.gateway = await S.startGateway({ engine, host: '127.0.0.1', port });
    await Promise.all(during);
    const after = await take(iter, 65);
    const values = [...before, ...after].map((r) => str(r.value)).sort();
    expect(values).toEqual([...Array.from({ length: 40 }, (_, i) => `a${i}`), ...Array.from({ length: 40 }, (_, i) => `b${i}`)].sort());
    const d = await client.describeTopic('resume');
    expect(d.partitions.reduce((s, p) => s + p.highWatermark, 0)).toBe(80);
    expect(client.connection.connections).toBeGreaterThanOrEqual(2);
    await consumer.close();
  });
});
