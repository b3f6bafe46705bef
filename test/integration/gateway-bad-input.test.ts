/**
 * Bad input against a real gateway: each case of docs/protocol.md's "errors and connection
 * closing" table gets its documented answer and close code, nothing is appended, and a
 * well-behaved client on another connection keeps working throughout.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, F, RawClient } from '../fixtures/gateway-client.js';
import { loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

const S = await loadSluice();
const Op = F.Op;

let dir: ReturnType<typeof tempDir>;
let engine: Awaited<ReturnType<typeof S.Engine.open>>;
let gateway: Awaited<ReturnType<typeof S.startGateway>>;
let good: RawClient;
let goodProduced = 0;

beforeAll(async () => {
  dir = tempDir('gateway-bad');
  engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
  gateway = await S.startGateway({ engine, port: 0, limits: { frameBytesMax: 64 * 1024, helloTimeoutMs: 300 } });
  await engine.createTopic('t', { partitions: 1 });
  await engine.createTopic('good', { partitions: 1 });
  good = await RawClient.connect(gateway.port);
});

afterAll(async () => {
  good?.close();
  await gateway?.close();
  await engine?.close();
  dir?.remove();
});

const batch = () => S.encodeBatch([{ value: S.utf8('v') }]);

/** The well-behaved client produces and reads back after every bad case. */
async function goodStillWorks(): Promise<void> {
  const ok = as(await good.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition: 0, acks: -1, topic: 'good', batch: batch() })), Op.PRODUCE_OK);
  expect(ok.baseOffset).toBe(goodProduced++);
  const got = as(await good.request((id) => F.encodeFetch({ correlationId: id, topic: 'good', partition: 0, offset: ok.baseOffset, maxBytes: 1 << 20, minBytes: 0, maxWaitMs: 0 })), Op.FETCH_OK);
  expect(got.records.length).toBeGreaterThan(0);
}

function nothingAppended(): void {
  expect(engine.describeTopic('t').partitions[0].logEndOffset).toBe(0);
}

/** The next frame the server sends on a connection, and its close. */
async function answerAndClose(c: RawClient): Promise<{ error: Extract<ReturnType<typeof F.decodeServerFrame>, { op: 0xff }> | undefined; code: number }> {
  const { code } = await c.closed;
  const error = c.connectionErrors[0] as never;
  return { error, code };
}

function withHeader(frame: Uint8Array, patch: (v: DataView) => void): Uint8Array {
  const copy = frame.slice();
  patch(new DataView(copy.buffer));
  return copy;
}

