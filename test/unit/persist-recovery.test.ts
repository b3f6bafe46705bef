import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem } from '../../src/persist/fs.js';
import { PartitionLog, RECOVERY_POINT_FILE, segmentLogName } from '../../src/persist/partition-log.js';
import { decodeRecoveryPoint } from '../../src/persist/recovery-point.js';
import {
  ATTRIBUTES_OFFSET,
  BATCH_LENGTH_OFFSET,
  CRC_OFFSET,
  encodeBatch,
  MAGIC_OFFSET,
  RECORD_COUNT_OFFSET,
} from '../../src/persist/record-batch.js';
import { crc32c } from '../../src/persist/crc32c.js';
import { RECOVERY_TABLE, type ScanRow } from '../../src/persist/recovery.js';
import { appendBatch, sealed, SMALL_CONFIG, tempDir, valueOf, type Appended } from './persist-helpers.js';

const CONFIG = { ...SMALL_CONFIG, segmentBytes: 2048 };

/** A log with two closed segments and a few batches in the active one, closed uncleanly. */
function crashedLog(): { dir: string; batches: Appended[]; activePath: string; end: number; activeSize: number } {
  const dir = tempDir();
  const log = PartitionLog.open({ dir, config: CONFIG });
  const batches: Appended[] = [];
  while (log.segmentCount < 3) batches.push(appendBatch(log, { count: 2, valueBytes: 150 }));
  for (let i = 0; i < 3; i++) batches.push(appendBatch(log, { count: 2, valueBytes: 150 }));
  const activePath = join(dir, segmentLogName(log.activeSegmentBaseOffset));
  const end = log.logEndOffset;
  log.close({ clean: false });
  return { dir, batches, activePath, end, activeSize: statSync(activePath).size };
}

function reopen(dir: string): PartitionLog {
  return PartitionLog.open({ dir, config: CONFIG });
}

/** Every batch before `end` reads back byte for byte. */
function expectBatchesKept(log: PartitionLog, batches: Appended[], end: number): void {
  for (const b of batches) {
    if (b.first >= end) break;
    expect(log.read(b.first, 1)).toEqual(b.bytes);
  }
}

function corrupted(offset: number, edit: (bytes: Uint8Array, view: DataView) => void, fixCrc = false): Uint8Array {
  const bytes = encodeBatch([{ value: valueOf(offset, 100), timestamp: 1_800_000_000_000 }], { baseOffset: offset });
  const view = new DataView(bytes.buffer);
  edit(bytes, view);
  if (fixCrc) view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(ATTRIBUTES_OFFSET)), false);
  return bytes;
}

interface Scenario {
  /** Adds bytes to (or changes) the active segment of a crashed log. */
  damage(c: ReturnType<typeof crashedLog>): void;
  /** Bytes expected to be cut, given the crashed log. */
  cut(c: ReturnType<typeof crashedLog>): number;
  /** Offsets expected to survive (logEndOffset after recovery). */
  end(c: ReturnType<typeof crashedLog>): number;
}

const added = (n: number) => () => n;

