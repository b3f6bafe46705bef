/**
 * The frames that cross between the gateway thread and an owner thread, and the control
 * messages that go by postMessage. No I/O.
 *
 * Data path (SharedArrayBuffer rings, no postMessage, no JSON): the gateway writes command
 * frames into the owner's command ring; the owner writes completion frames into its
 * completion ring. These are our own internal formats, so they are LITTLE-ENDIAN (the
 * native order: no byte swapping on either side). The record batches inside them keep
 * their own big-endian Kafka layout.
 *
 * Command frame (gateway -> owner):
 *
 * | offset | size | field        | meaning                                                    |
 * |-------:|-----:|--------------|------------------------------------------------------------|
 * |      0 |    1 | kind         | CommandKind                                                |
 * |      1 |    1 | acks         | produce: 0, 1 or -1 (all) as i8                            |
 * |      2 |    1 | flags        | produceInRing: CMD_FLAG_CRC_CHECKED; else 0                |
 * |      3 |    1 | reserved     | 0                                                          |
 * |      4 |    4 | requestId    | u32, echoed in the completion                              |
 * |      8 |    4 | slot         | u32, the owner-local partition slot                        |
 * |     12 |    4 | length       | produce: batch bytes; fetch: maxBytes                      |
 * |     16 |    8 | argument     | f64: fetch offset, or the timestamp for offsetForTime      |
 * |     16 |    4 | ringPosition | produceInRing: i32, LogRing data counter of the batch      |
 * |     20 |    4 | ringEntry    | produceInRing: u32, LogRing entry counter (mod 2^32)       |
 * |     24 |    - | batch        | produceInline only: one RecordBatch v2, as it was sent     |
 *
 * Two ways a produced batch reaches its owner:
 * - produceInRing (every batch that fits the partition's log ring): the gateway copied the
 *   batch straight into the log ring as a committed, not yet visible entry (LogRing's data
 *   writer) and sends only where it lies. The owner (LogRing's entry writer) validates it
 *   there, stamps baseOffset in place and appends the entry, or appends it void when it is
 *   rejected, so every ring command becomes exactly one entry, in command order. With
 *   CMD_FLAG_CRC_CHECKED the gateway verified the CRC-32C of those very bytes after copying
 *   them (no thread writes them again before the owner publishes them), so the owner checks
 *   the framing but not the CRC again; without it the owner checks the CRC.
 * - produceInline (a batch larger than the log ring's entryBytesMax): the batch travels in
 *   the command frame; the owner validates it there and writes it to the segment file from
 *   there. It never enters the log ring, which leaves a key gap there (readers stop at it
 *   and ask the owner).
 *
 * Completion frame (owner -> gateway):
 *
 * | offset | size | field          | meaning                                                  |
 * |-------:|-----:|----------------|----------------------------------------------------------|
 * |      0 |    4 | requestId      | u32                                                      |
 * |      4 |    2 | errorNumber    | u16, 0 = ok, else errors.ts errorNumber                   |
 * |      6 |    2 | reserved       | 0                                                        |
 * |      8 |    8 | value          | f64: base offset (produce), found offset (time), -1      |
 * |     16 |    8 | highWatermark  | f64                                                      |
 * |     24 |    8 | logStartOffset | f64                                                      |
 * |     32 |    4 | payloadLength  | u32                                                      |
 * |     36 |    4 | slot           | u32: the partition slot (read for notifications)          |
 * |     40 |    - | payload        | fetch: whole batches; error: UTF-8 message               |
 */
import { assert } from '../assert.js';
import type { WireError } from '../errors.js';
import type { CompactionResult } from '../persist/compaction.js';
import type { LogConfig } from '../persist/partition-log.js';

export const CommandKind = { produceInline: 1, fetch: 2, offsetForTime: 3, produceInRing: 4 } as const;

