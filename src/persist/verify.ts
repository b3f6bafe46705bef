/**
 * Whole-log verification: reads every segment of a partition folder fully and checks every
 * batch (framing, magic, CRC-32C, record count, offsets within and across segments) and
 * both index files against the batches. Offsets: contiguous in the last (active) segment;
 * strictly increasing, gaps allowed, in closed segments (compaction.ts leaves gaps there;
 * see recovery.ts, "gaps allowed"); between segments contiguous, unless the caller says
 * the log is compacted (a compacted segment may end below the next one's base, when
 * compaction dropped its last batches). So a lost segment of a 'delete' topic is still
 * reported. The last segment may end in zeros preallocated after its batches (segment.ts):
 * they end its data, they are not an error. Read-only: it opens nothing for
 * writing, so the verify pool can run it in piscina workers beside a live owner. The live
 * owner goes on writing the last segment and its indexes meanwhile, so one read of them may
 * catch a batch half written, or index entries for batches written after the log was read;
 * with `live`, the last segment is read again LIVE_RECHECKS times, LIVE_RECHECK_MS apart,
 * and only findings that every read shows are reported (a corrupt batch stays where it
 * is; a write in progress moves on or ends).
 * Owner: the calling thread; no state.
 */
import { asStorageError, SluiceError } from '../errors.js';
import { AssertionError } from '../assert.js';
import type { FileSystem } from './fs.js';
import { joinPath, nodeFileSystem } from './fs.js';
import { decodeOffsetIndex } from './offset-index.js';
import { ChunkReader, inspectBatchAt } from './recovery.js';
import { INDEX_SUFFIX, isPreallocatedTail, parseSegmentLogName, segmentFileName, TIME_INDEX_SUFFIX } from './segment.js';
import { decodeTimeIndex } from './time-index.js';

/** Reads of a live partition's last segment after the first, each after LIVE_RECHECK_MS. */
export const LIVE_RECHECKS = 2;
/** Pause before each re-read of a live last segment: far longer than one batch's write. */
export const LIVE_RECHECK_MS = 50;

export interface VerifyError {
  /** Byte position in the segment's .log. */
  position: number;
  /** The batch's baseOffset, or the offset expected there when the header is unreadable. */
  offset: number;
  code: 'CORRUPT_MESSAGE';
  message: string;
}

export interface SegmentVerifyReport {
  /** File name of the .log. */
  file: string;
  /** Batches whose framing could be read (including those with errors). */
  batches: number;
  bytes: number;
  errors: VerifyError[];
  /** Index files that do not match the log (rebuildable: the next open repairs them). */
  indexErrors: string[];
}

export interface VerifyReport {
  segments: SegmentVerifyReport[];
  /** No batch error and no index error anywhere. */
  ok: boolean;
}

/**
 * Verifies every segment of the partition folder `dir`. `compacted`: the partition's topic
 * has a compact cleanup policy (gaps between segments allowed). `live`: a broker may be
 * writing the partition now (see the top of the file). Throws STORAGE_ERROR when a file
 * cannot be read.
 */
export function verifyPartitionDir(dir: string, fs: FileSystem = nodeFileSystem, options: { compacted?: boolean; live?: boolean } = {}): VerifyReport {
  const compacted = options.compacted ?? false;
  const live = options.live ?? false;
  try {
    const bases = fs
      .readdir(dir)
      .map(parseSegmentLogName)
      .filter((b): b is number => b !== null)
      .sort((a, b) => a - b);
    const segments: SegmentVerifyReport[] = [];
    let previousNext = -1;
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i];
      const closed = i < bases.length - 1;
      let { report, nextOffset } = verifySegment(fs, dir, base, previousNext, closed, compacted);
      for (let k = 0; k < LIVE_RECHECKS && live && !closed && !isClean(report); k++) {
        sleepMs(LIVE_RECHECK_MS);
        const again = verifySegment(fs, dir, base, previousNext, closed, compacted);
        report = {
          ...again.report,
          // A batch error is the same finding at the same position and offset (its text counts the bytes after it, which grow).
          errors: again.report.errors.filter((e) => report.errors.some((seen) => seen.position === e.position && seen.offset === e.offset)),
          indexErrors: again.report.indexErrors.filter((m) => report.indexErrors.includes(m)),
        };
        nextOffset = again.nextOffset;
      }
      segments.push(report);
      previousNext = nextOffset;
    }
    const ok = segments.every(isClean);
    return { segments, ok };
  } catch (err) {
    if (err instanceof AssertionError || err instanceof SluiceError) throw err;
    throw asStorageError(err, `verify ${dir}`);
  }
}

function isClean(report: SegmentVerifyReport): boolean {
  return report.errors.length === 0 && report.indexErrors.length === 0;
}

/** Blocks this thread (a verify pool worker, or a tool's main thread) for `ms`. */
function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Per-batch facts kept for the index checks: positions, base offsets, max timestamps. */
interface BatchTable {
  positions: number[];
  baseOffsets: number[];
  maxTimestamps: number[];
}

