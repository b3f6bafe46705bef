/**
 * Kafka RecordBatch v2 (magic 2): encode, decode, validate. No I/O, and no Node-only
 * import: the CRC-32C function is a parameter of the functions that need one, so that the
 * browser client can use this codec with the JS table (./crc32c-js.ts) while the broker
 * binds fast-crc32c (./record-batch.ts re-exports everything with that binding).
 *
 * Records travel and rest in this one format end to end: the producer client encodes a
 * batch, the owner validates it and rewrites only baseOffset, segments hold it byte for
 * byte and fetches hand the same bytes back. ALL FIELDS ARE BIG-ENDIAN (Kafka's order).
 *
 * Batch header (61 bytes, then the records):
 *
 * | offset | size | field                | written by          | in CRC |
 * |-------:|-----:|----------------------|---------------------|:------:|
 * |      0 |    8 | baseOffset           | broker (owner)      |   no   |
 * |      8 |    4 | batchLength          | producer            |   no   |  bytes after this field
 * |     12 |    4 | partitionLeaderEpoch | broker (writes 0)   |   no   |
 * |     16 |    1 | magic (= 2)          | producer            |   no   |
 * |     17 |    4 | crc (CRC-32C, u32)   | producer            |   -    |  over [21, end)
 * |     21 |    2 | attributes           | producer            |  yes   |  bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control
 * |     23 |    4 | lastOffsetDelta      | producer            |  yes   |  = recordCount - 1
 * |     27 |    8 | baseTimestamp        | producer            |  yes   |
 * |     35 |    8 | maxTimestamp         | producer            |  yes   |
 * |     43 |    8 | producerId           | producer            |  yes   |  -1 when not idempotent
 * |     51 |    2 | producerEpoch        | producer            |  yes   |
 * |     53 |    4 | baseSequence         | producer            |  yes   |
 * |     57 |    4 | recordCount          | producer            |  yes   |  never compressed
 * |     61 |    - | records              | producer            |  yes   |  one compressed blob when compressed
 *
 * Record (varints are zigzag, as protobuf): length, attributes i8, timestampDelta varlong,
 * offsetDelta varint, keyLength varint (-1 = null), key, valueLength varint (-1 = null),
 * value, headerCount varint, then per header keyLength, key (UTF-8), valueLength (-1 =
 * null), value.
 *
 * Invariants: a valid batch has magic 2, 12 + batchLength = its total size, a CRC-32C over
 * [21, end) that matches, and records whose offsetDeltas strictly increase within
 * [0, lastOffsetDelta]. A batch a producer sends has recordCount = lastOffsetDelta + 1 >= 1
 * (every offset of its range holds a record). A stored batch may have fewer: log
 * compaction (../persist/compaction.ts) rewrites batches of closed segments keeping only
 * some records, each with its original offsetDelta, and keeps lastOffsetDelta, so
 * 1 <= recordCount <= lastOffsetDelta + 1 and a record's offset is always baseOffset + its
 * offsetDelta, never baseOffset + its index. `BatchOrigin` says which rule a check applies.
 * The broker never re-encodes a batch on the produce and fetch paths (compaction, a
 * background rewrite of closed segments, is the one exception); baseOffset and
 * partitionLeaderEpoch are outside the CRC so they can be rewritten in place.
 */
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';

/** A CRC-32C implementation: fast-crc32c in Node (./crc32c.js), the JS table in browsers (./crc32c-js.js). */
export type Crc32cFunction = (bytes: Uint8Array) => number;

export const BASE_OFFSET_OFFSET = 0;
export const BASE_OFFSET_BYTES = 8;
export const BATCH_LENGTH_OFFSET = BASE_OFFSET_OFFSET + BASE_OFFSET_BYTES;
export const BATCH_LENGTH_BYTES = 4;
export const LOG_OVERHEAD_BYTES = BATCH_LENGTH_OFFSET + BATCH_LENGTH_BYTES; // 12: bytes before batchLength counts
export const LEADER_EPOCH_OFFSET = LOG_OVERHEAD_BYTES;
export const LEADER_EPOCH_BYTES = 4;
export const MAGIC_OFFSET = LEADER_EPOCH_OFFSET + LEADER_EPOCH_BYTES;
export const MAGIC_BYTES = 1;
export const CRC_OFFSET = MAGIC_OFFSET + MAGIC_BYTES;
export const CRC_BYTES = 4;
export const ATTRIBUTES_OFFSET = CRC_OFFSET + CRC_BYTES;
export const ATTRIBUTES_BYTES = 2;
export const LAST_OFFSET_DELTA_OFFSET = ATTRIBUTES_OFFSET + ATTRIBUTES_BYTES;
export const LAST_OFFSET_DELTA_BYTES = 4;
export const BASE_TIMESTAMP_OFFSET = LAST_OFFSET_DELTA_OFFSET + LAST_OFFSET_DELTA_BYTES;
export const BASE_TIMESTAMP_BYTES = 8;
export const MAX_TIMESTAMP_OFFSET = BASE_TIMESTAMP_OFFSET + BASE_TIMESTAMP_BYTES;
export const MAX_TIMESTAMP_BYTES = 8;
export const PRODUCER_ID_OFFSET = MAX_TIMESTAMP_OFFSET + MAX_TIMESTAMP_BYTES;
export const PRODUCER_ID_BYTES = 8;
export const PRODUCER_EPOCH_OFFSET = PRODUCER_ID_OFFSET + PRODUCER_ID_BYTES;
export const PRODUCER_EPOCH_BYTES = 2;
export const BASE_SEQUENCE_OFFSET = PRODUCER_EPOCH_OFFSET + PRODUCER_EPOCH_BYTES;
export const BASE_SEQUENCE_BYTES = 4;
export const RECORD_COUNT_OFFSET = BASE_SEQUENCE_OFFSET + BASE_SEQUENCE_BYTES;
export const RECORD_COUNT_BYTES = 4;
export const RECORDS_OFFSET = RECORD_COUNT_OFFSET + RECORD_COUNT_BYTES;
/** The whole header: the smallest possible batch is this plus at least one record. */
export const BATCH_HEADER_BYTES = RECORDS_OFFSET;
assert(BATCH_HEADER_BYTES === 61, 'RecordBatch v2 header is 61 bytes');

