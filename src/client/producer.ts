/**
 * The producer: send() records, batched per partition (lingerMs, batchBytes), encoded as
 * RecordBatch v2 (optionally gzip), sent with acks 0, 1 or all, retried on retriable
 * errors with back-off (THROTTLED's backoffMs honoured), idempotent by default.
 *
 * Idempotence (docs/protocol.md): INIT_PRODUCER once; each sealed batch takes the
 * partition's next sequence (baseSequence, then + record count, wrapping after 2^31 - 1),
 * written into its header, so a resent batch is the same bytes and the broker stores it
 * once. At most IDEMPOTENT_BATCHES_PER_PARTITION produces are in flight per partition.
 *
 * lingerMs 0 follows Nagle's rule per partition: a record sent while the partition has
 * nothing in flight goes out at the end of the current turn (a microtask), with whatever
 * else that turn sent; while a batch is in flight the records gather and go out as one
 * batch when the last answer comes back or Node's timer (1 ms at the least) ends, whichever
 * is first. The batch rate then follows the round trip: a record waits at most the rest of
 * it (or of the timer), and the broker is not handed a request per record. acks 0 has no
 * answers to go by and keeps the timer alone. A lingerMs above 0 is waited for as set.
 *
 * Order per partition: batches are sealed, numbered and sent in send() order (the
 * connection's outbox is FIFO). When any batch of a partition fails retriably, the
 * partition stops sending, waits until every batch it has in flight is answered, waits the
 * back-off, and resends the failed batches in sequence order before anything newer (the
 * broker refuses the later ones with OUT_OF_ORDER_SEQUENCE meanwhile, which is retriable).
 * A batch refused for good (nothing is appended then) is rejected, and the batches after
 * it are renumbered from its sequence, so the partition carries on.
 *
 * While the connection is down, a partition's batches wait here, not in the connection's
 * outbox, and go out in order once it is back. Delivery timeout (Kafka's
 * delivery.timeout.ms): records not acknowledged within `deliveryTimeoutMs` of their batch's
 * first record fail with DELIVERY_TIMEOUT: a batch waiting here (for the broker, for a
 * retry, for room in the window) is failed by a check every EXPIRY_CHECK_MS_MAX at most,
 * and a batch answered with a retriable error after its deadline is not retried. A batch on
 * the wire is waited for until it is answered or its socket drops. Failing a batch that was
 * never sent renumbers the ones after it; failing one that was sent leaves its fate unknown
 * (the broker may have stored it), so its partition takes a new producer id (INIT_PRODUCER)
 * and numbers what follows from 0 under it: a sequence of the old id is never reused.
 *
 * Browser-safe; owner: the client's thread.
 */
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';
import { crc32cJs } from '../persist/crc32c-js.js';
import { RecordBatchBuilder, restampProducerFields, type Crc32cFunction, type RecordHeader } from '../persist/record-batch-codec.js';
import { Op, produceHeadBytes, writeProduceHead, type ProduceOk } from '../ws-gateway/frames.js';
import { BATCH_BYTES_MAX, IDEMPOTENT_BATCHES_PER_PARTITION } from '../ws-gateway/limits.js';
import { BatchAccumulator } from './accumulator.js';
import { backoffDelayMs, RETRY_BACKOFF, type BackoffOptions } from './backoff.js';
import type { Clock, Random, TimerHandle } from './clock.js';
import { finishProducerBatch, recordSizeEstimate, type ClientCompression } from './codec.js';
import { ClientClosedError, ConnectionLostError, isRetriableError, type Connection } from './connection.js';
import { partitionForKey } from './murmur2.js';

/** Kafka's linger.ms default is 5 ms since 3.x: enough to coalesce a burst of sends. */
export const LINGER_MS_DEFAULT = 5;
/** Kafka's batch.size default is 16 KiB; 64 KiB moves more per frame at little latency cost. */
export const BATCH_BYTES_DEFAULT = 64 * 1024;
/** Sequences are int32 and wrap to 0 after this (docs/protocol.md, idempotence step 2). */
export const SEQUENCE_MAX = 0x7fff_ffff;
/** Bytes of records accepted by send() and not yet acknowledged before send() waits (Kafka's buffer.memory is 32 MiB). */
export const BUFFER_BYTES_MAX_DEFAULT = 32 * 1024 * 1024;
/** Kafka's delivery.timeout.ms default: how long a record may wait for its acknowledgement. */
export const DELIVERY_TIMEOUT_MS_DEFAULT = 120_000;
/** The longest interval between two checks for batches past their delivery deadline. */
export const EXPIRY_CHECK_MS_MAX = 1000;
/** Slack between a batch's estimated records and the broker's limit: the 61-byte header and varint differences. */
const BATCH_HEADER_SLACK_BYTES = 128;

export type Acks = 'all' | -1 | 0 | 1;

export interface ProducerOptions {
  acks?: Acks;
  lingerMs?: number;
  batchBytes?: number;
  compression?: ClientCompression;
  /** Default true (needs acks 1 or all; acks 0 turns it off). */
  idempotent?: boolean;
  /** Retries per batch of retriable errors (a lost connection does not count). Default: unlimited. */
  retries?: number;
  retryBackoff?: BackoffOptions;
  bufferBytesMax?: number;
  /**
   * How long a record may wait for its acknowledgement, counted from its batch's first
   * record, before it fails with DELIVERY_TIMEOUT (Kafka's delivery.timeout.ms). Default
   * DELIVERY_TIMEOUT_MS_DEFAULT (120 s); Infinity waits for ever; at least lingerMs.
   */
  deliveryTimeoutMs?: number;
}

/** Header values as bytes or strings (UTF-8), in an object or, to repeat a key or keep an order, an array. */
export type HeadersInput = Record<string, string | Uint8Array | null> | { key: string; value: string | Uint8Array | null }[];

