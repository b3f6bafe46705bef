import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem } from '../../src/persist/fs.js';
import { DEFAULT_LOG_CONFIG, PartitionLog, segmentLogName } from '../../src/persist/partition-log.js';
import { decodeBatch, encodeBatch, forEachBatch } from '../../src/persist/record-batch.js';
import {
  appendBatch,
  concat,
  errorCode,
  FakeClock,
  sealed,
  SMALL_CONFIG,
  seededRandom,
  tempDir,
  testSeed,
  valueOf,
} from './persist-helpers.js';

function offsetsIn(bytes: Uint8Array): number[] {
  const out: number[] = [];
  forEachBatch(bytes, (batch) => {
    for (const r of decodeBatch(batch).records) out.push(r.offset);
  });
  return out;
}

describe('PartitionLog basics', () => {
  it('an empty folder gives an empty log at offset 0 with one segment file', () => {
    const dir = join(tempDir(), 'topic-0');
    const log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    expect(log.logStartOffset).toBe(0);
    expect(log.logEndOffset).toBe(0);
    expect(log.durableOffset).toBe(0);
    expect(log.sizeBytes).toBe(0);
    expect(log.segmentCount).toBe(1);
    expect(log.activeSegmentBaseOffset).toBe(0);
    expect(existsSync(join(dir, '00000000000000000000.log'))).toBe(true);
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(log.locate(0, 100)).toBeNull();
    expect(log.read(0, 100)).toBeNull();
    log.close({ clean: true });
  });

  it('DEFAULT_LOG_CONFIG matches Kafka defaults', () => {
    expect(DEFAULT_LOG_CONFIG).toEqual({
      segmentBytes: 1024 ** 3,
      segmentMs: 7 * 86_400_000,
      retentionMs: 7 * 86_400_000,
      retentionBytes: -1,
      indexIntervalBytes: 4096,
      batchBytesMax: 1048588,
      cleanupPolicy: 'delete',
      deleteRetentionMs: 86_400_000,
      timestampType: 'CreateTime',
    });
  });

  it('rejects an invalid config with INVALID_ARGUMENT', () => {
    const dir = tempDir();
    expect(errorCode(() => PartitionLog.open({ dir, config: { ...SMALL_CONFIG, segmentBytes: 10 } }))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => PartitionLog.open({ dir, config: { ...SMALL_CONFIG, retentionMs: -2 } }))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => PartitionLog.open({ dir, config: { ...SMALL_CONFIG, cleanupPolicy: 'shred' as never } }))).toBe('INVALID_ARGUMENT');
    expect(errorCode(() => PartitionLog.open({ dir, config: { ...SMALL_CONFIG, deleteRetentionMs: -1 } }))).toBe('INVALID_ARGUMENT');
  });

  it('appends and reads back batches across many 4 KiB segments, byte for byte', () => {
    const seed = testSeed();
    const rnd = seededRandom(seed);
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    const batches: { first: number; next: number; bytes: Uint8Array }[] = [];
    for (let i = 0; i < 300; i++) {
      batches.push(appendBatch(log, { count: 1 + Math.floor(rnd() * 5), valueBytes: Math.floor(rnd() * 120) }));
    }
    expect(log.segmentCount).toBeGreaterThan(5);
    expect(log.logEndOffset).toBe(batches[batches.length - 1].next);
    for (const b of batches) {
      const got = log.read(b.first, 1)!;
      expect(got).toEqual(b.bytes);
    }
    // Reading everything in 1 KiB steps yields every offset once, in order.
    const seen: number[] = [];
    let at = 0;
    while (at < log.logEndOffset) {
      const chunk = log.read(at, 1024)!;
      const offsets = offsetsIn(chunk);
      seen.push(...offsets.filter((o) => o >= at));
      at = offsets[offsets.length - 1] + 1;
    }
    expect(seen).toEqual(Array.from({ length: log.logEndOffset }, (_, i) => i));
    log.close({ clean: true });
  });

  it('a read from the middle of a batch returns the whole containing batch', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    appendBatch(log, { count: 3 });
    const b = appendBatch(log, { count: 10 });
    appendBatch(log, { count: 2 });
    const got = log.read(b.first + 6, 1)!;
    expect(got).toEqual(b.bytes);
    const plan = log.locate(b.first + 6, 1)!;
    expect(plan.firstBatchBytes).toBe(b.bytes.length);
    log.close({ clean: false });
  });

  it('reads at logEndOffset return null and outside [start, end] throw OFFSET_OUT_OF_RANGE', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    appendBatch(log, { count: 5 });
    expect(log.locate(5, 1000)).toBeNull();
    expect(log.read(5, 1000)).toBeNull();
    expect(errorCode(() => log.locate(6, 1000))).toBe('OFFSET_OUT_OF_RANGE');
    expect(errorCode(() => log.locate(-1, 1000))).toBe('OFFSET_OUT_OF_RANGE');
    log.close({ clean: true });
  });

  it('maxBytes smaller than a batch still returns that one whole batch (KIP-74)', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    const a = appendBatch(log, { count: 4, valueBytes: 300 });
    appendBatch(log, { count: 4, valueBytes: 300 });
    const plan = log.locate(0, 10)!;
    expect(plan.bytesMax).toBe(a.bytes.length);
    expect(log.read(0, 10)).toEqual(a.bytes);
    expect(log.read(0, 0)).toEqual(a.bytes);
    // A maxBytes between one and two batches returns only the first (cut at a whole batch).
    expect(log.read(0, a.bytes.length + 50)).toEqual(a.bytes);
    log.close({ clean: true });
  });

  it('reads never cross a segment boundary', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    while (log.segmentCount < 3) appendBatch(log, { count: 2, valueBytes: 200 });
    const [, second] = log.segmentBaseOffsets();
    const before = second - 1;
    const got = log.read(before, 1 << 20)!;
    const offsets = offsetsIn(got);
    expect(offsets[offsets.length - 1]).toBe(second - 1);
    const plan = log.locate(before, 1 << 20)!;
    expect(plan.position + plan.bytesMax).toBe(plan.segment.sizeBytes);
    log.close({ clean: true });
  });

  it('readInto fills a view over a SharedArrayBuffer and append takes one', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    const batch = encodeBatch([{ value: valueOf(1, 50), timestamp: 5 }], { baseOffset: 0 });
    const shared = new Uint8Array(new SharedArrayBuffer(batch.length + 16));
    shared.set(batch, 8);
    log.append(shared.subarray(8, 8 + batch.length), 0, 1);
    const plan = log.locate(0, 4096)!;
    const target = new Uint8Array(new SharedArrayBuffer(plan.bytesMax + 8));
    const n = log.readInto(plan, target.subarray(8));
    expect(n).toBe(batch.length);
    expect(target.subarray(8, 8 + n)).toEqual(batch);
    log.close({ clean: true });
  });

  it('one append call costs one write of the bytes', () => {
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir: tempDir(), config: { ...SMALL_CONFIG, indexIntervalBytes: 1 << 20 }, fs, preallocateBytes: 0 });
    const parts = [0, 1, 2].map((i) => encodeBatch([{ value: valueOf(i, 30), timestamp: i }], { baseOffset: i }));
    const before = fs.calls.write;
    log.append(concat(parts), 0, 3);
    expect(fs.calls.write - before).toBe(1);
    expect(offsetsIn(log.read(0, 4096)!)).toEqual([0, 1, 2]);
    log.close({ clean: true });
  });

  it('asserts that an append starts at logEndOffset', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    const batch = encodeBatch([{ value: null, timestamp: 1 }], { baseOffset: 3 });
    expect(() => log.append(batch, 3, 4)).toThrow(/assertion failed/);
    log.close({ clean: true });
  });

  it('sync moves durableOffset to logEndOffset and is a no-op without new bytes', () => {
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG, fs });
    appendBatch(log, { count: 3 });
    expect(log.durableOffset).toBe(0);
    const before = fs.calls.fdatasync;
    log.sync();
    expect(log.durableOffset).toBe(3);
    expect(fs.calls.fdatasync - before).toBe(1);
    log.sync();
    expect(fs.calls.fdatasync - before).toBe(1);
    log.close({ clean: true });
  });

  it('a roll fdatasyncs the old segment in the background, and durableOffset covers it once that is done', async () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    while (log.segmentCount < 2) appendBatch(log, { count: 2, valueBytes: 300 });
    expect(log.sealInFlight).toBe(true);
    expect(log.durableOffset).toBe(0);
    await sealed(log);
    expect(log.durableOffset).toBe(log.activeSegmentBaseOffset);
    log.close({ clean: true });
  });
});