function verifySegment(
  fs: FileSystem,
  dir: string,
  base: number,
  previousNext: number,
  closed: boolean,
  compacted: boolean,
): { report: SegmentVerifyReport; nextOffset: number } {
  const file = segmentFileName(base, '.log');
  const fd = fs.open(joinPath(dir, file), 'read');
  try {
    let size = fs.size(fd);
    const errors: VerifyError[] = [];
    // A compacted segment may end below the next one's base (its last batches dropped), never above.
    if (previousNext >= 0 && (compacted ? previousNext > base : previousNext !== base)) {
      errors.push({ position: 0, offset: base, code: 'CORRUPT_MESSAGE', message: `${file}: the previous segment ends at offset ${previousNext}, this one starts at ${base}` });
    }
    const reader = new ChunkReader(fs, fd, size);
    const table: BatchTable = { positions: [], baseOffsets: [], maxTimestamps: [] };
    let pos = 0;
    let expected = base;
    for (;;) {
      const step = inspectBatchAt(reader, pos, -1, closed);
      if (step.row === 'end-of-data') break;
      const framed = step.row === 'accept' || step.row === 'crc-bad' || step.row === 'count-bad';
      // The active segment's preallocated zeros (segment.ts), live or left by a crash: its end.
      if (!closed && isPreallocatedTail(fs, fd, step.row, pos, size)) {
        size = pos;
        break;
      }
      if (!framed) {
        // Without a valid length the walk cannot find the next batch: report and stop.
        errors.push({ position: pos, offset: expected, code: 'CORRUPT_MESSAGE', message: `${file} position ${pos}: ${step.detail}` });
        break;
      }
      if (closed ? step.baseOffset < expected : step.baseOffset !== expected) {
        const want = closed ? `at least ${expected}` : String(expected);
        errors.push({ position: pos, offset: step.baseOffset, code: 'CORRUPT_MESSAGE', message: `${file} position ${pos}: baseOffset ${step.baseOffset}, expected ${want}` });
      }
      if (step.row !== 'accept') {
        errors.push({ position: pos, offset: step.baseOffset, code: 'CORRUPT_MESSAGE', message: `${file} position ${pos}: ${step.detail}` });
      }
      table.positions.push(pos);
      table.baseOffsets.push(step.baseOffset);
      table.maxTimestamps.push(step.maxTimestamp);
      // A damaged lastOffsetDelta would derail every later check: trust it only when sane.
      expected = step.lastOffsetDelta >= 0 ? step.baseOffset + step.lastOffsetDelta + 1 : step.baseOffset + 1;
      pos += step.sizeBytes;
    }
    const indexErrors = checkIndexes(fs, dir, base, size, expected, table);
    return { report: { file, batches: table.positions.length, bytes: size, errors, indexErrors }, nextOffset: expected };
  } finally {
    fs.close(fd);
  }
}

function checkIndexes(fs: FileSystem, dir: string, base: number, size: number, nextOffset: number, table: BatchTable): string[] {
  const problems: string[] = [];
  const indexName = segmentFileName(base, INDEX_SUFFIX);
  const indexPath = joinPath(dir, indexName);
  if (!fs.exists(indexPath)) problems.push(`${indexName}: missing`);
  else {
    const decoded = decodeOffsetIndex(fs.readFile(indexPath), size);
    if (!decoded.ok) problems.push(`${indexName}: ${decoded.reason}`);
    else {
      // Both lists are sorted by position: one merge walk.
      let b = 0;
      for (let i = 0; i < decoded.index.count; i++) {
        const position = decoded.index.positionAt(i);
        while (b < table.positions.length && table.positions[b] < position) b++;
        const offset = base + decoded.index.relativeOffsetAt(i);
        if (b === table.positions.length || table.positions[b] !== position || table.baseOffsets[b] !== offset) {
          problems.push(`${indexName}: entry ${i} (offset ${offset}, position ${position}) does not point at that batch`);
          break;
        }
      }
    }
  }
  const timeName = segmentFileName(base, TIME_INDEX_SUFFIX);
  const timePath = joinPath(dir, timeName);
  if (!fs.exists(timePath)) problems.push(`${timeName}: missing`);
  else {
    const decoded = decodeTimeIndex(fs.readFile(timePath), nextOffset - base);
    if (!decoded.ok) problems.push(`${timeName}: ${decoded.reason}`);
    else {
      let b = 0;
      for (let i = 0; i < decoded.index.count; i++) {
        const offset = base + decoded.index.relativeOffsetAt(i);
        while (b < table.baseOffsets.length && table.baseOffsets[b] < offset) b++;
        if (b === table.baseOffsets.length || table.baseOffsets[b] !== offset || table.maxTimestamps[b] !== decoded.index.timestampAt(i)) {
          problems.push(`${timeName}: entry ${i} (timestamp ${decoded.index.timestampAt(i)}, offset ${offset}) does not match a batch`);
          break;
        }
      }
    }
  }
  return problems;
}