const SCENARIOS: Record<ScanRow, Scenario> = {
  'end-of-data': { damage() {}, cut: () => 0, end: (c) => c.end },
  'header-torn-zero': {
    damage: (c) => appendFileSync(c.activePath, new Uint8Array(30)),
    cut: added(30),
    end: (c) => c.end,
  },
  'header-torn': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, () => {}).subarray(0, 40)),
    cut: added(40),
    end: (c) => c.end,
  },
  'header-zero': {
    damage: (c) => appendFileSync(c.activePath, new Uint8Array(4096)),
    cut: added(4096),
    end: (c) => c.end,
  },
  'length-out-of-range': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, (_b, v) => v.setInt32(BATCH_LENGTH_OFFSET, 0x7fff_fff0, false))),
    cut: (c) => corrupted(c.end, () => {}).length,
    end: (c) => c.end,
  },
  'magic-bad': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, (b) => (b[MAGIC_OFFSET] = 1))),
    cut: (c) => corrupted(c.end, () => {}).length,
    end: (c) => c.end,
  },
  'offset-mismatch': {
    // A valid batch, CRC and all, whose baseOffset skips ahead (a stale batch from an earlier life).
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end + 7, () => {})),
    cut: (c) => corrupted(c.end, () => {}).length,
    end: (c) => c.end,
  },
  'body-torn': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, () => {}).subarray(0, 100)),
    cut: added(100),
    end: (c) => c.end,
  },
  'crc-bad': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, (b) => (b[b.length - 5] ^= 0x10))),
    cut: (c) => corrupted(c.end, () => {}).length,
    end: (c) => c.end,
  },
  'count-bad': {
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, (_b, v) => v.setInt32(RECORD_COUNT_OFFSET, 2, false), true)),
    cut: (c) => corrupted(c.end, () => {}).length,
    end: (c) => c.end,
  },
  accept: {
    // Recovery accepts a valid batch that was written but never synced: it was appended.
    damage: (c) => appendFileSync(c.activePath, corrupted(c.end, () => {})),
    cut: () => 0,
    end: (c) => c.end + 1,
  },
};

describe('recovery decision table', () => {
  it('has a scenario for every row of the table', () => {
    expect(Object.keys(SCENARIOS).sort()).toEqual(RECOVERY_TABLE.map((r) => r.row).sort());
  });

  for (const { row, decision } of RECOVERY_TABLE) {
    it(`row ${row}: ${decision}, keeping every earlier batch`, () => {
      const c = crashedLog();
      const scenario = SCENARIOS[row];
      scenario.damage(c);
      const sizeBefore = statSync(c.activePath).size;
      const log = reopen(c.dir);
      const report = log.recoveryReport;
      expect(report.scanned).toBe(true);
      const cut = scenario.cut(c);
      if (cut === 0) {
        expect(report.truncations).toEqual([]);
      } else if (decision === 'truncate-zero-tail') {
        // Zeros to the end of the file: preallocated space (segment.ts), cut without a report.
        expect(report.truncations).toEqual([]);
        expect(statSync(c.activePath).size).toBe(sizeBefore - cut);
      } else {
        expect(report.truncations).toHaveLength(1);
        expect(report.truncations[0]).toMatchObject({ segment: segmentLogName(log.activeSegmentBaseOffset), bytesTruncated: cut, reason: row });
        expect(statSync(c.activePath).size).toBe(sizeBefore - cut);
      }
      expect(log.logEndOffset).toBe(scenario.end(c));
      expectBatchesKept(log, c.batches, log.logEndOffset);
      // Appends continue at the right offset and survive another crash.
      const more = appendBatch(log, { count: 3 });
      expect(more.first).toBe(scenario.end(c));
      log.close({ clean: false });
      const again = reopen(c.dir);
      expect(again.recoveryReport.truncations).toEqual([]);
      expect(again.logEndOffset).toBe(more.next);
      expect(again.read(more.first, 1)).toEqual(more.bytes);
      expect(again.verify().ok).toBe(true);
      again.close({ clean: true });
    });
  }

  it('a bad CRC in the middle of the active segment cuts it and everything after it, and says corruption', () => {
    const c = crashedLog();
    const log0 = reopen(c.dir);
    const victim = c.batches[c.batches.length - 2];
    const plan = log0.locate(victim.first, 1)!;
    log0.close({ clean: false });
    new FaultyFileSystem().flipBit(c.activePath, plan.position + 70, 3);
    const log = reopen(c.dir);
    const t = log.recoveryReport.truncations[0];
    expect(t.reason).toBe('crc-bad');
    expect(t.detail).toMatch(/corruption/);
    expect(t.bytesTruncated).toBe(c.activeSize - plan.position);
    expect(log.logEndOffset).toBe(victim.first);
    expectBatchesKept(log, c.batches, victim.first);
    log.close({ clean: true });
  });

  it('a zero-filled tail after a torn body is cut at the batch start', () => {
    const c = crashedLog();
    const batch = corrupted(c.end, () => {});
    appendFileSync(c.activePath, batch.subarray(0, 80));
    appendFileSync(c.activePath, new Uint8Array(batch.length - 80)); // the page that never landed
    const log = reopen(c.dir);
    expect(log.recoveryReport.truncations[0]).toMatchObject({ reason: 'crc-bad', bytesTruncated: batch.length });
    expect(log.logEndOffset).toBe(c.end);
    log.close({ clean: true });
  });
});

