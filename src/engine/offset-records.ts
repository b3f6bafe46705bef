/**
 * The records of the internal offsets topic `__consumer_offsets`: one record per committed
 * offset of a (group, topic, partition), keyed so that log compaction keeps the latest
 * commit of each and drops the rest (Kafka's __consumer_offsets, simplified). Pure codec:
 * no I/O. Owner: any thread.
 *
 * ALL INTEGERS ARE BIG-ENDIAN. string = u16 byte length + UTF-8.
 *
 * Key (version 1):
 *
 * | offset | size | field     | type   | rule                                   |
 * |-------:|-----:|-----------|--------|----------------------------------------|
 * |      0 |    2 | version   | u16    | 1                                      |
 * |      2 |    4 | partition | i32    | >= 0                                   |
 * |      6 |  2+n | groupId   | string | 1..GROUP_ID_BYTES_MAX bytes            |
 * |    ... |  2+n | topic     | string | a legal topic name                     |
 *
 * Value (version 1); a null value is a tombstone (the committed offset was deleted):
 *
 * | offset | size | field           | type   | rule                              |
 * |-------:|-----:|-----------------|--------|-----------------------------------|
 * |      0 |    2 | version         | u16    | 1                                 |
 * |      2 |    8 | offset          | i64    | 0 .. 2^53 - 1                     |
 * |     10 |    8 | commitTimestamp | i64    | ms since the epoch                |
 * |     18 |  2+n | metadata        | string | at most OFFSET_METADATA_BYTES_MAX |
 *
 * A record that does not decode (a future version, a corrupt value) is skipped by the
 * loader with a warning; it never stops the broker.
 */
import { SluiceError } from '../errors.js';
import { GROUP_ID_BYTES_MAX, OFFSET_METADATA_BYTES_MAX } from './group-limits.js';

export const OFFSET_RECORD_VERSION = 1;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface OffsetKey {
  groupId: string;
  topic: string;
  partition: number;
}

export interface OffsetValue {
  offset: number;
  commitTimestamp: number;
  metadata: string;
}

export function encodeOffsetKey(key: OffsetKey): Uint8Array {
  const group = encoder.encode(key.groupId);
  const topic = encoder.encode(key.topic);
  if (group.length === 0 || group.length > GROUP_ID_BYTES_MAX) throw new SluiceError('INVALID_ARGUMENT', `group id is ${group.length} bytes; 1 to ${GROUP_ID_BYTES_MAX} allowed`);
  if (topic.length > 0xffff) throw new SluiceError('INVALID_ARGUMENT', 'topic name too long');
  const out = new Uint8Array(2 + 4 + 2 + group.length + 2 + topic.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, OFFSET_RECORD_VERSION, false);
  view.setInt32(2, key.partition, false);
  view.setUint16(6, group.length, false);
  out.set(group, 8);
  view.setUint16(8 + group.length, topic.length, false);
  out.set(topic, 10 + group.length);
  return out;
}

export function encodeOffsetValue(value: OffsetValue): Uint8Array {
  const metadata = encoder.encode(value.metadata);
  if (metadata.length > OFFSET_METADATA_BYTES_MAX) throw new SluiceError('INVALID_ARGUMENT', `metadata is ${metadata.length} bytes; at most ${OFFSET_METADATA_BYTES_MAX}`);
  const out = new Uint8Array(2 + 8 + 8 + 2 + metadata.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, OFFSET_RECORD_VERSION, false);
  view.setBigInt64(2, BigInt(value.offset), false);
  view.setBigInt64(10, BigInt(value.commitTimestamp), false);
  view.setUint16(18, metadata.length, false);
  out.set(metadata, 20);
  return out;
}

function corrupt(what: string): SluiceError {
  return new SluiceError('CORRUPT_MESSAGE', `offsets record: ${what}`);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readString(bytes: Uint8Array, v: DataView, pos: number): [string, number] {
  if (pos + 2 > bytes.length) throw corrupt('a string runs past the end');
  const n = v.getUint16(pos, false);
  if (pos + 2 + n > bytes.length) throw corrupt('a string runs past the end');
  try {
    return [decoder.decode(bytes.subarray(pos + 2, pos + 2 + n)), pos + 2 + n];
  } catch {
    throw corrupt('a string is not UTF-8');
  }
}

function readSafeInt64(v: DataView, pos: number, what: string): number {
  const big = v.getBigInt64(pos, false);
  if (big < 0n || big > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${what} ${big} is out of range`);
  return Number(big);
}

export function decodeOffsetKey(bytes: Uint8Array): OffsetKey {
  const v = view(bytes);
  if (bytes.length < 10) throw corrupt('key too short');
  const version = v.getUint16(0, false);
  if (version !== OFFSET_RECORD_VERSION) throw corrupt(`key version ${version} is not ${OFFSET_RECORD_VERSION}`);
  const partition = v.getInt32(2, false);
  if (partition < 0) throw corrupt(`partition ${partition}`);
  const [groupId, next] = readString(bytes, v, 6);
  const [topic, end] = readString(bytes, v, next);
  if (end !== bytes.length) throw corrupt('bytes after the key');
  if (groupId.length === 0 || topic.length === 0) throw corrupt('empty group id or topic');
  return { groupId, topic, partition };
}

export function decodeOffsetValue(bytes: Uint8Array): OffsetValue {
  const v = view(bytes);
  if (bytes.length < 20) throw corrupt('value too short');
  const version = v.getUint16(0, false);
  if (version !== OFFSET_RECORD_VERSION) throw corrupt(`value version ${version} is not ${OFFSET_RECORD_VERSION}`);
  const offset = readSafeInt64(v, 2, 'offset');
  const commitTimestamp = readSafeInt64(v, 10, 'commitTimestamp');
  const [metadata, end] = readString(bytes, v, 18);
  if (end !== bytes.length) throw corrupt('bytes after the value');
  return { offset, commitTimestamp, metadata };
}
