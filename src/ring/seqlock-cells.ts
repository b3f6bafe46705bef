/**
 * SeqlockCells: a handful of float64 values (offsets beyond 2^31: log end offset, high
 * watermark, durable offset...) written together by one thread and read consistently by
 * others. Atomics work only on integer arrays, so float64 values cannot be published by
 * one Atomics.store; a sequence counter makes a group of plain writes look atomic.
 *
 * Owning threads: one writer thread calls begin/set/end; any number of reader threads call
 * read/get, each through its own instance attached to the same SharedArrayBuffer.
 *
 * SharedArrayBuffer layout:
 *
 * | offset | size      | field    | written by | meaning                                   |
 * |-------:|----------:|----------|------------|-------------------------------------------|
 * |      0 |         4 | magic    | create     | SEQLOCK_MAGIC                             |
 * |      4 |         4 | count    | create     | number of values                          |
 * |     64 |         4 | sequence | writer     | odd while a write is in progress (Int32)  |
 * |    128 | 8 * count | values   | writer     | Float64, platform byte order              |
 *
 * Invariants and why a reader never sees a mix of two writes:
 * - The sequence only grows (wrapping modulo 2^32 is harmless: a reader would have to be
 *   descheduled across exactly 2^31 writes to be fooled). It is odd exactly while the
 *   writer is between begin() and end().
 * - begin() bumps the sequence with an atomic read-modify-write, which is also a full fence,
 *   so no value store can become visible before the odd sequence (weakly ordered CPUs
 *   included). end() stores the even sequence after the value stores (a sequentially
 *   consistent store orders the earlier stores before it).
 * - A reader loads an even sequence, copies the values, fences (an RMW on a cell of its
 *   own, so the copy cannot be satisfied after the next load and the compiler cannot reuse
 *   loads across the retry), and loads the sequence again: equal means no write began in
 *   between, so the copy is one write's values. Otherwise it retries.
 * - A reader spins while a write is in progress; the writer's critical section is a few
 *   stores, so the spin is short unless the writer thread is descheduled inside it. After
 *   SEQLOCK_READ_MS_MAX it throws (INTERNAL) rather than spin forever.
 */
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';

/** Most values in one group: a seqlock is for a handful of cells, not a table. */
export const SEQLOCK_COUNT_MAX = 64;
/**
 * Longest a reader retries before it gives up: a write takes nanoseconds, a descheduled
 * writer a few milliseconds; an odd sequence for this long means the writer thread died
 * inside a write, and spinning forever would freeze the reader's thread (the gateway).
 */
export const SEQLOCK_READ_MS_MAX = 1000;
/** Failed attempts between two clock reads while retrying. */
const RETRIES_PER_CLOCK_READ = 1024;
export const CACHE_LINE_BYTES = 64;
/** "SEQL" in ASCII, to catch a SharedArrayBuffer of another kind passed by mistake. */
export const SEQLOCK_MAGIC = 0x5345514c;

export const MAGIC_OFFSET = 0;
export const MAGIC_BYTES = 4;
export const COUNT_OFFSET = MAGIC_OFFSET + MAGIC_BYTES;
export const COUNT_BYTES = 4;
export const SEQUENCE_OFFSET = CACHE_LINE_BYTES; // line 1
export const SEQUENCE_BYTES = CACHE_LINE_BYTES;
export const VALUES_OFFSET = SEQUENCE_OFFSET + SEQUENCE_BYTES;
assert(COUNT_OFFSET + COUNT_BYTES <= SEQUENCE_OFFSET, 'header fits in line 0');
assert(VALUES_OFFSET === 2 * CACHE_LINE_BYTES, 'SeqlockCells control area is 2 cache lines (128 bytes)');

const MAGIC_CELL = MAGIC_OFFSET >> 2;
const COUNT_CELL = COUNT_OFFSET >> 2;
const SEQUENCE_CELL = SEQUENCE_OFFSET >> 2;

function validateCount(count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > SEQLOCK_COUNT_MAX) {
    throw new RangeError(`SeqlockCells count must be an integer in [1, ${SEQLOCK_COUNT_MAX}], got ${count}`);
  }
}

export class SeqlockCells {
  readonly sab: SharedArrayBuffer;
  readonly count: number;

  readonly #cells: Int32Array;
  readonly #values: Float64Array;
  /** A cell no other thread touches: an RMW on it is this reader's full fence. */
  readonly #fence = new Int32Array(new SharedArrayBuffer(4));
  #writing = false;
  #retryStartedMs = 0; // reader: when the current run of failed attempts started

