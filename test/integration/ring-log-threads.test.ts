// LogRing across threads, loading the compiled ring from dist/. First: a worker holding both
// writer roles (test/fixtures/ring-log-writer.mjs) laps a small ring as fast as it can while
// this thread reads random keys. Every bytes-returning read must be exactly right (never
// torn); reads of keys the writer is overwriting must come back null instead. Second, as
// Sluice runs it: this thread is the data writer and the reader (the gateway) and a worker
// is the entry writer (the owner, test/fixtures/ring-log-owner.mjs), which stamps and
// publishes what this thread hands over; a read must never show an unstamped entry.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { LogRing } from '../../src/ring/log-ring.js';
import { SpscRing } from '../../src/ring/spsc-ring.js';
import { fillKeyBytes, keyBytesLength, prng, testSeed } from '../fixtures/ring-random.mjs';

const WRITER_URL = new URL('../fixtures/ring-log-writer.mjs', import.meta.url);
const OWNER_URL = new URL('../fixtures/ring-log-owner.mjs', import.meta.url);
// The hand-over frame of ring-log-owner.mjs.
const HANDOVER_ENTRY = 0;
const HANDOVER_POSITION = 4;
const HANDOVER_LENGTH = 8;
const HANDOVER_FIRST_KEY = 12;
const HANDOVER_KEY_COUNT = 16;
const HANDOVER_BYTES = 20;
const STAMP_BYTES = 8;
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

  it('never shows a reader an entry its owner has not stamped and published, with the gateway as data writer (seeded)', async () => {
    const seed = testSeed(0x109_0003);
    const ring = LogRing.create({ dataBytes: 64 * 1024, entriesMax: 64 });
    const handover = SpscRing.create(64 * 1024);
    const control = new SharedArrayBuffer(128);
    const controlCells = new Int32Array(control);
    const worker = new Worker(OWNER_URL, { workerData: { sab: ring.sab, handover: handover.sab, control } });
    const done = new Promise<{ entries: number; voids: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const next = prng(seed);
    const counts = { committed: 0, rejected: 0, full: 0, served: 0, missed: 0 };
    let key = 0;
    try {
      const stopAtMs = performance.now() + READ_DURATION_MS;
      while (performance.now() < stopAtMs) {
        // Data writer: hand over one entry when there is room, as OwnerHandle.produce does.
        const keyCount = 1 + (next() & 7);
        let length = 0;
        for (let k = key; k < key + keyCount; k++) length += keyBytesLength(k);
        const frame = handover.reserve(HANDOVER_BYTES);
        const offset = frame < 0 ? -1 : ring.reserve(length);
        if (offset < 0) {
          counts.full += 1;
        } else {
          const rejected = (next() & 7) === 0;
          if (rejected) ring.data.fill(0xee, offset, offset + length);
          else for (let k = key, at = offset; k < key + keyCount; k++) at += fillKeyBytes(ring.data, at, k);
          ring.data.fill(0xaa, offset, offset + STAMP_BYTES); // the owner stamps these
          const v = handover.view;
          v.setUint32(frame + HANDOVER_ENTRY, ring.reservedEntry >>> 0, true);
          v.setInt32(frame + HANDOVER_POSITION, ring.reservedPosition, true);
          v.setUint32(frame + HANDOVER_LENGTH, length, true);
          v.setUint32(frame + HANDOVER_FIRST_KEY, key, true);
          v.setUint32(frame + HANDOVER_KEY_COUNT, rejected ? 0 : keyCount, true);
          ring.commit();
          handover.commit();
          counts.committed += 1;
          if (rejected) counts.rejected += 1;
          else key += keyCount;
        }
        // Reader: a few random keys, mostly the newest ones (being stamped and published).
        for (let r = 0; r < 4; r++) {
          const oldest = ring.oldestKey();
          const newest = ring.visibleNextKey();
          if (oldest < 0 || newest <= oldest) continue;
          const probe = (next() & 1) === 0 ? Math.max(oldest, newest - 1 - (next() % 16)) : oldest + (next() % (newest - oldest));
          const result = ring.read(probe, next() % 16_384);
          if (result === null) {
            counts.missed += 1;
            continue;
          }
          const problem = checkBytes(result.bytes, result.firstKey, result.nextKey);
          if (problem !== null || !(result.firstKey <= probe && probe < result.nextKey)) {
            throw new Error(`seed ${seed}: read(${probe}) -> [${result.firstKey}, ${result.nextKey}) ${problem ?? 'does not hold the key'}`);
          }
          counts.served += 1;
        }
      }
    } finally {
      Atomics.store(controlCells, CONTROL_STOP, 1);
    }
    const appended = await done;
    expect(appended.entries, JSON.stringify(counts)).toBe(counts.committed);
    expect(appended.voids, JSON.stringify(counts)).toBe(counts.rejected);
    expect(counts.committed, JSON.stringify(counts)).toBeGreaterThan(20 * 64); // lapped the ring many times
    expect(counts.served, JSON.stringify(counts)).toBeGreaterThan(1000);
    console.log(`LogRing gateway/owner (seed ${seed}): ${JSON.stringify(counts)}`);
  });
});
