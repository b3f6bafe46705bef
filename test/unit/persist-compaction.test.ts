import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compactSegments, groupSegments, parseSwapName, swapPath } from '../../src/persist/compaction.js';
import { FaultyFileSystem, nodeFileSystem, type FileSystem } from '../../src/persist/fs.js';
import { PartitionLog, segmentLogName, type LogConfig } from '../../src/persist/partition-log.js';
import {
  decodeBatch,
  encodeBatch,
  forEachBatch,
  RECORDS_OFFSET,
  utf8,
  validateBatch,
  type RecordInput,
} from '../../src/persist/record-batch.js';
import { errorCode, FakeClock, sealed, SMALL_CONFIG, tempDir } from './persist-helpers.js';

const T0 = 1_700_000_000_000;
const RETENTION_MS = 10_000;
const CONFIG: LogConfig = { ...SMALL_CONFIG, segmentBytes: 2048, cleanupPolicy: 'compact', deleteRetentionMs: RETENTION_MS };

/** A record as produced, with the offset the log gave it. */
interface Produced {
  offset: number;
  key: string | null;
  value: string | null;
}

interface Appender {
  log: PartitionLog;
  produced: Produced[];
  /** Appends one batch; returns its base offset. */
  batch(records: { key: string | null; value: string | null }[], options?: { gzip?: boolean; producerId?: number; timestamp?: number }): number;
}

function open(dir: string, config = CONFIG, fs?: FileSystem): PartitionLog {
  return PartitionLog.open({ dir, config, clock: new FakeClock(T0), fs });
}

function appender(log: PartitionLog): Appender {
  const produced: Produced[] = [];
  return {
    log,
    produced,
    batch(records, options = {}) {
      const base = log.logEndOffset;
      const inputs: RecordInput[] = records.map((r, i) => ({
        key: r.key === null ? null : utf8(r.key),
        value: r.value === null ? null : utf8(r.value),
        timestamp: (options.timestamp ?? T0) + i,
      }));
      const identity = options.producerId === undefined ? {} : { producerId: options.producerId, producerEpoch: 3, baseSequence: 17 };
      let bytes = encodeBatch(inputs, { baseOffset: base, ...identity });
      if (options.gzip) {
        const blob = gzipSync(bytes.subarray(RECORDS_OFFSET));
        bytes = encodeBatch(inputs, { baseOffset: base, ...identity, compression: 'gzip', compressedRecords: blob });
      }
      log.append(bytes, base, base + records.length);
      records.forEach((r, i) => produced.push({ offset: base + i, key: r.key, value: r.value }));
      return base;
    },
  };
}

const gunzip = (_c: string, blob: Uint8Array) => new Uint8Array(gunzipSync(blob));

/** Every record of the log, read by offset from the log start as a consumer does (batch by batch, by lastOffsetDelta). */
function readAll(log: PartitionLog): Produced[] {
  const out: Produced[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const bytes = log.read(offset, 1 << 20);
    if (bytes === null) break;
    let next = offset;
    forEachBatch(bytes, (batch, h) => {
      for (const r of decodeBatch(batch, gunzip).records) {
        if (r.offset < offset) continue;
        out.push({ offset: r.offset, key: r.key && Buffer.from(r.key).toString(), value: r.value && Buffer.from(r.value).toString() });
      }
      next = h.baseOffset + h.lastOffsetDelta + 1;
    });
    expect(next).toBeGreaterThan(offset);
    offset = next;
  }
  for (let i = 1; i < out.length; i++) expect(out[i].offset).toBeGreaterThan(out[i - 1].offset);
  return out;
}

/** What compaction must leave: below activeBase only each key's latest record (and keyless ones), tombstones unless expired. */
function expected(produced: Produced[], activeBase: number, tombstonesExpired: boolean): Produced[] {
  const latest = new Map<string, number>();
  for (const r of produced) if (r.offset < activeBase && r.key !== null) latest.set(r.key, r.offset);
  return produced.filter((r) => {
    if (r.offset >= activeBase) return true;
    if (r.key !== null && latest.get(r.key) !== r.offset) return false;
    return !(r.value === null && tombstonesExpired);
  });
}

/** Batch headers of the whole log. */
function headers(log: PartitionLog): ReturnType<typeof decodeBatch>['header'][] {
  const out: ReturnType<typeof decodeBatch>['header'][] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const bytes = log.read(offset, 1 << 20);
    if (bytes === null) break;
    forEachBatch(bytes, (_b, h) => {
      out.push(h);
      offset = h.baseOffset + h.lastOffsetDelta + 1;
    });
  }
  return out;
}

