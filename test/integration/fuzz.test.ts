/**
 * Fuzzing a live gateway: seeded random and mutated frames (random bytes, valid frames of
 * every op with random field values, byte flips, truncations, huge lengths, bytes left
 * over, bad headers, text messages, frames before HELLO, frames over frameBytesMax) over
 * several connections at once. Each frame must get the answer docs/protocol.md's table
 * gives it, never silence where a response is due; meanwhile a well-behaved client on its
 * own connection keeps producing and consuming a topic the fuzz never names, and at the
 * end that topic holds exactly what the good client wrote.
 *
 * The oracle for "what is this frame" is the codec (frames.ts's decodeClientFrame, unit
 * tested field by field): a FrameError is a framing fault (answered ERROR, then 1002 if
 * fatal or before HELLO), a decoded frame is a request (answered by its response or an
 * ERROR naming its op; no answer only for CREDIT and PRODUCE acks=0).
 *
 * Seeded: SLUICE_FUZZ_SEED=<n> replays a run; every failure message carries the seed.
 */
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { F } from '../fixtures/gateway-client.js';
import { loadClient, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';
import { seededRandom } from '../helpers/random.js';

type ServerFrame = import('../../src/ws-gateway/frames.js').ServerFrame;
type ClientFrame = import('../../src/ws-gateway/frames.js').ClientFrame;

const S = await loadSluice();
const C = await loadClient();
const Op = F.Op;

const SEED = process.env.SLUICE_FUZZ_SEED ? Number(process.env.SLUICE_FUZZ_SEED) : Math.floor(Math.random() * 0x7fff_ffff);
/** Frames thrown at the gateway in one run. */
const FRAMES_TOTAL = 3_000;
/** Connections fuzzing at once (each sends one frame, waits for its verdict, then the next). */
const FUZZERS = 6;
/** The run stops sending after this, whatever is left (a loaded CI machine); the count reached is asserted. */
const FUZZ_TIME_BUDGET_MS = 15_000;
/** At least this many frames must be checked within the budget. */
const FRAMES_MIN = 1_500;
/** Longest wait for an answer, a close or a probe (a produce with acks=all waits for fdatasync). */
const ANSWER_TIMEOUT_MS = 5_000;
/** Smaller than the default so oversize frames are cheap to build; still above every generated valid frame. */
const FRAME_BYTES_MAX = 64 * 1024;
/** Long-polls end quickly, so a FETCH's answer is never far. */
const FETCH_WAIT_MS_MAX = 100;
/** Correlation ids of the probes that prove silence (a request sent after a frame that gets no answer). */
const PROBE_ID = 0xffff_fff0;

const FUZZ_TOPIC = 'fz';
const CHECKED_TOPIC = 'checked';
/** Names the fuzz uses; none is CHECKED_TOPIC (or has its length, so a byte flip cannot make it). */
const FUZZ_NAMES = [FUZZ_TOPIC, FUZZ_TOPIC, FUZZ_TOPIC, 'fz-new-a', 'fz-new-b', 'nope', '', '..', 'fz\u00e9', 'x'.repeat(249)];

let dir: ReturnType<typeof tempDir>;
let engine: Awaited<ReturnType<typeof S.Engine.open>>;
let gateway: Awaited<ReturnType<typeof S.startGateway>>;
let logger: ReturnType<typeof memoryLogger>;

beforeAll(async () => {
  dir = tempDir('fuzz');
  logger = memoryLogger();
  engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger });
  gateway = await S.startGateway({ engine, port: 0, logger, limits: { frameBytesMax: FRAME_BYTES_MAX, fetchWaitMsMax: FETCH_WAIT_MS_MAX } });
  await engine.createTopic(FUZZ_TOPIC, { partitions: 2 });
  await engine.createTopic(CHECKED_TOPIC, { partitions: 1 });
});

afterAll(async () => {
  await gateway?.close();
  await engine?.close();
  dir?.remove();
});

// ---------------------------------------------------------------- generators