export interface ProducerRecord {
  topic: string;
  key?: Uint8Array | string | null;
  value: Uint8Array | string | null;
  headers?: HeadersInput;
  /** Chosen by key hash (or sticky without a key) when absent. */
  partition?: number;
  /** ms since the epoch; default now. */
  timestamp?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  /** -1 with acks 0 (no answer), or when a resent batch was stored by an earlier attempt whose offset the broker no longer remembers (DUPLICATE_SEQUENCE_NUMBER). */
  offset: number;
}

/**
 * Where a record's answer goes: its own promise (send) or its slot in a sendMany's one
 * promise. A batch answers runs of records: `count` records of one answer whose places in
 * it are `index`, `index + 1`, ... (a sendMany's records sealed together are one run), so
 * a sendMany allocates nothing per record until it resolves.
 */
interface Answer {
  done(index: number, count: number, topic: string, partition: number, firstOffset: number): void;
  fail(index: number, count: number, err: unknown): void;
}

/** The promise of one send(). */
class SingleAnswer implements Answer {
  readonly #resolve: (m: RecordMetadata) => void;
  readonly #reject: (err: unknown) => void;

  constructor(resolve: (m: RecordMetadata) => void, reject: (err: unknown) => void) {
    this.#resolve = resolve;
    this.#reject = reject;
  }

  done(_index: number, _count: number, topic: string, partition: number, offset: number): void {
    this.#resolve({ topic, partition, offset });
  }

  fail(_index: number, _count: number, err: unknown): void {
    this.#reject(err);
  }
}

/** The one promise of a sendMany: counts its records down, keeps their metadata in order. */
class SendGroup implements Answer {
  readonly results: RecordMetadata[];
  remaining: number;
  error: unknown = null;
  readonly #resolve: (m: RecordMetadata[]) => void;
  readonly #reject: (err: unknown) => void;

  constructor(count: number, resolve: (m: RecordMetadata[]) => void, reject: (err: unknown) => void) {
    this.results = new Array<RecordMetadata>(count);
    this.remaining = count;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  done(index: number, count: number, topic: string, partition: number, firstOffset: number): void {
    for (let i = 0; i < count; i++) this.results[index + i] = { topic, partition, offset: firstOffset < 0 ? -1 : firstOffset + i };
    this.#countDown(count);
  }

  fail(_index: number, count: number, err: unknown): void {
    if (this.error === null) this.error = err;
    this.#countDown(count);
  }

  #countDown(count: number): void {
    this.remaining -= count;
    if (this.remaining > 0) return;
    if (this.error !== null) this.#reject(this.error);
    else this.#resolve(this.results);
  }
}

/**
 * A partition's open batch: its records encoded as they come, and who to answer, as runs
 * (a run: `answers[r]` answers the records from `runStarts[r]` in this batch, whose places
 * in that answer start at `runIndexes[r]`).
 */
class OpenBatch {
  readonly builder: RecordBatchBuilder;
  /** When its first record came (the clock's ms): its delivery deadline counts from here. */
  readonly createdMs: number;
  readonly answers: Answer[] = [];
  readonly runStarts: number[] = [];
  readonly runIndexes: number[] = [];

  constructor(builder: RecordBatchBuilder, createdMs: number) {
    this.builder = builder;
    this.createdMs = createdMs;
  }

  /** Appends a record answered by `answer` at `index`. */
  append(key: Uint8Array | null, value: Uint8Array | null, headers: RecordHeader[], timestamp: number, answer: Answer, index: number): void {
    const position = this.builder.recordCount;
    this.builder.append(key, value, headers, timestamp);
    const last = this.answers.length - 1;
    if (last >= 0 && this.answers[last] === answer && this.runIndexes[last] + (position - this.runStarts[last]) === index) return;
    this.answers.push(answer);
    this.runStarts.push(position);
    this.runIndexes.push(index);
  }
}

interface SealedBatch {
  topic: string;
  partition: number;
  /** Its records (encoded) and who to answer for them. */
  open: OpenBatch;
  recordCount: number;
  /** The producer id and epoch its header carries (its partition's, when it was numbered). */
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  /** Encoded bytes, once ready (encoding with gzip is async). */
  bytes: Uint8Array | null;
  /** The PRODUCE frame around `bytes` (same buffer: the batch is not copied), sent as it is on every attempt. */
  frame: Uint8Array | null;
  encoding: Promise<void>;
  attempts: number;
  sizeBytes: number;
  /** Answered (its records' promises settled); a batch is answered once. */
  settled?: boolean;
}

/** A topic's partitions (by number) and its sticky partition for records without a key (KIP-480; -1: none yet). */
interface TopicState {
  partitions: PartitionState[];
  sticky: number;
}

interface PartitionState {
  topic: string;
  partition: number;
  /** The accumulator's key of the partition, `${partition}\0${topic}`, made once (a string per record cost 6% of a producer's time). */
  key: string;
  /** Bytes of this partition's PRODUCE frame before the batch. */
  headBytes: number;
  /** The topic's name as UTF-8, for each PRODUCE head. */
  topicUtf8: Uint8Array;
  /** Size of the last batch sealed: the next one's first buffer is a quarter larger (full batches stay full without regrowing). */
  lastBatchBytes: number;
  /** The producer id and epoch this partition's batches are numbered under (a partition takes a new one after an expired batch whose fate is unknown). */
  producerId: number;
  producerEpoch: number;
  nextSequence: number;
  /** Sealed, not yet sent, in sequence order. */
  queue: SealedBatch[];
  inFlight: SealedBatch[];
  /**
   * Answered with an error while recovering; `fatal` ones were rejected already and only
   * mark where the sequence resumes; `unknown` ones (fatal by their delivery deadline, not by
   * a refusal) may be stored, so the partition needs a new producer id.
   */
  failed: { batch: SealedBatch; error: unknown; fatal: boolean; unknown: boolean }[];
  recovering: boolean;
  /** A batch whose fate is unknown was failed: nothing is sent until the partition has a new producer id. */
  needsNewId: boolean;
  /** Its INIT_PRODUCER for that is in flight. */
  renewing: boolean;
  backoffMs: number;
  /** lingerMs 0: a microtask is queued to seal the open batch (the partition had nothing in flight). */
  sealQueued: boolean;
  /** That microtask, made once per partition. */
  sealIfIdle: () => void;
}

