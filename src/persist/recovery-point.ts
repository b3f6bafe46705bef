/**
 * The recovery point of a partition: `.recovery-point` in the partition folder, holding the
 * base offset of the oldest segment that is not known to be on stable storage (as Kafka's
 * recovery-point-offset-checkpoint, one partition per file). Every segment that ends at or
 * below it had its roll's fdatasync (.log and both indexes) complete; an open after a crash
 * scans every segment from it on (partition-log.ts). No I/O here; no state. Owner: any
 * thread.
 *
 * Layout (18 bytes, BIG-ENDIAN, written by the partition's owner):
 *
 * | offset | size | field         | value                                        | in CRC |
 * |-------:|-----:|---------------|----------------------------------------------|--------|
 * |      0 |    4 | magic         | 0x534c5250 ("SLRP")                          | yes    |
 * |      4 |    2 | version       | 1                                            | yes    |
 * |      6 |    8 | recoveryPoint | int64, a segment base offset, >= 0           | yes    |
 * |     14 |    4 | crc           | CRC-32C of bytes [0, 14)                     | -      |
 *
 * Invariants: the value only names a point below which every segment is durable; an older
 * (smaller) value is always safe, it only makes a recovery scan more. The file is replaced
 * by a rename (never written in place), so a reader sees a whole old file or a whole new
 * one, except after a machine crash that lost the new file's data but kept its rename: then
 * the bytes are short or garbage, which the size, magic and CRC checks catch, and the
 * reader treats the point as unknown (scan everything).
 */
import { assert } from '../assert.js';
import { crc32c } from './crc32c.js';

/** Name of the file in the partition folder. */
export const RECOVERY_POINT_FILE = '.recovery-point';
export const RECOVERY_POINT_MAGIC = 0x534c5250;
export const RECOVERY_POINT_VERSION = 1;

export const MAGIC_OFFSET = 0;
export const MAGIC_BYTES = 4;
export const VERSION_OFFSET = MAGIC_OFFSET + MAGIC_BYTES;
export const VERSION_BYTES = 2;
export const POINT_OFFSET = VERSION_OFFSET + VERSION_BYTES;
export const POINT_BYTES = 8;
export const CRC_OFFSET = POINT_OFFSET + POINT_BYTES;
export const CRC_BYTES = 4;
export const RECOVERY_POINT_BYTES = CRC_OFFSET + CRC_BYTES;

assert(RECOVERY_POINT_BYTES === 18, 'the recovery point file is 18 bytes');

export type DecodedRecoveryPoint = { ok: true; recoveryPoint: number } | { ok: false; reason: string };

export function encodeRecoveryPoint(recoveryPoint: number): Uint8Array {
  assert(Number.isSafeInteger(recoveryPoint) && recoveryPoint >= 0, () => `recovery point ${recoveryPoint}`);
  const bytes = new Uint8Array(RECOVERY_POINT_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(MAGIC_OFFSET, RECOVERY_POINT_MAGIC, false);
  view.setUint16(VERSION_OFFSET, RECOVERY_POINT_VERSION, false);
  view.setBigInt64(POINT_OFFSET, BigInt(recoveryPoint), false);
  view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), false);
  return bytes;
}

/** Why `bytes` is not a recovery point file, or null when it is one. */
export function validateRecoveryPoint(bytes: Uint8Array): string | null {
  if (bytes.length !== RECOVERY_POINT_BYTES) return `${bytes.length} bytes, expected ${RECOVERY_POINT_BYTES}`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(MAGIC_OFFSET, false);
  if (magic !== RECOVERY_POINT_MAGIC) return `magic ${magic.toString(16)}, expected ${RECOVERY_POINT_MAGIC.toString(16)}`;
  const stored = view.getUint32(CRC_OFFSET, false);
  const computed = crc32c(bytes.subarray(0, CRC_OFFSET));
  if (stored !== computed) return `CRC32C mismatch: stored ${stored.toString(16)}, computed ${computed.toString(16)}`;
  const version = view.getUint16(VERSION_OFFSET, false);
  if (version !== RECOVERY_POINT_VERSION) return `version ${version}, expected ${RECOVERY_POINT_VERSION}`;
  const point = view.getBigInt64(POINT_OFFSET, false);
  if (point < 0n || point > BigInt(Number.MAX_SAFE_INTEGER)) return `recovery point ${point} is out of range`;
  return null;
}

export function decodeRecoveryPoint(bytes: Uint8Array): DecodedRecoveryPoint {
  const problem = validateRecoveryPoint(bytes);
  if (problem !== null) return { ok: false, reason: problem };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { ok: true, recoveryPoint: Number(view.getBigInt64(POINT_OFFSET, false)) };
}
