/**
 * One segment of a partition's log: `<20-digit baseOffset>.log` (whole RecordBatch v2
 * batches, byte for byte as the producers sent them, baseOffset stamped by the owner) and
 * its two sparse indexes `.index` (offset-index.ts) and `.timeindex` (time-index.ts), in the
 * partition folder. Owner: the owner thread of the partition. Synchronous I/O.
 *
 * .log layout: batches back to back, nothing else (no file header, no padding), so a
 * segment is exactly what a fetch returns. Each batch is laid out as record-batch.ts says
 * (BIG-ENDIAN; CRC-32C over [21, end) written by the producer; baseOffset at [0, 8) written
 * by the owner, outside the CRC):
 *
 * | offset | size               | field   | written by       | in CRC          |
 * |-------:|--------------------|---------|------------------|-----------------|
 * |      0 | 12 + batchLength   | batch 0 | producer + owner | its own [21, .) |
 * |    ... | ...                | batch i |                  |                 |
 *
 * Invariants: batch i+1 starts where batch i ends; baseOffset(0) = the base offset in the
 * file name and baseOffset(i+1) = baseOffset(i) + lastOffsetDelta(i) + 1, except in a
 * closed segment that compaction rewrote (compaction.ts), where baseOffset(0) >= the name's
 * offset and baseOffset(i+1) >= baseOffset(i) + lastOffsetDelta(i) + 1 (the gaps are
 * offsets whose records were dropped; a rewritten segment may even be empty); `sizeBytes` (in
 * memory) never exceeds the bytes on disk that were written completely; the in-memory
 * indexes always describe exactly the batches below `sizeBytes`, and the index files hold
 * their first `entriesWritten` entries. A failed append leaves all three as they were;
 * `syncedOffset` never exceeds `nextOffset`, and every offset of the segment below it is
 * on stable storage (an fdatasync of the .log that covered it returned).
 *
 * The active segment's .log may be longer than its batches: zeros preallocated ahead of
 * them (`preallocate`, PREALLOCATE_BYTES_DEFAULT in limits.ts), never read (reads stop at
 * `sizeBytes`), cut off by a roll (finishIndexes) and a close (`trimPreallocated`),
 * and cut by recovery after a crash (a zero-filled tail, recovery.ts rows 2 and 4).
 *
 * A roll closes a segment in two steps: finishIndexes() (synchronous, small writes), then
 * sealAsync(): from then on the segment takes no appends, and its .log and indexes are
 * fdatasynced on libuv's thread pool while the owner goes on; the caller (partition-log.ts)
 * keeps the segment open until the callback.
 */
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';
import type { FileSystem } from './fs.js';
import { dirName, joinPath, writeFileDurable } from './fs.js';
import {
  BATCH_LENGTH_MAX,
  BATCH_LENGTH_MIN,
  PREALLOCATE_BYTES_MAX,
  PREALLOCATE_WRITE_BYTES,
  SCAN_CHUNK_BYTES,
  SEGMENT_NAME_DIGITS,
} from './limits.js';
import { decodeOffsetIndex, OFFSET_ENTRY_BYTES, OffsetIndex } from './offset-index.js';
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAGIC_V2,
  MAX_TIMESTAMP_OFFSET,
} from './record-batch.js';
import { ChunkReader, decisionFor, scanSegment, type ScanRow, type TruncationReport } from './recovery.js';
import { SegmentIndexes } from './segment-indexes.js';
import { decodeTimeIndex, NO_TIMESTAMP, TIME_ENTRY_BYTES, TimeIndex } from './time-index.js';

export const LOG_SUFFIX = '.log';
export const INDEX_SUFFIX = '.index';
export const TIME_INDEX_SUFFIX = '.timeindex';
/** Suffix of files on their way out (retention): renamed first, unlinked after; open() removes leftovers. */
export const DELETED_SUFFIX = '.deleted';

/** The name of a file named by an offset: its 20 digits, then `suffix` (segments, producer snapshots). */
export function segmentFileName(baseOffset: number, suffix: string): string {
  assert(Number.isSafeInteger(baseOffset) && baseOffset >= 0, () => `base offset ${baseOffset}`);
  return String(baseOffset).padStart(SEGMENT_NAME_DIGITS, '0') + suffix;
}

/** The offset of a `<20 digits><suffix>` name, or null for any other name. */
export function parseOffsetFileName(name: string, suffix: string): number | null {
  if (name.length !== SEGMENT_NAME_DIGITS + suffix.length || !name.endsWith(suffix)) return null;
  const digits = name.slice(0, SEGMENT_NAME_DIGITS);
  if (!/^\d+$/.test(digits)) return null;
  const offset = Number(digits);
  return Number.isSafeInteger(offset) ? offset : null;
}

/** Base offset of a `<20 digits>.log` name, or null for any other name. */
export function parseSegmentLogName(name: string): number | null {
  return parseOffsetFileName(name, LOG_SUFFIX);
}

/** Big-endian int64 without a BigInt (no allocation per batch); exact for safe integers. */
export function readInt64(view: DataView, pos: number): number {
  return view.getInt32(pos, false) * 4294967296 + view.getUint32(pos + 4, false);
}

export interface SegmentContext {
  fs: FileSystem;
  dir: string;
  indexIntervalBytes: number;
}