export interface ProducerContext {
  connection: Connection;
  clock: Clock;
  random: Random;
  crc32c?: Crc32cFunction;
  /** The topic's partition count, asking the broker when the cached one is stale or below `atLeast`. */
  partitionCount(topic: string, atLeast?: number): Promise<number>;
  /** The partition count if known without asking the server. */
  /** The cached count while it is fresh at `nowMs` (the caller's one clock read for a send or a sendMany), else undefined. */
  cachedPartitionCount(topic: string, nowMs: number): number | undefined;
}

const utf8 = new TextEncoder();

/** Bytes of a key, value or header value: a string is UTF-8; anything but bytes, a string or null is INVALID_ARGUMENT. */
function toBytes(v: Uint8Array | string | null | undefined, what: string): Uint8Array | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return utf8.encode(v);
  if (v instanceof Uint8Array) return v;
  throw new SluiceError('INVALID_ARGUMENT', `${what} must be a Uint8Array, a string or null, got ${typeof v}`);
}

/** Shared by every record sent without headers (frozen: nothing writes a record's headers). */
const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

function toHeaders(h: HeadersInput | undefined): RecordHeader[] {
  if (!h) return NO_HEADERS;
  const entries: [unknown, Uint8Array | string | null][] = Array.isArray(h) ? h.map((x) => [x?.key, x?.value]) : Object.entries(h);
  return entries.map(([key, value]) => {
    if (typeof key !== 'string') throw new SluiceError('INVALID_ARGUMENT', `a header key must be a string, got ${typeof key}`);
    return { key, value: toBytes(value, `header ${key}`) };
  });
}

function acksNumber(acks: Acks): -1 | 0 | 1 {
  return acks === 'all' ? -1 : acks;
}

export class Producer {
  readonly #ctx: ProducerContext;
  readonly #acks: -1 | 0 | 1;
  readonly #idempotent: boolean;
  readonly #compression: ClientCompression;
  readonly #retries: number;
  readonly #retryBackoff: BackoffOptions;
  readonly #bufferBytesMax: number;
  readonly #batchBytes: number;
  /** The CRC-32C the batches are sealed with: the injected one (native in Node), else the JS table. */
  readonly #crc: Crc32cFunction;
  readonly #accumulator: BatchAccumulator<OpenBatch>;
  /** lingerMs 0 with answers to go by (acks 1 or all): Nagle's rule (see the top of this file). */
  readonly #sealWhenIdle: boolean;
  readonly #partitions = new Map<string, PartitionState>();
  /** topic -> partition -> its state (the same objects as #partitions, found without building a key). */
  readonly #topicStates = new Map<string, TopicState>();
  #identity: Promise<{ producerId: number; producerEpoch: number }> | null = null;
  #producerId = -1;
  #producerEpoch = -1;
  /** Sends waiting for metadata or the producer id: later sends queue behind them to keep send() order. */
  #chain: Promise<void> | null = null;
  #chainDepth = 0;
  #bufferedBytes = 0;
  readonly #bufferWaiters: (() => void)[] = [];
  /** Records sent and not yet answered (a counter, not a promise per record: send is hot). */
  #unsettledRecords = 0;
  readonly #idleWaiters: (() => void)[] = [];
  #closed = false;
  readonly #deliveryTimeoutMs: number;
  /** The delivery-deadline check, armed while records are unsettled (finite deliveryTimeoutMs only). */
  #expiryTimer: TimerHandle | null = null;
  /** The chain's step now waiting (for buffer room, the producer id or metadata): its deadline, and how to fail it. */
  #chainDeadlineMs = Number.POSITIVE_INFINITY;
  #chainAbort: ((err: unknown) => void) | null = null;
  readonly #unlistenReconnect: () => void;

