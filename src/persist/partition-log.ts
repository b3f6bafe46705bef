/**
 * The log of one partition, in one folder: an ordered list of segments (segment.ts), the
 * last one active. Appends, rolls, reads, offset-for-timestamp, retention, sync, recovery
 * on open and a clean-shutdown marker on close, as Kafka's UnifiedLog/LocalLog.
 * Owner: the partition's owner thread, exclusively (single writer, no locks); synchronous
 * file I/O through the injected FileSystem, except the fdatasyncs of syncAsync() and of a
 * roll, which run on libuv's thread pool and call back on the owner thread.
 *
 * Folder layout:
 *   <20-digit base>.log / .index / .timeindex   one segment each (formats in their files)
 *   .clean-shutdown                             empty; present only between a clean close and the next open
 *   .recovery-point                             base offset of the oldest segment not known to be on stable
 *                                               storage (18 bytes, recovery-point.ts); replaced by a rename
 *   <20-digit offset>.snapshot                  the owner's idempotent-producer state as of that offset
 *                                               (producer-snapshot.ts; written at each roll, not by this class)
 *   *.deleted, *.tmp                            ours, on their way out; open removes them
 *   *.cleaned, <base>.log.swap,                 a compaction pass's files (compaction.ts); open removes
 *   <base>.log.<last>.swap                      the first and completes the others (a merged group's
 *                                               swap names its last member, which open removes)
 *
 * Invariants:
 * - segments are sorted and contiguous: segment i+1's base offset = segment i's next offset,
 *   except after compaction (cleanupPolicy 'compact' or 'compact,delete'), where a closed
 *   segment may end below the next one's base and hold gaps (compaction.ts); offsets never
 *   change and never go back; only the last (active) one is ever appended to or cut, and
 *   compaction never touches it;
 * - logStartOffset = the first segment's base offset <= durableOffset <= logEndOffset = the
 *   active segment's next offset;
 * - offsets below durableOffset are on stable storage (fdatasync returned); it is contiguous,
 *   so it never passes the end of a rolled segment whose seal fdatasync has not returned,
 *   and syncAsync() calls back only once durableOffset reaches the offset it returned;
 * - every segment that ends at or below the recovery point (in memory, and the value in
 *   `.recovery-point`, which may lag behind it) is on stable storage, .log and indexes: it
 *   is the base of the oldest segment whose roll's fdatasync has not completed, or of the
 *   active segment;
 * - a segment whose fdatasync runs on the thread pool (syncAsync, or the seal of a roll)
 *   stays open until it calls back, whatever retention, compaction or close do meanwhile;
 * - the in-memory state never claims bytes that a failed write did not write: a failed
 *   append is cut back from the files before its error is rethrown, so a retry appends
 *   cleanly;
 * - after a failed fdatasync (a sync or a roll's seal) the log refuses writes (STORAGE_ERROR)
 *   until it is reopened: the kernel may have dropped the dirty pages and a second fdatasync
 *   would lie ("fsyncgate"), so only the recovery scan of a reopen can say what is on disk.
 *
 * Recovery after a crash (no clean-shutdown marker), as Kafka's log recovery:
 * - segments that end at or below the recovery point are trusted (cheap index check);
 * - every segment from the recovery point on is scanned batch by batch: a rolled segment
 *   whose seal fdatasync never returned may have lost pages in a machine crash. If one of
 *   them has a torn or corrupt tail (or, outside compacted topics, ends below the next
 *   segment's base), every later segment is deleted and it is cut there, becoming the
 *   active segment: nothing after a torn point can be trusted, and no acks=all batch can
 *   be lost by this, because durableOffset never passed the torn segment's end;
 * - `.recovery-point` missing or unreadable: every segment is scanned (Kafka's rule when it
 *   has no recovery point). This is always safe. It costs one full scan, once, for a data
 *   directory written before recovery points existed that was not shut down cleanly (a clean
 *   shutdown leaves the marker, which needs no scan), or after a machine crash kept the
 *   rename of a new file but lost its bytes (the runtime writes are not fsynced). The open
 *   then writes the file durably (fsynced, then renamed, then the folder fsynced), so a new
 *   partition has it before its first roll.
 *
 * Errors: file system failures surface as STORAGE_ERROR (retriable); corrupt bytes as
 * CORRUPT_MESSAGE; offsets outside [logStartOffset, logEndOffset] as OFFSET_OUT_OF_RANGE.
 * Misuse by the caller (appending at the wrong offset, after close) is an assertion.
 */
import { AssertionError, assert } from '../assert.js';
import { asStorageError, SluiceError } from '../errors.js';
import {
  CLEANUP_POLICIES,
  CLEANUP_POLICY_DEFAULT,
  DELETE_RETENTION_MS_DEFAULT,
  DELETE_RETENTION_MS_MAX,
  deletesByRetention,
  isCleanupPolicy,
  isCompacted,
  type CleanupPolicy,
} from './cleanup-policy.js';
import { crc32c } from './crc32c.js';
import type { FileSystem } from './fs.js';
import { baseName, dirName, joinPath, nodeFileSystem, replaceFile, TMP_SUFFIX } from './fs.js';
import {
  APPEND_BYTES_MAX,
  BATCH_BYTES_LIMIT,
  BATCH_BYTES_MIN,
  BATCH_LENGTH_MAX,
  BATCH_LENGTH_MIN,
  RELATIVE_OFFSET_MAX,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  PREALLOCATE_BYTES_DEFAULT,
  PREALLOCATE_BYTES_MAX,
  PREALLOCATE_INTERVAL_MS_MIN,
} from './limits.js';
import {
  ATTRIBUTES_OFFSET,
  BASE_OFFSET_OFFSET,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  COMPRESSION_MASK,
  CRC_OFFSET,
  decodeRecords,
  LOG_OVERHEAD_BYTES,
  MAGIC_OFFSET,
  MAGIC_V2,
  RECORDS_OFFSET,
  TIMESTAMP_TYPE_BIT,
  readBatchHeader,
  validateBatch,
  type BatchHeader,
} from './record-batch.js';
import type { TruncationReport } from './recovery.js';
import {
  deleteSegmentFiles,
  DELETED_SUFFIX,
  INDEX_SUFFIX,
  LOG_SUFFIX,
  parseSegmentLogName,
  readInt64,
  Segment,
  segmentFileName,
  type SegmentContext,
  type SegmentLoadMode,
  type SegmentLoadResult,
  TIME_INDEX_SUFFIX,
} from './segment.js';
import { verifyPartitionDir, type VerifyReport } from './verify.js';
import { isTimestampType, TIMESTAMP_TYPE_DEFAULT, TIMESTAMP_TYPES, type TimestampType } from './timestamp-type.js';
import { decodeRecoveryPoint, encodeRecoveryPoint, RECOVERY_POINT_FILE } from './recovery-point.js';
import {
  commitCleanedSegments,
  compactSegments,
  discardCleanedSegment,
  recoverCompactionFiles,
  type CompactionPlan,
  type CompactionResult,
} from './compaction.js';

export { verifyPartitionDir } from './verify.js';
export type { SegmentVerifyReport, VerifyError, VerifyReport } from './verify.js';
export type { TruncationReport } from './recovery.js';
export type { CompactionResult } from './compaction.js';
export { RECOVERY_POINT_FILE } from './recovery-point.js';

