/**
 * Kafka RecordBatch v2 (magic 2) for Node: the codec of ./record-batch-codec.ts (the byte
 * layout table, the invariants and every encoder and decoder live there) bound to
 * fast-crc32c (./crc32c.js, hardware-accelerated). The broker, the tools and the tests
 * import this file; the browser client imports the codec with the JS CRC instead, because
 * ./crc32c.js loads fast-crc32c through node:module. ALL FIELDS ARE BIG-ENDIAN.
 *
 * Owner: any thread; no state.
 */
import { crc32c } from './crc32c.js';
import {
  checkBatchCrcAtWith,
  decodeBatchWith,
  encodeBatchWith,
  rebuildBatchWith,
  validateBatchAtWith,
  validateBatchWith,
  type BatchHeader,
  type BatchOrigin,
  type CompressionName,
  type DecodedBatch,
  type EncodeOptions,
  type RecordInput,
} from './record-batch-codec.js';

export * from './record-batch-codec.js';

/**
 * Encodes records into one uncompressed RecordBatch v2 (or, with `compressedRecords`, a
 * batch whose records section is that already-compressed blob). Sizes first, then one
 * allocation, filled in place.
 */
export function encodeBatch(records: RecordInput[], options: EncodeOptions & { now?: number; compressedRecords?: Uint8Array } = {}): Uint8Array {
  return encodeBatchWith(crc32c, records, options);
}

/**
 * Validates the batch that starts at `pos` in `bytes` without decoding its records:
 * framing, magic, record count (by `origin`'s rule), CRC-32C. Returns its header. Throws
 * CORRUPT_MESSAGE, UNSUPPORTED_FOR_MESSAGE_FORMAT or MESSAGE_TOO_LARGE.
 */
export function validateBatchAt(bytes: Uint8Array, view: DataView, pos: number, sizeBytesMax: number, origin: BatchOrigin = 'produced'): BatchHeader {
  return validateBatchAtWith(crc32c, bytes, view, pos, sizeBytesMax, origin);
}

/**
 * Only the CRC-32C of the batch of `sizeBytes` bytes at `pos`, whose framing was checked
 * already: the gateway runs it on a batch it just copied into a log ring.
 */
export function checkBatchCrcAt(bytes: Uint8Array, view: DataView, pos: number, sizeBytes: number): void {
  checkBatchCrcAtWith(crc32c, bytes, view, pos, sizeBytes);
}

/** Validates `bytes` as exactly one batch. */
export function validateBatch(bytes: Uint8Array, sizeBytesMax = Number.MAX_SAFE_INTEGER, origin: BatchOrigin = 'produced'): BatchHeader {
  return validateBatchWith(crc32c, bytes, sizeBytesMax, origin);
}

/** rebuildBatchWith bound to fast-crc32c: a batch thinned by compaction (see the codec). */
export function rebuildBatch(original: Uint8Array, records: Uint8Array, recordCount: number): Uint8Array {
  return rebuildBatchWith(crc32c, original, records, recordCount);
}

/**
 * Validates and decodes one batch. Compressed batches need `decompress` (sync), which
 * turns the records blob into the plain records section.
 */
export function decodeBatch(bytes: Uint8Array, decompress?: (compression: CompressionName, blob: Uint8Array) => Uint8Array): DecodedBatch {
  return decodeBatchWith(crc32c, bytes, decompress);
}