  constructor(ctx: ProducerContext, options: ProducerOptions = {}) {
    this.#ctx = ctx;
    const acks = options.acks ?? 'all';
    if (acks !== 'all' && acks !== -1 && acks !== 0 && acks !== 1) throw new SluiceError('INVALID_ARGUMENT', `acks must be 'all', -1, 0 or 1, got ${String(acks)}`);
    this.#acks = acksNumber(acks);
    // As Kafka 3: idempotence is on by default and off with acks 0, but asked for with acks 0 it is a contradiction.
    if (options.idempotent === true && this.#acks === 0) throw new SluiceError('INVALID_ARGUMENT', 'an idempotent producer needs acks 1 or all (acks 0 has no answer to check)');
    this.#idempotent = (options.idempotent ?? true) && this.#acks !== 0;
    this.#compression = options.compression ?? 'none';
    if (this.#compression !== 'none' && this.#compression !== 'gzip') throw new SluiceError('INVALID_ARGUMENT', `compression must be 'none' or 'gzip'`);
    this.#retries = options.retries ?? Number.POSITIVE_INFINITY;
    if (!(this.#retries === Number.POSITIVE_INFINITY || (Number.isSafeInteger(this.#retries) && this.#retries >= 0))) {
      throw new SluiceError('INVALID_ARGUMENT', `retries must be an integer >= 0 or Infinity, got ${String(options.retries)}`);
    }
    this.#retryBackoff = options.retryBackoff ?? RETRY_BACKOFF;
    this.#bufferBytesMax = options.bufferBytesMax ?? BUFFER_BYTES_MAX_DEFAULT;
    if (!(Number.isSafeInteger(this.#bufferBytesMax) && this.#bufferBytesMax >= 1)) {
      throw new SluiceError('INVALID_ARGUMENT', `bufferBytesMax must be an integer >= 1, got ${String(options.bufferBytesMax)}`);
    }
    this.#crc = ctx.crc32c ?? crc32cJs;
    const batchBytesMax = Math.min(ctx.connection.limits.batchBytesMax, BATCH_BYTES_MAX) - BATCH_HEADER_SLACK_BYTES;
    this.#batchBytes = Math.min(options.batchBytes ?? BATCH_BYTES_DEFAULT, batchBytesMax);
    if (!(this.#batchBytes >= 1)) throw new SluiceError('INVALID_ARGUMENT', 'batchBytes must be >= 1');
    const lingerMs = options.lingerMs ?? LINGER_MS_DEFAULT;
    if (!(Number.isFinite(lingerMs) && lingerMs >= 0)) throw new SluiceError('INVALID_ARGUMENT', `lingerMs must be a number >= 0, got ${String(options.lingerMs)}`);
    this.#sealWhenIdle = lingerMs === 0 && this.#acks !== 0;
    this.#deliveryTimeoutMs = options.deliveryTimeoutMs ?? DELIVERY_TIMEOUT_MS_DEFAULT;
    if (!(this.#deliveryTimeoutMs === Number.POSITIVE_INFINITY || (Number.isFinite(this.#deliveryTimeoutMs) && this.#deliveryTimeoutMs > 0 && this.#deliveryTimeoutMs >= lingerMs))) {
      throw new SluiceError('INVALID_ARGUMENT', `deliveryTimeoutMs must be a number > 0 and >= lingerMs (${lingerMs}), or Infinity, got ${String(options.deliveryTimeoutMs)}`);
    }
    this.#accumulator = new BatchAccumulator<OpenBatch>({
      lingerMs,
      batchBytes: this.#batchBytes,
      clock: ctx.clock,
      create: (key) => {
        const state = this.#partitions.get(key)!;
        // A quarter more than the last batch: batches sealed by the linger timer vary by a record
        // or two, and a builder that outgrows its buffer allocates and copies another (an
        // ArrayBuffer costs about 3 µs here); never more than a full batch needs.
        const initial = Math.min(state.lastBatchBytes + (state.lastBatchBytes >> 2), this.#batchBytes + BATCH_HEADER_SLACK_BYTES);
        return new OpenBatch(new RecordBatchBuilder(state.headBytes, initial), ctx.clock.now());
      },
      canSeal: (key) => this.#hasRoom(this.#partitions.get(key)!),
      onSeal: (key, open, bytes) => this.#onSeal(key, open, bytes),
    });
    // Batches held while the connection was down go out once it is back.
    this.#unlistenReconnect = ctx.connection.onReconnected(() => {
      for (const state of this.#partitions.values()) this.#pump(state);
    });
  }

  /** The producer id and epoch (-1 until the first idempotent send). */
  get identity(): { producerId: number; producerEpoch: number } {
    return { producerId: this.#producerId, producerEpoch: this.#producerEpoch };
  }

  /** Sends one record; resolves with its partition and offset once acknowledged (acks 0: when sent, offset -1). */
  send(record: ProducerRecord): Promise<RecordMetadata> {
    return new Promise<RecordMetadata>((resolve, reject) => this.#submit(record, new SingleAnswer(resolve, reject), 0, this.#ctx.clock.now()));
  }

  /**
   * Sends many records with one promise (as kafkajs's `send({ topic, messages })`):
   * resolves with each record's partition and offset, in the order given, once all are
   * acknowledged; rejects with the first error (the others may still be stored). The fast
   * path: no promise per record.
   */
  sendMany(records: ProducerRecord[]): Promise<RecordMetadata[]> {
    if (!Array.isArray(records)) return Promise.reject(new SluiceError('INVALID_ARGUMENT', 'sendMany needs an array of records'));
    if (records.length === 0) return Promise.resolve([]);
    return new Promise<RecordMetadata[]>((resolve, reject) => {
      const group = new SendGroup(records.length, resolve, reject);
      const now = this.#ctx.clock.now(); // one clock read for the whole array
      for (let i = 0; i < records.length; i++) this.#submit(records[i], group, i, now);
    });
  }

  /** Validates one record and queues it; answers through `answer` (at `index`), exactly once. `now` is the default timestamp. */
  #submit(record: ProducerRecord, answer: Answer, index: number, now: number): void {
    if (this.#closed) return answer.fail(index, 1, new ClientClosedError());
    if (!record || typeof record.topic !== 'string') return answer.fail(index, 1, new SluiceError('INVALID_ARGUMENT', 'send needs { topic, value }'));
    let key: Uint8Array | null;
    let value: Uint8Array | null;
    let headers: RecordHeader[];
    try {
      key = toBytes(record.key, 'key');
      value = toBytes(record.value, 'value');
      headers = toHeaders(record.headers);
    } catch (err) {
      return answer.fail(index, 1, err);
    }
    if (record.timestamp !== undefined && !(typeof record.timestamp === 'number' && record.timestamp >= 0)) {
      // As Kafka's producer: a record's time is ms since the epoch (the batch builder refuses what is not an integer).
      return answer.fail(index, 1, new SluiceError('INVALID_ARGUMENT', `timestamp must be >= 0 (ms since the epoch), got ${String(record.timestamp)}`));
    }
    const timestamp = record.timestamp ?? now; // an integer? checked by the batch builder (#enqueue fails the record alone)
    const sizeBytes = recordSizeEstimate(key, value, headers);
    if (sizeBytes > this.#batchBytes && sizeBytes > this.#ctx.connection.limits.batchBytesMax - BATCH_HEADER_SLACK_BYTES) {
      return answer.fail(index, 1, new SluiceError('MESSAGE_TOO_LARGE', `a record of about ${sizeBytes} bytes does not fit a batch: the broker takes batches of up to ${this.#ctx.connection.limits.batchBytesMax} bytes, ${BATCH_HEADER_SLACK_BYTES} of them the batch's own header`));
    }
    if (this.#unsettledRecords++ === 0) this.#armExpiry();
    const ready = this.#chain === null && this.#bufferedBytes < this.#bufferBytesMax ? this.#readySync(record.topic, record.partition, now) : null;
    if (ready !== null) {
      this.#enqueue(record, key, value, headers, timestamp, sizeBytes, answer, index, ready);
      return;
    }
    this.#chainDepth++;
    const deadlineMs = now + this.#deliveryTimeoutMs;
    const step = (this.#chain ?? Promise.resolve())
      .then(async () => {
        if (this.#bufferedBytes >= this.#bufferBytesMax && !this.#closed) {
          // The expiry check wakes the waiters once this deadline has passed.
          this.#chainDeadlineMs = deadlineMs;
          try {
            while (this.#bufferedBytes >= this.#bufferBytesMax && !this.#closed) {
              if (this.#ctx.clock.now() >= deadlineMs) throw this.#timeoutError('waited for buffer room');
              await new Promise<void>((r) => this.#bufferWaiters.push(r));
            }
          } finally {
            this.#chainDeadlineMs = Number.POSITIVE_INFINITY;
          }
        }
        if (this.#idempotent && this.#producerId < 0) await this.#chainWait(this.#ensureIdentity(), deadlineMs);
        const atLeast = typeof record.partition === 'number' ? record.partition + 1 : 0;
        const cached = this.#ctx.cachedPartitionCount(record.topic, this.#ctx.clock.now());
        const partitions = cached !== undefined && cached >= atLeast ? cached : await this.#chainWait(this.#ctx.partitionCount(record.topic, atLeast), deadlineMs);
        if (this.#closed) throw new ClientClosedError(); // aborted while this send waited
        this.#enqueue(record, key, value, headers, timestamp, sizeBytes, answer, index, partitions);
      })
      .catch((err) => {
        answer.fail(index, 1, err);
        this.#recordsDone(1);
      })
      .finally(() => {
        if (--this.#chainDepth === 0) this.#chain = null;
      });
    this.#chain = step;
  }

  /** Seals every open batch and resolves once every record sent so far is answered (successfully or not). */
  async flush(): Promise<void> {
    while (this.#chain) await this.#chain;
    this.#accumulator.flush();
    while (this.#unsettledRecords > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Flushes, then refuses further sends. With the broker gone, that ends by the delivery timeout. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    this.#unlistenReconnect();
    this.#stopExpiry();
  }

  /**
   * Fails with `err` every record not on the wire (waiting to be sent, for a retry or for
   * buffer room; what is on the wire fails as its connection closes) and refuses further
   * sends. The client calls it when it closes its connection.
   */
  abort(err: unknown): void {
    this.#closed = true;
    this.#unlistenReconnect();
    this.#stopExpiry();
    this.#chainAbort?.(err);
    for (const wake of this.#bufferWaiters.splice(0)) wake();
    for (const state of this.#partitions.values()) {
      const held = [...state.failed.filter((f) => !f.fatal).map((f) => f.batch), ...state.queue];
      state.failed = [];
      state.queue = [];
      for (const batch of held) if (batch.settled !== true) this.#settle(batch, err);
      this.#failOpen(state, err);
    }
  }

  #recordsDone(n: number): void {
    this.#unsettledRecords -= n;
    // The expiry check is left to run out (it re-arms only while records are unsettled): a
    // producer that empties and refills every batch would otherwise make a timer per batch.
    if (this.#unsettledRecords === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  #stopExpiry(): void {
    if (this.#expiryTimer !== null) this.#ctx.clock.clearTimeout(this.#expiryTimer);
    this.#expiryTimer = null;
  }

  /** Awaits `p` for a send waiting in the chain; the expiry check fails it once `deadlineMs` has passed. */
  #chainWait<T>(p: Promise<T>, deadlineMs: number): Promise<T> {
    if (this.#deliveryTimeoutMs === Number.POSITIVE_INFINITY) return p;
    if (this.#ctx.clock.now() >= deadlineMs) return Promise.reject(this.#timeoutError('waited for the producer id or metadata'));
    return new Promise<T>((resolve, reject) => {
      this.#chainDeadlineMs = deadlineMs;
      this.#chainAbort = reject;
      const done = () => {
        this.#chainAbort = null;
        this.#chainDeadlineMs = Number.POSITIVE_INFINITY;
      };
      p.then(
        (v) => {
          done();
          resolve(v);
        },
        (e) => {
          done();
          reject(e);
        },
      );
    });
  }

  #timeoutError(where: string): SluiceError {
    return new SluiceError('DELIVERY_TIMEOUT', `not acknowledged within deliveryTimeoutMs (${this.#deliveryTimeoutMs} ms; ${where}); the records may or may not be stored`);
  }

  /** Arms the delivery-deadline check (records became unsettled). */
  #armExpiry(): void {
    if (this.#expiryTimer !== null || this.#closed || this.#deliveryTimeoutMs === Number.POSITIVE_INFINITY) return;
    const every = Math.max(1, Math.min(EXPIRY_CHECK_MS_MAX, Math.ceil(this.#deliveryTimeoutMs / 4)));
    this.#expiryTimer = this.#ctx.clock.setTimeout(() => {
      this.#expiryTimer = null;
      this.#expire();
      if (this.#unsettledRecords > 0) this.#armExpiry();
    }, every);
    // In Node, the check alone never keeps a process alive (browsers' handles are numbers).
    (this.#expiryTimer as { unref?: () => void } | null)?.unref?.();
  }

  /**
   * Fails what waits here past its delivery deadline: the chain's waiting send, and per
   * partition with nothing on the wire and no retry pending, the oldest queued batches and
   * the open batch. See the top of this file for what it does to sequences.
   */
  #expire(): void {
    const now = this.#ctx.clock.now();
    if (now >= this.#chainDeadlineMs) {
      // The send waiting in the chain is past its deadline: fail it (or wake it to find out).
      this.#chainAbort?.(this.#timeoutError('waited for the producer id or metadata'));
      for (const wake of this.#bufferWaiters.splice(0)) wake();
    }
    const cutoff = now - this.#deliveryTimeoutMs;
    for (const state of this.#partitions.values()) {
      if (state.inFlight.length > 0 || state.recovering) continue;
      let n = 0;
      while (n < state.queue.length && state.queue[n].open.createdMs <= cutoff && state.queue[n].bytes !== null) n++;
      if (n > 0) {
        const expired = state.queue.splice(0, n);
        const error = this.#timeoutError(expired[0].attempts > 0 ? 'sent, not acknowledged' : 'never sent');
        if (this.#idempotent && !state.needsNewId) {
          if (expired.some((b) => b.attempts > 0)) state.needsNewId = true;
          else this.#renumberQueue(state, expired[0].baseSequence);
        }
        for (const batch of expired) if (batch.settled !== true) this.#settle(batch, error);
      }
      const open = this.#accumulator.peek(state.key);
      if (state.queue.length === 0 && open !== undefined && open.createdMs <= cutoff) this.#failOpen(state, this.#timeoutError('never sent'));
      this.#pump(state);
    }
  }

  /** Fails the partition's open batch (never numbered: no sequence to mend). */
  #failOpen(state: PartitionState, err: unknown): void {
    const taken = this.#accumulator.take(state.key);
    if (taken !== undefined) this.#answer(taken.content, taken.content.builder.recordCount, taken.bytes, state, err, -1);
  }

  /** A new producer id for a partition whose old one may have a stored batch the producer gave up on; its queue is renumbered from 0 under it. */
  #renewId(state: PartitionState): void {
    state.renewing = true;
    this.#initProducer().then(
      ({ producerId, producerEpoch }) => {
        state.renewing = false;
        state.needsNewId = false;
        state.producerId = producerId;
        state.producerEpoch = producerEpoch;
        this.#renumberQueue(state, 0);
        this.#pump(state);
      },
      () => {
        state.renewing = false; // the next expiry check asks again; the batches wait or expire meanwhile
      },
    );
  }

  /** The partition count to send with now, or null when the async path must ask (no identity yet, no fresh count, or `partition` past it). */
  #readySync(topic: string, partition: number | undefined, now: number): number | null {
    if (this.#idempotent && this.#producerId < 0) return null;
    const count = this.#ctx.cachedPartitionCount(topic, now);
    if (count === undefined || (partition !== undefined && partition >= count)) return null;
    return count;
  }

  #ensureIdentity(): Promise<unknown> {
    if (!this.#idempotent) return Promise.resolve();
    if (!this.#identity) {
      this.#identity = this.#initProducer();
      this.#identity.catch(() => {
        this.#identity = null;
      });
    }
    return this.#identity;
  }

  async #initProducer(): Promise<{ producerId: number; producerEpoch: number }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const ok = await this.#ctx.connection.request({ op: Op.INIT_PRODUCER });
        assert(ok.op === Op.INIT_PRODUCER_OK, 'INIT_PRODUCER is answered by INIT_PRODUCER_OK');
        this.#producerId = ok.producerId;
        this.#producerEpoch = ok.producerEpoch;
        return ok;
      } catch (err) {
        if (!isRetriableError(err) || attempt >= 20) throw err;
        await this.#sleep(this.#retryDelay(err, attempt));
      }
    }
  }

  #enqueue(
    record: ProducerRecord,
    key: Uint8Array | null,
    value: Uint8Array | null,
    headers: RecordHeader[],
    timestamp: number,
    sizeBytes: number,
    answer: Answer,
    index: number,
    partitions: number,
  ): void {
    const topic = this.#topic(record.topic);
    let partition = record.partition;
    if (partition === undefined) {
      if (key) partition = partitionForKey(key, partitions);
      else {
        if (topic.sticky < 0 || topic.sticky >= partitions) topic.sticky = Math.floor(this.#ctx.random() * partitions);
        partition = topic.sticky;
      }
    }
    if (!Number.isInteger(partition) || partition < 0) {
      answer.fail(index, 1, new SluiceError('INVALID_ARGUMENT', `partition must be an integer >= 0, got ${String(partition)}`));
      this.#recordsDone(1);
      return;
    }
    if (partition >= partitions) {
      answer.fail(index, 1, new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${record.topic} has ${partitions} partitions, no partition ${partition}`));
      this.#recordsDone(1);
      return;
    }
    const state = topic.partitions[partition] ?? this.#state(record.topic, partition);
    const open = this.#accumulator.open(state.key, sizeBytes); // its create() finds the state by the key
    try {
      open.content.append(key, value, headers, timestamp, answer, index);
    } catch (err) {
      // Nothing was appended (the builder checks before it writes): this record alone fails.
      answer.fail(index, 1, err);
      this.#recordsDone(1);
      return;
    }
    this.#bufferedBytes += sizeBytes;
    this.#accumulator.added(open, sizeBytes);
    if (this.#sealWhenIdle && !state.sealQueued && state.inFlight.length === 0 && this.#accumulator.hasOpen(state.key)) {
      state.sealQueued = true;
      queueMicrotask(state.sealIfIdle);
    }
  }

  /** The partition can send another batch now: nothing sealed waits and its window has room (acks 0 keeps none in flight). */
  #hasRoom(state: PartitionState): boolean {
    return state.queue.length === 0 && !state.recovering && !state.needsNewId && state.inFlight.length < IDEMPOTENT_BATCHES_PER_PARTITION;
  }

  /** A topic's state, made on first use: the send path's one map lookup. */
  #topic(name: string): TopicState {
    let topic = this.#topicStates.get(name);
    if (topic === undefined) this.#topicStates.set(name, (topic = { partitions: [], sticky: -1 }));
    return topic;
  }

  /** A partition's state, made on first use. */
  #state(topicName: string, partition: number): PartitionState {
    const topic = this.#topic(topicName);
    let state = topic.partitions[partition];
    if (state === undefined) {
      const key = `${partition}\u0000${topicName}`;
      const made: PartitionState = {
        topic: topicName,
        partition,
        key,
        headBytes: produceHeadBytes(topicName),
        topicUtf8: utf8.encode(topicName),
        lastBatchBytes: 0,
        producerId: this.#idempotent ? this.#producerId : -1,
        producerEpoch: this.#idempotent ? this.#producerEpoch : -1,
        nextSequence: 0,
        queue: [],
        inFlight: [],
        failed: [],
        recovering: false,
        needsNewId: false,
        renewing: false,
        backoffMs: 0,
        sealQueued: false,
        sealIfIdle: () => {
          made.sealQueued = false;
          this.#sealIfIdle(made);
        },
      };
      state = made;
      topic.partitions[partition] = state;
      this.#partitions.set(key, state);
    }
    return state;
  }

  #onSeal(key: string, open: OpenBatch, sizeBytes: number): void {
    const state = this.#partitions.get(key)!;
    // Records without a key move to another partition once their batch is full (KIP-480).
    const topic = this.#topic(state.topic);
    if (topic.sticky === state.partition) topic.sticky = -1;
    if (open.builder.recordCount === 0) return;
    state.lastBatchBytes = open.builder.sizeBytes;
    state.queue.push(this.#numbered(state, open, sizeBytes));
    this.#pump(state);
  }

  /** Gives the records the partition's next sequence and finishes their batch (with gzip, asynchronously). */
  #numbered(state: PartitionState, open: OpenBatch, sizeBytes: number): SealedBatch {
    const recordCount = open.builder.recordCount;
    const baseSequence = this.#idempotent ? state.nextSequence : -1;
    if (this.#idempotent) state.nextSequence = (state.nextSequence + recordCount) % (SEQUENCE_MAX + 1);
    const producerId = state.producerId;
    const producerEpoch = state.producerEpoch;
    const batch: SealedBatch = { topic: state.topic, partition: state.partition, open, recordCount, producerId, producerEpoch, baseSequence, bytes: null, frame: null, encoding: Promise.resolve(), attempts: 0, sizeBytes };
    const framed = (bytes: Uint8Array): void => {
      const frame = new Uint8Array(bytes.buffer, bytes.byteOffset - state.headBytes, state.headBytes + bytes.length);
      batch.frame = frame;
      batch.bytes = bytes;
      // Renumbered while gzip ran: the header takes the batch's id and sequence now.
      if (batch.baseSequence !== baseSequence || batch.producerId !== producerId) this.#stamp(state, batch);
      else writeProduceHead(frame, 1, producerId, state.partition, this.#acks, state.topicUtf8, bytes.length);
    };
    const failed = (err: unknown): void => {
      // An encoding failure is the records' fault: fail them, do not send.
      batch.bytes = new Uint8Array(0);
      if (batch.settled !== true) this.#settle(batch, err); // unless it expired while encoding
    };
    try {
      const finished = finishProducerBatch(open.builder, { producerId, producerEpoch, baseSequence, compression: this.#compression, crc32c: this.#crc });
      if (finished instanceof Uint8Array) framed(finished);
      else batch.encoding = finished.then(framed).catch(failed);
    } catch (err) {
      failed(err);
    }
    return batch;
  }

  /** Numbers the partition's queued batches from `sequence` under its producer id (after a batch before them failed for good, or a new id). */
  #renumberQueue(state: PartitionState, sequence: number): void {
    state.nextSequence = sequence;
    for (const batch of state.queue) {
      batch.producerId = state.producerId;
      batch.producerEpoch = state.producerEpoch;
      batch.baseSequence = state.nextSequence;
      state.nextSequence = (state.nextSequence + batch.recordCount) % (SEQUENCE_MAX + 1);
      // Still encoding (gzip): its header is stamped when the encoding ends.
      if (batch.bytes !== null && batch.bytes.length > 0) this.#stamp(state, batch);
    }
  }

  /** Writes a batch's producer id, epoch and sequence into its header (and CRC) and its PRODUCE head. */
  #stamp(state: PartitionState, batch: SealedBatch): void {
    const bytes = batch.bytes!;
    restampProducerFields(this.#crc, bytes, batch.producerId, batch.producerEpoch, batch.baseSequence);
    writeProduceHead(batch.frame!, 1, batch.producerId, state.partition, this.#acks, state.topicUtf8, bytes.length);
  }

  #pump(state: PartitionState): void {
    if (state.recovering) return;
    if (state.needsNewId) {
      // Nothing goes out under the old id: ask for the new one (once at a time).
      if (!state.renewing) this.#renewId(state);
      return;
    }
    // While the connection is down, batches wait here (acks 0 is at most once and fails them).
    if (this.#acks !== 0 && this.#ctx.connection.state !== 'ready') return;
    while (state.queue.length > 0 && state.inFlight.length < IDEMPOTENT_BATCHES_PER_PARTITION) {
      const batch = state.queue[0];
      if (batch.bytes === null) {
        void batch.encoding.then(() => this.#pump(state));
        return;
      }
      state.queue.shift();
      if (batch.bytes.length === 0) continue; // failed to encode, already rejected
      this.#sendBatch(state, batch);
    }
    if (this.#hasRoom(state)) this.#accumulator.sealIfDue(state.key);
    this.#sealIfIdle(state);
  }

  /** lingerMs 0 (Nagle's rule): seals the partition's open batch once nothing of it is in flight or queued. */
  #sealIfIdle(state: PartitionState): void {
    if (this.#sealWhenIdle && state.inFlight.length === 0 && this.#hasRoom(state)) this.#accumulator.seal(state.key);
  }

  #sendBatch(state: PartitionState, batch: SealedBatch): void {
    const frame = batch.frame!;
    if (this.#acks === 0) {
      const sent = this.#ctx.connection.sendNoResponse(frame);
      if (sent) this.#settle(batch, null, -1);
      else this.#settle(batch, new ConnectionLostError('not connected (acks=0 records are not retried)'));
      return;
    }
    state.inFlight.push(batch);
    batch.attempts++;
    this.#ctx.connection.request(frame).then(
      (ok) => this.#onAnswer(state, batch, null, (ok as ProduceOk).baseOffset),
      (err) => this.#onAnswer(state, batch, err, -1),
    );
  }

  #onAnswer(state: PartitionState, batch: SealedBatch, err: unknown, baseOffset: number): void {
    const i = state.inFlight.indexOf(batch);
    assert(i >= 0, 'an answered batch was in flight');
    state.inFlight.splice(i, 1);
    if (err === null) {
      this.#settle(batch, null, baseOffset);
    } else if (err instanceof SluiceError && err.code === 'DUPLICATE_SEQUENCE_NUMBER') {
      // Stored by an earlier attempt, its offset no longer known: as Kafka's producer, a success with offset -1.
      this.#settle(batch, null, -1);
    } else {
      const lost = err instanceof ConnectionLostError;
      // ENGINE_CLOSED here is a broker shutting down: nothing was appended, and the connection
      // drops next; retried after the reconnect like a lost connection (the deadline bounds it).
      const shuttingDown = err instanceof SluiceError && err.code === 'ENGINE_CLOSED';
      let retriable = (isRetriableError(err) || shuttingDown) && !this.#closedForGood(err) && (lost || batch.attempts <= this.#retries);
      // Past its deadline, a batch is not retried; whether an attempt was stored is unknown.
      const expired = retriable && this.#ctx.clock.now() - batch.open.createdMs >= this.#deliveryTimeoutMs;
      if (expired) retriable = false;
      state.recovering = true;
      state.failed.push({ batch, error: err, fatal: !retriable, unknown: expired });
      if (expired) this.#settle(batch, this.#timeoutError(`the last attempt failed: ${err instanceof Error ? err.message : String(err)}`));
      else if (!retriable) this.#settle(batch, err); // refused for good: tell the application now
      if (retriable && !lost) state.backoffMs = Math.max(state.backoffMs, this.#retryDelay(err, batch.attempts - 1));
    }
    if (state.recovering && state.inFlight.length === 0) {
      const delay = state.backoffMs;
      state.backoffMs = 0;
      if (delay > 0) this.#ctx.clock.setTimeout(() => this.#recover(state), delay);
      else this.#recover(state);
    } else {
      this.#pump(state);
    }
  }

  #closedForGood(err: unknown): boolean {
    return err instanceof ClientClosedError;
  }

  /** Every batch in flight is answered: resend the failed ones in sequence order, renumbering after a batch refused for good. */
  #recover(state: PartitionState): void {
    const failed = state.failed.splice(0).sort((a, b) => seqOrder(a.batch.baseSequence, b.batch.baseSequence, state.nextSequence));
    state.recovering = false;
    const fatalIndex = failed.findIndex((f) => f.fatal);
    if (fatalIndex < 0) {
      state.queue.unshift(...failed.map((f) => f.batch));
    } else {
      const survivors: SealedBatch[] = [];
      for (const f of failed) if (!f.fatal) survivors.push(f.batch);
      const rest = [...survivors, ...state.queue];
      state.queue = rest;
      if (failed.some((f) => f.unknown)) {
        // A batch given up on may be stored: the rest go under a new producer id.
        if (this.#idempotent) state.needsNewId = true;
      } else if (this.#idempotent && !state.needsNewId) {
        // Nothing failed was appended (a refusal appends nothing; the retriable ones were
        // refused as out of order), so the sequence resumes at the first failed batch.
        this.#renumberQueue(state, failed[0].batch.baseSequence);
      }
    }
    this.#pump(state);
  }

  #settle(batch: SealedBatch, err: unknown, baseOffset = -1): void {
    assert(batch.settled !== true, 'a batch is answered once');
    batch.settled = true;
    this.#answer(batch.open, batch.recordCount, batch.sizeBytes, batch, err, baseOffset);
  }

  /** Answers the `recordCount` records of `open` (`sizeBytes` of the buffer) with `err`, or with their offsets from `baseOffset`. */
  #answer(open: OpenBatch, recordCount: number, sizeBytes: number, where: { topic: string; partition: number }, err: unknown, baseOffset: number): void {
    this.#bufferedBytes -= sizeBytes;
    while (this.#bufferWaiters.length > 0 && this.#bufferedBytes < this.#bufferBytesMax) this.#bufferWaiters.shift()!();
    const { answers, runStarts, runIndexes } = open;
    for (let r = 0; r < answers.length; r++) {
      const start = runStarts[r];
      const count = (r + 1 < answers.length ? runStarts[r + 1] : recordCount) - start;
      if (err) answers[r].fail(runIndexes[r], count, err);
      else answers[r].done(runIndexes[r], count, where.topic, where.partition, baseOffset < 0 ? -1 : baseOffset + start);
    }
    this.#recordsDone(recordCount);
  }

  #retryDelay(err: unknown, attempt: number): number {
    const hint = err instanceof SluiceError ? (err.backoffMs ?? 0) : 0;
    return Math.max(hint, backoffDelayMs(attempt, this.#retryBackoff, this.#ctx.random));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#ctx.clock.setTimeout(resolve, ms));
  }
}

/** Orders sequences that may have wrapped: both are before `next`. */
function seqOrder(a: number, b: number, next: number): number {
  const dist = (s: number) => (next - s + SEQUENCE_MAX + 1) % (SEQUENCE_MAX + 1);
  return dist(b) - dist(a);
}