describe('clean shutdown marker', () => {
  it('skips the scan, and is removed durably on open so that a later crash scans again', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    let log = PartitionLog.open({ dir, config: CONFIG, fs });
    for (let i = 0; i < 20; i++) appendBatch(log, { count: 2, valueBytes: 100 });
    const end = log.logEndOffset;
    log.close({ clean: true });
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(true);
    const syncsBefore = fs.calls.fsyncDir;
    log = PartitionLog.open({ dir, config: CONFIG, fs });
    expect(log.recoveryReport.scanned).toBe(false);
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(false);
    expect(fs.calls.fsyncDir).toBeGreaterThan(syncsBefore);
    expect(log.logEndOffset).toBe(end);
    // Crash (no close): the next open scans.
    appendBatch(log, { count: 1 });
    const log2 = PartitionLog.open({ dir, config: CONFIG });
    expect(log2.recoveryReport.scanned).toBe(true);
    expect(log2.logEndOffset).toBe(end + 1);
    log2.close({ clean: true });
    log.close({ clean: false });
  });

  it('with the marker, a torn tail still fails the cheap check and is scanned and cut', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    for (let i = 0; i < 5; i++) appendBatch(log, { count: 2 });
    const end = log.logEndOffset;
    const path = join(dir, segmentLogName(log.activeSegmentBaseOffset));
    log.close({ clean: true });
    appendFileSync(path, corrupted(end, () => {}).subarray(0, 90));
    const again = reopen(dir);
    expect(again.recoveryReport.scanned).toBe(true);
    expect(again.recoveryReport.truncations[0]).toMatchObject({ reason: 'body-torn', bytesTruncated: 90 });
    expect(again.logEndOffset).toBe(end);
    again.close({ clean: true });
  });

  it('a log that is not closed cleanly leaves no marker', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    appendBatch(log);
    log.close({ clean: false });
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(false);
  });
});

