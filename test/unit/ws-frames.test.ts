import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, errorNumber, SluiceError } from '../../src/errors.js';
import {
  bodySchema,
  chooseProtocolVersion,
  CLIENT_OPS,
  decodeClientFrame,
  decodeClientFrameBySchema,
  decodeServerFrame,
  DATA_HEAD_BYTES,
  encodeClientFrame,
  encodeData,
  encodeDataHead,
  encodeError,
  encodeFetchOk,
  encodeFetchOkHead,
  encodeHello,
  encodeListOffsets,
  encodeProduce,
  encodeServerFrame,
  produceHeadBytes,
  setCorrelationId,
  writeDataHead,
  writeProduceHead,
  errorFrameOf,
  expectsResponse,
  FETCH_OK_HEAD_BYTES,
  FrameError,
  Op,
  opName,
  responseOpOf,
  SERVER_OPS,
  toSluiceError,
  TopicNames,
  truncateUtf8,
  utf8Length,
  writeClientFrame,
  type ClientFrame,
  type FieldType,
  type Schema,
  type ServerFrame,
} from '../../src/ws-gateway/frames.js';
import * as limits from '../../src/ws-gateway/limits.js';
import { testSeed } from './persist-helpers.js';

// ---------------------------------------------------------------- arbitraries from the schemas

const utf8 = new TextEncoder();
const wellFormed = (s: string): boolean => new TextDecoder().decode(utf8.encode(s)) === s;

const stringArb = fc
  .oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constant('\uFEFFbom'))
  .filter((s) => wellFormed(s) && utf8Length(s) <= limits.STRING_BYTES_MAX);

const INT_ARBS: Record<string, fc.Arbitrary<number>> = {
  u8: fc.integer({ min: 0, max: 0xff }),
  i8: fc.integer({ min: -0x80, max: 0x7f }),
  u16: fc.integer({ min: 0, max: 0xffff }),
  i16: fc.integer({ min: -0x8000, max: 0x7fff }),
  u32: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 0xffff_ffff)),
  i32: fc.oneof(fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }), fc.constantFrom(-1, 0, -0x8000_0000, 0x7fff_ffff)),
  i64: fc.oneof(
    fc.maxSafeInteger(),
    fc.integer({ min: -2, max: 1 << 20 }),
    fc.constantFrom(-1, -2, 0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 32, 2 ** 32 - 1, -(2 ** 32)),
  ),
};

function fieldArb(type: FieldType): fc.Arbitrary<unknown> {
  if (typeof type === 'object') {
    return 'list' in type ? fc.array(fieldArb(type.list), { maxLength: 5 }) : fc.array(structArb(type.array), { maxLength: 4 });
  }
  switch (type) {
    case 'bool':
      return fc.boolean();
    case 'error':
      return fc.constantFrom(...ERROR_CODES);
    case 'string':
    case 'text':
      return stringArb;
    case 'bytes':
      return fc.uint8Array({ maxLength: 200 });
    default:
      return INT_ARBS[type];
  }
}

function structArb(schema: Schema): fc.Arbitrary<Record<string, unknown>> {
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, type] of schema) model[name] = fieldArb(type);
  return fc.record(model);
}

const isPush = (op: number): boolean => op === Op.DATA || op === Op.SUBSCRIPTION_CLOSED || op === Op.ASSIGNMENT;

function frameArb<F>(op: number): fc.Arbitrary<F> {
  const correlationId = isPush(op) ? fc.constant(0) : op === Op.ERROR ? fc.integer({ min: 0, max: 0xffff_ffff }) : fc.integer({ min: 1, max: 0xffff_ffff });
  return fc
    .tuple(correlationId, structArb(bodySchema(op)!))
    .map(([cid, body]) => ({ op, correlationId: cid, ...body }) as F);
}

const clientFrameArb: fc.Arbitrary<ClientFrame> = fc.oneof(...CLIENT_OPS.map((op) => frameArb<ClientFrame>(op)));
const serverFrameArb: fc.Arbitrary<ServerFrame> = fc.oneof(...SERVER_OPS.map((op) => frameArb<ServerFrame>(op)));

