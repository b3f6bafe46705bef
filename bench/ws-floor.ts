/**
 * The latency floor of the broker's path on this machine: the same processes, threads and
 * hand-offs as a Sluice latency run, with none of Sluice's work. `sluice bench` measures
 * end-to-end latency at a fixed rate (ws.bench.ts); this measures what the bare path costs
 * at the same rate, so the bench's figures can be read as a ratio to it.
 *
 *   node dist/bench/ws-floor.js run [--seconds 15] [--warmup-seconds 3] [--rate 10000] [--record-bytes 100] [--no-sync]
 *
 * prints one JSON line: { p50Us, p90Us, p99Us, p999Us, maxUs, records }.
 *
 * The path, as in Sluice (docs/architecture.md):
 * - a producer process (`ws`) stamps records (100 bytes unless told) with their intended send time on a
 *   fixed schedule (the bench's sender: Atomics.wait between records, so a late sender is
 *   charged for it) and batches them as lingerMs 0 does, with a setTimeout(0) per batch;
 * - a server process: a uWebSockets.js main thread copies each batch into a
 *   SharedArrayBuffer slot and wakes one worker (Atomics.notify; the worker waits in
 *   Atomics.waitAsync, as an owner does); the worker writes the batch to a file
 *   (writeSync), publishes it and wakes the main thread back (waitAsync again), and, unless
 *   --no-sync, runs one fdatasync at a time on libuv's pool (group commit) and acknowledges
 *   the producer when it returns (acks=all);
 * - the main thread sends each written batch to the consumer process (`ws`), which records
 *   receive time - intended time per record in an HdrHistogram (µs).
 * Not there: frames, CRCs, record batches, offsets, indexes, idempotence, credit, metrics,
 * the client libraries. The producer does not wait for acknowledgements (no window).
 *
 * Owner: each role's main thread; the relay's worker owns its file. Bounded: every process
 * stops after --seconds plus a deadline, the server when its stdin closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasync, openSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import type * as uWS from 'uWebSockets.js';
import { WebSocket } from 'ws';
import { LATENCY_US_MAX, SCHEDULE_BLOCK_US_MAX, SCHEDULE_BLOCK_US_MIN } from './latency-schedule.js';

/** Batches in flight between the main thread and the worker (a batch per slot). */
const SLOTS = 256;
/** The largest batch a slot holds; at 10,000 records/s a batch is about 1 KB. */
const SLOT_BYTES = 64 * 1024;
/** The record size unless told (the bench passes its recordBytes); at least the 8-byte stamp. */
const RECORD_BYTES_DEFAULT = 100;
const STAMP_BYTES = 8;
/** Extra time each process gets past its planned end before it gives up. */
const DEADLINE_SLACK_MS = 20_000;
/** Control words in the shared Int32Array. */
const HEAD = 0; // batches the main thread has put in slots
const WRITTEN = 1; // batches the worker has written
const DURABLE = 2; // batches an fdatasync has covered
const EPOCH = 3; // bumped by the worker on every change; the main thread waits on it

const nowNs = (): number => Number(process.hrtime.bigint());

function relay(sync: boolean): void {
  const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof uWS;
  const slots = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  const control = new Int32Array(new SharedArrayBuffer(16));
  const lengths = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  const bytes = new Uint8Array(slots);
  const file = join(tmpdir(), `sluice-floor-${process.pid}.log`);
  const worker = new Worker(new URL(import.meta.url), { workerData: { slots, control: control.buffer, lengths: lengths.buffer, file, sync } });
  worker.on('error', (err) => {
    console.error(`the worker failed: ${String(err)}`);
    process.exit(1);
  });
  let producer: uWS.WebSocket<unknown> | null = null;
  let consumer: uWS.WebSocket<unknown> | null = null;
  let head = 0;
  let pushed = 0;
  let acked = 0;
  const ack = new Uint8Array(8);
  const pump = async (): Promise<void> => {
    for (;;) {
      const epoch = Atomics.load(control, EPOCH);
      const written = Atomics.load(control, WRITTEN);
      const durable = Atomics.load(control, DURABLE);
      for (; pushed < written; pushed++) {
        const s = pushed % SLOTS;
        consumer?.send(bytes.subarray(s * SLOT_BYTES, s * SLOT_BYTES + lengths[s]), true);
      }
      for (; acked < durable; acked++) producer?.send(ack, true);
      const wait = Atomics.waitAsync(control, EPOCH, epoch);
      if (wait.async) await wait.value;
    }
  };
  void pump();
  const app = uws.App();
  app.ws('/*', {
    maxPayloadLength: SLOT_BYTES,
    idleTimeout: 120,
    compression: uws.DISABLED,
    // A closed socket must not be sent to: uWS throws on any use of it.
    close: (ws) => {
      if (ws === producer) producer = null;
      if (ws === consumer) consumer = null;
    },
    message: (ws, message) => {
      const m = new Uint8Array(message);
      if (m.length === 1) {
        // 1: I am the producer, 2: I am the consumer.
        if (m[0] === 1) producer = ws;
        else consumer = ws;
        return;
      }
      if (head - Atomics.load(control, WRITTEN) >= SLOTS) {
        console.error('the worker fell a ring behind');
        process.exit(1);
      }
      const s = head % SLOTS;
      bytes.set(m, s * SLOT_BYTES);
      lengths[s] = m.length;
      head++;
      Atomics.store(control, HEAD, head);
      Atomics.notify(control, HEAD);
    },
  });
  app.listen('127.0.0.1', 0, (token) => {
    if (!token) {
      console.error('cannot listen');
      process.exit(1);
    }
    console.log(`port ${uws.us_socket_local_port(token)}`);
  });
  process.stdin.resume();
  process.stdin.on('end', () => {
    rmSync(file, { force: true });
    process.exit(0);
  });
}