/** Per-partition log settings; -1 means unlimited for the retention limits, as Kafka. */
export interface LogConfig {
  /** Roll to a new segment before one grows past this (Kafka's segment.bytes). */
  segmentBytes: number;
  /** Roll a non-empty segment this long after it was created (segment.ms). */
  segmentMs: number;
  /** Delete closed segments whose newest record is older than this (retention.ms), -1 = never. */
  retentionMs: number;
  /** Delete the oldest closed segments while the log stays at least this big (retention.bytes), -1 = never. */
  retentionBytes: number;
  /** Bytes of log between two offset index entries (index.interval.bytes). */
  indexIntervalBytes: number;
  /** The largest batch the owner accepts (message.max.bytes). */
  batchBytesMax: number;
  /** 'delete' (retention only), 'compact' (compaction only) or 'compact,delete' (cleanup.policy). */
  cleanupPolicy: CleanupPolicy;
  /** How long compaction keeps a tombstone after its segment's newest record (delete.retention.ms). */
  deleteRetentionMs: number;
  /** 'CreateTime' or 'LogAppendTime' (message.timestamp.type): under the second, the owner stamps batches as it appends them (timestamp-type.ts). */
  timestampType: TimestampType;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export const DEFAULT_LOG_CONFIG: Readonly<LogConfig> = Object.freeze({
  segmentBytes: 1024 * 1024 * 1024, // Kafka's default: few files, each big enough for sequential I/O
  segmentMs: 7 * DAY_MS, // Kafka's default: a quiet topic still rolls, so retention can delete old data
  retentionMs: 7 * DAY_MS, // Kafka's default
  retentionBytes: -1, // Kafka's default: no size limit
  indexIntervalBytes: 4096, // Kafka's default: a lookup reads at most about one page of headers
  batchBytesMax: 1024 * 1024 + 12, // Kafka's message.max.bytes (1048588)
  cleanupPolicy: CLEANUP_POLICY_DEFAULT, // Kafka's default: retention, no compaction
  deleteRetentionMs: DELETE_RETENTION_MS_DEFAULT, // Kafka's default: a day
  timestampType: TIMESTAMP_TYPE_DEFAULT, // Kafka's default: the producer's timestamps
});

/** Name of the clean-shutdown marker in the partition folder. */
export const CLEAN_SHUTDOWN_MARKER = '.clean-shutdown';
/** Infix of a deleted partition folder: `<dir>.deleted-<n>`, removed by rm -rf. */
export const DELETED_DIR_INFIX = '.deleted-';
/** A file name's limit on Linux filesystems (NAME_MAX): a deleted folder's name is cut to fit it. */
export const FILE_NAME_BYTES_MAX = 255;

export interface Clock {
  now(): number;
}

export interface Logger {
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
}

const SYSTEM_CLOCK: Clock = { now: () => Date.now() };
const SILENT_LOGGER: Logger = { info() {}, warn() {} };

/** What open() did to the folder. */
export interface RecoveryReport {
  /** Whether the active segment was scanned batch by batch (no clean-shutdown marker, or its cheap check failed). */
  scanned: boolean;
  /** Every segment read batch by batch (from the recovery point on after a crash, and any whose cheap check failed), oldest first. */
  segmentsScanned: string[];
  truncations: TruncationReport[];
  /** Segments deleted because an earlier one, not known to be synced, had a torn tail (see the top of the file). */
  segmentsDropped: string[];
  /** Index file names that were rewritten because they did not match the log. */
  indexesRebuilt: string[];
  /** Why a cheap check failed, corruption kept in closed segments, gaps between segments, leftovers removed. */
  problems: string[];
}

/**
 * Where a read will come from, so that the caller can reserve exactly `bytesMax` bytes of
 * shared memory before readInto() fills them. Valid until the next applyRetention().
 */
export interface ReadPlan {
  readonly segment: Segment;
  /** Position of the first batch in the segment. */
  readonly position: number;
  /** Size of the first batch (the one that contains the offset asked for). */
  readonly firstBatchBytes: number;
  /** Bytes readInto() may read: at least the first batch, at most to the end of the segment. */
  readonly bytesMax: number;
}

export interface RetentionResult {
  segmentsDeleted: number;
  bytesDeleted: number;
}

export interface PartitionLogOptions {
  dir: string;
  config: LogConfig;
  fs?: FileSystem;
  clock?: Clock;
  logger?: Logger;
  /** Zeros kept written ahead of the active segment's batches (default PREALLOCATE_BYTES_DEFAULT; 0: none). */
  preallocateBytes?: number;
}

/** Closes the handles of a segment compaction replaced: its file is gone from the folder, so a failure loses nothing. */
function closeReplaced(segment: Segment): void {
  try {
    segment.close();
  } catch {
    // nothing to lose
  }
}

/** Read size of the header walk of forEachBatchHeaderFrom: large reads, few syscalls. */
const HEADER_SCAN_CHUNK_BYTES = 1024 * 1024;

/** Rethrows anything but assertions and typed errors as STORAGE_ERROR with context. */
function storageError(err: unknown, what: string): Error {
  if (err instanceof AssertionError) return err;
  return asStorageError(err, what);
}

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_ARGUMENT', message);
}

