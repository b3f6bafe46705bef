import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem } from '../../src/persist/fs.js';
import { PartitionLog, removeDeletedPartitionDirs, segmentLogName, verifyPartitionDir } from '../../src/persist/partition-log.js';
import { appendBatch, errorCode, FakeClock, sealed, SMALL_CONFIG, seededRandom, tempDir, testSeed, type Appended } from './persist-helpers.js';

const CONFIG = { ...SMALL_CONFIG, segmentBytes: 2048 };

describe('verify', () => {
  it('reports a byte flipped in a closed segment as CORRUPT_MESSAGE with its position, and a read of that batch throws', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    const batches: Appended[] = [];
    while (log.segmentCount < 4) batches.push(appendBatch(log, { count: 3, valueBytes: 120 }));
    expect(log.verify()).toMatchObject({ ok: true });
    const victim = batches[7]; // in a closed segment
    const plan = log.locate(victim.first, 1)!;
    expect(plan.segment.baseOffset).toBeLessThan(log.activeSegmentBaseOffset);
    const file = segmentLogName(plan.segment.baseOffset);
    new FaultyFileSystem().flipBit(join(dir, file), plan.position + 100, 5);

    const report = log.verify();
    expect(report.ok).toBe(false);
    const bad = report.segments.filter((s) => s.errors.length > 0);
    expect(bad).toHaveLength(1);
    expect(bad[0].file).toBe(file);
    expect(bad[0].errors).toEqual([
      expect.objectContaining({ position: plan.position, offset: victim.first, code: 'CORRUPT_MESSAGE' }),
    ]);
    // The standalone verifier (the verify pool's) says the same without the log.
    expect(verifyPartitionDir(dir).segments).toEqual(report.segments);

    let err: unknown;
    try {
      log.read(victim.first + 1, 1 << 20);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'CORRUPT_MESSAGE' });
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toContain(`offset ${victim.first}`);
    // A read that starts before it stops before it: good batches are still served.
    const before = log.read(batches[6].first, 1 << 20)!;
    expect(before).toEqual(batches[6].bytes);
    // Batches after it are readable.
    expect(log.read(batches[8].first, 1)).toEqual(batches[8].bytes);
    log.close({ clean: true });
  });

  it('reports index files that do not match the log, and missing ones', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    while (log.segmentCount < 2) appendBatch(log, { count: 3, valueBytes: 120 });
    log.close({ clean: true });
    const fs = new FaultyFileSystem();
    fs.unlink(join(dir, '00000000000000000000.timeindex'));
    fs.flipBit(join(dir, '00000000000000000000.index'), 3, 0);
    const report = verifyPartitionDir(dir);
    expect(report.ok).toBe(false);
    expect(report.segments[0].errors).toEqual([]);
    expect(report.segments[0].indexErrors).toHaveLength(2);
  });

  it('reports a gap between segments', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    while (log.segmentCount < 3) appendBatch(log, { count: 3, valueBytes: 120 });
    const [, second] = log.segmentBaseOffsets();
    log.close({ clean: true });
    new FaultyFileSystem().unlink(join(dir, segmentLogName(second)));
    const report = verifyPartitionDir(dir);
    expect(report.ok).toBe(false);
    expect(report.segments[1].errors[0].message).toMatch(/previous segment ends/);
  });
});

