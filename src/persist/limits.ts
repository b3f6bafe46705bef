/**
 * The limits of the on-disk log, kept together with their reasons and relationships
 * (house style 9). No state. Owner: any thread.
 */
import { assert } from '../assert.js';
import { U32_MAX } from './offset-index.js';
import { BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, RECORD_BYTES_MIN } from './record-batch.js';

/** Kafka's segment.bytes is an int32; positions in our u32 index entries then always fit. */
export const SEGMENT_BYTES_MAX = 2 ** 31 - 1;
/** Below this, segments only multiply files and syscalls; tests use a few KiB. */
export const SEGMENT_BYTES_MIN = 256;
/**
 * The largest batchBytesMax a config may set. Recovery and verify treat a batchLength
 * beyond it as garbage (not as a batch torn at the tail), and use this limit rather than
 * the topic's current batchBytesMax, so that lowering a topic's limit never makes recovery
 * cut batches that were stored under the old one.
 */
export const BATCH_BYTES_LIMIT = 64 * 1024 * 1024;
/**
 * The most a gzip batch may inflate to where the broker inflates one (the key check of a
 * compacted topic's produce, compaction): as large as the largest batch a topic may take
 * uncompressed. A "gzip bomb" stops there instead of taking the owner thread and gigabytes.
 */
export const INFLATED_BATCH_BYTES_MAX = BATCH_BYTES_LIMIT;
/** The smallest batch: the header plus one minimal record. */
export const BATCH_BYTES_MIN = BATCH_HEADER_BYTES + RECORD_BYTES_MIN;
/** batchLength counts the bytes after itself. */
export const BATCH_LENGTH_MIN = BATCH_BYTES_MIN - LOG_OVERHEAD_BYTES;
export const BATCH_LENGTH_MAX = BATCH_BYTES_LIMIT - LOG_OVERHEAD_BYTES;
/**
 * Reads of recovery and verify go through one buffer of this size: large enough to hold
 * most batches whole (Kafka's default message.max.bytes is about 1 MiB), so one read serves
 * many small batches; larger batches are checked in pieces (the CRC is incremental).
 */
export const SCAN_CHUNK_BYTES = 1024 * 1024;
/**
 * Zeros written ahead of the active segment's end (0 turns it off): an fdatasync of bytes
 * written into blocks that already exist and lie inside the file's size commits no
 * metadata (no block allocation, no size change): about 50 µs of 320-360 at the median on
 * ext4 here, more at p90 (measured with zeros written at segment creation;
 * docs/benchmarks.md, tenth session). Refilled when half is used (see the interval below),
 * trimmed at a roll and a close; a crash leaves it as a zero tail, which recovery cuts
 * (recovery.ts rows 2 and 4).
 */
export const PREALLOCATE_BYTES_DEFAULT = 4 * 1024 * 1024;
/**
 * The most a log may keep preallocated (its preallocateBytes option), and the longest zero
 * tail recovery cuts without a report (segment.ts): a crash never leaves more zeros than a
 * log was allowed to write ahead, so a longer run of zeros is reported as damage.
 */
export const PREALLOCATE_BYTES_MAX = 4 * PREALLOCATE_BYTES_DEFAULT;
/**
 * At most one refill per log this often, and none while the log is written faster than its
 * preallocateBytes a second over the interval (that writer outruns the zeros).
 */
export const PREALLOCATE_INTERVAL_MS_MIN = 1000;
/** Zeros written by one write call while preallocating. */
export const PREALLOCATE_WRITE_BYTES = 1024 * 1024;
/** Offsets inside a segment are stored as u32 relative offsets: a segment rolls before this. */
export const RELATIVE_OFFSET_MAX = U32_MAX;
/** One append call writes at most this much: it must fit a segment position. */
export const APPEND_BYTES_MAX = SEGMENT_BYTES_MAX;
/** Base offsets are 20-digit decimal file names, as Kafka's. */
export const SEGMENT_NAME_DIGITS = 20;

assert(SEGMENT_BYTES_MAX <= U32_MAX, 'segment positions fit the u32 index field');
assert(BATCH_BYTES_LIMIT <= SEGMENT_BYTES_MAX, 'a batch fits a segment');
assert(SEGMENT_BYTES_MIN >= BATCH_BYTES_MIN, 'a segment holds at least one batch');
assert(SCAN_CHUNK_BYTES >= BATCH_HEADER_BYTES, 'a scan chunk holds a batch header');
