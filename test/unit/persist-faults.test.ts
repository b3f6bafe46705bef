import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem, nodeFileSystem } from '../../src/persist/fs.js';
import { PartitionLog, RECOVERY_POINT_FILE, segmentLogName } from '../../src/persist/partition-log.js';
import { decodeRecoveryPoint } from '../../src/persist/recovery-point.js';
import { encodeBatch } from '../../src/persist/record-batch.js';
import { appendBatch, FakeClock, sealed, SMALL_CONFIG, seededRandom, tempDir, testSeed, valueOf, type Appended } from './persist-helpers.js';

const CONFIG = { ...SMALL_CONFIG, segmentBytes: 2048, indexIntervalBytes: 128 };

function caught(fn: () => unknown): { code?: string; retriable?: boolean; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; retriable?: boolean; message: string };
  }
  throw new Error('expected a throw');
}

function nextBatch(log: PartitionLog, count = 2, valueBytes = 100): { bytes: Uint8Array; first: number; next: number } {
  const first = log.logEndOffset;
  const bytes = encodeBatch(
    Array.from({ length: count }, (_, i) => ({ value: valueOf(first + i, valueBytes), timestamp: 2_000_000_000_000 + first + i })),
    { baseOffset: first },
  );
  return { bytes, first, next: first + count };
}

/** Appends batches of 300-byte values until the next one would roll; returns that next one. */
function fillSegment(log: PartitionLog, acked: { first: number; next: number; bytes: Uint8Array }[] = []): { bytes: Uint8Array; first: number; next: number } {
  let b = nextBatch(log, 2, 300);
  while (log.sizeBytes - closedBytes(log) + b.bytes.length <= CONFIG.segmentBytes) {
    log.append(b.bytes, b.first, b.next);
    acked.push(b);
    b = nextBatch(log, 2, 300);
  }
  return b;
}

/** Bytes of the closed segments (sizeBytes counts the active one too). */
function closedBytes(log: PartitionLog): number {
  let n = 0;
  for (const base of log.segmentBaseOffsets().slice(0, -1)) n += statSync(join(log.dir, segmentLogName(base))).size;
  return n;
}

/** Lets the callbacks of released fdatasyncs run (each comes on its own later turn). */
async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

function storedRecoveryPoint(dir: string): number {
  const decoded = decodeRecoveryPoint(new Uint8Array(readFileSync(join(dir, RECOVERY_POINT_FILE))));
  if (!decoded.ok) throw new Error(decoded.reason);
  return decoded.recoveryPoint;
}

/** Every acknowledged batch, and nothing else, is in the log at `dir`. */
function expectExactly(dir: string, acked: Appended[] | { first: number; next: number; bytes: Uint8Array }[]): PartitionLog {
  const log = PartitionLog.open({ dir, config: CONFIG });
  const end = acked.length === 0 ? 0 : acked[acked.length - 1].next;
  expect(log.logEndOffset).toBe(end);
  for (const b of acked) expect(log.read(b.first, 1)).toEqual(b.bytes);
  expect(log.verify().ok).toBe(true);
  return log;
}

describe('FaultyFileSystem', () => {
  it('tears a write after k bytes, then throws an fs-style error', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const fd = fs.open(join(dir, 'f'), 'create');
    fs.tearNextWrite(3);
    const err = caught(() => fs.write(fd, new Uint8Array([1, 2, 3, 4, 5]), 0));
    expect(err.code).toBe('EIO');
    expect(fs.size(fd)).toBe(3);
    fs.write(fd, new Uint8Array([9]), 3); // the fault fired once
    expect(fs.size(fd)).toBe(4);
    fs.close(fd);
  });

  it('fires on the (skip + 1)-th matching call only, for the matching path', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const a = fs.open(join(dir, 'a.log'), 'create');
    const b = fs.open(join(dir, 'b.index'), 'create');
    fs.inject({ op: 'fdatasync', pathEndsWith: '.index', skip: 1, code: 'EIO' });
    fs.fdatasync(a);
    fs.fdatasync(b);
    expect(caught(() => fs.fdatasync(b)).code).toBe('EIO');
    fs.fdatasync(b);
    expect(fs.pendingFaults).toBe(0);
    fs.close(a);
    fs.close(b);
  });

  it('flips a bit, zeroes a tail and appends zeros in place', () => {
    const dir = tempDir();
    const path = join(dir, 'f');
    nodeFileSystem.writeFile(path, new Uint8Array([1, 2, 3, 4]));
    const fs = new FaultyFileSystem();
    fs.flipBit(path, 1, 7);
    expect(Array.from(fs.readFile(path))).toEqual([1, 130, 3, 4]);
    fs.zeroTail(path, 2);
    expect(Array.from(fs.readFile(path))).toEqual([1, 130, 0, 0]);
    fs.appendZeros(path, 2);
    expect(Array.from(fs.readFile(path))).toEqual([1, 130, 0, 0, 0, 0]);
  });
});

