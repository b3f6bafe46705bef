/**
 * Ring micro-benchmark: SpscRing between two threads, against a plain copy in one thread.
 *
 *   node dist/bench/ring.bench.js [--smoke] [--runs N]
 *
 * Writer = a Worker (this same file, started with workerData.role = WORKER_ROLE), reader =
 * the main thread. The writer writes frames as fast as it can (spinning briefly, then
 * sleeping in waitForSpace when the ring is full); the reader peeks and consumes them
 * (spinning briefly, then sleeping in wait when it is empty).
 * 1. 64-byte frames through a 1 MiB ring, frames/s: the reader reads each frame's first and
 *    last byte (and checks them), (a) releasing every frame, (b) batched: advance() per
 *    frame and one releaseAdvanced() per 64 frames or when the ring runs dry.
 * 2. 64-KiB frames through a 4 MiB ring, GB/s; the reader copies each frame out to one
 *    reused 64 KiB buffer, (a) the writer only stamps each payload's first and last byte:
 *    the ring's cost on top of one copy, the figure the 50% target is about; (b) the writer
 *    also copies a 64 KiB source into each frame, as a real producer does: end to end,
 *    two copies on two cores, every byte crossing from one core's cache to the other's.
 * 3. Baselines, measured in the same run: `target.set(source)` of 64 KiB in one thread
 *    (tinybench; both arrays stay in cache: the machine's best case); the same copy out of
 *    a 4 MiB area walked like the ring; and the main thread copying 64 KiB pieces of a
 *    4 MiB area the writer thread has just written (no ring, no waiting: the bytes must
 *    cross from the other core's cache, which bounds what any ring's reader can do).
 * Copies into and out of the ring go through copyBytes (src/ring/shared-copy.ts): V8's own
 * `set` (and Buffer's `copy`) into or out of shared memory copies word by word at about a
 * third of memcpy's speed, which bounded every earlier run of this bench at about 30%.
 * Every figure is the median of `runs` runs. Targets: >= 5M 64-byte frames/s; 64-KiB frames
 * >= 50% of the `target.set(source)` bandwidth.
 */
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Bench } from 'tinybench';
import { copyBytes } from '../src/ring/shared-copy.js';
import { SpscRing } from '../src/ring/spsc-ring.js';

const WORKER_ROLE = 'ring-bench-writer';
const SMALL_FRAME_BYTES = 64;
const LARGE_FRAME_BYTES = 64 * 1024;
/** 1 MiB: a typical command ring; big enough that the writer rarely waits for the reader. */
const SMALL_RING_BYTES = 1 << 20;
/** 4 MiB: room for 63 frames of 64 KiB, so both threads copy at once most of the time. */
const LARGE_RING_BYTES = 4 << 20;
/** The reader releases at least this often in batched mode, so the writer never starves. */
const RELEASE_BATCH_FRAMES = 64;
/**
 * Empty or full: polls before sleeping (about 10 to 40 us). A wake-up costs about 45 us on
 * this machine, but a longer spin steals the core the other thread needs whenever a third
 * thread competes for the two cores (measured: 20,000 polls halved both figures then).
 */
const SPIN_POLLS = 2000;
/** Longest single sleep: the loops re-check after it (a notify normally ends it first). */
const SLEEP_MS = 100;
/** Empty sleeps in a row after which the reader decides the writer is dead (10 s). */
const STALL_SLEEPS_MAX = 100;

export interface RingBenchOptions {
  smoke: boolean;
  runs?: number;
}

export interface RingBenchResult {
  env: { node: string; cpu: string; cores: number; smoke: boolean; runs: number };
  /** 64-byte frames per second, reader releasing every frame (median). */
  smallFramesPerSec: number;
  /** 64-byte frames per second, reader releasing once per batch (median). */
  smallFramesPerSecBatched: number;
  /** 64-KiB frames through the ring, copied out by the reader, GB/s (median; 1 GB = 1e9 bytes). */
  largeFramesGBps: number;
  /** 64-KiB frames through the ring, copied in by the writer and out by the reader, GB/s. */
  largeFramesCopyInGBps: number;
  /** One-thread `target.set(source)` of 64 KiB, both in cache, GB/s (median). */
  copyGBps: number;
  /** One-thread copy of 64 KiB out of a 4 MiB area walked like the ring, GB/s (median). */
  copyFromRingSizedAreaGBps: number;
  /** Main thread copying 64 KiB pieces the writer thread has just written (no ring), GB/s. */
  crossCoreCopyGBps: number;
  /** largeFramesGBps / copyGBps. */
  largeToCopyRatio: number;
  runsSmallFramesPerSec: number[];
  runsSmallFramesPerSecBatched: number[];
  runsLargeFramesGBps: number[];
  runsLargeFramesCopyInGBps: number[];
}

