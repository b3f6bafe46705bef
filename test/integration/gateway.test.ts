/**
 * The gateway end to end on a real socket: every operation of docs/protocol.md through a
 * raw `ws` client, and the HTTP endpoints.
 */
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, F, RawClient } from '../fixtures/gateway-client.js';
import { loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

const S = await loadSluice();
const Op = F.Op;

/** The JSON admin API's error body. */
type ErrorBody = { error: { code: string; message: string; retriable: boolean } };
let dir: ReturnType<typeof tempDir>;
let engine: Awaited<ReturnType<typeof S.Engine.open>>;
let gateway: Awaited<ReturnType<typeof S.startGateway>>;
let base: string;

beforeAll(async () => {
  dir = tempDir('gateway');
  engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger: memoryLogger() });
  gateway = await S.startGateway({ engine, host: '127.0.0.1', port: 0, logger: memoryLogger() });
  base = `http://127.0.0.1:${gateway.port}`;
});

afterAll(async () => {
  await gateway?.close();
  await engine?.close();
  dir?.remove();
});

function batchOf(values: string[]): Uint8Array {
  return S.encodeBatch(values.map((v) => ({ value: S.utf8(v) })));
}

async function createTopic(c: RawClient, topic: string, partitions = 1): Promise<void> {
  as(await c.request((id) => F.encodeCreateTopic({ correlationId: id, topic, partitions, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 })), Op.CREATE_TOPIC_OK);
}

function produce(c: RawClient, topic: string, batch: Uint8Array, acks = -1, partition = 0) {
  return c.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition, acks, topic, batch }));
}

function fetch(c: RawClient, topic: string, offset: number, o: { minBytes?: number; maxWaitMs?: number; maxBytes?: number } = {}) {
  return c.request((id) =>
    F.encodeFetch({ correlationId: id, topic, partition: 0, offset, maxBytes: o.maxBytes ?? 1 << 20, minBytes: o.minBytes ?? 0, maxWaitMs: o.maxWaitMs ?? 0 }),
  );
}

/** The server's WebSocket frame headers, read off `c`'s socket beside ws (RFC 6455 5.2: server frames are unmasked). */
function frameHeaders(c: RawClient): { fin: boolean; opcode: number; length: number }[] {
  const frames: { fin: boolean; opcode: number; length: number }[] = [];
  let pending = Buffer.alloc(0);
  let skip = 0;
  (c.ws as unknown as { _socket: import('node:net').Socket })._socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, pending.length);
        pending = pending.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      if (pending.length < 2) return;
      let length = pending[1] & 0x7f;
      let header = 2;
      if (length === 126) [length, header] = pending.length < 4 ? [-1, 0] : [pending.readUInt16BE(2), 4];
      else if (length === 127) [length, header] = pending.length < 10 ? [-1, 0] : [Number(pending.readBigUInt64BE(2)), 10];
      if (length < 0) return;
      frames.push({ fin: (pending[0] & 0x80) !== 0, opcode: pending[0] & 0x0f, length });
      pending = pending.subarray(header);
      skip = length;
    }
  });
  return frames;
}