type Rng = () => number;
const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];

function randomBytes(rng: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng() * 256);
  return b;
}

/** An i64 a JavaScript number can hold, edges included. */
const i64 = (rng: Rng): number => pick(rng, [0, 0, 1, -1, -2, -3, 5, 1_700_000_000_000, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, int(rng, -1e12, 1e12)]);
const i32 = (rng: Rng): number => pick(rng, [0, 0, 1, 1, -1, 2, 3, 1024, 0x7fff_ffff, -0x8000_0000, int(rng, -1e9, 1e9)]);
const u32 = (rng: Rng): number => pick(rng, [0, 1, 2, 64, 4096, 0xffff_ffff, int(rng, 0, 0xffff_ffff)]);
const topic = (rng: Rng): string => (rng() < 0.1 ? String.fromCharCode(...randomBytes(rng, int(rng, 1, 20)).map((b) => 0x61 + (b % 26))) : pick(rng, FUZZ_NAMES));

/** A RecordBatch v2 for PRODUCE: mostly valid (plain producer), sometimes corrupt, short or random. */
function batch(rng: Rng): Uint8Array {
  const roll = rng();
  if (roll < 0.1) return randomBytes(rng, int(rng, 0, 120));
  const records = Array.from({ length: int(rng, 1, 4) }, () => ({ key: rng() < 0.5 ? null : randomBytes(rng, int(rng, 0, 8)), value: randomBytes(rng, int(rng, 0, 64)) }));
  const b = S.encodeBatch(records);
  if (roll < 0.2) b[int(rng, 0, b.length - 1)] ^= 1 << int(rng, 0, 7);
  return b;
}

/** A structurally valid frame of `op` with random field values (some bad, all within the encoders' ranges); correlationId may be 0. */
function validFrame(rng: Rng, op: number, correlationId: number): Uint8Array {
  // The encoders refuse correlationId 0: encode with 1, then write the real one.
  const b = validFrameBody(rng, op);
  new DataView(b.buffer, b.byteOffset).setUint32(4, correlationId);
  return b;
}

function validFrameBody(rng: Rng, op: number): Uint8Array {
  const correlationId = 1;
  switch (op) {
    case Op.HELLO:
      return F.encodeHello({ correlationId, versionMin: pick(rng, [1, 1, 0, 2]), versionMax: pick(rng, [1, 1, 2, 0, 0xffff]), clientId: pick(rng, ['', 'fuzz', 'ü'.repeat(100)]) });
    case Op.PRODUCE:
      return F.encodeProduce({ correlationId, producerId: pick(rng, [-1, -1, -1, 0, 12345, -2]), partition: pick(rng, [0, 1, 0, 2, -1]), acks: pick(rng, [-1, 1, 0, -1, 2, -128]), topic: topic(rng), batch: batch(rng) });
    case Op.FETCH:
      return F.encodeFetch({ correlationId, topic: topic(rng), partition: pick(rng, [0, 1, 5, -1]), offset: i64(rng), maxBytes: i32(rng), minBytes: i32(rng), maxWaitMs: pick(rng, [0, 0, 10, 100_000, -1]) });
    case Op.LIST_OFFSETS:
      return F.encodeListOffsets({ correlationId, topic: topic(rng), partition: pick(rng, [0, 1, 3, -1]), timestamp: i64(rng) });
    case Op.METADATA:
      return F.encodeMetadata({ correlationId });
    case Op.INIT_PRODUCER:
      return F.encodeInitProducer({ correlationId });
    case Op.SUBSCRIBE:
      return F.encodeSubscribe({ correlationId, subscriptionId: u32(rng), topic: topic(rng), partition: pick(rng, [0, 1, 4, -1]), offset: i64(rng), creditBytes: u32(rng) });
    case Op.CREDIT:
      return F.encodeCredit({ correlationId, subscriptionId: u32(rng), creditBytes: u32(rng) });
    case Op.UNSUBSCRIBE:
      return F.encodeUnsubscribe({ correlationId, subscriptionId: u32(rng) });
    case Op.LIST_TOPICS:
      return F.encodeListTopics({ correlationId });
    case Op.DESCRIBE_TOPIC:
      return F.encodeDescribeTopic({ correlationId, topic: topic(rng) });
    case Op.CREATE_TOPIC: {
      const name = pick(rng, ['fz-new-a', 'fz-new-b', 'fz-new-c', '..', '', 'bad name']);
      return F.encodeCreateTopic({ correlationId, topic: name, partitions: pick(rng, [1, 2, 0, -1, 1025, 1024, i32(rng)]), retentionMs: i64(rng), retentionBytes: i64(rng), segmentMs: i64(rng), segmentBytes: pick(rng, [0, 1, 16 * 1024, i64(rng)]) });
    }
    case Op.DELETE_TOPIC:
      // Never the fuzzed topic (the fuzz keeps producing to it) nor the checked one.
      return F.encodeDeleteTopic({ correlationId, topic: pick(rng, ['fz-new-a', 'fz-new-b', 'fz-new-c', 'nope', '']) });
    default: {
      // An unknown or reserved op with a random body.
      const b = new Uint8Array(8 + int(rng, 0, 16));
      b.set(randomBytes(rng, b.length - 8), 8);
      b[0] = op;
      return b;
    }
  }
}

