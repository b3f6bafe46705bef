/**
 * One load-generating thread of `sluice bench` (a piscina task): a producer or a consumer
 * on its own connection through the project's client (src/client), timing itself with the
 * system-wide monotonic clock (process.hrtime, CLOCK_MONOTONIC) so that the parent can
 * combine threads and processes: a result is its first and last instant, not a duration.
 *
 * Owner: a piscina worker thread; each task opens and closes its own client. Every loop is
 * bounded by a record count and by `deadlineNs`.
 */
import { connect } from '../src/client/index.js';
import { crc32c } from '../src/persist/crc32c.js';
import type { Acks, RecordMetadata } from '../src/client/index.js';

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
  /** hrtime (ns, as a number) at which every thread starts sending. */
  startAtNs: number;
  deadlineNs: number;
  /** [0]: records acknowledged so far by every thread (Atomics.add), for progress. */
  progress: Int32Array;
}

export interface ConsumeTask {
  kind: 'consume';
  url: string;
  topic: string;
  /** Partition -> records to read (from the earliest offset). */
  expected: Record<number, number>;
  windowBytes: number;
  startAtNs: number;
  deadlineNs: number;
  progress: Int32Array;
}

export interface ThreadResult {
  records: number;
  bytes: number;
  startNs: number;
  endNs: number;
}

const nowNs = (): number => Number(process.hrtime.bigint());

async function waitUntil(ns: number): Promise<void> {
  const ms = (ns - nowNs()) / 1e6;
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

async function produce(task: ProduceTask): Promise<ThreadResult> {
  const client = await connect({ url: task.url, clientId: 'bench-producer', crc32c });
  try {
    const producer = client.producer({ acks: task.acks, lingerMs: task.lingerMs, batchBytes: task.batchBytes });
    const value = new Uint8Array(task.recordBytes).fill(0x61);
    await client.metadata(); // caches the partition count: send() stays synchronous
    await producer.send({ topic: task.topic, value }); // the producer id, before the clock starts
    await waitUntil(task.startAtNs);
    const startNs = nowNs();
    const window: Promise<RecordMetadata[]>[] = [];
    // One record object reused for the whole chunk: sendMany takes an array, one promise.
    const chunk = new Array<{ topic: string; value: Uint8Array }>(SEND_CHUNK_RECORDS).fill({ topic: task.topic, value });
    let sent = 0;
    let acked = 0;
    while (sent < task.records && nowNs() < task.deadlineNs) {
      const n = Math.min(SEND_CHUNK_RECORDS, task.records - sent);
      window.push(producer.sendMany(n === chunk.length ? chunk : chunk.slice(0, n)));
      sent += n;
      if (window.length >= SEND_CHUNKS_IN_FLIGHT_MAX) {
        await window.shift();
        Atomics.add(task.progress, 0, SEND_CHUNK_RECORDS);
        acked += SEND_CHUNK_RECORDS;
      }
    }
    await producer.flush();
    const endNs = nowNs();
    Atomics.add(task.progress, 0, sent - acked);
    return { records: sent, bytes: sent * task.recordBytes, startNs, endNs };
  } finally {
    await client.close();
  }
}

async function consume(task: ConsumeTask): Promise<ThreadResult> {
  const client = await connect({ url: task.url, clientId: 'bench-consumer', crc32c });
  try {
    const consumer = client.consumer({ from: 'earliest', windowBytes: task.windowBytes });
    const partitions = Object.keys(task.expected).map(Number);
    let wanted = 0;
    for (const p of partitions) wanted += task.expected[p];
    let records = 0;
    let bytes = 0;
    let endNs = 0;
    const timer = setTimeout(() => void consumer.close(), Math.max(0, (task.deadlineNs - nowNs()) / 1e6));
    await waitUntil(task.startAtNs);
    const startNs = nowNs();
    await consumer.assign(partitions.map((partition) => ({ topic: task.topic, partition })));
    // eachBatch, not for-await: the throughput run measures the broker's ceiling, not an
    // async generator step per record (the latency run uses for-await, as an application would).
    await consumer.run({
      eachBatch: (batch) => {
        const rs = batch.records;
        records += rs.length;
        for (let i = 0; i < rs.length; i++) bytes += rs[i].value?.length ?? 0;
        Atomics.add(task.progress, 0, rs.length);
        if (records >= wanted && endNs === 0) {
          endNs = nowNs();
          void consumer.close();
        }
      },
    });
    clearTimeout(timer);
    return { records, bytes, startNs, endNs: endNs || nowNs() };
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
