import { describe, expect, it } from 'vitest';
import { BatchAccumulator } from '../../src/client/accumulator.js';
import { ClientClosedError, Connection, ConnectionLostError, type WebSocketLike } from '../../src/client/connection.js';
import { Producer } from '../../src/client/producer.js';
import { SluiceError } from '../../src/errors.js';
import { decodeBatch, readBatchHeader } from '../../src/persist/record-batch.js';
import { decodeClientFrame, encodeServerFrame, Op, type ClientFrame, type ServerFrame } from '../../src/ws-gateway/frames.js';
import { IDEMPOTENT_BATCHES_PER_PARTITION } from '../../src/ws-gateway/limits.js';
import { FakeClock } from './client-fake-clock.js';

const flush = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

/** An accumulator of item lists, as the tests below use it: add = open + push + added. */
function listAccumulator(options: { lingerMs: number; batchBytes: number; clock: FakeClock; onSeal: (key: string, items: number[]) => void }) {
  const acc = new BatchAccumulator<number[]>({ ...options, create: () => [] });
  return Object.assign(acc, {
    add(key: string, item: number, sizeBytes: number) {
      const batch = acc.open(key, sizeBytes);
      batch.content.push(item);
      acc.added(batch, sizeBytes);
    },
  });
}

describe('batch accumulation', () => {
  it('seals a partition batch when lingerMs passes since its first record', () => {
    const clock = new FakeClock();
    const sealed: [string, number[]][] = [];
    const acc = listAccumulator({ lingerMs: 10, batchBytes: 1000, clock, onSeal: (k, items) => sealed.push([k, items]) });
    acc.add('a', 1, 10);
    clock.advance(5);
    acc.add('a', 2, 10);
    acc.add('b', 3, 10);
    clock.advance(4);
    expect(sealed).toEqual([]);
    clock.advance(1);
    expect(sealed).toEqual([['a', [1, 2]]]);
    clock.advance(5);
    expect(sealed).toEqual([['a', [1, 2]], ['b', [3]]]);
    expect(acc.openBatches).toBe(0);
  });

  it('seals when the next record would pass batchBytes, and gives an oversized record its own batch', () => {
    const clock = new FakeClock();
    const sealed: number[][] = [];
    const acc = listAccumulator({ lingerMs: 1000, batchBytes: 100, clock, onSeal: (_k, items) => sealed.push(items) });
    acc.add('p', 1, 40);
    acc.add('p', 2, 40);
    acc.add('p', 3, 40); // 120 > 100: seals [1, 2] first
    expect(sealed).toEqual([[1, 2]]);
    acc.add('p', 4, 500); // seals [3], then [4] alone at once
    expect(sealed).toEqual([[1, 2], [3], [4]]);
    acc.add('p', 5, 60);
    acc.add('p', 6, 40); // exactly full: sealed at once
    expect(sealed).toEqual([[1, 2], [3], [4], [5, 6]]);
    acc.add('p', 7, 1);
    acc.flush();
    expect(sealed.at(-1)).toEqual([7]);
    expect(clock.pending).toBe(0);
  });

  it('keeps a batch whose linger ended open while its key may not send, and seals it once told there is room', () => {
    const clock = new FakeClock();
    const sealed: number[][] = [];
    let room = false;
    const acc = new BatchAccumulator<number[]>({ lingerMs: 1, batchBytes: 100, clock, create: () => [], canSeal: () => room, onSeal: (_k, items) => sealed.push(items) });
    const add = (item: number, size: number) => {
      const b = acc.open('p', size);
      b.content.push(item);
      acc.added(b, size);
    };
    add(1, 10);
    clock.advance(5);
    add(2, 10); // linger ended without room: still the same open batch
    acc.sealIfDue('q'); // another key: nothing
    expect(sealed).toEqual([]);
    expect(acc.openBatches).toBe(1);
    add(3, 80); // full: sealed whatever the room
    expect(sealed).toEqual([[1, 2, 3]]);
    add(4, 10);
    acc.sealIfDue('p'); // open, but its linger has not ended: stays
    expect(sealed).toHaveLength(1);
    clock.advance(1);
    room = true;
    acc.sealIfDue('p');
    expect(sealed).toEqual([[1, 2, 3], [4]]);
    expect(clock.pending).toBe(0);
  });
});