const REQUEST_OPS = [...F.CLIENT_OPS];
/** Ops no version-1 request has: unknown, reserved for groups, responses, pushes. */
const OTHER_OPS = [0x00, 0x07, 0x30, 0x34, 0x3f, 0x5f, 0x60, 0x7f, 0x81, 0x83, 0xe0, 0xff];

interface FuzzItem {
  kind: string;
  bytes: Uint8Array | string;
}

/** Partitions a fuzzed CREATE_TOPIC may really create: a 1024-partition topic takes seconds (11 s on 2 cores) and holds up every metadata request meanwhile. */
const FUZZ_PARTITIONS_MAX = 8;
/** CREATE_TOPIC's partitions field: after the header and four i64. */
const CREATE_TOPIC_PARTITIONS_OFFSET = 8 + 4 * 8;

/** One fuzz frame of a random kind, made cheap: a CREATE_TOPIC that would create many partitions asks for 1025 instead (refused). */
function fuzzItem(rng: Rng): FuzzItem {
  const item = anyFuzzItem(rng);
  if (typeof item.bytes !== 'string' && item.bytes.length <= FRAME_BYTES_MAX) {
    try {
      const f = F.decodeClientFrame(item.bytes);
      if (f.op === Op.CREATE_TOPIC && f.partitions > FUZZ_PARTITIONS_MAX) new DataView(item.bytes.buffer, item.bytes.byteOffset).setInt32(CREATE_TOPIC_PARTITIONS_OFFSET, 1025);
    } catch {
      // not a decodable frame: nothing to make cheaper
    }
  }
  return item;
}