describe('retention', () => {
  function filled(config = CONFIG, segments = 5): { dir: string; log: PartitionLog; batches: Appended[]; clock: FakeClock } {
    const dir = tempDir();
    const clock = new FakeClock(0);
    const log = PartitionLog.open({ dir, config, clock });
    const batches: Appended[] = [];
    // Timestamps: segment k's records are around k * 1000 (one step per batch).
    let t = 0;
    while (log.segmentCount < segments) {
      batches.push(appendBatch(log, { count: 2, valueBytes: 150, timestamp: t }));
      t += 100;
    }
    return { dir, log, batches, clock };
  }

  it('by time deletes exactly the closed segments whose newest record is older than retentionMs', async () => {
    const { dir, log, batches } = filled({ ...CONFIG, retentionMs: 1000 });
    await sealed(log);
    const bases = log.segmentBaseOffsets();
    const largestOf = (base: number, next: number) => Math.max(...batches.filter((b) => b.first >= base && b.first < next).flatMap((b) => b.timestamps));
    const largest1 = largestOf(bases[1], bases[2]);
    // now - largest > retentionMs deletes; choose now so that segments 0 and 1 go, 2 stays.
    const now = largest1 + 1000 + 1;
    const sizeBefore = log.sizeBytes;
    const r = log.applyRetention(now);
    expect(r.segmentsDeleted).toBe(2);
    expect(log.segmentBaseOffsets()).toEqual(bases.slice(2));
    expect(log.logStartOffset).toBe(bases[2]);
    expect(log.sizeBytes).toBe(sizeBefore - r.bytesDeleted);
    expect(existsSync(join(dir, segmentLogName(bases[0])))).toBe(false);
    expect(readdirSync(dir).some((n) => n.endsWith('.deleted'))).toBe(false);
    expect(errorCode(() => log.read(bases[2] - 1, 100))).toBe('OFFSET_OUT_OF_RANGE');
    expect(log.read(bases[2], 1)).toEqual(batches.find((b) => b.first === bases[2])!.bytes);
    // Exactly at the boundary (now - largest = retentionMs) the segment stays.
    const largest2 = largestOf(bases[2], bases[3]);
    expect(log.applyRetention(largest2 + 1000).segmentsDeleted).toBe(0);
    log.close({ clean: true });
  });

  it('never deletes the active segment, however old', async () => {
    const { log } = filled({ ...CONFIG, retentionMs: 0, retentionBytes: 0 });
    await sealed(log);
    const active = log.activeSegmentBaseOffset;
    log.applyRetention(Number.MAX_SAFE_INTEGER);
    expect(log.segmentCount).toBe(1);
    expect(log.logStartOffset).toBe(active);
    expect(log.logEndOffset).toBeGreaterThan(active);
    log.close({ clean: true });
  });

  it('by size deletes the oldest segments while the rest still holds retentionBytes', async () => {
    const { log } = filled({ ...CONFIG, retentionBytes: 4000 }, 6);
    await sealed(log);
    const bases = log.segmentBaseOffsets();
    const total = log.sizeBytes;
    const r = log.applyRetention(0);
    expect(r.segmentsDeleted).toBeGreaterThan(0);
    expect(log.sizeBytes).toBe(total - r.bytesDeleted);
    expect(log.sizeBytes).toBeGreaterThanOrEqual(4000);
    // One more deletion would have gone below the limit.
    const oldest = log.segmentBaseOffsets()[0];
    expect(oldest).toBe(bases[r.segmentsDeleted]);
    expect(log.applyRetention(0).segmentsDeleted).toBe(0);
    log.close({ clean: true });
  });

  it('keeps a segment whose asynchronous fdatasync is still running, and deletes it once the sync is done', async () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: { ...CONFIG, retentionBytes: 0 } });
    appendBatch(log, { count: 3, valueBytes: 120 });
    const syncing = log.activeSegmentBaseOffset;
    const done = new Promise<unknown>((resolve) => expect(log.syncAsync(resolve)).toBeGreaterThan(0));
    // Rolls happen while the fsync runs: the synced segment is now closed and over retention.
    while (log.segmentCount < 3) appendBatch(log, { count: 3, valueBytes: 120 });
    expect(log.segmentBaseOffsets()[0]).toBe(syncing);
    expect(log.applyRetention(0).segmentsDeleted).toBe(0); // the oldest is being synced: nothing goes past it
    expect(log.segmentBaseOffsets()[0]).toBe(syncing);
    expect(await done).toBe(null);
    await sealed(log); // the rolls' own fdatasyncs (see the next test)
    const closed = log.segmentCount - 1;
    expect(log.applyRetention(0).segmentsDeleted).toBe(closed);
    expect(log.segmentCount).toBe(1);
    log.close({ clean: true });
  });

  it('survives a reopen: logStartOffset is the first remaining segment', () => {
    const { dir, log } = filled({ ...CONFIG, retentionBytes: 3000 });
    log.applyRetention(0);
    const start = log.logStartOffset;
    const end = log.logEndOffset;
    log.close({ clean: true });
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.logStartOffset).toBe(start);
    expect(again.logEndOffset).toBe(end);
    again.close({ clean: true });
  });

  it('a read planned before retention deleted its segment fails with OFFSET_OUT_OF_RANGE', async () => {
    const { log } = filled({ ...CONFIG, retentionBytes: 0 });
    await sealed(log);
    const plan = log.locate(0, 1000)!;
    log.applyRetention(0);
    expect(errorCode(() => log.readInto(plan, new Uint8Array(plan.bytesMax)))).toBe('OFFSET_OUT_OF_RANGE');
    log.close({ clean: true });
  });

  it('interleaved appends, reads and retention keep every readable offset correct', () => {
    const seed = testSeed();
    const rnd = seededRandom(seed);
    const clock = new FakeClock(0);
    const log = PartitionLog.open({ dir: tempDir(), config: { ...CONFIG, retentionBytes: 6000 }, clock });
    const byFirst = new Map<number, Appended>();
    for (let step = 0; step < 600; step++) {
      const dice = rnd();
      if (dice < 0.6) {
        const b = appendBatch(log, { count: 1 + Math.floor(rnd() * 4), valueBytes: Math.floor(rnd() * 200), timestamp: step });
        byFirst.set(b.first, b);
      } else if (dice < 0.95) {
        if (log.logEndOffset === log.logStartOffset) continue;
        const offset = log.logStartOffset + Math.floor(rnd() * (log.logEndOffset - log.logStartOffset));
        const got = log.read(offset, Math.floor(rnd() * 3000))!;
        // The first batch returned contains the offset and is byte for byte what was appended.
        const view = new DataView(got.buffer, got.byteOffset);
        const base = Number(view.getBigInt64(0, false));
        const b = byFirst.get(base)!;
        expect(b.first).toBeLessThanOrEqual(offset);
        expect(b.next).toBeGreaterThan(offset);
        expect(got.subarray(0, b.bytes.length)).toEqual(b.bytes);
      } else {
        const start = log.logStartOffset;
        log.applyRetention(clock.now());
        expect(log.logStartOffset).toBeGreaterThanOrEqual(start);
        expect(log.sizeBytes).toBeGreaterThanOrEqual(Math.min(6000, log.sizeBytes));
        if (log.logStartOffset > 0) expect(errorCode(() => log.read(log.logStartOffset - 1, 10))).toBe('OFFSET_OUT_OF_RANGE');
      }
    }
    expect(log.verify().ok).toBe(true);
    log.close({ clean: true });
  });
});

