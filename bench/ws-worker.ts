/**
 * One load-generating thread of `sluice bench` (a piscina task): a producer or a consumer
 * on its own connection through the project's client (src/client), timing itself with the
 * system-wide monotonic clock (process.hrtime, CLOCK_MONOTONIC) so that the parent can
 * combine threads and processes: a result is its first and last instant, not a duration.
 *
 * Owner: a piscina worker thread; each task opens and closes its own client. Every loop is
 * bounded by a record count and by `deadlineNs`.
 */
import { connect, type Sluice } from '../src/client/index.js';
import { crc32c } from '../src/persist/crc32c.js';
import type { Acks, Producer, RecordMetadata } from '../src/client/index.js';

/** Records sent between checks of the window, the deadline and the progress counter. */
const SEND_CHUNK_RECORDS = 4096;
/** Chunks whose last record may still be unacknowledged before send() waits (bounds client memory). */
const SEND_CHUNKS_IN_FLIGHT_MAX = 64;

export interface ProduceTask {
  kind: 'produce';
  url: string;
  topic: string;
  records: number;
  recordBytes: number;
  acks: Acks;
  lingerMs: number;
  batchBytes: number;
  /**
   * Sent untimed before the start instant, with the same settings, to another topic: so that
   * the timed run measures a warm producer rather than a fresh thread's JIT and heap sizing.
   */
  warmup?: { topic: string; records: number };
  /** hrtime (ns, as a number) at which every thread starts sending. */
  startAtNs: number;
  deadlineNs: number;
  /** [0]: records acknowledged so far by every thread (Atomics.add), for progress. */
  progress: Int32Array;
  /** The steady-state marks of the whole job (see `advance`). */
  marks: BigInt64Array;
  /** Records of the whole job (every thread). */
  total: number;
}

export interface ConsumeTask {
  kind: 'consume';
  url: string;
  topic: string;
  /** Partition -> records to read (from the earliest offset). */
  expected: Record<number, number>;
  /**
   * Read untimed before the start instant: this many records of another topic with the same
   * partitions (at most what those partitions hold), so that the timed run measures a warm
   * consumer rather than a fresh thread's JIT and heap sizing.
   */
  warmup?: { topic: string; records: number };
  windowBytes: number;
  startAtNs: number;
  deadlineNs: number;
  progress: Int32Array;
  marks: BigInt64Array;
  total: number;
}

export interface ThreadResult {
  records: number;
  bytes: number;
  startNs: number;
  endNs: number;
}

const nowNs = (): number => Number(process.hrtime.bigint());

/** Where the steady-state window starts and ends, as fractions of the job's records. */
export const STEADY_FROM = 0.1;
export const STEADY_TO = 0.9;
/** marks: [time (ns) and records done when STEADY_FROM was crossed, the same for STEADY_TO]. */
export const MARK_SLOTS = 4;

/**
 * Counts `n` more records done by this thread into the job's shared progress, and stamps
 * the instant (and the count) when the job as a whole crosses STEADY_FROM and STEADY_TO of
 * its records: the steady rate between them leaves out connection set-up, subscription,
 * and the JIT warm-up of a fresh thread. Atomics.add makes exactly one thread see each
 * crossing.
 */
export function advance(task: { progress: Int32Array; marks: BigInt64Array; total: number }, n: number): void {
  const after = Atomics.add(task.progress, 0, n) + n;
  const before = after - n;
  const from = task.total * STEADY_FROM;
  const to = task.total * STEADY_TO;
  if (before < from && after >= from) {
    Atomics.store(task.marks, 0, process.hrtime.bigint());
    Atomics.store(task.marks, 1, BigInt(after));
  }
  if (before < to && after >= to) {
    Atomics.store(task.marks, 2, process.hrtime.bigint());
    Atomics.store(task.marks, 3, BigInt(after));
  }
}

