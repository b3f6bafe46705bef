/**
 * A load-generating process of `sluice bench`: the producer process or the consumer
 * process, separate from the broker and from each other, as issue 3 asks.
 *
 *   node dist/bench/ws-load.js '<json LoadJob>'
 *
 * Throughput jobs run `threads` piscina threads (bench/ws-worker.ts), each with its own
 * connection, all starting at one instant; the result spans the first start to the last
 * end. Latency jobs run on the main thread: the producer sends at a fixed rate on a fixed
 * schedule and stamps each record with its intended send time; the consumer receives
 * through subscribe + for-await and records (receive time - intended time) in an
 * HdrHistogram, which corrects for coordinated omission (a stalled sender does not hide
 * the records it should have sent meanwhile).
 *
 * Protocol with the parent, one line each on stdout: `progress <records>` (every
 * PROGRESS_INTERVAL_MS), `ready` (a latency consumer is subscribed), `result <json>`.
 * Owner: this process's main thread. Every loop is bounded by a count and a deadline.
 */
import { Piscina } from 'piscina';
import * as hdr from 'hdr-histogram-js';
import { connect } from '../src/client/index.js';
import { crc32c } from '../src/persist/crc32c.js';
import type { Acks } from '../src/client/index.js';
import { LATENCY_US_MAX, SCHEDULE_BLOCK_US_MAX, SCHEDULE_BLOCK_US_MIN } from './latency-schedule.js';
import { MARK_SLOTS, type ConsumeTask, type ProduceTask, type ThreadResult } from './ws-worker.js';

const PROGRESS_INTERVAL_MS = 200;
/** Threads connect, then all start at one instant this far ahead. */
const START_LEAD_NS = 500e6;
/** The same for threads that warm up first (200 K records took 0.2-0.7 s in a fresh consumer thread here). */
const WARMUP_LEAD_NS = 2_500e6;
/** A latency-run record's value starts with its intended send time, hrtime ns as float64 (little-endian). */
const STAMP_BYTES = 8;
/** Float64Array's byte order is the host's. */
const HOST_LE = new Uint8Array(Float64Array.of(1).buffer)[7] === 0x3f;

export type LoadJob =
  | { kind: 'produce'; url: string; topic: string; threads: number; records: number; recordBytes: number; acks: Acks; lingerMs: number; batchBytes: number; timeoutMs: number; warmup?: { topic: string; recordsPerThread: number } }
  | { kind: 'consume'; url: string; topic: string; threads: number; expected: Record<number, number>; windowBytes: number; timeoutMs: number; warmup?: { topic: string; recordsPerThread: number; expected: Record<number, number> } }
  | { kind: 'latency-produce'; url: string; topic: string; ratePerSec: number; warmupRecords: number; records: number; recordBytes: number; acks: 'all' | 1; timeoutMs: number }
  | { kind: 'latency-consume'; url: string; topic: string; records: number; timeoutMs: number };

export interface LoadResult {
  records: number;
  bytes: number;
  secs: number;
  /** Throughput jobs: records and seconds between the job's 10% and 90% marks (ws-worker.ts `advance`); 0 when not reached. */
  steadyRecords?: number;
  steadySecs?: number;
  /** Latency jobs (consumer side): microseconds. */
  latencyUs?: { p50: number; p99: number; p999: number; max: number; mean: number; count: number };
  /** Latency producer: how far behind its schedule it fell at worst (µs). */
  scheduleLagUsMax?: number;
  /** Peak resident set of this process (MB). */
  rssPeakMB: number;
}

const nowNs = (): number => Number(process.hrtime.bigint());
const ignore = (): void => undefined;
const line = (s: string): void => void process.stdout.write(s + '\n');