/** How to open an existing segment. */
export type SegmentLoadMode =
  /** A closed segment below the recovery point: trust the log (its roll's fsync completed), check the indexes cheaply, never cut it. */
  | 'closed'
  /**
   * A closed segment at or after the recovery point after a crash (its roll's fsync may not
   * have completed): scan it fully (offset gaps allowed, as compaction leaves them); a bad
   * tail is reported in `tornTail`, not cut (the caller decides: partition-log.ts drops every
   * later segment, then loads this one again as 'active-scan'); a good one is fdatasynced
   * with its index files before this returns, so it is durable from then on.
   */
  | 'closed-scan'
  /** The active segment after a clean shutdown: check the indexes cheaply, fall back to a scan. */
  | 'active-trusted'
  /** The active segment after a crash: scan it fully with the decision table, cut a bad tail. */
  | 'active-scan';

export interface SegmentLoadResult {
  segment: Segment;
  scanned: boolean;
  truncation: TruncationReport | null;
  /** 'closed-scan' only: where the scan found a torn or corrupt tail (nothing was cut, nothing synced). */
  tornTail: TruncationReport | null;
  indexesRebuilt: string[];
  /** Why a cheap check failed, or corruption found in a closed segment (kept, not cut). */
  problems: string[];
}

/** Position and size of the batch a lookup found. */
export interface BatchLocation {
  position: number;
  sizeBytes: number;
  baseOffset: number;
}

export class Segment {
  readonly baseOffset: number;
  /** File name of the .log, used in reports and errors. */
  readonly name: string;
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  /** When this segment was created or, for a reopened one, opened (for the segmentMs roll, as Kafka's `created`). */
  readonly createdMs: number;
  readonly #fs: FileSystem;
  #fd: number;
  #indexFd: number;
  #timeIndexFd: number;
  #sizeBytes: number;
  /** Bytes the .log file holds: sizeBytes plus any zeros preallocated after them. */
  #fileBytes: number;
  #nextOffset: number;
  readonly #indexes: SegmentIndexes;
  #offsetEntriesWritten: number;
  #timeEntriesWritten: number;
  /** Reused to encode new index entries; grows when an append adds many. */
  #encodeBuffer = new Uint8Array(64 * TIME_ENTRY_BYTES);
  /**
   * Appends so far, and the count an fdatasync has covered: bytes are unsynced while they
   * differ. Counts rather than a flag, because an asynchronous fdatasync may finish after
   * more appends, which it does not cover.
   */
  #writes = 0;
  #syncedWrites = 0;
  /** Offsets below this are on stable storage (the nextOffset an fdatasync that returned covered). */
  #syncedOffset: number;
  /** A rollback could not cut the files back: cut them before the next write. */
  #tailDirty = false;
  /** Sealed: rolled, indexes final, no more appends (its seal fdatasync may still run). */
  #sealed = false;
  #closed = false;

  private constructor(opts: {
    fs: FileSystem;
    dir: string;
    baseOffset: number;
    createdMs: number;
    fd: number;
    indexFd: number;
    timeIndexFd: number;
    sizeBytes: number;
    nextOffset: number;
    indexes: SegmentIndexes;
    sealed: boolean;
  }) {
    this.#fs = opts.fs;
    this.baseOffset = opts.baseOffset;
    this.name = segmentFileName(opts.baseOffset, LOG_SUFFIX);
    this.logPath = joinPath(opts.dir, this.name);
    this.indexPath = joinPath(opts.dir, segmentFileName(opts.baseOffset, INDEX_SUFFIX));
    this.timeIndexPath = joinPath(opts.dir, segmentFileName(opts.baseOffset, TIME_INDEX_SUFFIX));
    this.createdMs = opts.createdMs;
    this.#fd = opts.fd;
    this.#indexFd = opts.indexFd;
    this.#timeIndexFd = opts.timeIndexFd;
    this.#sizeBytes = opts.sizeBytes;
    this.#fileBytes = opts.sizeBytes;
    this.#nextOffset = opts.nextOffset;
    // A new segment is empty; a loaded one is trusted, scanned and synced, or synced by the
    // caller before any append (PartitionLog.open); a compacted one was fsynced by the pass.
    this.#syncedOffset = opts.nextOffset;
    this.#indexes = opts.indexes;
    this.#offsetEntriesWritten = opts.indexes.offsetIndex.count;
    this.#timeEntriesWritten = opts.indexes.timeIndex.count;
    this.#sealed = opts.sealed;
  }

  // -------------------------------------------------------------- create and load

  /** Creates the three empty files of a new active segment. The caller fsyncs the folder. */
  static create(ctx: SegmentContext, baseOffset: number, nowMs: number): Segment {
    const paths = segmentPaths(ctx.dir, baseOffset);
    const fd = ctx.fs.open(paths.log, 'create');
    let indexFd = -1;
    try {
      indexFd = ctx.fs.open(paths.index, 'create');
      const timeIndexFd = ctx.fs.open(paths.timeIndex, 'create');
      return new Segment({
        fs: ctx.fs, dir: ctx.dir, baseOffset, createdMs: nowMs, fd, indexFd, timeIndexFd, sizeBytes: 0,
        nextOffset: baseOffset, indexes: new SegmentIndexes({ baseOffset, indexIntervalBytes: ctx.indexIntervalBytes }), sealed: false,
      });
    } catch (err) {
      closeQuietly(ctx.fs, fd);
      closeQuietly(ctx.fs, indexFd);
      throw err;
    }
  }