/**
 * A scripted Connection: answers INIT_PRODUCER (ids 77, 78, ...; or holds them while
 * `holdInit`), records PRODUCE frames, lets the test answer them, and goes down and comes
 * back when told (`down()` fails what is in flight, as the real one does).
 */
function fakeConnection() {
  const produces: { frame: Extract<ClientFrame, { op: typeof Op.PRODUCE }>; resolve: (f: ServerFrame) => void; reject: (e: unknown) => void }[] = [];
  const reconnectListeners = new Set<() => void>();
  const heldInits: (() => void)[] = [];
  let nextProducerId = 77;
  const conn = {
    limits: { batchBytesMax: 1024 * 1024 + 12, inFlightMax: 64 },
    state: 'ready',
    holdInit: false,
    initRequests: 0,
    request(sent: any): Promise<ServerFrame> {
      // The producer sends PRODUCE encoded (its batch encoded in place); other requests as objects.
      const frame = sent instanceof Uint8Array ? decodeClientFrame(sent) : sent;
      if (frame.op === Op.INIT_PRODUCER) {
        conn.initRequests++;
        return new Promise((resolve) => {
          const answer = () => resolve({ op: Op.INIT_PRODUCER_OK, correlationId: 1, producerId: nextProducerId++, producerEpoch: 0 });
          if (conn.holdInit || conn.state !== 'ready') heldInits.push(answer);
          else answer();
        });
      }
      return new Promise((resolve, reject) => produces.push({ frame, resolve, reject }));
    },
    sendNoResponse: () => true,
    onReconnected: (listener: () => void) => {
      reconnectListeners.add(listener);
      return () => reconnectListeners.delete(listener);
    },
    down() {
      conn.state = 'down';
      for (const p of produces.splice(0)) p.reject(new ConnectionLostError('gone'));
    },
    up() {
      conn.state = 'ready';
      conn.holdInit = false;
      for (const answer of heldInits.splice(0)) answer();
      for (const listener of [...reconnectListeners]) listener();
    },
  };
  return { conn: conn as unknown as Connection, produces, fake: conn };
}

function seqOf(frame: { batch: Uint8Array }) {
  const h = readBatchHeader(new DataView(frame.batch.buffer, frame.batch.byteOffset, frame.batch.byteLength), 0);
  return { producerId: h.producerId, baseSequence: h.baseSequence, count: h.recordCount };
}

describe('producer input', () => {
  it('refuses a key, value or header that is not bytes, a string or null, and a bad timestamp, for that record alone', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 1 });
    const bad = [
      producer.send({ topic: 't', value: 42 as unknown as string }),
      producer.send({ topic: 't', key: {} as unknown as string, value: 'v' }),
      producer.send({ topic: 't', value: 'v', headers: [{ key: 'h', value: 7 as unknown as string }] }),
      producer.send({ topic: 't', value: 'v', headers: [{ key: 3 as unknown as string, value: 'x' }] }),
      producer.send({ topic: 't', value: 'v', timestamp: 1.5 }),
    ];
    const many = producer.sendMany([
      { topic: 't', value: 'ok-1', headers: [{ key: 'a', value: 'text' }, { key: 'a', value: null }] },
      { topic: 't', value: new Date() as unknown as string },
      { topic: 't', value: 'ok-2', headers: { b: new Uint8Array([1, 2]) } },
    ]);
    for (const p of bad) await expect(p).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await flush(); // the producer id, then the good records join their batch
    clock.advance(1);
    await flush();
    // The good records went out in one batch; header strings are UTF-8 bytes.
    const sent = produces.splice(0);
    expect(sent.length).toBeGreaterThanOrEqual(1);
    const last = sent.at(-1)!;
    const records = decodeBatch(last.frame.batch).records;
    expect(records.map((r) => new TextDecoder().decode(r.value!))).toEqual(['ok-1', 'ok-2']);
    expect(records[0].headers.map((h) => [h.key, h.value === null ? null : new TextDecoder().decode(h.value)])).toEqual([['a', 'text'], ['a', null]]);
    expect(Array.from(records[1].headers[0].value!)).toEqual([1, 2]);
    for (const p of sent) p.resolve({ op: Op.PRODUCE_OK, correlationId: 1, baseOffset: 0, logStartOffset: 0 });
    await expect(many).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await producer.flush(); // nothing is left unanswered
  });
});

