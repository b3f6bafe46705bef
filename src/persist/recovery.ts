/**
 * Recovery of a segment: the decision table, and the scan that applies it batch by batch
 * from the start of the segment. Owner: the owner thread opening a partition (or a verify
 * task, which uses `inspectBatchAt` read-only). Synchronous I/O through FileSystem.
 *
 * At each position `pos` of a segment of `size` bytes, with `expected` the offset the next
 * batch must start at (the segment's base offset at first), the rows are tried in order and
 * the first that matches decides (header = the 61-byte batch header; fields big-endian):
 *
 * | #  | row                 | condition                                                  | decision                       |
 * |---:|---------------------|------------------------------------------------------------|--------------------------------|
 * |  1 | end-of-data         | pos = size                                                 | end of data: keep everything   |
 * |  2 | header-torn-zero    | 0 < size - pos < 61, all those bytes zero                  | zero-filled tail: truncate     |
 * |  3 | header-torn         | 0 < size - pos < 61, some byte non-zero                    | torn tail: truncate            |
 * |  4 | header-zero         | header complete and all 61 bytes zero                      | zero-filled tail: truncate     |
 * |  5 | length-out-of-range | batchLength < 56 or 12 + batchLength > BATCH_BYTES_LIMIT   | corrupt tail: truncate         |
 * |  6 | magic-bad           | magic != 2                                                 | corrupt tail: truncate         |
 * |  7 | offset-mismatch     | baseOffset != expected (gaps allowed: baseOffset < expected) | corrupt tail: truncate       |
 * |  8 | body-torn           | header ok, pos + 12 + batchLength > size                   | torn tail: truncate            |
 * |  9 | crc-bad             | body complete, CRC-32C over [21, end) != stored crc        | corrupt tail: truncate         |
 * | 10 | count-bad           | CRC ok, recordCount < 1 or != lastOffsetDelta + 1 (gaps allowed: > lastOffsetDelta + 1) | corrupt tail: truncate |
 * | 11 | accept              | otherwise                                                  | accept; pos += size, expected = baseOffset + lastOffsetDelta + 1 |
 *
 * "Truncate" cuts the segment at `pos`: every batch before it is kept, nothing after it is.
 *
 * "Gaps allowed" applies to closed segments (a caller's choice, `gaps`): compaction
 * (compaction.ts) rewrites closed segments and leaves offset gaps between batches (a batch
 * whose records were all dropped is gone) and inside them (a batch keeps its baseOffset and
 * lastOffsetDelta but fewer records), so there rows 7 and 10 only reject what no
 * compaction can produce: an offset going backwards, more records than offsets. The active
 * segment is never compacted and keeps the strict rows (a stale batch with a later offset
 * there is still caught).
 *
 * Why each row:
 * - 2 and 4: a preallocated or never-written page reads as zeros (Redpanda trims such a
 *   tail rather than calling it corruption); no batch starts with 61 zero bytes (magic 0).
 *   When the zeros run to the end of the file they are the active segment's preallocated
 *   space (segment.ts): Segment.load cuts them without passing the report on.
 * - 3 and 8: the process or machine died during a write; the batch was never acknowledged
 *   as durable (acks=all waits for fdatasync), so dropping it loses nothing promised.
 * - 5 to 7 and 9, 10: bytes that cannot be a batch we wrote. In the active segment,
 *   everything after the first bad batch is unreachable anyway (offsets are contiguous and
 *   positions are found by walking lengths), so the tail is cut and reported. A CRC
 *   mismatch in the very last batch is usually a torn write whose pages landed out of
 *   order; with more bytes after it, it is corruption; the decision is the same, the
 *   report says which.
 * - 5 uses BATCH_BYTES_LIMIT, not the topic's batchBytesMax, so lowering that config never
 *   cuts stored batches; 7 catches a stale batch from an earlier life of the file.
 * - 1 is the only end that keeps all bytes.
 *
 * The scan also rebuilds the segment's indexes (the same policy as appends, see
 * segment-indexes.ts), and returns the valid length, the next offset, the largest
 * timestamp, and a report { segment, bytesTruncated, reason } when it stopped early.
 */
