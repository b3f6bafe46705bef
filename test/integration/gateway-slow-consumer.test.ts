/**
 * A slow consumer slows only itself: while one subscriber stops reading its socket (and
 * another never tops up a tiny credit), a producer at full speed keeps its throughput, the
 * gateway's buffered bytes stay at the socket's soft limit, and memory stays bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, F, RawClient } from '../fixtures/gateway-client.js';
import { loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

const S = await loadSluice();
const Op = F.Op;
/** Batches per producer run, and records per batch: 1,500 x 16 KiB = 24 MiB a run. */
const BATCHES = 1500;
const VALUE_BYTES = 16 * 1024;
const PIPELINE = 32;
const SOFT_MAX_BYTES = 256 * 1024;

let dir: ReturnType<typeof tempDir>;
let engine: Awaited<ReturnType<typeof S.Engine.open>>;
let gateway: Awaited<ReturnType<typeof S.startGateway>>;

beforeAll(async () => {
  dir = tempDir('gateway-slow');
  engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger: memoryLogger() });
  gateway = await S.startGateway({ engine, port: 0, limits: { socketBufferedBytesSoftMax: SOFT_MAX_BYTES } });
  await engine.createTopic('fast', { partitions: 1 });
});

afterAll(async () => {
  await gateway?.close();
  await engine?.close();
  dir?.remove();
});

/** Produces BATCHES batches with PIPELINE in flight, retrying THROTTLED after its back-off; returns MB/s. */
async function produceRun(c: RawClient): Promise<number> {
  const batch = S.encodeBatch([{ value: new Uint8Array(VALUE_BYTES).fill(7) }]);
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < BATCHES) {
      next++;
      for (let attempt = 0; ; attempt++) {
        const r = await c.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition: 0, acks: 1, topic: 'fast', batch }));
        if (r.op === Op.PRODUCE_OK) break;
        const err = as(r, Op.ERROR);
        expect(err.code).toBe('THROTTLED');
        expect(attempt).toBeLessThan(1000);
        await new Promise((res) => setTimeout(res, err.backoffMs));
      }
    }
  };
  await Promise.all(Array.from({ length: PIPELINE }, lane));
  return (BATCHES * batch.length) / 1e6 / ((performance.now() - t0) / 1000);
}

describe('a slow consumer', () => {
  it('never slows the producer nor grows the gateway beyond the soft limit', async () => {
    const producer = await RawClient.connect(gateway.port);
    const baselineMBps = await produceRun(producer);

    // One subscriber with a huge credit that stops reading its socket.
    const stuck = await RawClient.connect(gateway.port);
    as(await stuck.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 1, topic: 'fast', partition: 0, offset: -2, creditBytes: 1 << 30 })), Op.SUBSCRIBE_OK);
    (stuck.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    // One with a tiny credit that it never tops up.
    const tiny = await RawClient.connect(gateway.port);
    as(await tiny.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 2, topic: 'fast', partition: 0, offset: -2, creditBytes: 100 })), Op.SUBSCRIBE_OK);

    const rssBefore = process.memoryUsage().rss;
    let rssMax = rssBefore;
    const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage().rss)), 20);
    const withSlowMBps = await produceRun(producer);
    clearInterval(sampler);

    // The producer is not held back (generous bound: this machine has 2 shared cores).
    expect(withSlowMBps).toBeGreaterThan(baselineMBps * 0.4);
    // The gateway keeps at most about the soft limit (plus the frame that crossed it) for the stuck socket.
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.port}/metrics`)).text();
    const buffered = Number(/^sluice_gateway_buffered_bytes (\d+)/m.exec(metrics)?.[1]);
    expect(buffered).toBeLessThanOrEqual(SOFT_MAX_BYTES + 2 * 1024 * 1024);
    // 48 MiB went through; memory grew by far less than the data (the producer's own frames included).
    expect(rssMax - rssBefore).toBeLessThan(150 * 1024 * 1024);
    // The tiny subscriber got exactly one oversized batch (rule 2) and nothing more.
    await tiny.waitFor(() => tiny.pushes.length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(tiny.pushes).toHaveLength(1);
    const data = as(tiny.pushes[0], Op.DATA);
    let batches = 0;
    S.forEachBatch(data.records, () => batches++);
    expect(batches).toBe(1);

    // A stuck socket does not stop others: the producer's own fetch still works.
    as(await producer.request((id) => F.encodeFetch({ correlationId: id, topic: 'fast', partition: 0, offset: 0, maxBytes: 1 << 20, minBytes: 0, maxWaitMs: 0 })), Op.FETCH_OK);
    // Resuming the stuck reader lets pushes continue.
    const before = stuck.pushes.length;
    (stuck.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await stuck.waitFor(() => stuck.pushes.length > before + 10, 10_000);
    console.log(`slow consumer: producer ${baselineMBps.toFixed(0)} MB/s alone, ${withSlowMBps.toFixed(0)} MB/s with a stuck and a starved consumer; gateway buffered ${buffered} B; rss +${((rssMax - rssBefore) / 1e6).toFixed(0)} MB`);
    producer.close();
    stuck.close();
    tiny.close();
  }, 30_000);
});
