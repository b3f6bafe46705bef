import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FaultyFileSystem, nodeFileSystem } from '../../src/persist/fs.js';
import { PartitionLog, segmentLogName } from '../../src/persist/partition-log.js';
import { encodeBatch } from '../../src/persist/record-batch.js';
import { appendBatch, SMALL_CONFIG, seededRandom, tempDir, testSeed, valueOf, type Appended } from './persist-helpers.js';

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
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
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

  it('a failing fdatasync while rolling is STORAGE_ERROR and fences the log', () => {
    const dir = tempDir();
    const fs = new FaultyFileSystem();
    const log = PartitionLog.open({ dir, config: CONFIG, fs });
    let b = nextBatch(log, 2, 300);
    while (log.sizeBytes + b.bytes.length <= CONFIG.segmentBytes) {
      log.append(b.bytes, b.first, b.next);
      b = nextBatch(log, 2, 300);
    }
    fs.failNextFdatasync('.log');
    expect(caught(() => log.append(b.bytes, b.first, b.next)).code).toBe('STORAGE_ERROR');
    expect(log.failed).toBe(true);
    expect(log.segmentCount).toBe(1);
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
