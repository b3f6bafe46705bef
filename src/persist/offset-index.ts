/**
 * The offset index of one segment (`<baseOffset>.index`): a sparse map from offsets to byte
 * positions in the segment's .log, as Kafka's OffsetIndex. No I/O here: segment.ts reads and
 * writes the file; this module holds the entries in memory, encodes, decodes and validates.
 * Owner: the owner thread of the partition.
 *
 * File layout: a plain array of 8-byte entries, no header. ALL FIELDS ARE BIG-ENDIAN (as
 * Kafka's index files).
 *
 * | offset | size | field          | written by | in a CRC |
 * |-------:|-----:|----------------|------------|:--------:|
 * |      0 |    4 | relativeOffset | owner      |    no    |  baseOffset of a batch minus the segment's base offset (u32)
 * |      4 |    4 | position       | owner      |    no    |  byte position of that batch in the .log (u32)
 *
 * The index has no CRC of its own: it is checked against the log instead (validate below,
 * plus the "last entry points at a batch with that offset" check in segment.ts) and rebuilt
 * from the log when anything does not match, so it can never make us return wrong data.
 *
 * Invariants: relativeOffset and position both strictly increase; every position is inside
 * the segment; each entry points at the first byte of a batch whose baseOffset is
 * segmentBase + relativeOffset. Entries are added every `indexIntervalBytes` of log (see
 * segment-indexes.ts), so a lookup scans at most about that many bytes of batch headers.
 */
import { assert } from '../assert.js';

export const OFFSET_ENTRY_RELATIVE_OFFSET_OFFSET = 0;
export const OFFSET_ENTRY_RELATIVE_OFFSET_BYTES = 4;
export const OFFSET_ENTRY_POSITION_OFFSET = OFFSET_ENTRY_RELATIVE_OFFSET_OFFSET + OFFSET_ENTRY_RELATIVE_OFFSET_BYTES;
export const OFFSET_ENTRY_POSITION_BYTES = 4;
export const OFFSET_ENTRY_BYTES = OFFSET_ENTRY_POSITION_OFFSET + OFFSET_ENTRY_POSITION_BYTES;
assert(OFFSET_ENTRY_BYTES === 8, 'an offset index entry is 8 bytes');

/** The largest value a u32 field holds: relative offsets and positions must fit. */
export const U32_MAX = 0xffff_ffff;
/** Entries held before the first doubling; small, because most segments of small topics stay small. */
const ENTRIES_INITIAL = 64;

/** In-memory offset index of one segment: two typed arrays that grow by doubling. */
export class OffsetIndex {
  #relativeOffsets = new Uint32Array(ENTRIES_INITIAL);
  #positions = new Uint32Array(ENTRIES_INITIAL);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  relativeOffsetAt(i: number): number {
    assert(i >= 0 && i < this.#count, () => `offset index entry ${i} of ${this.#count}`);
    return this.#relativeOffsets[i];
  }