describe('producer sequence numbering', () => {
  it('numbers batches per partition from 0, by record count, and keeps the same bytes when a batch is resent', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer(
      { connection: conn, clock, random: () => 0, partitionCount: async () => 2, cachedPartitionCount: () => 2 },
      { lingerMs: 1, retryBackoff: { initialMs: 10, maxMs: 10, multiplier: 1, jitter: 0 } },
    );
    const sends = [
      producer.send({ topic: 't', value: 'a', partition: 0 }),
      producer.send({ topic: 't', value: 'b', partition: 0 }),
      producer.send({ topic: 't', value: 'c', partition: 1 }),
    ];
    await flush();
    clock.advance(1);
    await flush();
    producer.send({ topic: 't', value: 'd', partition: 0 });
    clock.advance(1);
    await flush();
    expect(produces.map((p) => [p.frame.partition, seqOf(p.frame)])).toEqual([
      [0, { producerId: 77, baseSequence: 0, count: 2 }],
      [1, { producerId: 77, baseSequence: 0, count: 1 }],
      [0, { producerId: 77, baseSequence: 2, count: 1 }],
    ]);
    expect(produces.every((p) => p.frame.producerId === 77)).toBe(true);
    // the first batch is throttled, the one pipelined after it refused as out of order
    const [b0, b1, b2] = produces.splice(0);
    b0.reject(new SluiceError('THROTTLED', 'full', { backoffMs: 25 }));
    b2.reject(new SluiceError('OUT_OF_ORDER_SEQUENCE', 'gap'));
    b1.resolve({ op: Op.PRODUCE_OK, correlationId: 2, baseOffset: 0, logStartOffset: 0 });
    await flush();
    clock.advance(24);
    await flush();
    expect(produces).toHaveLength(0); // THROTTLED's backoffMs is honoured
    clock.advance(1);
    await flush();
    expect(produces.map((p) => seqOf(p.frame).baseSequence)).toEqual([0, 2]);
    expect(produces[0].frame.batch).toEqual(b0.frame.batch);
    expect(produces[1].frame.batch).toEqual(b2.frame.batch);
    produces[0].resolve({ op: Op.PRODUCE_OK, correlationId: 3, baseOffset: 10, logStartOffset: 0 });
    produces[1].resolve({ op: Op.PRODUCE_OK, correlationId: 4, baseOffset: 12, logStartOffset: 0 });
    expect((await Promise.all(sends)).map((m) => [m.partition, m.offset])).toEqual([[0, 10], [0, 11], [1, 0]]);
  });

  it(`collects records in one batch while the partition has ${IDEMPOTENT_BATCHES_PER_PARTITION} batches in flight, and sends it when an answer frees a place`, async () => {
    const W = IDEMPOTENT_BATCHES_PER_PARTITION;
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 1 });
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < W; i++) {
      sends.push(producer.send({ topic: 't', value: `v${i}`, partition: 0 }));
      await flush();
      clock.advance(1);
      await flush();
    }
    expect(produces).toHaveLength(W); // the window is full
    for (let i = W; i < W + 7; i++) {
      sends.push(producer.send({ topic: 't', value: `v${i}`, partition: 0 }));
      await flush();
      clock.advance(1); // lingers end while no place is free
      await flush();
    }
    expect(produces).toHaveLength(W);
    produces[0].resolve({ op: Op.PRODUCE_OK, correlationId: 1, baseOffset: 0, logStartOffset: 0 });
    await flush();
    expect(produces).toHaveLength(W + 1);
    expect(seqOf(produces[W].frame)).toEqual({ producerId: 77, baseSequence: W, count: 7 }); // one batch, not seven
    for (let i = 1; i < W + 1; i++) produces[i].resolve({ op: Op.PRODUCE_OK, correlationId: 1 + i, baseOffset: i, logStartOffset: 0 });
    await producer.flush();
    expect(((await Promise.all(sends)) as { offset: number }[]).map((m) => m.offset)).toEqual(Array.from({ length: W + 7 }, (_, i) => i));
  });

  it('with lingerMs 0, sends at the end of the turn when nothing is in flight, else gathers until the answer or the timer', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 2, cachedPartitionCount: () => 2 }, { lingerMs: 0 });
    const offsets: Promise<{ offset: number }>[] = [];
    const send = (value: string, partition = 0) => offsets.push(producer.send({ topic: 't', value, partition }));
    const first = producer.send({ topic: 't', value: 'first', partition: 1 }).catch(() => undefined); // the producer id first
    await flush();
    produces.splice(0)[0].reject(new SluiceError('INVALID_REQUEST', 'not this one'));
    await first;
    await flush();
    send('a');
    send('b'); // the same turn: the same batch
    await flush(); // no clock advance: not the timer
    expect(produces.map((p) => seqOf(p.frame))).toEqual([{ producerId: 77, baseSequence: 0, count: 2 }]);
    send('c');
    send('d');
    await flush();
    expect(produces).toHaveLength(1); // in flight: c and d wait
    send('e', 1); // another partition has nothing in flight: it goes
    await flush();
    expect(produces.map((p) => p.frame.partition)).toEqual([0, 1]);
    produces[0].resolve({ op: Op.PRODUCE_OK, correlationId: 2, baseOffset: 0, logStartOffset: 0 });
    await flush();
    expect(produces.map((p) => seqOf(p.frame))).toEqual([
      { producerId: 77, baseSequence: 0, count: 2 },
      { producerId: 77, baseSequence: 0, count: 1 }, // partition 1's sequence resumes where the refused batch began
      { producerId: 77, baseSequence: 2, count: 2 }, // c and d, at the answer, before any timer
    ]);
    send('f');
    await flush();
    expect(produces).toHaveLength(3); // c and d in flight
    clock.advance(1); // Node's timer ends first: f goes as a second batch in flight
    await flush();
    expect(produces.map((p) => seqOf(p.frame).count)).toEqual([2, 1, 2, 1]);
    produces[1].resolve({ op: Op.PRODUCE_OK, correlationId: 3, baseOffset: 0, logStartOffset: 0 });
    produces[2].resolve({ op: Op.PRODUCE_OK, correlationId: 4, baseOffset: 2, logStartOffset: 0 });
    produces[3].resolve({ op: Op.PRODUCE_OK, correlationId: 5, baseOffset: 4, logStartOffset: 0 });
    expect((await Promise.all(offsets)).map((m) => m.offset)).toEqual([0, 1, 2, 3, 0, 4]);
  });

  it('keeps a lingerMs above 0 whether or not anything is in flight, and with acks 0 seals lingerMs-0 batches by the timer', async () => {
    // The fake clock's timers fire when advanced past, a 0 ms one at advance(0) (Node's: 1 ms at the least).
    for (const options of [{ lingerMs: 5 }, { lingerMs: 0, acks: 0 as const }]) {
      const clock = new FakeClock();
      const { conn, produces } = fakeConnection();
      const sent: Uint8Array[] = [];
      (conn as unknown as { sendNoResponse: (f: Uint8Array) => boolean }).sendNoResponse = (f) => sent.push(f) > 0;
      const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, options);
      void producer.send({ topic: 't', value: 'a' }).catch(() => undefined);
      await flush();
      expect(produces.length + sent.length).toBe(0); // nothing in flight, and still it waits for the timer
      clock.advance(options.lingerMs - 1 > 0 ? options.lingerMs - 1 : 0);
      await flush();
      expect(produces.length + sent.length).toBe(options.lingerMs === 0 ? 1 : 0);
      clock.advance(1);
      await flush();
      expect(produces.length + sent.length).toBe(1);
    }
  });

  it('renumbers the batches after one refused for good, so the partition carries on', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 0, batchBytes: 30 });
    const a = producer.send({ topic: 't', value: 'aaaaaaaaaaaa' });
    await flush();
    clock.advance(0);
    const b = producer.send({ topic: 't', value: 'bbbbbbbbbbbb' });
    clock.advance(0);
    await flush();
    expect(produces.map((p) => seqOf(p.frame).baseSequence)).toEqual([0, 1]);
    const [pa, pb] = produces.splice(0);
    pa.reject(new SluiceError('CORRUPT_MESSAGE', 'bad'));
    pb.reject(new SluiceError('OUT_OF_ORDER_SEQUENCE', 'gap'));
    await expect(a).rejects.toMatchObject({ code: 'CORRUPT_MESSAGE' });
    clock.advance(1000);
    await flush();
    expect(produces.map((p) => seqOf(p.frame).baseSequence)).toEqual([0]);
    produces[0].resolve({ op: Op.PRODUCE_OK, correlationId: 9, baseOffset: 0, logStartOffset: 0 });
    expect((await b).offset).toBe(0);
  });

  it('counts a batch answered DUPLICATE_SEQUENCE_NUMBER as stored, offset unknown, and carries on', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 0 });
    const a = producer.send({ topic: 't', value: 'a' });
    await flush();
    produces.shift()!.reject(new SluiceError('DUPLICATE_SEQUENCE_NUMBER', 'stored already'));
    expect(await a).toMatchObject({ partition: 0, offset: -1 });
    const b = producer.send({ topic: 't', value: 'b' });
    await flush();
    expect(produces.map((p) => seqOf(p.frame).baseSequence)).toEqual([1]);
    produces.shift()!.resolve({ op: Op.PRODUCE_OK, correlationId: 2, baseOffset: 7, logStartOffset: 0 });
    expect((await b).offset).toBe(7);
  });

  it('retries a batch refused ENGINE_CLOSED (a broker shutting down), which appended nothing', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer(
      { connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 },
      { lingerMs: 0, retryBackoff: { initialMs: 50, maxMs: 50, multiplier: 1, jitter: 0 } },
    );
    const a = producer.send({ topic: 't', value: 'a' });
    await flush();
    produces.shift()!.reject(new SluiceError('ENGINE_CLOSED', 'the server is shutting down'));
    await flush();
    clock.advance(50);
    await flush();
    expect(produces.map((p) => seqOf(p.frame).baseSequence)).toEqual([0]); // the same batch again
    produces.shift()!.resolve({ op: Op.PRODUCE_OK, correlationId: 2, baseOffset: 4, logStartOffset: 0 });
    expect((await a).offset).toBe(4);
  });

  it('resends unacknowledged batches after a lost connection without counting a retry', async () => {
    const clock = new FakeClock();
    const { conn, produces } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 0, retries: 0 });
    const sent = producer.send({ topic: 't', value: 'x' });
    await flush();
    clock.advance(0);
    await flush();
    produces.shift()!.reject(new ConnectionLostError('gone'));
    await flush();
    expect(produces).toHaveLength(1);
    produces[0].resolve({ op: Op.PRODUCE_OK, correlationId: 5, baseOffset: 3, logStartOffset: 0 });
    expect((await sent).offset).toBe(3);
  });
});