import { assert } from '../assert.js';
import { crc32c, crc32cUpdate } from './crc32c.js';
import type { FileSystem } from './fs.js';
import { BATCH_BYTES_LIMIT, BATCH_LENGTH_MAX, BATCH_LENGTH_MIN, SCAN_CHUNK_BYTES } from './limits.js';
import {
  recordCountProblem,
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  CRC_OFFSET,
  LAST_OFFSET_DELTA_OFFSET,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAGIC_V2,
  MAX_TIMESTAMP_OFFSET,
  RECORD_COUNT_OFFSET,
} from './record-batch.js';
import { SegmentIndexes } from './segment-indexes.js';

export type ScanRow =
  | 'end-of-data'
  | 'header-torn-zero'
  | 'header-torn'
  | 'header-zero'
  | 'length-out-of-range'
  | 'magic-bad'
  | 'offset-mismatch'
  | 'body-torn'
  | 'crc-bad'
  | 'count-bad'
  | 'accept';

export type ScanDecision = 'accept' | 'end-of-data' | 'truncate-zero-tail' | 'truncate-torn-tail' | 'truncate-corrupt-tail';

/** The table above as data, in order; tests enumerate it row by row. */
export const RECOVERY_TABLE: readonly { row: ScanRow; decision: ScanDecision }[] = [
  { row: 'end-of-data', decision: 'end-of-data' },
  { row: 'header-torn-zero', decision: 'truncate-zero-tail' },
  { row: 'header-torn', decision: 'truncate-torn-tail' },
  { row: 'header-zero', decision: 'truncate-zero-tail' },
  { row: 'length-out-of-range', decision: 'truncate-corrupt-tail' },
  { row: 'magic-bad', decision: 'truncate-corrupt-tail' },
  { row: 'offset-mismatch', decision: 'truncate-corrupt-tail' },
  { row: 'body-torn', decision: 'truncate-torn-tail' },
  { row: 'crc-bad', decision: 'truncate-corrupt-tail' },
  { row: 'count-bad', decision: 'truncate-corrupt-tail' },
  { row: 'accept', decision: 'accept' },
];

const DECISION_BY_ROW = new Map(RECOVERY_TABLE.map((r) => [r.row, r.decision]));

export function decisionFor(row: ScanRow): ScanDecision {
  const decision = DECISION_BY_ROW.get(row);
  assert(decision !== undefined, () => `row ${row} is in the recovery table`);
  return decision;
}

/** What a recovery did to one segment. */
export interface TruncationReport {
  /** File name of the segment, e.g. 00000000000000000000.log. */
  segment: string;
  /** Where the segment was cut. */
  position: number;
  bytesTruncated: number;
  /** The table row that stopped the scan. */
  reason: ScanRow;
  /** The same in a sentence, with the numbers. */
  detail: string;
}

// ---------------------------------------------------------------- reading through one buffer

/**
 * Reads a file through one reusable buffer: a window of bytes at a position, and CRCs of
 * ranges of any length. One buffer per scan (not per batch).
 */
export class ChunkReader {
  readonly #fs: FileSystem;
  readonly #fd: number;
  readonly #fileBytes: number;
  readonly buffer: Uint8Array;
  /** Covers `buffer`; big-endian reads at the index window() returned. */
  readonly view: DataView;
  #start = 0; // file position of buffer[0]
  #length = 0; // valid bytes in buffer

  constructor(fs: FileSystem, fd: number, fileBytes: number, chunkBytes = SCAN_CHUNK_BYTES) {
    this.#fs = fs;
    this.#fd = fd;
    this.#fileBytes = fileBytes;
    // No larger than the file: small segments (and tests) need no 1 MiB buffer.
    this.buffer = new Uint8Array(Math.max(BATCH_HEADER_BYTES, Math.min(chunkBytes, fileBytes)));
    this.view = new DataView(this.buffer.buffer);
  }