  positionAt(i: number): number {
    assert(i >= 0 && i < this.#count, () => `offset index entry ${i} of ${this.#count}`);
    return this.#positions[i];
  }

  add(relativeOffset: number, position: number): void {
    assert(relativeOffset >= 0 && relativeOffset <= U32_MAX, () => `relative offset ${relativeOffset} fits u32`);
    assert(position >= 0 && position <= U32_MAX, () => `position ${position} fits u32`);
    if (this.#count > 0) {
      assert(relativeOffset > this.#relativeOffsets[this.#count - 1], 'offset index offsets increase');
      assert(position > this.#positions[this.#count - 1], 'offset index positions increase');
    }
    if (this.#count === this.#positions.length) this.#grow();
    this.#relativeOffsets[this.#count] = relativeOffset;
    this.#positions[this.#count] = position;
    this.#count++;
  }

  /** Drops entries from `count` on (rolling back a failed append). */
  truncateTo(count: number): void {
    assert(count >= 0 && count <= this.#count, () => `truncate offset index to ${count} of ${this.#count}`);
    this.#count = count;
  }

  /** Index of the largest entry with relativeOffset <= target, or -1 when there is none. */
  lookup(relativeTarget: number): number {
    let lo = 0;
    let hi = this.#count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#relativeOffsets[mid] <= relativeTarget) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Position to start scanning from for `relativeTarget`: its entry's, or 0 (segment start). */
  positionFor(relativeTarget: number): number {
    const i = this.lookup(relativeTarget);
    return i < 0 ? 0 : this.#positions[i];
  }

  /** Encodes entries [from, to) into `out` (at least (to - from) * 8 bytes); returns the bytes written. */
  encodeRange(from: number, to: number, out: Uint8Array): number {
    assert(from >= 0 && from <= to && to <= this.#count, () => `encode entries ${from}..${to} of ${this.#count}`);
    const bytes = (to - from) * OFFSET_ENTRY_BYTES;
    assert(out.length >= bytes, 'offset index encode buffer is large enough');
    const view = new DataView(out.buffer, out.byteOffset, bytes);
    for (let i = from, p = 0; i < to; i++, p += OFFSET_ENTRY_BYTES) {
      view.setUint32(p + OFFSET_ENTRY_RELATIVE_OFFSET_OFFSET, this.#relativeOffsets[i], false);
      view.setUint32(p + OFFSET_ENTRY_POSITION_OFFSET, this.#positions[i], false);
    }
    return bytes;
  }

  /** The whole file image. */
  encode(): Uint8Array {
    const out = new Uint8Array(this.#count * OFFSET_ENTRY_BYTES);
    this.encodeRange(0, this.#count, out);
    return out;
  }

  equals(other: OffsetIndex): boolean {
    if (other.#count !== this.#count) return false;
    for (let i = 0; i < this.#count; i++) {
      if (other.#relativeOffsets[i] !== this.#relativeOffsets[i] || other.#positions[i] !== this.#positions[i]) return false;
    }
    return true;
  }

  #grow(): void {
    const capacity = this.#positions.length * 2;
    const offsets = new Uint32Array(capacity);
    offsets.set(this.#relativeOffsets);
    const positions = new Uint32Array(capacity);
    positions.set(this.#positions);
    this.#relativeOffsets = offsets;
    this.#positions = positions;
  }
}

export type IndexDecodeResult<T> = { ok: true; index: T } | { ok: false; reason: string };

/**
 * Decodes and validates an offset index file image against the size of its segment: the
 * size is a multiple of 8, entries strictly increase, positions are inside the segment.
 * Whether the last entry really points at a batch needs the log, so segment.ts checks it.
 */
export function decodeOffsetIndex(bytes: Uint8Array, segmentBytes: number): IndexDecodeResult<OffsetIndex> {
  if (bytes.length % OFFSET_ENTRY_BYTES !== 0) {
    return { ok: false, reason: `size ${bytes.length} is not a multiple of ${OFFSET_ENTRY_BYTES}` };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const index = new OffsetIndex();
  let previousOffset = -1;
  let previousPosition = -1;
  for (let p = 0; p < bytes.length; p += OFFSET_ENTRY_BYTES) {
    const relativeOffset = view.getUint32(p + OFFSET_ENTRY_RELATIVE_OFFSET_OFFSET, false);
    const position = view.getUint32(p + OFFSET_ENTRY_POSITION_OFFSET, false);
    if (relativeOffset <= previousOffset || position <= previousPosition) {
      return { ok: false, reason: `entry ${p / OFFSET_ENTRY_BYTES} does not increase` };
    }
    if (position >= segmentBytes) {
      return { ok: false, reason: `entry ${p / OFFSET_ENTRY_BYTES} points at ${position}, past the segment's ${segmentBytes} bytes` };
    }
    index.add(relativeOffset, position);
    previousOffset = relativeOffset;
    previousPosition = position;
  }
  return { ok: true, index };
}
