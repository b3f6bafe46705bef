/**
 * LogRing: the recent tail of one partition's log in shared memory, so that a reader thread
 * (the gateway) serves fetches of recent offsets without asking the owner, and detects
 * safely when what it wanted has already been overwritten. The ring stores opaque entries
 * (for Sluice: record batches) keyed by a half-open key range [firstKey, nextKey) (for
 * Sluice: offsets); it knows nothing of records.
 *
 * Owning threads: one writer (the partition's owner) calls reserve/commit/publish/reset
 * and the pending-iteration accessors; any number of reader threads call read/oldestKey/
 * visibleNextKey, each on its own LogRing instance attached to the same SharedArrayBuffer.
 *
 * Entry life: reserve -> (caller copies the bytes) -> commit: appended, "pending" (neither
 * visible nor evictable; the owner has not written it to the segment file yet) -> publish:
 * visible to readers and evictable -> evicted by a later reserve that needs its room.
 *
 * SharedArrayBuffer layout (control cells are Int32, each alone on a 64-byte line):
 *
 * | offset             | size            | field          | written by | meaning                                   |
 * |-------------------:|----------------:|----------------|------------|-------------------------------------------|
 * |                  0 |               4 | magic          | create     | LOG_RING_MAGIC                            |
 * |                  4 |               4 | dataBytes      | create     | size of the data area                     |
 * |                  8 |               4 | entriesMax     | create     | slots in the entry table                  |
 * |                 64 |               4 | entryTail      | writer     | oldest entry not evicted (counter mod 2^32)|
 * |                128 |               4 | dataTail       | writer     | data position of that entry (mod 2^32)    |
 * |                192 |               4 | entryVisible   | writer     | entries below this are published          |
 * |                256 | entriesMax * 32 | entry table    | writer     | Float64 x4 per slot, see below            |
 * |  256 + table bytes |       dataBytes | data (`data`)  | writer     | entry bytes, back to back                 |
 *
 * Entry slot (Float64Array, slot = entry counter mod entriesMax): firstKey, nextKey,
 * dataPosition (the data counter at the entry's first byte, wrapped to an Int32; its offset
 * in `data` is dataPosition mod dataBytes), length (bytes).
 *
 * Invariants:
 * - entryTail <= entryVisible <= appended end (the writer's private counter); the entries in
 *   [entryTail, entryVisible) are visible, [entryVisible, appended end) pending.
 * - Keys are non-negative safe integers; firstKey < nextKey; firstKey >= the previous
 *   entry's nextKey (or the key given to reset).
 * - Entries are contiguous in `data` (an entry that does not fit before the end starts at 0
 *   and the skipped bytes belong to no entry) and lie in data order, so evicting the oldest
 *   entries first always frees the bytes the next entry needs. An entry is at most
 *   dataBytes / 2, so once everything older is evicted it always fits.
 * - Only published entries are evicted; reserve answers -1 instead of evicting a pending one.
 *
 * Why a reader never returns torn bytes (the seqlock idea applied to a ring):
 * 1. The writer moves entryTail and dataTail past the entries it evicts with an atomic
 *    read-modify-write BEFORE it writes any byte of a new entry or any field of a reused
 *    slot. (An RMW rather than a store: it is also a full fence, so on weakly ordered CPUs
 *    the plain stores that follow cannot become visible before it; on x86-64 a
 *    sequentially consistent store is the same xchg instruction anyway.)
 * 2. The reader loads entryTail and entryVisible, reads slots and copies bytes with plain
 *    reads, then fences (an RMW on a cell of its own) and loads entryTail and dataTail again.
 *    If the first copied entry is still at or after entryTail and its data position still
 *    at or after dataTail, nothing it copied was evicted before the re-check, so no byte of
 *    it had been overwritten while it was copying (1), and entries after it are younger
 *    still. Otherwise read returns null and the caller asks the owner (disk).
 * 3. Slots and bytes below entryVisible were written before the writer stored entryVisible,
 *    and the reader loaded entryVisible before reading them: sequentially consistent
 *    atomics order those plain accesses.
 * 4. A slot read during the binary search may be a reused one (garbage for this search);
 *    every value read is range-checked before use so garbage cannot throw or allocate
 *    without bound, and the final re-check rejects it. A misdirected search can only miss
 *    (null), never return bytes that do not hold the key.
 * Counters wrap modulo 2^32 and are compared by `(a - b) | 0`: that is exact as long as a
 * reader is not descheduled while the writer goes through 2^31 entries or 2 GiB of data.
 */