// ---------------------------------------------------------------- helpers

function decodeError(fn: () => unknown): FrameError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FrameError);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as FrameError).code).toBe('INVALID_REQUEST');
    return err as FrameError;
  }
  throw new Error('expected the decoder to throw');
}

/** A frame with a hand-made body: header op/correlationId, then the given bytes. */
function rawFrame(op: number, correlationId: number, body: number[]): Uint8Array {
  const bytes = new Uint8Array(8 + body.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, op);
  view.setUint32(4, correlationId, false);
  bytes.set(body, 8);
  return bytes;
}

/** `original` with byte edits applied in order: set, insert or delete at a position taken modulo the length. */
function mutated(original: Uint8Array, edits: [number, number, 'set' | 'insert' | 'delete'][]): Uint8Array {
  const bytes = [...original];
  for (const [at, value, kind] of edits) {
    const i = bytes.length === 0 ? 0 : at % bytes.length;
    if (kind === 'set') bytes[i] = value;
    else if (kind === 'insert') bytes.splice(i, 0, value);
    else bytes.splice(i, 1);
  }
  return Uint8Array.from(bytes);
}

function u16(n: number): number[] {
  return [(n >>> 8) & 0xff, n & 0xff];
}
function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}
function i64(high: number, low: number): number[] {
  return [...u32(high >>> 0), ...u32(low >>> 0)];
}

// ---------------------------------------------------------------- tests

describe('frame codec: round trips', () => {
  it('decodes every client frame it encodes, field for field, for arbitrary valid values (seeded)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(clientFrameArb, (frame) => {
        const bytes = encodeClientFrame(frame);
        expect(decodeClientFrame(bytes)).toEqual(frame);
      }),
      { seed, numRuns: 2000 },
    );
  });

  it('decodes every server frame it encodes, field for field, for arbitrary valid values (seeded)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(serverFrameArb, (frame) => {
        const bytes = encodeServerFrame(frame);
        expect(decodeServerFrame(bytes)).toEqual(frame);
      }),
      { seed, numRuns: 2000 },
    );
  });

  it('covers every op of the table in both directions', () => {
    expect(CLIENT_OPS).toEqual([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37]);
    expect(SERVER_OPS).toEqual([
      0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x90, 0x92, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xe0, 0xe1, 0xe8, 0xff,
    ]);
    for (const op of CLIENT_OPS) {
      const response = responseOpOf(op);
      if (op === Op.CREDIT) expect(response).toBeUndefined();
      else expect(response).toBe(op | 0x80);
    }
  });

  it('decodes a frame that sits at an offset of a larger buffer (DataView offsets honoured)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(clientFrameArb, fc.integer({ min: 1, max: 13 }), (frame, shift) => {
        const size = encodeClientFrame(frame).length;
        const big = new Uint8Array(size + shift + 7).fill(0xee);
        expect(writeClientFrame(frame, big, shift)).toBe(size);
        expect(decodeClientFrame(big.subarray(shift, shift + size))).toEqual(frame);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('hands out record bytes as views into the frame, never copies', () => {
    const batch = new Uint8Array([1, 2, 3, 4, 5]);
    const bytes = encodeProduce({ correlationId: 7, producerId: -1, partition: 0, acks: -1, topic: 't', batch });
    const frame = decodeClientFrame(bytes);
    expect(frame.op).toBe(Op.PRODUCE);
    if (frame.op !== Op.PRODUCE) return;
    expect(frame.batch.buffer).toBe(bytes.buffer);
    expect(frame.batch.byteOffset).toBe(bytes.length - batch.length);
    const data = decodeServerFrame(encodeData({ subscriptionId: 3, highWatermark: 10, records: batch }));
    if (data.op !== Op.DATA) throw new Error('expected DATA');
    expect(data.correlationId).toBe(0);
    expect([...data.records]).toEqual([...batch]);
  });

  it('builds FETCH_OK and DATA heads that, followed by the records, are the whole frame (for uWS fragments)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), INT_ARBS.i64, INT_ARBS.u32, (records, offset, id) => {
        const head = encodeFetchOkHead({ correlationId: id || 1, highWatermark: offset, logStartOffset: 0 }, records.length);
        expect(head.length).toBe(FETCH_OK_HEAD_BYTES);
        expect(concat(head, records)).toEqual(encodeFetchOk({ correlationId: id || 1, highWatermark: offset, logStartOffset: 0, records }));
        const dataHead = encodeDataHead({ subscriptionId: id, highWatermark: offset }, records.length);
        expect(dataHead.length).toBe(DATA_HEAD_BYTES);
        expect(concat(dataHead, records)).toEqual(encodeData({ subscriptionId: id, highWatermark: offset, records }));
      }),
      { seed, numRuns: 200 },
    );
  });
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