describe('the gateway over WebSocket', () => {
  it('answers HELLO with the negotiated version and the limits', async () => {
    const c = await RawClient.connect(gateway.port, { hello: false });
    const ok = as(await c.request((id) => F.encodeHello({ correlationId: id, versionMin: 1, versionMax: 7, clientId: 'me' })), Op.HELLO_OK);
    // A version-1 client still gets version 1, and its group requests are refused.
    const v1 = await RawClient.connect(gateway.port, { hello: false });
    expect(as(await v1.request((id) => F.encodeHello({ correlationId: id, versionMin: 1, versionMax: 1, clientId: 'old' })), Op.HELLO_OK).protocolVersion).toBe(1);
    const refused = as(await v1.request((id) => F.encodeClientFrame({ op: Op.LIST_GROUPS, correlationId: id })), Op.ERROR);
    expect(refused.code).toBe('UNSUPPORTED_VERSION');
    // So are the admin ops of version 2, and nothing happens: the topic keeps its partition.
    await createTopic(v1, 'v1-only');
    for (const frame of [
      { op: Op.CREATE_PARTITIONS, topic: 'v1-only', partitions: 3 },
      { op: Op.CREATE_TOPIC_WITH_CONFIGS, topic: 'v1-configs', partitions: 1, configs: [] },
      { op: Op.DESCRIBE_CONFIGS, topic: 'v1-only' },
    ]) {
      const err = as(await v1.request((id) => F.encodeClientFrame({ ...frame, correlationId: id } as never)), Op.ERROR);
      expect({ op: frame.op, code: err.code }).toEqual({ op: frame.op, code: 'UNSUPPORTED_VERSION' });
    }
    expect(as(await v1.request((id) => F.encodeDescribeTopic({ correlationId: id, topic: 'v1-only' })), Op.DESCRIBE_TOPIC_OK).partitions).toHaveLength(1);
    expect(as(await v1.request((id) => F.encodeClientFrame({ op: Op.LIST_TOPICS, correlationId: id })), Op.LIST_TOPICS_OK).topics).not.toContain('v1-configs');
    v1.close();
    expect(ok).toMatchObject({ protocolVersion: 2, inFlightMax: 64, subscriptionsMax: 256, frameBytesMax: 2 * 1024 * 1024, fetchBytesMax: 1024 * 1024, fetchWaitMsMax: 30_000 });
    expect(ok.serverVersion).toMatch(/^\d+\.\d+\.\d+/);
    c.close();
  });

  it('produces at each acks level and fetches the batches back byte for byte', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'acks');
    const batches = [batchOf(['a1', 'a2']), batchOf(['b']), batchOf(['c1', 'c2', 'c3'])];
    const all = as(await produce(c, 'acks', batches[0], -1), Op.PRODUCE_OK);
    expect(all).toMatchObject({ baseOffset: 0, logStartOffset: 0 });
    const one = as(await produce(c, 'acks', batches[1], 1), Op.PRODUCE_OK);
    expect(one.baseOffset).toBe(2);
    // acks=0: no answer; the next acked produce proves it was appended in order.
    c.send(F.encodeProduce({ correlationId: c.nextId(), producerId: -1, partition: 0, acks: 0, topic: 'acks', batch: batches[2] }));
    const after = as(await produce(c, 'acks', batchOf(['d']), -1), Op.PRODUCE_OK);
    expect(after.baseOffset).toBe(6);
    const got = as(await fetch(c, 'acks', 0), Op.FETCH_OK);
    expect(got.highWatermark).toBe(7);
    const stored: Uint8Array[] = [];
    S.forEachBatch(got.records, (b) => stored.push(b.slice()));
    expect(stored).toHaveLength(4);
    // Byte for byte apart from baseOffset (the first 8 bytes, outside the CRC), which the owner stamps.
    for (let i = 0; i < 3; i++) expect(Buffer.from(stored[i].subarray(8))).toEqual(Buffer.from(batches[i].subarray(8)));
    expect(S.decodeBatch(stored[2]).records.map((r) => Buffer.from(r.value!).toString())).toEqual(['c1', 'c2', 'c3']);
    c.close();
  });

  it('long-polls a fetch until a produce brings records, and answers after maxWaitMs otherwise', async () => {
    const c = await RawClient.connect(gateway.port);
    const p = await RawClient.connect(gateway.port);
    await createTopic(c, 'poll');
    const t0 = Date.now();
    const empty = as(await fetch(c, 'poll', 0, { minBytes: 1, maxWaitMs: 200 }), Op.FETCH_OK);
    expect(empty.records.length).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    const waiting = fetch(c, 'poll', 0, { minBytes: 1, maxWaitMs: 10_000 });
    // Responses come out of order: a metadata request sent after the waiting fetch is answered first.
    as(await c.request((id) => F.encodeMetadata({ correlationId: id })), Op.METADATA_OK);
    const t1 = Date.now();
    as(await produce(p, 'poll', batchOf(['x'])), Op.PRODUCE_OK);
    const got = as(await waiting, Op.FETCH_OK);
    expect(got.records.length).toBeGreaterThan(0);
    expect(Date.now() - t1).toBeLessThan(5_000);
    c.close();
    p.close();
  });

  it('pushes DATA to a subscription, never beyond its credit, and resumes after CREDIT', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'sub');
    const batch = batchOf(['0123456789']);
    const size = batch.length;
    for (let i = 0; i < 10; i++) as(await produce(c, 'sub', batchOf(['0123456789'])), Op.PRODUCE_OK);
    const ok = as(
      await c.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 7, topic: 'sub', partition: 0, offset: -2, creditBytes: size * 3 })),
      Op.SUBSCRIBE_OK,
    );
    expect(ok).toMatchObject({ offset: 0, highWatermark: 10, logStartOffset: 0, subscriptionId: 7 });
    const received = () => c.pushes.filter((f) => f.op === Op.DATA).reduce((n, f) => n + (f as { records: Uint8Array }).records.length, 0);
    await c.waitFor(() => received() >= size * 3);
    await new Promise((r) => setTimeout(r, 100));
    expect(received()).toBe(size * 3);
    c.send(F.encodeCredit({ correlationId: c.nextId(), subscriptionId: 7, creditBytes: size * 4 }));
    await c.waitFor(() => received() >= size * 7);
    // New records are pushed as they arrive while credit lasts.
    c.send(F.encodeCredit({ correlationId: c.nextId(), subscriptionId: 7, creditBytes: size * 100 }));
    await c.waitFor(() => received() >= size * 10);
    as(await produce(c, 'sub', batchOf(['late'])), Op.PRODUCE_OK);
    await c.waitFor(() => c.pushes.some((f) => f.op === Op.DATA && f.highWatermark === 11));
    const offsets: number[] = [];
    for (const f of c.pushes) if (f.op === Op.DATA) S.forEachBatch(f.records, (_b, h) => offsets.push(h.baseOffset));
    expect(offsets).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const unsub = as(await c.request((id) => F.encodeUnsubscribe({ correlationId: id, subscriptionId: 7 })), Op.UNSUBSCRIBE_OK);
    expect(unsub.subscriptionId).toBe(7);
    const pushesBefore = c.pushes.length;
    as(await produce(c, 'sub', batchOf(['after'])), Op.PRODUCE_OK);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.pushes.length).toBe(pushesBefore);
    c.close();
  });

  it('sends FETCH_OK and DATA with their records as one WebSocket message, not fragments', async () => {
    const c = await RawClient.connect(gateway.port);
    const frames = frameHeaders(c);
    await createTopic(c, 'whole');
    const big = batchOf(Array.from({ length: 2000 }, (_, i) => `record-${i}-${'x'.repeat(40)}`));
    as(await produce(c, 'whole', big), Op.PRODUCE_OK);
    as(await produce(c, 'whole', batchOf(['small'])), Op.PRODUCE_OK);
    frames.length = 0;
    const got = as(await fetch(c, 'whole', 0), Op.FETCH_OK);
    expect(got.records.length).toBeGreaterThan(big.length);
    as(await c.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 3, topic: 'whole', partition: 0, offset: -2, creditBytes: 1 << 20 })), Op.SUBSCRIBE_OK);
    await c.waitFor(() => c.pushes.some((f) => f.op === Op.DATA));
    const binary = frames.filter((f) => f.opcode === 2 || f.opcode === 0);
    // FETCH_OK, SUBSCRIBE_OK and DATA: each a single final binary frame, none a continuation.
    expect(binary.length).toBeGreaterThanOrEqual(3);
    expect(binary.every((f) => f.fin && f.opcode === 2)).toBe(true);
    expect(binary.some((f) => f.length >= big.length)).toBe(true);
    c.close();
  });

  it('sends a result that did not land in a lent buffer as two fragments, which the client reads as one message', async () => {
    const c = await RawClient.connect(gateway.port);
    const p = await RawClient.connect(gateway.port);
    await createTopic(c, 'many');
    const frames = frameHeaders(c);
    // Each waiting fetch holds a lent buffer: past the pool's 16, fetches get none and their results a buffer of their own.
    const waiting = Array.from({ length: 20 }, () => fetch(c, 'many', 0, { minBytes: 1, maxWaitMs: 10_000 }));
    await new Promise((r) => setTimeout(r, 100));
    const batch = batchOf(['one', 'two', 'three']);
    as(await produce(p, 'many', batch), Op.PRODUCE_OK);
    const answers = (await Promise.all(waiting)).map((f) => as(f, Op.FETCH_OK));
    for (const a of answers) expect(Buffer.from(a.records.subarray(8))).toEqual(Buffer.from(batch.subarray(8)));
    const binary = frames.filter((f) => f.opcode === 2 || f.opcode === 0);
    const fragmented = binary.filter((f) => f.opcode === 2 && !f.fin).length;
    expect(fragmented).toBeGreaterThanOrEqual(1);
    expect(binary.filter((f) => f.opcode === 0).length).toBe(fragmented); // each ends with one continuation
    c.close();
    p.close();
  });

  it('sends one batch larger than the whole window alone, only when the client holds nothing', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'big');
    const big = batchOf(['x'.repeat(5000)]);
    as(await produce(c, 'big', big), Op.PRODUCE_OK);
    as(await c.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 1, topic: 'big', partition: 0, offset: 0, creditBytes: 100 })), Op.SUBSCRIBE_OK);
    await c.waitFor(() => c.pushes.length === 1);
    const data = as(c.pushes[0], Op.DATA);
    expect(data.records.length).toBe(big.length);
    c.close();
  });

  it('lists offsets: earliest, latest and by time', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'offs');
    const before = Date.now();
    for (let i = 0; i < 3; i++) as(await produce(c, 'offs', batchOf([`r${i}`])), Op.PRODUCE_OK);
    const list = async (timestamp: number) => as(await c.request((id) => F.encodeListOffsets({ correlationId: id, topic: 'offs', partition: 0, timestamp })), Op.LIST_OFFSETS_OK).offset;
    expect(await list(-2)).toBe(0);
    expect(await list(-1)).toBe(3);
    expect(await list(before - 60_000)).toBe(0);
    expect(await list(Date.now() + 60_000)).toBe(-1);
    c.close();
  });

  it('serves the admin operations and INIT_PRODUCER, and checks idempotent producer ids', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'admin', 3);
    const dup = await c.request((id) => F.encodeCreateTopic({ correlationId: id, topic: 'admin', partitions: 1, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 }));
    expect(as(dup, Op.ERROR).code).toBe('TOPIC_ALREADY_EXISTS');
    const names = as(await c.request((id) => F.encodeListTopics({ correlationId: id })), Op.LIST_TOPICS_OK).topics;
    expect(names).toContain('admin');
    const d = as(await c.request((id) => F.encodeDescribeTopic({ correlationId: id, topic: 'admin' })), Op.DESCRIBE_TOPIC_OK);
    expect(d.partitions).toHaveLength(3);
    expect(d.retentionMs).toBe(engine.describeTopic("admin").config.retentionMs);
    const meta = as(await c.request((id) => F.encodeMetadata({ correlationId: id })), Op.METADATA_OK);
    expect(meta.owners).toBe(2);
    expect(meta.topics).toContainEqual({ name: 'admin', partitions: 3 });
    const init = as(await c.request((id) => F.encodeInitProducer({ correlationId: id })), Op.INIT_PRODUCER_OK);
    const idem = (producerId: number, baseSequence: number) =>
      S.encodeBatch([{ value: S.utf8('i') }], { producerId, producerEpoch: 0, baseSequence } as never);
    const okIdem = await c.request((id) => F.encodeProduce({ correlationId: id, producerId: init.producerId, partition: 1, acks: -1, topic: 'admin', batch: idem(init.producerId, 0) }));
    expect(as(okIdem, Op.PRODUCE_OK).baseOffset).toBe(0);
    const retry = await c.request((id) => F.encodeProduce({ correlationId: id, producerId: init.producerId, partition: 1, acks: -1, topic: 'admin', batch: idem(init.producerId, 0) }));
    expect(as(retry, Op.PRODUCE_OK).baseOffset).toBe(0);
    const never = init.producerId + 500_000;
    const unknown = await c.request((id) => F.encodeProduce({ correlationId: id, producerId: never, partition: 1, acks: -1, topic: 'admin', batch: idem(never, 0) }));
    expect(as(unknown, Op.ERROR).code).toBe('UNKNOWN_PRODUCER_ID');
    const mismatch = await c.request((id) => F.encodeProduce({ correlationId: id, producerId: init.producerId, partition: 1, acks: -1, topic: 'admin', batch: batchOf(['plain']) }));
    expect(as(mismatch, Op.ERROR).code).toBe('INVALID_REQUEST');
    expect(engine.describeTopic('admin').partitions[1].logEndOffset).toBe(1);
    as(await c.request((id) => F.encodeDeleteTopic({ correlationId: id, topic: 'admin' })), Op.DELETE_TOPIC_OK);
    const gone = await c.request((id) => F.encodeDescribeTopic({ correlationId: id, topic: 'admin' }));
    expect(as(gone, Op.ERROR).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    c.close();
  });

  it('ends waiting fetches and subscriptions of a deleted topic with UNKNOWN_TOPIC_OR_PARTITION', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'doomed');
    as(await c.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 3, topic: 'doomed', partition: 0, offset: -1, creditBytes: 1000 })), Op.SUBSCRIBE_OK);
    const waiting = fetch(c, 'doomed', 0, { minBytes: 1, maxWaitMs: 20_000 });
    const other = await RawClient.connect(gateway.port);
    as(await other.request((id) => F.encodeDeleteTopic({ correlationId: id, topic: 'doomed' })), Op.DELETE_TOPIC_OK);
    expect(as(await waiting, Op.ERROR).code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    await c.waitFor(() => c.pushes.some((f) => f.op === Op.SUBSCRIPTION_CLOSED));
    expect(as(c.pushes[0], Op.SUBSCRIPTION_CLOSED)).toMatchObject({ subscriptionId: 3, code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    c.close();
    other.close();
  });

  it('answers THROTTLED beyond the in-flight window instead of queueing', async () => {
    const dir2 = tempDir('gateway-window');
    const e2 = await S.Engine.open({ dataDir: dir2.path, workers: 1, logger: memoryLogger() });
    const g2 = await S.startGateway({ engine: e2, port: 0, limits: { inFlightMax: 2 } });
    try {
      const c = await RawClient.connect(g2.port);
      await createTopic(c, 'w');
      const polls = [fetch(c, 'w', 0, { minBytes: 1, maxWaitMs: 300 }), fetch(c, 'w', 0, { minBytes: 1, maxWaitMs: 300 })];
      const third = as(await produce(c, 'w', batchOf(['x'])), Op.ERROR);
      expect(third).toMatchObject({ code: 'THROTTLED', retriable: true, backoffMs: 10 });
      for (const p of polls) as(await p, Op.FETCH_OK);
      as(await produce(c, 'w', batchOf(['x'])), Op.PRODUCE_OK);
      expect(e2.describeTopic('w').partitions[0].logEndOffset).toBe(1);
      c.close();
    } finally {
      await g2.close();
      await e2.close();
      dir2.remove();
    }
  });
});

