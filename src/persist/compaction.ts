/**
 * Log compaction (Kafka's cleanup.policy=compact): rewrites the CLOSED segments of a
 * partition keeping only the latest record of every key, never touching the active
 * segment and never changing an offset. Pure persist code: no threads; synchronous file
 * I/O through the injected FileSystem, in slices separated by an injected `yieldNow` (the
 * owner passes setImmediate, so appends and reads of the same partition run between two
 * slices), plus fdatasyncs on libuv's pool. Owner: the partition's owner thread; the
 * segment swap itself is PartitionLog.applyCompaction, one synchronous owner step.
 *
 * The algorithm (one pass):
 * 1. Map: for each dirty closed segment (baseOffset >= dirtyFromOffset: not cleaned since the
 *    log opened), oldest first, every record with a key sets map[key bytes] = its offset, so
 *    the map ends with each key's latest offset in the closed segments. Keys are compared by
 *    bytes (a Map keyed by the key's latin1 string: one char per byte). The map stops
 *    growing after the segment in which it passed KEYS_MAX; the pass then covers only the
 *    segments mapped so far (and everything below them), the rest stays dirty for the next.
 * 2. Rewrite: the closed segments below the mapped end are taken in groups of adjacent
 *    segments whose sizes add up to at most `mergeBytesMax` (the log's segmentBytes) and whose
 *    offsets fit one segment's relative offsets, as Kafka's cleaner groups segments; each
 *    group of two or more is rewritten into one segment named by its first base offset, so a
 *    compacted log whose segments shrink does not keep a file per roll for ever (the offsets
 *    topic rolls every hour). Each segment of a group is read batch by batch (CRC checked).
 *    A record is kept iff no later offset of its key is in the map (offset >= map[key]);
 *    records without a key are kept; a tombstone (null value) is kept too until its
 *    segment's largest timestamp is more than deleteRetentionMs before now, then dropped.
 *    The segment's largest timestamp (the newest batch maxTimestamp, about when it closed)
 *    is the clock of "landed in a closed segment": per segment, not per record, as Kafka's
 *    cleaner used the segment's last-modified time. A batch keeps everything of its header
 *    but batchLength, recordCount and the CRC (record-batch-codec.ts rebuildBatchWith):
 *    baseOffset, lastOffsetDelta (so its last offset stays), baseTimestamp, maxTimestamp
 *    (so a segment's largest timestamp, which drives retention and tombstone expiry, does not
 *    move back; offsetForTimestamp already tolerates a maxTimestamp above every record's),
 *    producerId/epoch/baseSequence and attributes; the kept records are copied byte for
 *    byte, their offsetDelta and timestampDelta unchanged. A batch with nothing kept is
 *    dropped. Compression: a gzip batch is inflated, thinned and deflated again (it stays
 *    gzip); a batch of a codec the broker cannot decode (snappy, lz4, zstd), a control
 *    batch and a batch with nothing to drop are copied whole. A segment alone in its group
 *    with nothing to drop is not rewritten at all, so a pass over a clean log whose segments
 *    no longer merge writes nothing. A merged segment's largest timestamp is its group's
 *    newest, so the tombstones of its older members expire with the newest (the price of
 *    fewer files, as Kafka's per-segment clock).
 *
 * On-disk steps of a pass, and what a crash after each leaves (recoverCompactionFiles
 * applies the last column when the log opens):
 *
 * | step | what                                                                 | a crash after it leaves                  | open does                               |
 * |-----:|----------------------------------------------------------------------|------------------------------------------|-----------------------------------------|
 * |    1 | write `<base>.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned`, fdatasync each (async, in slices) | old segments intact + `.cleaned` files | delete every `*.cleaned` |
 * |    2 | rename each `<base>.log.cleaned` to `<base>.log.swap` (a merged group's: `<base>.log.<last member's base>.swap`); fsync the folder (the commit point) | the swap beside the old segments | unlink `<base>.index`, `.timeindex` and every segment (.log and indexes) above `<base>` up to the last member the name gives; fsync; rename the swap over `<base>.log`; fsync; the load rebuilds the indexes by a scan |
 * |    3 | unlink the old `<base>.index` and `<base>.timeindex`, and the other members' files; fsync the folder | the same, without old indexes or members | the same                                |
 * |    4 | rename `.log.swap` over `<base>.log`, each `.index.cleaned` / `.timeindex.cleaned` to its index; fsync the folder | new .log, new or missing indexes | delete `*.cleaned`; a missing index is rebuilt by a scan |

 *
 * Step 3 comes with its own fsync before step 4 so that an old index can never stand
 * beside a new .log. Steps 2 to 4 run in one synchronous owner step (PartitionLog), so a read
 * never sees a half-swapped segment; the file handles of the swapped segments are reopened
 * in that step.
 *
 * Offset gaps: after a pass, a closed segment may start above its base offset, have gaps
 * between batches and inside them, and end below the next segment's base. The readers
 * accept that (see recovery.ts "gaps allowed", segment.ts findBatch, PartitionLog.locate).
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { AssertionError, assert } from '../assert.js';
import { asStorageError, SluiceError } from '../errors.js';
import type { FileSystem } from './fs.js';
import { joinPath } from './fs.js';
import { BATCH_BYTES_LIMIT, INFLATED_BATCH_BYTES_MAX, RELATIVE_OFFSET_MAX, SCAN_CHUNK_BYTES, SEGMENT_NAME_DIGITS } from './limits.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  Compression,
  COMPRESSION_MASK,
  CONTROL_BIT,
  forEachRecordSpan,
  LOG_OVERHEAD_BYTES,
  rebuildBatch,
  RECORDS_OFFSET,
  validateBatchAt,
  type BatchHeader,
  type RecordSpan,
} from './record-batch.js';
import { INDEX_SUFFIX, LOG_SUFFIX, parseOffsetFileName, parseSegmentLogName, segmentFileName, TIME_INDEX_SUFFIX } from './segment.js';
import { SegmentIndexes } from './segment-indexes.js';

// ---------------------------------------------------------------- limits and names

/**
 * Keys the map of one pass holds (about 100 bytes each with short keys: ~100 MiB at the
 * limit). Past it the pass stops mapping and cleans what it mapped, as Kafka's cleaner does
 * when its dedupe buffer is full; the next pass goes on.
 */
