/**
 * A snapshot of a partition's idempotent-producer state as of an offset: `<20-digit
 * offset>.snapshot` in the partition folder, as Kafka's `<offset>.snapshot`. The owner writes
 * one at each roll, for the new segment's base offset, holding what the batches below it
 * say (workers/producer-state.ts); an open loads the newest one at or below the log end and
 * replays the batch headers from its offset on, so that a batch re-sent across a restart is
 * still recognised however many segments ago it was stored. The owner keeps the newest
 * SNAPSHOTS_KEPT. I/O only through the FileSystem passed in; no state. Owner: the
 * partition's owner thread.
 *
 * Layout (BIG-ENDIAN):
 *
 * | offset | size | field             | value                                               |
 * |-------:|-----:|-------------------|-----------------------------------------------------|
 * |      0 |    4 | magic             | 0x534c5053 ("SLPS")                                 |
 * |      4 |    2 | version           | 1                                                   |
 * |      6 |    2 | reserved          | 0                                                   |
 * |      8 |    8 | offset            | int64: the state of the batches below this offset    |
 * |     16 |    4 | producerCount     | uint32, at most SNAPSHOT_PRODUCERS_MAX               |
 * |     20 |    - | producers         | producerCount entries, least recently used first    |
 * |    end |    4 | crc               | CRC-32C of every byte before it                     |
 *
 * A producer entry: producerId int64 (8), epoch int16 (2), batchCount uint16 (2, at most
 * SNAPSHOT_BATCHES_MAX), lastSequence int32 (4), then batchCount batches, oldest first, each
 * firstSequence int32 (4), lastSequence int32 (4), baseOffset int64 (8).
 *
 * Invariants: every baseOffset is below the snapshot's offset; the file is written whole to
 * a temporary name and renamed (never written in place) and not fsynced: after a machine
 * crash it may be short or garbage, which the size, magic and CRC checks catch, and the
 * reader falls back to an older snapshot and replays more of the log.
 */
import { assert } from '../assert.js';
import { crc32c } from './crc32c.js';
import { joinPath, replaceFile, type FileSystem } from './fs.js';
import { parseOffsetFileName, segmentFileName } from './segment.js';

export const SNAPSHOT_SUFFIX = '.snapshot';
export const SNAPSHOT_MAGIC = 0x534c5053;
export const SNAPSHOT_VERSION = 1;
/** Producers one snapshot may hold: producer-state.ts's PRODUCERS_MAX fits (checked there). */
export const SNAPSHOT_PRODUCERS_MAX = 10_000;
/** Batches one producer entry may hold: producer-state.ts's RECENT_BATCHES fits (checked there). */
export const SNAPSHOT_BATCHES_MAX = 16;

/** Snapshots kept per partition: the newest, and one to fall back on if a crash spoiled it. */
export const SNAPSHOTS_KEPT = 2;

const HEADER_BYTES = 20;
const OFFSET_AT = 8;
const COUNT_AT = 16;
const ENTRY_HEAD_BYTES = 16;
const BATCH_BYTES = 16;
const CRC_BYTES = 4;

/** One producer's state: its epoch, the last sequence stored, and its remembered batches. */
export interface ProducerSnapshotEntry {
  producerId: number;
  epoch: number;
  lastSequence: number;
  /** [firstSequence, lastSequence, baseOffset], oldest first. */
  batches: [number, number, number][];
}

export type DecodedProducerSnapshot = { ok: true; offset: number; producers: ProducerSnapshotEntry[] } | { ok: false; reason: string };

/** The file name of the snapshot at `offset` (20 digits, as a segment's). */
export function snapshotFileName(offset: number): string {
  return segmentFileName(offset, SNAPSHOT_SUFFIX);
}

/** The offset a snapshot file name stands for, or null when `name` is not one. */
export function parseSnapshotFileName(name: string): number | null {
  return parseOffsetFileName(name, SNAPSHOT_SUFFIX);
}

export function encodeProducerSnapshot(offset: number, producers: ProducerSnapshotEntry[]): Uint8Array {
  assert(Number.isSafeInteger(offset) && offset >= 0, () => `snapshot offset ${offset}`);
  assert(producers.length <= SNAPSHOT_PRODUCERS_MAX, () => `${producers.length} producers in a snapshot`);
  let bytes = HEADER_BYTES + CRC_BYTES;
  for (const p of producers) bytes += ENTRY_HEAD_BYTES + p.batches.length * BATCH_BYTES;
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, SNAPSHOT_MAGIC, false);
  view.setUint16(4, SNAPSHOT_VERSION, false);
  view.setBigInt64(OFFSET_AT, BigInt(offset), false);
  view.setUint32(COUNT_AT, producers.length, false);
  let at = HEADER_BYTES;
  for (const p of producers) {
    assert(p.batches.length <= SNAPSHOT_BATCHES_MAX, () => `${p.batches.length} batches for producer ${p.producerId}`);
    view.setBigInt64(at, BigInt(p.producerId), false);
    view.setInt16(at + 8, p.epoch, false);
    view.setUint16(at + 10, p.batches.length, false);
    view.setInt32(at + 12, p.lastSequence, false);
    at += ENTRY_HEAD_BYTES;
    for (const [first, last, base] of p.batches) {
      assert(base < offset, () => `a batch at ${base} in the snapshot at ${offset}`);
      view.setInt32(at, first, false);
      view.setInt32(at + 4, last, false);
      view.setBigInt64(at + 8, BigInt(base), false);
      at += BATCH_BYTES;
    }
  }
  view.setUint32(at, crc32c(out.subarray(0, at)), false);
  return out;
}