export const MAGIC_V2 = 2;
/** The smallest record: length, attributes, tsDelta, offsetDelta, key -1, value -1, 0 headers. */
export const RECORD_BYTES_MIN = 7;

export const COMPRESSION_MASK = 0x07;
export const TIMESTAMP_TYPE_BIT = 0x08;
export const TRANSACTIONAL_BIT = 0x10;
export const CONTROL_BIT = 0x20;

export const Compression = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;

/**
 * Which record-count rule a batch check applies. 'produced': a batch as a producer sends it,
 * recordCount = lastOffsetDelta + 1 (the owner's produce validation). 'stored': a batch read
 * back from a segment, which compaction may have thinned, 1 <= recordCount <=
 * lastOffsetDelta + 1 (recovery, verify, fetch paths, the client's decoder).
 */
export type BatchOrigin = 'produced' | 'stored';

/** Why recordCount and lastOffsetDelta do not fit `origin`'s rule, or null when they do. */
export function recordCountProblem(recordCount: number, lastOffsetDelta: number, origin: BatchOrigin): string | null {
  if (recordCount < 1 || lastOffsetDelta < 0) return `recordCount ${recordCount} with lastOffsetDelta ${lastOffsetDelta}`;
  if (origin === 'produced' ? recordCount !== lastOffsetDelta + 1 : recordCount > lastOffsetDelta + 1) {
    return `recordCount ${recordCount} does not match lastOffsetDelta ${lastOffsetDelta}`;
  }
  return null;
}
export type CompressionName = keyof typeof Compression;

export interface RecordHeader {
  key: string;
  value: Uint8Array | null;
}

/** A record to encode. Keys and values are bytes (or null); the timestamp is ms since epoch. */
export interface RecordInput {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  timestamp?: number;
  headers?: RecordHeader[];
}

/** A decoded record. key and value are views into the batch bytes, not copies. */
export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

/** Header fields of a batch, read without touching the records. */
export interface BatchHeader {
  baseOffset: number;
  batchLength: number;
  /** 12 + batchLength: the bytes the batch occupies. */
  sizeBytes: number;
  magic: number;
  crc: number;
  attributes: number;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

export interface EncodeOptions {
  baseOffset?: number;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
  /** Attribute bits 0-2. The codec never compresses; `compressedRecords` carries the blob. */
  compression?: CompressionName;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: false });

// ---------------------------------------------------------------- varints

/** Zigzag of a safe integer, without 32-bit bitwise overflow. */
function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

function unzigzag(z: number): number {
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

/** Bytes of the unsigned varint of a non-negative safe integer. */
function uvarintSize(u: number): number {
  let size = 1;
  while (u >= 0x80) {
    u = Math.floor(u / 128);
    size++;
  }
  return size;
}

export function varintSize(n: number): number {
  return n >= -64 && n < 64 ? 1 : uvarintSize(zigzag(n));
}

function writeUvarint(buf: Uint8Array, pos: number, u: number): number {
  // One and two bytes (every delta and length under 8 KiB) without the general loop.
  if (u < 0x80) {
    buf[pos] = u;
    return pos + 1;
  }
  if (u < 0x4000) {
    buf[pos] = (u & 0x7f) | 0x80;
    buf[pos + 1] = u >>> 7;
    return pos + 2;
  }
  while (u >= 0x80) {
    buf[pos++] = (u % 128) | 0x80;
    u = Math.floor(u / 128);
  }
  buf[pos++] = u;
  return pos;
}

function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  return writeUvarint(buf, pos, zigzag(n));
}

