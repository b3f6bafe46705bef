/**
 * The time index of one segment (`<baseOffset>.timeindex`): a sparse map from timestamps to
 * offsets, as Kafka's TimeIndex. No I/O here (segment.ts reads and writes the file).
 * Owner: the owner thread of the partition.
 *
 * File layout: a plain array of 12-byte entries, no header. ALL FIELDS ARE BIG-ENDIAN (as
 * Kafka's index files).
 *
 * | offset | size | field          | written by | in a CRC |
 * |-------:|-----:|----------------|------------|:--------:|
 * |      0 |    8 | timestamp      | owner      |    no    |  largest batch maxTimestamp so far in the segment (i64, ms)
 * |      8 |    4 | relativeOffset | owner      |    no    |  baseOffset of the first batch that has it, minus the segment base (u32)
 *
 * Like the offset index, it has no CRC: it is checked against the log and rebuilt from it.
 *
 * Invariants: timestamps strictly increase (an entry is added only when the largest
 * timestamp so far grew), relative offsets never decrease, and an entry (T, o) says that no
 * batch before the index point where it was added has a timestamp above T. So, to find
 * the first record with timestamp >= t, start at the offset of the largest entry with
 * T < t: nothing before it qualifies. A closed segment ends with an entry for its largest
 * timestamp (added when it rolled), which is how retention knows that timestamp after a
 * restart without reading the log.
 */
import { assert } from '../assert.js';
import type { IndexDecodeResult } from './offset-index.js';
import { U32_MAX } from './offset-index.js';

export const TIME_ENTRY_TIMESTAMP_OFFSET = 0;
export const TIME_ENTRY_TIMESTAMP_BYTES = 8;
export const TIME_ENTRY_RELATIVE_OFFSET_OFFSET = TIME_ENTRY_TIMESTAMP_OFFSET + TIME_ENTRY_TIMESTAMP_BYTES;
export const TIME_ENTRY_RELATIVE_OFFSET_BYTES = 4;
export const TIME_ENTRY_BYTES = TIME_ENTRY_RELATIVE_OFFSET_OFFSET + TIME_ENTRY_RELATIVE_OFFSET_BYTES;
assert(TIME_ENTRY_BYTES === 12, 'a time index entry is 12 bytes');

/** Entries held before the first doubling. */
const ENTRIES_INITIAL = 64;
/** Kafka's RecordBatch.NO_TIMESTAMP: a batch or segment without a timestamp. */
export const NO_TIMESTAMP = -1;

/** In-memory time index of one segment: typed arrays that grow by doubling. */
export class TimeIndex {
  // Float64Array holds every safe-integer millisecond timestamp exactly.
  #timestamps = new Float64Array(ENTRIES_INITIAL);
  #relativeOffsets = new Uint32Array(ENTRIES_INITIAL);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  timestampAt(i: number): number {
    assert(i >= 0 && i < this.#count, () => `time index entry ${i} of ${this.#count}`);
    return this.#timestamps[i];
  }