describe('frame codec: malformed input', () => {
  it('rejects every truncation of a valid frame, at every split point, as a fatal INVALID_REQUEST (seeded)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(fc.oneof(clientFrameArb.map((f) => ['client', f] as const), serverFrameArb.map((f) => ['server', f] as const)), ([side, frame]) => {
        const bytes = side === 'client' ? encodeClientFrame(frame as ClientFrame) : encodeServerFrame(frame as ServerFrame);
        const decode = side === 'client' ? decodeClientFrame : decodeServerFrame;
        for (let k = 0; k < bytes.length; k++) {
          const err = decodeError(() => decode(bytes.slice(0, k)));
          expect(err.fatal).toBe(true);
          if (k >= 8) expect(err.op).toBe(frame.op);
        }
      }),
      { seed, numRuns: 300 },
    );
  });

  it('rejects bytes left over after the last field as fatal', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(clientFrameArb, fc.uint8Array({ minLength: 1, maxLength: 9 }), (frame, extra) => {
        const err = decodeError(() => decodeClientFrame(concat(encodeClientFrame(frame), extra)));
        expect(err.fatal).toBe(true);
        expect(err.correlationId).toBe(frame.correlationId);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('never throws anything but SluiceError on random mutations of valid frames, and re-encodes what it accepts byte for byte (seeded)', () => {
    const seed = testSeed();
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(clientFrameArb, serverFrameArb, mutation, (client, server, edits) => {
        for (const [side, original] of [['client', encodeClientFrame(client)], ['server', encodeServerFrame(server)]] as const) {
          const input = mutated(original, edits);
          try {
            if (side === 'client') {
              const decoded = decodeClientFrame(input);
              expect(encodeClientFrame(decoded)).toEqual(input);
            } else {
              decodeServerFrame(input);
            }
          } catch (err) {
            if (!(err instanceof SluiceError)) throw err;
            expect(err.code).toBe('INVALID_REQUEST');
          }
        }
      }),
      { seed, numRuns: 3000 },
    );
  });

  it('reads PRODUCE without the schema walk to the same frame or the same error, topic cache or not (seeded)', () => {
    const seed = testSeed();
    const produceArb = frameArb<ClientFrame>(Op.PRODUCE);
    // Topics that share lengths and prefixes, so that the cache's byte comparison matters.
    const topicArb = fc.constantFrom('a', 'b', 'ab', 'ba', 'orders', 'orderz', 'é', 'ü', '\uFEFFx', 'x'.repeat(limits.STRING_BYTES_MAX));
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { maxLength: 3 });
    const outcome = (decode: () => ClientFrame): unknown => {
      try {
        return decode();
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        return { error: err.message, fatal: err.fatal, op: err.op, correlationId: err.correlationId };
      }
    };
    const topics = new TopicNames(); // one cache across all cases, as a connection keeps it
    fc.assert(
      fc.property(produceArb, topicArb, mutation, (frame, topic, edits) => {
        const input = mutated(encodeClientFrame({ ...frame, topic } as ClientFrame), edits);
        const bySchema = outcome(() => decodeClientFrameBySchema(input));
        expect(outcome(() => decodeClientFrame(input))).toEqual(bySchema);
        expect(outcome(() => decodeClientFrame(input, topics))).toEqual(bySchema);
        if (edits.length === 0) expect(bySchema).toEqual({ ...frame, topic });
      }),
      { seed, numRuns: 3000 },
    );
    // A topic one byte over the limit, the frame otherwise whole: the same non-fatal error both ways.
    const long = limits.STRING_BYTES_MAX + 1;
    const tooLong = rawFrame(Op.PRODUCE, 5, [...i64(0, 1), ...u32(0), 0xff, ...u16(long), ...new Array(long).fill(0x61), ...u32(0)]);
    const err = decodeError(() => decodeClientFrame(tooLong, topics));
    expect(err).toMatchObject({ fatal: false, correlationId: 5 });
    expect(outcome(() => decodeClientFrame(tooLong, topics))).toEqual(outcome(() => decodeClientFrameBySchema(tooLong)));
  });

  it('never throws anything but SluiceError on random bytes (seeded)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const decode of [decodeClientFrame, decodeServerFrame]) {
          try {
            decode(bytes);
          } catch (err) {
            if (!(err instanceof FrameError)) throw err;
          }
        }
      }),
      { seed, numRuns: 3000 },
    );
  });

  it('answers an unknown op with a non-fatal error that echoes the op and correlation id', () => {
    for (let op = 0; op < 256; op++) {
      const bytes = rawFrame(op, 42, []);
      if (!CLIENT_OPS.includes(op)) {
        const err = decodeError(() => decodeClientFrame(bytes));
        expect(err).toMatchObject({ fatal: false, op, correlationId: 42 });
        expect(err.message).toMatch(/unknown op/);
      }
      if (!SERVER_OPS.includes(op)) {
        const err = decodeError(() => decodeServerFrame(bytes));
        expect(err).toMatchObject({ fatal: false, op, correlationId: 42 });
      }
    }
  });

  it('names the consumer-group ops, and an unused op by its number', () => {
    expect(opName(0x30)).toBe('JOIN_GROUP');
    expect(opName(0xb1)).toBe('HEARTBEAT_OK');
    expect(opName(0xe8)).toBe('ASSIGNMENT');
    expect(opName(0x5a)).toBe('0x5a');
    const err = decodeError(() => decodeClientFrame(rawFrame(0x3f, 1, [1, 2, 3])));
    expect(err.fatal).toBe(false);
    expect(err.message).toContain('unknown op 0x3f');
  });

  it('rejects a short header, non-zero flags or reserved bits, and a request with correlation id 0, as fatal', () => {
    for (let n = 0; n < 8; n++) expect(decodeError(() => decodeClientFrame(new Uint8Array(n)))).toMatchObject({ fatal: true, op: 0, correlationId: 0 });
    const metadata = encodeClientFrame({ op: Op.METADATA, correlationId: 9 });
    for (const [at, value] of [[1, 1], [2, 0x80], [3, 1]]) {
      const bytes = metadata.slice();
      bytes[at] = value;
      expect(decodeError(() => decodeClientFrame(bytes))).toMatchObject({ fatal: true, op: Op.METADATA, correlationId: 9 });
    }
    expect(decodeError(() => decodeClientFrame(rawFrame(Op.METADATA, 0, [])))).toMatchObject({ fatal: true });
    expect(decodeError(() => decodeServerFrame(rawFrame(Op.PRODUCE_OK, 0, new Array(16).fill(0))))).toMatchObject({ fatal: true });
    expect(decodeError(() => decodeServerFrame(rawFrame(Op.DATA, 5, [...i64(0, 0), ...u32(1), ...u32(0)])))).toMatchObject({ fatal: true });
    // an ERROR not tied to a request (correlation id 0) is legal
    const err = decodeServerFrame(rawFrame(Op.ERROR, 0, [...u32(0), ...u16(42), 0x01, 0, ...u16(0)]));
    expect(err).toMatchObject({ op: Op.ERROR, correlationId: 0, code: 'INVALID_REQUEST', requestOp: 1, retriable: false, message: '' });
  });

  it('rejects huge string, bytes and array lengths without allocating, as fatal', () => {
    const topic = (length: number): number[] => [...u16(length), 0x61];
    // DESCRIBE_TOPIC whose topic claims 65535 bytes
    expect(decodeError(() => decodeClientFrame(rawFrame(Op.DESCRIBE_TOPIC, 1, topic(0xffff))))).toMatchObject({ fatal: true });
    // PRODUCE whose batch claims 4 GiB - 1
    const produce = [...i64(-1, -1), ...u32(0), 0xff, ...u16(1), 0x74, ...u32(0xffff_ffff), 1, 2, 3];
    expect(decodeError(() => decodeClientFrame(rawFrame(Op.PRODUCE, 1, produce)))).toMatchObject({ fatal: true });
    // LIST_TOPICS_OK claiming 2^32 - 1 names, METADATA_OK claiming 2^32 - 1 topics
    const started = performance.now();
    expect(decodeError(() => decodeServerFrame(rawFrame(Op.LIST_TOPICS_OK, 1, [...u32(0xffff_ffff), 0, 0])))).toMatchObject({ fatal: true });
    expect(decodeError(() => decodeServerFrame(rawFrame(Op.METADATA_OK, 1, [...u16(1), ...u16(0), ...u32(0xffff_ffff)])))).toMatchObject({ fatal: true });
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('rejects a string longer than STRING_BYTES_MAX that is present in full as a non-fatal error', () => {
    const length = limits.STRING_BYTES_MAX + 1;
    const err = decodeError(() => decodeClientFrame(rawFrame(Op.DELETE_TOPIC, 3, [...u16(length), ...new Array(length).fill(0x61)])));
    expect(err).toMatchObject({ fatal: false, correlationId: 3 });
    expect(() => encodeClientFrame({ op: Op.DELETE_TOPIC, correlationId: 3, topic: 'a'.repeat(length) })).toThrow(SluiceError);
  });

  it('rejects invalid UTF-8 (bad continuation, overlong, encoded surrogate, cut sequence) as a non-fatal error', () => {
    const cases = [[0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82], [0xff], [0xf4, 0x90, 0x80, 0x80]];
    for (const bad of cases) {
      const err = decodeError(() => decodeClientFrame(rawFrame(Op.DESCRIBE_TOPIC, 4, [...u16(bad.length), ...bad])));
      expect(err).toMatchObject({ fatal: false, correlationId: 4, op: Op.DESCRIBE_TOPIC });
      expect(err.message).toContain('UTF-8');
    }
  });

  it('encodes a lone surrogate as U+FFFD, and keeps a leading byte order mark', () => {
    const bytes = encodeClientFrame({ op: Op.DESCRIBE_TOPIC, correlationId: 1, topic: 'a\uD800b' });
    expect(decodeClientFrame(bytes)).toMatchObject({ topic: 'a\uFFFDb' });
    expect(decodeClientFrame(encodeClientFrame({ op: Op.DESCRIBE_TOPIC, correlationId: 1, topic: '\uFEFFx' }))).toMatchObject({ topic: '\uFEFFx' });
    expect(utf8Length('a\uD800b')).toBe(5);
    expect(utf8Length('\u{1F600}')).toBe(4);
  });

  it('rejects int64 values beyond +-(2^53 - 1) as non-fatal, and accepts the edges', () => {
    const frame = (high: number, low: number): Uint8Array => rawFrame(Op.LIST_OFFSETS, 8, [...i64(high, low), ...u32(0), ...u16(1), 0x74]);
    for (const [high, low] of [[0x20_0000, 0], [0x7fff_ffff, 0xffff_ffff], [-0x20_0000, 0], [-0x8000_0000, 0], [-0x20_0001, 0xffff_ffff]]) {
      const err = decodeError(() => decodeClientFrame(frame(high, low)));
      expect(err).toMatchObject({ fatal: false, correlationId: 8 });
      expect(err.message).toContain('safe integer');
    }
    expect(decodeClientFrame(frame(0x1f_ffff, 0xffff_ffff))).toMatchObject({ timestamp: Number.MAX_SAFE_INTEGER });
    expect(decodeClientFrame(frame(-0x20_0000, 1))).toMatchObject({ timestamp: -Number.MAX_SAFE_INTEGER });
    expect(decodeClientFrame(frame(-1, 0xffff_ffff))).toMatchObject({ timestamp: -1 });
    expect(decodeClientFrame(frame(-1, 0xffff_fffe))).toMatchObject({ timestamp: -2 });
    for (const timestamp of [2 ** 53, -(2 ** 53), 1.5, Number.NaN, Infinity]) {
      expect(() => encodeListOffsets({ correlationId: 1, timestamp, partition: 0, topic: 't' })).toThrow(SluiceError);
    }
  });

  it('prefers a structural fault to a bad value wherever they are, so the fatal decision does not depend on field order', () => {
    // unsafe timestamp (a bad value), then a topic length running past the end (structural)
    const bytes = rawFrame(Op.LIST_OFFSETS, 2, [...i64(0x7fff_ffff, 0), ...u32(0), ...u16(9), 0x74]);
    expect(decodeError(() => decodeClientFrame(bytes)).fatal).toBe(true);
  });

  it('rejects a bool other than 0 or 1 as a non-fatal error', () => {
    const err = decodeError(() => decodeServerFrame(rawFrame(Op.ERROR, 1, [...u32(0), ...u16(42), 0x02, 0x07, ...u16(0)])));
    expect(err.fatal).toBe(false);
  });

  it('decodes an error number it does not know as INTERNAL, keeping the retriable flag from the wire', () => {
    const frame = decodeServerFrame(rawFrame(Op.ERROR, 5, [...u32(250), ...u16(4242), Op.PRODUCE, 1, ...u16(2), 0x68, 0x69]));
    expect(frame).toMatchObject({ op: Op.ERROR, code: 'INTERNAL', retriable: true, backoffMs: 250, requestOp: Op.PRODUCE, message: 'hi' });
  });
});