type WriterCommand =
  | { kind: 'run'; ring: 'small' | 'large' | 'large-copy-in'; frames: number }
  | { kind: 'fill'; round: number }
  | { kind: 'exit' };
type WriterReply = { kind: 'done'; fullWaits: number };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// ---- writer (worker thread) ---------------------------------------------------------------

function writeSmallFrames(ring: SpscRing, frames: number): number {
  const data = ring.data;
  let fullWaits = 0;
  for (let i = 0; i < frames; i++) {
    let offset = ring.reserve(SMALL_FRAME_BYTES);
    if (offset < 0) {
      let polls = 0;
      while ((offset = ring.reserve(SMALL_FRAME_BYTES)) < 0) {
        if (++polls > SPIN_POLLS) {
          fullWaits += 1;
          ring.waitForSpace(SMALL_FRAME_BYTES, SLEEP_MS);
          polls = 0;
        }
      }
    }
    data[offset] = i & 0xff;
    data[offset + SMALL_FRAME_BYTES - 1] = (i >>> 8) & 0xff;
    ring.commit();
  }
  return fullWaits;
}

/** With `source`, copies it into each frame; without, stamps the first and last byte only. */
function writeLargeFrames(ring: SpscRing, frames: number, source: Buffer | null, ringBytes: Buffer): number {
  let fullWaits = 0;
  for (let i = 0; i < frames; i++) {
    let offset = ring.reserve(LARGE_FRAME_BYTES);
    if (offset < 0) {
      let polls = 0;
      while ((offset = ring.reserve(LARGE_FRAME_BYTES)) < 0) {
        if (++polls > SPIN_POLLS) {
          fullWaits += 1;
          ring.waitForSpace(LARGE_FRAME_BYTES, SLEEP_MS);
          polls = 0;
        }
      }
    }
    if (source !== null) {
      source[0] = i & 0xff;
      copyBytes(ringBytes, offset, source);
    } else {
      ringBytes[offset] = i & 0xff;
      ringBytes[offset + LARGE_FRAME_BYTES - 1] = 0x5a;
    }
    ring.commit();
  }
  return fullWaits;
}

function runWriter(): void {
  const { small: smallSab, large: largeSab } = workerData as { small: SharedArrayBuffer; large: SharedArrayBuffer };
  const small = new SpscRing(smallSab);
  const large = new SpscRing(largeSab);
  const largeBytes = Buffer.from(large.data.buffer, large.data.byteOffset, large.data.byteLength);
  const source = Buffer.alloc(LARGE_FRAME_BYTES, 0x5a);
  const port = parentPort!;
  port.on('message', (command: WriterCommand) => {
    switch (command.kind) {
      case 'run': {
        const fullWaits = command.ring === 'small'
          ? writeSmallFrames(small, command.frames)
          : writeLargeFrames(large, command.frames, command.ring === 'large-copy-in' ? source : null, largeBytes);
        port.postMessage({ kind: 'done', fullWaits } satisfies WriterReply);
        break;
      }
      case 'fill': {
        // Writes the whole large ring area from this thread, so that the main thread's next
        // copy reads bytes that sit modified in this core's cache (the cross-core baseline).
        source[0] = command.round & 0xff;
        for (let offset = 0; offset < largeBytes.length; offset += LARGE_FRAME_BYTES) copyBytes(largeBytes, offset, source);
        port.postMessage({ kind: 'done', fullWaits: 0 } satisfies WriterReply);
        break;
      }
      case 'exit':
        port.close();
        break;
      default:
        throw new Error(`unknown writer command ${JSON.stringify(command satisfies never)}`);
    }
  });
}

// ---- reader (main thread) -----------------------------------------------------------------

/**
 * Waits for the next frame: spins, then sleeps; returns its payload offset. Gives up after
 * STALL_SLEEPS_MAX empty sleeps: a dead writer's 'error' event cannot reach this thread
 * while it loops, so the loop itself must end.
 */
function nextFrame(ring: SpscRing): number {
  let offset = ring.peek();
  let polls = 0;
  let sleeps = 0;
  while (offset < 0) {
    if (++polls > SPIN_POLLS) {
      if (!ring.wait(SLEEP_MS) && ++sleeps >= STALL_SLEEPS_MAX) throw new Error('ring bench: the writer thread stalled');
      polls = 0;
    }
    offset = ring.peek();
  }
  return offset;
}