async function throughput(job: Extract<LoadJob, { kind: 'produce' | 'consume' }>): Promise<LoadResult> {
  const pool = new Piscina({
    filename: new URL('./ws-worker.js', import.meta.url).href,
    minThreads: job.threads,
    maxThreads: job.threads,
    idleTimeout: 1000,
    maxQueue: job.threads,
    concurrentTasksPerWorker: 1,
  });
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const marks = new BigInt64Array(new SharedArrayBuffer(8 * MARK_SLOTS));
  const total = job.kind === 'produce' ? job.records : Object.values(job.expected).reduce((a, b) => a + b, 0);
  const ticker = setInterval(() => line(`progress ${Atomics.load(progress, 0)}`), PROGRESS_INTERVAL_MS);
  // Threads connect and warm up first; they all start at this instant.
  const startAtNs = nowNs() + (job.warmup ? WARMUP_LEAD_NS : START_LEAD_NS);
  const deadlineNs = nowNs() + job.timeoutMs * 1e6;
  try {
    const tasks: Promise<ThreadResult>[] = [];
    for (let t = 0; t < job.threads; t++) {
      if (job.kind === 'produce') {
        const share = Math.floor(job.records / job.threads) + (t < job.records % job.threads ? 1 : 0);
        const warmup = job.warmup ? { topic: job.warmup.topic, records: job.warmup.recordsPerThread } : undefined;
        const task: ProduceTask = { kind: 'produce', url: job.url, topic: job.topic, records: share, recordBytes: job.recordBytes, acks: job.acks, lingerMs: job.lingerMs, batchBytes: job.batchBytes, warmup, startAtNs, deadlineNs, progress, marks, total };
        tasks.push(pool.run(task));
      } else {
        const expected: Record<number, number> = {};
        for (const p of Object.keys(job.expected).map(Number)) if (p % job.threads === t) expected[p] = job.expected[p];
        if (Object.keys(expected).length === 0) continue;
        let warmup: ConsumeTask['warmup'];
        if (job.warmup) {
          let available = 0;
          for (const p of Object.keys(expected)) available += job.warmup.expected[Number(p)] ?? 0;
          warmup = { topic: job.warmup.topic, records: Math.min(job.warmup.recordsPerThread, available) };
        }
        const task: ConsumeTask = { kind: 'consume', url: job.url, topic: job.topic, expected, warmup, windowBytes: job.windowBytes, startAtNs, deadlineNs, progress, marks, total };
        tasks.push(pool.run(task));
      }
    }
    const results = await Promise.all(tasks);
    const start = Math.min(...results.map((r) => r.startNs));
    const end = Math.max(...results.map((r) => r.endNs));
    const reached = marks[2] > 0n && marks[0] > 0n;
    return {
      records: results.reduce((s, r) => s + r.records, 0),
      bytes: results.reduce((s, r) => s + r.bytes, 0),
      secs: (end - start) / 1e9,
      steadyRecords: reached ? Number(marks[3] - marks[1]) : 0,
      steadySecs: reached ? Number(marks[2] - marks[0]) / 1e9 : 0,
      rssPeakMB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    clearInterval(ticker);
    await pool.destroy();
  }
}

/** Blocks this thread for `us` microseconds without spinning (the sender's schedule is finer than setTimeout's 1 ms). */
function blockUs(sleeper: Int32Array, us: number): void {
  Atomics.wait(sleeper, 0, 0, us / 1000);
}

async function latencyProduce(job: Extract<LoadJob, { kind: 'latency-produce' }>): Promise<LoadResult> {
  const client = await connect({ url: job.url, clientId: 'bench-latency-producer', crc32c });
  try {
    const producer = client.producer({ acks: job.acks, lingerMs: 0 });
    await client.metadata();
    // One value buffer for every record: send() copies the record into its batch before it
    // returns. A load generator that made garbage per record would charge its own collector
    // pauses to the latency it measures (a fresh array per record was half of this
    // process's allocations, and it collected 8 times a second).
    const value = new Uint8Array(job.recordBytes);
    const stamp = new DataView(value.buffer);
    const record = { topic: job.topic, value };
    stamp.setFloat64(0, -1, true); // the consumer skips negative stamps
    await producer.send(record);
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const intervalNs = 1e9 / job.ratePerSec;
    const startNs = nowNs() + 10e6;
    const deadlineNs = startNs + job.timeoutMs * 1e6;
    // The first warmupRecords go out on the same schedule, stamped negative: the consumer
    // skips them, and the measured records follow without a break.
    const total = job.warmupRecords + job.records;
    let sent = 0;
    let lagUsMax = 0;
    let lastProgressNs = 0;
    await new Promise<void>((resolve) => {
      // One turn of the event loop per wake-up, as a callback (not an awaited promise per turn).
      const tick = (): void => {
        // Sleep until the next record is due, then send, then yield at once: the client seals
        // a lingerMs-0 batch at the end of this event-loop turn, so a sleep between the send
        // and the yield would be charged to the client's latency.
        const waitUs = (startNs + sent * intervalNs - nowNs()) / 1e3;
        if (waitUs > SCHEDULE_BLOCK_US_MIN) blockUs(sleeper, Math.min(waitUs, SCHEDULE_BLOCK_US_MAX));
        const now = nowNs();
        if (now > deadlineNs) return resolve();
        // Send every record whose intended time has come, stamped with that time, not with now.
        while (sent < total) {
          const intendedNs = startNs + sent * intervalNs;
          if (intendedNs > now) break;
          const measured = sent >= job.warmupRecords;
          if (measured) lagUsMax = Math.max(lagUsMax, (now - intendedNs) / 1e3);
          stamp.setFloat64(0, measured ? intendedNs : -1, true);
          producer.send(record).catch(ignore);
          sent++;
        }
        if (now - lastProgressNs > PROGRESS_INTERVAL_MS * 1e6) {
          line(`progress ${sent}`);
          lastProgressNs = now;
        }
        if (sent < total) setImmediate(tick); // acknowledgements, sealing and linger timers run here
        else resolve();
      };
      tick();
    });
    await producer.flush();
    const measured = Math.max(0, sent - job.warmupRecords);
    return { records: measured, bytes: measured * job.recordBytes, secs: (nowNs() - startNs) / 1e9 - job.warmupRecords / job.ratePerSec, scheduleLagUsMax: lagUsMax, rssPeakMB: process.resourceUsage().maxRSS / 1024 };
  } finally {
    await client.close();
  }
}

async function latencyConsume(job: Extract<LoadJob, { kind: 'latency-consume' }>): Promise<LoadResult> {
  const client = await connect({ url: job.url, clientId: 'bench-latency-consumer', crc32c });
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
  try {
    const consumer = client.consumer({ from: 'latest' });
    await consumer.subscribe(job.topic);
    const stampValue = new Float64Array(1);
    const stampBytes = new Uint8Array(stampValue.buffer);
    const timer = setTimeout(() => void consumer.close(), job.timeoutMs);
    line('ready');
    const startNs = nowNs();
    let records = 0;
    let bytes = 0;
    let lastProgressNs = 0;
    for await (const record of consumer) {
      const receivedNs = nowNs();
      const v = record.value!;
      for (let i = 0; i < STAMP_BYTES; i++) stampBytes[HOST_LE ? i : STAMP_BYTES - 1 - i] = v[i]; // no view per record
      const intendedNs = stampValue[0];
      if (intendedNs < 0) continue; // the producer's warm-up record
      histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((receivedNs - intendedNs) / 1e3))));
      records++;
      bytes += v.length;
      if (receivedNs - lastProgressNs > PROGRESS_INTERVAL_MS * 1e6) {
        line(`progress ${records}`);
        lastProgressNs = receivedNs;
      }
      if (records >= job.records) break;
    }
    clearTimeout(timer);
    await consumer.close();
    return {
      records,
      bytes,
      secs: (nowNs() - startNs) / 1e9,
      latencyUs: {
        p50: histogram.getValueAtPercentile(50),
        p99: histogram.getValueAtPercentile(99),
        p999: histogram.getValueAtPercentile(99.9),
        max: histogram.maxValue,
        mean: histogram.mean,
        count: histogram.totalCount,
      },
      rssPeakMB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await client.close();
  }
}

export function runLoadJob(job: LoadJob): Promise<LoadResult> {
  switch (job.kind) {
    case 'produce':
    case 'consume':
      return throughput(job);
    case 'latency-produce':
      return latencyProduce(job);
    case 'latency-consume':
      return latencyConsume(job);
    default:
      throw new Error(`unknown job ${(job as { kind: string }).kind}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const result = await runLoadJob(JSON.parse(process.argv[2]) as LoadJob);
    line(`result ${JSON.stringify(result)}`);
  } catch (err) {
    process.stderr.write(`ws-load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