describe('index validation and rebuild', () => {
  function cleanLog(): { dir: string; batches: Appended[]; bases: number[] } {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG });
    const batches: Appended[] = [];
    while (log.segmentCount < 3) batches.push(appendBatch(log, { count: 2, valueBytes: 100, timestamp: 1000 + batches.length * 10 }));
    for (let i = 0; i < 4; i++) batches.push(appendBatch(log, { count: 2, valueBytes: 100, timestamp: 5000 + i }));
    const bases = log.segmentBaseOffsets();
    log.close({ clean: true });
    return { dir, batches, bases };
  }

  function expectAllReadable(dir: string, batches: Appended[]): void {
    const log = reopen(dir);
    for (const b of batches) expect(log.read(b.first, 1)).toEqual(b.bytes);
    expect(log.offsetForTimestamp(1000)).toBe(0);
    expect(log.verify().ok).toBe(true);
    log.close({ clean: true });
  }

  const indexName = (base: number, suffix: string) => segmentLogName(base).replace('.log', suffix);

  it('rebuilds a deleted offset index of a closed segment and reports it', () => {
    const { dir, batches, bases } = cleanLog();
    const name = indexName(bases[0], '.index');
    const original = readFileSync(join(dir, name));
    expect(original.length).toBeGreaterThan(0);
    (new FaultyFileSystem()).unlink(join(dir, name));
    const log = reopen(dir);
    expect(log.recoveryReport.indexesRebuilt).toEqual([name]);
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(readFileSync(join(dir, name))).toEqual(original);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });

  it('rebuilds a garbled offset index (size not a multiple of 8)', () => {
    const { dir, batches, bases } = cleanLog();
    const name = indexName(bases[1], '.index');
    appendFileSync(join(dir, name), new Uint8Array(3));
    const log = reopen(dir);
    expect(log.recoveryReport.indexesRebuilt).toContain(name);
    expect(log.recoveryReport.problems.join('\n')).toMatch(/multiple of 8/);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });

  it('rebuilds an offset index whose last entry points at the wrong batch', () => {
    const { dir, batches, bases } = cleanLog();
    const name = indexName(bases[0], '.index');
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    const view = new DataView(bytes.buffer);
    const last = bytes.length - 8;
    view.setUint32(last, view.getUint32(last, false) + 1, false); // offset off by one
    writeFileSync(join(dir, name), bytes);
    const log = reopen(dir);
    expect(log.recoveryReport.indexesRebuilt).toContain(name);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });

  it('rebuilds an offset index whose entries do not increase', () => {
    const { dir, batches, bases } = cleanLog();
    const name = indexName(bases[0], '.index');
    const bytes = new Uint8Array(readFileSync(join(dir, name)));
    expect(bytes.length).toBeGreaterThanOrEqual(16);
    bytes.copyWithin(8, 0, 8); // entry 1 = entry 0
    writeFileSync(join(dir, name), bytes);
    const log = reopen(dir);
    expect(log.recoveryReport.indexesRebuilt).toContain(name);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });

  it('rebuilds a garbled or deleted time index, of a closed segment and of the active one', () => {
    const { dir, batches, bases } = cleanLog();
    const closed = indexName(bases[0], '.timeindex');
    const active = indexName(bases[2], '.timeindex');
    const original = readFileSync(join(dir, closed));
    writeFileSync(join(dir, closed), new Uint8Array(24).fill(0xff));
    (new FaultyFileSystem()).unlink(join(dir, active));
    const log = reopen(dir);
    expect(log.recoveryReport.indexesRebuilt.sort()).toEqual([closed, active].sort());
    expect(readFileSync(join(dir, closed))).toEqual(original);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });

  it('keeps the largest timestamp of closed segments across a reopen (retention needs it)', () => {
    const { dir, bases } = cleanLog();
    const log = reopen(dir);
    // Closed segments end with a time index entry for their largest timestamp.
    expect(log.applyRetention(0).segmentsDeleted).toBe(0);
    log.close({ clean: true });
    const log2 = PartitionLog.open({ dir, config: { ...CONFIG, retentionMs: 1000 } });
    // Segment 0 and 1 hold timestamps < 5000; now = 5999 deletes nothing newer than 4999.
    const r = log2.applyRetention(4999 + 1000 + 1);
    expect(r.segmentsDeleted).toBe(2);
    expect(log2.logStartOffset).toBe(bases[2]);
    log2.close({ clean: true });
  });

  it('removes leftover .deleted files, .tmp files and index files without a .log', () => {
    const { dir, batches } = cleanLog();
    writeFileSync(join(dir, '00000000000000000000.log.deleted'), 'x');
    writeFileSync(join(dir, 'something.tmp'), 'x');
    writeFileSync(join(dir, '00000000000000099999.index'), new Uint8Array(8));
    writeFileSync(join(dir, '00000000000000099999.timeindex'), new Uint8Array(12));
    const log = reopen(dir);
    const names = readdirSync(dir);
    expect(names.some((n) => n.endsWith('.deleted') || n.endsWith('.tmp') || n.startsWith('00000000000000099999'))).toBe(false);
    expect(log.recoveryReport.problems.filter((p) => p.startsWith('removed leftover'))).toHaveLength(4);
    log.close({ clean: true });
    expectAllReadable(dir, batches);
  });
});

