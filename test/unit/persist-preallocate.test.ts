/**
 * Zeros preallocated after the active segment's batches (segment.ts, limits.ts
 * PREALLOCATE_BYTES_DEFAULT): never read, cut at a roll and a close, cut without a
 * truncation report by recovery after a crash (in the active segment and in a closed one
 * whose trim was not durable yet), and the end of data for verify.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem } from '../../src/persist/fs.js';
import { PREALLOCATE_BYTES_MAX, PREALLOCATE_INTERVAL_MS_MIN } from '../../src/persist/limits.js';
import { PartitionLog, RECOVERY_POINT_FILE, verifyPartitionDir, type LogConfig } from '../../src/persist/partition-log.js';
import { appendBatch, FakeClock, sealed, SMALL_CONFIG, tempDir, type Appended } from './persist-helpers.js';

const PREALLOCATE = 2048;
const CONFIG: LogConfig = { ...SMALL_CONFIG, segmentBytes: 16 * 1024 };

function logFile(dir: string, base: number): string {
  return join(dir, `${String(base).padStart(20, '0')}.log`);
}

function expectAll(log: PartitionLog, appended: Appended[]): void {
  for (const a of appended) expect(log.read(a.first, 1)).toEqual(a.bytes);
  expect(log.logEndOffset).toBe(appended[appended.length - 1].next);
}

describe('preallocated segment space', () => {
  it('refuses more preallocation than recovery would cut without a report', () => {
    const dir = tempDir();
    for (const bad of [PREALLOCATE_BYTES_MAX + 1, -1, 1.5]) {
      expect(() => PartitionLog.open({ dir, config: CONFIG, preallocateBytes: bad })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    PartitionLog.open({ dir, config: CONFIG, preallocateBytes: PREALLOCATE_BYTES_MAX }).close({ clean: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps zeros ahead of the batches, which reads and verify do not see, and cuts them at a roll and a close', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const log = PartitionLog.open({ dir, config: CONFIG, clock, preallocateBytes: PREALLOCATE });
    const appended = [appendBatch(log, { count: 2 })];
    const active = logFile(dir, 0);
    expect(statSync(active).size).toBe(log.sizeBytes + PREALLOCATE);
    expect(log.read(0, 1 << 20)).toEqual(appended[0].bytes); // the batches, not the zeros
    expect(log.verify().ok).toBe(true); // verify beside the live log: the zeros end the data
    // Appends go into the zeros; a refill waits for half of them to be used and for the interval.
    while (log.segmentBaseOffsets().length === 1) {
      clock.nowMs += PREALLOCATE_INTERVAL_MS_MIN;
      appended.push(appendBatch(log, { count: 3, valueBytes: 200 }));
      if (log.segmentBaseOffsets().length === 1) {
        const ahead = statSync(active).size - log.sizeBytes;
        expect(ahead).toBeGreaterThan(0);
        expect(ahead).toBeLessThanOrEqual(PREALLOCATE);
        expect(statSync(active).size).toBeLessThanOrEqual(CONFIG.segmentBytes); // never past segmentBytes
      }
    }
    await sealed(log);
    const [first, second] = log.segmentBaseOffsets();
    const firstSize = statSync(logFile(dir, first)).size;
    expect(readdirSync(dir).filter((f) => f.endsWith('.log'))).toHaveLength(2);
    const firstBatches = appended.filter((a) => a.first < second).reduce((n, a) => n + a.bytes.length, 0);
    expect(firstSize).toBe(firstBatches); // cut to its batches
    expect(statSync(logFile(dir, second)).size).toBeGreaterThan(log.sizeBytes - firstSize); // the new active one has zeros
    log.close({ clean: true });
    expect(statSync(logFile(dir, second)).size).toBe(log.sizeBytes - firstSize);
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.recoveryReport.scanned).toBe(false); // the clean close left nothing to scan
    expect(again.recoveryReport.problems).toEqual([]);
    expectAll(again, appended);
    expect(again.verify().ok).toBe(true);
    again.close({ clean: true });
  });

  it('a crash leaves the zeros: verify calls them the end, and recovery cuts them without a truncation and keeps every batch', () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG, preallocateBytes: PREALLOCATE });
    const appended = [appendBatch(log, { count: 2 }), appendBatch(log, { count: 4 })];
    log.sync();
    const dataBytes = log.sizeBytes;
    // kill -9: no close, no trim; the descriptors die with the process (here: abandoned).
    expect(statSync(logFile(dir, 0)).size).toBeGreaterThan(dataBytes);
    const verified = verifyPartitionDir(dir);
    expect(verified.ok).toBe(true);
    expect(verified.segments[0].bytes).toBe(dataBytes);
    const again = PartitionLog.open({ dir, config: CONFIG, preallocateBytes: 0 });
    expect(again.recoveryReport.scanned).toBe(true);
    expect(again.recoveryReport.truncations).toEqual([]);
    expect(statSync(logFile(dir, 0)).size).toBe(dataBytes);
    expectAll(again, appended);
    again.close({ clean: true });
  });

  it('a zero tail followed by other bytes is still reported as a truncation', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, preallocateBytes: 0 });
    const kept = appendBatch(log, { count: 2 });
    const dataBytes = log.sizeBytes;
    log.close({ clean: false });
    // Zeros, then a byte that is not: a lost page with data after it, not preallocated space.
    fs.appendZeros(logFile(dir, 0), 100);
    fs.flipBit(logFile(dir, 0), dataBytes + 99);
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.recoveryReport.truncations).toEqual([expect.objectContaining({ reason: 'header-zero', position: dataBytes, bytesTruncated: 100 })]);
    expect(again.logEndOffset).toBe(kept.next);
    again.close({ clean: true });
    const report = verifyPartitionDir(dir);
    expect(report.ok).toBe(true);
  });

  it('a closed segment whose cut zeros came back after a crash keeps its batches, and the later segments stay', async () => {
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG, preallocateBytes: PREALLOCATE });
    const appended: Appended[] = [];
    while (log.segmentBaseOffsets().length < 3) appended.push(appendBatch(log, { count: 3, valueBytes: 300 }));
    await sealed(log);
    log.close({ clean: true });
    const [first] = log.segmentBaseOffsets();
    // As if the roll's cut had not reached the disk: the closed segment ends in zeros again,
    // and the crash left no clean marker and a recovery point at the start.
    new FaultyFileSystem().appendZeros(logFile(dir, first), PREALLOCATE);
    rmSync(join(dir, '.clean-shutdown'));
    rmSync(join(dir, RECOVERY_POINT_FILE));
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.recoveryReport.segmentsDropped).toEqual([]);
    expect(again.recoveryReport.truncations).toEqual([]);
    expect(again.segmentBaseOffsets()).toEqual(log.segmentBaseOffsets());
    expectAll(again, appended);
    expect(again.verify().ok).toBe(true);
    again.close({ clean: true });
  });

  it('gives a writer faster than the zeros a second no refill, and refills again once it slows down', () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const log = PartitionLog.open({ dir, config: { ...CONFIG, segmentBytes: 1 << 20 }, clock, preallocateBytes: PREALLOCATE });
    const fileAhead = () => statSync(logFile(dir, 0)).size - log.sizeBytes;
    appendBatch(log);
    expect(fileAhead()).toBe(PREALLOCATE);
    for (let i = 0; i < 3; i++) {
      // More than PREALLOCATE bytes a second: past the zeros, and no new ones.
      while (log.sizeBytes < (i + 1) * 3 * PREALLOCATE) appendBatch(log, { count: 5, valueBytes: 100 });
      clock.nowMs += PREALLOCATE_INTERVAL_MS_MIN;
      appendBatch(log, { count: 5, valueBytes: 100 });
      expect(fileAhead()).toBe(0);
    }
    clock.nowMs += PREALLOCATE_INTERVAL_MS_MIN; // a quiet second: the next append refills
    appendBatch(log);
    expect(fileAhead()).toBe(PREALLOCATE);
    log.close({ clean: true });
  });

  it('a failed refill stops preallocation for the log; the append it follows stands', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const warnings: string[] = [];
    const logger = { info() {}, warn: (_o: object, msg?: string) => void warnings.push(msg ?? '') };
    const clock = new FakeClock();
    const log = PartitionLog.open({ dir, config: CONFIG, fs, clock, logger, preallocateBytes: PREALLOCATE });
    fs.inject({ op: 'write', pathEndsWith: '.log', code: 'ENOSPC', skip: 1 }); // the batch passes, its zeros fail
    const appended = [appendBatch(log, { count: 2 })];
    expect(warnings).toEqual(['preallocating segment space failed; appends go on without it']);
    for (let i = 0; i < 5; i++) {
      clock.nowMs += PREALLOCATE_INTERVAL_MS_MIN;
      appended.push(appendBatch(log));
    }
    expect(statSync(logFile(dir, 0)).size).toBe(log.sizeBytes); // no more zeros
    expectAll(log, appended);
    log.close({ clean: true });
    expectAll(PartitionLog.open({ dir, config: CONFIG }), appended);
  });
});