async function relayWorker(): Promise<void> {
  const { slots, control: controlBuffer, lengths: lengthsBuffer, file, sync } = workerData as { slots: SharedArrayBuffer; control: SharedArrayBuffer; lengths: SharedArrayBuffer; file: string; sync: boolean };
  const control = new Int32Array(controlBuffer);
  const lengths = new Int32Array(lengthsBuffer);
  const bytes = new Uint8Array(slots);
  const fd = openSync(file, 'w');
  const keepAlive = setInterval(() => undefined, 1 << 30); // a pending waitAsync alone does not keep a worker alive
  let tail = 0;
  let syncing = false;
  const startSync = (): void => {
    if (syncing) return;
    syncing = true;
    const upTo = tail;
    fdatasync(fd, () => {
      syncing = false;
      Atomics.store(control, DURABLE, upTo);
      Atomics.add(control, EPOCH, 1);
      Atomics.notify(control, EPOCH);
      if (tail > upTo) startSync();
    });
  };
  try {
    for (;;) {
      const head = Atomics.load(control, HEAD);
      if (head > tail) {
        for (; tail < head; tail++) {
          const s = tail % SLOTS;
          writeSync(fd, bytes, s * SLOT_BYTES, lengths[s]);
        }
        Atomics.store(control, WRITTEN, tail);
        if (!sync) Atomics.store(control, DURABLE, tail);
        Atomics.add(control, EPOCH, 1);
        Atomics.notify(control, EPOCH);
        if (sync) startSync();
      }
      const wait = Atomics.waitAsync(control, HEAD, head);
      if (wait.async) await wait.value;
    }
  } finally {
    clearInterval(keepAlive);
    closeSync(fd);
  }
}

async function open(url: string, role: number): Promise<WebSocket> {
  const ws = new WebSocket(url);
  ws.binaryType = 'nodebuffer';
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(Uint8Array.of(role));
  return ws;
}

async function produce(url: string, seconds: number, warmupSeconds: number, rate: number, recordBytes: number): Promise<void> {
  const ws = await open(url, 1);
  const intervalNs = 1e9 / rate;
  const total = Math.round((seconds + warmupSeconds) * rate);
  const warmup = Math.round(warmupSeconds * rate);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  // Records are written into one staging buffer and each batch is copied out of it once, as
  // the client's batch builder does: no buffer per record (the latency run's sender makes no
  // garbage per record either, ws-load.ts).
  const staging = Buffer.alloc(SLOT_BYTES);
  let staged = 0;
  let timer: NodeJS.Timeout | null = null;
  const seal = (): void => {
    timer = null;
    if (staged === 0) return;
    ws.send(Buffer.from(staging.subarray(0, staged)));
    staged = 0;
  };
  const startNs = nowNs() + 10e6;
  const deadlineNs = startNs + (seconds + warmupSeconds) * 1e9 + DEADLINE_SLACK_MS * 1e6;
  let sent = 0;
  await new Promise<void>((resolve) => {
    // One turn of the event loop per wake-up, as a callback (not an awaited promise per turn).
    const tick = (): void => {
      if (sent >= total || nowNs() >= deadlineNs) return resolve();
      const waitUs = (startNs + sent * intervalNs - nowNs()) / 1e3;
      if (waitUs > SCHEDULE_BLOCK_US_MIN) Atomics.wait(sleeper, 0, 0, Math.min(waitUs, SCHEDULE_BLOCK_US_MAX) / 1000);
      const now = nowNs();
      for (; sent < total && startNs + sent * intervalNs <= now; sent++) {
        if (staged + recordBytes > staging.length) seal();
        staging.fill(0, staged, staged + recordBytes);
        staging.writeDoubleLE(sent >= warmup ? startNs + sent * intervalNs : -1, staged);
        staged += recordBytes;
        timer ??= setTimeout(seal, 0); // lingerMs 0: Node's timers wait at least 1 ms
      }
      setImmediate(tick);
    };
    tick();
  });
  if (timer) clearTimeout(timer);
  seal();
  await new Promise((resolve) => setTimeout(resolve, 200));
  ws.close();
}