describe('PartitionLog under faults', () => {
  it('a torn write during append is STORAGE_ERROR (retriable), leaves the log as it was, and a retry appends cleanly', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const acked = [appendBatch(log), appendBatch(log)];
    const sizeBefore = log.sizeBytes;
    const b = nextBatch(log);
    fs.tearNextWrite(50, '.log');
    const err = caught(() => log.append(b.bytes, b.first, b.next));
    expect(err.code).toBe('STORAGE_ERROR');
    expect(err.retriable).toBe(true);
    expect(log.logEndOffset).toBe(b.first);
    expect(log.sizeBytes).toBe(sizeBefore);
    expect(statSync(join(dir, segmentLogName(0))).size).toBe(sizeBefore);
    log.append(b.bytes, b.first, b.next);
    acked.push({ ...b, timestamps: [] });
    // Crash (no close): the reopen finds exactly the acknowledged batches.
    const again = expectExactly(dir, acked);
    expect(again.recoveryReport.truncations).toEqual([]);
    again.close({ clean: true });
    log.close({ clean: false });
  });

  it('a torn write whose cleanup also fails is cut by the next append, or by recovery after a crash', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    // Without preallocated zeros, so that the torn batch ends the file (over zeros it would be crc-bad).
    const log = PartitionLog.open({ dir, config: CONFIG, fs, preallocateBytes: 0 });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [appendBatch(log)];
    const b = nextBatch(log);
    fs.tearNextWrite(120, '.log').inject({ op: 'ftruncate', code: 'EIO' });
    expect(caught(() => log.append(b.bytes, b.first, b.next)).code).toBe('STORAGE_ERROR');
    // The torn bytes are on disk: a crash now is recovered by the scan.
    const crashed = PartitionLog.open({ dir, config: CONFIG });
    expect(crashed.recoveryReport.truncations[0]).toMatchObject({ reason: 'body-torn', bytesTruncated: 120 });
    expect(crashed.logEndOffset).toBe(b.first);
    crashed.close({ clean: false });
    // Without a crash, the next append cuts the torn bytes first, then appends.
    const small = nextBatch(log, 1, 5);
    log.append(small.bytes, small.first, small.next);
    acked.push(small);
    log.close({ clean: true });
    const again = expectExactly(dir, acked);
    again.close({ clean: true });
  });

  it('ENOSPC during append is STORAGE_ERROR and the log stays consistent', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [appendBatch(log)];
    const b = nextBatch(log);
    fs.failNextWriteNoSpace('.log', 10);
    const err = caught(() => log.append(b.bytes, b.first, b.next));
    expect(err.code).toBe('STORAGE_ERROR');
    expect(err.message).toMatch(/ENOSPC/);
    expect(log.logEndOffset).toBe(b.first);
    log.append(b.bytes, b.first, b.next);
    acked.push(b);
    log.close({ clean: true });
    expectExactly(dir, acked).close({ clean: true });
  });

  it('a failed index write undoes the whole append, log bytes included', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: { ...CONFIG, indexIntervalBytes: 0 }, fs });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [appendBatch(log)];
    const sizeBefore = log.sizeBytes;
    const b = nextBatch(log);
    fs.failNextWriteNoSpace('.timeindex');
    expect(caught(() => log.append(b.bytes, b.first, b.next)).code).toBe('STORAGE_ERROR');
    expect(log.sizeBytes).toBe(sizeBefore);
    expect(statSync(join(dir, segmentLogName(0))).size).toBe(sizeBefore);
    log.append(b.bytes, b.first, b.next);
    acked.push(b);
    expect(log.verify().ok).toBe(true);
    log.close({ clean: true });
    const again = expectExactly(dir, acked);
    expect(again.recoveryReport.indexesRebuilt).toEqual([]);
    again.close({ clean: true });
  });

  it('a failing fdatasync surfaces as STORAGE_ERROR, keeps durableOffset, and fences writes until reopen', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    appendBatch(log);
    log.sync();
    const durable = log.durableOffset;
    const b = appendBatch(log);
    fs.failNextFdatasync('.log');
    const err = caught(() => log.sync());
    expect(err.code).toBe('STORAGE_ERROR');
    expect(log.durableOffset).toBe(durable);
    expect(log.failed).toBe(true);
    // A second fdatasync could succeed without the lost pages: writes are refused instead.
    expect(caught(() => log.sync()).code).toBe('STORAGE_ERROR');
    expect(caught(() => appendBatch(log)).code).toBe('STORAGE_ERROR');
    // Reads still work; close writes no clean marker, so the reopen scans.
    expect(log.read(b.first, 1)).toEqual(b.bytes);
    log.close({ clean: true });
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(false);
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.recoveryReport.scanned).toBe(true);
    again.close({ clean: true });
  });

  it('syncAsync makes the offsets durable only when its fdatasync calls back, covering appends made before it started', async () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    appendBatch(log);
    const covered = log.logEndOffset;
    const done = new Promise<unknown>((resolve) => {
      expect(log.syncAsync(resolve)).toBe(covered);
    });
    expect(log.syncInFlight).toBe(true);
    expect(log.durableOffset).toBe(0);
    appendBatch(log); // arrives while the fsync runs: not covered by it
    expect(await done).toBe(null);
    expect(log.syncInFlight).toBe(false);
    expect(log.durableOffset).toBe(covered);
    const next = new Promise<unknown>((resolve) => {
      expect(log.syncAsync(resolve)).toBe(log.logEndOffset);
    });
    expect(await next).toBe(null);
    expect(log.durableOffset).toBe(log.logEndOffset);
    expect(log.syncAsync(() => {})).toBe(-1); // nothing left to sync: no callback
    log.close({ clean: true });
  });

  it('a failing asynchronous fdatasync reports STORAGE_ERROR, keeps durableOffset and fences writes', async () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    appendBatch(log);
    fs.failNextFdatasync('.log');
    const err = await new Promise<any>((resolve) => log.syncAsync(resolve));
    expect(err.code).toBe('STORAGE_ERROR');
    expect(log.durableOffset).toBe(0);
    expect(log.failed).toBe(true);
    expect(caught(() => appendBatch(log)).code).toBe('STORAGE_ERROR');
    log.close({ clean: true });
  });

  it('a roll that cannot create the new segment fails the append, and the retry rolls', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [];
    let b = nextBatch(log, 2, 300);
    while (log.sizeBytes + b.bytes.length <= CONFIG.segmentBytes) {
      log.append(b.bytes, b.first, b.next);
      acked.push(b);
      b = nextBatch(log, 2, 300);
    }
    fs.inject({ op: 'open', pathEndsWith: '.timeindex', code: 'ENOSPC' });
    expect(caught(() => log.append(b.bytes, b.first, b.next)).code).toBe('STORAGE_ERROR');
    expect(log.failed).toBe(false);
    expect(log.logEndOffset).toBe(b.first);
    log.append(b.bytes, b.first, b.next);
    acked.push(b);
    expect(log.segmentCount).toBe(2);
    log.close({ clean: true });
    expectExactly(dir, acked).close({ clean: true });
  });

  it('random torn writes and ENOSPC: a crash at the end leaves exactly the acknowledged batches', () => {
    const seed = testSeed();
    const rnd = seededRandom(seed);
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [];
    for (let i = 0; i < 300; i++) {
      const b = nextBatch(log, 1 + Math.floor(rnd() * 3), Math.floor(rnd() * 200));
      const dice = rnd();
      if (dice < 0.15) fs.tearNextWrite(Math.floor(rnd() * b.bytes.length), '.log');
      else if (dice < 0.2) fs.failNextWriteNoSpace(rnd() < 0.5 ? '.index' : '.timeindex');
      else if (dice < 0.25) fs.inject({ op: 'ftruncate', code: 'EIO' }).tearNextWrite(Math.floor(rnd() * b.bytes.length), '.log');
      try {
        log.append(b.bytes, b.first, b.next);
        acked.push(b);
      } catch (err) {
        expect((err as { code: string }).code).toBe('STORAGE_ERROR');
      }
      fs.clearFaults(); // a fault that did not fire (no index entry due) must not leak into the next step
      if (rnd() < 0.1) log.sync();
    }
    // Crash: no close. Whatever torn bytes are left, the reopen finds exactly what was acknowledged.
    const again = expectExactly(dir, acked);
    again.close({ clean: true });
    log.close({ clean: false });
  });
});