/** A cursor for decoding; `pos` advances. One per decode call, not per record. */
class Reader {
  pos: number;
  readonly buf: Uint8Array;
  readonly end: number;
  constructor(buf: Uint8Array, pos: number, end: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }
  varint(): number {
    // Most varints here are one byte (deltas and lengths under 64) or two (under 8192: a
    // 100-byte record's length and value length, offset deltas past 63): both without the
    // general loop, which a consumer otherwise ran three times per record.
    const pos = this.pos;
    if (pos < this.end) {
      const b0 = this.buf[pos];
      if (b0 < 0x80) {
        this.pos = pos + 1;
        return (b0 >>> 1) ^ -(b0 & 1);
      }
      if (pos + 1 < this.end && this.buf[pos + 1] < 0x80) {
        this.pos = pos + 2;
        const z = (b0 & 0x7f) | (this.buf[pos + 1] << 7);
        return (z >>> 1) ^ -(z & 1);
      }
    }
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw corrupt('varint runs past the end of the batch');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw corrupt('varint is not a safe integer');
        return unzigzag(result);
      }
      scale *= 128;
    }
    throw corrupt('varint longer than 10 bytes');
  }
  bytes(length: number): Uint8Array {
    if (length < 0 || this.pos + length > this.end) throw corrupt('field runs past the end of the batch');
    // The constructor, not subarray: about 20% cheaper per view in V8 (no species lookup),
    // and a view per key and value is most of a consumer's decode time.
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.pos, length);
    this.pos += length;
    return view;
  }
  nullableBytes(): Uint8Array | null {
    const length = this.varint();
    if (length === -1) return null;
    if (length < -1) throw corrupt(`negative length ${length}`);
    return this.bytes(length);
  }
}

function corrupt(message: string): SluiceError {
  return new SluiceError('CORRUPT_MESSAGE', message);
}

// ---------------------------------------------------------------- encode

/** Shared by records without headers (read only). */
const NO_HEADER_KEYS: Uint8Array[] = [];

function headerKeyBytes(headers: RecordHeader[] | undefined): Uint8Array[] {
  if (!headers || headers.length === 0) return NO_HEADER_KEYS;
  return headers.map((h) => textEncoder.encode(h.key));
}

/** Bytes of a record after its length varint. `headerKeys`: the headers' keys as UTF-8. */
function recordBodySize(
  key: Uint8Array | null,
  value: Uint8Array | null,
  headers: RecordHeader[],
  headerKeys: Uint8Array[],
  timestampDelta: number,
  offsetDelta: number,
): number {
  let size = 1 + varintSize(timestampDelta) + varintSize(offsetDelta);
  size += key === null ? 1 : varintSize(key.length) + key.length;
  size += value === null ? 1 : varintSize(value.length) + value.length;
  size += varintSize(headers.length);
  for (let i = 0; i < headers.length; i++) {
    const k = headerKeys[i];
    const v = headers[i].value;
    size += varintSize(k.length) + k.length;
    size += v === null ? 1 : varintSize(v.length) + v.length;
  }
  return size;
}

/** Writes one record, its length (`body`, from recordBodySize) first; returns the position after it. */
function writeRecord(
  out: Uint8Array,
  pos: number,
  body: number,
  key: Uint8Array | null,
  value: Uint8Array | null,
  headers: RecordHeader[],
  headerKeys: Uint8Array[],
  timestampDelta: number,
  offsetDelta: number,
): number {
  pos = writeVarint(out, pos, body);
  out[pos++] = 0; // record attributes, unused
  pos = writeVarint(out, pos, timestampDelta);
  pos = writeVarint(out, pos, offsetDelta);
  pos = writeNullableBytes(out, pos, key);
  pos = writeNullableBytes(out, pos, value);
  pos = writeVarint(out, pos, headers.length);
  for (let h = 0; h < headers.length; h++) {
    pos = writeNullableBytes(out, pos, headerKeys[h]);
    pos = writeNullableBytes(out, pos, headers[h].value);
  }
  return pos;
}

/** A varint length (-1 for null), then the bytes. */
function writeNullableBytes(out: Uint8Array, pos: number, bytes: Uint8Array | null): number {
  if (bytes === null) return writeVarint(out, pos, -1);
  pos = writeVarint(out, pos, bytes.length);
  out.set(bytes, pos);
  return pos + bytes.length;
}

/**
 * Size of the records section (uncompressed) for these records, so that a caller can
 * reserve space once.
 */
export function encodedRecordsSize(records: RecordInput[], baseTimestamp: number, now: number, bodySizes?: Int32Array): number {
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const rec = records[i];
    const headers = rec.headers ?? NO_HEADERS;
    const body = recordBodySize(rec.key ?? null, rec.value, headers, headerKeyBytes(headers), (rec.timestamp ?? now) - baseTimestamp, i);
    if (bodySizes) bodySizes[i] = body;
    total += varintSize(body) + body;
  }
  return total;
}

/** Writes the records section into `out` at `pos`; returns the position after it. */
export function writeRecords(
  out: Uint8Array,
  pos: number,
  records: RecordInput[],
  baseTimestamp: number,
  now: number,
  bodySizes?: Int32Array,
): number {
  for (let i = 0; i < records.length; i++) {
    const rec = records[i];
    const key = rec.key ?? null;
    const headers = rec.headers ?? NO_HEADERS;
    const headerKeys = headerKeyBytes(headers);
    const tsDelta = (rec.timestamp ?? now) - baseTimestamp;
    const body = bodySizes ? bodySizes[i] : recordBodySize(key, rec.value, headers, headerKeys, tsDelta, i);
    pos = writeRecord(out, pos, body, key, rec.value, headers, headerKeys, tsDelta, i);
  }
  return pos;
}

function checkTimestamp(ts: number): void {
  if (!Number.isSafeInteger(ts)) throw new SluiceError('INVALID_ARGUMENT', `timestamp ${ts} is not an integer`);
}

/**
 * Writes the 61-byte header of a batch of `total` bytes at `view`'s start; the CRC is the
 * caller's, once the records are in. Plain parameters: a `{ ...options, ... }` object per
 * batch cost about 5 µs here (a producer's seal path).
 */