import { assert } from '../assert.js';

/** Smallest data area: an entry is at most half of it, and batches of 32 KiB must fit. */
export const LOG_RING_DATA_BYTES_MIN = 64 * 1024;
/** Largest data area: wrapped data counters are compared as Int32 differences. */
export const LOG_RING_DATA_BYTES_MAX = 2 ** 30;
/** Fewest entry slots: below two the ring could hold only the entry being written. */
export const LOG_RING_ENTRIES_MAX_MIN = 2;
/** Most entry slots: 32 MiB of entry table; more batches than that would be tiny ones. */
export const LOG_RING_ENTRIES_MAX_MAX = 2 ** 20;
/** An entry is at most dataBytes / this, so evicting older entries always makes room. */
export const ENTRY_BYTES_DIVISOR = 2;
export const CACHE_LINE_BYTES = 64;
/** Copies out of shared memory are word-wise only between addresses equal modulo this. */
export const COPY_ALIGN_BYTES = 8;
/** "LOGR" in ASCII, to catch a SharedArrayBuffer of another kind passed by mistake. */
export const LOG_RING_MAGIC = 0x4c4f4752;

export const MAGIC_OFFSET = 0;
export const MAGIC_BYTES = 4;
export const DATA_BYTES_OFFSET = MAGIC_OFFSET + MAGIC_BYTES;
export const DATA_BYTES_BYTES = 4;
export const ENTRIES_MAX_OFFSET = DATA_BYTES_OFFSET + DATA_BYTES_BYTES;
export const ENTRIES_MAX_BYTES = 4;
export const ENTRY_TAIL_OFFSET = CACHE_LINE_BYTES; // line 1
export const ENTRY_TAIL_BYTES = CACHE_LINE_BYTES;
export const DATA_TAIL_OFFSET = ENTRY_TAIL_OFFSET + ENTRY_TAIL_BYTES; // line 2
export const DATA_TAIL_BYTES = CACHE_LINE_BYTES;
export const ENTRY_VISIBLE_OFFSET = DATA_TAIL_OFFSET + DATA_TAIL_BYTES; // line 3
export const ENTRY_VISIBLE_BYTES = CACHE_LINE_BYTES;
export const ENTRY_TABLE_OFFSET = ENTRY_VISIBLE_OFFSET + ENTRY_VISIBLE_BYTES;
assert(ENTRIES_MAX_OFFSET + ENTRIES_MAX_BYTES <= ENTRY_TAIL_OFFSET, 'header fits in line 0');
assert(ENTRY_TABLE_OFFSET === 4 * CACHE_LINE_BYTES, 'LogRing control area is 4 cache lines (256 bytes)');

// Entry slot: four Float64 fields.
export const FIRST_KEY_FIELD = 0;
export const NEXT_KEY_FIELD = 1;
export const DATA_POSITION_FIELD = 2;
export const LENGTH_FIELD = 3;
export const ENTRY_FIELDS = 4;
export const ENTRY_SLOT_BYTES = ENTRY_FIELDS * Float64Array.BYTES_PER_ELEMENT;
assert(ENTRY_SLOT_BYTES === 32, 'an entry slot is 32 bytes');

const MAGIC_CELL = MAGIC_OFFSET >> 2;
const DATA_BYTES_CELL = DATA_BYTES_OFFSET >> 2;
const ENTRIES_MAX_CELL = ENTRIES_MAX_OFFSET >> 2;
const ENTRY_TAIL_CELL = ENTRY_TAIL_OFFSET >> 2;
const DATA_TAIL_CELL = DATA_TAIL_OFFSET >> 2;
const ENTRY_VISIBLE_CELL = ENTRY_VISIBLE_OFFSET >> 2;