describe('rolling', () => {
  it('rolls by size before an append would pass segmentBytes, never leaving a segment empty', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    // A batch larger than a whole segment still goes into an empty segment.
    const big = appendBatch(log, { count: 1, valueBytes: 6000 });
    expect(log.segmentCount).toBe(1);
    appendBatch(log, { count: 1, valueBytes: 10 });
    expect(log.segmentCount).toBe(2);
    expect(log.activeSegmentBaseOffset).toBe(big.next);
    log.close({ clean: true });
  });

  it('rolls by segmentMs with an injected clock, on append and in maybeRoll', () => {
    const clock = new FakeClock();
    const log = PartitionLog.open({ dir: tempDir(), config: { ...SMALL_CONFIG, segmentMs: 1000 }, clock });
    expect(log.maybeRoll(clock.now() + 5000)).toBe(false); // empty: never rolls
    appendBatch(log);
    clock.nowMs += 999;
    appendBatch(log);
    expect(log.segmentCount).toBe(1);
    clock.nowMs += 1;
    appendBatch(log);
    expect(log.segmentCount).toBe(2);
    expect(log.activeSegmentBaseOffset).toBe(2);
    clock.nowMs += 500;
    expect(log.maybeRoll(clock.now())).toBe(false);
    expect(log.maybeRoll(clock.now() + 500)).toBe(true);
    expect(log.segmentCount).toBe(3);
    expect(log.activeSegmentBaseOffset).toBe(3);
    log.close({ clean: true });
  });

  it('names segment files by their 20-digit base offset', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    while (log.segmentCount < 3) appendBatch(log, { count: 3, valueBytes: 400 });
    const names = readdirSync(dir).filter((n) => n.endsWith('.log')).sort();
    expect(names).toEqual(log.segmentBaseOffsets().map(segmentLogName));
    expect(readdirSync(dir).filter((n) => n.endsWith('.index')).length).toBe(3);
    expect(readdirSync(dir).filter((n) => n.endsWith('.timeindex')).length).toBe(3);
    log.close({ clean: true });
  });
});