describe('frame codec: encoders', () => {
  it('builds a PRODUCE frame around a batch already in place (produceHeadBytes), byte for byte as encodeProduce, and sets a correlationId in place', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 0xffff_ffff }), (topic, bytes, id) => {
        const fields = { producerId: 7, partition: 3, acks: -1, topic };
        const head = produceHeadBytes(topic);
        const buffer = new Uint8Array(head + bytes.length);
        const batch = buffer.subarray(head);
        batch.set(bytes);
        expect(writeClientFrame({ op: Op.PRODUCE, correlationId: 1, ...fields, batch }, buffer)).toBe(buffer.length);
        setCorrelationId(buffer, id);
        expect(buffer).toEqual(encodeProduce({ correlationId: id, ...fields, batch: bytes }));
        expect(decodeClientFrame(buffer)).toMatchObject({ op: Op.PRODUCE, correlationId: id, topic });
      }),
      { numRuns: 200, seed: testSeed() },
    );
  });

  it('rejects values that do not fit their wire type with INVALID_ARGUMENT', () => {
    const produce = { correlationId: 1, producerId: -1, partition: 0, acks: -1, topic: 't', batch: new Uint8Array(1) };
    const bad: [string, unknown][] = [
      ['correlationId', 0],
      ['correlationId', 2 ** 32],
      ['partition', 2 ** 31],
      ['partition', 0.5],
      ['acks', 128],
      ['producerId', 2 ** 53],
      ['topic', 7],
      ['batch', [1, 2]],
    ];
    for (const [field, value] of bad) {
      const err = (() => {
        try {
          encodeProduce({ ...produce, [field]: value } as typeof produce);
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err, `${field} = ${String(value)}`).toBeInstanceOf(SluiceError);
      expect((err as SluiceError).code).toBe('INVALID_ARGUMENT');
    }
    expect(() => encodeClientFrame({ op: 0x7e, correlationId: 1 } as unknown as ClientFrame)).toThrow(/not a client frame/);
    expect(() => encodeServerFrame({ op: Op.DATA, correlationId: 3, subscriptionId: 1, highWatermark: 0, records: new Uint8Array() } as unknown as ServerFrame)).toThrow(/push/);
    expect(() => writeClientFrame({ op: Op.METADATA, correlationId: 1 }, new Uint8Array(7))).toThrow(/does not fit/);
  });

  it('cuts an error message longer than STRING_BYTES_MAX at a character boundary instead of failing', () => {
    const message = '\u{1F600}'.repeat(limits.STRING_BYTES_MAX); // 4 bytes each
    const frame = decodeServerFrame(encodeError({ correlationId: 1, backoffMs: 0, code: 'INTERNAL', requestOp: 2, retriable: false, message }));
    if (frame.op !== Op.ERROR) throw new Error('expected ERROR');
    expect(utf8Length(frame.message)).toBe(limits.STRING_BYTES_MAX);
    expect(frame.message).toBe('\u{1F600}'.repeat(limits.STRING_BYTES_MAX / 4));
    expect(truncateUtf8('ab\u00e9', 3)).toBe('ab');
    expect(truncateUtf8('abc', 3)).toBe('abc');
  });

  it('builds ERROR frames from SluiceErrors (code, retriable, back-off) and from anything else (INTERNAL), and back', () => {
    const throttled = errorFrameOf(new SluiceError('THROTTLED', 'ring full', { backoffMs: 5 }), { op: Op.PRODUCE, correlationId: 77 });
    expect(throttled).toEqual({ op: Op.ERROR, correlationId: 77, backoffMs: 5, code: 'THROTTLED', requestOp: Op.PRODUCE, retriable: true, message: 'ring full' });
    const back = toSluiceError(decodeServerFrame(encodeServerFrame(throttled)) as typeof throttled);
    expect(back).toMatchObject({ code: 'THROTTLED', retriable: true, backoffMs: 5, message: 'ring full' });
    expect(errorFrameOf(new TypeError('boom'), { op: Op.FETCH, correlationId: 1 })).toMatchObject({ code: 'INTERNAL', message: 'boom', retriable: false });
    const frameErr = decodeError(() => decodeClientFrame(rawFrame(0x5a, 12, [])));
    expect(errorFrameOf(frameErr, frameErr)).toMatchObject({ correlationId: 12, requestOp: 0x5a, code: 'INVALID_REQUEST' });
    for (const code of ERROR_CODES) {
      const bytes = encodeError({ correlationId: 1, backoffMs: 0, code, requestOp: 1, retriable: false, message: '' });
      expect(new DataView(bytes.buffer).getUint16(12, false)).toBe(errorNumber(code));
    }
  });

  it('knows which requests get no response: CREDIT and a produce with acks=0', () => {
    const produce = { op: Op.PRODUCE, correlationId: 1, producerId: -1, partition: 0, topic: 't', batch: new Uint8Array() } as const;
    expect(expectsResponse({ ...produce, acks: 0 })).toBe(false);
    expect(expectsResponse({ ...produce, acks: 1 })).toBe(true);
    expect(expectsResponse({ ...produce, acks: -1 })).toBe(true);
    expect(expectsResponse({ op: Op.CREDIT, correlationId: 1, subscriptionId: 1, creditBytes: 10 })).toBe(false);
    expect(expectsResponse({ op: Op.METADATA, correlationId: 1 })).toBe(true);
  });

  it('chooses the highest common protocol version, or none', () => {
    expect(chooseProtocolVersion(1, 1)).toBe(1);
    expect(chooseProtocolVersion(1, 9)).toBe(limits.PROTOCOL_VERSION);
    expect(chooseProtocolVersion(2, 9)).toBe(limits.PROTOCOL_VERSION >= 2 ? limits.PROTOCOL_VERSION : null);
    expect(chooseProtocolVersion(0, 0)).toBeNull();
    expect(chooseProtocolVersion(3, 2)).toBeNull();
    const hello = decodeClientFrame(encodeHello({ correlationId: 1, versionMin: 1, versionMax: 1, clientId: 'browser-1' }));
    expect(hello).toEqual({ op: Op.HELLO, correlationId: 1, versionMin: 1, versionMax: 1, clientId: 'browser-1' });
  });
});