export const COMPACTION_KEYS_MAX = 1_000_000;
/** Bytes of log read between two yields: a slice is a millisecond or two of decoding. */
export const COMPACTION_SLICE_BYTES = 256 * 1024;
/** Read chunk of the segment walk: most batches fit, larger ones get their own buffer. */
export const COMPACTION_READ_CHUNK_BYTES = SCAN_CHUNK_BYTES;
/** Output buffer of a rewritten segment: one write per this many bytes. */
export const COMPACTION_WRITE_BUFFER_BYTES = 1024 * 1024;
/** Suffix of the files a pass writes before its commit (step 1). */
export const CLEANED_SUFFIX = '.cleaned';
/** Suffix of a committed rewritten .log not yet in place (steps 2 to 4). */
export const SWAP_SUFFIX = '.swap';

assert(COMPACTION_READ_CHUNK_BYTES >= BATCH_HEADER_BYTES, 'a read chunk holds a batch header');
assert(COMPACTION_SLICE_BYTES > 0 && COMPACTION_KEYS_MAX > 0, 'compaction limits are positive');

// ---------------------------------------------------------------- types

/** A closed segment as the pass sees it (a snapshot taken when the pass starts). */
export interface CompactionSegment {
  baseOffset: number;
  sizeBytes: number;
  /** Largest batch maxTimestamp (-1 when none): tombstones expire deleteRetentionMs after it. */
  largestTimestamp: number;
}

export interface CompactionOptions {
  fs: FileSystem;
  /** The partition folder. */
  dir: string;
  /** The closed segments, oldest first; never the active one. */
  segments: readonly CompactionSegment[];
  /** The active segment's base offset: where the closed segments end. */
  closedEndOffset: number;
  /** Segments with baseOffset >= this are dirty: the map is built from them. */
  dirtyFromOffset: number;
  nowMs: number;
  deleteRetentionMs: number;
  indexIntervalBytes: number;
  /** Called between slices of work (the owner: setImmediate). */
  yieldNow: () => Promise<void>;
  /** Checked between slices: true abandons the pass (its files are removed). */
  isCancelled?: () => boolean;
  /** Adjacent segments whose sizes add up to at most this are merged into one (the log's segmentBytes); absent: none are. */
  mergeBytesMax?: number;
  keysMax?: number;
  sliceBytes?: number;
}

/** One segment the pass rewrote: its three `.cleaned` files are written and fdatasynced. */
export interface CleanedSegment {
  /** The first source's base offset: the rewritten segment's name. */
  baseOffset: number;
  /** The segments it replaces, oldest first (one, or the members of a merged group), as the pass saw them. */
  sources: { baseOffset: number; sizeBytes: number }[];
  /** The sources' bytes together. */
  sizeBytesBefore: number;
  sizeBytes: number;
  /** The last kept batch's last offset + 1 (the base offset when nothing is kept). */
  nextOffset: number;
  indexes: SegmentIndexes;
  recordsRemoved: number;
}