describe('offsetForTimestamp', () => {
  it('finds the first record at or after a timestamp across segments, exact inside uncompressed batches', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    // Offsets 0..399, record i has timestamp 1000 + 10 * i, batches of 4.
    for (let b = 0; b < 100; b++) {
      appendBatch(log, { timestamps: [0, 1, 2, 3].map((k) => 1000 + 10 * (b * 4 + k)), valueBytes: 40 });
    }
    expect(log.segmentCount).toBeGreaterThan(3);
    expect(log.offsetForTimestamp(0)).toBe(0);
    expect(log.offsetForTimestamp(1000)).toBe(0);
    expect(log.offsetForTimestamp(1001)).toBe(1);
    expect(log.offsetForTimestamp(1010)).toBe(1);
    expect(log.offsetForTimestamp(1000 + 10 * 257)).toBe(257);
    expect(log.offsetForTimestamp(1000 + 10 * 257 - 3)).toBe(257);
    expect(log.offsetForTimestamp(1000 + 10 * 399)).toBe(399);
    expect(log.offsetForTimestamp(1000 + 10 * 399 + 1)).toBeNull();
    log.close({ clean: true });
  });

  it('handles timestamps that go back in time (first qualifying offset, not the first larger index entry)', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: { ...SMALL_CONFIG, indexIntervalBytes: 0 } });
    appendBatch(log, { timestamps: [100, 500] }); // 0, 1
    appendBatch(log, { timestamps: [200, 300] }); // 2, 3
    appendBatch(log, { timestamps: [600] }); // 4
    expect(log.offsetForTimestamp(250)).toBe(1);
    expect(log.offsetForTimestamp(501)).toBe(4);
    expect(log.offsetForTimestamp(50)).toBe(0);
    log.close({ clean: true });
  });

  it('returns the base offset of a compressed batch', () => {
    const log = PartitionLog.open({ dir: tempDir(), config: SMALL_CONFIG });
    appendBatch(log, { timestamps: [10, 20] });
    appendBatch(log, { timestamps: [30, 40, 50], compression: 'gzip' });
    expect(log.offsetForTimestamp(45)).toBe(2);
    expect(log.offsetForTimestamp(20)).toBe(1);
    log.close({ clean: true });
  });

  it('finds the same offsets after a clean reopen and after an unclean one', () => {
    const dir = tempDir();
    let log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    for (let b = 0; b < 60; b++) appendBatch(log, { timestamps: [b * 100, b * 100 + 50], valueBytes: 60 });
    const probes = [0, 1, 49, 50, 51, 2550, 5949, 5950, 5951];
    const expected = probes.map((t) => log.offsetForTimestamp(t));
    log.close({ clean: true });
    log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    expect(probes.map((t) => log.offsetForTimestamp(t))).toEqual(expected);
    log.close({ clean: false });
    log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    expect(log.recoveryReport.scanned).toBe(true);
    expect(probes.map((t) => log.offsetForTimestamp(t))).toEqual(expected);
    log.close({ clean: true });
  });
});

describe('reopen', () => {
  it('continues at the right offset after a clean close, with the same indexes', () => {
    const dir = tempDir();
    let log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    for (let i = 0; i < 50; i++) appendBatch(log, { count: 3, valueBytes: 50 });
    const end = log.logEndOffset;
    const size = log.sizeBytes;
    const segments = log.segmentCount;
    log.close({ clean: true });
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(true);
    log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    expect(log.recoveryReport).toEqual({ scanned: false, segmentsScanned: [], truncations: [], segmentsDropped: [], indexesRebuilt: [], problems: [] });
    expect(log.logEndOffset).toBe(end);
    expect(log.durableOffset).toBe(end);
    expect(log.sizeBytes).toBe(size);
    expect(log.segmentCount).toBe(segments);
    for (let i = 0; i < 50; i++) appendBatch(log, { count: 3, valueBytes: 50 });
    log.close({ clean: false });
    // The unclean reopen scans and rebuilds: the appends after the clean reopen indexed
    // exactly as a rebuild does, so nothing is reported as repaired.
    log = PartitionLog.open({ dir, config: SMALL_CONFIG });
    expect(log.recoveryReport.scanned).toBe(true);
    expect(log.recoveryReport.indexesRebuilt).toEqual([]);
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(log.logEndOffset).toBe(end + 150);
    expect(log.verify().ok).toBe(true);
    log.close({ clean: true });
  });
});
