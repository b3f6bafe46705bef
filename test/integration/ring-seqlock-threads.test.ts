// SeqlockCells across threads: a writer worker (test/fixtures/ring-seqlock-writer.mjs)
// rewrites all cells as fast as it can; this thread reads and must never see two writes
// mixed, nor time going backwards.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { SeqlockCells } from '../../src/ring/seqlock-cells.js';

const WRITER_URL = new URL('../fixtures/ring-seqlock-writer.mjs', import.meta.url);
const CONTROL_STOP = 0;
const CONTROL_GENERATION = 16;
const BASE = 2 ** 40;
/** Enough evidence that reads raced writes: this many reads seeing this many distinct writes. */
const READS_MIN = 100_000;
/** A worker that has not started writing by then has failed to load. */
const WORKER_START_MS_MAX = 10_000;
const CHANGES_MIN = 1000;
/** Bound on the run: on a busy 2-core machine the writer may get little CPU for a while. */
const READ_DURATION_MS_MAX = 5000;

describe('SeqlockCells across threads', () => {
  it('never shows a reader a mix of two writes while the writer rewrites every cell', async () => {
    const cells = SeqlockCells.create(8);
    const control = new SharedArrayBuffer(128);
    const controlCells = new Int32Array(control);
    const worker = new Worker(WRITER_URL, { workerData: { sab: cells.sab, control } });
    const done = new Promise<{ generations: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const out = new Float64Array(cells.count);
    let lastGeneration = 0;
    let changes = 0;
    let reads = 0;
    try {
      // Gate on the writer's progress (shared memory), not on time.
      const gateDeadlineMs = performance.now() + WORKER_START_MS_MAX;
      while (Atomics.load(controlCells, CONTROL_GENERATION) === 0) {
        if (performance.now() > gateDeadlineMs) throw new Error('writer worker made no progress (is dist/ built?)');
        Atomics.wait(controlCells, CONTROL_GENERATION, 0, 10);
      }
      const stopAtMs = performance.now() + READ_DURATION_MS_MAX;
      while ((reads < READS_MIN || changes < CHANGES_MIN) && performance.now() < stopAtMs) {
        const read = reads++;
        cells.read(out);
        const generation = out[0] - BASE;
        for (let i = 1; i < cells.count; i++) {
          if (out[i] !== BASE + generation * (i + 1)) throw new Error(`read ${read}: cell ${i} is from another write than cell 0 (${generation})`);
        }
        if (generation < lastGeneration) throw new Error(`read ${read}: generation went back from ${lastGeneration} to ${generation}`);
        if (generation !== lastGeneration) changes += 1;
        lastGeneration = generation;
        const single = cells.get(7) - BASE;
        if (single % 8 !== 0 || single / 8 < generation) throw new Error(`read ${read}: get(7) gave ${single}`);
      }
    } finally {
      Atomics.store(controlCells, CONTROL_STOP, 1);
    }
    const written = await done;
    expect(written.generations).toBeGreaterThan(1000);
    expect(reads).toBeGreaterThan(1000);
    expect(changes).toBeGreaterThan(100); // the reads really raced the writes
  });
});