describe('the seal of a rolled segment runs on the thread pool', () => {
  it('a roll returns without a synchronous fdatasync of the old segment, and appends go on into the new one', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const log = PartitionLog.open({ dir: tempDir(), config: CONFIG, fs });
    const rolling = fillSegment(log);
    const syncsBefore = fs.calls.fdatasync;
    log.append(rolling.bytes, rolling.first, rolling.next);
    expect(log.segmentCount).toBe(2);
    expect(fs.calls.fdatasync).toBe(syncsBefore);
    const old = segmentLogName(0);
    expect(fs.heldAsyncSyncs.map((p) => basename(p!))).toEqual([old, old.replace('.log', '.index'), old.replace('.log', '.timeindex')]);
    expect(log.sealInFlight).toBe(true);
    const more = appendBatch(log, { count: 3 });
    expect(more.first).toBe(rolling.next);
    expect(log.read(rolling.first, 1)).toEqual(rolling.bytes);
    expect(fs.releaseAsyncSyncs()).toBe(3);
    await sealed(log);
    expect(log.sealInFlight).toBe(false);
    expect(fs.calls.fdatasync).toBe(syncsBefore + 3);
    log.close({ clean: true });
  });

  it('durableOffset stays where it was until the seal is done, and a sync of the new segment calls back only then', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    appendBatch(log);
    log.sync();
    const durable = log.durableOffset;
    expect(durable).toBeGreaterThan(0);
    const rolling = fillSegment(log); // more batches in segment 0, not synced
    log.append(rolling.bytes, rolling.first, rolling.next);
    const oldEnd = log.activeSegmentBaseOffset;
    expect(oldEnd).toBeGreaterThan(durable);
    expect(log.durableOffset).toBe(durable);
    appendBatch(log, { count: 2 });
    let answer: unknown = 'not yet';
    const target = log.syncAsync((err) => (answer = err));
    expect(target).toBe(log.logEndOffset);
    // The new segment's fdatasync returns first: its batches are on disk, but not those before them.
    expect(fs.releaseAsyncSyncs(segmentLogName(oldEnd))).toBe(1);
    await turns();
    expect(answer).toBe('not yet');
    expect(log.syncInFlight).toBe(true);
    expect(log.durableOffset).toBe(durable);
    expect(storedRecoveryPoint(dir)).toBe(0);
    // Then the seal: everything up to the target is durable, and the recovery point moves to the active segment.
    expect(fs.releaseAsyncSyncs()).toBe(3);
    await sealed(log);
    await turns();
    expect(answer).toBe(null);
    expect(log.syncInFlight).toBe(false);
    expect(log.durableOffset).toBe(target);
    expect(storedRecoveryPoint(dir)).toBe(oldEnd);
    log.close({ clean: true });
  });

  it('a sync asked for right after a roll waits for the seal instead of answering at once', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const clock = new FakeClock();
    const log = PartitionLog.open({ dir: tempDir(), config: { ...CONFIG, segmentMs: 1000 }, fs, clock });
    for (let i = 0; i < 3; i++) appendBatch(log); // written, not synced
    expect(log.maybeRoll(clock.now() + 1000)).toBe(true);
    // Nothing was written to the new segment: only the seal holds durableOffset back.
    let answer: unknown = 'not yet';
    const target = log.syncAsync((err) => (answer = err));
    expect(target).toBe(log.logEndOffset);
    expect(fs.heldAsyncSyncs).toHaveLength(3); // the seal's, no fdatasync of its own
    await turns();
    expect(answer).toBe('not yet');
    expect(log.durableOffset).toBe(0);
    fs.releaseAsyncSyncs();
    await sealed(log);
    expect(answer).toBe(null);
    expect(log.durableOffset).toBe(target);
    expect(log.syncAsync(() => {})).toBe(-1);
    log.close({ clean: true });
  });

  it('sync() makes a segment whose seal runs durable itself, and the seal still closes its files when it calls back', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const rolling = fillSegment(log);
    log.append(rolling.bytes, rolling.first, rolling.next);
    log.sync();
    expect(log.durableOffset).toBe(log.logEndOffset);
    expect(log.syncAsync(() => {})).toBe(-1);
    expect(storedRecoveryPoint(dir)).toBe(0); // only a completed seal moves it
    fs.releaseAsyncSyncs();
    await sealed(log);
    expect(storedRecoveryPoint(dir)).toBe(rolling.first);
    // Its index files are closed now (its .log stays open for reads).
    const open = fs.openFiles.map((p) => basename(p));
    expect(open).toContain(segmentLogName(0));
    expect(open.filter((n) => n.startsWith(segmentLogName(0).replace('.log', '')))).toEqual([segmentLogName(0)]);
    log.close({ clean: true });
  });

  it('a failed seal fdatasync makes the log refuse writes (STORAGE_ERROR) and fails the syncs waiting for it', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    const acked: { first: number; next: number; bytes: Uint8Array }[] = [];
    const rolling = fillSegment(log, acked);
    log.append(rolling.bytes, rolling.first, rolling.next); // the roll itself succeeds
    acked.push(rolling);
    acked.push(appendBatch(log));
    const waiting = new Promise<any>((resolve) => log.syncAsync(resolve));
    fs.inject({ op: 'fdatasync', pathEndsWith: segmentLogName(0), code: 'EIO' });
    fs.releaseAsyncSyncs();
    const err = await waiting;
    expect(err.code).toBe('STORAGE_ERROR');
    expect(log.failed).toBe(true);
    expect(log.durableOffset).toBe(0);
    expect(caught(() => appendBatch(log)).code).toBe('STORAGE_ERROR');
    expect(caught(() => log.sync()).code).toBe('STORAGE_ERROR');
    expect(caught(() => log.syncAsync(() => {})).code).toBe('STORAGE_ERROR');
    expect(storedRecoveryPoint(dir)).toBe(0);
    // Reads still work; close leaves no marker, so the reopen scans (every segment from the recovery point).
    expect(log.read(rolling.first, 1)).toEqual(rolling.bytes);
    log.close({ clean: true });
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(false);
    const again = expectExactly(dir, acked);
    expect(again.recoveryReport.segmentsScanned).toEqual([segmentLogName(0), segmentLogName(rolling.first)]);
    again.close({ clean: true });
  });

  it('retention and close leave a segment\'s files open while its seal runs; close syncs it itself before the clean-shutdown marker', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const dir = tempDir();
    const log = PartitionLog.open({ dir, config: { ...CONFIG, retentionBytes: 0 }, fs });
    const rolling = fillSegment(log);
    log.append(rolling.bytes, rolling.first, rolling.next);
    const old = join(dir, segmentLogName(0));
    expect(log.applyRetention(0).segmentsDeleted).toBe(0); // its seal runs: it stays, files and all
    expect(fs.openFiles).toContain(old);
    const syncsBefore = fs.calls.fdatasync;
    log.close({ clean: true });
    // Segment 0's .log and both indexes, the active .log and both indexes, the recovery point, the marker.
    expect(fs.calls.fdatasync - syncsBefore).toBe(8);
    expect(existsSync(join(dir, '.clean-shutdown'))).toBe(true);
    expect(storedRecoveryPoint(dir)).toBe(rolling.first);
    // The held fdatasyncs still hold segment 0's descriptors; they are closed when those call back.
    expect(fs.openFiles.map((p) => basename(p)).sort()).toEqual([segmentLogName(0), segmentLogName(0).replace('.log', '.index'), segmentLogName(0).replace('.log', '.timeindex')].sort());
    fs.releaseAsyncSyncs();
    await sealed(log);
    expect(fs.openFiles).toEqual([]);
    const again = PartitionLog.open({ dir, config: CONFIG });
    expect(again.recoveryReport.scanned).toBe(false);
    expect(again.read(rolling.first, 1)).toEqual(rolling.bytes);
    again.close({ clean: true });
  });

  it('retention deletes a rolled segment once its seal is done', async () => {
    const fs = new FaultyFileSystem().holdAsyncSyncs();
    const log = PartitionLog.open({ dir: tempDir(), config: { ...CONFIG, retentionBytes: 0 }, fs });
    for (let i = 0; i < 2; i++) {
      const rolling = fillSegment(log);
      log.append(rolling.bytes, rolling.first, rolling.next);
    }
    expect(log.segmentCount).toBe(3);
    expect(log.applyRetention(0).segmentsDeleted).toBe(0);
    fs.releaseAsyncSyncs();
    await sealed(log);
    expect(log.applyRetention(0).segmentsDeleted).toBe(2);
    expect(log.durableOffset).toBe(log.logStartOffset);
    log.close({ clean: true });
  });
});