function readSmallFrames(ring: SpscRing, frames: number, batched: boolean): number {
  const data = ring.data;
  let errors = 0;
  for (let i = 0; i < frames; i++) {
    let offset = ring.peek();
    if (offset < 0) {
      if (batched) ring.releaseAdvanced(); // give the writer the space before spinning
      offset = nextFrame(ring);
    }
    if (data[offset] !== (i & 0xff) || data[offset + SMALL_FRAME_BYTES - 1] !== ((i >>> 8) & 0xff)) errors += 1;
    if (batched) {
      ring.advance();
      if ((i & (RELEASE_BATCH_FRAMES - 1)) === RELEASE_BATCH_FRAMES - 1) ring.releaseAdvanced();
    } else {
      ring.release();
    }
  }
  ring.releaseAdvanced();
  return errors;
}

function readLargeFrames(ring: SpscRing, frames: number, ringBytes: Buffer, target: Buffer): number {
  let errors = 0;
  for (let i = 0; i < frames; i++) {
    const offset = nextFrame(ring);
    const length = ring.frameLength;
    copyBytes(target, 0, ringBytes.subarray(offset, offset + length));
    if (target[0] !== (i & 0xff) || length !== LARGE_FRAME_BYTES) errors += 1;
    ring.release();
  }
  return errors;
}

class WriterThread {
  readonly #worker: Worker;
  #pending: { resolve: (reply: WriterReply) => void; reject: (err: unknown) => void } | null = null;
  #failure: unknown = null;

  constructor(small: SpscRing, large: SpscRing) {
    this.#worker = new Worker(new URL(import.meta.url), {
      workerData: { role: WORKER_ROLE, small: small.sab, large: large.sab },
    });
    this.#worker.on('message', (reply: WriterReply) => {
      const pending = this.#pending;
      this.#pending = null;
      pending?.resolve(reply);
    });
    this.#worker.on('error', (err) => {
      // The reader may be blocked in a loop; it notices through the failed promise at the
      // latest, and its own waits are bounded (SLEEP_MS) so it does not hang for long.
      this.#failure = err;
      this.#pending?.reject(err);
      this.#pending = null;
    });
  }

  /** Starts a run in the writer; the returned promise resolves once it wrote every frame. */
  start(ring: 'small' | 'large' | 'large-copy-in', frames: number): Promise<WriterReply> {
    return this.#send({ kind: 'run', ring, frames });
  }

  /** Has the writer fill the whole large ring area; resolves once it has. */
  fill(round: number): Promise<WriterReply> {
    return this.#send({ kind: 'fill', round });
  }

  #send(command: WriterCommand): Promise<WriterReply> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const done = new Promise<WriterReply>((resolve, reject) => { this.#pending = { resolve, reject }; });
    this.#worker.postMessage(command);
    return done;
  }

  async close(): Promise<void> {
    this.#worker.postMessage({ kind: 'exit' } satisfies WriterCommand);
    await this.#worker.terminate();
  }
}

async function measureSmall(writer: WriterThread, ring: SpscRing, frames: number, batched: boolean): Promise<number> {
  const startedNs = process.hrtime.bigint();
  const done = writer.start('small', frames);
  const errors = readSmallFrames(ring, frames, batched);
  const elapsedSec = Number(process.hrtime.bigint() - startedNs) / 1e9;
  await done;
  if (errors !== 0) throw new Error(`ring bench: ${errors} frames of 64 bytes arrived wrong`);
  return frames / elapsedSec;
}

async function measureLarge(writer: WriterThread, ring: SpscRing, frames: number, target: Buffer, copyIn: boolean): Promise<number> {
  const ringBytes = Buffer.from(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength);
  const startedNs = process.hrtime.bigint();
  const done = writer.start(copyIn ? 'large-copy-in' : 'large', frames);
  const errors = readLargeFrames(ring, frames, ringBytes, target);
  const elapsedSec = Number(process.hrtime.bigint() - startedNs) / 1e9;
  await done;
  if (errors !== 0) throw new Error(`ring bench: ${errors} frames of 64 KiB arrived wrong`);
  return (frames * LARGE_FRAME_BYTES) / elapsedSec / 1e9;
}

