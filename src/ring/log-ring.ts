/**
 * LogRing: the recent tail of one partition's log in shared memory. The thread that receives
 * a batch copies it straight into the ring once; the partition's owner validates it there,
 * stamps it, writes it to the segment file from there and publishes it; a reader thread
 * serves fetches of recent offsets from it without asking the owner, and detects safely
 * when what it wanted has already been overwritten. The ring stores opaque entries (for
 * Sluice: record batches) keyed by a half-open key range [firstKey, nextKey) (for Sluice:
 * offsets); it knows nothing of records.
 *
 * Roles. Each role is held by exactly one thread (a thread may hold several, each through
 * its own or a shared LogRing instance over the same SharedArrayBuffer), and every shared
 * cell has exactly one writing role:
 * - data writer (Sluice: the gateway thread, in Engine.produce): `reserve`, `commit`. Places
 *   each entry's bytes in `data`, and evicts published entries to make room: it alone writes
 *   entryTail and dataTail and the bytes of entries not yet handed over.
 * - entry writer (Sluice: the partition's owner): `append`, `appendVoid`, `publish`,
 *   `voidPending`, `hideBelow` and the pending accessors. Gives each committed entry its
 *   keys (or makes it void) in the entry table, may rewrite the bytes of an entry it has not
 *   published yet (the owner stamps baseOffset there), and publishes: it alone writes the
 *   entry table, entryVisible and entryFloor.
 * - readers (any number of threads; Sluice: the gateway): `read`, `oldestKey`,
 *   `visibleNextKey`. They write nothing shared.
 * So the ring is two single-producer single-consumer hand-overs over one buffer: committed
 * bytes go from the data writer to the entry writer, and published entries (hence room to
 * evict) go from the entry writer back to the data writer and to the readers.
 *
 * Hand-over of committed bytes: the ring does not carry it. After `commit` the data writer
 * sends (reservedEntry, reservedPosition, length) to the entry writer through a channel that
 * orders memory (in Sluice, a command frame in the owner's SpscRing, whose commit is an
 * Atomics.store and whose peek an Atomics.load), and the entry writer calls `append` or
 * `appendVoid` for every committed entry, in commit order, exactly once. Every committed
 * entry becomes an entry, a rejected one too (void: no keys, never read, still occupying
 * its bytes), so the data writer can count entries and slots without hearing back.
 *
 * Entry life: reserve -> (data writer copies the bytes) -> commit: "committed" (its bytes
 * belong to the entry writer now) -> append / appendVoid: "pending" (neither visible nor
 * evictable; the owner has not written it to the segment file yet) -> publish: visible to
 * readers and evictable -> evicted by a later reserve that needs its room or slot.
 *
 * SharedArrayBuffer layout (control cells are Int32, each alone on a 64-byte line):
 *
 * | offset             | size            | field          | written by    | meaning                                    |
 * |-------------------:|----------------:|----------------|---------------|--------------------------------------------|
 * |                  0 |               4 | magic          | create        | LOG_RING_MAGIC                             |
 * |                  4 |               4 | dataBytes      | create        | size of the data area                      |
 * |                  8 |               4 | entriesMax     | create        | slots in the entry table                   |
 * |                 64 |               4 | entryTail      | data writer   | oldest entry not evicted (counter mod 2^32)|
 * |                128 |               4 | dataTail       | data writer   | data position of that entry (mod 2^32)     |
 * |                192 |               4 | entryVisible   | entry writer  | entries below this are published           |
 * |                256 |               4 | entryFloor     | entry writer  | readers skip entries below this            |
 * |                320 | entriesMax * 32 | entry table    | entry writer  | Float64 x4 per slot, see below             |
 * |  320 + table bytes |       dataBytes | data (`data`)  | data writer * | entry bytes, back to back                  |
 *
 * (*) the entry writer also rewrites bytes of its pending entries (outside what readers see).
 *
 * Entry slot (Float64Array, slot = entry counter mod entriesMax): firstKey, nextKey,
 * dataPosition (the data counter at the entry's first byte, wrapped to an Int32; its offset
 * in `data` is dataPosition mod dataBytes), length (bytes). A void entry has firstKey =
 * nextKey (the next key to assign when it was rejected): it holds no key and readers skip it.
 *
 * Invariants:
 * - entryTail <= entryVisible <= appended end (entry writer) <= committed end (data writer)
 *   <= entryTail + entriesMax; the entries in [entryTail, entryVisible) are visible,
 *   [entryVisible, appended end) pending, [appended end, committed end) handed over but not
 *   yet appended (no slot written).
 * - Keys are non-negative safe integers; firstKey < nextKey, or firstKey = nextKey for a void
 *   entry; firstKey >= the previous entry's nextKey, except that voidPending lowers the keys
 *   of pending entries (never below a published entry's nextKey).
 * - Entries are contiguous in `data` (an entry that does not fit before the end starts at 0
 *   and the skipped bytes belong to no entry) and lie in data order, so evicting the oldest
 *   entries first always frees the bytes the next entry needs. An entry is at most
 *   dataBytes / 2, so once everything older is evicted it always fits.
 * - Only published entries are evicted; reserve answers -1 instead of evicting a pending or
 *   not yet appended one. The entry writer never waits for room: the data writer made it
 *   (slot and bytes) before the hand-over.
 * - entryFloor only hides entries from readers (after compaction rewrote their keys' files);
 *   their room is freed by eviction as usual.
 *
 * Why a reader never returns torn bytes (the seqlock idea applied to a ring):
 * 1. The data writer moves entryTail and dataTail past the entries it evicts with an atomic
 *    read-modify-write BEFORE it writes any byte of a new entry, and before it hands that
 *    entry over, so before the entry writer writes the slot it reuses. (An RMW rather than a
 *    store: it is also a full fence, so on weakly ordered CPUs the plain stores that follow
 *    cannot become visible before it; on x86-64 a sequentially consistent store is the same
 *    xchg instruction anyway. The slot write is ordered after it through the hand-over's
 *    store/load pair.)
 * 2. The reader loads entryTail and entryVisible, reads slots and copies bytes with plain
 *    reads, then fences (an RMW on a cell of its own) and loads entryTail and dataTail again.
 *    If the first copied entry is still at or after entryTail and its data position still
 *    at or after dataTail, nothing it copied was evicted before the re-check, so no byte or
 *    slot of it had been overwritten while it was copying (1), and entries after it are
 *    younger still.
 *    Otherwise read returns null and the caller asks the owner (disk).
 * 3. Slots and bytes below entryVisible were written (and stamped) before the entry writer
 *    stored entryVisible, and the reader loaded entryVisible before reading them:
 *    sequentially consistent atomics order those plain accesses. Bytes reserved or
 *    committed but not yet published lie beyond every visible entry's bytes: a reader never
 *    sees an entry before its owner stamped and published it.
 * 4. A slot read during the binary search may be a reused one (garbage for this search);
 *    every value read is range-checked before use so garbage cannot throw or allocate
 *    without bound, and the final re-check rejects it. A misdirected search can only miss
 *    (null), never return bytes that do not hold the key.
 * Counters wrap modulo 2^32 and are compared by `(a - b) | 0`: that is exact as long as a
 * reader is not descheduled while the writers go through 2^31 entries or 2 GiB of data.
 */