describe('frame codec: the PRODUCE head writer', () => {
  it('writes the bytes writeClientFrame writes around a batch already in place (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.constantFrom(-1, 0, 1),
        fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }),
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.integer({ min: 1, max: 0xffff_ffff }),
        (producerId, partition, acks, topic, batch, correlationId) => {
          const head = produceHeadBytes(topic);
          const generic = new Uint8Array(head + batch.length);
          generic.set(batch, head);
          writeClientFrame({ op: Op.PRODUCE, correlationId, producerId, partition, acks, topic, batch: generic.subarray(head) }, generic);
          const fast = new Uint8Array(head + batch.length).fill(0xee);
          fast.set(batch, head);
          writeProduceHead(fast, correlationId, producerId, partition, acks, new TextEncoder().encode(topic), batch.length);
          expect(Buffer.from(fast)).toEqual(Buffer.from(generic));
          expect(decodeClientFrame(fast)).toMatchObject({ op: Op.PRODUCE, correlationId, producerId, partition, acks, topic });
        },
      ),
      { seed: 8 },
    );
  });

  it('writes the DATA head encodeDataHead gives, in front of records already in place (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 0xffff_ffff }), fc.uint8Array({ minLength: 0, maxLength: 200 }), (highWatermark, subscriptionId, records) => {
        const frame = new Uint8Array(DATA_HEAD_BYTES + records.length).fill(0xee);
        frame.set(records, DATA_HEAD_BYTES);
        writeDataHead(frame, highWatermark, subscriptionId);
        const head = encodeDataHead({ highWatermark, subscriptionId }, records.length);
        expect(Buffer.from(frame.subarray(0, DATA_HEAD_BYTES))).toEqual(Buffer.from(head));
        expect(decodeServerFrame(frame)).toMatchObject({ op: Op.DATA, highWatermark, subscriptionId });
      }),
      { seed: 9 },
    );
  });

  it('refuses a frame whose size does not match the head and the batch', () => {
    const topic = new TextEncoder().encode('t');
    expect(() => writeProduceHead(new Uint8Array(10), 1, -1, 0, 1, topic, 5)).toThrow(/does not hold/);
  });
});