  relativeOffsetAt(i: number): number {
    assert(i >= 0 && i < this.#count, () => `time index entry ${i} of ${this.#count}`);
    return this.#relativeOffsets[i];
  }

  /**
   * The largest indexed timestamp, or NO_TIMESTAMP (-1) when empty: as in Kafka, an empty
   * index behaves as if it held (-1, base), so timestamps of -1 (none) are never indexed.
   */
  get lastTimestamp(): number {
    return this.#count === 0 ? NO_TIMESTAMP : this.#timestamps[this.#count - 1];
  }

  /** Adds (timestamp, relativeOffset) when timestamp is above the last one; returns whether it did. */
  maybeAdd(timestamp: number, relativeOffset: number): boolean {
    assert(Number.isSafeInteger(timestamp), () => `timestamp ${timestamp} is an integer`);
    assert(relativeOffset >= 0 && relativeOffset <= U32_MAX, () => `relative offset ${relativeOffset} fits u32`);
    if (timestamp <= this.lastTimestamp) return false;
    if (this.#count > 0) assert(relativeOffset >= this.#relativeOffsets[this.#count - 1], 'time index offsets never decrease');
    if (this.#count === this.#timestamps.length) this.#grow();
    this.#timestamps[this.#count] = timestamp;
    this.#relativeOffsets[this.#count] = relativeOffset;
    this.#count++;
    return true;
  }

  truncateTo(count: number): void {
    assert(count >= 0 && count <= this.#count, () => `truncate time index to ${count} of ${this.#count}`);
    this.#count = count;
  }

  /** Index of the largest entry with timestamp <= target, or -1 when there is none. */
  lookup(timestampTarget: number): number {
    let lo = 0;
    let hi = this.#count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#timestamps[mid] <= timestampTarget) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Encodes entries [from, to) into `out`; returns the bytes written. */
  encodeRange(from: number, to: number, out: Uint8Array): number {
    assert(from >= 0 && from <= to && to <= this.#count, () => `encode entries ${from}..${to} of ${this.#count}`);
    const bytes = (to - from) * TIME_ENTRY_BYTES;
    assert(out.length >= bytes, 'time index encode buffer is large enough');
    const view = new DataView(out.buffer, out.byteOffset, bytes);
    for (let i = from, p = 0; i < to; i++, p += TIME_ENTRY_BYTES) {
      // One BigInt per entry: entries are sparse (one per indexIntervalBytes), not per record.
      view.setBigInt64(p + TIME_ENTRY_TIMESTAMP_OFFSET, BigInt(this.#timestamps[i]), false);
      view.setUint32(p + TIME_ENTRY_RELATIVE_OFFSET_OFFSET, this.#relativeOffsets[i], false);
    }
    return bytes;
  }

  encode(): Uint8Array {
    const out = new Uint8Array(this.#count * TIME_ENTRY_BYTES);
    this.encodeRange(0, this.#count, out);
    return out;
  }

  equals(other: TimeIndex): boolean {
    if (other.#count !== this.#count) return false;
    for (let i = 0; i < this.#count; i++) {
      if (other.#timestamps[i] !== this.#timestamps[i] || other.#relativeOffsets[i] !== this.#relativeOffsets[i]) return false;
    }
    return true;
  }

  #grow(): void {
    const capacity = this.#timestamps.length * 2;
    const timestamps = new Float64Array(capacity);
    timestamps.set(this.#timestamps);
    const offsets = new Uint32Array(capacity);
    offsets.set(this.#relativeOffsets);
    this.#timestamps = timestamps;
    this.#relativeOffsets = offsets;
  }
}

/**
 * Decodes and validates a time index file image: size a multiple of 12, timestamps safe
 * integers that strictly increase, offsets that never decrease and stay below
 * `relativeOffsetEnd` (the segment's next offset minus its base). Whether the last entry
 * points at a batch needs the log, so segment.ts checks it.
 */
export function decodeTimeIndex(bytes: Uint8Array, relativeOffsetEnd: number): IndexDecodeResult<TimeIndex> {
  if (bytes.length % TIME_ENTRY_BYTES !== 0) {
    return { ok: false, reason: `size ${bytes.length} is not a multiple of ${TIME_ENTRY_BYTES}` };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const index = new TimeIndex();
  let previousOffset = -1;
  for (let p = 0; p < bytes.length; p += TIME_ENTRY_BYTES) {
    const entry = p / TIME_ENTRY_BYTES;
    const timestamp = Number(view.getBigInt64(p + TIME_ENTRY_TIMESTAMP_OFFSET, false));
    const relativeOffset = view.getUint32(p + TIME_ENTRY_RELATIVE_OFFSET_OFFSET, false);
    if (!Number.isSafeInteger(timestamp)) return { ok: false, reason: `entry ${entry} has timestamp ${timestamp}` };
    if (timestamp <= index.lastTimestamp || relativeOffset < previousOffset) {
      return { ok: false, reason: `entry ${entry} does not increase` };
    }
    if (relativeOffset >= relativeOffsetEnd) {
      return { ok: false, reason: `entry ${entry} points at relative offset ${relativeOffset}, past the segment's end ${relativeOffsetEnd}` };
    }
    index.maybeAdd(timestamp, relativeOffset);
    previousOffset = relativeOffset;
  }
  return { ok: true, index };
}