export const CMD_KIND_OFFSET = 0;
export const CMD_ACKS_OFFSET = CMD_KIND_OFFSET + 1;
export const CMD_FLAGS_OFFSET = CMD_ACKS_OFFSET + 1;
export const CMD_RESERVED_OFFSET = CMD_FLAGS_OFFSET + 1;
export const CMD_REQUEST_ID_OFFSET = CMD_RESERVED_OFFSET + 1;
export const CMD_SLOT_OFFSET = CMD_REQUEST_ID_OFFSET + 4;
export const CMD_LENGTH_OFFSET = CMD_SLOT_OFFSET + 4;
export const CMD_ARGUMENT_OFFSET = CMD_LENGTH_OFFSET + 4;
export const CMD_RING_POSITION_OFFSET = CMD_ARGUMENT_OFFSET; // produceInRing: shares the argument
export const CMD_RING_ENTRY_OFFSET = CMD_RING_POSITION_OFFSET + 4;
export const CMD_HEADER_BYTES = CMD_ARGUMENT_OFFSET + 8;
export const CMD_BATCH_OFFSET = CMD_HEADER_BYTES; // produceInline
assert(CMD_RING_ENTRY_OFFSET + 4 === CMD_HEADER_BYTES, 'the ring position and entry fill the argument');
assert(CMD_HEADER_BYTES === 24, 'command header is 24 bytes');
assert(CMD_HEADER_BYTES % 8 === 0, 'an inline batch starts 8-byte aligned in the command ring');
/** flags bit: the gateway verified the batch's CRC-32C where it lies in the log ring. */
export const CMD_FLAG_CRC_CHECKED = 1;

export const DONE_REQUEST_ID_OFFSET = 0;
export const DONE_ERROR_OFFSET = DONE_REQUEST_ID_OFFSET + 4;
export const DONE_RESERVED_OFFSET = DONE_ERROR_OFFSET + 2;
export const DONE_VALUE_OFFSET = DONE_RESERVED_OFFSET + 2;
export const DONE_HWM_OFFSET = DONE_VALUE_OFFSET + 8;
export const DONE_LOG_START_OFFSET = DONE_HWM_OFFSET + 8;
export const DONE_PAYLOAD_LENGTH_OFFSET = DONE_LOG_START_OFFSET + 8;
export const DONE_SLOT_OFFSET = DONE_PAYLOAD_LENGTH_OFFSET + 4;
export const DONE_HEADER_BYTES = DONE_SLOT_OFFSET + 4;
/**
 * requestId 0 is never a request's: a completion frame with it is a notification that the
 * partition in `slot` published a new high watermark (`highWatermark`). The owner sends one
 * per partition per flush; the gateway wakes fetches that long-poll and pushes to
 * subscribers from it.
 */
export const NOTIFY_REQUEST_ID = 0;
assert(DONE_HEADER_BYTES === 40, 'completion header is 40 bytes');

/** Partition state cells published by the owner (SeqlockCells indexes). */
export const Cell = {
  logStartOffset: 0,
  logEndOffset: 1,
  highWatermark: 2,
  durableOffset: 3,
  sizeBytes: 4,
  segmentCount: 5,
} as const;
export const CELL_COUNT = 6;

// ---------------------------------------------------------------- control (postMessage)

/** What recovery did to one partition when it opened (plain data, crosses threads). */
export interface RecoveryReportSummary {
  scanned: boolean;
  truncations: { segment: string; bytesTruncated: number; reason: string }[];
  /** Segments deleted after a torn segment that was not known to be synced (PartitionLog.open). */
  segmentsDropped: string[];
  indexesRebuilt: string[];
  /** The highest producer id in the partition's idempotent-producer state (-1: none). */
  producerIdMax: number;
}

export interface OwnerInit {
  ownerIndex: number;
  commandRing: SharedArrayBuffer;
  completionRing: SharedArrayBuffer;
  /** How often the owner checks retention and time-based rolls. */
  housekeepingIntervalMs: number;
  /** acks=1 data is fsynced at least this often; -1 = only by acks=all syncs, rolls and close (engine.ts FLUSH_INTERVAL_MS_DEFAULT). */
  flushIntervalMs: number;
  fetchBytesMax: number;
}

export type ControlRequest =
  | {
      kind: 'open';
      id: number;
      slot: number;
      dir: string;
      config: LogConfig;
      logRing: SharedArrayBuffer;
      cells: SharedArrayBuffer;
    }
  | { kind: 'close'; id: number; slot: number; deleteFiles: boolean }
  | { kind: 'retention'; id: number }
  /** A compaction pass of one partition, after any pass already running on it; answered with its result. */
  | { kind: 'compact'; id: number; slot: number }
  | { kind: 'shutdown'; id: number };

export type ControlReply =
  | { kind: 'ok'; id: number; report?: RecoveryReportSummary; compaction?: CompactionResult }
  | { kind: 'error'; id: number; error: WireError }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> };