  static create(count: number): SeqlockCells {
    validateCount(count);
    const sab = new SharedArrayBuffer(VALUES_OFFSET + count * Float64Array.BYTES_PER_ELEMENT);
    const cells = new Int32Array(sab, 0, VALUES_OFFSET >> 2);
    cells[COUNT_CELL] = count;
    cells[MAGIC_CELL] = SEQLOCK_MAGIC;
    return new SeqlockCells(sab);
  }

  /** Attaches to cells made by `SeqlockCells.create` (as a reader, or as the one writer). */
  constructor(sab: SharedArrayBuffer) {
    assert(sab instanceof SharedArrayBuffer, 'SeqlockCells needs a SharedArrayBuffer');
    assert(sab.byteLength >= VALUES_OFFSET, 'SharedArrayBuffer too small for SeqlockCells');
    const cells = new Int32Array(sab, 0, VALUES_OFFSET >> 2);
    assert(Atomics.load(cells, MAGIC_CELL) === SEQLOCK_MAGIC, 'SharedArrayBuffer is not SeqlockCells');
    const count = Atomics.load(cells, COUNT_CELL);
    validateCount(count);
    assert(sab.byteLength === VALUES_OFFSET + count * Float64Array.BYTES_PER_ELEMENT, 'SeqlockCells byte length matches its count');
    this.sab = sab;
    this.count = count;
    this.#cells = cells;
    this.#values = new Float64Array(sab, VALUES_OFFSET, count);
  }

  // ---- writer -------------------------------------------------------------------------

  /** Starts a write: readers retry until end(). */
  begin(): void {
    assert(!this.#writing, 'SeqlockCells.begin inside a write');
    this.#writing = true;
    Atomics.add(this.#cells, SEQUENCE_CELL, 1); // odd; RMW = full fence before the values
  }

  set(index: number, value: number): void {
    assert(this.#writing, 'SeqlockCells.set outside begin/end');
    assert(index >= 0 && index < this.count && (index | 0) === index, 'SeqlockCells index in range');
    this.#values[index] = value;
  }

  /** Ends a write: readers see every value set since begin() at once. */
  end(): void {
    assert(this.#writing, 'SeqlockCells.end without begin');
    this.#writing = false;
    Atomics.store(this.#cells, SEQUENCE_CELL, (Atomics.load(this.#cells, SEQUENCE_CELL) + 1) | 0); // even
  }

  // ---- reader -------------------------------------------------------------------------

  /** Copies all values, as one write left them, into `out` (length >= count). */
  read(out: Float64Array): void {
    assert(out.length >= this.count, 'SeqlockCells.read target holds every value');
    const values = this.#values;
    for (let attempt = 1; ; attempt++) {
      const before = Atomics.load(this.#cells, SEQUENCE_CELL);
      if ((before & 1) === 0) { // else a write is in progress
        for (let i = 0; i < this.count; i++) out[i] = values[i];
        Atomics.add(this.#fence, 0, 1);
        if (Atomics.load(this.#cells, SEQUENCE_CELL) === before) return;
      }
      if (attempt % RETRIES_PER_CLOCK_READ === 0) this.#checkStuck(attempt);
    }
  }

  /** One value, as the last complete write left it. */
  get(index: number): number {
    assert(index >= 0 && index < this.count && (index | 0) === index, 'SeqlockCells index in range');
    for (let attempt = 1; ; attempt++) {
      const before = Atomics.load(this.#cells, SEQUENCE_CELL);
      if ((before & 1) === 0) {
        const value = this.#values[index];
        Atomics.add(this.#fence, 0, 1);
        if (Atomics.load(this.#cells, SEQUENCE_CELL) === before) return value;
      }
      if (attempt % RETRIES_PER_CLOCK_READ === 0) this.#checkStuck(attempt);
    }
  }

  /** Called every RETRIES_PER_CLOCK_READ failed attempts: throws once retrying took too long. */
  #checkStuck(attempt: number): void {
    const nowMs = Date.now();
    if (attempt === RETRIES_PER_CLOCK_READ) this.#retryStartedMs = nowMs;
    else if (nowMs - this.#retryStartedMs > SEQLOCK_READ_MS_MAX) {
      throw new SluiceError('INTERNAL', `SeqlockCells: no consistent read for ${SEQLOCK_READ_MS_MAX} ms; did the writer thread die inside a write?`);
    }
  }

  /** The sequence counter (even when no write is in progress); changes with every write. */
  sequence(): number {
    return Atomics.load(this.#cells, SEQUENCE_CELL);
  }
}