function anyFuzzItem(rng: Rng): FuzzItem {
  const id = rng() < 0.05 ? pick(rng, [0, 0xffff_ffff]) : int(rng, 1, 1_000_000);
  const op = rng() < 0.9 ? pick(rng, REQUEST_OPS) : pick(rng, OTHER_OPS);
  const roll = rng();
  if (roll < 0.4) return { kind: `valid ${F.opName(op)}`, bytes: validFrame(rng, op, id) };
  const base = validFrame(rng, op, id);
  if (roll < 0.55) {
    const b = base.slice();
    for (let k = int(rng, 1, 4); k > 0; k--) b[int(rng, 0, b.length - 1)] ^= 1 << int(rng, 0, 7);
    return { kind: `flipped ${F.opName(op)}`, bytes: b };
  }
  if (roll < 0.65) return { kind: `truncated ${F.opName(op)}`, bytes: base.subarray(0, int(rng, 0, base.length - 1)) };
  if (roll < 0.72) {
    // A length or count field (wherever one may sit) claims far more than the frame holds.
    const b = base.slice();
    if (b.length >= 12) {
      const at = int(rng, 8, b.length - 2);
      if (rng() < 0.5 && at + 4 <= b.length) new DataView(b.buffer).setUint32(at, pick(rng, [0xffff_ffff, 0x7fff_ffff, b.length]));
      else new DataView(b.buffer).setUint16(at, 0xffff);
    }
    return { kind: `huge length ${F.opName(op)}`, bytes: b };
  }
  if (roll < 0.77) return { kind: `left over ${F.opName(op)}`, bytes: Uint8Array.from([...base, ...randomBytes(rng, int(rng, 1, 9))]) };
  if (roll < 0.82) {
    const b = base.slice();
    const v = new DataView(b.buffer);
    if (rng() < 0.5) v.setUint8(1, int(rng, 1, 255));
    else v.setUint16(2, int(rng, 1, 0xffff));
    return { kind: `bad header ${F.opName(op)}`, bytes: b };
  }
  if (roll < 0.9) return { kind: 'random bytes', bytes: randomBytes(rng, pick(rng, [0, 1, 7, 8, 9, int(rng, 0, 64), int(rng, 0, 2_000)])) };
  if (roll < 0.93) {
    // A random op byte and a zero header, random body: passes the header checks.
    const b = randomBytes(rng, int(rng, 8, 80));
    b.set([op, 0, 0, 0], 0);
    return { kind: `random body ${F.opName(op)}`, bytes: b };
  }
  if (roll < 0.97) return { kind: 'text', bytes: pick(rng, ['', 'hello', '\u0001\u0000\u0000\u0000', '{"op":1}', 'ü'.repeat(50)]) };
  if (roll < 0.985) return { kind: 'over frameBytesMax', bytes: randomBytes(rng, FRAME_BYTES_MAX + int(rng, 1, 1000)) };
  return { kind: `unsafe i64 ${F.opName(op)}`, bytes: unsafeI64(rng, base, op) };
}

/** Sets the first field (an i64 at offset 8 for PRODUCE, FETCH, LIST_OFFSETS, SUBSCRIBE, CREATE_TOPIC) outside the safe range. */
function unsafeI64(rng: Rng, base: Uint8Array, op: number): Uint8Array {
  const b = base.slice();
  if ([Op.PRODUCE, Op.FETCH, Op.LIST_OFFSETS, Op.SUBSCRIBE, Op.CREATE_TOPIC].includes(op as never) && b.length >= 16) {
    new DataView(b.buffer).setBigInt64(8, pick(rng, [2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n)]));
  }
  return b;
}

// ---------------------------------------------------------------- the oracle

type Expectation =
  | { kind: 'answer'; correlationId: number; op: number; thenClose: 1002 | null }
  | { kind: 'connection-error'; close: 1002 | 1003 }
  | { kind: 'oversize' }
  | { kind: 'silence' };

/** What docs/protocol.md says the gateway does with `item` on a connection (HELLO done or not). */
function expectationOf(item: FuzzItem, helloDone: boolean): Expectation {
  if (typeof item.bytes === 'string') return { kind: 'connection-error', close: 1003 };
  if (item.bytes.length > FRAME_BYTES_MAX) return { kind: 'oversize' };
  let frame: ClientFrame;
  try {
    frame = F.decodeClientFrame(item.bytes);
  } catch (err) {
    if (!(err instanceof Error) || err.name !== 'FrameError') throw err;
    const e = err as Error & { op: number; correlationId: number; fatal: boolean };
    const close = e.fatal || !helloDone ? 1002 : null;
    if (e.correlationId === 0) return { kind: 'connection-error', close: 1002 };
    return { kind: 'answer', correlationId: e.correlationId, op: e.op, thenClose: close };
  }
  if (!helloDone) return { kind: 'answer', correlationId: frame.correlationId, op: frame.op, thenClose: frame.op === Op.HELLO && helloAccepted(frame) ? null : 1002 };
  if (frame.op === Op.HELLO) return { kind: 'answer', correlationId: frame.correlationId, op: frame.op, thenClose: 1002 };
  if (!F.expectsResponse(frame)) return { kind: 'silence' };
  return { kind: 'answer', correlationId: frame.correlationId, op: frame.op, thenClose: null };
}