  /**
   * Opens an existing segment. 'closed' and 'active-trusted' validate the index files
   * against the log cheaply (see `#loadTrusted`) and rebuild them by a scan when anything
   * does not match; 'active-scan' and 'closed-scan' always scan. Only an active segment is
   * ever cut; 'closed-scan' reports a bad tail in `tornTail` and leaves the files alone.
   */
  static load(ctx: SegmentContext, baseOffset: number, mode: SegmentLoadMode, nowMs: number): SegmentLoadResult {
    const fs = ctx.fs;
    const paths = segmentPaths(ctx.dir, baseOffset);
    const name = segmentFileName(baseOffset, LOG_SUFFIX);
    const active = mode === 'active-trusted' || mode === 'active-scan';
    const fd = fs.open(paths.log, active ? 'write' : 'read');
    const opened: number[] = [fd];
    try {
      let size = fs.size(fd);
      const problems: string[] = [];
      let trusted: TrustedState | string = mode === 'closed-scan' ? 'it is not known to be synced' : 'the log was not shut down cleanly';
      if (mode === 'closed' || mode === 'active-trusted') {
        trusted = loadTrusted(fs, fd, paths, baseOffset, size, ctx.indexIntervalBytes, !active);
        if (typeof trusted === 'string') problems.push(`${name}: ${trusted}`);
      }
      let indexes: SegmentIndexes;
      let nextOffset: number;
      let truncation: TruncationReport | null = null;
      let tornTail: TruncationReport | null = null;
      const indexesRebuilt: string[] = [];
      let scanned = false;
      if (typeof trusted !== 'string') {
        indexes = trusted.indexes;
        nextOffset = trusted.nextOffset;
      } else {
        scanned = true;
        const scan = scanSegment({ fs, fd, segment: name, baseOffset, sizeBytes: size, indexIntervalBytes: ctx.indexIntervalBytes, gaps: !active });
        indexes = scan.indexes;
        nextOffset = scan.nextOffset;
        if (scan.report !== null) {
          // Zeros preallocated after the batches (a crash before the roll's or the close's
          // trim was durable) are not data: nothing is lost, so they are cut, durably, in any
          // mode, and not reported.
          const preallocated = isPreallocatedTail(fs, fd, scan.report.reason, scan.validBytes, size);
          if (active) {
            // Cut the bad tail and make the cut durable before anything is appended after it.
            fs.ftruncate(fd, scan.validBytes);
            fs.fdatasync(fd);
            size = scan.validBytes;
            if (!preallocated) truncation = scan.report;
          } else if (preallocated) {
            cutFile(fs, paths.log, scan.validBytes);
            size = scan.validBytes;
          } else if (mode === 'closed-scan') {
            tornTail = scan.report;
          } else {
            // A closed segment below the recovery point was fsynced when it rolled, and later
            // segments continue its offsets: cutting it would lose good data after it. Keep
            // it; reads of the bad part fail with CORRUPT_MESSAGE and verify reports it.
            problems.push(`${name}: corrupt at position ${scan.report.position}, kept: ${scan.report.detail}`);
          }
        }
        if (!active) indexes.onClose();
        if (tornTail === null) rewriteIndexFilesIfDifferent(fs, paths, indexes, indexesRebuilt);
      }
      if (mode === 'closed-scan' && tornTail === null) {
        // Its bytes may be in the page cache only (the process died before the roll's fsync
        // returned): make them durable now, so that the recovery point can move past it.
        fs.fdatasync(fd);
        if (!indexesRebuilt.includes(segmentFileName(baseOffset, INDEX_SUFFIX))) syncFile(fs, paths.index);
        if (!indexesRebuilt.includes(segmentFileName(baseOffset, TIME_INDEX_SUFFIX))) syncFile(fs, paths.timeIndex);
      }
      let indexFd = -1;
      let timeIndexFd = -1;
      if (active) {
        indexFd = fs.open(paths.index, 'write');
        opened.push(indexFd);
        timeIndexFd = fs.open(paths.timeIndex, 'write');
        opened.push(timeIndexFd);
      }
      const segment = new Segment({
        fs, dir: ctx.dir, baseOffset, createdMs: nowMs, fd, indexFd, timeIndexFd, sizeBytes: size, nextOffset, indexes, sealed: !active,
      });
      return { segment, scanned, truncation, tornTail, indexesRebuilt, problems };
    } catch (err) {
      for (const f of opened) closeQuietly(fs, f);
      throw err;
    }
  }

  /**
   * Opens a closed segment whose files compaction has just put in place (compaction.ts),
   * with the state the rewrite computed: no index check and no scan, because this process
   * wrote and fdatasynced every byte of the three files. Throws when the .log's size is not
   * the one expected.
   */
  static openCompacted(
    ctx: SegmentContext,
    baseOffset: number,
    state: { sizeBytes: number; nextOffset: number; indexes: SegmentIndexes },
    createdMs: number,
  ): Segment {
    const paths = segmentPaths(ctx.dir, baseOffset);
    const fd = ctx.fs.open(paths.log, 'read');
    try {
      const size = ctx.fs.size(fd);
      if (size !== state.sizeBytes) {
        throw new SluiceError('STORAGE_ERROR', `${segmentFileName(baseOffset, LOG_SUFFIX)} is ${size} bytes after compaction, expected ${state.sizeBytes}`);
      }
      return new Segment({
        fs: ctx.fs, dir: ctx.dir, baseOffset, createdMs, fd, indexFd: -1, timeIndexFd: -1, sizeBytes: size,
        nextOffset: state.nextOffset, indexes: state.indexes, sealed: true,
      });
    } catch (err) {
      closeQuietly(ctx.fs, fd);
      throw err;
    }
  }