async function waitUntil(ns: number): Promise<void> {
  const ms = (ns - nowNs()) / 1e6;
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

/**
 * Sends `records` copies of `value` to `topic` in sendMany chunks of SEND_CHUNK_RECORDS, at
 * most SEND_CHUNKS_IN_FLIGHT_MAX chunks unanswered, until done or the deadline; `onAcked`
 * hears each answered chunk as it frees a place (the last ones are only flushed). Returns
 * the records sent.
 */
async function sendChunks(producer: Producer, topic: string, value: Uint8Array, records: number, deadlineNs: number, onAcked?: (n: number) => void): Promise<number> {
  const window: Promise<RecordMetadata[]>[] = [];
  // One record object reused for the whole chunk: sendMany takes an array, one promise.
  const chunk = new Array<{ topic: string; value: Uint8Array }>(SEND_CHUNK_RECORDS).fill({ topic, value });
  let sent = 0;
  while (sent < records && nowNs() < deadlineNs) {
    const n = Math.min(SEND_CHUNK_RECORDS, records - sent);
    window.push(producer.sendMany(n === chunk.length ? chunk : chunk.slice(0, n)));
    sent += n;
    if (window.length >= SEND_CHUNKS_IN_FLIGHT_MAX) {
      await window.shift();
      onAcked?.(SEND_CHUNK_RECORDS);
    }
  }
  await producer.flush();
  return sent;
}

async function produce(task: ProduceTask): Promise<ThreadResult> {
  const client = await connect({ url: task.url, clientId: 'bench-producer', crc32c });
  try {
    const producer = client.producer({ acks: task.acks, lingerMs: task.lingerMs, batchBytes: task.batchBytes });
    const value = new Uint8Array(task.recordBytes).fill(0x61);
    await client.metadata(); // caches the partition count: send() stays synchronous
    await producer.send({ topic: task.topic, value }); // the producer id, before the clock starts
    if (task.warmup && task.warmup.records > 0) await sendChunks(producer, task.warmup.topic, value, task.warmup.records, task.deadlineNs);
    await waitUntil(task.startAtNs);
    const startNs = nowNs();
    let acked = 0;
    const sent = await sendChunks(producer, task.topic, value, task.records, task.deadlineNs, (n) => {
      advance(task, n);
      acked += n;
    });
    const endNs = nowNs();
    advance(task, sent - acked);
    return { records: sent, bytes: sent * task.recordBytes, startNs, endNs };
  } finally {
    await client.close();
  }
}

/**
 * Reads `wanted` records of `topic`'s `partitions` from the earliest offsets with a consumer
 * of its own, touching every value as an application would; `onBatch` hears each batch's
 * record count. eachBatch, not for-await: the throughput run measures the broker's
 * ceiling, not an async generator step per record (the latency run uses for-await).
 */
async function readFromEarliest(
  client: Sluice,
  topic: string,
  partitions: number[],
  windowBytes: number,
  wanted: number,
  deadlineNs: number,
  onBatch?: (records: number) => void,
): Promise<{ records: number; bytes: number; endNs: number }> {
  const consumer = client.consumer({ from: 'earliest', windowBytes });
  const timer = setTimeout(() => void consumer.close(), Math.max(0, (deadlineNs - nowNs()) / 1e6));
  let records = 0;
  let bytes = 0;
  let endNs = 0;
  try {
    await consumer.assign(partitions.map((partition) => ({ topic, partition })));
    await consumer.run({
      eachBatch: (batch) => {
        const rs = batch.records;
        records += rs.length;
        for (let i = 0; i < rs.length; i++) bytes += rs[i].value?.length ?? 0;
        onBatch?.(rs.length);
        if (records >= wanted && endNs === 0) {
          endNs = nowNs();
          void consumer.close();
        }
      },
    });
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  return { records, bytes, endNs: endNs || nowNs() };
}

async function consume(task: ConsumeTask): Promise<ThreadResult> {
  const client = await connect({ url: task.url, clientId: 'bench-consumer', crc32c });
  try {
    const partitions = Object.keys(task.expected).map(Number);
    let wanted = 0;
    for (const p of partitions) wanted += task.expected[p];
    // Untimed: the same reading over another topic, so the timed run starts warm.
    if (task.warmup && task.warmup.records > 0) {
      await readFromEarliest(client, task.warmup.topic, partitions, task.windowBytes, task.warmup.records, task.deadlineNs);
    }
    await waitUntil(task.startAtNs);
    const startNs = nowNs();
    const read = await readFromEarliest(client, task.topic, partitions, task.windowBytes, wanted, task.deadlineNs, (n) => advance(task, n));
    return { ...read, startNs };
  } finally {
    await client.close();
  }
}

export default function run(task: ProduceTask | ConsumeTask): Promise<ThreadResult> {
  switch (task.kind) {
    case 'produce':
      return produce(task);
    case 'consume':
      return consume(task);
    default:
      throw new Error(`unknown task ${(task as { kind: string }).kind}`);
  }
}