describe('deleteAll', () => {
  it('removes the partition folder', () => {
    const parent = tempDir();
    const dir = join(parent, 'topic-3');
    const log = PartitionLog.open({ dir, config: CONFIG });
    appendBatch(log, { count: 5 });
    log.deleteAll();
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('removes the folder of a partition of a 249-character topic, whose `.deleted-<n>` name is cut to 255 bytes', () => {
    const parent = tempDir();
    const topic = 't'.repeat(249);
    // A folder left by an earlier delete that failed: the cut names of both partitions below
    // are this one's (245 bytes of `ttt…` and the suffix), so each takes the next number.
    const leftover = `${'t'.repeat(245)}.deleted-0`;
    mkdirSync(join(parent, leftover));
    // Partition 10000: the longest folder name a topic may have (255 bytes).
    for (const p of [0, 10_000]) {
      const dir = join(parent, `${topic}-${p}`);
      const log = PartitionLog.open({ dir, config: CONFIG });
      appendBatch(log, { count: 5 });
      log.deleteAll();
      expect(existsSync(dir)).toBe(false);
    }
    expect(readdirSync(parent)).toEqual([leftover]);
    expect(removeDeletedPartitionDirs(parent)).toEqual([leftover]);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('removeDeletedPartitionDirs clears folders a crash left half deleted, and nothing else', () => {
    const parent = tempDir();
    mkdirSync(join(parent, 'topic-0.deleted-0'));
    writeFileSync(join(parent, 'topic-0.deleted-0', '00000000000000000000.log'), 'x');
    mkdirSync(join(parent, 'topic-1'));
    expect(removeDeletedPartitionDirs(parent)).toEqual(['topic-0.deleted-0']);
    expect(readdirSync(parent)).toEqual(['topic-1']);
  });
});