/** A compacted log with ten keys updated over several segments, one key deleted by a tombstone, and records without key. */
function filled(dir = tempDir(), config = CONFIG, fs?: FileSystem): Appender {
  const a = appender(open(dir, config, fs));
  let n = 0;
  while (a.log.segmentCount < 5) {
    a.batch([
      { key: `k${n % 10}`, value: `v${n}-${'x'.repeat(60)}` },
      { key: `k${(n + 3) % 10}`, value: `w${n}-${'y'.repeat(60)}` },
      { key: null, value: `keyless${n}` },
    ]);
    if (n === 5) a.batch([{ key: 'gone', value: 'soon deleted' }]);
    if (n === 20) a.batch([{ key: 'gone', value: null }]);
    n++;
  }
  a.batch([{ key: 'k1', value: 'in-the-active-segment' }]);
  return a;
}

function firstBatchBase(log: PartitionLog, offset: number): number {
  let base = -1;
  forEachBatch(log.read(offset, 1)!, (_b, h) => {
    if (base < 0) base = h.baseOffset;
  });
  return base;
}

/** The log's files: segments and indexes (the marker and the recovery point say nothing about the content). */
function filesOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) if (!name.startsWith('.')) out[name] = readFileSync(join(dir, name)).toString('hex');
  return out;
}