describe('producer delivery timeout', () => {
  const ok = (baseOffset: number): ServerFrame => ({ op: Op.PRODUCE_OK, correlationId: 1, baseOffset, logStartOffset: 0 });
  const settle = async (clock: FakeClock, ms: number) => {
    for (let t = 0; t < ms; t += 100) {
      clock.advance(Math.min(100, ms - t));
      await flush();
    }
  };

  it('refuses a deliveryTimeoutMs that is not a number > 0 and >= lingerMs', () => {
    const { conn } = fakeConnection();
    const ctx = { connection: conn, clock: new FakeClock(), random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 };
    for (const deliveryTimeoutMs of [0, -1, Number.NaN, '5' as unknown as number]) {
      expect(() => new Producer(ctx, { deliveryTimeoutMs })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(() => new Producer(ctx, { lingerMs: 50, deliveryTimeoutMs: 10 })).toThrow(/lingerMs/);
    expect(() => new Producer(ctx, { deliveryTimeoutMs: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it('holds batches while the connection is down and fails them after deliveryTimeoutMs; flush and close then return', async () => {
    const clock = new FakeClock();
    const { conn, produces, fake } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 0, deliveryTimeoutMs: 5000 });
    const first = producer.send({ topic: 't', value: 'a' });
    await flush();
    produces.shift()!.resolve(ok(0));
    expect((await first).offset).toBe(0);
    fake.down();
    const held = [producer.send({ topic: 't', value: 'b' }), producer.send({ topic: 't', value: 'c' })];
    for (const p of held) p.catch(() => undefined);
    await settle(clock, 4900);
    expect(produces).toHaveLength(0); // nothing goes to a connection that is down
    let flushed = false;
    void producer.flush().then(() => (flushed = true));
    await settle(clock, 1100); // the deadline, and at most one check interval more
    for (const p of held) await expect(p).rejects.toMatchObject({ code: 'DELIVERY_TIMEOUT' });
    expect(flushed).toBe(true);
    // Never sent, so their sequence is free: the next batch takes it, under the same id.
    const next = producer.send({ topic: 't', value: 'd' });
    fake.up();
    await flush();
    expect(produces.map((p) => seqOf(p.frame))).toEqual([{ producerId: 77, baseSequence: 1, count: 1 }]);
    produces.shift()!.resolve(ok(1));
    expect((await next).offset).toBe(1);
    await producer.close();
    expect(clock.pending).toBe(0); // no check armed while nothing is unsettled
  });

  it('after giving up on a batch that was sent, numbers the partition from 0 under a new producer id', async () => {
    const clock = new FakeClock();
    const { conn, produces, fake } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 2, cachedPartitionCount: () => 2 }, { lingerMs: 0, deliveryTimeoutMs: 3000 });
    const a = producer.send({ topic: 't', value: 'a', partition: 0 });
    const other = producer.send({ topic: 't', value: 'x', partition: 1 });
    a.catch(() => undefined);
    await flush();
    expect(produces.map((p) => seqOf(p.frame))).toEqual([
      { producerId: 77, baseSequence: 0, count: 1 },
      { producerId: 77, baseSequence: 0, count: 1 },
    ]);
    produces.splice(1, 1)[0].resolve(ok(0)); // partition 1 is answered
    expect((await other).offset).toBe(0);
    fake.down(); // partition 0's batch was on the wire: stored or not, nobody knows
    await settle(clock, 4000);
    await expect(a).rejects.toMatchObject({ code: 'DELIVERY_TIMEOUT' });
    const b = producer.send({ topic: 't', value: 'b', partition: 0 });
    const y = producer.send({ topic: 't', value: 'y', partition: 1 });
    await settle(clock, 1000);
    fake.up();
    await flush();
    expect(fake.initRequests).toBe(2);
    const sent = produces.splice(0).map((p) => ({ partition: p.frame.partition, ...seqOf(p.frame), p }));
    for (const s of sent) expect(s.p.frame.producerId).toBe(s.producerId); // the PRODUCE head repeats the batch's id
    expect(sent.map(({ p: _p, ...rest }) => rest).sort((x, z) => x.partition - z.partition)).toEqual([
      { partition: 0, producerId: 78, baseSequence: 0, count: 1 }, // a fresh id: sequence 0 of the old one is never reused
      { partition: 1, producerId: 77, baseSequence: 1, count: 1 }, // the other partition carries on
    ]);
    for (const s of sent) s.p.resolve(ok(5));
    expect([(await b).offset, (await y).offset]).toEqual([5, 5]);
  });

  it('does not retry a batch answered with a retriable error after its deadline', async () => {
    const clock = new FakeClock();
    const { conn, produces, fake } = fakeConnection();
    const producer = new Producer(
      { connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 },
      { lingerMs: 0, deliveryTimeoutMs: 2000, retryBackoff: { initialMs: 300, maxMs: 300, multiplier: 1, jitter: 0 } },
    );
    let outcome: unknown = 'pending';
    producer.send({ topic: 't', value: 'a' }).then(
      () => (outcome = 'stored'),
      (err) => (outcome = err),
    );
    let attempts = 0;
    for (let t = 0; t < 3000 && produces.length + attempts < 100; t += 50) {
      await flush();
      while (produces.length > 0) {
        attempts++;
        produces.shift()!.reject(new SluiceError('STORAGE_ERROR', 'disk'));
      }
      clock.advance(50);
    }
    await flush();
    expect(outcome).toMatchObject({ code: 'DELIVERY_TIMEOUT', message: expect.stringMatching(/disk/) });
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect(attempts).toBeLessThanOrEqual(8); // about 2000 / 300 attempts, then none
    expect(fake.initRequests).toBe(2); // the partition's next batches go under a new id
  });

  it('fails a send still waiting for its producer id after deliveryTimeoutMs', async () => {
    const clock = new FakeClock();
    const { conn, fake } = fakeConnection();
    fake.holdInit = true;
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { deliveryTimeoutMs: 1000 });
    const a = producer.send({ topic: 't', value: 'a' });
    const b = producer.send({ topic: 't', value: 'b' });
    a.catch(() => undefined);
    b.catch(() => undefined);
    await settle(clock, 1300);
    await expect(a).rejects.toMatchObject({ code: 'DELIVERY_TIMEOUT' });
    await expect(b).rejects.toMatchObject({ code: 'DELIVERY_TIMEOUT' });
    await producer.flush();
  });

  it('abort() fails what is held back, and later sends', async () => {
    const clock = new FakeClock();
    const { conn, fake } = fakeConnection();
    const producer = new Producer({ connection: conn, clock, random: () => 0, partitionCount: async () => 1, cachedPartitionCount: () => 1 }, { lingerMs: 0, bufferBytesMax: 1 });
    fake.down();
    const held = producer.send({ topic: 't', value: 'held' }); // waits for its producer id
    await flush();
    fake.up();
    await flush();
    fake.down(); // its batch is sealed and held: the connection is down
    const waiting = producer.send({ topic: 't', value: 'waiting' }); // waits for buffer room
    for (const p of [held, waiting]) p.catch(() => undefined);
    await settle(clock, 500);
    producer.abort(new ClientClosedError());
    await expect(held).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await expect(waiting).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await expect(producer.send({ topic: 't', value: 'later' })).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await producer.flush();
    expect(clock.pending).toBe(0);
  });
});

/** A WebSocket double the test drives: it never opens unless told. */
class FakeSocket implements WebSocketLike {
  static made: FakeSocket[] = [];
  binaryType = 'blob';
  readyState = 0;
  bufferedAmount = 0;
  sent: ClientFrame[] = [];
  #listeners = new Map<string, ((e: any) => void)[]>();
  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }
  addEventListener(type: string, fn: (e: any) => void): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), fn]);
  }
  emit(type: string, e: any = {}): void {
    for (const fn of this.#listeners.get(type) ?? []) fn(e);
  }
  send(data: Uint8Array): void {
    this.sent.push(decodeClientFrame(data));
  }
  close(): void {
    this.readyState = 3;
    this.emit('close', { code: 1006 });
  }
  open(): void {
    this.readyState = 1;
    this.emit('open');
  }
  answer(frame: ServerFrame): void {
    const bytes = encodeServerFrame(frame);
    this.emit('message', { data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  acceptHello(): void {
    this.open();
    const hello = this.sent[0];
    this.answer({ op: Op.HELLO_OK, correlationId: hello.correlationId, protocolVersion: 1, inFlightMax: 2, subscriptionsMax: 256, frameBytesMax: 1 << 21, fetchBytesMax: 1 << 20, batchBytesMax: (1 << 20) + 12, fetchWaitMsMax: 30000, serverVersion: 'x' });
  }
}

describe('connection', () => {
  it('reconnects on the back-off schedule after the socket drops, and fails what was in flight', async () => {
    FakeSocket.made = [];
    const clock = new FakeClock();
    const opening = Connection.open({ url: 'ws://x/', WebSocket: FakeSocket, clock, random: () => 0.5, reconnectBackoff: { initialMs: 50, maxMs: 300, multiplier: 2, jitter: 0.2 } });
    await flush();
    FakeSocket.made[0].acceptHello();
    const conn = await opening;
    let reconnected = 0;
    conn.onReconnected(() => reconnected++);
    const pending = conn.request({ op: Op.METADATA });
    FakeSocket.made[0].close();
    await expect(pending).rejects.toBeInstanceOf(ConnectionLostError);
    // attempts fail four times: 50, 100, 200, 300 (capped) ms apart
    const waits: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const before = clock.time;
      const sockets = FakeSocket.made.length;
      while (FakeSocket.made.length === sockets) clock.advance(1);
      waits.push(clock.time - before);
      FakeSocket.made.at(-1)!.close();
    }
    expect(waits).toEqual([50, 100, 200, 300]);
    clock.advance(300);
    const socket = FakeSocket.made.at(-1)!;
    const queued = conn.request({ op: Op.LIST_TOPICS }); // waits for the connection
    socket.acceptHello();
    expect(reconnected).toBe(1);
    const req = socket.sent.at(-1)!;
    expect(req.op).toBe(Op.LIST_TOPICS);
    socket.answer({ op: Op.LIST_TOPICS_OK, correlationId: req.correlationId, topics: ['a'] });
    expect(await queued).toMatchObject({ topics: ['a'] });
    conn.close();
  });

  it('keeps at most inFlightMax requests unanswered and sends the rest in order', async () => {
    FakeSocket.made = [];
    const clock = new FakeClock();
    const opening = Connection.open({ url: 'ws://x/', WebSocket: FakeSocket, clock });
    await flush();
    const socket = FakeSocket.made[0];
    socket.acceptHello();
    const conn = await opening;
    const answers = ['a', 'b', 'c', 'd'].map((topic) => conn.request({ op: Op.DESCRIBE_TOPIC, topic }));
    for (const a of answers) a.catch(() => undefined);
    expect(socket.sent.slice(1).map((f) => (f as { topic: string }).topic)).toEqual(['a', 'b']);
    const first = socket.sent[1];
    socket.answer({ op: Op.ERROR, correlationId: first.correlationId, backoffMs: 0, code: 'UNKNOWN_TOPIC_OR_PARTITION', requestOp: Op.DESCRIBE_TOPIC, retriable: false, message: 'no' });
    await expect(answers[0]).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    expect(socket.sent.slice(1).map((f) => (f as { topic: string }).topic)).toEqual(['a', 'b', 'c']);
    conn.close();
    await expect(answers[3]).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
  });
});
