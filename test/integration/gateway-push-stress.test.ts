/**
 * Subscription pushes under stress, the path a consumer of a stored backlog takes: a
 * backlog written, the broker reopened (so reads go to the owners and the disk, not the log
 * rings), then several consumers at once with different credit windows, each record checked
 * (partition, offset and value agree, every offset once, in order). Bounded in records and
 * time. Added after one unexplained DATA payload that did not frame (docs/benchmarks.md,
 * fourth session): the gateway now checks framing before a push, and would log it here.
 */
import { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach, loadClient, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

const S = await loadSluice();
const C = await loadClient();

const cleanups = cleanupsAfterEach();

const PARTITIONS = 4;
const RECORDS_PER_PARTITION = 40_000;
/** Credit windows of the consumers: smaller than a batch, about one, several. */
const WINDOWS = [3_000, 20_000, 64 * 1024, 300_000, 1024 * 1024];
const DEADLINE_MS = 40_000;

async function open(dataDir: string) {
  const logger = memoryLogger();
  const engine = await S.Engine.open({ dataDir, workers: 2, logger });
  const gateway = await S.startGateway({ engine, host: '127.0.0.1', port: 0, logger });
  const url = `ws://127.0.0.1:${gateway.port}/`;
  return { engine, gateway, url, logger, close: async () => { await gateway.close(); await engine.close(); } };
}

function valueOf(partition: number, i: number): Uint8Array {
  const v = new Uint8Array(60 + (i % 41));
  new DataView(v.buffer).setUint32(0, partition);
  new DataView(v.buffer).setUint32(4, i);
  v.fill(i & 0xff, 8);
  return v;
}

/**
 * Runs `consumer` until it has read `records` records of each of `partitions` partitions
 * (or the deadline), checking each record against valueOf: partition, offset and value
 * agree, every offset once, in order. Returns the next expected offset per partition.
 */
async function readChecked(consumer: InstanceType<typeof C.Consumer>, partitions: number, records: number, deadline: number, who: string): Promise<number[]> {
  const next = new Array<number>(partitions).fill(0);
  let total = 0;
  const timer = setTimeout(() => void consumer.close(), Math.max(0, deadline - Date.now()));
  await consumer.run({
    eachBatch: (batch) => {
      for (const rec of batch.records) {
        const v = rec.value!;
        const view = new DataView(v.buffer, v.byteOffset, v.byteLength);
        const i = next[batch.partition];
        if (rec.offset !== i || view.getUint32(0) !== batch.partition || view.getUint32(4) !== i || v.length !== 60 + (i % 41) || v[v.length - 1] !== (i & 0xff)) {
          throw new Error(`${who}: partition ${batch.partition} offset ${rec.offset}, expected ${i}`);
        }
        next[batch.partition] = i + 1;
      }
      total += batch.records.length;
      if (total === partitions * records) void consumer.close();
    },
  });
  clearTimeout(timer);
  return next;
}

describe('subscription pushes under stress', () => {
  it('several consumers with different credit windows read a reopened backlog: every record once, in order, intact', async () => {
    const dir = tempDir('push-stress');
    cleanups.push(() => dir.remove());
    {
      const b = await open(dir.path);
      const client = await C.connect({ url: b.url, clientId: 'fill', WebSocket: WebSocket as never });
      await client.createTopic('backlog', { partitions: PARTITIONS });
      // Batches of different sizes: two producers with different batchBytes and lingerMs.
      const producers = [client.producer({ acks: 1, batchBytes: 16 * 1024, lingerMs: 1 }), client.producer({ acks: 1, batchBytes: 256 * 1024, lingerMs: 5 })];
      const chunk = 4_000;
      for (let i = 0; i < RECORDS_PER_PARTITION; i += chunk) {
        const sends = [];
        for (let p = 0; p < PARTITIONS; p++) {
          const records = Array.from({ length: chunk }, (_, j) => ({ topic: 'backlog', partition: p, value: valueOf(p, i + j) }));
          sends.push(producers[(i / chunk + p) % 2].sendMany(records));
        }
        await Promise.all(sends);
      }
      for (const pr of producers) await pr.flush();
      await client.close();
      await b.close();
    }
    const b = await open(dir.path);
    cleanups.push(() => b.close());
    const deadline = Date.now() + DEADLINE_MS;
    const readers = WINDOWS.map(async (windowBytes, r) => {
      const client = await C.connect({ url: b.url, clientId: `reader-${r}`, WebSocket: WebSocket as never });
      try {
        const consumer = client.consumer({ from: 'earliest', windowBytes });
        await consumer.assign(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: 'backlog', partition })));
        return await readChecked(consumer, PARTITIONS, RECORDS_PER_PARTITION, deadline, `reader ${r} (window ${windowBytes})`);
      } finally {
        await client.close();
      }
    });
    const results = await Promise.all(readers);
    for (const next of results) expect(next).toEqual(new Array(PARTITIONS).fill(RECORDS_PER_PARTITION));
    expect(b.logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  }, 90_000);

  it('a fan-out of more subscriptions than the gateway has fetch buffers reads a live tail: every record once, in order, intact', async () => {
    const dir = tempDir('push-fanout');
    cleanups.push(() => dir.remove());
    const b = await open(dir.path);
    cleanups.push(() => b.close());
    const FANOUT_PARTITIONS = 2;
    const CONSUMERS = 14; // 28 subscriptions, against 16 lent buffers at most (fetch-buffers.ts)
    const RECORDS = 6_000; // per partition
    const admin = await C.connect({ url: b.url, clientId: 'admin', WebSocket: WebSocket as never });
    cleanups.push(() => admin.close());
    await admin.createTopic('fanout', { partitions: FANOUT_PARTITIONS });
    const deadline = Date.now() + DEADLINE_MS;
    const clients = await Promise.all(Array.from({ length: CONSUMERS }, (_, r) => C.connect({ url: b.url, clientId: `fan-${r}`, WebSocket: WebSocket as never })));
    for (const c of clients) cleanups.push(() => c.close());
    const consumers = clients.map((c) => c.consumer({ from: 'earliest', windowBytes: 64 * 1024 }));
    await Promise.all(consumers.map((c) => c.assign(Array.from({ length: FANOUT_PARTITIONS }, (_, partition) => ({ topic: 'fanout', partition })))));
    const readers = consumers.map((consumer, r) => readChecked(consumer, FANOUT_PARTITIONS, RECORDS, deadline, `fan-out reader ${r}`));
    // Produced while they read: small batches, so that each append wakes every subscription.
    const producer = admin.producer({ acks: 1, batchBytes: 8 * 1024, lingerMs: 1 });
    for (let i = 0; i < RECORDS; i += 500) {
      const sends = [];
      for (let p = 0; p < FANOUT_PARTITIONS; p++) {
        sends.push(producer.sendMany(Array.from({ length: 500 }, (_, j) => ({ topic: 'fanout', partition: p, value: valueOf(p, i + j) }))));
      }
      await Promise.all(sends);
    }
    await producer.flush();
    const results = await Promise.all(readers);
    for (const next of results) expect(next).toEqual(new Array(FANOUT_PARTITIONS).fill(RECORDS));
    expect(b.logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  }, 90_000);
});