function helloAccepted(frame: ClientFrame): boolean {
  return frame.op === Op.HELLO && frame.versionMin <= frame.versionMax && F.chooseProtocolVersion(frame.versionMin, frame.versionMax) !== null;
}

// ---------------------------------------------------------------- a fuzzing connection

/** A raw socket that records every frame and its close; never throws from its handlers. */
class FuzzSocket {
  readonly ws: WebSocket;
  readonly frames: ServerFrame[] = [];
  readonly problems: string[] = [];
  closeCode: number | null = null;
  helloDone = false;
  readonly #waiters = new Set<() => void>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary) => {
      try {
        if (!isBinary) throw new Error('the server sent a text message');
        this.frames.push(F.decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
      } catch (err) {
        this.problems.push(`undecodable server frame: ${String(err)}`);
      }
      this.#wake();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      this.#wake();
    });
    ws.on('error', () => {});
  }

  static async open(port: number): Promise<FuzzSocket> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { maxPayload: 64 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new FuzzSocket(ws);
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves true once `done()` holds, false after timeoutMs. */
  async until(done: () => boolean, timeoutMs = ANSWER_TIMEOUT_MS): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.#waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
    return true;
  }

  /** The first frame from index `from` on with this correlation id (pushes have 0). */
  find(from: number, correlationId: number): ServerFrame | undefined {
    for (let i = from; i < this.frames.length; i++) if (this.frames[i].correlationId === correlationId) return this.frames[i];
    return undefined;
  }

  async hello(): Promise<void> {
    const from = this.frames.length;
    this.ws.send(F.encodeHello({ correlationId: 1, versionMin: 1, versionMax: 1, clientId: 'fuzz' }));
    if (!(await this.until(() => this.find(from, 1) !== undefined))) throw new Error('no HELLO_OK');
    this.helloDone = true;
  }
}

/** Sends one fuzz frame and checks the gateway's answer against the oracle; returns a problem or null. */
async function exchange(sock: FuzzSocket, item: FuzzItem): Promise<string | null> {
  const expected = expectationOf(item, sock.helloDone);
  const from = sock.frames.length;
  sock.ws.send(item.bytes, { binary: typeof item.bytes !== 'string' });
  switch (expected.kind) {
    case 'oversize':
      if (!(await sock.until(() => sock.closeCode !== null))) return 'an oversize frame did not close the connection';
      return [1006, 1009].includes(sock.closeCode!) ? null : `an oversize frame closed with ${sock.closeCode}, not 1006/1009`;
    case 'connection-error': {
      if (!(await sock.until(() => sock.closeCode !== null))) return `no close (expected ${expected.close})`;
      if (sock.closeCode !== expected.close) return `closed with ${sock.closeCode}, expected ${expected.close}`;
      const err = sock.find(from, 0);
      if (!err || err.op !== Op.ERROR || err.code !== 'INVALID_REQUEST') return `closed ${sock.closeCode} without ERROR INVALID_REQUEST (correlationId 0) first`;
      return null;
    }
    case 'silence': {
      // The gateway starts requests in arrival order: once the probe is answered, the frame before it was handled.
      const probeFrom = sock.frames.length;
      sock.ws.send(F.encodeListTopics({ correlationId: PROBE_ID }));
      if (!(await sock.until(() => sock.find(probeFrom, PROBE_ID) !== undefined || sock.closeCode !== null))) return 'the probe after a no-answer frame got no answer';
      if (sock.closeCode !== null) return `a frame that gets no answer closed the connection (${sock.closeCode})`;
      const probe = sock.find(probeFrom, PROBE_ID)!;
      if (probe.op !== Op.LIST_TOPICS_OK) return `the probe was answered ${F.opName(probe.op)}`;
      return null;
    }
    case 'answer': {
      const got = await sock.until(() => sock.find(from, expected.correlationId) !== undefined || sock.closeCode !== null);
      const answer = sock.find(from, expected.correlationId);
      if (!got || !answer) return `no answer to correlationId ${expected.correlationId} (${F.opName(expected.op)})${sock.closeCode !== null ? `; closed ${sock.closeCode}` : ''}`;
      if (answer.op === Op.ERROR) {
        if (answer.requestOp !== (expected.op & 0xff)) return `ERROR names op ${answer.requestOp}, expected ${expected.op}`;
        if (answer.code === 'INTERNAL') return `ERROR INTERNAL (a gateway bug): ${answer.message}`;
      } else if (answer.op !== (expected.op | 0x80) || expected.thenClose !== null) {
        return `answered ${F.opName(answer.op)}, expected ${expected.thenClose !== null ? 'ERROR' : `${F.opName(expected.op | 0x80)} or ERROR`}`;
      }
      if (expected.thenClose !== null) {
        if (!(await sock.until(() => sock.closeCode !== null))) return `not closed after a fatal ERROR (expected ${expected.thenClose})`;
        if (sock.closeCode !== expected.thenClose) return `closed with ${sock.closeCode}, expected ${expected.thenClose}`;
        return null;
      }
      if (answer.op === Op.HELLO_OK) sock.helloDone = true;
      if (sock.closeCode !== null) return `closed (${sock.closeCode}) after a non-fatal answer`;
      return null;
    }
  }
}