export interface CompactionPlan {
  cleaned: CleanedSegment[];
  /** Segments with baseOffset below this are clean once the plan is applied. */
  cleanedUpTo: number;
  segmentsExamined: number;
  /** Bytes of the segments examined, before and after the rewrite. */
  bytesBefore: number;
  bytesAfter: number;
  recordsRemoved: number;
  /** When a tombstone the pass kept becomes droppable (ms since epoch); Infinity when none. */
  tombstoneDeadlineMs: number;
}

/** What a pass did, as PartitionLog.compact and the engine report it. */
export interface CompactionResult {
  segmentsExamined: number;
  segmentsRewritten: number;
  /** Segments that merged into another (the log has this many fewer). */
  segmentsMerged: number;
  bytesBefore: number;
  bytesAfter: number;
  recordsRemoved: number;
}

// ---------------------------------------------------------------- the pass

/**
 * Runs steps 1 of a pass (map, rewrite into `.cleaned` files) and returns the plan that
 * PartitionLog.applyCompaction commits. On failure or cancellation every `.cleaned` file
 * it wrote is removed and the error rethrown (CORRUPT_MESSAGE for a bad batch, STORAGE_ERROR
 * for the disk, UNKNOWN_TOPIC_OR_PARTITION when cancelled).
 */
export async function compactSegments(options: CompactionOptions): Promise<CompactionPlan> {
  const pass = new Pass(options);
  try {
    return await pass.run();
  } catch (err) {
    pass.abandon();
    if (err instanceof SluiceError || err instanceof AssertionError) throw err;
    throw asStorageError(err, `compaction of ${options.dir}`);
  }
}

/** One pass's state. Allocates freely: compaction is off the hot path. */
class Pass {
  readonly #o: CompactionOptions;
  readonly #keysMax: number;
  readonly #sliceBytes: number;
  readonly #latest = new Map<string, number>();
  /** Files of step 1 written so far (removed if the pass fails). */
  readonly #written: string[] = [];
  readonly #openFds = new Set<number>();
  #sinceYieldBytes = 0;

  constructor(options: CompactionOptions) {
    this.#o = options;
    this.#keysMax = options.keysMax ?? COMPACTION_KEYS_MAX;
    this.#sliceBytes = options.sliceBytes ?? COMPACTION_SLICE_BYTES;
    for (let i = 1; i < options.segments.length; i++) {
      assert(options.segments[i].baseOffset > options.segments[i - 1].baseOffset, 'segments are sorted');
    }
  }

  async run(): Promise<CompactionPlan> {
    const o = this.#o;
    const segments = o.segments;
    // 1. Map the dirty segments until the map is full.
    let mappedEnd = segments.length;
    for (let i = 0; i < segments.length; i++) {
      if (segments[i].baseOffset < o.dirtyFromOffset) continue;
      await this.#mapSegment(segments[i]);
      if (this.#latest.size >= this.#keysMax) {
        mappedEnd = i + 1;
        break;
      }
    }
    const cleanedUpTo = mappedEnd < segments.length ? segments[mappedEnd].baseOffset : o.closedEndOffset;
    // 2. Rewrite every group below the mapped end: merged, or alone with something to drop.
    const plan: CompactionPlan = {
      cleaned: [], cleanedUpTo, segmentsExamined: mappedEnd, bytesBefore: 0, bytesAfter: 0, recordsRemoved: 0, tombstoneDeadlineMs: Infinity,
    };
    for (const group of groupSegments(segments.slice(0, mappedEnd), cleanedUpTo, o.mergeBytesMax ?? 0)) {
      const before = group.reduce((n, g) => n + g.sizeBytes, 0);
      plan.bytesBefore += before;
      const cleaned = await this.#rewriteGroup(group, plan);
      if (cleaned === null) {
        plan.bytesAfter += before;
        continue;
      }
      plan.cleaned.push(cleaned);
      plan.bytesAfter += cleaned.sizeBytes;
      plan.recordsRemoved += cleaned.recordsRemoved;
    }
    return plan;
  }

  /** Removes what step 1 wrote (the pass failed or was cancelled). Never throws. */
  abandon(): void {
    const fs = this.#o.fs;
    for (const fd of this.#openFds) {
      try {
        fs.close(fd);
      } catch {
        // Already failing.
      }
    }
    this.#openFds.clear();
    for (const path of this.#written) {
      try {
        if (fs.exists(path)) fs.unlink(path);
      } catch {
        // A leftover .cleaned file is removed when the log opens.
      }
    }
  }

  async #pause(bytes: number): Promise<void> {
    this.#sinceYieldBytes += bytes;
    if (this.#sinceYieldBytes < this.#sliceBytes) return;
    this.#sinceYieldBytes = 0;
    await this.#o.yieldNow();
    this.#checkCancelled();
  }

