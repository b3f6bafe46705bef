// SpscRing across real threads: worker fixtures (test/fixtures/ring-spsc-*.mjs) load the
// compiled ring from dist/, so build first (`npm test` does). Threads are gated by
// shared-memory signals, never by sleeps.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { SpscRing } from '../../src/ring/spsc-ring.js';
import { fnv1a32, prng, testSeed } from '../fixtures/ring-random.mjs';
import { CONTROL_BYTES, CONTROL_GO, CONTROL_READY, framePayloadBytes } from '../fixtures/ring-spsc-protocol.mjs';

const WRITER_URL = new URL('../fixtures/ring-spsc-writer.mjs', import.meta.url);
const READER_URL = new URL('../fixtures/ring-spsc-reader.mjs', import.meta.url);

interface WriterResult { frames: number; fullCount: number; shrinkCount: number }
interface ReaderResult { frames: number; waitCount: number }

/** Runs a fixture worker to its one result message; rejects on error or a silent exit. */
function runWorker<T>(url: URL, workerData: Record<string, unknown>): { worker: Worker; result: Promise<T> } {
  const worker = new Worker(url, { workerData });
  const result = new Promise<T>((resolve, reject) => {
    let settled = false;
    worker.once('message', (message: T) => { settled = true; resolve(message); });
    worker.once('error', (err) => { settled = true; reject(err); });
    worker.once('exit', (code) => { if (!settled) reject(new Error(`worker exited with code ${code} before answering`)); });
  });
  return { worker, result };
}

async function withSeed<T>(seed: number, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw new Error(`failed with seed ${seed} (replay: RING_TEST_SEED=${seed}): ${(err as Error).message}`, { cause: err });
  }
}

describe('SpscRing across threads', () => {
  it('delivers 2,000,000 random-size frames in order and intact through a 64 KiB ring (seeded)', async () => {
    const seed = testSeed(0x51c3_0002);
    const frames = 2_000_000;
    const ring = SpscRing.create(64 * 1024);
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    await withSeed(seed, async () => {
      const reader = runWorker<ReaderResult>(READER_URL, {
        sab: ring.sab, control, seed, frames, slowFrames: 0, gateOnFull: false, releaseEvery: 16,
      });
      const writer = runWorker<WriterResult>(WRITER_URL, { sab: ring.sab, control, seed, frames, waitForGo: false });
      const [written, read] = await Promise.all([writer.result, reader.result]);
      expect(written.frames).toBe(frames);
      expect(read.frames).toBe(frames);
      expect(written.shrinkCount).toBeGreaterThan(0);
    });
    // A fresh attachment starts at the published read counter: everything was released.
    expect(new SpscRing(ring.sab).isEmpty()).toBe(true);
  });

  it('makes a fast writer see a full ring and wait for space behind a slow reader, losing nothing (seeded)', async () => {
    const seed = testSeed(0x51c3_0003);
    const frames = 100_000;
    const ring = SpscRing.create(16 * 1024);
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    await withSeed(seed, async () => {
      // The reader starts only once the writer has flagged a full ring, then stays slow for
      // the first 2,000 frames, releasing one frame at a time.
      const reader = runWorker<ReaderResult>(READER_URL, {
        sab: ring.sab, control, seed, frames, slowFrames: 2_000, gateOnFull: true, releaseEvery: 1,
      });
      const writer = runWorker<WriterResult>(WRITER_URL, { sab: ring.sab, control, seed, frames, waitForGo: false });
      const [written, read] = await Promise.all([writer.result, reader.result]);
      expect(written.fullCount).toBeGreaterThan(0);
      expect(read.frames).toBe(frames);
    });
  });

  it('wakes a main-thread reader sleeping in waitAsync and drains 200,000 frames with it (seeded)', async () => {
    const seed = testSeed(0x51c3_0004);
    const frames = 200_000;
    const ring = SpscRing.create(64 * 1024);
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const controlCells = new Int32Array(control);
    await withSeed(seed, async () => {
      const writer = runWorker<WriterResult>(WRITER_URL, { sab: ring.sab, control, seed, frames, waitForGo: true });
      // Wait (without blocking this thread) until the writer is loaded and gated on GO.
      while (Atomics.load(controlCells, CONTROL_READY) === 0) {
        const ready = Atomics.waitAsync(controlCells, CONTROL_READY, 0, 1000);
        if (ready.async) await ready.value;
      }
      // The ring is empty and the writer is gated: this wait can only end by notify or timeout.
      const startedMs = performance.now();
      const firstWait = ring.waitAsync(60_000);
      Atomics.store(controlCells, CONTROL_GO, 1);
      Atomics.notify(controlCells, CONTROL_GO);
      await firstWait;
      expect(performance.now() - startedMs).toBeLessThan(900); // the capped timeout is 1 s
      expect(ring.isEmpty()).toBe(false);

      const next = prng(seed);
      let waitCount = 0;
      let sequence = 0;
      while (sequence < frames) {
        let offset = ring.peek();
        while (offset !== -1) {
          const expectedBytes = framePayloadBytes(next, ring.frameBytesMax);
          if ((next() & 7) === 0) next();
          // Plain checks: expect() per frame would dominate the run time.
          if (ring.frameLength !== expectedBytes) throw new Error(`frame ${sequence}: ${ring.frameLength} bytes, expected ${expectedBytes}`);
          if (ring.view.getUint32(offset, true) !== sequence) throw new Error(`frame ${sequence}: wrong sequence number`);
          if (fnv1a32(ring.data, offset + 8, offset + expectedBytes) !== ring.view.getUint32(offset + 4, true)) {
            throw new Error(`frame ${sequence}: content does not match its checksum`);
          }
          ring.advance();
          sequence += 1;
          offset = ring.peek();
        }
        ring.releaseAdvanced();
        if (sequence < frames) {
          waitCount += 1;
          await ring.waitAsync(1000);
        }
      }
      const written = await writer.result;
      expect(written.frames).toBe(frames);
      expect(waitCount).toBeGreaterThan(0);
    });
  });
});
