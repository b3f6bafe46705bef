/**
 * When a segment gets index entries: the one policy that both appends and the recovery
 * scan apply, so that an index rebuilt from the log is byte for byte the index the appends
 * wrote (and a rebuilt-but-identical index is not reported as repaired). No I/O.
 * Owner: the owner thread of the partition.
 *
 * The policy depends only on the batches' positions and timestamps, never on how they were
 * grouped into append calls or on restarts:
 * - a batch at position p gets an offset index entry when p - (position of the last entry,
 *   or 0) >= indexIntervalBytes;
 * - at that same point, the time index gets (largest maxTimestamp so far, offset of the
 *   first batch that had it) when that timestamp grew since the last time entry;
 * - when the segment rolls (becomes closed), the time index gets one last entry for the
 *   segment's largest timestamp (Kafka's onBecomeInactiveSegment), so retention knows it
 *   after a restart from the index alone.
 */
import { assert } from '../assert.js';
import { OffsetIndex } from './offset-index.js';
import { NO_TIMESTAMP, TimeIndex } from './time-index.js';

export class SegmentIndexes {
  readonly baseOffset: number;
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  readonly #intervalBytes: number;
  #largestTimestamp = NO_TIMESTAMP;
  #offsetOfLargestTimestamp: number;
  #lastEntryPosition = 0;
  // The state saved by mark(), restored by rollback(): fields, not an object, because an
  // append marks on every call.
  #markOffsetCount = 0;
  #markTimeCount = 0;
  #markLargestTimestamp = NO_TIMESTAMP;
  #markOffsetOfLargestTimestamp = 0;
  #markLastEntryPosition = 0;

  constructor(opts: {
    baseOffset: number;
    indexIntervalBytes: number;
    offsetIndex?: OffsetIndex;
    timeIndex?: TimeIndex;
    largestTimestamp?: number;
    offsetOfLargestTimestamp?: number;
  }) {
    assert(opts.indexIntervalBytes >= 0, 'indexIntervalBytes >= 0');
    this.baseOffset = opts.baseOffset;
    this.#intervalBytes = opts.indexIntervalBytes;
    this.offsetIndex = opts.offsetIndex ?? new OffsetIndex();
    this.timeIndex = opts.timeIndex ?? new TimeIndex();
    this.#largestTimestamp = opts.largestTimestamp ?? NO_TIMESTAMP;
    this.#offsetOfLargestTimestamp = opts.offsetOfLargestTimestamp ?? opts.baseOffset;
    const n = this.offsetIndex.count;
    this.#lastEntryPosition = n === 0 ? 0 : this.offsetIndex.positionAt(n - 1);
  }

  /** Largest batch maxTimestamp in the segment, NO_TIMESTAMP (-1) when none has one. */
  get largestTimestamp(): number {
    return this.#largestTimestamp;
  }

  get offsetOfLargestTimestamp(): number {
    return this.#offsetOfLargestTimestamp;
  }

  /** Applies the policy to the batch at `position`. Call for every batch, in order. */
  onBatch(position: number, baseOffset: number, maxTimestamp: number): void {
    if (maxTimestamp > this.#largestTimestamp) {
      this.#largestTimestamp = maxTimestamp;
      this.#offsetOfLargestTimestamp = baseOffset;
    }
    const due = position - this.#lastEntryPosition >= this.#intervalBytes;
    // The first entry may sit at position 0 only when the interval is 0; later ones must
    // move forward (positions strictly increase).
    if (due && (this.offsetIndex.count === 0 || position > this.#lastEntryPosition)) {
      this.offsetIndex.add(baseOffset - this.baseOffset, position);
      this.timeIndex.maybeAdd(this.#largestTimestamp, this.#offsetOfLargestTimestamp - this.baseOffset);
      this.#lastEntryPosition = position;
    }
  }

  /** The final time entry of a segment that becomes closed. */
  onClose(): void {
    this.timeIndex.maybeAdd(this.#largestTimestamp, this.#offsetOfLargestTimestamp - this.baseOffset);
  }

  /** Remembers the state before an append, so a failed append can be undone. */
  mark(): void {
    this.#markOffsetCount = this.offsetIndex.count;
    this.#markTimeCount = this.timeIndex.count;
    this.#markLargestTimestamp = this.#largestTimestamp;
    this.#markOffsetOfLargestTimestamp = this.#offsetOfLargestTimestamp;
    this.#markLastEntryPosition = this.#lastEntryPosition;
  }

  rollback(): void {
    this.offsetIndex.truncateTo(this.#markOffsetCount);
    this.timeIndex.truncateTo(this.#markTimeCount);
    this.#largestTimestamp = this.#markLargestTimestamp;
    this.#offsetOfLargestTimestamp = this.#markOffsetOfLargestTimestamp;
    this.#lastEntryPosition = this.#markLastEntryPosition;
  }
}