describe('compaction', () => {
  it('keeps only the latest record of each key in the closed segments, with every offset unchanged', async () => {
    const { log, produced } = filled();
    const activeBase = log.activeSegmentBaseOffset;
    const before = readAll(log);
    expect(before).toEqual(produced);
    const sizeBefore = log.sizeBytes;
    const result = await log.compact({ now: T0 });
    expect(result.segmentsRewritten).toBeGreaterThan(0);
    expect(result.recordsRemoved).toBe(produced.length - expected(produced, activeBase, false).length);
    expect(result.bytesAfter).toBeLessThan(result.bytesBefore);
    expect(log.sizeBytes).toBe(sizeBefore - (result.bytesBefore - result.bytesAfter));
    expect(readAll(log)).toEqual(expected(produced, activeBase, false));
    // The active segment is untouched and appends go on where they were.
    expect(log.activeSegmentBaseOffset).toBe(activeBase);
    expect(log.logStartOffset).toBe(0);
    expect(log.verify()).toMatchObject({ ok: true });
    log.close({ clean: true });
  });

  it("a segment rolled while its fdatasync runs can be compacted: the old file handle stays open until the sync is done", async () => {
    // A file system whose asynchronous fdatasyncs wait until the test releases them.
    const held: (() => void)[] = [];
    let holding = true;
    class HeldSyncs extends FaultyFileSystem {
      override fdatasyncAsync(fd: number, callback: (err: Error | null) => void): void {
        if (holding) held.push(() => super.fdatasyncAsync(fd, callback));
        else super.fdatasyncAsync(fd, callback); // compaction's own syncs
      }
    }
    const log = open(tempDir(), CONFIG, new HeldSyncs());
    const a = appender(log);
    for (let i = 0; i < 8; i++) a.batch([{ key: `k${i % 3}`, value: `v${i}` }]);
    const synced = new Promise<unknown>((resolve) => expect(log.syncAsync(resolve)).toBeGreaterThan(0));
    holding = false;
    expect(held).toHaveLength(1);
    const syncing = log.activeSegmentBaseOffset;
    for (let i = 0; i < 100 && log.activeSegmentBaseOffset === syncing; i++) a.batch([{ key: `k${i % 3}`, value: `w${i}`.repeat(20) }]); // rolls
    expect(log.activeSegmentBaseOffset).not.toBe(syncing);
    const result = await log.compact({ now: T0 });
    expect(result.segmentsRewritten).toBeGreaterThan(0);
    held.splice(0).forEach((release) => release()); // the sync of the segment compaction replaced
    expect(await synced).toBe(null);
    a.batch([{ key: 'k0', value: 'after' }]); // still writable
    expect(log.verify()).toMatchObject({ ok: true });
    log.close({ clean: true });
  });

  it('compacts segments whose roll fdatasync (seal) still runs: their old files stay open until it is done', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const dir = tempDir();
    const { log, produced } = filled(dir, CONFIG, fs);
    const activeBase = log.activeSegmentBaseOffset;
    const seals = fs.heldAsyncSyncs.length;
    expect(seals).toBe(4 * 3); // four rolls, three files each
    // The pass's own fdatasyncs (of its .cleaned files) go through; the seals stay held.
    const pump = setInterval(() => fs.releaseAsyncSyncs('.cleaned'), 1);
    let result;
    try {
      result = await log.compact({ now: T0 });
    } finally {
      clearInterval(pump);
    }
    expect(result.segmentsRewritten).toBeGreaterThan(0);
    expect(fs.heldAsyncSyncs).toHaveLength(seals);
    expect(readAll(log)).toEqual(expected(produced, activeBase, false));
    expect(log.durableOffset).toBe(0);
    fs.releaseAsyncSyncs();
    await sealed(log);
    // Every replaced segment's old files are closed now; what stays open is the log's own.
    const open = fs.openFiles.filter((p) => p.endsWith('.log'));
    expect(open.sort()).toEqual(log.segmentBaseOffsets().map((b) => join(dir, segmentLogName(b))).sort());
    expect(log.durableOffset).toBe(activeBase);
    log.close({ clean: true });
    const again = PartitionLog.open({ dir, config: CONFIG, clock: new FakeClock(T0) });
    expect(readAll(again)).toEqual(expected(produced, activeBase, false));
    expect(again.verify()).toMatchObject({ ok: true });
    again.close({ clean: true });
  });

  it('reads the same after a clean and after an unclean reopen', async () => {
    const dir = tempDir();
    const a = filled(dir);
    await a.log.compact({ now: T0 });
    const after = readAll(a.log);
    a.log.close({ clean: true });
    const clean = open(dir);
    expect(clean.recoveryReport.problems).toEqual([]);
    expect(readAll(clean)).toEqual(after);
    clean.close({ clean: false });
    const unclean = open(dir);
    expect(readAll(unclean)).toEqual(after);
    expect(unclean.verify()).toMatchObject({ ok: true });
    unclean.close({ clean: true });
  });

  it('keeps a tombstone until deleteRetentionMs after its segment\'s newest record, then drops it', async () => {
    const { log, produced } = filled();
    const activeBase = log.activeSegmentBaseOffset;
    await log.compact({ now: T0 });
    const kept = readAll(log);
    expect(kept.filter((r) => r.key === 'gone')).toEqual([expect.objectContaining({ value: null })]); // its older value is gone
    // Not yet: only the tombstone's deadline is due, and it is not reached.
    expect(log.compactionDue(T0 + 100)).toBe(false);
    const late = T0 + 60_000 + RETENTION_MS;
    expect(log.compactionDue(late)).toBe(true);
    const result = await log.compact({ now: late });
    expect(result.recordsRemoved).toBe(1);
    expect(readAll(log)).toEqual(expected(produced, activeBase, true));
    expect(readAll(log).some((r) => r.key === 'gone')).toBe(false);
    expect(log.compactionDue(late)).toBe(false);
    log.close({ clean: true });
  });

  it('drops a batch whose records are all superseded, and keeps the header fields of a thinned batch', async () => {
    const a = appender(open(tempDir()));
    const gone = a.batch([{ key: 'a', value: 'a0' }, { key: 'b', value: 'b0' }]);
    const thinned = a.batch([{ key: 'c', value: 'c0' }, { key: 'd', value: 'd0' }, { key: 'e', value: 'e0' }], { producerId: 42 });
    a.batch([{ key: 'a', value: 'a1' }, { key: 'b', value: 'b1' }, { key: 'd', value: 'd1' }]);
    const original = headers(a.log).find((h) => h.baseOffset === thinned)!;
    a.log.maybeRoll(T0 + CONFIG.segmentMs);
    a.batch([{ key: 'z', value: 'active' }]);
    await a.log.compact({ now: T0 });
    const after = headers(a.log);
    expect(after.map((h) => h.baseOffset)).toEqual([thinned, 5, 8]);
    expect(after.some((h) => h.baseOffset === gone)).toBe(false);
    const h = after[0];
    expect(h).toMatchObject({
      baseOffset: thinned,
      lastOffsetDelta: 2, // the batch still ends at offset 4
      recordCount: 2,
      producerId: 42,
      producerEpoch: 3,
      baseSequence: 17,
      attributes: original.attributes,
      baseTimestamp: original.baseTimestamp,
      maxTimestamp: original.maxTimestamp,
    });
    // A thinned batch is valid as stored, not as a producer would send it.
    const bytes = a.log.read(thinned, 1)!.subarray(0, h.sizeBytes);
    expect(validateBatch(bytes, Number.MAX_SAFE_INTEGER, 'stored').recordCount).toBe(2);
    expect(errorCode(() => validateBatch(bytes))).toBe('CORRUPT_MESSAGE');
    expect(decodeBatch(bytes).records.map((r) => [r.offset, Buffer.from(r.value!).toString(), r.timestamp])).toEqual([
      [2, 'c0', T0],
      [4, 'e0', T0 + 2],
    ]);
    a.log.close({ clean: true });
  });

  it('reads an offset inside a gap as the batch that holds the next offset above it', async () => {
    const a = appender(open(tempDir()));
    a.batch([{ key: 'a', value: 'a0' }, { key: 'b', value: 'b0' }]); // 0-1: dropped whole
    a.batch([{ key: 'c', value: 'c0' }, { key: 'a', value: 'a1' }, { key: 'd', value: 'd0' }]); // 2-4: keeps 2 and 4
    a.batch([{ key: 'b', value: 'b1' }, { key: 'a', value: 'a2' }, { key: 'e', value: 'e0' }]); // 5-7: all kept
    a.log.maybeRoll(T0 + CONFIG.segmentMs);
    a.batch([{ key: 'z', value: 'active' }]); // 8
    await a.log.compact({ now: T0 });
    const firstBase = (offset: number) => {
      let base = -1;
      forEachBatch(a.log.read(offset, 1)!, (_b, h) => {
        if (base < 0) base = h.baseOffset;
      });
      return base;
    };
    expect(firstBase(0)).toBe(2); // a gap between batches: the next batch
    expect(firstBase(1)).toBe(2);
    expect(firstBase(3)).toBe(2); // a gap inside a batch: that batch (its record 4 is next)
    expect(firstBase(5)).toBe(5);
    expect(firstBase(8)).toBe(8);
    expect(readAll(a.log).map((r) => r.offset)).toEqual([2, 4, 5, 6, 7, 8]);
    a.log.close({ clean: true });
  });

  it('leaves an empty segment when every record of it is superseded; reads skip it, also after a reopen', async () => {
    const dir = tempDir();
    const a = appender(open(dir));
    while (a.log.segmentCount < 2) a.batch([{ key: 'a', value: 'x'.repeat(200) }, { key: 'b', value: 'y'.repeat(200) }]);
    const firstEnd = a.log.activeSegmentBaseOffset;
    while (a.log.segmentCount < 3) a.batch([{ key: 'a', value: 'z'.repeat(200) }, { key: 'b', value: 'w'.repeat(200) }]);
    a.batch([{ key: 'c', value: 'active' }]);
    await a.log.compact({ now: T0 });
    expect(readFileSync(join(dir, segmentLogName(0))).length).toBe(0);
    const after = readAll(a.log);
    expect(after.every((r) => r.offset >= firstEnd)).toBe(true);
    expect(after).toEqual(expected(a.produced, a.log.activeSegmentBaseOffset, false));
    expect(firstBatchBase(a.log, 0)).toBeGreaterThanOrEqual(firstEnd);
    expect(a.log.verify()).toMatchObject({ ok: true });
    a.log.close({ clean: false });
    const reopened = open(dir);
    expect(reopened.recoveryReport.problems).toEqual([]);
    expect(reopened.logStartOffset).toBe(0);
    expect(readAll(reopened)).toEqual(after);
    reopened.close({ clean: true });
  });

  it('appends, rolls and reads between the slices of a pass see a consistent log', async () => {
    const a = filled();
    const activeBase = a.log.activeSegmentBaseOffset;
    let slices = 0;
    const yieldNow = async () => {
      slices++;
      // What the owner does between two slices: take batches (rolling on the way) and serve reads.
      a.batch([{ key: `k${slices % 10}`, value: `during-${slices}-${'d'.repeat(80)}` }]);
      const seen = readAll(a.log);
      expect(seen.every((r) => a.produced[r.offset].value === r.value)).toBe(true);
    };
    const result = await a.log.compact({ now: T0, yieldNow, sliceBytes: 256 });
    expect(slices).toBeGreaterThan(10);
    expect(a.log.activeSegmentBaseOffset).toBeGreaterThan(activeBase); // it rolled meanwhile
    expect(result.segmentsRewritten).toBeGreaterThan(0);
    // The pass compacted the segments closed when it started; the ones closed since are dirty.
    const after = readAll(a.log);
    const compactedPart = after.filter((r) => r.offset < activeBase);
    expect(compactedPart).toEqual(expected(a.produced.filter((r) => r.offset < activeBase), activeBase, false));
    expect(after.filter((r) => r.offset >= activeBase)).toEqual(a.produced.filter((r) => r.offset >= activeBase));
    expect(a.log.compactionDue(T0)).toBe(true);
    await a.log.compact({ now: T0 });
    expect(readAll(a.log)).toEqual(expected(a.produced, a.log.activeSegmentBaseOffset, false));
    expect(a.log.verify()).toMatchObject({ ok: true });
    a.log.close({ clean: true });
  });

  it('a pass over a clean log whose segments no longer merge changes no byte', async () => {
    const dir = tempDir();
    const { log, produced } = filled(dir);
    const active = log.activeSegmentBaseOffset;
    // The first pass thins the full segments; the next ones merge the thinned ones until no two fit segmentBytes.
    let passes = 0;
    while ((await log.compact({ now: T0 })).segmentsRewritten > 0) expect(++passes).toBeLessThan(6);
    expect(readAll(log)).toEqual(expected(produced, active, false));
    log.close({ clean: true });
    const again = open(dir);
    const files = filesOf(dir);
    const result = await again.compact({ now: T0 });
    expect(result).toMatchObject({ segmentsRewritten: 0, segmentsMerged: 0, recordsRemoved: 0 });
    expect(result.bytesAfter).toBe(result.bytesBefore);
    again.close({ clean: true });
    expect(filesOf(dir)).toEqual(files);
  });

  it('merges adjacent small segments into one of at most segmentBytes, offsets and reads unchanged', async () => {
    const dir = tempDir();
    const clock = new FakeClock(T0);
    const config: LogConfig = { ...CONFIG, segmentMs: 1000 };
    const a = appender(PartitionLog.open({ dir, config, clock }));
    // One small segment per "hour": a few updates of the same keys, rolled by segmentMs (as the offsets topic rolls).
    for (let round = 0; round < 30; round++) {
      a.batch([{ key: `g${round % 4}`, value: `offset-${round}` }, { key: 'keep', value: `r${round}` }]);
      clock.nowMs += 1000;
      a.log.maybeRoll(clock.nowMs);
    }
    a.batch([{ key: 'g0', value: 'in-the-active-segment' }]);
    const before = a.log.segmentCount;
    expect(before).toBe(31);
    const result = await a.log.compact({ now: clock.nowMs });
    expect(result.segmentsMerged).toBeGreaterThan(20);
    expect(a.log.segmentCount).toBe(before - result.segmentsMerged);
    const want = expected(a.produced, a.log.activeSegmentBaseOffset, false);
    expect(readAll(a.log)).toEqual(want);
    const bases = a.log.segmentBaseOffsets();
    expect(bases[0]).toBe(0);
    const logFiles = readdirSync(dir).filter((n) => n.endsWith('.log')).sort();
    expect(logFiles).toEqual(bases.map(segmentLogName));
    for (const name of logFiles.slice(0, -1)) expect(readFileSync(join(dir, name)).length).toBeLessThanOrEqual(config.segmentBytes);
    expect(a.log.offsetForTimestamp(T0)).toBe(firstBatchBase(a.log, 0));
    a.log.close({ clean: true });
    const reopened = PartitionLog.open({ dir, config, clock });
    expect(reopened.recoveryReport.problems).toEqual([]);
    expect(readAll(reopened)).toEqual(want);
    expect(reopened.verify()).toMatchObject({ ok: true });
    reopened.close({ clean: true });
  });

  it('keeps the segment count bounded over many roll and compaction rounds', async () => {
    const clock = new FakeClock(T0);
    const config: LogConfig = { ...CONFIG, segmentMs: 1000 };
    const a = appender(PartitionLog.open({ dir: tempDir(), config, clock }));
    let most = 0;
    for (let round = 0; round < 200; round++) {
      a.batch([{ key: `g${round % 8}`, value: `offset-${round}-${'x'.repeat(40)}` }]);
      clock.nowMs += 1000;
      a.log.maybeRoll(clock.nowMs);
      if (a.log.compactionDue(clock.nowMs)) await a.log.compact({ now: clock.nowMs });
      most = Math.max(most, a.log.segmentCount);
    }
    // 8 live keys of about 80 bytes fit one 2 KiB segment: a handful of files, not 200.
    expect(most).toBeLessThanOrEqual(4);
    expect(readAll(a.log)).toEqual(expected(a.produced, a.log.activeSegmentBaseOffset, false));
    a.log.close({ clean: true });
  });

  it('groups only segments that fit segmentBytes and one segment\'s relative offsets', () => {
    const seg = (baseOffset: number, sizeBytes: number) => ({ baseOffset, sizeBytes, largestTimestamp: T0 });
    const bases = (groups: { baseOffset: number }[][]) => groups.map((g) => g.map((s) => s.baseOffset));
    expect(bases(groupSegments([seg(0, 100), seg(10, 100), seg(20, 900), seg(30, 50)], 40, 1000))).toEqual([[0, 10], [20, 30]]);
    expect(bases(groupSegments([seg(0, 100), seg(10, 100)], 20, 0))).toEqual([[0], [10]]);
    expect(bases(groupSegments([seg(0, 1000), seg(10, 1)], 20, 1000))).toEqual([[0], [10]]);
    // Offsets up to the next segment's base must fit a u32 relative offset from the group's base.
    const far = 2 ** 32;
    expect(bases(groupSegments([seg(0, 1), seg(10, 1), seg(far - 5, 1), seg(far + 10, 1)], far + 20, 1000))).toEqual([[0, 10], [far - 5, far + 10]]);
    expect(bases(groupSegments([seg(0, 1), seg(far, 1)], far + 1, 1000))).toEqual([[0], [far]]);
  });

  it('a later pass cleans the new segments against the old ones', async () => {
    const a = filled();
    await a.log.compact({ now: T0 });
    expect(a.log.compactionDue(T0)).toBe(false);
    const segments = a.log.segmentCount;
    while (a.log.segmentCount < segments + 2) a.batch([{ key: 'k2', value: `late-${'z'.repeat(100)}` }, { key: 'k7', value: 'late7' }]);
    expect(a.log.compactionDue(T0)).toBe(true);
    await a.log.compact({ now: T0 });
    expect(readAll(a.log)).toEqual(expected(a.produced, a.log.activeSegmentBaseOffset, false));
    a.log.close({ clean: true });
  });

  it('thins a gzip batch and keeps it gzip', async () => {
    const a = appender(open(tempDir()));
    const base = a.batch([{ key: 'a', value: 'a0' }, { key: 'b', value: 'b0' }, { key: 'c', value: 'c0' }], { gzip: true });
    a.batch([{ key: 'b', value: 'b1' }]);
    a.log.maybeRoll(T0 + CONFIG.segmentMs);
    a.batch([{ key: 'z', value: 'active' }]);
    const result = await a.log.compact({ now: T0 });
    expect(result.recordsRemoved).toBe(1);
    const h = headers(a.log)[0];
    expect(h).toMatchObject({ baseOffset: base, recordCount: 2, lastOffsetDelta: 2 });
    expect(h.attributes & 0x07).toBe(1);
    expect(readAll(a.log).map((r) => [r.offset, r.value])).toEqual([[0, 'a0'], [2, 'c0'], [3, 'b1'], [4, 'active']]);
    a.log.close({ clean: true });
  });

  it('never touches the active segment, and compacts nothing under cleanupPolicy delete', async () => {
    const a = appender(open(tempDir()));
    for (let i = 0; i < 5; i++) a.batch([{ key: 'same', value: `v${i}` }]);
    const result = await a.log.compact({ now: T0 });
    expect(result).toMatchObject({ segmentsExamined: 0, segmentsRewritten: 0 });
    expect(readAll(a.log)).toEqual(a.produced);
    a.log.close({ clean: true });
    const plain = open(tempDir(), { ...CONFIG, cleanupPolicy: 'delete' });
    await expect(plain.compact()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(plain.compactionDue(T0)).toBe(false);
    plain.close({ clean: true });
  });

  it('retention deletes nothing under cleanupPolicy compact, and still deletes under compact,delete', async () => {
    for (const [cleanupPolicy, deletes] of [['compact', false], ['compact,delete', true]] as const) {
      const a = filled(tempDir(), { ...CONFIG, cleanupPolicy, retentionMs: 1 });
      await sealed(a.log);
      const r = a.log.applyRetention(T0 + 1_000_000);
      expect(r.segmentsDeleted > 0).toBe(deletes);
      a.log.close({ clean: true });
    }
  });

  it('a cancelled pass removes its files and leaves the log as it was', async () => {
    const dir = tempDir();
    const { log } = filled(dir);
    const files = filesOf(dir);
    const cleanedExists = () => readdirSync(dir).some((n) => n.endsWith('.cleaned'));
    await expect(log.compact({ now: T0, isCancelled: cleanedExists })).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC_OR_PARTITION' });
    expect(filesOf(dir)).toEqual(files);
    expect(log.compacting).toBe(false);
    log.close({ clean: true });
  });

  it('with a full key map cleans only the segments it mapped, and the next pass the rest', async () => {
    const a = filled();
    const log = a.log;
    log.close({ clean: true });
    const dir = log.dir;
    // The pass itself, with a map of 3 keys: it stops after the first segment.
    const reopened = open(dir);
    const bases = reopened.segmentBaseOffsets();
    reopened.close({ clean: true });
    const plan = await compactSegments({
      fs: nodeFileSystem,
      dir,
      segments: bases.slice(0, -1).map((b) => ({ baseOffset: b, sizeBytes: readFileSync(join(dir, segmentLogName(b))).length, largestTimestamp: T0 + 2 })),
      closedEndOffset: bases[bases.length - 1],
      dirtyFromOffset: 0,
      nowMs: T0,
      deleteRetentionMs: RETENTION_MS,
      indexIntervalBytes: CONFIG.indexIntervalBytes,
      yieldNow: async () => {},
      keysMax: 3,
    });
    expect(plan.cleanedUpTo).toBe(bases[1]);
    expect(plan.segmentsExamined).toBe(1);
    // Its files are not committed: the next open removes them.
    expect(readdirSync(dir).some((n) => n.endsWith('.cleaned'))).toBe(true);
    const next = open(dir);
    expect(readdirSync(dir).some((n) => n.endsWith('.cleaned'))).toBe(false);
    expect(readAll(next)).toEqual(a.produced);
    next.close({ clean: true });
  });
});

