/**
 * The client against a gateway over real WebSockets on 127.0.0.1. The gateway here is the
 * in-test fake (client-fake-gateway.ts): src/ws-gateway/server.ts had no startGateway yet.
 */
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, partitionForKey, type ConsumerRecord, type Sluice } from '../../src/client/index.js';
import { CREDIT_IDLE_GRANT_MS } from '../../src/client/credit.js';
import { startFakeGateway, type FakeGateway } from './client-fake-gateway.js';

const text = new TextEncoder();
const str = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

let gateway: FakeGateway;
let clients: Sluice[] = [];

async function client(): Promise<Sluice> {
  const c = await connect({ url: gateway.url, clientId: 'test', WebSocket: WebSocket as never, reconnectBackoff: { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0 } });
  clients.push(c);
  return c;
}

async function take(iter: AsyncIterator<ConsumerRecord>, n: number): Promise<ConsumerRecord[]> {
  const out: ConsumerRecord[] = [];
  while (out.length < n) {
    const r = await iter.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

beforeEach(async () => {
  gateway = await startFakeGateway();
  clients = [];
});

afterEach(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await gateway.close();
});

describe('client against a gateway', () => {
  it('refuses producer options it cannot honour, and a reset target it does not know, with INVALID_ARGUMENT', async () => {
    const c = await client();
    for (const options of [
      { acks: 2 },
      { compression: 'zstd' },
      { batchBytes: 0 },
      { lingerMs: -1 },
      { lingerMs: Number.NaN },
      { retries: -1 },
      { retries: 1.5 },
      { bufferBytesMax: 0 },
      { idempotent: true, acks: 0 },
    ]) {
      expect(() => c.producer(options as never), JSON.stringify(options)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(() => c.producer({ retries: 0, lingerMs: 0, bufferBytesMax: 1 })).not.toThrow();
    expect(() => c.producer({ acks: 0 })).not.toThrow(); // idempotence off by itself, as Kafka's
    await c.createTopic('stamped', { partitions: 1 });
    for (const timestamp of [-1, -5, Number.NaN]) {
      await expect(c.producer().send({ topic: 'stamped', value: 'v', timestamp }), String(timestamp)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    for (const to of ['bogus', null, {}, 3]) {
      await expect(c.resetOffsets('g', to as never), JSON.stringify(to)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });

  it('creates, lists, describes and deletes topics', async () => {
    const c = await client();
    const created = await c.createTopic('t1', { partitions: 3 });
    expect(created.partitions).toHaveLength(3);
    expect(await c.listTopics()).toEqual(['t1']);
    expect((await c.metadata()).topics).toEqual([{ partitions: 3, name: 't1' }]);
    expect((await c.describeTopic('t1')).topic).toBe('t1');
    await c.deleteTopic('t1');
    await expect(c.describeTopic('t1')).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
  });

  it('produces keyed records with headers and consumes them back in order per partition', async () => {
    const c = await client();
    await c.createTopic('orders', { partitions: 4 });
    const producer = c.producer({ lingerMs: 2 });
    const n = 400;
    const sends = [];
    for (let i = 0; i < n; i++) {
      sends.push(producer.send({ topic: 'orders', key: `k${i % 17}`, value: `v${i}`, headers: { i: String(i) }, timestamp: 1_700_000_000_000 + i }));
    }
    const meta = await Promise.all(sends);
    for (let i = 0; i < n; i++) expect(meta[i].partition).toBe(partitionForKey(text.encode(`k${i % 17}`), 4));
    const consumer = c.consumer({ from: 'earliest' });
    await consumer.subscribe('orders');
    const iter = consumer[Symbol.asyncIterator]();
    const got = await take(iter, n);
    expect(got).toHaveLength(n);
    const lastByPartition = new Map<number, number>();
    for (const r of got) {
      const i = Number(str(r.headers[0].value));
      expect(str(r.key)).toBe(`k${i % 17}`);
      expect(str(r.value)).toBe(`v${i}`);
      expect(r.timestamp).toBe(1_700_000_000_000 + i);
      expect(r.partition).toBe(meta[i].partition);
      expect(r.offset).toBe(meta[i].offset);
      expect(r.offset).toBeGreaterThan(lastByPartition.get(r.partition) ?? -1);
      lastByPartition.set(r.partition, r.offset);
    }
    // per key, the values come back in send order
    const byKey = new Map<string, number[]>();
    for (const r of got) byKey.set(str(r.key)!, [...(byKey.get(str(r.key)!) ?? []), Number(str(r.headers[0].value))]);
    for (const list of byKey.values()) expect(list).toEqual([...list].sort((a, b) => a - b));
  });

  it('round-trips gzip batches on one partition', async () => {
    const c = await client();
    await c.createTopic('zipped', { partitions: 1 });
    const producer = c.producer({ compression: 'gzip', lingerMs: 5 });
    const value = 'x'.repeat(1000);
    await Promise.all(Array.from({ length: 50 }, (_, i) => producer.send({ topic: 'zipped', value: `${i}:${value}` })));
    const stored = gateway.topics.get('zipped')![0].batches;
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.reduce((s, b) => s + b.bytes.length, 0)).toBeLessThan(50 * 1000 / 5); // compressed
    const consumer = c.consumer({ from: 'earliest' });
    await consumer.subscribe('zipped');
    const got = await take(consumer[Symbol.asyncIterator](), 50);
    expect(got.map((r) => str(r.value))).toEqual(Array.from({ length: 50 }, (_, i) => `${i}:${value}`));
  });

  it('hands out records in order when gzip DATA frames (decoded asynchronously) and plain ones (at once) follow each other', async () => {
    const c = await client();
    await c.createTopic('mixed', { partitions: 1 });
    const zipping = c.producer({ compression: 'gzip', lingerMs: 0 });
    const plain = c.producer({ lingerMs: 0 });
    const values: string[] = [];
    for (let i = 0; i < 40; i++) {
      // Runs of one to three batches of each kind, so that a plain frame often lands right behind a gzip one.
      const producer = Math.floor(i / (1 + (i % 3))) % 2 === 0 ? zipping : plain;
      const batch = Array.from({ length: 1 + (i % 4) }, (_, j) => `${i}.${j}:${'z'.repeat(300)}`);
      values.push(...batch);
      await Promise.all(batch.map((value) => producer.send({ topic: 'mixed', value })));
    }
    const stored = gateway.topics.get('mixed')![0].batches;
    expect(stored.length).toBeGreaterThanOrEqual(40);
    // One DATA frame per batch, sent back to back: a plain frame arrives while the gzip one before it is still being inflated.
    gateway.dataFramePerBatch = true;
    const consumer = c.consumer({ from: 'earliest' });
    await consumer.subscribe('mixed');
    const got = await take(consumer[Symbol.asyncIterator](), values.length);
    expect(got.map((r) => str(r.value))).toEqual(values);
    expect(got.map((r) => r.offset)).toEqual(values.map((_, i) => i));
  });

  it('runs eachBatch and returns credit so a small window streams everything', async () => {
    const c = await client();
    await c.createTopic('small', { partitions: 1 });
    const producer = c.producer({ lingerMs: 0, batchBytes: 200 });
    await Promise.all(Array.from({ length: 200 }, (_, i) => producer.send({ topic: 'small', value: `value-${i}` })));
    const consumer = c.consumer({ from: 'earliest', windowBytes: 600 });
    await consumer.subscribe('small');
    const seen: number[] = [];
    const running = consumer.run({
      eachBatch: async (batch) => {
        for (const r of batch.records) seen.push(r.offset);
        if (seen.length >= 200) void consumer.close();
      },
    });
    await running;
    expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  it('does not answer each small DATA frame with a CREDIT: an idle consumer grants back after a quiet spell', async () => {
    // The system clock, except that the consumer's idle grants (CREDIT_IDLE_GRANT_MS) wait until the test lets them run.
    const held: (() => void)[] = [];
    const clock = {
      now: () => Date.now(),
      setTimeout: (fn: () => void, ms: number) => (ms === CREDIT_IDLE_GRANT_MS ? (held.push(fn), { held: true }) : setTimeout(fn, ms)),
      clearTimeout: (h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>),
    };
    const c = await connect({ url: gateway.url, clientId: 'test', WebSocket: WebSocket as never, clock });
    clients.push(c);
    await c.createTopic('trickle', { partitions: 1 });
    const producer = c.producer({ lingerMs: 0 });
    const windowBytes = 64 * 1024;
    const consumer = c.consumer({ from: 'earliest', windowBytes });
    await consumer.subscribe('trickle');
    const seen: number[] = [];
    let wake: (() => void) | null = null;
    const running = consumer.run({
      eachBatch: (batch) => {
        for (const r of batch.records) seen.push(r.offset);
        wake?.();
      },
    });
    // 20 batches of one record, each finished before the next is produced: the consumer is idle after each.
    for (let i = 0; i < 20; i++) {
      const handled = new Promise<void>((r) => (wake = r));
      await producer.send({ topic: 'trickle', value: `r${i}` });
      await handled;
      await new Promise((r) => setImmediate(r));
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(gateway.credits).toEqual([]); // none per frame: the server still had most of the window
    expect(held).toHaveLength(1); // one idle grant scheduled, not one per frame
    // Frames came after it was set (the trickle): it grants nothing and waits for a quiet spell.
    held.splice(0).forEach((fn) => fn());
    await new Promise((r) => setTimeout(r, 50));
    expect(gateway.credits).toEqual([]);
    expect(held).toHaveLength(1);
    held.splice(0).forEach((fn) => fn()); // quiet since: it grants
    const deadline = Date.now() + 2_000;
    while (gateway.subscriptionCredits()[0] !== windowBytes && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(gateway.credits).toHaveLength(1);
    expect(gateway.subscriptionCredits()).toEqual([windowBytes]); // back at the whole window
    // Paused before the idle grant runs: it grants nothing; resume schedules it again.
    const handled = new Promise<void>((r) => (wake = r));
    await producer.send({ topic: 'trickle', value: 'r20' });
    await handled;
    await new Promise((r) => setImmediate(r));
    expect(held).toHaveLength(1);
    consumer.pause([{ topic: 'trickle', partition: 0 }]);
    held.splice(0).forEach((fn) => fn());
    await new Promise((r) => setTimeout(r, 50));
    expect(gateway.credits).toHaveLength(1);
    consumer.resume([{ topic: 'trickle', partition: 0 }]);
    expect(held).toHaveLength(1);
    held.splice(0).forEach((fn) => fn());
    const deadline2 = Date.now() + 2_000;
    while (gateway.subscriptionCredits()[0] !== windowBytes && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 5));
    expect(gateway.credits).toHaveLength(2);
    expect(gateway.subscriptionCredits()).toEqual([windowBytes]);
    await consumer.close();
    await running;
  });

  it('starts from latest, from an offset and from a timestamp, and seeks', async () => {
    const c = await client();
    await c.createTopic('pos', { partitions: 1 });
    const producer = c.producer({ lingerMs: 0 });
    for (let i = 0; i < 10; i++) await producer.send({ topic: 'pos', value: `${i}`, timestamp: 1000 + i * 10 });
    const fromOffset = c.consumer({ from: { offset: 7 } });
    await fromOffset.subscribe('pos');
    expect((await take(fromOffset[Symbol.asyncIterator](), 3)).map((r) => r.offset)).toEqual([7, 8, 9]);
    const fromTime = c.consumer({ from: { timestamp: 1045 } });
    await fromTime.subscribe('pos');
    const it1 = fromTime[Symbol.asyncIterator]();
    expect((await take(it1, 1))[0].offset).toBe(5);
    fromTime.seek('pos', 0, 2);
    expect((await take(it1, 1))[0].offset).toBe(2);
    const latest = c.consumer({ from: 'latest' });
    await latest.subscribe('pos');
    await producer.send({ topic: 'pos', value: 'new' });
    expect(str((await take(latest[Symbol.asyncIterator](), 1))[0].value)).toBe('new');
    expect(await c.listOffsets('pos', 0, 'latest')).toBe(11);
  });

  it('stores a record once when the acknowledgement is lost and the producer resends', async () => {
    const c = await client();
    await c.createTopic('once', { partitions: 1 });
    const producer = c.producer({ lingerMs: 0 });
    await producer.send({ topic: 'once', value: 'first' });
    gateway.dropAfterNextAppend();
    const meta = await producer.send({ topic: 'once', value: 'second' });
    expect(meta.offset).toBe(1);
    await producer.send({ topic: 'once', value: 'third' });
    const p = gateway.topics.get('once')![0];
    expect(p.nextOffset).toBe(3);
    expect(gateway.produceRequests).toBe(4);
    expect(c.connection.connections).toBe(2);
  });

  it('honours THROTTLED and keeps order across retries of pipelined batches', async () => {
    const c = await client();
    await c.createTopic('throttled', { partitions: 1 });
    const producer = c.producer({ lingerMs: 0, batchBytes: 100 });
    await producer.send({ topic: 'throttled', value: 'warm-up' });
    gateway.throttleNext(2, 15);
    const started = Date.now();
    const metas = await Promise.all(Array.from({ length: 30 }, (_, i) => producer.send({ topic: 'throttled', value: `m${i}` })));
    expect(Date.now() - started).toBeGreaterThanOrEqual(14);
    expect(metas.map((m) => m.offset)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it('survives a broker restart: producers resend, consumers resume without loss or duplicates', async () => {
    const c = await client();
    await c.createTopic('restart', { partitions: 2 });
    const producer = c.producer({ lingerMs: 1 });
    const consumer = c.consumer({ from: 'earliest', windowBytes: 300 });
    await consumer.subscribe('restart');
    const iter = consumer[Symbol.asyncIterator]();
    const first = Array.from({ length: 50 }, (_, i) => producer.send({ topic: 'restart', key: `k${i % 5}`, value: `a${i}` }));
    await Promise.all(first);
    const before = await take(iter, 20);
    const restarting = gateway.restart(100);
    const during = Array.from({ length: 50 }, (_, i) => producer.send({ topic: 'restart', key: `k${i % 5}`, value: `b${i}` }));
    await restarting;
    await Promise.all(during);
    const after = await take(iter, 80);
    const all = [...before, ...after];
    const values = all.map((r) => str(r.value)).sort();
    const expected = [...Array.from({ length: 50 }, (_, i) => `a${i}`), ...Array.from({ length: 50 }, (_, i) => `b${i}`)].sort();
    expect(values).toEqual(expected);
    const stored = gateway.topics.get('restart')!.reduce((s, p) => s + p.nextOffset, 0);
    expect(stored).toBe(100);
    expect(c.connection.connections).toBeGreaterThanOrEqual(2);
  });
});
