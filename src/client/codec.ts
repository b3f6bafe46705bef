/**
 * The client's side of RecordBatch v2: encode a producer batch (optionally gzip), decode
 * the batches of a DATA or FETCH_OK payload into records. The byte layout is
 * src/persist/record-batch-codec.ts (shared with the broker); this file binds it to a
 * browser-safe CRC-32C (the JS table, or one the caller injects, e.g. fast-crc32c in Node)
 * and to the platform's CompressionStream / DecompressionStream (browsers, Node >= 18).
 *
 * Browser-safe; owner: the client's thread; no state.
 */
import { SluiceError } from '../errors.js';
import { crc32cJs } from '../persist/crc32c-js.js';
import {
  compressionOf,
  decodeRecordsWith,
  logAppendTimeOf,
  RECORDS_OFFSET,
  validateBatchAtWith,
  type RecordBatchBuilder,
  type BatchHeader,
  type Crc32cFunction,
  type RecordHeader,
} from '../persist/record-batch-codec.js';
import type { TimestampType } from '../persist/timestamp-type.js';

export type ClientCompression = 'none' | 'gzip';

export interface BatchIdentity {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

/** A record as the application receives it. key, value and header values are views into the received frame. */
export interface ConsumerRecord {
  topic: string;
  partition: number;
  offset: number;
  /** ms since the epoch: the producer's (CreateTime) or the broker's at append (LogAppendTime), as `timestampType` says. */
  timestamp: number;
  /** The topic's message.timestamp.type when the record was stored. */
  timestampType: TimestampType;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

/** Fixed bytes of a record besides its key, value and headers: length, attributes, deltas, lengths (generous, for sizing). */
export const RECORD_OVERHEAD_BYTES_ESTIMATE = 24;
/** Per header besides its key and value bytes. */
export const HEADER_OVERHEAD_BYTES_ESTIMATE = 10;

const utf8Encoder = new TextEncoder();

/** An upper estimate of a record's encoded size, for batching decisions (the builder sizes exactly). */
export function recordSizeEstimate(key: Uint8Array | null, value: Uint8Array | null, headers: RecordHeader[]): number {
  let bytes = RECORD_OVERHEAD_BYTES_ESTIMATE + (key?.length ?? 0) + (value?.length ?? 0);
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i];
    bytes += HEADER_OVERHEAD_BYTES_ESTIMATE + utf8Encoder.encode(h.key).length + (h.value?.length ?? 0);
  }
  return bytes;
}

async function pipeThrough(bytes: Uint8Array, transform: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> }): Promise<Uint8Array> {
  const writer = transform.writable.getWriter();
  const written = writer.write(bytes).then(() => writer.close());
  const reader = transform.readable.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
  }
  await written;
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

export function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return pipeThrough(bytes, new CompressionStream('gzip') as unknown as { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> });
}

export async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  try {
    return await pipeThrough(bytes, new DecompressionStream('gzip') as unknown as { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> });
  } catch (err) {
    throw new SluiceError('CORRUPT_MESSAGE', `a gzip batch does not decompress: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/**
 * Finishes a producer batch: header and CRC; with gzip the records section is compressed
 * first (asynchronously: a promise) and the compression bits of the attributes set, the
 * header (with recordCount) staying plain. Uncompressed, the batch is returned at once.
 */
export function finishProducerBatch(
  builder: RecordBatchBuilder,
  options: BatchIdentity & { compression: ClientCompression; crc32c?: Crc32cFunction },
): Uint8Array | Promise<Uint8Array> {
  const crc = options.crc32c ?? crc32cJs;
  const identity = { producerId: options.producerId, producerEpoch: options.producerEpoch, baseSequence: options.baseSequence };
  if (options.compression === 'none') return builder.finish(crc, identity);
  return gzip(builder.records()).then((compressed) => builder.finish(crc, { ...identity, compression: 'gzip', compressedRecords: compressed }));
}

/** Where a payload's records belong, the first offset wanted, and the CRC-32C to check batches with (the JS table if none). */
export interface PayloadPlace {
  topic: string;
  partition: number;
  offsetMin: number;
  crc32c?: Crc32cFunction;
}

/** The records of a payload, decoded, and the offset after its last batch. */
export interface DecodedPayload {
  records: ConsumerRecord[];
  /** baseOffset + lastOffsetDelta + 1 of the last batch (-1 for an empty payload). */
  nextOffset: number;
}

/**
 * Validates and decodes the whole batches of a DATA / FETCH_OK payload, in order, keeping
 * only records at or after `offsetMin` (the first batch may start below it), into one
 * array. A truncated trailing batch is not expected from Sluice (it sends whole batches)
 * and is CORRUPT_MESSAGE. Synchronous unless a batch is gzip (the browser's
 * DecompressionStream is asynchronous): then the rest comes as a promise. A consumer that
 * decodes a push at once saves the promise hops of an async call (a few µs a push).
 */
export function decodePayload(payload: Uint8Array, where: PayloadPlace): DecodedPayload | Promise<DecodedPayload> {
  const out: DecodedPayload = { records: [], nextOffset: -1 };
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let pos = 0;
  while (pos < payload.length) {
    const header = validateStoredBatchAt(payload, view, pos, where);
    const compression = compressionOf(header.attributes);
    if (compression === 'gzip') return decodeRest(payload, view, pos, header, where, out);
    pos = decodeBatch(payload.subarray(pos + RECORDS_OFFSET, pos + header.sizeBytes), compression, pos, header, where, out);
  }
  return out;
}

/** decodePayload from a gzip batch at `pos` on: each gzip batch is inflated before it is decoded. */
async function decodeRest(
  payload: Uint8Array,
  view: DataView,
  pos: number,
  header: BatchHeader,
  where: PayloadPlace,
  out: DecodedPayload,
): Promise<DecodedPayload> {
  for (;;) {
    let section = payload.subarray(pos + RECORDS_OFFSET, pos + header.sizeBytes);
    const compression = compressionOf(header.attributes);
    if (compression === 'gzip') section = await gunzip(section);
    pos = decodeBatch(section, compression, pos, header, where, out);
    if (pos >= payload.length) return out;
    header = validateStoredBatchAt(payload, view, pos, where);
  }
}

/** The header of the stored batch at `pos`, validated (CRC included); compaction may have left fewer records than its offset range. */
function validateStoredBatchAt(payload: Uint8Array, view: DataView, pos: number, where: PayloadPlace): BatchHeader {
  return validateBatchAtWith(where.crc32c ?? crc32cJs, payload, view, pos, payload.length - pos, 'stored');
}

/** Appends the records of one batch (its records `section`, inflated; `compression` from its attributes) to `out`; returns the position after the batch. */
function decodeBatch(section: Uint8Array, compression: ReturnType<typeof compressionOf>, pos: number, header: BatchHeader, where: PayloadPlace, out: DecodedPayload): number {
  if (compression !== 'none' && compression !== 'gzip') throw new SluiceError('CORRUPT_MESSAGE', `${compression} batches are not supported by this client (none and gzip are)`);
  const { topic, partition } = where;
  const timestampType: TimestampType = logAppendTimeOf(header) === null ? 'CreateTime' : 'LogAppendTime';
  decodeRecordsWith<ConsumerRecord>(section, header, where.offsetMin, (offset, timestamp, key, value, headers) => ({ topic, partition, offset, timestamp, timestampType, key, value, headers }), out.records);
  out.nextOffset = header.baseOffset + header.lastOffsetDelta + 1;
  return pos + header.sizeBytes;
}