export interface LogRingOptions {
  /** Bytes of the data area: a power of two in [64 KiB, 1 GiB]. */
  dataBytes: number;
  /** Entry slots: a power of two in [2, 2^20]. */
  entriesMax: number;
}

export interface LogRingRead {
  /**
   * The copied entries, back to back, in newly allocated memory. The view may start up to 7
   * bytes into its ArrayBuffer (aligned like the ring, so the copy runs word by word): use
   * the view (byteOffset, byteLength), never `bytes.buffer` whole.
   */
  bytes: Uint8Array;
  /** firstKey of the first copied entry. */
  firstKey: number;
  /** nextKey of the last copied entry. */
  nextKey: number;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function validateOptions(dataBytes: number, entriesMax: number): void {
  if (!isPowerOfTwo(dataBytes) || dataBytes < LOG_RING_DATA_BYTES_MIN || dataBytes > LOG_RING_DATA_BYTES_MAX) {
    throw new RangeError(
      `LogRing dataBytes must be a power of two in [${LOG_RING_DATA_BYTES_MIN}, ${LOG_RING_DATA_BYTES_MAX}], got ${dataBytes}`,
    );
  }
  if (!isPowerOfTwo(entriesMax) || entriesMax < LOG_RING_ENTRIES_MAX_MIN || entriesMax > LOG_RING_ENTRIES_MAX_MAX) {
    throw new RangeError(
      `LogRing entriesMax must be a power of two in [${LOG_RING_ENTRIES_MAX_MIN}, ${LOG_RING_ENTRIES_MAX_MAX}], got ${entriesMax}`,
    );
  }
}

function isKey(key: number): boolean {
  return Number.isSafeInteger(key) && key >= 0;
}

export class LogRing {
  readonly sab: SharedArrayBuffer;
  readonly dataBytes: number;
  readonly entriesMax: number;
  /** Largest entry reserve accepts (dataBytes / 2); a larger batch bypasses the ring. */
  readonly entryBytesMax: number;
  /** The data area; offsets returned by reserve and entryDataOffset index into it. */
  readonly data: Uint8Array;

  readonly #cells: Int32Array;
  readonly #entries: Float64Array;
  readonly #dataMask: number;
  readonly #entryMask: number;
  /** A cell no other thread touches: an RMW on it is this reader's full fence. */
  readonly #fence = new Int32Array(new SharedArrayBuffer(4));

  // Writer-side state. Entry counters are absolute (safe integers, never wrap) so callers
  // can iterate with `<`; their cells hold them modulo 2^32. Data counters wrap as Int32.
  #entryTail: number;
  #entryVisible: number;
  #entryAppended: number;
  #dataTail: number;
  #dataHead: number;
  #nextKeyMin = 0;
  #reservedLength = -1; // -1: nothing reserved
  #reservedFirstKey = 0;
  #reservedNextKey = 0;
  #reservedDataPosition = 0;

  static create(options: LogRingOptions): LogRing {
    const { dataBytes, entriesMax } = options;
    validateOptions(dataBytes, entriesMax);
    const sab = new SharedArrayBuffer(ENTRY_TABLE_OFFSET + entriesMax * ENTRY_SLOT_BYTES + dataBytes);
    const cells = new Int32Array(sab, 0, ENTRY_TABLE_OFFSET >> 2);
    cells[DATA_BYTES_CELL] = dataBytes;
    cells[ENTRIES_MAX_CELL] = entriesMax;
    cells[MAGIC_CELL] = LOG_RING_MAGIC;
    return new LogRing(sab);
  }