describe('protocol limits', () => {
  it('mirror the engine: the largest batch and the fetch limit', async () => {
    const { DEFAULT_LOG_CONFIG } = await import('../../src/persist/partition-log.js');
    const { FETCH_BYTES_MAX } = await import('../../src/engine/engine.js');
    expect(limits.BATCH_BYTES_MAX).toBe(DEFAULT_LOG_CONFIG.batchBytesMax);
    expect(limits.FETCH_BYTES_MAX).toBe(FETCH_BYTES_MAX);
  });

  it('let a maximal produce and a maximal fetch response fit one frame', () => {
    const batch = new Uint8Array(limits.BATCH_BYTES_MAX);
    const produce = encodeProduce({ correlationId: 1, producerId: 1, partition: 0, acks: -1, topic: 'x'.repeat(249), batch });
    expect(produce.length).toBeLessThanOrEqual(limits.FRAME_BYTES_MAX);
    expect(FETCH_OK_HEAD_BYTES + Math.max(limits.FETCH_BYTES_MAX, limits.BATCH_BYTES_MAX)).toBeLessThanOrEqual(limits.FRAME_BYTES_MAX);
  });

  it('keep the codec free of Node-only imports (it runs in browsers)', () => {
    for (const file of ['../../src/ws-gateway/frames.ts', '../../src/ws-gateway/limits.ts', '../../src/errors.ts', '../../src/assert.ts']) {
      const source = readFileSync(new URL(file, import.meta.url), 'utf8');
      const imports = [...source.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
      for (const spec of imports) expect(['../assert.js', '../errors.js', './limits.js'], `${file} imports ${spec}`).toContain(spec);
      expect(source).not.toMatch(/\bBuffer\b|node:/);
    }
  });
});