/** One fuzzer: a connection at a time (a fresh one after each close, a fifth of them without HELLO), `count` frames. */
async function fuzzer(rng: Rng, count: () => boolean, failures: string[], stats: Map<string, number>): Promise<void> {
  let sock: FuzzSocket | null = null;
  try {
    while (count()) {
      if (!sock || sock.closeCode !== null) {
        sock?.ws.terminate();
        sock = await FuzzSocket.open(gateway.port);
        if (rng() >= 0.2) await sock.hello();
      }
      const item = fuzzItem(rng);
      const kind = item.kind.split(' ')[0];
      stats.set(kind, (stats.get(kind) ?? 0) + 1);
      const problem = await exchange(sock, item);
      if (sock.problems.length > 0) failures.push(`${item.kind}: ${sock.problems.splice(0).join('; ')}`);
      if (problem) {
        const shown = typeof item.bytes === 'string' ? JSON.stringify(item.bytes) : Buffer.from(item.bytes.subarray(0, 64)).toString('hex');
        failures.push(`${item.kind} (${typeof item.bytes === 'string' ? 'text' : item.bytes.length + ' bytes'}, hello ${sock.helloDone}): ${problem}; frame starts ${shown}`);
        sock.ws.terminate();
        sock = null;
      }
    }
  } finally {
    sock?.ws.terminate();
  }
}

// ---------------------------------------------------------------- the good client

/** Produces to CHECKED_TOPIC and consumes each record back, one round after another, until stopped. */
async function goodClient(stop: () => boolean, failures: string[]): Promise<{ produced: string[]; consumed: string[] }> {
  const client = await C.connect({ url: `ws://127.0.0.1:${gateway.port}/`, clientId: 'good', WebSocket: WebSocket as never });
  const producer = client.producer({ lingerMs: 0, compression: 'none' });
  const consumer = client.consumer({ from: 'earliest' });
  await consumer.subscribe(CHECKED_TOPIC);
  const iterator = consumer[Symbol.asyncIterator]();
  const produced: string[] = [];
  const consumed: string[] = [];
  try {
    for (let n = 0; !stop() || n < 5; n++) {
      const value = `good-${n}`;
      const meta = await producer.send({ topic: CHECKED_TOPIC, key: `k${n % 3}`, value, headers: { n: String(n) } });
      produced.push(value);
      if (meta.offset !== n) failures.push(`good client: record ${n} stored at offset ${meta.offset}`);
      const next = await Promise.race([iterator.next(), new Promise<null>((r) => setTimeout(() => r(null), ANSWER_TIMEOUT_MS))]);
      if (!next || next.done) {
        failures.push(`good client: record ${n} not consumed within ${ANSWER_TIMEOUT_MS} ms`);
        break;
      }
      consumed.push(new TextDecoder().decode(next.value.value!));
      if (next.value.offset !== n) failures.push(`good client: consumed offset ${next.value.offset}, expected ${n}`);
      // Also the request-response path, straight after.
      const health = await globalThis.fetch(`http://127.0.0.1:${gateway.port}/healthz`);
      if (health.status !== 200) failures.push(`good client: /healthz answered ${health.status}`);
    }
  } finally {
    await consumer.close();
    await client.close();
  }
  return { produced, consumed };
}