  /** Attaches to a ring made by `LogRing.create` (as a reader, or as its one writer). */
  constructor(sab: SharedArrayBuffer) {
    assert(sab instanceof SharedArrayBuffer, 'LogRing needs a SharedArrayBuffer');
    assert(sab.byteLength >= ENTRY_TABLE_OFFSET, 'SharedArrayBuffer too small for a LogRing');
    const cells = new Int32Array(sab, 0, ENTRY_TABLE_OFFSET >> 2);
    assert(Atomics.load(cells, MAGIC_CELL) === LOG_RING_MAGIC, 'SharedArrayBuffer is not a LogRing');
    const dataBytes = Atomics.load(cells, DATA_BYTES_CELL);
    const entriesMax = Atomics.load(cells, ENTRIES_MAX_CELL);
    validateOptions(dataBytes, entriesMax);
    const tableBytes = entriesMax * ENTRY_SLOT_BYTES;
    assert(sab.byteLength === ENTRY_TABLE_OFFSET + tableBytes + dataBytes, 'LogRing byte length matches its sizes');
    this.sab = sab;
    this.dataBytes = dataBytes;
    this.entriesMax = entriesMax;
    this.entryBytesMax = dataBytes / ENTRY_BYTES_DIVISOR;
    this.data = new Uint8Array(sab, ENTRY_TABLE_OFFSET + tableBytes, dataBytes);
    this.#cells = cells;
    this.#entries = new Float64Array(sab, ENTRY_TABLE_OFFSET, entriesMax * ENTRY_FIELDS);
    this.#dataMask = dataBytes - 1;
    this.#entryMask = entriesMax - 1;
    // An attaching writer continues from the published state; pending entries of a
    // previous writer instance are not recoverable (they were never published).
    this.#entryTail = Atomics.load(cells, ENTRY_TAIL_CELL) >>> 0;
    this.#entryVisible = this.#entryTail + ((Atomics.load(cells, ENTRY_VISIBLE_CELL) - this.#entryTail) | 0);
    this.#entryAppended = this.#entryVisible;
    this.#dataTail = Atomics.load(cells, DATA_TAIL_CELL);
    this.#dataHead = this.#entryVisible > this.#entryTail
      ? (this.#slotField(this.#entryVisible - 1, DATA_POSITION_FIELD) + this.#slotField(this.#entryVisible - 1, LENGTH_FIELD)) | 0
      : this.#dataTail;
    if (this.#entryVisible > this.#entryTail) this.#nextKeyMin = this.#slotField(this.#entryVisible - 1, NEXT_KEY_FIELD);
  }

  // ---- writer -------------------------------------------------------------------------

  /**
   * Reserves room for an entry holding keys [firstKey, nextKey) in `length` bytes and
   * returns the offset in `data` where the caller copies them (an offset = alignTo mod 8
   * when alignTo is given: up to 7 bytes are skipped for it, which readers never see), or -1 when room could only
   * be made by evicting pending entries (flush, publish, retry) or when length exceeds
   * entryBytesMax (the caller bypasses the ring). Evicts the oldest published entries as
   * needed, moving the tails before any byte is overwritten. A second reserve without
   * commit replaces the first.
   */
  reserve(firstKey: number, nextKey: number, length: number, alignTo = -1): number {
    assert(isKey(firstKey) && isKey(nextKey) && firstKey < nextKey, 'LogRing entry keys: 0 <= firstKey < nextKey, safe integers');
    assert(firstKey >= this.#nextKeyMin, 'LogRing entry keys must not go back');
    assert(Number.isInteger(length) && length >= 0, 'LogRing entry length is a non-negative integer');
    assert(alignTo >= -1 && alignTo < COPY_ALIGN_BYTES && Number.isInteger(alignTo), 'LogRing alignTo is -1 or 0..7');
    this.#reservedLength = -1;
    if (length > this.entryBytesMax) return -1;
    const appended = this.#entryAppended;
    const head = this.#dataHead;
    const headOffset = head & this.#dataMask;
    // With alignTo, the entry starts at an offset = alignTo mod 8, so that a copy from a
    // source at that alignment runs word by word (see the class comment on alignment).
    const alignPad = alignTo < 0 ? 0 : (alignTo - headOffset) & (COPY_ALIGN_BYTES - 1);
    const skipBytes =
      headOffset + alignPad + length > this.dataBytes
        ? this.dataBytes - headOffset + (alignTo < 0 ? 0 : alignTo)
        : alignPad;
    const start = (head + skipBytes) | 0;
    const end = (start + length) | 0;
    // Find how far the tail must move: enough bytes for [start, end) and a free slot.
    let tail = this.#entryTail;
    let dataTail = this.#dataTail;
    while (((end - dataTail) | 0) > this.dataBytes || appended - tail >= this.entriesMax) {
      if (tail >= this.#entryVisible) return -1; // the next to evict is still pending
      tail += 1;
      dataTail = tail < appended ? this.#slotField(tail, DATA_POSITION_FIELD) : head;
    }
    if (tail !== this.#entryTail) this.#evictTo(tail, dataTail);
    this.#reservedLength = length;
    this.#reservedFirstKey = firstKey;
    this.#reservedNextKey = nextKey;
    this.#reservedDataPosition = start;
    return start & this.#dataMask;
  }

  /** Appends the reserved entry: pending until publish (not visible, not evictable). */
  commit(): void {
    const length = this.#reservedLength;
    assert(length >= 0, 'LogRing.commit without a successful reserve');
    const base = (this.#entryAppended & this.#entryMask) * ENTRY_FIELDS;
    this.#entries[base + FIRST_KEY_FIELD] = this.#reservedFirstKey;
    this.#entries[base + NEXT_KEY_FIELD] = this.#reservedNextKey;
    this.#entries[base + DATA_POSITION_FIELD] = this.#reservedDataPosition;
    this.#entries[base + LENGTH_FIELD] = length;
    this.#entryAppended += 1;
    this.#dataHead = (this.#reservedDataPosition + length) | 0;
    this.#nextKeyMin = this.#reservedNextKey;
    this.#reservedLength = -1;
  }

  /**
   * Makes the appended entries visible to readers and evictable: all of them, or those
   * below `entryEnd` (an absolute entry counter in [pendingStart, appendedEnd]).
   */
  publish(entryEnd: number = this.#entryAppended): void {
    assert(entryEnd >= this.#entryVisible && entryEnd <= this.#entryAppended, 'LogRing.publish within the appended entries');
    if (entryEnd === this.#entryVisible) return;
    this.#entryVisible = entryEnd;
    Atomics.store(this.#cells, ENTRY_VISIBLE_CELL, entryEnd | 0); // last: slots and bytes first
  }

  /**
   * Drops every entry, pending ones included (after a log truncation, or when retention
   * passed the ring); the next entry must start at `nextKey` or later. Readers miss.
   */
  reset(nextKey: number): void {
    assert(isKey(nextKey), 'LogRing.reset key is a non-negative safe integer');
    const end = this.#entryAppended;
    // Tail first: a reader that sees the new tail with the old entryVisible sees an empty
    // (negative) range, never pending entries made visible by the reset.
    this.#evictTo(end, this.#dataHead);
    this.#entryVisible = end;
    Atomics.store(this.#cells, ENTRY_VISIBLE_CELL, end | 0);
    this.#nextKeyMin = nextKey;
    this.#reservedLength = -1;
  }

  /**
   * Evicts the published entries that lie wholly below `key` (nextKey <= key), oldest
   * first, as reserve evicts: readers then miss them and ask the owner. For when the
   * owner's copy on disk changed under them (compaction rewrote those keys' segments), so
   * that a read never prefers the ring's older bytes. Pending entries are never evicted.
   */
  evictBelow(key: number): void {
    let tail = this.#entryTail;
    while (tail < this.#entryVisible && this.#slotField(tail, NEXT_KEY_FIELD) <= key) tail += 1;
    if (tail === this.#entryTail) return;
    this.#evictTo(tail, tail < this.#entryAppended ? this.#slotField(tail, DATA_POSITION_FIELD) : this.#dataHead);
  }

  /** First appended entry not yet published (absolute entry counter). */
  get pendingStart(): number {
    return this.#entryVisible;
  }

  /** One past the last appended entry (absolute entry counter). */
  get appendedEnd(): number {
    return this.#entryAppended;
  }

  /** Offset in `data` of entry i's bytes (i an absolute counter of a live entry). */
  entryDataOffset(i: number): number {
    return this.#liveSlotField(i, DATA_POSITION_FIELD) & this.#dataMask;
  }

  entryLength(i: number): number {
    return this.#liveSlotField(i, LENGTH_FIELD);
  }

  entryFirstKey(i: number): number {
    return this.#liveSlotField(i, FIRST_KEY_FIELD);
  }

  entryNextKey(i: number): number {
    return this.#liveSlotField(i, NEXT_KEY_FIELD);
  }

  #liveSlotField(i: number, field: number): number {
    assert(i >= this.#entryTail && i < this.#entryAppended, 'LogRing entry index is live');
    return this.#entries[(i & this.#entryMask) * ENTRY_FIELDS + field];
  }

  #slotField(i: number, field: number): number {
    return this.#entries[(i & this.#entryMask) * ENTRY_FIELDS + field];
  }

  #evictTo(tail: number, dataTail: number): void {
    this.#entryTail = tail;
    this.#dataTail = dataTail;
    // RMW, not store: a full fence on every CPU before the plain stores that overwrite.
    Atomics.exchange(this.#cells, ENTRY_TAIL_CELL, tail | 0);
    Atomics.exchange(this.#cells, DATA_TAIL_CELL, dataTail);
  }

  // ---- reader -------------------------------------------------------------------------

  /**
   * Copies the visible entry holding `key` and the visible entries after it, while the
   * total stays <= maxBytes (the first entry always, however large), into one new array.
   * Returns null when no visible entry holds the key (older than the ring, in a gap, or at
   * or beyond visibleNextKey) or when the writer evicted what was being copied.
   */
  read(key: number, maxBytes: number): LogRingRead | null {
    const cells = this.#cells;
    const tail = Atomics.load(cells, ENTRY_TAIL_CELL);
    const count = (Atomics.load(cells, ENTRY_VISIBLE_CELL) - tail) | 0;
    if (count <= 0 || count > this.entriesMax) return null;
    const found = this.#search(tail, count, key);
    if (found < 0) return null;
    const first = (tail + found) | 0;
    const firstKey = this.#slotField(first, FIRST_KEY_FIELD);
    const firstPosition = this.#slotField(first, DATA_POSITION_FIELD);
    const firstNextKey = this.#slotField(first, NEXT_KEY_FIELD);
    if (!(key < firstNextKey)) return null; // in a gap or past the newest entry
    // Measure the run to copy, checking every value read (a reused slot holds garbage).
    let totalBytes = 0;
    let last = first;
    let expectedKey = firstKey;
    for (let n = found; n < count; n++) {
      const i = (tail + n) | 0;
      const length = this.#slotField(i, LENGTH_FIELD);
      const offset = this.#slotField(i, DATA_POSITION_FIELD) & this.#dataMask;
      if (!(length >= 0 && length <= this.entryBytesMax && offset + length <= this.dataBytes)) return null;
      if (n > found && totalBytes + length > maxBytes) break;
      // Keys must run on without a gap: an entry the writer kept out of the ring (too large)
      // leaves one, and what follows it is not the continuation the reader asked for.
      if (this.#slotField(i, FIRST_KEY_FIELD) !== expectedKey) break;
      expectedKey = this.#slotField(i, NEXT_KEY_FIELD);
      totalBytes += length;
      last = i;
    }
    const nextKey = this.#slotField(last, NEXT_KEY_FIELD);
    if (!(isKey(firstKey) && nextKey > firstKey && Number.isSafeInteger(nextKey))) return null;
    // The result starts as far into its ArrayBuffer as the entry is past an 8-byte boundary
    // in `data`: V8 copies shared memory word by word only between equally aligned
    // addresses, and byte by byte (about 4x slower) otherwise.
    const alignBytes = firstPosition & (COPY_ALIGN_BYTES - 1);
    const bytes = new Uint8Array(new ArrayBuffer(alignBytes + totalBytes), alignBytes, totalBytes);
    this.#copyRuns(first, last, bytes);
    // Re-check: was anything copied evicted meanwhile? (See the top comment, step 2.)
    Atomics.add(this.#fence, 0, 1);
    const tailNow = Atomics.load(cells, ENTRY_TAIL_CELL);
    const dataTailNow = Atomics.load(cells, DATA_TAIL_CELL);
    if (((first - tailNow) | 0) < 0) return null;
    if (((firstPosition - dataTailNow) | 0) < 0) return null;
    return { bytes, firstKey, nextKey };
  }

  /** firstKey of the oldest visible entry, or -1 when none is visible. */
  oldestKey(): number {
    for (;;) {
      const tail = Atomics.load(this.#cells, ENTRY_TAIL_CELL);
      if (((Atomics.load(this.#cells, ENTRY_VISIBLE_CELL) - tail) | 0) <= 0) return -1;
      const key = this.#slotField(tail, FIRST_KEY_FIELD);
      Atomics.add(this.#fence, 0, 1);
      if (Atomics.load(this.#cells, ENTRY_TAIL_CELL) === tail) return key;
    }
  }

  /** nextKey of the newest visible entry, or -1 when none is visible. */
  visibleNextKey(): number {
    for (;;) {
      const tail = Atomics.load(this.#cells, ENTRY_TAIL_CELL);
      const newest = (Atomics.load(this.#cells, ENTRY_VISIBLE_CELL) - 1) | 0;
      if (((newest - tail) | 0) < 0) return -1;
      const key = this.#slotField(newest, NEXT_KEY_FIELD);
      Atomics.add(this.#fence, 0, 1);
      if (((newest - Atomics.load(this.#cells, ENTRY_TAIL_CELL)) | 0) >= 0) return key;
    }
  }

  /**
   * Index (relative to tail) of the last of `count` entries whose firstKey <= key, or -1
   * when key is below the oldest. A garbage slot can only misdirect it; it stays bounded.
   */
  #search(tail: number, count: number, key: number): number {
    if (!(this.#slotField(tail, FIRST_KEY_FIELD) <= key)) return -1;
    let low = 0; // firstKey(low) <= key
    let high = count; // firstKey(high) > key, or high = count
    while (high - low > 1) {
      const middle = (low + high) >>> 1;
      if (this.#slotField((tail + middle) | 0, FIRST_KEY_FIELD) <= key) low = middle;
      else high = middle;
    }
    return low;
  }

  /**
   * Copies entries first..last into `target`: one set() per run contiguous in `data` (one
   * run, or two when the entries wrap). Slots are read again here, so a slot reused since
   * they were measured can disagree; every run is clamped to stay in bounds and the
   * re-check in read() rejects such a result.
   */
  #copyRuns(first: number, last: number, target: Uint8Array): void {
    let runStart = this.#slotField(first, DATA_POSITION_FIELD) & this.#dataMask;
    let runEnd = runStart;
    let targetOffset = 0;
    for (let i = first; ; i = (i + 1) | 0) {
      const offset = this.#slotField(i, DATA_POSITION_FIELD) & this.#dataMask;
      const length = this.#slotField(i, LENGTH_FIELD);
      if (offset !== runEnd) {
        targetOffset += this.#copyRun(runStart, runEnd, target, targetOffset);
        runStart = offset;
      }
      runEnd = offset + length;
      if (i === last) break;
    }
    this.#copyRun(runStart, runEnd, target, targetOffset);
  }

  #copyRun(start: number, end: number, target: Uint8Array, targetOffset: number): number {
    const bytes = Math.min(end, this.dataBytes) - start;
    const copied = Math.min(bytes, target.length - targetOffset);
    if (copied > 0) target.set(this.data.subarray(start, start + copied), targetOffset);
    return copied > 0 ? copied : 0;
  }
}