  /** Between slices and before each segment. */
  #checkCancelled(): void {
    if (this.#o.isCancelled?.()) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `compaction of ${this.#o.dir} stopped: the partition is closing`);
  }

  #openLog(segment: CompactionSegment): { fd: number; cursor: BatchCursor } {
    const path = joinPath(this.#o.dir, segmentFileName(segment.baseOffset, LOG_SUFFIX));
    const fd = this.#o.fs.open(path, 'read');
    this.#openFds.add(fd);
    return { fd, cursor: new BatchCursor(this.#o.fs, fd, segment, path) };
  }

  #close(fd: number): void {
    this.#openFds.delete(fd);
    this.#o.fs.close(fd);
  }

  async #mapSegment(segment: CompactionSegment): Promise<void> {
    this.#checkCancelled();
    const { fd, cursor } = this.#openLog(segment);
    const latest = this.#latest;
    for (let b = cursor.next(); b !== null; b = cursor.next()) {
      const section = recordsSection(b.bytes, b.header);
      if (section !== null) {
        const base = b.header.baseOffset;
        forEachRecordSpan(section, b.header, (span) => {
          if (span.key !== null) latest.set(keyOf(span.key), base + span.offsetDelta);
        });
      }
      await this.#pause(b.header.sizeBytes);
    }
    this.#close(fd);
  }

  /**
   * Rewrites a group of adjacent segments into one segment's `.cleaned` files, named by the
   * first: a merge always, a group of one only when something in it is dropped (else null).
   * A lone segment's batches before its first change are copied later, from the file,
   * without decoding again.
   */
  async #rewriteGroup(group: readonly CompactionSegment[], plan: CompactionPlan): Promise<CleanedSegment | null> {
    const o = this.#o;
    const writer = (): CleanedWriter => new CleanedWriter(o.fs, o.dir, group[0].baseOffset, o.indexIntervalBytes, this.#written, this.#openFds);
    let out: CleanedWriter | null = group.length > 1 ? writer() : null;
    const prefix: { position: number; baseOffset: number; maxTimestamp: number; lastOffset: number }[] = [];
    let recordsRemoved = 0;
    let tombstoneKept = false;
    for (const segment of group) {
      this.#checkCancelled();
      const tombstonesExpired = o.nowMs - segment.largestTimestamp > o.deleteRetentionMs;
      const { fd, cursor } = this.#openLog(segment);
      for (let b = cursor.next(); b !== null; b = cursor.next()) {
        const thinned = this.#thin(b.bytes, b.header, tombstonesExpired);
        if (thinned.tombstoneKept) tombstoneKept = true;
        recordsRemoved += thinned.removed;
        const lastOffset = b.header.baseOffset + b.header.lastOffsetDelta;
        if (out === null) {
          if (thinned.bytes === b.bytes) {
            prefix.push({ position: b.position, baseOffset: b.header.baseOffset, maxTimestamp: b.header.maxTimestamp, lastOffset });
            await this.#pause(b.header.sizeBytes);
            continue;
          }
          out = writer();
          // Reads the file into the writer's own buffer: the cursor's buffer is untouched.
          await out.copyPrefix(fd, b.position, prefix, (n) => this.#pause(n));
        }
        if (thinned.bytes !== null) out.append(thinned.bytes, b.header.baseOffset, b.header.maxTimestamp, lastOffset);
        await this.#pause(b.header.sizeBytes);
      }
      this.#close(fd);
    }
    // A merged segment's clock is its newest member's: its tombstones expire by that.
    const largestTimestamp = Math.max(...group.map((g) => g.largestTimestamp));
    if (tombstoneKept) plan.tombstoneDeadlineMs = Math.min(plan.tombstoneDeadlineMs, largestTimestamp + o.deleteRetentionMs + 1);
    if (out === null) return null;
    const done = await out.finish();
    const sources = group.map((g) => ({ baseOffset: g.baseOffset, sizeBytes: g.sizeBytes }));
    return { baseOffset: group[0].baseOffset, sources, sizeBytesBefore: sources.reduce((n, g) => n + g.sizeBytes, 0), ...done, recordsRemoved };
  }

  /**
   * The batch without its dropped records: the same bytes object when nothing is dropped,
   * null when nothing is kept, else a rebuilt batch.
   */
  #thin(bytes: Uint8Array, header: BatchHeader, tombstonesExpired: boolean): { bytes: Uint8Array | null; removed: number; tombstoneKept: boolean } {
    const section = recordsSection(bytes, header);
    if (section === null) return { bytes, removed: 0, tombstoneKept: false };
    const latest = this.#latest;
    const base = header.baseOffset;
    const kept: number[] = []; // flat [start, end) pairs into the section
    let tombstoneKept = false;
    let keptCount = 0;
    forEachRecordSpan(section, header, (span: RecordSpan) => {
      if (span.key !== null) {
        const newest = latest.get(keyOf(span.key));
        if (newest !== undefined && newest > base + span.offsetDelta) return;
      }
      if (span.valueIsNull) {
        if (tombstonesExpired) return;
        tombstoneKept = true;
      }
      keptCount++;
      // Adjacent kept records make one range: fewer copies.
      if (kept.length > 0 && kept[kept.length - 1] === span.start) kept[kept.length - 1] = span.end;
      else kept.push(span.start, span.end);
    });
    let keptBytes = 0;
    for (let k = 0; k < kept.length; k += 2) keptBytes += kept[k + 1] - kept[k];
    if (keptBytes === section.length) return { bytes, removed: 0, tombstoneKept };
    if (keptBytes === 0) return { bytes: null, removed: header.recordCount, tombstoneKept: false };
    const records = new Uint8Array(keptBytes);
    for (let k = 0, at = 0; k < kept.length; k += 2) {
      records.set(section.subarray(kept[k], kept[k + 1]), at);
      at += kept[k + 1] - kept[k];
    }
    const blob = (header.attributes & COMPRESSION_MASK) === Compression.gzip ? gzipSync(records) : records;
    return { bytes: rebuildBatch(bytes, blob, keptCount), removed: header.recordCount - keptCount, tombstoneKept };
  }
}