describe('the gateway facing bad input', () => {
  it('closes 1003 after ERROR on a text message', async () => {
    const c = await RawClient.connect(gateway.port);
    c.send('hello?');
    const { error, code } = await answerAndClose(c);
    expect(code).toBe(1003);
    expect(error).toMatchObject({ code: 'INVALID_REQUEST', correlationId: 0 });
    await goodStillWorks();
  });

  it('closes a connection that sends a frame over frameBytesMax, without reading it', async () => {
    const c = await RawClient.connect(gateway.port);
    const huge = S.encodeBatch([{ value: new Uint8Array(100 * 1024) }]);
    c.send(F.encodeProduce({ correlationId: 5, producerId: -1, partition: 0, acks: -1, topic: 't', batch: huge }));
    const { code } = await c.closed;
    expect([1006, 1009]).toContain(code);
    nothingAppended();
    await goodStillWorks();
  });

  it('closes 1002 after ERROR on structural faults: short frame, flags, correlationId 0, trailing bytes, lengths past the end', async () => {
    const valid = F.encodeProduce({ correlationId: 9, producerId: -1, partition: 0, acks: -1, topic: 't', batch: batch() });
    const cases: [string, Uint8Array, number][] = [
      ['fewer than 8 bytes', new Uint8Array([2, 0, 0]), 0],
      ['non-zero flags', withHeader(valid, (v) => v.setUint8(1, 1)), 9],
      ['non-zero reserved', withHeader(valid, (v) => v.setUint16(2, 7)), 9],
      ['correlationId 0', withHeader(valid, (v) => v.setUint32(4, 0)), 0],
      ['bytes left over', new Uint8Array([...valid, 0, 0]), 9],
      ['a length past the end', valid.subarray(0, valid.length - 5), 9],
    ];
    for (const [name, bytes, correlationId] of cases) {
      const c = await RawClient.connect(gateway.port);
      const answer = correlationId === 0 ? null : c.expect(correlationId);
      c.send(bytes);
      const { code } = await c.closed;
      expect(code, name).toBe(1002);
      const err = answer ? await answer : c.connectionErrors[0];
      expect(err, name).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST', retriable: false });
    }
    nothingAppended();
    await goodStillWorks();
  });

  it('closes 1002 on frames before HELLO, on a second HELLO and on HELLO with no common version', async () => {
    const before = await RawClient.connect(gateway.port, { hello: false });
    const answer = before.expect(3);
    before.send(F.encodeProduce({ correlationId: 3, producerId: -1, partition: 0, acks: -1, topic: 't', batch: batch() }));
    expect(await answer).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST', requestOp: Op.PRODUCE });
    expect((await before.closed).code).toBe(1002);
    nothingAppended();

    const twice = await RawClient.connect(gateway.port);
    expect(await twice.request((id) => F.encodeHello({ correlationId: id, versionMin: 1, versionMax: 1, clientId: '' }))).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST' });
    expect((await twice.closed).code).toBe(1002);

    for (const [min, max] of [[3, 5], [1, 0]]) {
      const c = await RawClient.connect(gateway.port, { hello: false });
      const err = as(await c.request((id) => F.encodeHello({ correlationId: id, versionMin: min, versionMax: max, clientId: '' })), Op.ERROR);
      expect(err.code).toBe('UNSUPPORTED_VERSION');
      expect(err.message).toMatch(/\[1, 2\]/);
      expect((await c.closed).code).toBe(1002);
    }
    await goodStillWorks();
  });

  it('closes 1008 a connection that sends no HELLO in time', async () => {
    const c = await RawClient.connect(gateway.port, { hello: false });
    expect((await c.closed).code).toBe(1008);
    await goodStillWorks();
  });

  it('answers unknown and reserved ops, bad values and engine refusals with ERROR and keeps the connection open', async () => {
    const c = await RawClient.connect(gateway.port);
    const raw = (op: number, id: number) => {
      const b = new Uint8Array(8);
      const v = new DataView(b.buffer);
      v.setUint8(0, op);
      v.setUint32(4, id);
      return b;
    };
    for (const op of [0x5a, 0x3f, 0x7f]) {
      const id = c.nextId();
      const answer = c.expect(id);
      c.send(raw(op, id));
      expect(await answer, `op ${op}`).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST', requestOp: op });
    }
    // Invalid UTF-8 in the topic name: a bad value in a sound frame.
    const good = F.encodeDescribeTopic({ correlationId: 77, topic: 'ab' });
    const badUtf8 = good.slice();
    badUtf8[good.length - 1] = 0xff;
    const a1 = c.expect(77);
    c.send(badUtf8);
    expect(await a1).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST' });
    // An i64 outside the safe range.
    const fetchFrame = F.encodeFetch({ correlationId: 78, topic: 't', partition: 0, offset: 0, maxBytes: 100, minBytes: 0, maxWaitMs: 0 });
    new DataView(fetchFrame.buffer).setUint32(8, 0x7fffffff);
    const a2 = c.expect(78);
    c.send(fetchFrame);
    expect(await a2).toMatchObject({ op: Op.ERROR, code: 'INVALID_REQUEST' });

    const produce = (o: Partial<{ topic: string; partition: number; acks: number; batch: Uint8Array }>) =>
      c.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition: 0, acks: -1, topic: 't', batch: batch(), ...o }));
    const corrupt = batch();
    corrupt[corrupt.length - 1] ^= 0xff;
    const magic = batch();
    magic[16] = 1;
    const expectations: [string, Promise<unknown>, string][] = [
      ['unknown topic', produce({ topic: 'nope' }), 'UNKNOWN_TOPIC_OR_PARTITION'],
      ['unknown partition', produce({ partition: 5 }), 'UNKNOWN_TOPIC_OR_PARTITION'],
      ['bad acks', produce({ acks: 2 }), 'INVALID_REQUIRED_ACKS'],
      ['wrong CRC', produce({ batch: corrupt }), 'CORRUPT_MESSAGE'],
      ['magic 1', produce({ batch: magic }), 'UNSUPPORTED_FOR_MESSAGE_FORMAT'],
      ['short batch', produce({ batch: new Uint8Array(20) }), 'CORRUPT_MESSAGE'],
      ['fetch out of range', c.request((id) => F.encodeFetch({ correlationId: id, topic: 't', partition: 0, offset: 10, maxBytes: 100, minBytes: 0, maxWaitMs: 0 })), 'OFFSET_OUT_OF_RANGE'],
      ['fetch negative maxBytes', c.request((id) => F.encodeFetch({ correlationId: id, topic: 't', partition: 0, offset: 0, maxBytes: -1, minBytes: 0, maxWaitMs: 0 })), 'INVALID_ARGUMENT'],
      ['bad topic name', c.request((id) => F.encodeCreateTopic({ correlationId: id, topic: '..', partitions: 1, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 })), 'INVALID_TOPIC'],
      ['subscribe below -2', c.request((id) => F.encodeSubscribe({ correlationId: id, subscriptionId: 1, topic: 't', partition: 0, offset: -3, creditBytes: 1 })), 'INVALID_ARGUMENT'],
    ];
    for (const [name, answer, code] of expectations) expect(await answer, name).toMatchObject({ op: Op.ERROR, code });
    // acks=0 errors are not answered; the connection is still fine afterwards.
    c.send(F.encodeProduce({ correlationId: c.nextId(), producerId: -1, partition: 0, acks: 0, topic: 't', batch: corrupt }));
    as(await c.request((id) => F.encodeListTopics({ correlationId: id })), Op.LIST_TOPICS_OK);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    nothingAppended();
    await goodStillWorks();
    c.close();
  });
});