import { assert } from '../assert.js';
import { copyBytes } from './shared-copy.js';

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
/** Reads that raced an eviction try again at most this often, then report nothing visible (every loop is bounded). */
const READ_RETRIES_MAX = 1000;
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
export const ENTRY_FLOOR_OFFSET = ENTRY_VISIBLE_OFFSET + ENTRY_VISIBLE_BYTES; // line 4
export const ENTRY_FLOOR_BYTES = CACHE_LINE_BYTES;
export const ENTRY_TABLE_OFFSET = ENTRY_FLOOR_OFFSET + ENTRY_FLOOR_BYTES;
assert(ENTRIES_MAX_OFFSET + ENTRIES_MAX_BYTES <= ENTRY_TAIL_OFFSET, 'header fits in line 0');
assert(ENTRY_TABLE_OFFSET === 5 * CACHE_LINE_BYTES, 'LogRing control area is 5 cache lines (320 bytes)');

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
const ENTRY_FLOOR_CELL = ENTRY_FLOOR_OFFSET >> 2;

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

  // Entry counters are absolute (safe integers, never wrap) so callers can iterate with `<`;
  // their cells hold them modulo 2^32. Data counters wrap as Int32.

  // Data-writer state.
  #entryTail: number;
  #dataTail: number;
  /** Data counter one past the last committed entry's bytes. */
  #dataHead: number;
  /** Entries committed (handed over) so far. */
  #entryCommitted: number;
  /** Data position of each committed entry not yet evicted, by entry counter mod entriesMax. */
  readonly #positions: Int32Array;
  #reservedLength = -1; // -1: nothing reserved
  #reservedPosition = 0;

  // Entry-writer state.
  #entryVisible: number;
  #entryAppended: number;
  #entryFloor: number;
  #nextKeyMin = 0;
  /** nextKey of the newest published entry: voidPending never goes below it. */
  #publishedNextKey = 0;

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

  /**
   * Makes a ring's shared memory what `LogRing.create` made (the same sizes), so that it can
   * serve another partition once no thread uses it: control cells and entry table zeroed;
   * the data bytes are left as they are (no entry refers to them). Reusing a ring instead
   * of making a new one keeps a broker whose topics come and go at its peak of ring memory:
   * a dropped ring's memory returns only once both threads' collectors let it go, which
   * small heaps seldom do, and a fresh one is written whole when the allocator clears it.
   */
  static reset(sab: SharedArrayBuffer): void {
    const cells = new Int32Array(sab, 0, ENTRY_TABLE_OFFSET >> 2);
    assert(Atomics.load(cells, MAGIC_CELL) === LOG_RING_MAGIC, 'SharedArrayBuffer is not a LogRing');
    const dataBytes = Atomics.load(cells, DATA_BYTES_CELL);
    const entriesMax = Atomics.load(cells, ENTRIES_MAX_CELL);
    validateOptions(dataBytes, entriesMax);
    new Uint8Array(sab, ENTRY_TABLE_OFFSET, entriesMax * ENTRY_SLOT_BYTES).fill(0);
    cells.fill(0);
    cells[DATA_BYTES_CELL] = dataBytes;
    cells[ENTRIES_MAX_CELL] = entriesMax;
    Atomics.store(cells, MAGIC_CELL, LOG_RING_MAGIC);
  }

  /**
   * Attaches to a ring made by `LogRing.create`, in any role. A writer attaching to a ring
   * in use continues from its published state: entries committed or appended but not
   * published by a previous writer instance are not recoverable (Sluice makes a fresh ring
   * when an owner restarts instead).
   */
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
    this.#positions = new Int32Array(entriesMax);
    const tail = Atomics.load(cells, ENTRY_TAIL_CELL) >>> 0;
    const visible = tail + ((Atomics.load(cells, ENTRY_VISIBLE_CELL) - tail) | 0);
    this.#entryTail = tail;
    this.#dataTail = Atomics.load(cells, DATA_TAIL_CELL);
    this.#entryVisible = visible;
    this.#entryAppended = visible;
    this.#entryCommitted = visible;
    this.#entryFloor = tail + ((Atomics.load(cells, ENTRY_FLOOR_CELL) - tail) | 0);
    for (let i = tail; i < visible; i++) this.#positions[i & this.#entryMask] = this.#slotField(i, DATA_POSITION_FIELD);
    this.#dataHead = visible > tail
      ? (this.#slotField(visible - 1, DATA_POSITION_FIELD) + this.#slotField(visible - 1, LENGTH_FIELD)) | 0
      : this.#dataTail;
    if (visible > tail) {
      this.#nextKeyMin = this.#slotField(visible - 1, NEXT_KEY_FIELD);
      this.#publishedNextKey = this.#nextKeyMin;
    }
  }

  // ---- data writer ----------------------------------------------------------------------

  /**
   * Reserves room for the next entry's `length` bytes and returns the offset in `data` where
   * the caller copies them (an offset = alignTo mod 8 when alignTo is given: up to 7 bytes are
   * skipped for it, which readers never see), or -1 when room (bytes or an entry slot) could
   * only be made by evicting entries not yet published (wait for the entry writer), or when
   * length exceeds entryBytesMax (the caller bypasses the ring). Evicts the oldest published
   * entries as needed, moving the tails before any byte is overwritten. A second reserve
   * without commit replaces the first; a reservation never committed is simply forgotten.
   */
  reserve(length: number, alignTo = -1): number {
    assert(Number.isInteger(length) && length >= 0, 'LogRing entry length is a non-negative integer');
    assert(alignTo >= -1 && alignTo < COPY_ALIGN_BYTES && Number.isInteger(alignTo), 'LogRing alignTo is -1 or 0..7');
    this.#reservedLength = -1;
    if (length > this.entryBytesMax) return -1;
    const committed = this.#entryCommitted;
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
    let visible = -1; // loaded once, when eviction is needed
    while (((end - dataTail) | 0) > this.dataBytes || committed - tail >= this.entriesMax) {
      if (visible < 0) visible = this.#entryTail + ((Atomics.load(this.#cells, ENTRY_VISIBLE_CELL) - this.#entryTail) | 0);
      if (tail >= visible) return -1; // the next to evict is not published yet
      tail += 1;
      dataTail = tail < committed ? this.#positions[tail & this.#entryMask] : head;
    }
    if (tail !== this.#entryTail) this.#evictTo(tail, dataTail);
    this.#reservedLength = length;
    this.#reservedPosition = start;
    return start & this.#dataMask;
  }

  /** Entry counter of the reserved entry: hand it over with the bytes (append checks it). */
  get reservedEntry(): number {
    assert(this.#reservedLength >= 0, 'LogRing.reservedEntry without a successful reserve');
    return this.#entryCommitted;
  }

  /** Data counter (wrapped to Int32) of the reserved entry's first byte: hand it over too. */
  get reservedPosition(): number {
    assert(this.#reservedLength >= 0, 'LogRing.reservedPosition without a successful reserve');
    return this.#reservedPosition;
  }

  /**
   * Commits the reserved entry: its bytes now belong to the entry writer, which must be told
   * (reservedEntry, reservedPosition, length) through a channel that orders memory, and
   * must append it. Nothing is shared here: the hand-over itself publishes.
   */
  commit(): void {
    const length = this.#reservedLength;
    assert(length >= 0, 'LogRing.commit without a successful reserve');
    this.#positions[this.#entryCommitted & this.#entryMask] = this.#reservedPosition;
    this.#entryCommitted += 1;
    this.#dataHead = (this.#reservedPosition + length) | 0;
    this.#reservedLength = -1;
  }

  #evictTo(tail: number, dataTail: number): void {
    this.#entryTail = tail;
    this.#dataTail = dataTail;
    // RMW, not store: a full fence on every CPU before the plain stores that overwrite.
    Atomics.exchange(this.#cells, ENTRY_TAIL_CELL, tail | 0);
    Atomics.exchange(this.#cells, DATA_TAIL_CELL, dataTail);
  }

  // ---- entry writer ---------------------------------------------------------------------

  /**
   * Appends the committed entry number `entry` (reservedEntry, possibly mod 2^32) holding
   * keys [firstKey, nextKey) in `length` bytes at data counter `dataPosition`: pending until
   * publish (not visible, not evictable). Entries are appended in commit order.
   */
  append(entry: number, firstKey: number, nextKey: number, dataPosition: number, length: number): void {
    assert(isKey(firstKey) && isKey(nextKey) && firstKey < nextKey, 'LogRing entry keys: 0 <= firstKey < nextKey, safe integers');
    assert(firstKey >= this.#nextKeyMin, 'LogRing entry keys must not go back');
    this.#appendSlot(entry, firstKey, nextKey, dataPosition, length);
  }

  /**
   * Appends the committed entry `entry` as void: its bytes (a rejected batch) hold no key,
   * readers skip them, and publish later frees them like any entry's. `key` is the next key
   * to assign (it must not go back).
   */
  appendVoid(entry: number, key: number, dataPosition: number, length: number): void {
    assert(isKey(key), 'LogRing void entry key is a non-negative safe integer');
    assert(key >= this.#nextKeyMin, 'LogRing entry keys must not go back');
    this.#appendSlot(entry, key, key, dataPosition, length);
  }

  #appendSlot(entry: number, firstKey: number, nextKey: number, dataPosition: number, length: number): void {
    const i = this.#entryAppended;
    assert(((entry - i) | 0) === 0, () => `LogRing entries are appended in commit order: got ${entry}, expected ${i} (mod 2^32)`);
    assert(Number.isInteger(length) && length >= 0 && length <= this.entryBytesMax, 'LogRing entry length within entryBytesMax');
    assert((dataPosition | 0) === dataPosition && (dataPosition & this.#dataMask) + length <= this.dataBytes, 'LogRing entry lies within data');
    assert(((i - Atomics.load(this.#cells, ENTRY_TAIL_CELL)) | 0) < this.entriesMax, 'LogRing entry slot freed before the hand-over');
    const base = (i & this.#entryMask) * ENTRY_FIELDS;
    this.#entries[base + FIRST_KEY_FIELD] = firstKey;
    this.#entries[base + NEXT_KEY_FIELD] = nextKey;
    this.#entries[base + DATA_POSITION_FIELD] = dataPosition;
    this.#entries[base + LENGTH_FIELD] = length;
    this.#entryAppended = i + 1;
    this.#nextKeyMin = nextKey;
  }

  /**
   * Makes the appended entries visible to readers and evictable: all of them, or those
   * below `entryEnd` (an absolute entry counter in [pendingStart, appendedEnd]).
   */
  publish(entryEnd: number = this.#entryAppended): void {
    assert(entryEnd >= this.#entryVisible && entryEnd <= this.#entryAppended, 'LogRing.publish within the appended entries');
    if (entryEnd === this.#entryVisible) return;
    this.#entryVisible = entryEnd;
    this.#publishedNextKey = this.#slotField(entryEnd - 1, NEXT_KEY_FIELD);
    Atomics.store(this.#cells, ENTRY_VISIBLE_CELL, entryEnd | 0); // last: slots and bytes first
  }

  /**
   * After the log was truncated back to `nextKey` (a failed write): every pending entry at
   * or above nextKey becomes void at nextKey, those wholly below stay (they are in the file);
   * later entries start at nextKey or later. Publish as usual afterwards: readers never
   * saw the voided entries.
   */
  voidPending(nextKey: number): void {
    assert(isKey(nextKey) && nextKey >= this.#publishedNextKey, 'LogRing.voidPending never goes below a published key');
    for (let i = this.#entryVisible; i < this.#entryAppended; i++) {
      const base = (i & this.#entryMask) * ENTRY_FIELDS;
      const firstKey = this.#entries[base + FIRST_KEY_FIELD];
      const next = this.#entries[base + NEXT_KEY_FIELD];
      if (next <= nextKey) continue;
      assert(firstKey >= nextKey, 'LogRing.voidPending: no entry straddles the new end');
      this.#entries[base + FIRST_KEY_FIELD] = nextKey;
      this.#entries[base + NEXT_KEY_FIELD] = nextKey;
    }
    this.#nextKeyMin = nextKey;
  }

  /**
   * Hides the published entries that lie wholly below `key` (nextKey <= key), oldest first,
   * from readers, which then miss them and ask the owner. For when the owner's copy on disk
   * changed under them (compaction rewrote those keys' segments), so that a read never
   * prefers the ring's older bytes. Pending entries are never hidden; room is freed only by
   * eviction, as for any published entry.
   */
  hideBelow(key: number): void {
    const tailCell = Atomics.load(this.#cells, ENTRY_TAIL_CELL);
    const tail = this.#entryVisible - ((this.#entryVisible - tailCell) | 0);
    let floor = Math.max(this.#entryFloor, tail);
    while (floor < this.#entryVisible && this.#slotField(floor, NEXT_KEY_FIELD) <= key) floor += 1;
    if (floor <= this.#entryFloor) return;
    this.#entryFloor = floor;
    Atomics.store(this.#cells, ENTRY_FLOOR_CELL, floor | 0);
  }

  /** First appended entry not yet published (absolute entry counter). */
  get pendingStart(): number {
    return this.#entryVisible;
  }

  /** One past the last appended entry (absolute entry counter). */
  get appendedEnd(): number {
    return this.#entryAppended;
  }

  /** Offset in `data` of entry i's bytes (i an absolute counter of a recent appended entry). */
  entryDataOffset(i: number): number {
    return this.#appendedSlotField(i, DATA_POSITION_FIELD) & this.#dataMask;
  }

  entryLength(i: number): number {
    return this.#appendedSlotField(i, LENGTH_FIELD);
  }

  entryFirstKey(i: number): number {
    return this.#appendedSlotField(i, FIRST_KEY_FIELD);
  }

  entryNextKey(i: number): number {
    return this.#appendedSlotField(i, NEXT_KEY_FIELD);
  }

  /** Whether entry i is void (a rejected batch's bytes: no key, never read or written out). */
  entryIsVoid(i: number): boolean {
    return this.#appendedSlotField(i, FIRST_KEY_FIELD) === this.#appendedSlotField(i, NEXT_KEY_FIELD);
  }

  #appendedSlotField(i: number, field: number): number {
    assert(Number.isInteger(i) && i < this.#entryAppended && this.#entryAppended - i <= this.entriesMax, 'LogRing entry index is appended and its slot not reused');
    return this.#entries[(i & this.#entryMask) * ENTRY_FIELDS + field];
  }

  #slotField(i: number, field: number): number {
    return this.#entries[(i & this.#entryMask) * ENTRY_FIELDS + field];
  }

  // ---- reader -------------------------------------------------------------------------

  /** First entry a reader may look at: the tail, or the floor when that is later. */
  #readableStart(tail: number): number {
    const floor = Atomics.load(this.#cells, ENTRY_FLOOR_CELL);
    return ((floor - tail) | 0) > 0 ? floor : tail;
  }

  /**
   * Copies the visible entry holding `key` and the visible entries after it, while the
   * total stays <= maxBytes (the first entry always, however large), into one new array,
   * or into `into` when given and large enough (maxBytes + COPY_ALIGN_BYTES always is:
   * the copy may start up to 7 bytes in). Void entries in between are skipped; a key gap
   * ends the copy. Returns null when no visible entry holds the key (older than the ring,
   * in a gap, or at or beyond visibleNextKey) or when the data writer evicted what was
   * being copied (`into` may then hold garbage).
   */
  read(key: number, maxBytes: number, into?: Uint8Array): LogRingRead | null {
    const cells = this.#cells;
    const tail = Atomics.load(cells, ENTRY_TAIL_CELL);
    const start = this.#readableStart(tail);
    const count = (Atomics.load(cells, ENTRY_VISIBLE_CELL) - start) | 0;
    if (count <= 0 || count > this.entriesMax) return null;
    const found = this.#search(start, count, key);
    if (found < 0) return null;
    const first = (start + found) | 0;
    const firstKey = this.#slotField(first, FIRST_KEY_FIELD);
    const firstPosition = this.#slotField(first, DATA_POSITION_FIELD);
    const firstNextKey = this.#slotField(first, NEXT_KEY_FIELD);
    // In a gap, on a void entry (firstKey = nextKey = key) or past the newest entry.
    if (!(key < firstNextKey)) return null;
    // Measure the run to copy, checking every value read (a reused slot holds garbage).
    let totalBytes = 0;
    let last = first;
    let expectedKey = firstKey;
    for (let n = found; n < count; n++) {
      const i = (start + n) | 0;
      const length = this.#slotField(i, LENGTH_FIELD);
      const offset = this.#slotField(i, DATA_POSITION_FIELD) & this.#dataMask;
      if (!(length >= 0 && length <= this.entryBytesMax && offset + length <= this.dataBytes)) return null;
      const entryFirstKey = this.#slotField(i, FIRST_KEY_FIELD);
      const entryNextKey = this.#slotField(i, NEXT_KEY_FIELD);
      if (entryFirstKey === entryNextKey) continue; // void: a rejected batch, never copied
      if (n > found && totalBytes + length > maxBytes) break;
      // Keys must run on without a gap: an entry the writer kept out of the ring (too large)
      // leaves one, and what follows it is not the continuation the reader asked for.
      if (entryFirstKey !== expectedKey) break;
      expectedKey = entryNextKey;
      totalBytes += length;
      last = i;
    }
    const nextKey = this.#slotField(last, NEXT_KEY_FIELD);
    if (!(isKey(firstKey) && nextKey > firstKey && Number.isSafeInteger(nextKey))) return null;
    // The result starts as far into its ArrayBuffer as the entry is past an 8-byte boundary
    // in `data`: below MEMCPY_MIN_BYTES the copy is V8's `set`, which copies shared memory
    // word by word only between equally aligned addresses, byte by byte otherwise
    // (shared-copy.ts).
    const alignBytes = firstPosition & (COPY_ALIGN_BYTES - 1);
    const bytes = into !== undefined && into.length >= alignBytes + totalBytes && (into.byteOffset & (COPY_ALIGN_BYTES - 1)) === 0
      ? into.subarray(alignBytes, alignBytes + totalBytes)
      : new Uint8Array(new ArrayBuffer(alignBytes + totalBytes), alignBytes, totalBytes);
    this.#copyRuns(first, last, bytes);
    // Re-check: was anything copied evicted meanwhile? (See the top comment, step 2.)
    Atomics.add(this.#fence, 0, 1);
    const tailNow = Atomics.load(cells, ENTRY_TAIL_CELL);
    const dataTailNow = Atomics.load(cells, DATA_TAIL_CELL);
    if (((first - tailNow) | 0) < 0) return null;
    if (((firstPosition - dataTailNow) | 0) < 0) return null;
    return { bytes, firstKey, nextKey };
  }

  /** firstKey of the oldest entry a reader may see, or -1 when none is visible (or the writer kept evicting under the read). */
  oldestKey(): number {
    for (let attempt = 0; attempt < READ_RETRIES_MAX; attempt++) {
      const tail = Atomics.load(this.#cells, ENTRY_TAIL_CELL);
      const start = this.#readableStart(tail);
      if (((Atomics.load(this.#cells, ENTRY_VISIBLE_CELL) - start) | 0) <= 0) return -1;
      const key = this.#slotField(start, FIRST_KEY_FIELD);
      Atomics.add(this.#fence, 0, 1);
      if (Atomics.load(this.#cells, ENTRY_TAIL_CELL) === tail) return key;
    }
    return -1;
  }

  /** nextKey of the newest visible entry, or -1 when none is visible (or the writer kept evicting under the read). */
  visibleNextKey(): number {
    for (let attempt = 0; attempt < READ_RETRIES_MAX; attempt++) {
      const tail = Atomics.load(this.#cells, ENTRY_TAIL_CELL);
      const newest = (Atomics.load(this.#cells, ENTRY_VISIBLE_CELL) - 1) | 0;
      if (((newest - tail) | 0) < 0) return -1;
      const key = this.#slotField(newest, NEXT_KEY_FIELD);
      Atomics.add(this.#fence, 0, 1);
      if (((newest - Atomics.load(this.#cells, ENTRY_TAIL_CELL)) | 0) >= 0) return key;
    }
    return -1;
  }

  /**
   * Index (relative to start) of the last of `count` entries whose firstKey <= key, or -1
   * when key is below the oldest. A garbage slot can only misdirect it; it stays bounded.
   */
  #search(start: number, count: number, key: number): number {
    if (!(this.#slotField(start, FIRST_KEY_FIELD) <= key)) return -1;
    let low = 0; // firstKey(low) <= key
    let high = count; // firstKey(high) > key, or high = count
    while (high - low > 1) {
      const middle = (low + high) >>> 1;
      if (this.#slotField((start + middle) | 0, FIRST_KEY_FIELD) <= key) low = middle;
      else high = middle;
    }
    return low;
  }

  /**
   * Copies the non-void entries first..last into `target`: one set() per run contiguous in
   * `data` (one run, or more when the entries wrap or a void entry lies between). Slots are
   * read again here, so a slot reused since they were measured can disagree; every run is
   * clamped to stay in bounds and the re-check in read() rejects such a result.
   */
  #copyRuns(first: number, last: number, target: Uint8Array): void {
    let runStart = this.#slotField(first, DATA_POSITION_FIELD) & this.#dataMask;
    let runEnd = runStart;
    let targetOffset = 0;
    for (let i = first; ; i = (i + 1) | 0) {
      if (this.#slotField(i, FIRST_KEY_FIELD) !== this.#slotField(i, NEXT_KEY_FIELD)) {
        const offset = this.#slotField(i, DATA_POSITION_FIELD) & this.#dataMask;
        const length = this.#slotField(i, LENGTH_FIELD);
        if (offset !== runEnd) {
          targetOffset += this.#copyRun(runStart, runEnd, target, targetOffset);
          runStart = offset;
        }
        runEnd = offset + length;
      }
      if (i === last) break;
    }
    this.#copyRun(runStart, runEnd, target, targetOffset);
  }

  #copyRun(start: number, end: number, target: Uint8Array, targetOffset: number): number {
    const bytes = Math.min(end, this.dataBytes) - start;
    const copied = Math.min(bytes, target.length - targetOffset);
    if (copied > 0) copyBytes(target, targetOffset, this.data.subarray(start, start + copied));
    return copied > 0 ? copied : 0;
  }
}