describe('the gateway over HTTP', () => {
  it('answers /healthz', async () => {
    const res = await globalThis.fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', owners: 2 });
  });

  it('answers HEAD as GET without a body (the connection stays usable), 405 with Allow for another method, OPTIONS with Allow', async () => {
    // One kept-alive socket for all: a body after a HEAD answer would be read as the next response.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (method: string, path: string) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = http.request(`${base}${path}`, { method, agent }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      for (const path of ['/healthz', '/metrics', '/topics', '/sluice-client.js', '/sluice/ws-gateway/frames.js']) {
        const get = await ask('GET', path);
        const head = await ask('HEAD', path);
        expect([head.status, head.headers['content-type'], head.body], path).toEqual([get.status, get.headers['content-type'], '']);
      }
      expect((await ask('HEAD', '/topics/nope')).status).toBe(404);
      expect((await ask('HEAD', '/nothing-here')).status).toBe(404);
      const put = await ask('PUT', '/topics');
      expect([put.status, put.headers.allow, (JSON.parse(put.body) as ErrorBody).error.code]).toEqual([405, 'GET, HEAD, POST', 'METHOD_NOT_ALLOWED']);
      const post = await ask('POST', '/healthz');
      expect([post.status, post.headers.allow]).toEqual([405, 'GET, HEAD']);
      const options = await ask('OPTIONS', '/topics/some-topic');
      expect([options.status, options.headers.allow, options.body]).toEqual([204, 'GET, HEAD, DELETE', '']);
      expect((await ask('GET', '/healthz')).status).toBe(200); // the same socket, still in step
    } finally {
      agent.destroy();
    }
  });

  it('answers a malformed percent escape in a topic path with 400 INVALID_REQUEST, and an unknown file with a JSON 404', async () => {
    for (const method of ['GET', 'DELETE']) {
      const res = await globalThis.fetch(`${base}/topics/%ZZ`, { method });
      expect(res.status, method).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe('INVALID_REQUEST');
    }
    const missing = await globalThis.fetch(`${base}/sluice/nope.js`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).error.code).toBe('NOT_FOUND');
  });

  it('refuses the WebSocket handshake of a page of another origin, unless the broker allows it', async () => {
    const { WebSocket } = await import('ws');
    const open = (url: string, origin?: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(url, origin === undefined ? {} : { origin });
        ws.once('open', () => {
          ws.close();
          resolve('open');
        });
        ws.once('unexpected-response', (_req, res) => {
          resolve(String(res.statusCode));
          ws.terminate();
        });
        ws.once('error', (err) => resolve(String(err)));
      });
    const url = `ws://127.0.0.1:${gateway.port}/`;
    expect(await open(url)).toBe('open'); // a program sends no Origin
    expect(await open(url, base)).toBe('open'); // a page the gateway served
    expect(await open(url, 'http://example.test')).toBe('403');
    expect(await open(url, 'null')).toBe('403');
    const open2 = await S.startGateway({ engine, host: '127.0.0.1', port: 0, allowedOrigins: ['http://example.test'] });
    try {
      const url2 = `ws://127.0.0.1:${open2.port}/`;
      expect(await open(url2, 'http://example.test')).toBe('open');
      expect(await open(url2, 'http://example.test:8080')).toBe('403');
    } finally {
      await open2.close();
    }
    await expect(S.startGateway({ engine, host: '127.0.0.1', port: 0, allowedOrigins: ['example.test'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('serves the topic admin API with typed errors and HTTP statuses', async () => {
    const json = { 'Content-Type': 'application/json' };
    const created = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'http-t', partitions: 2, retentionMs: 60_000 }) });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ name: 'http-t', config: { partitions: 2, retentionMs: 60_000 } });
    const again = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'http-t' }) });
    expect(again.status).toBe(409);
    expect(await again.json()).toEqual({ error: { code: 'TOPIC_ALREADY_EXISTS', message: expect.any(String), retriable: false } });
    const bad = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'no/slash' }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error.code).toBe('INVALID_TOPIC');
    const notJson = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: json, body: '{' });
    expect(notJson.status).toBe(400);
    // A page may POST text/plain or a form anywhere without asking first: only JSON is taken.
    const plain = await globalThis.fetch(`${base}/topics`, { method: 'POST', body: JSON.stringify({ name: 'plain-t' }) });
    expect(plain.status).toBe(415);
    expect(((await plain.json()) as ErrorBody).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    // A page of another origin may not change topics; the gateway's own origin may.
    const foreign = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: { ...json, Origin: 'http://example.test' }, body: JSON.stringify({ name: 'foreign-t' }) });
    expect(foreign.status).toBe(403);
    expect(((await foreign.json()) as ErrorBody).error.code).toBe('ORIGIN_NOT_ALLOWED');
    expect((await globalThis.fetch(`${base}/topics/http-t`, { method: 'DELETE', headers: { Origin: 'http://example.test' } })).status).toBe(403);
    const own = await globalThis.fetch(`${base}/topics`, { method: 'POST', headers: { ...json, Origin: base }, body: JSON.stringify({ name: 'own-t' }) });
    expect(own.status).toBe(201);
    const list = (await (await globalThis.fetch(`${base}/topics`)).json()) as { topics: string[] };
    expect(list.topics).toContain('http-t');
    const one = await globalThis.fetch(`${base}/topics/http-t`);
    expect(((await one.json()) as { partitions: unknown[] }).partitions).toHaveLength(2);
    const missing = await globalThis.fetch(`${base}/topics/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).error.code).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    // The WebSocket sees what HTTP created.
    const c = await RawClient.connect(gateway.port);
    as(await c.request((id) => F.encodeDescribeTopic({ correlationId: id, topic: 'http-t' })), Op.DESCRIBE_TOPIC_OK);
    c.close();
    const del = await globalThis.fetch(`${base}/topics/http-t`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await globalThis.fetch(`${base}/topics/http-t`, { method: 'DELETE' })).status).toBe(404);
    // Internal topics are the broker's, over HTTP as over WebSocket.
    const internal = await globalThis.fetch(`${base}/topics/__consumer_offsets`, { method: 'DELETE' });
    expect(internal.status).toBe(400);
    expect(((await internal.json()) as ErrorBody).error.code).toBe('INVALID_TOPIC');
  });

  it('exposes Prometheus metrics: traffic per topic, latency, connections, owners, log end offsets', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'metered');
    as(await produce(c, 'metered', batchOf(['m1', 'm2'])), Op.PRODUCE_OK);
    as(await fetch(c, 'metered', 0), Op.FETCH_OK);
    const res = await globalThis.fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^sluice_records_in_total\{topic="metered"\} 2$/m);
    expect(text).toMatch(/^sluice_bytes_in_total\{topic="metered"\} \d+$/m);
    expect(text).toMatch(/^sluice_records_out_total\{topic="metered"\} 2$/m);
    expect(text).toMatch(/^sluice_request_duration_seconds_bucket\{le="[^"]+",op="PRODUCE"\} \d+$/m);
    const produceCount = (t: string) => Number(/^sluice_request_duration_seconds_count\{op="PRODUCE"\} (\d+)$/m.exec(t)?.[1]);
    expect(produceCount(text)).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^sluice_request_duration_seconds_count\{op="FETCH"\} [1-9]\d*$/m);
    expect(text).toMatch(/^sluice_connections [1-9]\d*$/m);
    expect(text).toMatch(/^sluice_owner_restarts\{owner="0"\} 0$/m);
    expect(text).toMatch(/^sluice_owner_up\{owner="0"\} 1$/m);
    expect(text).toMatch(/^sluice_command_ring_fill_ratio\{owner="0"\} 0$/m);
    expect(text).toMatch(/^sluice_owner_requests_in_flight\{owner="0"\} 0$/m);
    expect(text).toMatch(/^sluice_log_ring_bytes\{owner="\d+"\} [1-9]\d*$/m); // the owner of 'metered': its topics' rings (at least 2 MiB each)
    expect(text).toMatch(/^sluice_log_end_offset\{topic="metered",partition="0"\} 2$/m);
    expect(text).toMatch(/^sluice_process_resident_memory_bytes \d+/m);
    // Counts go on adding up across scrapes (read at scrape time, never reset by one).
    as(await produce(c, 'metered', batchOf(['m3'])), Op.PRODUCE_OK);
    const again = await (await globalThis.fetch(`${base}/metrics`)).text();
    expect(again).toMatch(/^sluice_records_in_total\{topic="metered"\} 3$/m);
    expect(again).toMatch(/^sluice_records_out_total\{topic="metered"\} 2$/m);
    expect(produceCount(again)).toBe(produceCount(text) + 1); // the gateway is shared: other tests' requests count too
    // A deleted topic's series go; created again, it counts from zero.
    as(await c.request((id) => F.encodeDeleteTopic({ correlationId: id, topic: 'metered' })), Op.DELETE_TOPIC_OK);
    const gone = await (await globalThis.fetch(`${base}/metrics`)).text();
    expect(gone).not.toMatch(/topic="metered"/);
    await createTopic(c, 'metered');
    as(await produce(c, 'metered', batchOf(['n1'])), Op.PRODUCE_OK);
    expect(await (await globalThis.fetch(`${base}/metrics`)).text()).toMatch(/^sluice_records_in_total\{topic="metered"\} 1$/m);
    c.close();
  });

  it('counts an acks=0 batch the broker refuses as an error, not as records in', async () => {
    const c = await RawClient.connect(gateway.port);
    await createTopic(c, 'quiet');
    const scrape = async () => {
      const text = await (await globalThis.fetch(`${base}/metrics`)).text();
      const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
      return { recordsIn: value(/^sluice_records_in_total\{topic="quiet"\} (\d+)$/m), corrupt: value(/^sluice_request_errors_total\{op="PRODUCE",code="CORRUPT_MESSAGE"\} (\d+)$/m) };
    };
    const before = await scrape();
    const bad = batchOf(['x1', 'x2', 'x3']);
    bad[bad.length - 1] ^= 0xff; // the last value byte: the CRC no longer matches
    c.send(F.encodeProduce({ correlationId: 999, producerId: -1, partition: 0, acks: 0, topic: 'quiet', batch: bad }));
    c.send(F.encodeProduce({ correlationId: 998, producerId: -1, partition: 0, acks: 0, topic: 'quiet', batch: batchOf(['ok-0']) }));
    // Answered after the owner took the two before it (one owner per partition, in order).
    as(await produce(c, 'quiet', batchOf(['ok-1'])), Op.PRODUCE_OK);
    const after = await scrape();
    expect(after.recordsIn - before.recordsIn).toBe(2);
    expect(after.corrupt - before.corrupt).toBe(1);
    c.close();
  });

  it('serves dist/src .js files and their source maps read-only under /sluice/ and refuses anything else', async () => {
    const frames = await globalThis.fetch(`${base}/sluice/ws-gateway/frames.js`);
    expect(frames.status).toBe(200);
    expect(frames.headers.get('content-type')).toMatch(/javascript/);
    const text = await frames.text();
    expect(text).toMatch(/export function decodeClientFrame/);
    // The map the file names is served, with the TypeScript inside (browsers fetch nothing else).
    const mapName = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text)![1];
    const map = await globalThis.fetch(new URL(mapName, `${base}/sluice/ws-gateway/frames.js`));
    expect(map.status).toBe(200);
    expect(map.headers.get('content-type')).toMatch(/json/);
    const parsed = (await map.json()) as { sources: string[]; sourcesContent?: string[] };
    expect(parsed.sources).toHaveLength(1);
    expect(parsed.sourcesContent?.[0]).toMatch(/export function decodeClientFrame\(/);
    for (const path of ['/sluice/../package.json', '/sluice/ws-gateway/frames.d.ts', '/sluice/ws-gateway/frames.d.ts.map', '/sluice/%2e%2e/x.js', '/sluice//etc/passwd.js', '/sluice/nope.js']) {
      expect((await globalThis.fetch(`${base}${path}`)).status, path).toBe(404);
    }
    const client = await globalThis.fetch(`${base}/sluice-client.js`);
    if (client.status === 200) expect(await client.text()).toBe("export * from './sluice/client/index.js';\n");
    else {
      expect(client.status).toBe(503);
      expect(await client.text()).toMatch(/not built/);
    }
  });
});