/** Checks a LogConfig; throws INVALID_ARGUMENT naming the bad field. */
export function validateLogConfig(config: LogConfig): void {
  const int = (name: Exclude<keyof LogConfig, 'cleanupPolicy' | 'timestampType'>, min: number, max: number): void => {
    const v = config[name];
    if (!Number.isSafeInteger(v) || v < min || v > max) throw invalid(`log config ${name} = ${v}, must be an integer in [${min}, ${max}]`);
  };
  int('segmentBytes', SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
  int('segmentMs', 1, Number.MAX_SAFE_INTEGER);
  int('retentionMs', -1, Number.MAX_SAFE_INTEGER);
  int('retentionBytes', -1, Number.MAX_SAFE_INTEGER);
  int('indexIntervalBytes', 0, SEGMENT_BYTES_MAX);
  int('batchBytesMax', BATCH_BYTES_MIN, BATCH_BYTES_LIMIT);
  int('deleteRetentionMs', 0, DELETE_RETENTION_MS_MAX);
  if (!isCleanupPolicy(config.cleanupPolicy)) throw invalid(`log config cleanupPolicy = ${JSON.stringify(config.cleanupPolicy)}, must be one of ${CLEANUP_POLICIES.join(' | ')}`);
  if (!isTimestampType(config.timestampType)) throw invalid(`log config timestampType = ${JSON.stringify(config.timestampType)}, must be one of ${TIMESTAMP_TYPES.join(' | ')}`);
}

export class PartitionLog {
  readonly dir: string;
  readonly config: Readonly<LogConfig>;
  readonly #fs: FileSystem;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #ctx: SegmentContext;
  readonly #segments: Segment[];
  /** Sum of the sizes of all segments but the active one. */
  #closedBytes: number;
  #durableOffset: number;
  readonly #recoveryReport: RecoveryReport;
  /** syncAsync() calls that have not called back (their fdatasync runs, or they wait in #syncWaiters). */
  #syncsInFlight = 0;
  /** The segments fdatasyncs in flight are syncing (syncAsync and seals), with their count (retention must not close them under them). */
  readonly #syncingSegments = new Map<Segment, number>();
  /** Segments replaced (compaction) or closed (close) while an fdatasync of theirs ran: closed when it is done. */
  readonly #closeAfterSync = new Set<Segment>();
  /**
   * Rolled segments whose seal fdatasync has not succeeded, oldest first (a failed one stays:
   * it is never known synced). durableOffset stops at the first of them not fully synced.
   */
  readonly #unsealed: Segment[] = [];
  /** Seal fdatasyncs that have not called back. */
  #sealsInFlight = 0;
  /** syncAsync() callbacks whose own fdatasync is done but whose target waits for a seal. */
  readonly #syncWaiters: { target: number; done: (err: SluiceError | null) => void }[] = [];
  /** whenSealed() callbacks. */
  readonly #sealWaiters: (() => void)[] = [];
  /**
   * Called when a rolled segment's seal fdatasync moved durableOffset up on its own (no
   * syncAsync() call back tells the owner then), so that it can publish the new value.
   */
  onSealDurable: (() => void) | null = null;
  /** Called on the owner thread after each roll, with the new active segment's base offset (the owner snapshots its producer state there). */
  onRoll: ((baseOffset: number) => void) | null = null;
  /** The recovery point last written to `.recovery-point` (-1: none written by this log). */
  #recoveryPointWritten: number;
  /** Zeros to keep ahead of the active segment's batches; 0 once a refill failed. */
  #preallocateBytes: number;
  /** When the last refill was considered (-Infinity: never), and #appendedBytes then: the write rate since. */
  #preallocatedMs = Number.NEGATIVE_INFINITY;
  #preallocatedAtBytes = 0;
  /** Bytes appended since the log opened. */
  #appendedBytes = 0;
  /** Set when an fdatasync failed: writes refuse until a reopen (see the invariants above). */
  #failure: string | null = null;
  #closed = false;
  /** Compaction: segments with baseOffset below this were cleaned since open (in memory only: a restart re-cleans, which is idempotent). */
  #cleanedUpTo: number;
  /** When a tombstone the last pass kept becomes droppable; Infinity when none. */
  #tombstoneDeadlineMs = Infinity;
  #compacting = false;
  /** One header buffer for every lookup: reads allocate no header buffer of their own. */
  readonly #headerScratch = new Uint8Array(BATCH_HEADER_BYTES);
  readonly #headerView = new DataView(this.#headerScratch.buffer);

  private constructor(opts: {
    dir: string;
    config: LogConfig;
    fs: FileSystem;
    clock: Clock;
    logger: Logger;
    segments: Segment[];
    report: RecoveryReport;
    recoveryPointWritten: number;
    preallocateBytes: number;
  }) {
    this.dir = opts.dir;
    this.config = Object.freeze({ ...opts.config });
    this.#fs = opts.fs;
    this.#clock = opts.clock;
    this.#logger = opts.logger;
    this.#ctx = { fs: opts.fs, dir: opts.dir, indexIntervalBytes: opts.config.indexIntervalBytes };
    this.#segments = opts.segments;
    this.#recoveryReport = opts.report;
    let closed = 0;
    for (let i = 0; i < opts.segments.length - 1; i++) closed += opts.segments[i].sizeBytes;
    this.#closedBytes = closed;
    this.#durableOffset = this.#active.nextOffset;
    this.#cleanedUpTo = this.logStartOffset;
    this.#recoveryPointWritten = opts.recoveryPointWritten;
    this.#preallocateBytes = opts.preallocateBytes;
  }

  // -------------------------------------------------------------- open and recovery

  /**
   * Opens (creating if missing) the log in `dir`. With the clean-shutdown marker, segments
   * are trusted and only their indexes checked cheaply; without it, every segment from the
   * recovery point on is scanned with the recovery decision table, a torn or corrupt tail
   * of the active segment is cut, and a torn closed segment is cut with every later segment
   * dropped (see the top of the file). Segments below the recovery point are never scanned
   * unless their indexes fail the check. Everything is durable when this returns: the
   * scanned segments are fdatasynced, the recovery point file then names the active segment,
   * and the marker is removed durably, so a crash after it always scans.
   */
  static open(opts: PartitionLogOptions): PartitionLog {
    validateLogConfig(opts.config);
    const fs = opts.fs ?? nodeFileSystem;
    const clock = opts.clock ?? SYSTEM_CLOCK;
    const logger = opts.logger ?? SILENT_LOGGER;
    const dir = opts.dir;
    const segments: Segment[] = [];
    try {
      if (!fs.exists(dir)) {
        fs.mkdirp(dir);
        // The new folder's own entry must survive a power cut too, or its segments vanish with it.
        fs.fsyncDir(dirName(dir));
      }
      const report: RecoveryReport = {
        scanned: false, segmentsScanned: [], truncations: [], segmentsDropped: [], indexesRebuilt: [], problems: [],
      };
      const bases = removeLeftovers(fs, dir, report);
      const markerPath = joinPath(dir, CLEAN_SHUTDOWN_MARKER);
      const clean = fs.exists(markerPath);
      const ctx: SegmentContext = { fs, dir, indexIntervalBytes: opts.config.indexIntervalBytes };
      const now = clock.now();
      const stored = readRecoveryPoint(fs, dir);
      let dirChanged = false;
      if (bases.length === 0) {
        segments.push(Segment.create(ctx, 0, now));
        dirChanged = true;
      } else {
        // A clean close synced everything; else scan from the recovery point, or everything when it is not known.
        let recoveryPoint = Infinity;
        if (!clean) recoveryPoint = typeof stored === 'number' ? stored : 0;
        if (!clean && typeof stored === 'string') report.problems.push(`${RECOVERY_POINT_FILE}: ${stored}; every segment is scanned`);
        const compacted = isCompacted(opts.config.cleanupPolicy);
        loadSegments({ ctx, bases, clean, recoveryPoint, compacted, now, segments, report });
      }
      const active = segments[segments.length - 1];
      // Bytes a killed process left in the page cache are readable but not yet durable.
      active.sync(true);
      // Every segment is durable now: the active segment is the oldest not known synced.
      let recoveryPointWritten = typeof stored === 'number' ? stored : -1;
      if (recoveryPointWritten !== active.baseOffset) {
        writeRecoveryPoint(fs, dir, active.baseOffset, { durable: true });
        recoveryPointWritten = active.baseOffset;
        dirChanged = true;
      }
      if (clean) {
        fs.unlink(markerPath);
        dirChanged = true;
      }
      if (dirChanged) fs.fsyncDir(dir);
      const preallocateBytes = opts.preallocateBytes ?? PREALLOCATE_BYTES_DEFAULT;
      if (!Number.isSafeInteger(preallocateBytes) || preallocateBytes < 0 || preallocateBytes > PREALLOCATE_BYTES_MAX) {
        throw invalid(`preallocateBytes = ${preallocateBytes}, must be an integer from 0 to ${PREALLOCATE_BYTES_MAX}`);
      }
      const log = new PartitionLog({ dir, config: opts.config, fs, clock, logger, segments, report, recoveryPointWritten, preallocateBytes });
      log.#logOpen(clean);
      return log;
    } catch (err) {
      for (const s of segments) {
        try {
          s.close();
        } catch {
          // Already failing: the first error is the one to report.
        }
      }
      throw storageError(err, `open partition log ${dir}`);
    }
  }

  #logOpen(clean: boolean): void {
    const r = this.#recoveryReport;
    const fields = {
      dir: this.dir, clean, scanned: r.scanned, segmentsScanned: r.segmentsScanned.length, logStartOffset: this.logStartOffset,
      logEndOffset: this.logEndOffset, segments: this.#segments.length,
    };
    if (r.truncations.length > 0 || r.segmentsDropped.length > 0 || r.indexesRebuilt.length > 0 || r.problems.length > 0) {
      const details = { truncations: r.truncations, segmentsDropped: r.segmentsDropped, indexesRebuilt: r.indexesRebuilt, problems: r.problems };
      this.#logger.warn({ ...fields, ...details }, 'partition log recovered');
    } else this.#logger.info(fields, 'partition log opened');
  }

  get recoveryReport(): RecoveryReport {
    return this.#recoveryReport;
  }

  // -------------------------------------------------------------- state

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1];
  }

  get logStartOffset(): number {
    return this.#segments[0].baseOffset;
  }

  get logEndOffset(): number {
    return this.#active.nextOffset;
  }

  get durableOffset(): number {
    return this.#durableOffset;
  }

  get sizeBytes(): number {
    return this.#closedBytes + this.#active.sizeBytes;
  }

  get segmentCount(): number {
    return this.#segments.length;
  }

  get activeSegmentBaseOffset(): number {
    return this.#active.baseOffset;
  }

  /** Base offsets of all segments, oldest first (for tools and tests). */
  segmentBaseOffsets(): number[] {
    return this.#segments.map((s) => s.baseOffset);
  }

  /** True after an fdatasync failed: reopen the log to write again. */
  get failed(): boolean {
    return this.#failure !== null;
  }

  #checkWritable(): void {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    if (this.#failure !== null) {
      throw new SluiceError('STORAGE_ERROR', `partition log ${this.dir} refuses writes after a failed fdatasync (${this.#failure}); reopen it`);
    }
  }

  // -------------------------------------------------------------- append, roll, sync

  /**
   * Appends `bytes`: one or more whole batches, validated by the caller, baseOffsets
   * assigned and contiguous from logEndOffset (= firstOffset) to nextOffset. May be a view
   * over a SharedArrayBuffer. Rolls first when needed. One write for the bytes (plus one per
   * index file when entries are due). On STORAGE_ERROR nothing was appended and the call
   * may be retried. Timestamps come from the batch headers, which the log walks anyway for
   * its index entries.
   */
  append(bytes: Uint8Array, firstOffset: number, nextOffset: number): void {
    this.#checkWritable();
    assert(firstOffset === this.logEndOffset, () => `append at ${firstOffset}, log end offset is ${this.logEndOffset}`);
    assert(bytes.length > 0 && bytes.length <= APPEND_BYTES_MAX, () => `append of ${bytes.length} bytes`);
    try {
      const now = this.#clock.now();
      if (this.#shouldRoll(bytes.length, nextOffset, now)) this.#roll();
      this.#active.append(bytes, firstOffset, nextOffset);
      this.#appendedBytes += bytes.length;
      if (this.#preallocateBytes > 0) this.#preallocate(now);
    } catch (err) {
      throw storageError(err, `append to ${this.dir} at offset ${firstOffset}`);
    }
  }

  /**
   * Refills the zeros ahead of the active segment's end (limits.ts, PREALLOCATE_BYTES_DEFAULT)
   * once less than half is left, at most once per PREALLOCATE_INTERVAL_MS_MIN, and only
   * while the log is written slower than the zeros' size a second: a faster writer outruns
   * them within the second (it would pay for the zeros and win nothing; its fsyncs are few
   * per byte anyway). Never past segmentBytes. A failure stops preallocation for this log
   * (the append it follows stands: its bytes were written first) and is logged; whatever
   * zeros were written get trimmed.
   */
  #preallocate(now: number): void {
    const active = this.#active;
    const elapsedMs = now - this.#preallocatedMs;
    if (active.preallocatedBytes * 2 >= this.#preallocateBytes || elapsedMs < PREALLOCATE_INTERVAL_MS_MIN) return;
    const written = this.#appendedBytes - this.#preallocatedAtBytes;
    this.#preallocatedMs = now;
    this.#preallocatedAtBytes = this.#appendedBytes;
    if (written * 1000 > this.#preallocateBytes * elapsedMs) return; // a fast writer: measure again in a while
    const end = Math.min(active.sizeBytes + this.#preallocateBytes, this.config.segmentBytes);
    if (end <= active.sizeBytes + active.preallocatedBytes) return;
    try {
      active.preallocate(end);
    } catch (err) {
      this.#preallocateBytes = 0;
      this.#logger.warn({ dir: this.dir, segment: active.name, err: String(err) }, 'preallocating segment space failed; appends go on without it');
    }
  }

  #shouldRoll(appendBytes: number, appendNextOffset: number, now: number): boolean {
    const active = this.#active;
    if (active.isSealed) return true; // a roll failed half way: finish it
    if (active.isEmpty) return false; // never roll an empty segment, however big the append
    return (
      active.sizeBytes + appendBytes > this.config.segmentBytes ||
      now - active.createdMs >= this.config.segmentMs ||
      appendNextOffset - 1 - active.baseOffset > RELATIVE_OFFSET_MAX
    );
  }

  /** Rolls by segmentMs without an append; only a non-empty active segment. Returns whether it rolled. */
  maybeRoll(now: number): boolean {
    this.#checkWritable();
    const active = this.#active;
    if (active.isEmpty || (!active.isSealed && now - active.createdMs < this.config.segmentMs)) return false;
    try {
      this.#roll();
    } catch (err) {
      throw storageError(err, `roll ${this.dir}`);
    }
    return true;
  }

  /**
   * Closes the active segment and starts a new one at logEndOffset: the old segment's final
   * index entries are written, its seal fdatasync (.log and both indexes) starts on the
   * thread pool (#startSeal), and the new segment's files are created and the folder fsynced
   * (small, synchronous). Appends go on into the new segment while the seal runs; until it
   * calls back, durableOffset stays at or below the old segment's end. A failure leaves the
   * old segment sealed (its seal running) and the next append retries the rest of the roll.
   */
  #roll(): void {
    const old = this.#active;
    if (!old.isSealed) {
      old.finishIndexes();
      this.#startSeal(old);
    }
    const next = Segment.create(this.#ctx, old.nextOffset, this.#clock.now());
    try {
      this.#fs.fsyncDir(this.dir);
    } catch (err) {
      next.close();
      throw err;
    }
    this.#closedBytes += old.sizeBytes;
    this.#segments.push(next);
    this.onRoll?.(next.baseOffset);
  }

  /**
   * The seal of a rolled segment, on libuv's thread pool: as Kafka flushes a rolled segment
   * in the background, so that a roll of a large segment written with acks=1 (not yet
   * fsynced) does not stall the owner and every partition it owns for seconds.
   */
  #startSeal(segment: Segment): void {
    this.#unsealed.push(segment);
    this.#sealsInFlight++;
    this.#trackSync(segment);
    segment.sealAsync((err) => this.#sealDone(segment, err));
  }

  #sealDone(segment: Segment, err: Error | null): void {
    this.#sealsInFlight--;
    this.#untrackSync(segment);
    const at = this.#unsealed.indexOf(segment);
    if (err === null && at >= 0) this.#unsealed.splice(at, 1);
    // After close the fd was only kept open for the fdatasync; the folder may even be another log's now.
    if (!this.#closed) {
      if (err !== null) {
        this.#failure ??= `fdatasync while rolling ${segment.name}`;
        const error = asStorageError(err, `seal ${segment.name} of ${this.dir}`);
        this.#logger.warn({ dir: this.dir, segment: segment.name, err: error.message }, 'fdatasync of a rolled segment failed; the log refuses writes until reopened');
        for (const w of this.#syncWaiters.splice(0)) w.done(error);
      } else {
        const before = this.#durableOffset;
        this.#durableMoved();
        this.#storeRecoveryPoint();
        if (this.#durableOffset !== before) this.onSealDurable?.();
      }
    }
    if (this.#sealsInFlight === 0) for (const wake of this.#sealWaiters.splice(0)) wake();
  }

  /** The base offset of the oldest segment not known to be on stable storage. */
  get #recoveryPoint(): number {
    return this.#unsealed.length > 0 ? this.#unsealed[0].baseOffset : this.#active.baseOffset;
  }

  /**
   * Writes a recovery point that moved up to `.recovery-point`, not fsynced (see
   * writeRecoveryPoint). A failure costs only a longer scan after a crash: it is logged.
   */
  #storeRecoveryPoint(): void {
    const point = this.#recoveryPoint;
    if (point <= this.#recoveryPointWritten) return;
    try {
      writeRecoveryPoint(this.#fs, this.dir, point, { durable: false });
      this.#recoveryPointWritten = point;
    } catch (err) {
      this.#logger.warn({ dir: this.dir, recoveryPoint: point, err: (err as Error).message }, 'could not write the recovery point; a recovery after a crash will scan more');
    }
  }

  #trackSync(segment: Segment): void {
    this.#syncingSegments.set(segment, (this.#syncingSegments.get(segment) ?? 0) + 1);
  }

  #untrackSync(segment: Segment): void {
    const left = this.#syncingSegments.get(segment)! - 1;
    if (left > 0) {
      this.#syncingSegments.set(segment, left);
      return;
    }
    this.#syncingSegments.delete(segment);
    if (this.#closeAfterSync.delete(segment)) closeReplaced(segment);
  }

  /**
   * durableOffset from the segments' synced offsets: the first rolled segment not fully
   * synced stops it (everything before it is synced), else the active segment's synced
   * offset. Never moves back.
   */
  #refreshDurable(): void {
    let durable = this.#active.syncedOffset;
    for (const s of this.#unsealed) {
      if (s.syncedOffset < s.nextOffset) {
        durable = s.syncedOffset;
        break;
      }
    }
    if (durable > this.#durableOffset) this.#durableOffset = durable;
  }

  /** After an fdatasync returned: durableOffset moves, and the syncAsync() callbacks it now covers run. */
  #durableMoved(): void {
    this.#refreshDurable();
    if (this.#syncWaiters.length === 0) return;
    const ready = this.#syncWaiters.filter((w) => w.target <= this.#durableOffset);
    if (ready.length === 0) return;
    const waiting = this.#syncWaiters.filter((w) => w.target > this.#durableOffset);
    this.#syncWaiters.length = 0;
    this.#syncWaiters.push(...waiting);
    for (const w of ready) w.done(null);
  }

  /** Runs `done` once durableOffset reaches `target`: now, or when the seal that holds it back calls back. */
  #whenDurable(target: number, done: (err: SluiceError | null) => void): void {
    this.#refreshDurable();
    if (this.#durableOffset >= target) return done(null);
    if (this.#failure !== null) return done(new SluiceError('STORAGE_ERROR', `partition log ${this.dir}: ${this.#failure}`));
    if (this.#closed) return done(new SluiceError('STORAGE_ERROR', `partition log ${this.dir} closed before offset ${target} was durable`));
    assert(this.#sealsInFlight > 0, () => `durableOffset ${this.#durableOffset} of ${this.dir} is below ${target} with no fdatasync in flight`);
    this.#syncWaiters.push({ target, done });
  }

  /**
   * fdatasync of everything not yet durable: the rolled segments whose seal still runs (on
   * the thread pool; their files stay open until it calls back), then the active segment;
   * then durableOffset = logEndOffset. A no-op when nothing was written since the last
   * sync. Blocks for as long as those fdatasyncs take: for close, shutdown and tools; the
   * owner's hot path uses syncAsync(). A failure is STORAGE_ERROR and the log then refuses
   * writes until reopened.
   */
  sync(): void {
    this.#checkWritable();
    const active = this.#active;
    this.#refreshDurable();
    if (this.#durableOffset === this.logEndOffset && !active.hasUnsyncedBytes) return;
    let syncing = active;
    try {
      for (const s of this.#unsealed) {
        syncing = s;
        s.sync();
        s.syncIndexes();
      }
      syncing = active;
      active.sync();
    } catch (err) {
      this.#failure = `fdatasync of ${syncing.name}`;
      throw storageError(err, `sync ${this.dir}`);
    }
    this.#durableMoved();
  }

  /**
   * Starts an fdatasync of the active segment on libuv's thread pool and returns the offset
   * it will make durable, or -1 when everything is durable already (no callback then). The
   * owner keeps appending meanwhile: that is what lets one fsync serve every batch that
   * arrived while the previous one ran. `callback` runs on this thread once durableOffset
   * has reached the returned offset: when the fdatasync returns, or later, when the seal of
   * a rolled segment before it returns (durableOffset is contiguous), or at once when only
   * a seal was missing. On failure (of either) the log refuses writes, as after a failed
   * sync(). `syncInFlight` is true until every callback ran; the caller should not close
   * the log before (the log keeps a syncing segment's files open until its fdatasync
   * returns, but the callback would find the log closed). Retention and rolls may run:
   * retention keeps the segment being synced until its sync is done.
   */
  syncAsync(callback: (err: SluiceError | null) => void): number {
    this.#checkWritable();
    const target = this.logEndOffset;
    const active = this.#active;
    this.#refreshDurable();
    if (this.#durableOffset >= target && !active.hasUnsyncedBytes) return -1;
    this.#syncsInFlight++;
    const done = (err: SluiceError | null): void => {
      this.#syncsInFlight--;
      callback(err);
    };
    if (!active.hasUnsyncedBytes) {
      // Every written byte is synced or being sealed: only a rolled segment's seal holds durableOffset back.
      this.#whenDurable(target, done);
      return target;
    }
    this.#trackSync(active);
    active.syncAsync((err) => {
      this.#untrackSync(active);
      if (err !== null) {
        this.#failure ??= `fdatasync of ${active.name}`;
        done(asStorageError(err, `sync ${this.dir}`));
        return;
      }
      this.#durableMoved();
      this.#whenDurable(target, done);
    });
    return target;
  }

  /**
   * Calls `fn` with the header of every batch from `offset` on (or from the log start, when
   * retention removed `offset`), segment by segment through the active one, in offset
   * order. A walk of the headers only (one large read at a time); it stops in a segment at
   * the first header that does not frame (open has cut a torn tail already).
   */
  forEachBatchHeaderFrom(offset: number, fn: (header: BatchHeader) => void): void {
    const chunk = new Uint8Array(HEADER_SCAN_CHUNK_BYTES);
    const view = new DataView(chunk.buffer);
    for (const segment of this.#segments) {
      if (segment.nextOffset <= offset && segment !== this.#active) continue;
      let position = 0;
      walk: while (position + BATCH_HEADER_BYTES <= segment.sizeBytes) {
        const n = segment.read(chunk, position);
        let p = 0;
        while (p + BATCH_HEADER_BYTES <= n) {
          const header = readBatchHeader(view, p);
          if (header.batchLength < BATCH_LENGTH_MIN || header.batchLength > BATCH_LENGTH_MAX) break walk;
          if (header.baseOffset >= offset) fn(header);
          p += header.sizeBytes;
        }
        if (p === 0) break;
        position += p;
      }
    }
  }

  /** True while a syncAsync() callback has not run (its fdatasync, or a seal it waits for, runs). */
  get syncInFlight(): boolean {
    return this.#syncsInFlight > 0;
  }

  /** True while the seal fdatasync of a rolled segment runs on the thread pool. */
  get sealInFlight(): boolean {
    return this.#sealsInFlight > 0;
  }

  /**
   * Calls `callback` (on this thread) once no seal fdatasync is in flight, whether it
   * succeeded or not; returns false, and never calls back, when none is in flight now.
   */
  whenSealed(callback: () => void): boolean {
    if (this.#sealsInFlight === 0) return false;
    this.#sealWaiters.push(callback);
    return true;
  }

  // -------------------------------------------------------------- reads

  #outOfRange(offset: number): SluiceError {
    return new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside [${this.logStartOffset}, ${this.logEndOffset}] of ${this.dir}`);
  }

  /** Index of the segment whose range holds `offset` (the last with baseOffset <= offset). */
  #segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#segments[mid].baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Plans a read at `offset` of up to `maxBytes`: finds the batch that contains the offset
   * (index entry, then batch headers), or, when the offset falls in a gap that compaction
   * left, the batch holding the next offset above it. Null at logEndOffset (and in a gap
   * that reaches an empty active segment). Throws OFFSET_OUT_OF_RANGE
   * outside [logStartOffset, logEndOffset]. Reads never cross a segment boundary (as
   * Kafka's), and always cover the whole first batch, even past maxBytes (KIP-74).
   */
  locate(offset: number, maxBytes: number): ReadPlan | null {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    assert(Number.isSafeInteger(offset), () => `offset ${offset} is an integer`);
    if (offset < this.logStartOffset || offset > this.logEndOffset) throw this.#outOfRange(offset);
    if (offset === this.logEndOffset) return null;
    try {
      for (let i = this.#segmentIndexFor(offset); i < this.#segments.length; i++) {
        const segment = this.#segments[i];
        // Not found in a segment means a gap skipped the offset: the next segment's first batch follows it.
        const found = segment.findBatch(offset, this.#headerScratch, this.#headerView);
        if (found === null) continue;
        const toEnd = segment.sizeBytes - found.position;
        const bytesMax = Math.max(found.sizeBytes, Math.min(maxBytes, toEnd));
        return { segment, position: found.position, firstBatchBytes: found.sizeBytes, bytesMax };
      }
    } catch (err) {
      throw storageError(err, `read ${this.dir} at offset ${offset}`);
    }
    // Compaction may drop the last batches of the closed segments (expired tombstones) while
    // the active segment is still empty: nothing at or after the offset yet, as at the log end.
    if (offset < this.#active.baseOffset) return null;
    throw new SluiceError('CORRUPT_MESSAGE', `${this.dir}: no batch holds offset ${offset} below the log end offset ${this.logEndOffset}`);
  }

  /**
   * Reads the planned bytes into `target` (at least plan.bytesMax long; may be a view over
   * a SharedArrayBuffer), cut at the last whole batch, and checks the CRC-32C of every batch
   * it returns. A bad first batch throws CORRUPT_MESSAGE naming the segment, position and
   * offset; a bad later batch ends the read before it (the good batches are returned, and
   * the next read, which starts at the bad one, throws). Returns the byte count.
   */
  readInto(plan: ReadPlan, target: Uint8Array): number {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    assert(target.length >= plan.bytesMax, () => `read target of ${target.length} bytes, plan needs ${plan.bytesMax}`);
    const segment = plan.segment;
    if (segment.isClosed) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `segment ${segment.name} of ${this.dir} was deleted by retention after the read was planned`);
    }
    let n: number;
    try {
      n = segment.read(target.subarray(0, plan.bytesMax), plan.position);
    } catch (err) {
      throw storageError(err, `read ${segment.name} of ${this.dir}`);
    }
    const view = new DataView(target.buffer, target.byteOffset, n);
    let pos = 0;
    while (pos + BATCH_HEADER_BYTES <= n) {
      const problem = checkBatch(target, view, pos, n);
      if (problem === 'incomplete') break;
      if (problem !== null) {
        if (pos > 0) break;
        const offset = readInt64(view, BASE_OFFSET_OFFSET);
        throw new SluiceError('CORRUPT_MESSAGE', `${this.dir}/${segment.name}: batch at position ${plan.position} (offset ${offset}): ${problem}`);
      }
      pos += LOG_OVERHEAD_BYTES + view.getInt32(pos + BATCH_LENGTH_OFFSET, false);
    }
    if (pos === 0) {
      throw new SluiceError('CORRUPT_MESSAGE', `${this.dir}/${segment.name}: the batch at position ${plan.position} is shorter on disk than in the log`);
    }
    return pos;
  }

  /** Convenience: locate + allocate + readInto. Null at logEndOffset. */
  read(offset: number, maxBytes: number): Uint8Array | null {
    const plan = this.locate(offset, maxBytes);
    if (plan === null) return null;
    const target = new Uint8Array(plan.bytesMax);
    const n = this.readInto(plan, target);
    return target.subarray(0, n);
  }

  /**
   * The first offset whose record timestamp is >= `timestamp`, or null when no record has
   * one (Kafka's ListOffsets by time). Skips segments whose largest timestamp is older,
   * starts in the right one at the time index entry just below the target, walks batch
   * headers to the first batch whose maxTimestamp reaches it, and decodes that batch's
   * records for the exact record. A compressed batch is not decompressed here (the owner
   * never inflates batches): its base offset is returned, which is at or before the exact
   * record, so a consumer starting there sees every record at or after the time. Same for
   * a LogAppendTime batch, whose records all carry the batch's time.
   */
  offsetForTimestamp(timestamp: number): number | null {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    if (!Number.isSafeInteger(timestamp)) throw invalid(`timestamp ${timestamp} is not an integer`);
    try {
      for (const segment of this.#segments) {
        if (segment.largestTimestamp < timestamp) continue;
        const found = this.#offsetForTimestampIn(segment, timestamp);
        if (found !== null) return found;
      }
      return null;
    } catch (err) {
      throw storageError(err, `offsetForTimestamp ${timestamp} in ${this.dir}`);
    }
  }

  #offsetForTimestampIn(segment: Segment, timestamp: number): number | null {
    // The entry with the largest timestamp strictly below the target: nothing before it qualifies.
    const entry = segment.timeIndex.lookup(timestamp - 1);
    let position = entry < 0 ? 0 : segment.offsetIndex.positionFor(segment.timeIndex.relativeOffsetAt(entry));
    for (;;) {
      const found = segment.findBatchByTimestamp(position, timestamp, this.#headerScratch, this.#headerView);
      if (found === null) return null;
      if ((found.attributes & (COMPRESSION_MASK | TIMESTAMP_TYPE_BIT)) !== 0) return found.baseOffset;
      const batch = new Uint8Array(found.sizeBytes);
      if (segment.read(batch, found.position) !== found.sizeBytes) {
        throw new SluiceError('CORRUPT_MESSAGE', `${this.dir}/${segment.name}: batch at position ${found.position} is cut short`);
      }
      let header;
      try {
        header = validateBatch(batch, Number.MAX_SAFE_INTEGER, 'stored');
      } catch (err) {
        throw new SluiceError('CORRUPT_MESSAGE', `${this.dir}/${segment.name}: batch at position ${found.position} (offset ${found.baseOffset}): ${(err as Error).message}`);
      }
      const records = decodeRecords(batch.subarray(RECORDS_OFFSET), header);
      for (const r of records) if (r.timestamp >= timestamp) return r.offset;
      position = found.position + found.sizeBytes; // maxTimestamp lied; keep walking
    }
  }

  // -------------------------------------------------------------- retention

  /**
   * Deletes whole closed segments, oldest first, never the active one: by time, those
   * whose largest timestamp is more than retentionMs before `now` (Kafka's rule; a segment
   * without timestamps counts as old); then by size, while the log without its oldest
   * segment still holds at least retentionBytes. logStartOffset moves to the next
   * segment's base offset. Files go in a crash-safe order (see Segment.deleteFiles). Only
   * under cleanupPolicy 'delete' or 'compact,delete', and not while a compaction runs.
   */
  applyRetention(now: number): RetentionResult {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    const { retentionMs, retentionBytes } = this.config;
    let segmentsDeleted = 0;
    let bytesDeleted = 0;
    // 'compact' alone never deletes by time or size; a pass in progress reads the closed
    // segments by path, so retention waits for the next housekeeping.
    if (!deletesByRetention(this.config.cleanupPolicy) || this.#compacting) return { segmentsDeleted, bytesDeleted };
    try {
      while (this.#segments.length > 1) {
        const oldest = this.#segments[0];
        const expired = retentionMs >= 0 && now - oldest.largestTimestamp > retentionMs;
        const oversize = retentionBytes >= 0 && this.sizeBytes - oldest.sizeBytes >= retentionBytes;
        if (!expired && !oversize) break;
        // A segment rolled while its fsync runs stays until the fsync is done (next housekeeping).
        if (this.#syncingSegments.has(oldest)) break;
        // Out of memory first: once its .log is renamed, the segment no longer exists.
        this.#segments.shift();
        this.#closedBytes -= oldest.sizeBytes;
        segmentsDeleted++;
        bytesDeleted += oldest.sizeBytes;
        oldest.deleteFiles();
      }
      if (segmentsDeleted > 0) this.#fs.fsyncDir(this.dir);
    } catch (err) {
      throw storageError(err, `retention in ${this.dir}`);
    }
    if (segmentsDeleted > 0) {
      this.#logger.info({ dir: this.dir, segmentsDeleted, bytesDeleted, logStartOffset: this.logStartOffset }, 'retention deleted segments');
    }
    return { segmentsDeleted, bytesDeleted };
  }

  // -------------------------------------------------------------- compaction

  /** True while compact() runs. */
  get compacting(): boolean {
    return this.#compacting;
  }

  /**
   * Whether a compaction pass has work: the log is compacted, no pass runs, and a segment
   * closed since the last pass (or since open), or a tombstone the last pass kept is now
   * droppable.
   */
  compactionDue(now: number): boolean {
    if (this.#closed || !isCompacted(this.config.cleanupPolicy) || this.#compacting || this.#segments.length < 2) return false;
    return this.#active.baseOffset > this.#cleanedUpTo || now >= this.#tombstoneDeadlineMs;
  }

  /**
   * One compaction pass over the closed segments (compaction.ts): the rewrite runs in slices
   * of `sliceBytes` of log (default COMPACTION_SLICE_BYTES) separated by `yieldNow`
   * (default: none, for tests and tools); appends, rolls and reads may run between slices
   * (the pass works on the closed segments as they were when it started); the swap is one synchronous
   * step at the end (applyCompaction). One pass at a time per log. Throws INVALID_ARGUMENT
   * for a log whose cleanupPolicy is 'delete', CORRUPT_MESSAGE / STORAGE_ERROR from the pass
   * (the log is unchanged then), UNKNOWN_TOPIC_OR_PARTITION when `isCancelled` stopped it or
   * the log closed meanwhile.
   */
  async compact(
    options: { now?: number; yieldNow?: () => Promise<void>; isCancelled?: () => boolean; sliceBytes?: number } = {},
  ): Promise<CompactionResult> {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    assert(!this.#compacting, () => `one compaction at a time in ${this.dir}`);
    if (!isCompacted(this.config.cleanupPolicy)) throw invalid(`${this.dir} has cleanupPolicy 'delete': nothing to compact`);
    this.#checkWritable();
    this.#compacting = true;
    try {
      const closed = this.#segments.slice(0, -1);
      const plan = await compactSegments({
        fs: this.#fs,
        dir: this.dir,
        segments: closed.map((s) => ({ baseOffset: s.baseOffset, sizeBytes: s.sizeBytes, largestTimestamp: s.largestTimestamp })),
        closedEndOffset: this.#active.baseOffset,
        dirtyFromOffset: this.#cleanedUpTo,
        nowMs: options.now ?? this.#clock.now(),
        deleteRetentionMs: this.config.deleteRetentionMs,
        indexIntervalBytes: this.config.indexIntervalBytes,
        yieldNow: options.yieldNow ?? (() => Promise.resolve()),
        isCancelled: () => this.#closed || (options.isCancelled?.() ?? false),
        sliceBytes: options.sliceBytes,
        mergeBytesMax: this.config.segmentBytes,
      });
      return this.#applyCompaction(plan);
    } finally {
      this.#compacting = false;
    }
  }

  /**
   * The swap of a pass, one synchronous step (so no read sees a half-swapped segment):
   * commits the rewritten segments whose sources are still closed segments of this log
   * (steps 2 to 4 of compaction.ts; a merged group's members become one segment), closes
   * their old file handles and opens the new files. A failure
   * here leaves the folder for the next open to complete, and the log refuses writes until
   * then, as after a failed fdatasync.
   */
  #applyCompaction(plan: CompactionPlan): CompactionResult {
    const byBase = new Map<number, number>();
    for (let i = 0; i < this.#segments.length - 1; i++) byBase.set(this.#segments[i].baseOffset, i);
    // Each rewrite still replaces closed segments as the pass saw them (retention may have deleted some meanwhile).
    const committed = plan.cleaned.filter((c) => {
      const i = byBase.get(c.baseOffset);
      const ok =
        !this.#closed &&
        i !== undefined &&
        c.sources.every((src, k) => i + k < this.#segments.length - 1 && this.#segments[i + k].baseOffset === src.baseOffset && this.#segments[i + k].sizeBytes === src.sizeBytes);
      if (!ok) discardCleanedSegment(this.#fs, this.dir, c.baseOffset);
      return ok;
    });
    if (this.#closed) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${this.dir} closed during compaction`);
    try {
      commitCleanedSegments(this.#fs, this.dir, committed.map((c) => ({ baseOffset: c.baseOffset, members: c.sources.map((src) => src.baseOffset) })));
      // Newest first, so that the indexes of the older ones stay valid as merged groups shrink the list.
      for (let k = committed.length - 1; k >= 0; k--) {
        const c = committed[k];
        const i = byBase.get(c.baseOffset)!;
        const olds = this.#segments.slice(i, i + c.sources.length);
        const fresh = Segment.openCompacted(this.#ctx, c.baseOffset, c, olds[0].createdMs);
        this.#segments.splice(i, olds.length, fresh);
        for (const old of olds) {
          this.#closedBytes -= old.sizeBytes;
          // An fdatasync of it may still run (it rolled during the sync): close after that.
          if (this.#syncingSegments.has(old)) this.#closeAfterSync.add(old);
          else closeReplaced(old);
        }
        this.#closedBytes += fresh.sizeBytes;
      }
    } catch (err) {
      this.#failure = `compaction swap in ${this.dir}`;
      throw storageError(err, `compaction swap in ${this.dir}`);
    }
    this.#cleanedUpTo = plan.cleanedUpTo;
    this.#tombstoneDeadlineMs = plan.tombstoneDeadlineMs;
    const result: CompactionResult = {
      segmentsExamined: plan.segmentsExamined,
      segmentsRewritten: committed.length,
      segmentsMerged: committed.reduce((n, c) => n + c.sources.length - 1, 0),
      bytesBefore: plan.bytesBefore,
      bytesAfter: plan.bytesBefore - committed.reduce((n, c) => n + c.sizeBytesBefore - c.sizeBytes, 0),
      recordsRemoved: committed.reduce((n, c) => n + c.recordsRemoved, 0),
    };
    if (result.segmentsRewritten > 0) this.#logger.info({ dir: this.dir, ...result }, 'compaction rewrote segments');
    return result;
  }

  // -------------------------------------------------------------- verify, close, delete

  /** Reads every segment fully and checks every batch and index (see verify.ts). */
  verify(): VerifyReport {
    assert(!this.#closed, () => `partition log ${this.dir} is closed`);
    return verifyPartitionDir(this.dir, this.#fs, { compacted: isCompacted(this.config.cleanupPolicy) });
  }

  /**
   * Syncs everything and closes the files. A rolled segment whose seal fdatasync still runs
   * is synced here too (synchronously; the owner avoids that by waiting with syncAsync()
   * first), and its files are closed when that fdatasync calls back, as are those of any
   * segment a syncAsync() is still syncing. Then the recovery point file names the active
   * segment (its bytes fdatasynced; its rename made durable by the folder fsync of a clean
   * close only: after an unclean one a crash may leave the older file, which only makes the
   * next scan longer), and with `clean` the clean-shutdown marker is written (fsynced, and
   * the folder too), so the next open trusts the segments. A log whose fdatasync failed
   * never gets the marker. Idempotent.
   */
  close({ clean }: { clean: boolean }): void {
    if (this.#closed) return;
    try {
      if (this.#failure === null) {
        for (const s of this.#unsealed) {
          s.sync();
          s.syncIndexes();
        }
        const active = this.#active;
        if (!active.isSealed) {
          active.repairTail();
          active.trimPreallocated();
          active.sync();
          active.syncIndexes();
        }
        this.#durableOffset = this.logEndOffset;
        if (this.#recoveryPointWritten !== active.baseOffset) {
          writeRecoveryPoint(this.#fs, this.dir, active.baseOffset, { durable: true });
          this.#recoveryPointWritten = active.baseOffset;
        }
        if (clean) {
          const markerPath = joinPath(this.dir, CLEAN_SHUTDOWN_MARKER);
          const fd = this.#fs.open(markerPath, 'create');
          try {
            this.#fs.fdatasync(fd);
          } finally {
            this.#fs.close(fd);
          }
          this.#fs.fsyncDir(this.dir);
        }
      }
    } catch (err) {
      throw storageError(err, `close ${this.dir}`);
    } finally {
      this.#closed = true;
      for (const s of this.#segments) {
        // An fdatasync on the thread pool still uses its descriptor: closed when it calls back.
        if (this.#syncingSegments.has(s)) {
          this.#closeAfterSync.add(s);
          continue;
        }
        try {
          s.close();
        } catch {
          // Closing a descriptor cannot lose data that sync already made durable.
        }
      }
      for (const w of this.#syncWaiters.splice(0)) {
        w.done(w.target <= this.#durableOffset ? null : new SluiceError('STORAGE_ERROR', `partition log ${this.dir} closed before offset ${w.target} was durable`));
      }
    }
  }

  /**
   * Deletes the whole log (topic deletion): closes it, renames the folder to
   * `<dir>.deleted-<n>` (one atomic step: the partition is gone), fsyncs the parent, then
   * removes the renamed folder. A crash in between leaves a `.deleted-<n>` folder that
   * `removeDeletedPartitionDirs` clears. The folder's own name is cut from its end to keep
   * the new name within FILE_NAME_BYTES_MAX (a topic name may have 249 characters, as
   * Kafka's; `<topic>-<p>.deleted-<n>` would not fit).
   */
  deleteAll(): void {
    try {
      this.close({ clean: false });
    } catch (err) {
      this.#logger.warn({ dir: this.dir, err: (err as Error).message }, 'close before delete failed; deleting anyway');
    }
    try {
      const parent = dirName(this.dir);
      const name = baseName(this.dir); // `<topic>-<p>`: ASCII, so characters are bytes
      const deletedName = (n: number): string => {
        const suffix = `${DELETED_DIR_INFIX}${n}`;
        return joinPath(parent, name.slice(0, FILE_NAME_BYTES_MAX - suffix.length) + suffix);
      };
      let n = 0;
      while (this.#fs.exists(deletedName(n))) n++;
      const doomed = deletedName(n);
      this.#fs.rename(this.dir, doomed);
      this.#fs.fsyncDir(parent);
      this.#fs.rmrf(doomed);
    } catch (err) {
      throw storageError(err, `delete ${this.dir}`);
    }
  }
}

/**
 * Why a batch at `pos` of a read may not be returned: null when it is whole and its CRC
 * matches, 'incomplete' when the read ends inside it, else the problem.
 */
function checkBatch(bytes: Uint8Array, view: DataView, pos: number, end: number): string | null {
  const batchLength = view.getInt32(pos + BATCH_LENGTH_OFFSET, false);
  if (batchLength < BATCH_LENGTH_MIN || batchLength > BATCH_LENGTH_MAX) return `batchLength ${batchLength} is out of range`;
  if (view.getInt8(pos + MAGIC_OFFSET) !== MAGIC_V2) return `magic ${view.getInt8(pos + MAGIC_OFFSET)}`;
  const sizeBytes = LOG_OVERHEAD_BYTES + batchLength;
  if (pos + sizeBytes > end) return 'incomplete';
  const stored = view.getUint32(pos + CRC_OFFSET, false);
  const computed = crc32c(bytes.subarray(pos + ATTRIBUTES_OFFSET, pos + sizeBytes));
  if (stored !== computed) return `CRC32C mismatch: stored ${stored.toString(16)}, computed ${computed.toString(16)}`;
  return null;
}

/**
 * Loads the segments at `bases` into `segments` (open's second half). After a crash
 * (`clean` false), a closed segment is trusted only when it ends at or below
 * `recoveryPoint`; the others are scanned ('closed-scan'), and the first one found torn
 * (a bad tail, or an end that does not meet the next segment's base) ends the load: every
 * later segment is deleted, newest first, and the folder fsynced (so a crash in between
 * leaves a shorter log that the next open handles the same way, never a hole), then the
 * torn one is loaded again as the active segment, which cuts its tail. A segment that
 * compaction rewrote was fsynced before its swap and is never torn, so that second,
 * strict scan sees no compaction gaps.
 */
function loadSegments(o: {
  ctx: SegmentContext;
  bases: number[];
  clean: boolean;
  recoveryPoint: number;
  compacted: boolean;
  now: number;
  segments: Segment[];
  report: RecoveryReport;
}): void {
  const { ctx, bases, segments, report } = o;
  for (let i = 0; i < bases.length; i++) {
    const last = i === bases.length - 1;
    let mode: SegmentLoadMode;
    if (last) mode = o.clean ? 'active-trusted' : 'active-scan';
    else mode = o.clean || bases[i + 1] <= o.recoveryPoint ? 'closed' : 'closed-scan';
    const loaded = Segment.load(ctx, bases[i], mode, o.now);
    segments.push(loaded.segment);
    noteLoad(report, loaded, last);
    if (mode === 'closed-scan') {
      const torn = tornReason(loaded.segment, loaded.tornTail, bases[i + 1], o.compacted);
      if (torn !== null) {
        segments.pop();
        loaded.segment.close();
        const later = bases.slice(i + 1);
        for (let k = later.length - 1; k >= 0; k--) deleteSegmentFiles(ctx.fs, ctx.dir, later[k]);
        ctx.fs.fsyncDir(ctx.dir);
        report.segmentsDropped.push(...later.map((b) => segmentFileName(b, LOG_SUFFIX)));
        report.problems.push(`${torn}: it was not known to be synced, so it is cut there and the ${later.length} segments after it are dropped`);
        const cut = Segment.load(ctx, bases[i], 'active-scan', o.now);
        segments.push(cut.segment);
        noteLoad(report, cut, true);
        return;
      }
    }
    // A compacted segment may end below the next base (its last batches dropped), never above.
    const prevNext = i > 0 ? segments[i - 1].nextOffset : 0;
    if (i > 0 && (o.compacted ? prevNext > bases[i] : prevNext !== bases[i])) {
      report.problems.push(`${loaded.segment.name}: starts at ${bases[i]}, the segment before ends at ${segments[i - 1].nextOffset}`);
    }
  }
}

/** Adds what loading one segment did to the report. */
function noteLoad(report: RecoveryReport, loaded: SegmentLoadResult, active: boolean): void {
  if (loaded.scanned) {
    if (!report.segmentsScanned.includes(loaded.segment.name)) report.segmentsScanned.push(loaded.segment.name);
    if (active) report.scanned = true;
  }
  if (loaded.truncation !== null) report.truncations.push(loaded.truncation);
  for (const name of loaded.indexesRebuilt) if (!report.indexesRebuilt.includes(name)) report.indexesRebuilt.push(name);
  report.problems.push(...loaded.problems);
}

/**
 * Why a scanned closed segment cannot be kept whole, or null: a torn or corrupt tail, or an
 * end past the next segment's base, or (outside compacted topics, where compaction may drop
 * a segment's last batches) below it, which means its last pages never reached the disk.
 */
function tornReason(segment: Segment, tornTail: TruncationReport | null, nextBase: number, compacted: boolean): string | null {
  if (tornTail !== null) return `${segment.name}: ${tornTail.reason} at position ${tornTail.position} (${tornTail.detail})`;
  if (segment.nextOffset > nextBase) return `${segment.name}: ends at offset ${segment.nextOffset}, past the next segment's base ${nextBase}`;
  if (!compacted && segment.nextOffset < nextBase) return `${segment.name}: ends at offset ${segment.nextOffset}, below the next segment's base ${nextBase}`;
  return null;
}

/**
 * The recovery point stored in the folder: a number, or why there is none (the file is
 * missing or unreadable). Never throws for bad content; a read error is the file system's.
 */
function readRecoveryPoint(fs: FileSystem, dir: string): number | string {
  const path = joinPath(dir, RECOVERY_POINT_FILE);
  if (!fs.exists(path)) return 'missing (a data directory written before recovery points, or the file was removed)';
  const decoded = decodeRecoveryPoint(fs.readFile(path));
  return decoded.ok ? decoded.recoveryPoint : `unreadable: ${decoded.reason}`;
}

/**
 * Replaces `.recovery-point` by a rename of `.recovery-point.tmp`. With `durable`, the
 * temporary file is fdatasynced first (the caller fsyncs the folder): open uses it. Without,
 * nothing is synced (the roll path, on the owner thread): after a machine crash the folder
 * may show the older file, which only makes the scan longer, or the new name with its bytes
 * lost, which the CRC catches (every segment is scanned then).
 */
function writeRecoveryPoint(fs: FileSystem, dir: string, recoveryPoint: number, { durable }: { durable: boolean }): void {
  replaceFile(fs, joinPath(dir, RECOVERY_POINT_FILE), encodeRecoveryPoint(recoveryPoint), { durable });
}

/**
 * Removes what an earlier run of ours left in the folder: an interrupted compaction's
 * files (`.cleaned` removed, `.log.swap` completed: compaction.ts), `.deleted` and `.tmp`
 * files, and index files whose .log is gone (a crash in the middle of a segment deletion).
 * Returns the base offsets of the segments, sorted.
 */
function removeLeftovers(fs: FileSystem, dir: string, report: RecoveryReport): number[] {
  // An interrupted compaction first: it may put a .log back in place.
  report.problems.push(...recoverCompactionFiles(fs, dir));
  const names = fs.readdir(dir);
  const bases: number[] = [];
  for (const name of names) {
    const base = parseSegmentLogName(name);
    if (base !== null) bases.push(base);
  }
  const logNames = new Set(bases.map((b) => segmentFileName(b, '')));
  let removed = false;
  for (const name of names) {
    const leftover = name.endsWith(DELETED_SUFFIX) || name.endsWith(TMP_SUFFIX);
    const indexSuffix = name.endsWith(INDEX_SUFFIX) ? INDEX_SUFFIX : name.endsWith(TIME_INDEX_SUFFIX) ? TIME_INDEX_SUFFIX : null;
    const orphan = indexSuffix !== null && /^\d{20}\./.test(name) && !logNames.has(name.slice(0, -indexSuffix.length));
    if (!leftover && !orphan) continue;
    fs.unlink(joinPath(dir, name));
    report.problems.push(`removed leftover ${name}`);
    removed = true;
  }
  if (removed) fs.fsyncDir(dir);
  return bases.sort((a, b) => a - b);
}

/**
 * Removes `<name>.deleted-<n>` partition folders that a crash during deleteAll() left in
 * `dataDir` (call once at start, before opening logs). Returns the names removed.
 */
export function removeDeletedPartitionDirs(dataDir: string, fs: FileSystem = nodeFileSystem): string[] {
  try {
    if (!fs.exists(dataDir)) return [];
    const removed = fs.readdir(dataDir).filter((name) => /\.deleted-\d+$/.test(name));
    for (const name of removed) fs.rmrf(joinPath(dataDir, name));
    return removed;
  } catch (err) {
    throw storageError(err, `clean ${dataDir}`);
  }
}

/** The segment .log file name of a base offset (for tools and tests). */
export function segmentLogName(baseOffset: number): string {
  return segmentFileName(baseOffset, LOG_SUFFIX);
}