  // -------------------------------------------------------------- state

  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get nextOffset(): number {
    return this.#nextOffset;
  }

  get isEmpty(): boolean {
    return this.#sizeBytes === 0;
  }

  get isSealed(): boolean {
    return this.#sealed;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Largest batch maxTimestamp in the segment, -1 when none. */
  get largestTimestamp(): number {
    return this.#indexes.largestTimestamp;
  }

  get offsetIndex(): OffsetIndex {
    return this.#indexes.offsetIndex;
  }

  get timeIndex(): TimeIndex {
    return this.#indexes.timeIndex;
  }

  get hasUnsyncedBytes(): boolean {
    return this.#writes !== this.#syncedWrites;
  }

  /** Offsets of this segment below this are on stable storage; nextOffset when all are. */
  get syncedOffset(): number {
    return this.#syncedOffset;
  }

  // -------------------------------------------------------------- append

  /**
   * Appends whole, contiguous batches that start at this segment's next offset: one write
   * for the bytes, and at most one write per index file when the batches earned entries.
   * Walks only the batch headers (offsets, lengths, timestamps), no CRC: the caller
   * validated the batches. On failure everything is as before the call (files cut back),
   * and the error is rethrown as it came (the caller wraps it).
   */
  append(bytes: Uint8Array, firstOffset: number, nextOffset: number): void {
    assert(!this.#sealed && !this.#closed, () => `append to sealed or closed segment ${this.name}`);
    assert(firstOffset === this.#nextOffset, () => `append at ${firstOffset}, segment ${this.name} continues at ${this.#nextOffset}`);
    assert(bytes.length > 0 && nextOffset > firstOffset, 'an append holds at least one batch');
    this.repairTail();
    const position = this.#sizeBytes;
    this.#indexes.mark();
    this.#indexBatches(bytes, position, firstOffset, nextOffset);
    try {
      this.#fs.write(this.#fd, bytes, position);
      this.#writeIndexEntries();
    } catch (err) {
      this.#indexes.rollback();
      this.#cutFilesBack(position);
      throw err;
    }
    this.#sizeBytes = position + bytes.length;
    if (this.#sizeBytes > this.#fileBytes) this.#fileBytes = this.#sizeBytes;
    this.#nextOffset = nextOffset;
    this.#writes++;
  }

  /** Zeros after the batches, preallocated and not yet written over. */
  get preallocatedBytes(): number {
    return this.#fileBytes - this.#sizeBytes;
  }

  /**
   * Writes zeros from the end of the file up to `endBytes` (nothing when the file is that
   * long already), PREALLOCATE_WRITE_BYTES a write (a buffer made per call: refills are at
   * least PREALLOCATE_INTERVAL_MS_MIN apart). Only bytes past the batches are touched.
   * Counts as a write, so the next fdatasync covers them: that is what allocates their
   * blocks. On failure the file may hold any part of them: it is taken to reach `endBytes`
   * (a hole reads as zeros too), so that a trim cuts whatever was written. Throws the fs
   * error.
   */
  preallocate(endBytes: number): void {
    assert(!this.#sealed && !this.#closed, () => `preallocate in sealed or closed segment ${this.name}`);
    let at = this.#fileBytes;
    if (at >= endBytes || this.#tailDirty) return;
    const zeros = new Uint8Array(Math.min(endBytes - at, PREALLOCATE_WRITE_BYTES));
    this.#writes++;
    try {
      while (at < endBytes) {
        const n = Math.min(endBytes - at, zeros.length);
        this.#fs.write(this.#fd, n === zeros.length ? zeros : zeros.subarray(0, n), at);
        at += n;
      }
    } finally {
      this.#fileBytes = endBytes;
    }
  }

  /**
   * Cuts preallocated zeros off the file (a roll, a close). Counts as a write, so the next
   * fdatasync makes the new size durable. Throws the fs error.
   */
  trimPreallocated(): void {
    if (this.#fileBytes === this.#sizeBytes) return;
    this.#fs.ftruncate(this.#fd, this.#sizeBytes);
    this.#fileBytes = this.#sizeBytes;
    this.#writes++;
  }

  /** The header walk of an append: index entries per the policy, and the caller's contract asserted. */
  #indexBatches(bytes: Uint8Array, position: number, firstOffset: number, nextOffset: number): void {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let p = 0;
    let expected = firstOffset;
    while (p < bytes.length) {
      assert(p + BATCH_HEADER_BYTES <= bytes.length, () => `append holds whole batches (header at ${p} of ${bytes.length})`);
      const batchLength = view.getInt32(p + BATCH_LENGTH_OFFSET, false);
      assert(batchLength >= BATCH_LENGTH_MIN && batchLength <= BATCH_LENGTH_MAX, () => `batchLength ${batchLength} at ${p}`);
      const baseOffset = readInt64(view, p + BASE_OFFSET_OFFSET);
      assert(baseOffset === expected, () => `batch at ${p} has baseOffset ${baseOffset}, expected ${expected}`);
      const lastOffsetDelta = view.getInt32(p + LAST_OFFSET_DELTA_OFFSET, false);
      assert(lastOffsetDelta >= 0, () => `lastOffsetDelta ${lastOffsetDelta} at ${p}`);
      this.#indexes.onBatch(position + p, baseOffset, readInt64(view, p + MAX_TIMESTAMP_OFFSET));
      expected = baseOffset + lastOffsetDelta + 1;
      p += LOG_OVERHEAD_BYTES + batchLength;
    }
    assert(p === bytes.length, () => `append ends inside a batch (${p} of ${bytes.length})`);
    assert(expected === nextOffset, () => `append ends at offset ${expected}, caller said ${nextOffset}`);
  }

  /** Appends the index entries not yet in the files: one write per file, only when there are new ones. */
  #writeIndexEntries(): void {
    const offsetIndex = this.#indexes.offsetIndex;
    const timeIndex = this.#indexes.timeIndex;
    if (offsetIndex.count > this.#offsetEntriesWritten) {
      const buf = this.#encodeScratch((offsetIndex.count - this.#offsetEntriesWritten) * OFFSET_ENTRY_BYTES);
      const n = offsetIndex.encodeRange(this.#offsetEntriesWritten, offsetIndex.count, buf);
      this.#fs.write(this.#indexFd, buf.subarray(0, n), this.#offsetEntriesWritten * OFFSET_ENTRY_BYTES);
      this.#offsetEntriesWritten = offsetIndex.count;
    }
    if (timeIndex.count > this.#timeEntriesWritten) {
      const buf = this.#encodeScratch((timeIndex.count - this.#timeEntriesWritten) * TIME_ENTRY_BYTES);
      const n = timeIndex.encodeRange(this.#timeEntriesWritten, timeIndex.count, buf);
      this.#fs.write(this.#timeIndexFd, buf.subarray(0, n), this.#timeEntriesWritten * TIME_ENTRY_BYTES);
      this.#timeEntriesWritten = timeIndex.count;
    }
  }

  #encodeScratch(bytes: number): Uint8Array {
    if (this.#encodeBuffer.length < bytes) {
      let size = this.#encodeBuffer.length;
      while (size < bytes) size *= 2;
      this.#encodeBuffer = new Uint8Array(size);
    }
    return this.#encodeBuffer;
  }

  /**
   * After a failed append: cut the .log back to `position` and the index files back to the
   * entries that are still in memory. If a cut fails too, remember it and cut before the
   * next write (repairTail), so bytes of a failed append are never followed by good ones.
   */
  #cutFilesBack(position: number): void {
    const fs = this.#fs;
    this.#offsetEntriesWritten = Math.min(this.#offsetEntriesWritten, this.#indexes.offsetIndex.count);
    this.#timeEntriesWritten = Math.min(this.#timeEntriesWritten, this.#indexes.timeIndex.count);
    try {
      fs.ftruncate(this.#fd, position);
      this.#fileBytes = position;
      fs.ftruncate(this.#indexFd, this.#offsetEntriesWritten * OFFSET_ENTRY_BYTES);
      fs.ftruncate(this.#timeIndexFd, this.#timeEntriesWritten * TIME_ENTRY_BYTES);
    } catch {
      this.#tailDirty = true;
    }
  }

  /** Cuts the files to what memory says they hold, if a previous rollback could not. Throws the fs error. */
  repairTail(): void {
    if (!this.#tailDirty) return;
    this.#fs.ftruncate(this.#fd, this.#sizeBytes);
    this.#fileBytes = this.#sizeBytes;
    this.#fs.ftruncate(this.#indexFd, this.#offsetEntriesWritten * OFFSET_ENTRY_BYTES);
    this.#fs.ftruncate(this.#timeIndexFd, this.#timeEntriesWritten * TIME_ENTRY_BYTES);
    this.#tailDirty = false;
  }

  // -------------------------------------------------------------- read

  /** Reads up to target.length bytes at `position` (never past sizeBytes); returns the count. */
  read(target: Uint8Array, position: number): number {
    assert(!this.#closed, () => `read from closed segment ${this.name}`);
    const n = Math.min(target.length, this.#sizeBytes - position);
    if (n <= 0) return 0;
    return this.#fs.read(this.#fd, n === target.length ? target : target.subarray(0, n), position);
  }

  /**
   * Finds the batch that contains `offset`, or the first batch after it when a gap skips it
   * (as Kafka returns the next batch). Starts at the offset index entry and walks batch
   * headers (one pread of the 61-byte header each). Returns null when the segment has no
   * batch at or after `offset`. `scratch` is a caller-owned 61-byte buffer with its view.
   * Throws CORRUPT_MESSAGE when a header on the way is not a batch.
   */
  findBatch(offset: number, scratch: Uint8Array, view: DataView): BatchLocation | null {
    let position = this.#indexes.offsetIndex.positionFor(offset - this.baseOffset);
    while (position < this.#sizeBytes) {
      const header = this.#readHeaderAt(position, scratch, view);
      if (header.lastOffset >= offset) return { position, sizeBytes: header.sizeBytes, baseOffset: header.baseOffset };
      position += header.sizeBytes;
    }
    return null;
  }

  /** Walks headers from `position` and returns the first batch whose maxTimestamp >= ts, or null. */
  findBatchByTimestamp(position: number, timestamp: number, scratch: Uint8Array, view: DataView): (BatchLocation & { attributes: number }) | null {
    while (position < this.#sizeBytes) {
      const header = this.#readHeaderAt(position, scratch, view);
      if (header.maxTimestamp >= timestamp) {
        return { position, sizeBytes: header.sizeBytes, baseOffset: header.baseOffset, attributes: view.getInt16(ATTRIBUTES_OFFSET, false) };
      }
      position += header.sizeBytes;
    }
    return null;
  }

  /** Reads and frames the header at `position` into `scratch`. Per batch: one small object. */
  #readHeaderAt(position: number, scratch: Uint8Array, view: DataView): { baseOffset: number; lastOffset: number; sizeBytes: number; maxTimestamp: number } {
    assert(scratch.length >= BATCH_HEADER_BYTES, 'header scratch holds a header');
    const n = this.read(scratch.subarray(0, BATCH_HEADER_BYTES), position);
    const batchLength = n === BATCH_HEADER_BYTES ? view.getInt32(BATCH_LENGTH_OFFSET, false) : -1;
    const sizeBytes = LOG_OVERHEAD_BYTES + batchLength;
    if (n !== BATCH_HEADER_BYTES || batchLength < BATCH_LENGTH_MIN || batchLength > BATCH_LENGTH_MAX ||
      view.getInt8(MAGIC_OFFSET) !== MAGIC_V2 || position + sizeBytes > this.#sizeBytes) {
      throw new SluiceError('CORRUPT_MESSAGE', `segment ${this.name}: no valid batch header at position ${position}`);
    }
    const baseOffset = readInt64(view, BASE_OFFSET_OFFSET);
    return {
      baseOffset,
      lastOffset: baseOffset + view.getInt32(LAST_OFFSET_DELTA_OFFSET, false),
      sizeBytes,
      maxTimestamp: readInt64(view, MAX_TIMESTAMP_OFFSET),
    };
  }

  // -------------------------------------------------------------- durability and lifecycle

  /**
   * fdatasync of the .log when bytes were written since the last one, or always with
   * `force` (at open: bytes a killed process left in the page cache are not yet durable).
   */
  sync(force = false): void {
    if (!this.hasUnsyncedBytes && !force) return;
    const covered = this.#writes;
    const coveredOffset = this.#nextOffset;
    this.#fs.fdatasync(this.#fd);
    this.#synced(covered, coveredOffset);
  }

  /** Records that an fdatasync covering the first `writes` appends (up to `offset`) returned. */
  #synced(writes: number, offset: number): void {
    if (writes > this.#syncedWrites) this.#syncedWrites = writes;
    if (offset > this.#syncedOffset) this.#syncedOffset = offset;
  }

  /**
   * fdatasync of the .log on libuv's thread pool; covers the appends made before the call.
   * Returns false (and never calls back) when nothing is unsynced. The caller keeps the
   * segment open until the callback.
   */
  syncAsync(callback: (err: Error | null) => void): boolean {
    if (!this.hasUnsyncedBytes) return false;
    const covered = this.#writes;
    const coveredOffset = this.#nextOffset;
    this.#fs.fdatasyncAsync(this.#fd, (err) => {
      if (err === null) this.#synced(covered, coveredOffset);
      callback(err);
    });
    return true;
  }

  /**
   * fdatasync of the index files. Not part of sync(): after a crash the active segment is
   * scanned and its indexes rebuilt anyway, so only a roll and a clean close need them.
   */
  syncIndexes(): void {
    if (this.#indexFd >= 0) this.#fs.fdatasync(this.#indexFd);
    if (this.#timeIndexFd >= 0) this.#fs.fdatasync(this.#timeIndexFd);
  }

  /**
   * First step of closing this segment when it rolls: cut a dirty tail, add the final time
   * index entry, write pending index entries. Retrying after a failure is safe.
   */
  finishIndexes(): void {
    assert(!this.#sealed && !this.#closed, () => `finish indexes of sealed or closed segment ${this.name}`);
    this.repairTail();
    this.trimPreallocated(); // the seal's fdatasync makes the size durable
    this.#indexes.onClose();
    this.#writeIndexEntries();
  }

  /**
   * Second step, asynchronous: the segment takes no more appends from now on, and the .log
   * and both index files are fdatasynced on libuv's thread pool (three syscalls in flight
   * at once); when all three are done the index files are closed (their entries stay in
   * memory) and `callback` runs on this thread with the first error, or null. The caller
   * keeps the segment open until then and treats an error as a failed fdatasync.
   */
  sealAsync(callback: (err: Error | null) => void): void {
    assert(!this.#sealed && !this.#closed, () => `seal of sealed or closed segment ${this.name}`);
    this.#sealed = true;
    const covered = this.#writes;
    const coveredOffset = this.#nextOffset;
    const fds = [this.#fd, this.#indexFd, this.#timeIndexFd].filter((fd) => fd >= 0);
    let left = fds.length;
    let failure: Error | null = null;
    const done = (err: Error | null): void => {
      failure ??= err;
      if (--left > 0) return;
      if (failure === null) this.#synced(covered, coveredOffset);
      this.#closeIndexFiles();
      callback(failure);
    };
    for (const fd of fds) this.#fs.fdatasyncAsync(fd, done);
  }

  /** Closes the index files of a sealed segment (no more entries come). */
  #closeIndexFiles(): void {
    closeQuietly(this.#fs, this.#indexFd);
    closeQuietly(this.#fs, this.#timeIndexFd);
    this.#indexFd = -1;
    this.#timeIndexFd = -1;
  }

  /** Closes the files (no sync: the caller syncs first when it must). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const fds = [this.#fd, this.#indexFd, this.#timeIndexFd];
    this.#fd = this.#indexFd = this.#timeIndexFd = -1;
    let failure: unknown = null;
    for (const fd of fds) {
      if (fd < 0) continue;
      try {
        this.#fs.close(fd);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== null) throw failure;
  }

  /**
   * Deletes the segment's files in a crash-safe order: close, rename each to `.deleted`
   * (the .log first: a segment exists while its .log does), then unlink. A crash between
   * the two steps leaves `.deleted` files that the next open removes; a crash in the middle
   * of the renames leaves index files without a .log, which open removes too.
   */
  deleteFiles(): void {
    this.close();
    deleteSegmentFiles(this.#fs, dirName(this.logPath), this.baseOffset);
  }
}

/**
 * Deletes the three files of the segment at `baseOffset` in `dir` in the crash-safe order of
 * Segment.deleteFiles (the .log renamed first). The caller fsyncs the folder.
 */
export function deleteSegmentFiles(fs: FileSystem, dir: string, baseOffset: number): void {
  const p = segmentPaths(dir, baseOffset);
  const paths = [p.log, p.index, p.timeIndex];
  for (const path of paths) if (fs.exists(path)) fs.rename(path, path + DELETED_SUFFIX);
  for (const path of paths) if (fs.exists(path + DELETED_SUFFIX)) fs.unlink(path + DELETED_SUFFIX);
}

// ---------------------------------------------------------------- helpers

interface SegmentPaths {
  log: string;
  index: string;
  timeIndex: string;
}

function segmentPaths(dir: string, baseOffset: number): SegmentPaths {
  return {
    log: joinPath(dir, segmentFileName(baseOffset, LOG_SUFFIX)),
    index: joinPath(dir, segmentFileName(baseOffset, INDEX_SUFFIX)),
    timeIndex: joinPath(dir, segmentFileName(baseOffset, TIME_INDEX_SUFFIX)),
  };
}

/** fdatasync of a file by path, when it exists (an index file of a closed segment). */
function syncFile(fs: FileSystem, path: string): void {
  if (!fs.exists(path)) return;
  const fd = fs.open(path, 'read');
  try {
    fs.fdatasync(fd);
  } finally {
    fs.close(fd);
  }
}

/** Cuts the file at `path` to `size` bytes, durably. */
function cutFile(fs: FileSystem, path: string, size: number): void {
  const fd = fs.open(path, 'write');
  try {
    fs.ftruncate(fd, size);
    fs.fdatasync(fd);
  } finally {
    fs.close(fd);
  }
}

/**
 * Whether a scan that stopped at `row` at position `from` met preallocated space: a
 * zero-filled tail (recovery.ts rows 2 and 4, decision truncate-zero-tail) that is zeros to
 * the end of the file and no longer than a log may preallocate (PREALLOCATE_BYTES_MAX; a
 * longer one is damage, reported as before preallocation). Recovery (Segment.load) and
 * verify both ask this.
 */
export function isPreallocatedTail(fs: FileSystem, fd: number, row: ScanRow, from: number, size: number): boolean {
  return decisionFor(row) === 'truncate-zero-tail' && isZeroTail(fs, fd, from, size);
}

/** Whether the file's bytes from `from` to `size` are all zero, and at most PREALLOCATE_BYTES_MAX of them. */
function isZeroTail(fs: FileSystem, fd: number, from: number, size: number): boolean {
  if (size - from > PREALLOCATE_BYTES_MAX) return false;
  const chunk = new Uint8Array(Math.min(SCAN_CHUNK_BYTES, size - from));
  for (let at = from; at < size; ) {
    const n = fs.read(fd, chunk.subarray(0, Math.min(chunk.length, size - at)), at);
    if (n <= 0) return false;
    for (let i = 0; i < n; i++) if (chunk[i] !== 0) return false;
    at += n;
  }
  return true;
}

function closeQuietly(fs: FileSystem, fd: number): void {
  if (fd < 0) return;
  try {
    fs.close(fd);
  } catch {
    // Closing after another failure: the first failure is the one to report.
  }
}

interface TrustedState {
  indexes: SegmentIndexes;
  nextOffset: number;
}

/**
 * The cheap check of a segment whose log is trusted: both index files decode and validate
 * (sizes, monotonic, inside the segment), the last entry of each points at a batch with that
 * offset, and the batch headers from the last offset index entry to the end of the file
 * frame correctly (which also gives the next offset and the largest timestamp without
 * reading the whole log). Returns the state, or why it cannot be trusted.
 */
function loadTrusted(
  fs: FileSystem,
  fd: number,
  paths: SegmentPaths,
  baseOffset: number,
  size: number,
  indexIntervalBytes: number,
  gaps: boolean,
): TrustedState | string {
  if (!fs.exists(paths.index)) return 'the offset index is missing';
  if (!fs.exists(paths.timeIndex)) return 'the time index is missing';
  const decodedOffsets = decodeOffsetIndex(fs.readFile(paths.index), size);
  if (!decodedOffsets.ok) return `offset index: ${decodedOffsets.reason}`;
  const offsetIndex = decodedOffsets.index;
  const reader = new ChunkReader(fs, fd, size, Math.max(4 * indexIntervalBytes, 64 * 1024));
  let position = 0;
  let expected = baseOffset;
  if (offsetIndex.count > 0) {
    position = offsetIndex.positionAt(offsetIndex.count - 1);
    expected = baseOffset + offsetIndex.relativeOffsetAt(offsetIndex.count - 1);
  }
  // Walk the tail: from the last indexed batch (which must carry the indexed offset) to the end.
  let tailLargestTimestamp = NO_TIMESTAMP;
  let tailOffsetOfLargest = baseOffset;
  const batchStarts: number[] = [];
  const batchMaxTimestamps: number[] = [];
  while (position < size) {
    const h = reader.window(position, BATCH_HEADER_BYTES);
    if (h < 0) return `torn batch header at position ${position}`;
    const v = reader.view;
    const batchLength = v.getInt32(h + BATCH_LENGTH_OFFSET, false);
    if (batchLength < BATCH_LENGTH_MIN || batchLength > BATCH_LENGTH_MAX) return `batchLength ${batchLength} at position ${position}`;
    if (v.getInt8(h + MAGIC_OFFSET) !== MAGIC_V2) return `bad magic at position ${position}`;
    const batchBase = readInt64(v, h + BASE_OFFSET_OFFSET);
    // A closed segment may have gaps that compaction left (see the invariants at the top).
    if (gaps ? batchBase < expected : batchBase !== expected) return `baseOffset ${batchBase} at position ${position}, expected ${expected}`;
    const sizeBytes = LOG_OVERHEAD_BYTES + batchLength;
    if (position + sizeBytes > size) return `torn batch at position ${position}`;
    const maxTimestamp = readInt64(v, h + MAX_TIMESTAMP_OFFSET);
    if (maxTimestamp > tailLargestTimestamp) {
      tailLargestTimestamp = maxTimestamp;
      tailOffsetOfLargest = batchBase;
    }
    batchStarts.push(batchBase);
    batchMaxTimestamps.push(maxTimestamp);
    expected = batchBase + v.getInt32(h + LAST_OFFSET_DELTA_OFFSET, false) + 1;
    position += sizeBytes;
  }
  const nextOffset = expected;
  const decodedTimes = decodeTimeIndex(fs.readFile(paths.timeIndex), nextOffset - baseOffset);
  if (!decodedTimes.ok) return `time index: ${decodedTimes.reason}`;
  const timeIndex = decodedTimes.index;
  let largestTimestamp = tailLargestTimestamp;
  let offsetOfLargest = tailOffsetOfLargest;
  if (timeIndex.count > 0) {
    const last = timeIndex.count - 1;
    const lastTimestamp = timeIndex.timestampAt(last);
    const lastOffset = baseOffset + timeIndex.relativeOffsetAt(last);
    const problem = checkTimeEntry(fs, fd, size, offsetIndex, baseOffset, lastOffset, lastTimestamp, batchStarts, batchMaxTimestamps);
    if (problem !== null) return `time index: ${problem}`;
    if (lastTimestamp >= tailLargestTimestamp) {
      largestTimestamp = lastTimestamp;
      offsetOfLargest = lastOffset;
    }
  }
  const indexes = new SegmentIndexes({
    baseOffset, indexIntervalBytes, offsetIndex, timeIndex, largestTimestamp, offsetOfLargestTimestamp: offsetOfLargest,
  });
  return { indexes, nextOffset };
}

/** Whether a batch starts at `offset` and has maxTimestamp `timestamp`; null when so, else why not. */
function checkTimeEntry(
  fs: FileSystem,
  fd: number,
  size: number,
  offsetIndex: OffsetIndex,
  baseOffset: number,
  offset: number,
  timestamp: number,
  tailStarts: number[],
  tailMaxTimestamps: number[],
): string | null {
  // Usually the entry points into the tail already walked.
  const i = tailStarts.indexOf(offset);
  if (i >= 0) return tailMaxTimestamps[i] === timestamp ? null : `last entry's timestamp ${timestamp} is not its batch's`;
  // Otherwise walk from the offset index entry at or before it.
  const reader = new ChunkReader(fs, fd, size, 64 * 1024);
  let position = offsetIndex.positionFor(offset - baseOffset);
  while (position < size) {
    const h = reader.window(position, BATCH_HEADER_BYTES);
    if (h < 0) break;
    const v = reader.view;
    const batchLength = v.getInt32(h + BATCH_LENGTH_OFFSET, false);
    if (batchLength < BATCH_LENGTH_MIN || batchLength > BATCH_LENGTH_MAX || v.getInt8(h + MAGIC_OFFSET) !== MAGIC_V2) break;
    const batchBase = readInt64(v, h + BASE_OFFSET_OFFSET);
    if (batchBase === offset) {
      return readInt64(v, h + MAX_TIMESTAMP_OFFSET) === timestamp ? null : `last entry's timestamp ${timestamp} is not its batch's`;
    }
    if (batchBase > offset) break;
    position += LOG_OVERHEAD_BYTES + batchLength;
  }
  return `last entry's offset ${offset} is not the start of a batch`;
}

/** Rewrites an index file whose content differs from the rebuilt index, fdatasynced; notes which. */
function rewriteIndexFilesIfDifferent(fs: FileSystem, paths: SegmentPaths, indexes: SegmentIndexes, rebuilt: string[]): void {
  const offsetImage = indexes.offsetIndex.encode();
  if (!sameFileContent(fs, paths.index, offsetImage)) {
    writeFileDurable(fs, paths.index, offsetImage);
    rebuilt.push(segmentFileName(indexes.baseOffset, INDEX_SUFFIX));
  }
  const timeImage = indexes.timeIndex.encode();
  if (!sameFileContent(fs, paths.timeIndex, timeImage)) {
    writeFileDurable(fs, paths.timeIndex, timeImage);
    rebuilt.push(segmentFileName(indexes.baseOffset, TIME_INDEX_SUFFIX));
  }
}

function sameFileContent(fs: FileSystem, path: string, image: Uint8Array): boolean {
  if (!fs.exists(path)) return false;
  const current = fs.readFile(path);
  if (current.length !== image.length) return false;
  for (let i = 0; i < image.length; i++) if (current[i] !== image[i]) return false;
  return true;
}