function writeBatchHeader(view: DataView, total: number, fields: EncodeOptions, recordCount: number, baseTimestamp: number, maxTimestamp: number): void {
  const compression = Compression[fields.compression ?? 'none'];
  if (compression === undefined) throw new SluiceError('INVALID_ARGUMENT', `unknown compression ${fields.compression}`);
  view.setBigInt64(BASE_OFFSET_OFFSET, BigInt(fields.baseOffset ?? 0), false);
  view.setInt32(BATCH_LENGTH_OFFSET, total - LOG_OVERHEAD_BYTES, false);
  view.setInt32(LEADER_EPOCH_OFFSET, 0, false);
  view.setInt8(MAGIC_OFFSET, MAGIC_V2);
  view.setInt16(ATTRIBUTES_OFFSET, compression, false);
  view.setInt32(LAST_OFFSET_DELTA_OFFSET, recordCount - 1, false);
  view.setBigInt64(BASE_TIMESTAMP_OFFSET, BigInt(baseTimestamp), false);
  view.setBigInt64(MAX_TIMESTAMP_OFFSET, BigInt(maxTimestamp), false);
  view.setBigInt64(PRODUCER_ID_OFFSET, BigInt(fields.producerId ?? -1), false);
  view.setInt16(PRODUCER_EPOCH_OFFSET, fields.producerEpoch ?? -1, false);
  view.setInt32(BASE_SEQUENCE_OFFSET, fields.baseSequence ?? -1, false);
  view.setInt32(RECORD_COUNT_OFFSET, recordCount, false);
}

/**
 * Encodes records into one uncompressed RecordBatch v2 (or, with `compressedRecords`, a
 * batch whose records section is that already-compressed blob). Sizes first, then one
 * allocation, filled in place.
 */
export function encodeBatchWith(
  crc32c: Crc32cFunction,
  records: RecordInput[],
  options: EncodeOptions & { now?: number; compressedRecords?: Uint8Array } = {},
): Uint8Array {
  if (records.length === 0) throw new SluiceError('INVALID_ARGUMENT', 'a batch needs at least one record');
  const now = options.now ?? Date.now();
  let baseTimestamp = records[0].timestamp ?? now;
  let maxTimestamp = baseTimestamp;
  for (const rec of records) {
    const ts = rec.timestamp ?? now;
    checkTimestamp(ts);
    if (ts < baseTimestamp) baseTimestamp = ts;
    if (ts > maxTimestamp) maxTimestamp = ts;
  }
  // Kafka's baseTimestamp is the first record's; using the minimum keeps every delta
  // non-negative, which every client decodes the same way.
  // Each record's body size, computed once for sizing and reused for writing.
  const bodySizes = options.compressedRecords ? undefined : new Int32Array(records.length);
  const recordsSize = options.compressedRecords
    ? options.compressedRecords.length
    : encodedRecordsSize(records, baseTimestamp, now, bodySizes);
  const total = BATCH_HEADER_BYTES + recordsSize;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  writeBatchHeader(view, total, options, records.length, baseTimestamp, maxTimestamp);
  if (options.compressedRecords) out.set(options.compressedRecords, RECORDS_OFFSET);
  else {
    const end = writeRecords(out, RECORDS_OFFSET, records, baseTimestamp, now, bodySizes);
    assert(end === total, () => `encoded ${end} bytes, sized ${total}`);
  }
  view.setUint32(CRC_OFFSET, crc32c(out.subarray(ATTRIBUTES_OFFSET)), false);
  return out;
}

/** Smallest buffer a RecordBatchBuilder starts with. */
const BUILDER_BYTES_MIN = 1024;

/**
 * Builds one RecordBatch v2 a record at a time, as Kafka's MemoryRecordsBuilder: a record
 * is encoded into the batch's buffer when it is appended, so a producer keeps no object
 * per record, and `finish` writes the header and the CRC. baseTimestamp is the first
 * record's timestamp (Kafka's rule: a later record's delta may be negative). The buffer
 * starts at `initialBytes` and doubles when a record does not fit; `headroomBytes` are
 * left free before the batch, so that a frame can be written around it without a copy.
 * Owner: one thread; a builder is finished once.
 */
export class RecordBatchBuilder {
  readonly #headroom: number;
  #buf: Uint8Array;
  /** Where the next record goes, in #buf. */
  #pos: number;
  #count = 0;
  #baseTimestamp = 0;
  #maxTimestamp = 0;
  #finished = false;

  constructor(headroomBytes: number, initialBytes: number) {
    assert(Number.isInteger(headroomBytes) && headroomBytes >= 0, 'headroomBytes is an integer >= 0');
    this.#headroom = headroomBytes;
    this.#buf = new Uint8Array(headroomBytes + Math.max(BUILDER_BYTES_MIN, initialBytes | 0));
    this.#pos = headroomBytes + RECORDS_OFFSET;
  }

  get recordCount(): number {
    return this.#count;
  }

  /** Bytes of the batch so far (header included). */
  get sizeBytes(): number {
    return this.#pos - this.#headroom;
  }