  get fileBytes(): number {
    return this.#fileBytes;
  }

  /**
   * Makes file bytes [pos, pos + n) available and returns their index in `buffer`, or -1
   * when the file ends first. n must not exceed the buffer.
   */
  window(pos: number, n: number): number {
    assert(n <= this.buffer.length, () => `window of ${n} bytes fits the ${this.buffer.length}-byte buffer`);
    if (pos >= this.#start && pos + n <= this.#start + this.#length) return pos - this.#start;
    const want = Math.min(this.buffer.length, this.#fileBytes - pos);
    if (want < n) return -1;
    this.#start = pos;
    this.#length = this.#fs.read(this.#fd, this.buffer.subarray(0, want), pos);
    return this.#length >= n ? 0 : -1;
  }

  /** CRC-32C of file bytes [from, to), or -1 when the file ends first. */
  crcOf(from: number, to: number): number {
    const chunk = this.buffer.length;
    if (to - from <= chunk) {
      const i = this.window(from, to - from);
      return i < 0 ? -1 : crc32c(this.buffer.subarray(i, i + to - from));
    }
    let crc = 0;
    for (let p = from; p < to; p += chunk) {
      const n = Math.min(chunk, to - p);
      const i = this.window(p, n);
      if (i < 0) return -1;
      crc = crc32cUpdate(crc, this.buffer.subarray(i, i + n));
    }
    return crc;
  }
}

// ---------------------------------------------------------------- the table

/** One position classified by the table. Allocated per batch (never per record). */
export interface BatchInspection {
  row: ScanRow;
  detail: string;
  /** Fields valid from row 5 on (the header was read). */
  baseOffset: number;
  sizeBytes: number;
  lastOffsetDelta: number;
  maxTimestamp: number;
}

function inspection(row: ScanRow, detail: string, baseOffset = -1, sizeBytes = 0, lastOffsetDelta = -1, maxTimestamp = -1): BatchInspection {
  return { row, detail, baseOffset, sizeBytes, lastOffsetDelta, maxTimestamp };
}

function allZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Applies the decision table at `pos`. `expectedOffset` < 0 skips row 7 (verify checks
 * offsets itself, to go on after a bad one). `gaps`: the segment is a closed one, which
 * compaction may have rewritten (see "gaps allowed" above).
 */
export function inspectBatchAt(reader: ChunkReader, pos: number, expectedOffset: number, gaps = false): BatchInspection {
  const remaining = reader.fileBytes - pos;
  if (remaining === 0) return inspection('end-of-data', 'end of data');
  if (remaining < BATCH_HEADER_BYTES) {
    const i = reader.window(pos, remaining);
    const tail = i < 0 ? null : reader.buffer.subarray(i, i + remaining);
    if (tail !== null && allZero(tail)) return inspection('header-torn-zero', `zero-filled tail of ${remaining} bytes`);
    return inspection('header-torn', `torn header: ${remaining} bytes, less than a ${BATCH_HEADER_BYTES}-byte header`);
  }
  const h = reader.window(pos, BATCH_HEADER_BYTES);
  if (h < 0) return inspection('header-torn', 'torn header: the file ended while reading it');
  if (allZero(reader.buffer.subarray(h, h + BATCH_HEADER_BYTES))) {
    return inspection('header-zero', `zero-filled tail of ${remaining} bytes`);
  }
  const v = reader.view;
  const batchLength = v.getInt32(h + BATCH_LENGTH_OFFSET, false);
  if (batchLength < BATCH_LENGTH_MIN || batchLength > BATCH_LENGTH_MAX) {
    return inspection('length-out-of-range', `batchLength ${batchLength} is outside [${BATCH_LENGTH_MIN}, ${BATCH_LENGTH_MAX}] (limit ${BATCH_BYTES_LIMIT} bytes)`);
  }
  const magic = v.getInt8(h + MAGIC_OFFSET);
  if (magic !== MAGIC_V2) return inspection('magic-bad', `magic ${magic}, expected ${MAGIC_V2}`);
  const baseOffset = Number(v.getBigInt64(h + BASE_OFFSET_OFFSET, false));
  const sizeBytes = LOG_OVERHEAD_BYTES + batchLength;
  const lastOffsetDelta = v.getInt32(h + LAST_OFFSET_DELTA_OFFSET, false);
  const maxTimestamp = Number(v.getBigInt64(h + MAX_TIMESTAMP_OFFSET, false));
  const recordCount = v.getInt32(h + RECORD_COUNT_OFFSET, false);
  const storedCrc = v.getUint32(h + CRC_OFFSET, false);
  if (expectedOffset >= 0 && (gaps ? baseOffset < expectedOffset : baseOffset !== expectedOffset)) {
    return inspection('offset-mismatch', `baseOffset ${baseOffset}, expected ${gaps ? 'at least ' : ''}${expectedOffset}`, baseOffset, sizeBytes);
  }
  if (sizeBytes > remaining) {
    return inspection('body-torn', `torn body: a batch of ${sizeBytes} bytes with ${remaining} left in the file`, baseOffset, sizeBytes);
  }
  // The header fields are read before crcOf() moves the window.
  const crc = reader.crcOf(pos + ATTRIBUTES_OFFSET, pos + sizeBytes);
  if (crc !== storedCrc) {
    const after = remaining - sizeBytes;
    const where = after === 0 ? 'in the last batch (a torn write)' : `with ${after} bytes after the batch (corruption)`;
    return inspection('crc-bad', `CRC32C mismatch at offset ${baseOffset} ${where}`, baseOffset, sizeBytes, lastOffsetDelta, maxTimestamp);
  }
  const countProblem = recordCountProblem(recordCount, lastOffsetDelta, gaps ? 'stored' : 'produced');
  if (countProblem !== null) return inspection('count-bad', countProblem, baseOffset, sizeBytes);
  return inspection('accept', 'ok', baseOffset, sizeBytes, lastOffsetDelta, maxTimestamp);
}

// ---------------------------------------------------------------- the scan

export interface ScanResult {
  /** Bytes from the start that hold whole, valid, contiguous batches. */
  validBytes: number;
  nextOffset: number;
  batches: number;
  largestTimestamp: number;
  /** The indexes rebuilt from the valid batches. */
  indexes: SegmentIndexes;
  /** Set when the scan stopped before the end of the file: what to cut and why. */
  report: TruncationReport | null;
}

/**
 * Scans a segment from its start with the decision table. Reads only; the caller
 * truncates the file when `report` is set (and decides whether it may: closed segments
 * are reported, not cut).
 */
export function scanSegment(opts: {
  fs: FileSystem;
  fd: number;
  segment: string;
  baseOffset: number;
  sizeBytes: number;
  indexIntervalBytes: number;
  /** A closed segment: offset gaps between and inside batches are allowed (see the table). */
  gaps: boolean;
}): ScanResult {
  const reader = new ChunkReader(opts.fs, opts.fd, opts.sizeBytes);
  const indexes = new SegmentIndexes({ baseOffset: opts.baseOffset, indexIntervalBytes: opts.indexIntervalBytes });
  let pos = 0;
  let next = opts.baseOffset;
  let batches = 0;
  for (;;) {
    const step = inspectBatchAt(reader, pos, next, opts.gaps);
    if (step.row === 'accept') {
      indexes.onBatch(pos, step.baseOffset, step.maxTimestamp);
      next = step.baseOffset + step.lastOffsetDelta + 1;
      pos += step.sizeBytes;
      batches++;
      continue;
    }
    const report: TruncationReport | null =
      step.row === 'end-of-data'
        ? null
        : { segment: opts.segment, position: pos, bytesTruncated: opts.sizeBytes - pos, reason: step.row, detail: step.detail };
    return { validBytes: pos, nextOffset: next, batches, largestTimestamp: indexes.largestTimestamp, indexes, report };
  }
}