/**
 * Cross-core copy baseline: the main thread copies the 4 MiB area out in 64 KiB pieces
 * right after the writer thread wrote all of it, i.e. the bytes come from the other core's
 * cache, as they do for the ring's reader. No ring, no waiting: the ceiling of the reader.
 */
async function measureCrossCoreCopy(writer: WriterThread, ring: SpscRing, rounds: number, target: Buffer): Promise<number> {
  const ringBytes = Buffer.from(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength);
  const figures: number[] = [];
  for (let round = 0; round < rounds; round++) {
    await writer.fill(round);
    const startedNs = process.hrtime.bigint();
    for (let offset = 0; offset < ringBytes.length; offset += LARGE_FRAME_BYTES) {
      copyBytes(target, 0, ringBytes.subarray(offset, offset + LARGE_FRAME_BYTES));
    }
    const elapsedSec = Number(process.hrtime.bigint() - startedNs) / 1e9;
    if (target[0] !== (round & 0xff)) throw new Error('ring bench: cross-core copy read stale bytes');
    figures.push(ringBytes.length / elapsedSec / 1e9);
  }
  return median(figures);
}

/**
 * One-thread baselines: target.set(source) in cache (tinybench), and out of a 4 MiB area.
 * A fresh Bench per run: tinybench 6 keeps a task's result across run() calls.
 */
async function measureCopies(smoke: boolean, runs: number): Promise<{ copyGBps: number; areaGBps: number }> {
  const source = new Uint8Array(LARGE_FRAME_BYTES).fill(0x5a);
  const target = new Uint8Array(LARGE_FRAME_BYTES);
  const area = new Uint8Array(LARGE_RING_BYTES).fill(0x5a);
  const slots = LARGE_RING_BYTES / LARGE_FRAME_BYTES;
  let slot = 0;
  const copy: number[] = [];
  const fromArea: number[] = [];
  for (let run = 0; run < runs; run++) {
    const bench = new Bench({ time: smoke ? 30 : 200, warmupTime: smoke ? 10 : 50 });
    bench.add('target.set(source) 64 KiB', () => { target.set(source); });
    bench.add('copy 64 KiB out of a 4 MiB area', () => {
      target.set(area.subarray(slot * LARGE_FRAME_BYTES, (slot + 1) * LARGE_FRAME_BYTES));
      slot = (slot + 1) % slots;
    });
    await bench.run();
    const [inCache, outOfArea] = bench.tasks.map((task) => {
      const result = task.result;
      if (result.state !== 'completed') throw new Error(`ring bench: ${task.name} did not complete`);
      return LARGE_FRAME_BYTES / (result.latency.p50 / 1000) / 1e9;
    });
    copy.push(inCache);
    fromArea.push(outOfArea);
  }
  return { copyGBps: median(copy), areaGBps: median(fromArea) };
}

export async function runRingBench(options: RingBenchOptions): Promise<RingBenchResult> {
  const smoke = options.smoke;
  const runs = options.runs ?? (smoke ? 1 : 5);
  const smallFrames = smoke ? 50_000 : 4_000_000;
  const largeFrames = smoke ? 128 : 16_384; // 8 MiB or 1 GiB per run
  // Baselines first, in a quiet process: no worker yet.
  const { copyGBps, areaGBps } = await measureCopies(smoke, runs);
  const small = SpscRing.create(SMALL_RING_BYTES);
  const large = SpscRing.create(LARGE_RING_BYTES);
  large.data.fill(0); // touch the ring once so the first run does not pay for page faults
  const target = Buffer.alloc(LARGE_FRAME_BYTES);
  const writer = new WriterThread(small, large);
  const runsSmall: number[] = [];
  const runsBatched: number[] = [];
  const runsLarge: number[] = [];
  const runsLargeCopyIn: number[] = [];
  const runsCrossCore: number[] = [];
  try {
    // Each kind of run goes back to back, after warm-up runs of its own that are not
    // counted: the first runs pay for the JIT and for memory the host had taken back
    // (memory idle for a while runs slowly when first touched again on this machine).
    const warmups = smoke ? 1 : 2;
    for (let run = 0; run < warmups + runs; run++) {
      const figure = await measureSmall(writer, small, smallFrames, false);
      if (run >= warmups) runsSmall.push(figure);
    }
    for (let run = 0; run < warmups + runs; run++) {
      const figure = await measureSmall(writer, small, smallFrames, true);
      if (run >= warmups) runsBatched.push(figure);
    }
    for (let run = 0; run < warmups + runs; run++) {
      const figure = await measureLarge(writer, large, largeFrames, target, false);
      if (run >= warmups) runsLarge.push(figure);
    }
    for (let run = 0; run < warmups + runs; run++) {
      const figure = await measureLarge(writer, large, largeFrames, target, true);
      if (run >= warmups) runsLargeCopyIn.push(figure);
    }
    for (let run = 0; run < runs; run++) runsCrossCore.push(await measureCrossCoreCopy(writer, large, smoke ? 2 : 16, target));
  } finally {
    await writer.close();
  }
  const largeFramesGBps = median(runsLarge);
  return {
    env: { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, smoke, runs },
    smallFramesPerSec: median(runsSmall),
    smallFramesPerSecBatched: median(runsBatched),
    largeFramesGBps,
    largeFramesCopyInGBps: median(runsLargeCopyIn),
    copyGBps,
    copyFromRingSizedAreaGBps: areaGBps,
    crossCoreCopyGBps: median(runsCrossCore),
    largeToCopyRatio: largeFramesGBps / copyGBps,
    runsSmallFramesPerSec: runsSmall,
    runsSmallFramesPerSecBatched: runsBatched,
    runsLargeFramesGBps: runsLarge,
    runsLargeFramesCopyInGBps: runsLargeCopyIn,
  };
}