describe('compaction crash recovery', () => {
  // The commit of a pass (compaction.ts, steps 2-4) renames each segment's .log.cleaned
  // to .log.swap, fsyncs, unlinks the old indexes, fsyncs, renames the swap and both index
  // files into place, fsyncs. A fault at each point leaves one of the states of the table.
  const STATES = {
    'only .cleaned files (step 1 done, nothing committed)': { fault: { op: 'rename', skip: 0 }, committed: false },
    'a .log.swap beside the old segment (step 2)': { fault: { op: 'fsyncDir', skip: 0 }, committed: true },
    'a .log.swap without the old indexes (step 3)': { fault: { op: 'fsyncDir', skip: 1 }, committed: true },
    'the new .log with an index still .cleaned (step 4)': { fault: { op: 'rename', skip: 'segments+1' }, committed: true },
  } as const;

  for (const [state, { fault, committed }] of Object.entries(STATES)) {
    it(`recovers ${state}: ${committed ? 'completes the swap' : 'keeps the old segments'}`, async () => {
      const dir = tempDir();
      const reference = filled(tempDir());
      const { segmentsRewritten } = await reference.log.compact({ now: T0 });
      expect(segmentsRewritten).toBeGreaterThan(1);
      const compacted = readAll(reference.log);
      reference.log.close({ clean: true });

      const fs = new FaultyFileSystem();
      // The same content as the reference: filled() appends deterministically.
      const { log } = filled(dir, CONFIG, fs);
      await sealed(log); // the faults below count the pass's own renames and fsyncs, not the rolls'
      const original = readAll(log);
      const skip = fault.skip === 'segments+1' ? segmentsRewritten + 1 : fault.skip;
      fs.inject({ op: fault.op, skip, code: 'EIO' });
      await expect(log.compact({ now: T0 })).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
      expect(log.failed).toBe(true);
      log.close({ clean: false });
      const leftovers = readdirSync(dir).filter((n) => n.endsWith('.cleaned') || n.endsWith('.swap'));
      expect(leftovers.length).toBeGreaterThan(0);

      const reopened = open(dir);
      expect(readdirSync(dir).filter((n) => n.endsWith('.cleaned') || n.endsWith('.swap'))).toEqual([]);
      expect(readAll(reopened)).toEqual(committed ? compacted : original);
      expect(reopened.verify()).toMatchObject({ ok: true });
      if (committed) expect(reopened.recoveryReport.problems.some((p) => p.includes('completed the compaction'))).toBe(true);
      reopened.close({ clean: true });
    });
  }

  /** 30 small segments rolled by segmentMs (a clock per log: each build is the same bytes), most of them merged by a pass. */
  function smallSegments(dir: string, fs?: FileSystem): { log: PartitionLog; clock: FakeClock; config: LogConfig } {
    const clock = new FakeClock(T0);
    const config: LogConfig = { ...CONFIG, segmentMs: 1000 };
    const a = appender(PartitionLog.open({ dir, config, clock, fs }));
    for (let round = 0; round < 30; round++) {
      a.batch([{ key: `g${round % 4}`, value: `offset-${round}` }]);
      clock.nowMs += 1000;
      a.log.maybeRoll(clock.nowMs);
    }
    a.batch([{ key: 'g0', value: 'active' }]);
    return { log: a.log, clock, config };
  }

  for (const [state, { fault, committed }] of Object.entries(STATES)) {
    it(`recovers a merge from ${state}: ${committed ? 'completes it, removing the merged members' : 'keeps the old segments'}`, async () => {
      const ref = smallSegments(tempDir());
      const { segmentsRewritten, segmentsMerged } = await ref.log.compact({ now: ref.clock.nowMs });
      expect(segmentsMerged).toBeGreaterThan(10);
      const compacted = readAll(ref.log);
      const compactedBases = ref.log.segmentBaseOffsets();
      ref.log.close({ clean: true });

      const dir = tempDir();
      const fs = new FaultyFileSystem();
      const { log, clock, config } = smallSegments(dir, fs);
      await sealed(log);
      const original = readAll(log);
      const originalBases = log.segmentBaseOffsets();
      const skip = fault.skip === 'segments+1' ? segmentsRewritten + 1 : fault.skip;
      fs.inject({ op: fault.op, skip, code: 'EIO' });
      await expect(log.compact({ now: clock.nowMs })).rejects.toMatchObject({ code: 'STORAGE_ERROR' });
      log.close({ clean: false });

      const reopened = PartitionLog.open({ dir, config, clock });
      expect(readdirSync(dir).filter((n) => n.endsWith('.cleaned') || n.endsWith('.swap'))).toEqual([]);
      expect(readAll(reopened)).toEqual(committed ? compacted : original);
      expect(reopened.segmentBaseOffsets()).toEqual(committed ? compactedBases : originalBases);
      expect(readdirSync(dir).filter((n) => n.endsWith('.log')).sort()).toEqual(reopened.segmentBaseOffsets().map(segmentLogName));
      expect(reopened.verify()).toMatchObject({ ok: true });
      reopened.close({ clean: true });
    });
  }

  it('a merged swap replaces exactly the members its name gives, also those that lost every record', async () => {
    const dir = tempDir();
    const { log, config, clock } = smallSegments(dir);
    const bases = log.segmentBaseOffsets();
    const original = readAll(log);
    log.close({ clean: true });
    // A committed merge of segments 0-2 in which 1 and 2 lost every record: the swap holds segment 0's records only.
    const fs = nodeFileSystem;
    const swap = swapPath(dir, bases[0], bases[2]);
    expect(swap.endsWith(`${segmentLogName(bases[0])}.${segmentLogName(bases[2]).replace('.log', '.swap')}`)).toBe(true);
    fs.writeFile(swap, fs.readFile(join(dir, segmentLogName(bases[0]))));
    const reopened = PartitionLog.open({ dir, config, clock });
    expect(reopened.segmentBaseOffsets()).toEqual([bases[0], ...bases.slice(3)]);
    expect(readAll(reopened)).toEqual(original.filter((r) => r.offset < bases[1] || r.offset >= bases[3]));
    expect(reopened.recoveryReport.problems.filter((p) => p.includes('merged into'))).toHaveLength(2);
    expect(reopened.verify()).toMatchObject({ ok: true });
    reopened.close({ clean: true });
  });

  it('reads swap names: a single segment\'s, a merged group\'s, and nothing else', () => {
    expect(parseSwapName('00000000000000000007.log.swap')).toEqual({ baseOffset: 7, lastMember: 7 });
    expect(parseSwapName('00000000000000000007.log.00000000000000000042.swap')).toEqual({ baseOffset: 7, lastMember: 42 });
    expect(parseSwapName(swapPath('', 7, 42).replace(/^\//, ''))).toEqual({ baseOffset: 7, lastMember: 42 });
    for (const bad of ['00000000000000000007.log', '7.log.swap', '00000000000000000042.log.00000000000000000007.swap', '00000000000000000007.log.42.swap', '00000000000000000007.log.00000000000000000042.swap.x']) {
      expect(parseSwapName(bad)).toBeNull();
    }
  });

  it('removes a stray .cleaned file and completes a .log.swap left without any other file', async () => {
    const dir = tempDir();
    const { log } = filled(dir);
    const bases = log.segmentBaseOffsets();
    log.close({ clean: true });
    const fs = new FaultyFileSystem();
    // A swap whose content is the segment itself (as a pass with nothing dropped would write).
    const logName = segmentLogName(bases[1]);
    fs.writeFile(join(dir, `${logName}.swap`), fs.readFile(join(dir, logName)));
    fs.writeFile(join(dir, `${segmentLogName(bases[2])}.cleaned`), new Uint8Array(10));
    const reopened = open(dir);
    expect(existsSync(join(dir, `${logName}.swap`))).toBe(false);
    expect(reopened.recoveryReport.indexesRebuilt.length).toBeGreaterThan(0);
    expect(reopened.verify()).toMatchObject({ ok: true });
    reopened.close({ clean: true });
  });
});