async function consume(url: string, records: number, timeoutMs: number, recordBytes: number): Promise<void> {
  const ws = await open(url, 2);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 });
  console.log('ready');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    ws.on('message', (data: Buffer) => {
      const receivedNs = nowNs();
      for (let o = 0; o + recordBytes <= data.length; o += recordBytes) {
        const intendedNs = data.readDoubleLE(o);
        if (intendedNs > 0) histogram.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((receivedNs - intendedNs) / 1e3))));
      }
      if (histogram.totalCount >= records) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  console.log(
    JSON.stringify({
      p50Us: histogram.getValueAtPercentile(50),
      p90Us: histogram.getValueAtPercentile(90),
      p99Us: histogram.getValueAtPercentile(99),
      p999Us: histogram.getValueAtPercentile(99.9),
      maxUs: histogram.maxValue,
      records: histogram.totalCount,
    }),
  );
  ws.close();
}

function child(args: string[]): { proc: ChildProcess; lines: AsyncIterableIterator<string> } {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  return { proc, lines: createInterface({ input: proc.stdout! })[Symbol.asyncIterator]() };
}

async function firstLine(lines: AsyncIterableIterator<string>, what: string): Promise<string> {
  const next = await lines.next();
  if (next.done) throw new Error(`the ${what} ended without a word`);
  return next.value;
}

/** Runs the three processes once and returns the consumer's JSON line. */
export async function runFloor(options: { seconds: number; warmupSeconds: number; rate: number; recordBytes: number; sync: boolean }): Promise<string> {
  if (!Number.isInteger(options.recordBytes) || options.recordBytes < STAMP_BYTES || options.recordBytes > SLOT_BYTES) throw new Error(`recordBytes must be an integer from ${STAMP_BYTES} to ${SLOT_BYTES}`);
  const server = child(['server', ...(options.sync ? [] : ['--no-sync'])]);
  try {
    const port = Number((await firstLine(server.lines, 'server')).replace('port ', ''));
    const url = `ws://127.0.0.1:${port}/`;
    const records = Math.round(options.seconds * options.rate) - 1;
    const consumer = child(['consumer', url, String(records), String((options.seconds + options.warmupSeconds) * 1000 + DEADLINE_SLACK_MS), String(options.recordBytes)]);
    if ((await firstLine(consumer.lines, 'consumer')) !== 'ready') throw new Error('the consumer did not get ready');
    const producer = child(['producer', url, String(options.seconds), String(options.warmupSeconds), String(options.rate), String(options.recordBytes)]);
    const result = await firstLine(consumer.lines, 'consumer');
    await new Promise((resolve) => (producer.proc.exitCode !== null ? resolve(null) : producer.proc.once('exit', resolve)));
    return result;
  } finally {
    server.proc.stdin!.end();
  }
}

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

async function main(argv: string[]): Promise<void> {
  const [role, ...args] = argv;
  switch (role) {
    case 'server':
      return relay(!args.includes('--no-sync'));
    case 'producer':
      return produce(args[0], Number(args[1]), Number(args[2]), Number(args[3]), Number(args[4]));
    case 'consumer':
      return consume(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
    case 'run':
      console.log(await runFloor({ seconds: flag(args, '--seconds', 15), warmupSeconds: flag(args, '--warmup-seconds', 3), rate: flag(args, '--rate', 10_000), recordBytes: flag(args, '--record-bytes', RECORD_BYTES_DEFAULT), sync: !args.includes('--no-sync') }));
      return;
    default:
      console.error('usage: ws-floor.js run [--seconds S] [--warmup-seconds W] [--rate R] [--record-bytes B] [--no-sync]');
      process.exitCode = 2;
  }
}

if (isMainThread) {
  if (process.argv[1] === fileURLToPath(import.meta.url)) {
    main(process.argv.slice(2)).then(
      () => {
        if (process.argv[2] !== 'server') process.exit(process.exitCode ?? 0);
      },
      (err: unknown) => {
        console.error(String(err));
        process.exit(1);
      },
    );
  }
} else if ((workerData as { slots?: unknown } | null)?.slots instanceof SharedArrayBuffer) {
  void relayWorker();
}