/** The key as a Map key: latin1 maps each byte to one char, so equal strings are equal bytes. */
function keyOf(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

/**
 * The plain records section of a batch, inflated when gzip; null when the pass must keep
 * the batch whole (a control batch, a codec the broker cannot decode).
 */
function recordsSection(bytes: Uint8Array, header: BatchHeader): Uint8Array | null {
  if ((header.attributes & CONTROL_BIT) !== 0) return null;
  const blob = bytes.subarray(RECORDS_OFFSET, header.sizeBytes);
  const compression = header.attributes & COMPRESSION_MASK;
  if (compression === Compression.none) return blob;
  if (compression !== Compression.gzip) return null;
  try {
    return gunzipSync(blob, { maxOutputLength: INFLATED_BATCH_BYTES_MAX });
  } catch (err) {
    // Inflating past the limit (stored before the produce check, or before the topic was
    // compacted): kept whole, as a codec the broker cannot decode.
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return null;
    throw new SluiceError('CORRUPT_MESSAGE', `batch at offset ${header.baseOffset} does not inflate: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The segments in groups of adjacent ones to rewrite together (Kafka's groupSegmentsBySize):
 * a group's sizes add up to at most `mergeBytesMax`, and its offsets, up to where the next
 * segment (or `endOffset`) begins, fit one segment's relative offsets. 0 merges nothing.
 */
export function groupSegments(segments: readonly CompactionSegment[], endOffset: number, mergeBytesMax: number): CompactionSegment[][] {
  const groups: CompactionSegment[][] = [];
  for (let i = 0; i < segments.length; ) {
    const group = [segments[i]];
    let bytes = segments[i].sizeBytes;
    let j = i + 1;
    for (; j < segments.length; j++) {
      const end = j + 1 < segments.length ? segments[j + 1].baseOffset : endOffset;
      if (bytes + segments[j].sizeBytes > mergeBytesMax || end - 1 - segments[i].baseOffset > RELATIVE_OFFSET_MAX) break;
      bytes += segments[j].sizeBytes;
      group.push(segments[j]);
    }
    groups.push(group);
    i = j;
  }
  return groups;
}

// ---------------------------------------------------------------- reading a segment

/** A batch the cursor hands out: a view valid until the next call. */
interface CursorBatch {
  position: number;
  bytes: Uint8Array;
  header: BatchHeader;
}

/**
 * Walks the batches of a closed segment's .log through one reusable buffer, validating
 * each (framing, CRC-32C, the stored record-count rule, offsets increasing). A batch larger
 * than the buffer gets a buffer of its own.
 */
class BatchCursor {
  readonly #fs: FileSystem;
  readonly #fd: number;
  readonly #sizeBytes: number;
  readonly #path: string;
  readonly #chunk: Uint8Array;
  #buffer: Uint8Array;
  #view: DataView;
  #bufferStart = 0;
  #bufferLength = 0;
  #position = 0;
  #expected: number;

  constructor(fs: FileSystem, fd: number, segment: CompactionSegment, path: string) {
    this.#fs = fs;
    this.#fd = fd;
    this.#sizeBytes = segment.sizeBytes;
    this.#path = path;
    this.#expected = segment.baseOffset;
    this.#chunk = new Uint8Array(Math.max(BATCH_HEADER_BYTES, Math.min(COMPACTION_READ_CHUNK_BYTES, segment.sizeBytes)));
    this.#buffer = this.#chunk;
    this.#view = new DataView(this.#buffer.buffer);
  }

  next(): CursorBatch | null {
    const position = this.#position;
    if (position >= this.#sizeBytes) return null;
    if (!this.#has(position, BATCH_HEADER_BYTES)) this.#fill(position, BATCH_HEADER_BYTES);
    const batchLength = this.#view.getInt32(position - this.#bufferStart + BATCH_LENGTH_OFFSET, false);
    const sizeBytes = LOG_OVERHEAD_BYTES + batchLength;
    if (batchLength <= 0 || position + sizeBytes > this.#sizeBytes) throw this.#corrupt(position, `batchLength ${batchLength}`);
    if (!this.#has(position, sizeBytes)) this.#fill(position, sizeBytes);
    const at = position - this.#bufferStart;
    let header: BatchHeader;
    try {
      header = validateBatchAt(this.#buffer, this.#view, at, BATCH_BYTES_LIMIT, 'stored');
    } catch (err) {
      throw this.#corrupt(position, (err as Error).message);
    }
    if (header.baseOffset < this.#expected) throw this.#corrupt(position, `baseOffset ${header.baseOffset} below ${this.#expected}`);
    this.#expected = header.baseOffset + header.lastOffsetDelta + 1;
    this.#position = position + sizeBytes;
    return { position, bytes: this.#buffer.subarray(at, at + sizeBytes), header };
  }

  #has(position: number, bytes: number): boolean {
    return position >= this.#bufferStart && position + bytes <= this.#bufferStart + this.#bufferLength;
  }

  #fill(position: number, bytes: number): void {
    this.#buffer = bytes <= this.#chunk.length ? this.#chunk : new Uint8Array(bytes);
    this.#view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset, this.#buffer.byteLength);
    const want = Math.min(this.#buffer.length, this.#sizeBytes - position);
    this.#bufferStart = position;
    this.#bufferLength = this.#fs.read(this.#fd, this.#buffer.subarray(0, want), position);
    if (this.#bufferLength < bytes) throw this.#corrupt(position, `the file ends ${bytes - this.#bufferLength} bytes early`);
  }

  #corrupt(position: number, detail: string): SluiceError {
    return new SluiceError('CORRUPT_MESSAGE', `compaction: ${this.#path} position ${position}: ${detail}`);
  }
}

// ---------------------------------------------------------------- writing a segment

/** Writes one rewritten segment's `.cleaned` files (step 1), buffered, and its indexes. */
class CleanedWriter {
  readonly #fs: FileSystem;
  readonly #baseOffset: number;
  readonly #logPath: string;
  readonly #indexPath: string;
  readonly #timeIndexPath: string;
  readonly #openFds: Set<number>;
  readonly #fd: number;
  readonly #indexes: SegmentIndexes;
  readonly #buffer = new Uint8Array(COMPACTION_WRITE_BUFFER_BYTES);
  #buffered = 0;
  #written = 0;
  #nextOffset: number;

  constructor(fs: FileSystem, dir: string, baseOffset: number, indexIntervalBytes: number, written: string[], openFds: Set<number>) {
    this.#fs = fs;
    this.#baseOffset = baseOffset;
    this.#logPath = cleanedPath(dir, baseOffset, LOG_SUFFIX);
    this.#indexPath = cleanedPath(dir, baseOffset, INDEX_SUFFIX);
    this.#timeIndexPath = cleanedPath(dir, baseOffset, TIME_INDEX_SUFFIX);
    this.#openFds = openFds;
    this.#indexes = new SegmentIndexes({ baseOffset, indexIntervalBytes });
    this.#nextOffset = baseOffset;
    written.push(this.#logPath, this.#indexPath, this.#timeIndexPath);
    this.#fd = fs.open(this.#logPath, 'create');
    openFds.add(this.#fd);
  }

  get #size(): number {
    return this.#written + this.#buffered;
  }

  /**
   * Copies the unchanged batches before `end` from the source .log (raw bytes, no decoding:
   * they were checked on the way), and indexes them; `pause` between buffers, so a long
   * prefix is copied in slices too.
   */
  async copyPrefix(
    sourceFd: number,
    end: number,
    batches: { position: number; baseOffset: number; maxTimestamp: number; lastOffset: number }[],
    pause: (bytes: number) => Promise<void>,
  ): Promise<void> {
    for (const b of batches) this.#onBatch(b.position, b.baseOffset, b.maxTimestamp, b.lastOffset);
    for (let from = 0; from < end; ) {
      const n = Math.min(this.#buffer.length - this.#buffered, end - from);
      if (n === 0) {
        this.#flush();
        continue;
      }
      const got = this.#fs.read(sourceFd, this.#buffer.subarray(this.#buffered, this.#buffered + n), from);
      if (got !== n) throw new SluiceError('CORRUPT_MESSAGE', `compaction: segment ${this.#baseOffset} ends early while copying`);
      this.#buffered += n;
      from += n;
      await pause(n);
    }
  }

  append(batch: Uint8Array, baseOffset: number, maxTimestamp: number, lastOffset: number): void {
    this.#onBatch(this.#size, baseOffset, maxTimestamp, lastOffset);
    if (batch.length > this.#buffer.length - this.#buffered) this.#flush();
    if (batch.length > this.#buffer.length) {
      this.#fs.write(this.#fd, batch, this.#written);
      this.#written += batch.length;
      return;
    }
    this.#buffer.set(batch, this.#buffered);
    this.#buffered += batch.length;
  }

  #onBatch(position: number, baseOffset: number, maxTimestamp: number, lastOffset: number): void {
    this.#indexes.onBatch(position, baseOffset, maxTimestamp);
    this.#nextOffset = lastOffset + 1;
  }

  #flush(): void {
    if (this.#buffered === 0) return;
    this.#fs.write(this.#fd, this.#buffer.subarray(0, this.#buffered), this.#written);
    this.#written += this.#buffered;
    this.#buffered = 0;
  }

  /** Flushes, fdatasyncs and closes the .log, then writes and fdatasyncs both indexes. */
  async finish(): Promise<{ sizeBytes: number; nextOffset: number; indexes: SegmentIndexes }> {
    this.#flush();
    await fdatasync(this.#fs, this.#fd);
    this.#openFds.delete(this.#fd);
    this.#fs.close(this.#fd);
    this.#indexes.onClose();
    await writeFileSynced(this.#fs, this.#indexPath, this.#indexes.offsetIndex.encode(), this.#openFds);
    await writeFileSynced(this.#fs, this.#timeIndexPath, this.#indexes.timeIndex.encode(), this.#openFds);
    return { sizeBytes: this.#written, nextOffset: this.#nextOffset, indexes: this.#indexes };
  }
}

function fdatasync(fs: FileSystem, fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasyncAsync(fd, (err) => (err === null ? resolve() : reject(err))));
}

async function writeFileSynced(fs: FileSystem, path: string, bytes: Uint8Array, openFds: Set<number>): Promise<void> {
  const fd = fs.open(path, 'create');
  openFds.add(fd);
  if (bytes.length > 0) fs.write(fd, bytes, 0);
  await fdatasync(fs, fd);
  openFds.delete(fd);
  fs.close(fd);
}

// ---------------------------------------------------------------- commit and recovery

/** `<dir>/<base><suffix>.cleaned`. */
export function cleanedPath(dir: string, baseOffset: number, suffix: string): string {
  return joinPath(dir, segmentFileName(baseOffset, suffix) + CLEANED_SUFFIX);
}

/**
 * `<dir>/<base>.log.swap`, or for a merged group `<dir>/<base>.log.<last>.swap` where `last`
 * is the base offset of its last member (20 digits too): the name says which segments the
 * swap replaces, so an open after a crash removes exactly those, also members that lost
 * every record.
 */
export function swapPath(dir: string, baseOffset: number, lastMember = baseOffset): string {
  const name = lastMember === baseOffset ? segmentFileName(baseOffset, LOG_SUFFIX) + SWAP_SUFFIX : segmentFileName(baseOffset, LOG_SUFFIX + '.' + segmentFileName(lastMember, SWAP_SUFFIX));
  return joinPath(dir, name);
}

/** The base and last member of a swap's name (see swapPath), or null for any other name. */
export function parseSwapName(name: string): { baseOffset: number; lastMember: number } | null {
  const single = parseOffsetFileName(name, LOG_SUFFIX + SWAP_SUFFIX);
  if (single !== null) return { baseOffset: single, lastMember: single };
  // A merged group's: `<base>.log` and `<last>.swap` joined by a dot.
  const head = SEGMENT_NAME_DIGITS + LOG_SUFFIX.length;
  if (name[head] !== '.') return null;
  const baseOffset = parseOffsetFileName(name.slice(0, head), LOG_SUFFIX);
  const lastMember = parseOffsetFileName(name.slice(head + 1), SWAP_SUFFIX);
  return baseOffset !== null && lastMember !== null && lastMember > baseOffset ? { baseOffset, lastMember } : null;
}

/**
 * Steps 2 to 4 for the rewritten segments (their `.cleaned` files written; `members`: the
 * base offsets of the segments each replaces, its own first): after this, each `<base>.log`,
 * `.index` and `.timeindex` is the rewritten one and the other members' files are gone.
 * Synchronous; throws the file system's error (whatever it left is completed or undone by
 * the next open).
 */
export function commitCleanedSegments(fs: FileSystem, dir: string, segments: readonly { baseOffset: number; members: readonly number[] }[]): void {
  if (segments.length === 0) return;
  const swaps = segments.map(({ baseOffset, members }) => ({ baseOffset, members, swap: swapPath(dir, baseOffset, members[members.length - 1]) }));
  for (const { baseOffset, swap } of swaps) fs.rename(cleanedPath(dir, baseOffset, LOG_SUFFIX), swap);
  fs.fsyncDir(dir); // the commit point
  for (const { baseOffset, members } of swaps) {
    unlinkIndexes(fs, dir, baseOffset);
    for (const member of members) if (member !== baseOffset) unlinkSegment(fs, dir, member);
  }
  fs.fsyncDir(dir);
  for (const { baseOffset, swap } of swaps) {
    fs.rename(swap, joinPath(dir, segmentFileName(baseOffset, LOG_SUFFIX)));
    fs.rename(cleanedPath(dir, baseOffset, INDEX_SUFFIX), joinPath(dir, segmentFileName(baseOffset, INDEX_SUFFIX)));
    fs.rename(cleanedPath(dir, baseOffset, TIME_INDEX_SUFFIX), joinPath(dir, segmentFileName(baseOffset, TIME_INDEX_SUFFIX)));
  }
  fs.fsyncDir(dir);
}

/** Removes the `.cleaned` files of a segment whose rewrite is not committed (never throws). */
export function discardCleanedSegment(fs: FileSystem, dir: string, baseOffset: number): void {
  for (const suffix of [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]) {
    const path = cleanedPath(dir, baseOffset, suffix);
    try {
      if (fs.exists(path)) fs.unlink(path);
    } catch {
      // Removed at the next open.
    }
  }
}

/** Unlinks a merged-away segment: its .log, then its indexes. */
function unlinkSegment(fs: FileSystem, dir: string, base: number): void {
  const log = joinPath(dir, segmentFileName(base, LOG_SUFFIX));
  if (fs.exists(log)) fs.unlink(log);
  unlinkIndexes(fs, dir, base);
}

function unlinkIndexes(fs: FileSystem, dir: string, base: number): void {
  for (const suffix of [INDEX_SUFFIX, TIME_INDEX_SUFFIX]) {
    const path = joinPath(dir, segmentFileName(base, suffix));
    if (fs.exists(path)) fs.unlink(path);
  }
}


/**
 * Recovery of an interrupted pass, when the log opens (the table at the top): deletes every
 * `*.cleaned` file, and completes every `<base>.log.swap` (old indexes and the other members
 * of a merged group unlinked first, then the swap renamed over `<base>.log`; the segment's
 * load rebuilds the indexes by a scan).
 * Returns one sentence per file it handled. Throws the file system's error.
 */
export function recoverCompactionFiles(fs: FileSystem, dir: string): string[] {
  const notes: string[] = [];
  const names = fs.readdir(dir);
  const swaps: { name: string; baseOffset: number; lastMember: number }[] = [];
  for (const name of names) {
    if (name.endsWith(CLEANED_SUFFIX)) {
      fs.unlink(joinPath(dir, name));
      notes.push(`removed leftover ${name} (an uncommitted compaction)`);
      continue;
    }
    const swap = parseSwapName(name);
    if (swap !== null) swaps.push({ name, ...swap });
  }
  if (swaps.length === 0) {
    if (notes.length > 0) fs.fsyncDir(dir);
    return notes;
  }
  const segmentBases = names.map((n) => parseSegmentLogName(n)).filter((b): b is number => b !== null);
  for (const { baseOffset, lastMember } of swaps) {
    unlinkIndexes(fs, dir, baseOffset);
    // The other members of a merged group (the swap's name says up to which).
    for (const member of segmentBases) {
      if (member > baseOffset && member <= lastMember) {
        unlinkSegment(fs, dir, member);
        notes.push(`removed ${segmentFileName(member, LOG_SUFFIX)}, merged into ${segmentFileName(baseOffset, LOG_SUFFIX)} by a compaction`);
      }
    }
  }
  fs.fsyncDir(dir);
  for (const { name, baseOffset } of swaps) {
    fs.rename(joinPath(dir, name), joinPath(dir, segmentFileName(baseOffset, LOG_SUFFIX)));
    notes.push(`completed the compaction of ${segmentFileName(baseOffset, LOG_SUFFIX)} (its indexes are rebuilt)`);
  }
  fs.fsyncDir(dir);
  return notes;
}