// ---------------------------------------------------------------- the test

describe('the gateway under fuzzed input', () => {
  it(`answers every random and mutated frame as documented and keeps serving a well-behaved client (seed ${SEED})`, async () => {
    const failures: string[] = [];
    const stats = new Map<string, number>();
    const root = seededRandom(SEED);
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    const started = Date.now();
    let sent = 0;
    let fuzzDone = false;
    const more = () => sent < FRAMES_TOTAL && Date.now() - started < FUZZ_TIME_BUDGET_MS && (sent++, true);
    const good = goodClient(() => fuzzDone, failures).catch((err: unknown) => {
      failures.push(`good client failed: ${String(err)}`);
      return { produced: [] as string[], consumed: [] as string[] };
    });
    try {
      await Promise.all(Array.from({ length: FUZZERS }, () => fuzzer(seededRandom(Math.floor(root() * 0x7fff_ffff)), more, failures, stats)));
    } finally {
      fuzzDone = true;
    }
    const { produced, consumed } = await good;
    try {
      const elapsedMs = Date.now() - started;
      const context = `seed ${SEED} (replay: SLUICE_FUZZ_SEED=${SEED}); ${sent} frames in ${elapsedMs} ms; kinds ${JSON.stringify(Object.fromEntries(stats))}`;

      // One line in the test output: the seed to replay and how much was covered.
      // A flipped op byte can turn a frame naming the fuzzed topic into a valid DELETE_TOPIC of it.
      const fuzzOffsets = engine.listTopics().includes(FUZZ_TOPIC) ? engine.describeTopic(FUZZ_TOPIC).partitions.map((p) => p.logEndOffset).join(',') : 'deleted by the fuzz';
      console.info(`fuzz: ${context}; good client ${produced.length} rounds; fuzz topic offsets ${fuzzOffsets}`);
      expect(failures.slice(0, 20), context).toEqual([]);
      expect(uncaught.map(String), context).toEqual([]);
      expect(sent, context).toBeGreaterThanOrEqual(FRAMES_MIN);
      // The gateway logged no bug while serving (a handler that threw, an unexpected failure).
      expect(logger.lines.filter((l) => l.level === 'error').map((l) => `${l.msg} ${JSON.stringify(l.obj)}`), context).toEqual([]);

      // The checked topic holds exactly what the good client wrote, nothing from the fuzz.
      expect(consumed, context).toEqual(produced);
      expect(engine.describeTopic(CHECKED_TOPIC).partitions[0].logEndOffset, context).toBe(produced.length);
      const stored = await engine.fetch(CHECKED_TOPIC, 0, 0, { maxBytes: 1 << 20 });
      const values: string[] = [];
      S.forEachBatch(stored.records, (b: Uint8Array) => {
        const decoded = S.decodeBatch(b);
        for (const r of decoded.records) values.push(new TextDecoder().decode(r.value!));
      });
      expect(values, context).toEqual(produced);

      // And the gateway still answers a new connection.
      const after = await FuzzSocket.open(gateway.port);
      await after.hello();
      after.ws.close();
    } finally {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
    }
  });
});
