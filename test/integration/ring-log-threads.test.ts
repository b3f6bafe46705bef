// LogRing across threads: a writer worker (test/fixtures/ring-log-writer.mjs, loading the
// compiled ring from dist/) laps a small ring as fast as it can while this thread reads
// random keys. Every bytes-returning read must be exactly right (never torn); reads of
// keys the writer is overwriting must come back null instead.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { LogRing } from '../../src/ring/log-ring.js';
import { keyBytesLength, prng, testSeed } from '../fixtures/ring-random.mjs';

const WRITER_URL = new URL('../fixtures/ring-log-writer.mjs', import.meta.url);
const CONTROL_STOP = 0;
const CONTROL_ENTRIES = 16;
const READ_DURATION_MS = 1500;
/** A worker that has not started appending by then has failed to load. */
const WORKER_START_MS_MAX = 10_000;

/** Checks `bytes` is fillKeyBytes(k) for k in [firstKey, nextKey), back to back. */
function checkBytes(bytes: Uint8Array, firstKey: number, nextKey: number): string | null {
  let at = 0;
  for (let key = firstKey; key < nextKey; key++) {
    const length = keyBytesLength(key);
    if (at + length > bytes.length) return `bytes end inside key ${key}`;
    for (let j = 0; j < length; j++) {
      if (bytes[at + j] !== ((key * 31 + j * 7 + (key >>> 8)) & 0xff)) return `byte ${j} of key ${key} is wrong`;
    }
    at += length;
  }
  return at === bytes.length ? null : `${bytes.length - at} bytes past key ${nextKey - 1}`;
}

describe('LogRing across threads', () => {
  it('never returns torn bytes to a reader racing a writer that laps a small ring (seeded)', async () => {
    const seed = testSeed(0x109_0002);
    const ring = LogRing.create({ dataBytes: 64 * 1024, entriesMax: 64 });
    const control = new SharedArrayBuffer(128);
    const controlCells = new Int32Array(control);
    const worker = new Worker(WRITER_URL, { workerData: { sab: ring.sab, control, seed } });
    const done = new Promise<{ entries: number; keys: number; retries: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const next = prng(seed ^ 0x5a5a5a5a);
    const counts = { served: 0, missedBelowOldest: 0, missedRacing: 0, multiEntry: 0 };
    try {
      // Gate on the writer's progress, not on time: start once it has lapped the ring.
      const gateDeadlineMs = performance.now() + WORKER_START_MS_MAX;
      while (Atomics.load(controlCells, CONTROL_ENTRIES) < 1024) {
        if (performance.now() > gateDeadlineMs) throw new Error('writer worker made no progress (is dist/ built?)');
        Atomics.wait(controlCells, CONTROL_ENTRIES, Atomics.load(controlCells, CONTROL_ENTRIES), 10);
      }
      const stopAtMs = performance.now() + READ_DURATION_MS;
      while (performance.now() < stopAtMs) {
        for (let batch = 0; batch < 64; batch++) {
          const oldest = ring.oldestKey();
          const newest = ring.visibleNextKey();
          if (oldest < 0 || newest <= oldest) continue;
          // Mostly keys near the oldest (the ones being overwritten), some anywhere, some below.
          const draw = next() % 8;
          const key = draw < 4 ? oldest + (next() % 16) : draw < 7 ? oldest + (next() % (newest - oldest)) : Math.max(0, oldest - 1 - (next() % 16));
          const maxBytes = next() % 32_768;
          const result = ring.read(key, maxBytes);
          if (result === null) {
            if (key < oldest) counts.missedBelowOldest += 1;
            else counts.missedRacing += 1;
            continue;
          }
          const problem = checkBytes(result.bytes, result.firstKey, result.nextKey);
          if (problem !== null || !(result.firstKey <= key && key < result.nextKey)) {
            throw new Error(`seed ${seed}: read(${key}) -> [${result.firstKey}, ${result.nextKey}) ${problem ?? 'does not hold the key'}`);
          }
          counts.served += 1;
          if (result.bytes.length > 0 && result.nextKey - result.firstKey > 8) counts.multiEntry += 1;
        }
      }
    } finally {
      Atomics.store(controlCells, CONTROL_STOP, 1);
    }
    const written = await done;
    // The writer lapped the ring many times and the reader was served, across entries too.
    expect(written.entries, JSON.stringify(counts)).toBeGreaterThan(100 * 64);
    expect(counts.served, JSON.stringify(counts)).toBeGreaterThan(1000);
    expect(counts.multiEntry, JSON.stringify(counts)).toBeGreaterThan(0);
    console.log(`LogRing race (seed ${seed}): writer ${written.entries} entries, ${written.retries} publish-retries; reader ${JSON.stringify(counts)}`);
  });
});