export function formatRingBench(result: RingBenchResult): string {
  const millions = (n: number): string => `${(n / 1e6).toFixed(2)} M/s`;
  const gbps = (n: number): string => `${n.toFixed(2)} GB/s`;
  const spread = (values: number[], scale: number): string => `runs ${values.map((v) => (v / scale).toFixed(1)).join(' ')}`;
  const rows: Array<[string, string, string]> = [
    ['64 B frames, release per frame', millions(result.smallFramesPerSec), `${(result.smallFramesPerSec / 5e6).toFixed(2)} x target 5 M/s`],
    ['64 B frames, batched release', millions(result.smallFramesPerSecBatched), `${(result.smallFramesPerSecBatched / 5e6).toFixed(2)} x target 5 M/s`],
    ['64 KiB frames, reader copies out', gbps(result.largeFramesGBps), `${(result.largeToCopyRatio * 100).toFixed(0)}% of target.set (target 50%)`],
    ['64 KiB frames, writer copies in, reader out', gbps(result.largeFramesCopyInGBps),
      `${((result.largeFramesCopyInGBps / result.copyGBps) * 100).toFixed(0)}% of target.set, ${((result.largeFramesCopyInGBps / result.crossCoreCopyGBps) * 100).toFixed(0)}% of cross-core copy`],
    ['baseline: target.set(source) 64 KiB, 1 thread', gbps(result.copyGBps), '100%'],
    ['baseline: copy out of a 4 MiB area, 1 thread', gbps(result.copyFromRingSizedAreaGBps),
      `${((result.copyFromRingSizedAreaGBps / result.copyGBps) * 100).toFixed(0)}% of target.set`],
    ['baseline: cross-core copy (bytes the other thread just wrote)', gbps(result.crossCoreCopyGBps),
      `${((result.crossCoreCopyGBps / result.copyGBps) * 100).toFixed(0)}% of target.set`],
  ];
  const width = Math.max(...rows.map((row) => row[0].length));
  const { env } = result;
  return [
    `ring bench: node ${env.node}, ${env.cpu}, ${env.cores} cores, ${env.runs} run(s)${env.smoke ? ', SMOKE' : ''} (medians)`,
    ...rows.map(([name, figure, ratio]) => `  ${name.padEnd(width)}  ${figure.padStart(12)}  ${ratio}`),
    `  64 B frames, release per frame: ${spread(result.runsSmallFramesPerSec, 1e6)} (M/s)`,
    `  64 B frames, batched release:   ${spread(result.runsSmallFramesPerSecBatched, 1e6)} (M/s)`,
    `  64 KiB frames, copy out:        ${spread(result.runsLargeFramesGBps, 1)} (GB/s)`,
    `  64 KiB frames, copy in and out: ${spread(result.runsLargeFramesCopyInGBps, 1)} (GB/s)`,
  ].join('\n');
}

function isDirectRun(): boolean {
  return isMainThread && process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === WORKER_ROLE) {
  runWriter();
} else if (isDirectRun()) {
  const smoke = process.argv.includes('--smoke');
  const runsAt = process.argv.indexOf('--runs');
  const runs = runsAt > 0 ? Number(process.argv[runsAt + 1]) : undefined;
  const result = await runRingBench({ smoke, runs });
  console.log(formatRingBench(result));
}