describe('recovery from the recovery point', () => {
  const rpPath = (dir: string) => join(dir, RECOVERY_POINT_FILE);

  function storedRecoveryPoint(dir: string): number {
    const decoded = decodeRecoveryPoint(new Uint8Array(readFileSync(rpPath(dir))));
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.recoveryPoint;
  }

  /**
   * A log whose last `unsealed` rolls never had their seal fdatasync run (held, then the
   * process "crashes": the log is abandoned, not closed), with `segments` segments in all.
   */
  async function crashedWithUnsealedRolls(segments: number, unsealed: number): Promise<{ dir: string; batches: Appended[]; bases: number[] }> {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const batches: Appended[] = [];
    while (log.segmentCount < segments - unsealed) batches.push(appendBatch(log, { count: 2, valueBytes: 150 }));
    await sealed(log);
    fs.holdAsyncSyncs(); // never released: the machine went down before these fdatasyncs ran
    while (log.segmentCount < segments) batches.push(appendBatch(log, { count: 2, valueBytes: 150 }));
    for (let i = 0; i < 2; i++) batches.push(appendBatch(log, { count: 2, valueBytes: 150 }));
    return { dir, batches, bases: log.segmentBaseOffsets() };
  }

  /** The last batch of the segment that ends at `nextBase`. */
  const lastBatchBefore = (batches: Appended[], nextBase: number) => batches.find((b) => b.next === nextBase)!;

  it('an unclean reopen trusts the segments whose seal completed and scans from the recovery point on', async () => {
    const { dir, batches, bases } = await crashedWithUnsealedRolls(5, 2);
    expect(storedRecoveryPoint(dir)).toBe(bases[2]);
    const log = reopen(dir);
    expect(log.recoveryReport.segmentsScanned).toEqual(bases.slice(2).map(segmentLogName));
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(log.recoveryReport.segmentsDropped).toEqual([]);
    expectBatchesKept(log, batches, log.logEndOffset);
    expect(log.logEndOffset).toBe(batches[batches.length - 1].next);
    // The scanned segments were fdatasynced by the open: the recovery point is the active segment now.
    expect(storedRecoveryPoint(dir)).toBe(bases[4]);
    log.close({ clean: false });
    const again = reopen(dir);
    expect(again.recoveryReport.segmentsScanned).toEqual([segmentLogName(bases[4])]);
    again.close({ clean: true });
  });

  it('a rolled segment whose seal never completed and that lost its last page is cut there, and every later segment is dropped', async () => {
    const { dir, batches, bases } = await crashedWithUnsealedRolls(5, 3);
    // Segment 2 (sealing when the machine went down) lost its last page; 1, 3 and 4 are whole.
    const tornPath = join(dir, segmentLogName(bases[2]));
    const torn = lastBatchBefore(batches, bases[3]);
    new FaultyFileSystem().zeroTail(tornPath, 100);
    const sizeBefore = statSync(tornPath).size;
    const log = reopen(dir);
    const r = log.recoveryReport;
    expect(r.segmentsScanned).toEqual(bases.slice(1, 3).map(segmentLogName));
    expect(r.truncations).toEqual([expect.objectContaining({ segment: segmentLogName(bases[2]), reason: 'crc-bad', bytesTruncated: torn.bytes.length })]);
    expect(r.segmentsDropped).toEqual([segmentLogName(bases[3]), segmentLogName(bases[4])]);
    expect(r.problems.join('\n')).toMatch(/not known to be synced/);
    expect(statSync(tornPath).size).toBe(sizeBefore - torn.bytes.length);
    expect(existsSync(join(dir, segmentLogName(bases[3])))).toBe(false);
    expect(existsSync(join(dir, segmentLogName(bases[4])))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith(segmentLogName(bases[3]).slice(0, 20)))).toEqual([]);
    expect(log.segmentBaseOffsets()).toEqual(bases.slice(0, 3));
    expect(log.logEndOffset).toBe(torn.first);
    expectBatchesKept(log, batches, torn.first);
    expect(log.verify().ok).toBe(true);
    // The cut segment is the active one: appends continue there, and a later crash finds them.
    const more = appendBatch(log, { count: 3 });
    expect(more.first).toBe(torn.first);
    expect(log.activeSegmentBaseOffset).toBe(bases[2]);
    log.close({ clean: false });
    const again = reopen(dir);
    expect(again.recoveryReport.truncations).toEqual([]);
    expect(again.logEndOffset).toBe(more.next);
    expect(again.read(more.first, 1)).toEqual(more.bytes);
    again.close({ clean: true });
  });

  it('a rolled segment that lost whole batches at its end (its size not yet on disk) also ends the log there', async () => {
    const { dir, batches, bases } = await crashedWithUnsealedRolls(4, 2);
    const torn = lastBatchBefore(batches, bases[3]);
    new FaultyFileSystem().truncateFile(join(dir, segmentLogName(bases[2])), statSync(join(dir, segmentLogName(bases[2]))).size - torn.bytes.length);
    const log = reopen(dir);
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(log.recoveryReport.segmentsDropped).toEqual([segmentLogName(bases[3])]);
    expect(log.recoveryReport.problems.join('\n')).toMatch(/below the next segment's base/);
    expect(log.logEndOffset).toBe(torn.first);
    expect(log.verify().ok).toBe(true);
    log.close({ clean: true });
  });

  for (const damage of ['missing', 'unreadable'] as const) {
    it(`a ${damage} recovery point file makes an unclean reopen scan every segment, so a torn one anywhere is still cut`, async () => {
      const { dir, batches, bases } = await crashedWithUnsealedRolls(6, 5);
      if (damage === 'missing') unlinkSync(rpPath(dir));
      else writeFileSync(rpPath(dir), new Uint8Array(18)); // the rename landed, the bytes did not
      // Segment 1, far from the end, lost its last page.
      const torn = lastBatchBefore(batches, bases[2]);
      new FaultyFileSystem().zeroTail(join(dir, segmentLogName(bases[1])), 50);
      const log = reopen(dir);
      const r = log.recoveryReport;
      expect(r.segmentsScanned).toEqual(bases.slice(0, 2).map(segmentLogName));
      expect(r.problems[0]).toMatch(damage === 'missing' ? /\.recovery-point: missing.*every segment is scanned/ : /\.recovery-point: unreadable.*every segment is scanned/);
      expect(r.truncations).toEqual([expect.objectContaining({ segment: segmentLogName(bases[1]), reason: 'crc-bad' })]);
      expect(r.segmentsDropped).toEqual(bases.slice(2).map(segmentLogName));
      expect(log.logEndOffset).toBe(torn.first);
      expectBatchesKept(log, batches, torn.first);
      expect(storedRecoveryPoint(dir)).toBe(bases[1]);
      log.close({ clean: true });
    });
  }

  it('a data directory written before recovery points opens: after a crash every segment is scanned once, after a clean shutdown none', async () => {
    const c = crashedLog(); // three segments, closed uncleanly
    unlinkSync(rpPath(c.dir));
    const log = reopen(c.dir);
    expect(log.recoveryReport.segmentsScanned).toHaveLength(3);
    expect(log.recoveryReport.truncations).toEqual([]);
    expect(log.recoveryReport.segmentsDropped).toEqual([]);
    expect(log.logEndOffset).toBe(c.end);
    expect(storedRecoveryPoint(c.dir)).toBe(log.activeSegmentBaseOffset);
    log.close({ clean: true });
    unlinkSync(rpPath(c.dir));
    const clean = reopen(c.dir);
    expect(clean.recoveryReport.segmentsScanned).toEqual([]);
    expect(clean.recoveryReport.problems).toEqual([]);
    expect(storedRecoveryPoint(c.dir)).toBe(clean.activeSegmentBaseOffset);
    clean.close({ clean: true });
  });

  it('a new partition has its recovery point file before its first roll', () => {
    const dir = join(tempDir(), 'topic-0');
    const log = PartitionLog.open({ dir, config: CONFIG });
    expect(storedRecoveryPoint(dir)).toBe(0);
    log.close({ clean: true });
  });
});