export function decodeProducerSnapshot(bytes: Uint8Array): DecodedProducerSnapshot {
  if (bytes.length < HEADER_BYTES + CRC_BYTES) return { ok: false, reason: `${bytes.length} bytes, shorter than a snapshot's header` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== SNAPSHOT_MAGIC) return { ok: false, reason: `magic ${magic.toString(16)}, expected ${SNAPSHOT_MAGIC.toString(16)}` };
  const end = bytes.length - CRC_BYTES;
  const stored = view.getUint32(end, false);
  const computed = crc32c(bytes.subarray(0, end));
  if (stored !== computed) return { ok: false, reason: `CRC32C mismatch: stored ${stored.toString(16)}, computed ${computed.toString(16)}` };
  const version = view.getUint16(4, false);
  if (version !== SNAPSHOT_VERSION) return { ok: false, reason: `version ${version}, expected ${SNAPSHOT_VERSION}` };
  const offset = Number(view.getBigInt64(OFFSET_AT, false));
  if (!Number.isSafeInteger(offset) || offset < 0) return { ok: false, reason: `offset ${offset} is out of range` };
  const count = view.getUint32(COUNT_AT, false);
  if (count > SNAPSHOT_PRODUCERS_MAX) return { ok: false, reason: `${count} producers, more than ${SNAPSHOT_PRODUCERS_MAX}` };
  const producers: ProducerSnapshotEntry[] = [];
  let at = HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_HEAD_BYTES > end) return { ok: false, reason: `producer ${i} runs past the end` };
    const producerId = Number(view.getBigInt64(at, false));
    const batchCount = view.getUint16(at + 10, false);
    if (!Number.isSafeInteger(producerId) || producerId < 0) return { ok: false, reason: `producer ${i} has id ${producerId}` };
    if (batchCount > SNAPSHOT_BATCHES_MAX) return { ok: false, reason: `producer ${producerId} has ${batchCount} batches` };
    const entry: ProducerSnapshotEntry = { producerId, epoch: view.getInt16(at + 8, false), lastSequence: view.getInt32(at + 12, false), batches: [] };
    at += ENTRY_HEAD_BYTES;
    if (at + batchCount * BATCH_BYTES > end) return { ok: false, reason: `producer ${producerId}'s batches run past the end` };
    for (let b = 0; b < batchCount; b++) {
      const base = Number(view.getBigInt64(at + 8, false));
      if (!Number.isSafeInteger(base) || base < 0 || base >= offset) return { ok: false, reason: `producer ${producerId} has a batch at ${base}, not below ${offset}` };
      entry.batches.push([view.getInt32(at, false), view.getInt32(at + 4, false), base]);
      at += BATCH_BYTES;
    }
    producers.push(entry);
  }
  if (at !== end) return { ok: false, reason: `${end - at} bytes left over` };
  return { ok: true, offset, producers };
}

/** The snapshot offsets in `dir`, newest first. */
export function listSnapshots(fs: FileSystem, dir: string): number[] {
  return fs
    .readdir(dir)
    .map(parseSnapshotFileName)
    .filter((o): o is number => o !== null)
    .sort((a, b) => b - a);
}

/**
 * The newest usable snapshot of `dir` at or below `logEndOffset`. Snapshots past the log end
 * (their batches were lost with a torn tail) and unreadable ones are removed, each with a
 * `problems` line. Null when none is usable.
 */
export function loadNewestSnapshot(fs: FileSystem, dir: string, logEndOffset: number, problems: string[]): { offset: number; producers: ProducerSnapshotEntry[] } | null {
  for (const offset of listSnapshots(fs, dir)) {
    const name = snapshotFileName(offset);
    const path = joinPath(dir, name);
    if (offset > logEndOffset) {
      fs.unlink(path);
      problems.push(`removed ${name}: past the log end ${logEndOffset}`);
      continue;
    }
    const decoded = decodeProducerSnapshot(fs.readFile(path));
    if (decoded.ok && decoded.offset === offset) return decoded;
    fs.unlink(path);
    problems.push(`removed ${name}: ${decoded.ok ? `it says offset ${decoded.offset}` : decoded.reason}`);
  }
  return null;
}

/** Writes the snapshot at `offset` (a temporary file renamed into place) and removes all but the newest SNAPSHOTS_KEPT. */
export function writeSnapshot(fs: FileSystem, dir: string, offset: number, producers: ProducerSnapshotEntry[]): void {
  replaceFile(fs, joinPath(dir, snapshotFileName(offset)), encodeProducerSnapshot(offset, producers), { durable: false });
  for (const old of listSnapshots(fs, dir).slice(SNAPSHOTS_KEPT)) fs.unlink(joinPath(dir, snapshotFileName(old)));
}