  /**
   * Appends a record (offsetDelta = the records before it); returns its encoded bytes.
   * Header keys are encoded as UTF-8 here. A timestamp that is not a safe integer is
   * INVALID_ARGUMENT and appends nothing.
   */
  append(key: Uint8Array | null, value: Uint8Array | null, headers: RecordHeader[], timestamp: number): number {
    assert(!this.#finished, 'append to a finished RecordBatchBuilder');
    checkTimestamp(timestamp);
    const first = this.#count === 0;
    const tsDelta = first ? 0 : timestamp - this.#baseTimestamp;
    const headerKeys = headerKeyBytes(headers);
    const body = recordBodySize(key, value, headers, headerKeys, tsDelta, this.#count);
    const size = varintSize(body) + body;
    this.#ensure(size);
    const pos = writeRecord(this.#buf, this.#pos, body, key, value, headers, headerKeys, tsDelta, this.#count);
    // (The message is built only on failure: this runs per record.)
    if (pos !== this.#pos + size) assert(false, () => `appended ${pos - this.#pos} bytes, sized ${size}`);
    this.#pos = pos;
    this.#count++;
    if (first) this.#baseTimestamp = this.#maxTimestamp = timestamp;
    else if (timestamp > this.#maxTimestamp) this.#maxTimestamp = timestamp;
    return size;
  }

  /** The records section so far (a view), e.g. to compress it. */
  records(): Uint8Array {
    return this.#buf.subarray(this.#headroom + RECORDS_OFFSET, this.#pos);
  }

  /**
   * Writes the header and the CRC; returns the batch, a view with the headroom before it in
   * the same buffer. With `compressedRecords` (the compressed records()), the batch holds
   * those instead, in a new buffer with the same headroom.
   */
  finish(crc32c: Crc32cFunction, options: EncodeOptions & { compressedRecords?: Uint8Array } = {}): Uint8Array {
    assert(!this.#finished, 'a RecordBatchBuilder is finished once');
    if (this.#count === 0) throw new SluiceError('INVALID_ARGUMENT', 'a batch needs at least one record');
    this.#finished = true;
    let out: Uint8Array;
    if (options.compressedRecords) {
      const total = BATCH_HEADER_BYTES + options.compressedRecords.length;
      out = new Uint8Array(this.#headroom + total).subarray(this.#headroom);
      out.set(options.compressedRecords, RECORDS_OFFSET);
    } else {
      out = this.#buf.subarray(this.#headroom, this.#pos);
    }
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    writeBatchHeader(view, out.length, options, this.#count, this.#baseTimestamp, this.#maxTimestamp);
    view.setUint32(CRC_OFFSET, crc32c(out.subarray(ATTRIBUTES_OFFSET)), false);
    return out;
  }

  #ensure(bytes: number): void {
    if (this.#pos + bytes <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + bytes));
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
  }
}

/**
 * Rewrites a batch's producer id, epoch and base sequence (a producer renumbering a batch
 * it has not sent yet) and its CRC, in place.
 */
export function restampProducerFields(crc32c: Crc32cFunction, batch: Uint8Array, producerId: number, producerEpoch: number, baseSequence: number): void {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  view.setBigInt64(PRODUCER_ID_OFFSET, BigInt(producerId), false);
  view.setInt16(PRODUCER_EPOCH_OFFSET, producerEpoch, false);
  view.setInt32(BASE_SEQUENCE_OFFSET, baseSequence, false);
  view.setUint32(CRC_OFFSET, crc32c(batch.subarray(ATTRIBUTES_OFFSET)), false);
}

/**
 * LogAppendTime (timestamp-type.ts): sets the batch's timestampType bit and its maxTimestamp
 * to `nowMs`, and rewrites its CRC, in place (the batch at `pos`, `sizeBytes` long, already
 * validated). Kafka's broker does this to every batch appended to such a topic.
 */
export function stampLogAppendTime(crc32c: Crc32cFunction, bytes: Uint8Array, view: DataView, pos: number, sizeBytes: number, nowMs: number): void {
  view.setInt16(pos + ATTRIBUTES_OFFSET, view.getInt16(pos + ATTRIBUTES_OFFSET, false) | TIMESTAMP_TYPE_BIT, false);
  view.setInt32(pos + MAX_TIMESTAMP_OFFSET, Math.floor(nowMs / 4294967296), false);
  view.setUint32(pos + MAX_TIMESTAMP_OFFSET + 4, nowMs >>> 0, false);
  view.setUint32(pos + CRC_OFFSET, crc32c(bytes.subarray(pos + ATTRIBUTES_OFFSET, pos + sizeBytes)), false);
}

/** A batch's timestamp for its records: its maxTimestamp under LogAppendTime, else null (each record's own). */
export function logAppendTimeOf(header: Pick<BatchHeader, 'attributes' | 'maxTimestamp'>): number | null {
  return (header.attributes & TIMESTAMP_TYPE_BIT) !== 0 ? header.maxTimestamp : null;
}

// ---------------------------------------------------------------- header and validation

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads the header fields at `pos` without validating anything but that 61 bytes exist.
 * `view` must cover `bytes` (pass one DataView per buffer to avoid allocating per batch).
 */
export function readBatchHeader(view: DataView, pos: number): BatchHeader {
  if (pos + BATCH_HEADER_BYTES > view.byteLength) throw corrupt('batch header runs past the end of the data');
  const batchLength = view.getInt32(pos + BATCH_LENGTH_OFFSET, false);
  return {
    baseOffset: Number(view.getBigInt64(pos + BASE_OFFSET_OFFSET, false)),
    batchLength,
    sizeBytes: LOG_OVERHEAD_BYTES + batchLength,
    magic: view.getInt8(pos + MAGIC_OFFSET),
    crc: view.getUint32(pos + CRC_OFFSET, false),
    attributes: view.getInt16(pos + ATTRIBUTES_OFFSET, false),
    lastOffsetDelta: view.getInt32(pos + LAST_OFFSET_DELTA_OFFSET, false),
    baseTimestamp: Number(view.getBigInt64(pos + BASE_TIMESTAMP_OFFSET, false)),
    maxTimestamp: Number(view.getBigInt64(pos + MAX_TIMESTAMP_OFFSET, false)),
    producerId: Number(view.getBigInt64(pos + PRODUCER_ID_OFFSET, false)),
    producerEpoch: view.getInt16(pos + PRODUCER_EPOCH_OFFSET, false),
    baseSequence: view.getInt32(pos + BASE_SEQUENCE_OFFSET, false),
    recordCount: view.getInt32(pos + RECORD_COUNT_OFFSET, false),
  };
}

/**
 * The checks of a batch at `pos` that need no CRC: framing, magic, size limit, record
 * count. Returns its header. The gateway thread runs these before a batch enters a ring;
 * the owner runs them again with the CRC (validateBatchAtWith).
 */
export function checkBatchFrameAt(
  bytes: Uint8Array,
  view: DataView,
  pos: number,
  sizeBytesMax: number,
  origin: BatchOrigin = 'produced',
): BatchHeader {
  const remaining = bytes.length - pos;
  if (remaining < BATCH_HEADER_BYTES) {
    throw corrupt(`a batch needs at least ${BATCH_HEADER_BYTES} bytes, got ${remaining}`);
  }
  const header = readBatchHeader(view, pos);
  if (header.magic !== MAGIC_V2) {
    throw new SluiceError('UNSUPPORTED_FOR_MESSAGE_FORMAT', `magic ${header.magic}, only RecordBatch v2 (magic 2) is accepted`);
  }
  if (header.batchLength < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + RECORD_BYTES_MIN) {
    throw corrupt(`batchLength ${header.batchLength} is too small for a batch`);
  }
  if (header.sizeBytes > sizeBytesMax) {
    throw new SluiceError('MESSAGE_TOO_LARGE', `batch of ${header.sizeBytes} bytes exceeds the limit of ${sizeBytesMax}`);
  }
  if (header.sizeBytes > remaining) {
    throw corrupt(`batchLength ${header.batchLength} runs past the ${remaining} bytes given`);
  }
  const countProblem = recordCountProblem(header.recordCount, header.lastOffsetDelta, origin);
  if (countProblem !== null) throw corrupt(countProblem);
  return header;
}

/** `bytes` is exactly one batch as far as checkBatchFrameAt can tell (no CRC). */
export function checkBatchFrame(bytes: Uint8Array, sizeBytesMax: number): BatchHeader {
  const header = checkBatchFrameAt(bytes, dataView(bytes), 0, sizeBytesMax);
  if (header.sizeBytes !== bytes.length) {
    throw corrupt(`batch is ${header.sizeBytes} bytes but ${bytes.length} were given`);
  }
  return header;
}

/**
 * Validates the batch that starts at `pos` in `bytes` without decoding its records:
 * checkBatchFrameAt, then the CRC-32C. Returns its header. Throws CORRUPT_MESSAGE,
 * UNSUPPORTED_FOR_MESSAGE_FORMAT or MESSAGE_TOO_LARGE.
 */
export function validateBatchAtWith(
  crc32c: Crc32cFunction,
  bytes: Uint8Array,
  view: DataView,
  pos: number,
  sizeBytesMax: number,
  origin: BatchOrigin = 'produced',
): BatchHeader {
  const header = checkBatchFrameAt(bytes, view, pos, sizeBytesMax, origin);
  const crc = crc32c(bytes.subarray(pos + ATTRIBUTES_OFFSET, pos + header.sizeBytes));
  if (crc !== header.crc) {
    throw corrupt(`CRC32C mismatch: stored ${header.crc.toString(16)}, computed ${crc.toString(16)}`);
  }
  return header;
}

/**
 * Only the CRC-32C check of the batch of `sizeBytes` bytes at `pos` (whose framing was checked
 * already, e.g. by checkBatchFrame on the same bytes): throws CORRUPT_MESSAGE on a mismatch.
 */
export function checkBatchCrcAtWith(crc32c: Crc32cFunction, bytes: Uint8Array, view: DataView, pos: number, sizeBytes: number): void {
  const stored = view.getUint32(pos + CRC_OFFSET, false);
  const crc = crc32c(bytes.subarray(pos + ATTRIBUTES_OFFSET, pos + sizeBytes));
  if (crc !== stored) {
    throw corrupt(`CRC32C mismatch: stored ${stored.toString(16)}, computed ${crc.toString(16)}`);
  }
}

/** Validates `bytes` as exactly one batch. */
export function validateBatchWith(
  crc32c: Crc32cFunction,
  bytes: Uint8Array,
  sizeBytesMax = Number.MAX_SAFE_INTEGER,
  origin: BatchOrigin = 'produced',
): BatchHeader {
  const header = validateBatchAtWith(crc32c, bytes, dataView(bytes), 0, sizeBytesMax, origin);
  if (header.sizeBytes !== bytes.length) {
    throw corrupt(`batch is ${header.sizeBytes} bytes but ${bytes.length} were given`);
  }
  return header;
}

/** Rewrites baseOffset in place (outside the CRC). */
export function writeBaseOffset(view: DataView, pos: number, baseOffset: number): void {
  view.setBigInt64(pos + BASE_OFFSET_OFFSET, BigInt(baseOffset), false);
}

export function compressionOf(attributes: number): CompressionName {
  const code = attributes & COMPRESSION_MASK;
  const name = (Object.keys(Compression) as CompressionName[]).find((k) => Compression[k] === code);
  if (name === undefined) throw corrupt(`unknown compression code ${code}`);
  return name;
}

// ---------------------------------------------------------------- decode

/**
 * Decodes the records of an uncompressed records section (or of a decompressed blob),
 * calling `make` for each record at or after `offsetMin`, so that a caller builds the one
 * object it needs per record and no other. Views, not copies: keys and values point into
 * `recordsBytes`. Records without headers share one frozen empty array. Under
 * LogAppendTime (the header's timestampType bit) every record's timestamp is the batch's
 * maxTimestamp, as Kafka's readers take it.
 */
export function decodeRecordsWith<T>(
  recordsBytes: Uint8Array,
  header: Pick<BatchHeader, 'baseOffset' | 'baseTimestamp' | 'recordCount' | 'attributes' | 'maxTimestamp'>,
  offsetMin: number,
  make: (offset: number, timestamp: number, key: Uint8Array | null, value: Uint8Array | null, headers: RecordHeader[]) => T,
  out: T[],
): T[] {
  const r = new Reader(recordsBytes, 0, recordsBytes.length);
  const appendTime = logAppendTimeOf(header);
  for (let i = 0; i < header.recordCount; i++) {
    const length = r.varint();
    if (length < RECORD_BYTES_MIN - 1 || r.pos + length > r.end) throw corrupt(`record ${i} length ${length} is out of range`);
    const end = r.pos + length;
    r.pos++; // attributes
    const createTime = header.baseTimestamp + r.varint();
    const timestamp = appendTime ?? createTime;
    const offset = header.baseOffset + r.varint();
    const key = r.nullableBytes();
    const value = r.nullableBytes();
    const headerCount = r.varint();
    if (headerCount < 0 || headerCount > length) throw corrupt(`record ${i} has ${headerCount} headers`);
    let headers = NO_HEADERS;
    if (headerCount > 0) {
      headers = [];
      for (let h = 0; h < headerCount; h++) {
        const keyBytes = r.nullableBytes();
        if (keyBytes === null) throw corrupt('a header key is null');
        headers.push({ key: textDecoder.decode(keyBytes), value: r.nullableBytes() });
      }
    }
    if (r.pos !== end) throw corrupt(`record ${i} is ${length} bytes but its fields take ${r.pos - end + length}`);
    if (offset >= offsetMin) out.push(make(offset, timestamp, key, value, headers));
  }
  if (r.pos !== r.end) throw corrupt(`${r.end - r.pos} bytes after the last record`);
  return out;
}

/** Shared by every decoded record that has no headers (frozen: never mutate a record's headers). */
const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];

function decodedRecord(offset: number, timestamp: number, key: Uint8Array | null, value: Uint8Array | null, headers: RecordHeader[]): DecodedRecord {
  return { offset, timestamp, key, value, headers };
}

/**
 * Decodes the records of an uncompressed records section (or of a decompressed blob).
 * Views, not copies: keys and values point into `recordsBytes`.
 */
export function decodeRecords(
  recordsBytes: Uint8Array,
  header: Pick<BatchHeader, 'baseOffset' | 'baseTimestamp' | 'recordCount' | 'attributes' | 'maxTimestamp'>,
): DecodedRecord[] {
  return decodeRecordsWith(recordsBytes, header, Number.NEGATIVE_INFINITY, decodedRecord, []);
}

export interface DecodedBatch {
  header: BatchHeader;
  records: DecodedRecord[];
}

/**
 * Validates and decodes one batch, as stored (a compacted batch may hold fewer records
 * than its offset range: each record's offset is baseOffset + its offsetDelta).
 * Compressed batches need `decompress` (sync), which turns the records blob into the plain
 * records section.
 */
export function decodeBatchWith(
  crc32c: Crc32cFunction,
  bytes: Uint8Array,
  decompress?: (compression: CompressionName, blob: Uint8Array) => Uint8Array,
): DecodedBatch {
  const header = validateBatchWith(crc32c, bytes, Number.MAX_SAFE_INTEGER, 'stored');
  let section = bytes.subarray(RECORDS_OFFSET, header.sizeBytes);
  const compression = compressionOf(header.attributes);
  if (compression !== 'none') {
    if (!decompress) throw new SluiceError('INVALID_ARGUMENT', `batch is ${compression}-compressed and no decompressor was given`);
    section = decompress(compression, section);
  }
  return { header, records: decodeRecords(section, header) };
}

// ---------------------------------------------------------------- record spans (compaction, key checks)

/**
 * One record of a records section as forEachRecordSpan sees it: where its bytes are
 * ([start, end), the length varint included, so the bytes can be copied into another batch
 * with the same baseOffset and baseTimestamp unchanged), its deltas, its key (a view) and
 * whether its value is null (a tombstone). One object per walk, reused for every record:
 * copy what you keep.
 */
export interface RecordSpan {
  start: number;
  end: number;
  offsetDelta: number;
  timestampDelta: number;
  key: Uint8Array | null;
  valueIsNull: boolean;
}

/**
 * Calls `fn` for each of the `recordCount` records of an uncompressed records section,
 * checking what decodeRecordsWith checks plus that offsetDeltas strictly increase and stay
 * within [0, lastOffsetDelta]. Throws CORRUPT_MESSAGE.
 */
export function forEachRecordSpan(
  section: Uint8Array,
  header: Pick<BatchHeader, 'recordCount' | 'lastOffsetDelta'>,
  fn: (span: RecordSpan) => void,
): void {
  const r = new Reader(section, 0, section.length);
  const span: RecordSpan = { start: 0, end: 0, offsetDelta: 0, timestampDelta: 0, key: null, valueIsNull: false };
  let previousDelta = -1;
  for (let i = 0; i < header.recordCount; i++) {
    const start = r.pos;
    const length = r.varint();
    if (length < RECORD_BYTES_MIN - 1 || r.pos + length > r.end) throw corrupt(`record ${i} length ${length} is out of range`);
    const end = r.pos + length;
    r.pos++; // attributes
    span.timestampDelta = r.varint();
    const offsetDelta = r.varint();
    if (offsetDelta <= previousDelta || offsetDelta > header.lastOffsetDelta) {
      throw corrupt(`record ${i} has offsetDelta ${offsetDelta} after ${previousDelta} (lastOffsetDelta ${header.lastOffsetDelta})`);
    }
    previousDelta = offsetDelta;
    span.key = r.nullableBytes();
    span.valueIsNull = r.nullableBytes() === null;
    if (r.pos > end) throw corrupt(`record ${i}'s key and value run past its ${length} bytes`);
    r.pos = end; // headers are carried as bytes, not read
    span.start = start;
    span.end = end;
    span.offsetDelta = offsetDelta;
    fn(span);
  }
  if (r.pos !== r.end) throw corrupt(`${r.end - r.pos} bytes after the last record`);
}

/**
 * The index of the first record whose key is null in an uncompressed records section, or
 * -1 when every record has a key. Walks varints only: no allocation per record (the
 * owner runs it on produce to compacted topics). Throws CORRUPT_MESSAGE.
 */
export function nullKeyRecordIndex(section: Uint8Array, recordCount: number): number {
  const r = new Reader(section, 0, section.length);
  for (let i = 0; i < recordCount; i++) {
    const length = r.varint();
    if (length < RECORD_BYTES_MIN - 1 || r.pos + length > r.end) throw corrupt(`record ${i} length ${length} is out of range`);
    const end = r.pos + length;
    r.pos++; // attributes
    r.varint(); // timestampDelta
    r.varint(); // offsetDelta
    const keyLength = r.varint();
    if (keyLength === -1) return i;
    if (keyLength < -1 || r.pos + keyLength > end) throw corrupt(`record ${i} key length ${keyLength} is out of range`);
    r.pos = end;
  }
  return -1;
}

/**
 * A copy of the batch `original` (one whole batch) holding `records` as its records
 * section (plain, or the compressed blob when the original is compressed) and `recordCount`
 * records. Everything else of the header stays: baseOffset, lastOffsetDelta (so the
 * batch's last offset is kept, as Kafka's cleaner does), baseTimestamp, maxTimestamp,
 * producer id, epoch, base sequence and attributes; batchLength and the CRC are computed.
 */
export function rebuildBatchWith(crc32c: Crc32cFunction, original: Uint8Array, records: Uint8Array, recordCount: number): Uint8Array {
  assert(original.length >= BATCH_HEADER_BYTES && recordCount >= 1, 'rebuild a whole batch with at least one record');
  const out = new Uint8Array(BATCH_HEADER_BYTES + records.length);
  out.set(original.subarray(0, BATCH_HEADER_BYTES));
  out.set(records, RECORDS_OFFSET);
  const view = dataView(out);
  view.setInt32(BATCH_LENGTH_OFFSET, out.length - LOG_OVERHEAD_BYTES, false);
  view.setInt32(RECORD_COUNT_OFFSET, recordCount, false);
  view.setUint32(CRC_OFFSET, crc32c(out.subarray(ATTRIBUTES_OFFSET)), false);
  return out;
}

/**
 * Walks a buffer of concatenated batches (a fetch result) and calls `fn` for each whole
 * batch view. A truncated trailing batch is ignored, as Kafka clients do.
 */
export function forEachBatch(bytes: Uint8Array, fn: (batch: Uint8Array, header: BatchHeader) => void): void {
  const view = dataView(bytes);
  let pos = 0;
  while (pos + BATCH_HEADER_BYTES <= bytes.length) {
    const header = readBatchHeader(view, pos);
    if (header.batchLength <= 0 || pos + header.sizeBytes > bytes.length) return;
    fn(bytes.subarray(pos, pos + header.sizeBytes), header);
    pos += header.sizeBytes;
  }
}

/** Bytes helper for tests and tools: UTF-8 encode. */
export function utf8(text: string): Uint8Array {
  return textEncoder.encode(text);
}
