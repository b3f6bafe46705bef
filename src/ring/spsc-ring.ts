/**
 * SpscRing: a single-producer single-consumer ring of variable-length frames over one
 * SharedArrayBuffer, lock-free. It carries the command ring (gateway -> owner) and the
 * completion ring (owner -> gateway); it knows nothing of what the frames mean.
 *
 * Owning threads: exactly one writer thread calls reserve/commit/freeBytes/waitForSpace and
 * exactly one reader thread calls peek/advance/release/releaseAdvanced/isEmpty/wait/
 * waitAsync/waitAsyncUntilWoken/writeMark/isBefore; any thread may call `wake`. Each
 * thread holds its own SpscRing instance over the same SharedArrayBuffer
 * (`SpscRing.create(capacityBytes)` on one side, `new SpscRing(sab)` on the other); the
 * instance keeps that thread's private cursor and caches in #fields.
 *
 * SharedArrayBuffer layout (every Int32 cell on its own 64-byte line, so the writer's
 * stores and the reader's stores never share a cache line):
 *
 * | offset | size     | field                | written by | meaning                                     |
 * |-------:|---------:|----------------------|------------|---------------------------------------------|
 * |      0 |        4 | magic                | create     | RING_MAGIC, checked on attach               |
 * |      4 |        4 | capacityBytes        | create     | size of the frame area                      |
 * |     64 |        4 | write counter        | writer     | bytes ever committed, mod 2^32              |
 * |    128 |        4 | read counter         | reader     | bytes ever released, mod 2^32               |
 * |    192 |        4 | writer waiting bytes | both       | free bytes the sleeping writer needs, 0=none |
 * |    256 |        4 | reader waiting       | reader     | 1 while the reader sleeps on the write cell |
 * |    320 | capacity | frame area (`data`)  | writer     | frames, see below                           |
 *
 * Frame layout (inside `data`, at `counter mod capacity`; LITTLE-ENDIAN):
 *
 * | offset | size    | field          |
 * |-------:|--------:|----------------|
 * |      0 |       4 | payload length | u32; PAD_MARKER means "skip to offset 0"
 * |      4 |       4 | reserved       | written as 0; keeps the payload 8-byte aligned
 * |      8 | payload | payload        | filled in place by the writer between reserve and commit
 * |      - | 0..7    | padding        | the whole frame is a multiple of 8 bytes
 *
 * Why an 8-byte header rather than a 4-byte one: V8 copies SharedArrayBuffer memory with
 * relaxed word-sized atomics only when source and target are equally aligned; a payload at
 * 4 mod 8 copies byte by byte, about 3 GB/s instead of 12 to 22 GB/s here (Node 20,
 * measured with TypedArray.set and Buffer.copy; copyBytes in shared-copy.ts copies large
 * payloads with memcpy at any alignment). A 64-byte payload takes 72 bytes either way.
 *
 * Invariants:
 * - capacity is a power of two in [CAPACITY_BYTES_MIN, CAPACITY_BYTES_MAX]; counters only
 *   grow and wrap modulo 2^32, so `(write - read) | 0` is the used byte count in [0, capacity]
 *   (capacity <= 2^30 keeps that difference inside an Int32).
 * - Frames are never split at the end of the area: when a frame does not fit before the end,
 *   the writer stores PAD_MARKER in the length field at the current position and puts the
 *   frame at offset 0; the skipped bytes count as written (and later as read). A PAD_MARKER
 *   is always followed by a frame at 0 within the same commit, so the reader never sees a
 *   lone marker.
 * - Frame starts and payloads are 8-byte aligned, so the header always fits before the end.
 * - The writer never writes into [read, read + capacity) beyond its own write counter, i.e.
 *   a full ring answers -1 and never overwrites unread bytes.
 * - Counters are published by the last Atomics.store of an operation: the writer stores the
 *   write counter after it wrote the length and payload, the reader stores the read counter
 *   after it finished reading the payload. Atomics are sequentially consistent, which gives
 *   the release/acquire order this needs on every CPU.
 * - Wake-ups: the writer notifies the write cell only when its commit made the ring go from
 *   empty to non-empty AND the reader flagged that it is going to sleep (a wake costs about
 *   45 us here; a spinning reader needs none). The reader publishes its read counter, sets
 *   the flag, then re-reads the write counter before Atomics.wait; the writer stores the
 *   write counter, then reads the read counter and the flag: with sequentially consistent
 *   atomics one of the two sees the other, so no wake-up is lost. The writer side sleeping
 *   for space is symmetric with the "writer waiting bytes" cell.
 */
import { assert } from '../assert.js';

/** Smallest frame area: below this the fixed header lines dominate and frames barely fit. */
export const CAPACITY_BYTES_MIN = 4096;
/** Largest frame area: (write - read) | 0 must stay inside an Int32 (2^31), with margin. */
export const CAPACITY_BYTES_MAX = 2 ** 30;
/** Frames are at most a quarter of the ring, so a frame never waits for more than 3/4 drain. */
export const FRAME_BYTES_DIVISOR = 4;
/** Length-field value that sends the reader back to offset 0 (a real length is < 2^30). */
export const PAD_MARKER = 0xffffffff;
/** Bytes in front of each payload: the u32 length and 4 reserved bytes (see the top comment). */
export const FRAME_HEADER_BYTES = 8;
export const FRAME_LENGTH_OFFSET = 0;
export const FRAME_RESERVED_OFFSET = FRAME_LENGTH_OFFSET + 4;
export const FRAME_PAYLOAD_OFFSET = FRAME_RESERVED_OFFSET + 4;
/** Frame starts are 8-aligned so payloads copy fast and their 8-byte fields read aligned. */
export const FRAME_ALIGN_BYTES = 8;
/**
 * Longest single waitAsync before it resolves anyway: the caller re-checks the counters
 * (house style 21), and a bounded wait cannot strand a promise if a notify were ever missed.
 */
export const WAIT_ASYNC_TIMEOUT_MS_MAX = 1000;
/** Cache line size: each counter sits alone on one, so the two threads never false-share. */
export const CACHE_LINE_BYTES = 64;
/** "SPSC" in ASCII, to catch a SharedArrayBuffer of another kind passed by mistake. */
export const RING_MAGIC = 0x53505343;

export const MAGIC_OFFSET = 0;
export const MAGIC_BYTES = 4;
export const CAPACITY_OFFSET = MAGIC_OFFSET + MAGIC_BYTES;
export const CAPACITY_BYTES = 4;
export const WRITE_COUNTER_OFFSET = CACHE_LINE_BYTES; // line 1
export const WRITE_COUNTER_BYTES = CACHE_LINE_BYTES;
export const READ_COUNTER_OFFSET = WRITE_COUNTER_OFFSET + WRITE_COUNTER_BYTES; // line 2
export const READ_COUNTER_BYTES = CACHE_LINE_BYTES;
export const WRITER_WAITING_OFFSET = READ_COUNTER_OFFSET + READ_COUNTER_BYTES; // line 3
export const WRITER_WAITING_BYTES = CACHE_LINE_BYTES;
export const READER_WAITING_OFFSET = WRITER_WAITING_OFFSET + WRITER_WAITING_BYTES; // line 4
export const READER_WAITING_BYTES = CACHE_LINE_BYTES;
export const DATA_OFFSET = READER_WAITING_OFFSET + READER_WAITING_BYTES;
assert(CAPACITY_OFFSET + CAPACITY_BYTES <= WRITE_COUNTER_OFFSET, 'header fits in line 0');
assert(DATA_OFFSET === 5 * CACHE_LINE_BYTES, 'SpscRing control area is 5 cache lines (320 bytes)');
assert(DATA_OFFSET % FRAME_ALIGN_BYTES === 0, 'frame area is 8-byte aligned');
assert(FRAME_PAYLOAD_OFFSET === FRAME_HEADER_BYTES && FRAME_HEADER_BYTES % FRAME_ALIGN_BYTES === 0, 'payloads are 8-byte aligned');

// Int32 indexes of the cells.
const MAGIC_CELL = MAGIC_OFFSET >> 2;
const CAPACITY_CELL = CAPACITY_OFFSET >> 2;
const WRITE_CELL = WRITE_COUNTER_OFFSET >> 2;
const READ_CELL = READ_COUNTER_OFFSET >> 2;
const WRITER_WAITING_CELL = WRITER_WAITING_OFFSET >> 2;
const READER_WAITING_CELL = READER_WAITING_OFFSET >> 2;

/** Bytes a frame with this payload occupies: header plus payload, rounded up to 8. */
function frameBytesOf(payloadBytes: number): number {
  return (payloadBytes + FRAME_HEADER_BYTES + FRAME_ALIGN_BYTES - 1) & ~(FRAME_ALIGN_BYTES - 1);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function validateCapacity(capacityBytes: number): void {
  if (!isPowerOfTwo(capacityBytes) || capacityBytes < CAPACITY_BYTES_MIN || capacityBytes > CAPACITY_BYTES_MAX) {
    throw new RangeError(
      `SpscRing capacity must be a power of two in [${CAPACITY_BYTES_MIN}, ${CAPACITY_BYTES_MAX}] bytes, got ${capacityBytes}`,
    );
  }
}

/** A promise that resolves after at most `timeoutMs` (Infinity: only on a notify), or earlier when the cell changes. */
function waitCellAsync(cells: Int32Array, index: number, expected: number, timeoutMs: number, keepAlive: boolean): Promise<unknown> | null {
  const result = Atomics.waitAsync(cells, index, expected, timeoutMs);
  if (!result.async) return null;
  if (!keepAlive) return result.value;
  // A pending Atomics.waitAsync does not keep Node's event loop alive (checked on Node 20):
  // a consumer awaiting only the ring would see the process exit under it. A ref'd timer
  // for the same duration keeps it alive and is cleared as soon as the wait resolves.
  const timer = setTimeout(noop, timeoutMs);
  return result.value.then(() => clearTimeout(timer));
}

function noop(): void {}

export class SpscRing {
  readonly sab: SharedArrayBuffer;
  readonly capacityBytes: number;
  /** The frame area; offsets returned by reserve and peek index into it. */
  readonly data: Uint8Array;
  /** A DataView over `data` (same offsets) for typed fields in payloads. */
  readonly view: DataView;
  /** Largest payload reserve accepts: capacity / 4. */
  readonly frameBytesMax: number;

  readonly #cells: Int32Array;
  readonly #mask: number;

  // Writer-side state (only the writer thread's instance uses these).
  #write: number; // next write position (counter, mod 2^32); equals the published write cell
  #readSeen: number; // last read counter loaded: a lower bound of the real one, saves loads
  #reservedPayloadBytes = -1; // -1: nothing reserved
  #reservedPadBytes = 0;

  // Reader-side state (only the reader thread's instance uses these).
  #read: number; // next frame to peek (counter), may be ahead of the published read cell
  #readPublished: number; // what the read cell holds
  #writeSeen: number; // last write counter loaded: frames up to it need no Atomics.load
  #peekedLength = -1; // payload length of the frame peek returned; -1 when none

  /** Creates a ring with a frame area of `capacityBytes` (a power of two, 4 KiB .. 1 GiB). */
  static create(capacityBytes: number): SpscRing {
    validateCapacity(capacityBytes);
    const sab = new SharedArrayBuffer(DATA_OFFSET + capacityBytes);
    const cells = new Int32Array(sab, 0, DATA_OFFSET >> 2);
    cells[CAPACITY_CELL] = capacityBytes;
    cells[MAGIC_CELL] = RING_MAGIC;
    return new SpscRing(sab);
  }

  /** Largest payload a ring of this capacity accepts (a larger one is a caller error). */
  static frameBytesMax(capacityBytes: number): number {
    return capacityBytes / FRAME_BYTES_DIVISOR;
  }

  /** Attaches to a ring made by `SpscRing.create` (typically in another thread). */
  constructor(sab: SharedArrayBuffer) {
    assert(sab instanceof SharedArrayBuffer, 'SpscRing needs a SharedArrayBuffer');
    assert(sab.byteLength >= DATA_OFFSET, 'SharedArrayBuffer too small for an SpscRing');
    const cells = new Int32Array(sab, 0, DATA_OFFSET >> 2);
    assert(Atomics.load(cells, MAGIC_CELL) === RING_MAGIC, 'SharedArrayBuffer is not an SpscRing');
    const capacityBytes = Atomics.load(cells, CAPACITY_CELL);
    validateCapacity(capacityBytes);
    assert(sab.byteLength === DATA_OFFSET + capacityBytes, 'SpscRing byte length matches its capacity');
    this.sab = sab;
    this.capacityBytes = capacityBytes;
    this.frameBytesMax = SpscRing.frameBytesMax(capacityBytes);
    this.data = new Uint8Array(sab, DATA_OFFSET, capacityBytes);
    this.view = new DataView(sab, DATA_OFFSET, capacityBytes);
    this.#cells = cells;
    this.#mask = capacityBytes - 1;
    this.#write = Atomics.load(cells, WRITE_CELL);
    this.#read = Atomics.load(cells, READ_CELL);
    this.#readSeen = this.#read;
    this.#readPublished = this.#read;
    this.#writeSeen = this.#write;
  }

  // ---- writer -------------------------------------------------------------------------

  /**
   * Reserves room for a frame of `payloadBytes` and returns the offset in `data` where the
   * payload goes, or -1 when the ring lacks the space (nothing unread is ever overwritten).
   * Nothing is visible to the reader until commit. A second reserve without commit replaces
   * the first. Throws RangeError when payloadBytes exceeds frameBytesMax.
   */
  reserve(payloadBytes: number): number {
    if (!(payloadBytes >= 0 && payloadBytes <= this.frameBytesMax && (payloadBytes | 0) === payloadBytes)) {
      throw new RangeError(`SpscRing frame of ${payloadBytes} bytes: must be an integer in [0, ${this.frameBytesMax}]`);
    }
    const position = this.#write & this.#mask;
    const frameBytes = frameBytesOf(payloadBytes);
    const untilEndBytes = this.capacityBytes - position;
    const padBytes = frameBytes <= untilEndBytes ? 0 : untilEndBytes;
    const neededBytes = padBytes + frameBytes;
    if (this.capacityBytes - ((this.#write - this.#readSeen) | 0) < neededBytes) {
      this.#readSeen = Atomics.load(this.#cells, READ_CELL);
      if (this.capacityBytes - ((this.#write - this.#readSeen) | 0) < neededBytes) {
        this.#reservedPayloadBytes = -1;
        return -1;
      }
    }
    this.#reservedPayloadBytes = payloadBytes;
    this.#reservedPadBytes = padBytes;
    return ((position + padBytes) & this.#mask) + FRAME_HEADER_BYTES;
  }

  /**
   * Publishes the frame reserved last, shrunk to `payloadBytes` when given (<= reserved).
   * Returns true when the ring was empty before this commit; in that case, if the reader
   * is asleep in wait/waitAsync, it has been woken with Atomics.notify.
   */
  commit(payloadBytes?: number): boolean {
    const reservedBytes = this.#reservedPayloadBytes;
    assert(reservedBytes >= 0, 'SpscRing.commit without a successful reserve');
    let bytes = reservedBytes;
    if (payloadBytes !== undefined) {
      assert(payloadBytes >= 0 && payloadBytes <= reservedBytes && (payloadBytes | 0) === payloadBytes,
        'SpscRing.commit may only shrink the reserved frame');
      bytes = payloadBytes;
    }
    const before = this.#write;
    const padBytes = this.#reservedPadBytes;
    if (padBytes !== 0) this.view.setUint32(before & this.#mask, PAD_MARKER, true);
    const frameStart = (before + padBytes) | 0;
    const framePosition = frameStart & this.#mask;
    this.view.setUint32(framePosition + FRAME_LENGTH_OFFSET, bytes, true);
    this.view.setUint32(framePosition + FRAME_RESERVED_OFFSET, 0, true);
    const after = (frameStart + frameBytesOf(bytes)) | 0;
    this.#write = after;
    this.#reservedPayloadBytes = -1;
    Atomics.store(this.#cells, WRITE_CELL, after); // publishes length and payload
    const read = Atomics.load(this.#cells, READ_CELL);
    this.#readSeen = read;
    if (read !== before) return false;
    if (Atomics.load(this.#cells, READER_WAITING_CELL) !== 0) Atomics.notify(this.#cells, WRITE_CELL, 1);
    return true;
  }

  /** Free bytes as the writer sees them now (a frame also needs its header and padding). */
  freeBytes(): number {
    this.#readSeen = Atomics.load(this.#cells, READ_CELL);
    return this.capacityBytes - ((this.#write - this.#readSeen) | 0);
  }

  /**
   * Blocks (Atomics.wait: worker threads only) until `reserve(payloadBytes)` would succeed
   * or `timeoutMs` passes; returns whether it would succeed. The reader wakes the writer
   * only once it has released enough bytes, not at every release.
   */
  waitForSpace(payloadBytes: number, timeoutMs: number): boolean {
    if (!(payloadBytes >= 0 && payloadBytes <= this.frameBytesMax)) {
      throw new RangeError(`SpscRing frame of ${payloadBytes} bytes: must be in [0, ${this.frameBytesMax}]`);
    }
    const deadlineMs = Date.now() + timeoutMs;
    const frameBytes = frameBytesOf(payloadBytes);
    const untilEndBytes = this.capacityBytes - (this.#write & this.#mask);
    const neededBytes = (frameBytes <= untilEndBytes ? 0 : untilEndBytes) + frameBytes;
    for (;;) {
      Atomics.store(this.#cells, WRITER_WAITING_CELL, neededBytes);
      const read = Atomics.load(this.#cells, READ_CELL);
      this.#readSeen = read;
      if (this.capacityBytes - ((this.#write - read) | 0) >= neededBytes) break;
      const remainingMs = deadlineMs - Date.now();
      if (remainingMs <= 0) break;
      Atomics.wait(this.#cells, READ_CELL, read, remainingMs);
    }
    Atomics.store(this.#cells, WRITER_WAITING_CELL, 0);
    return this.capacityBytes - ((this.#write - this.#readSeen) | 0) >= neededBytes;
  }

  // ---- reader -------------------------------------------------------------------------

  /**
   * Offset in `data` of the next frame's payload, or -1 when the ring is empty; sets
   * `frameLength`. Peeking again without advancing returns the same frame.
   */
  peek(): number {
    let read = this.#read;
    if (read === this.#writeSeen) {
      this.#writeSeen = Atomics.load(this.#cells, WRITE_CELL);
      if (read === this.#writeSeen) return -1;
    }
    let position = read & this.#mask;
    let length = this.view.getUint32(position, true);
    if (length === PAD_MARKER) {
      // The writer skipped the end; the frame is at 0 and was committed with the marker.
      read = (read + this.capacityBytes - position) | 0;
      this.#read = read;
      position = 0;
      length = this.view.getUint32(0, true);
    }
    this.#peekedLength = length;
    return position + FRAME_HEADER_BYTES;
  }

  /** Payload bytes of the frame returned by the last peek (-1 when none is peeked). */
  get frameLength(): number {
    return this.#peekedLength;
  }

  /** Consumes the peeked frame and gives its space back to the writer at once. */
  release(): void {
    this.advance();
    this.releaseAdvanced();
  }

  /**
   * Consumes the peeked frame without giving its space back yet: a reader draining many
   * frames calls advance() for each and releaseAdvanced() once, which saves one store (and
   * one cache-line transfer to the writer) per frame. The payload stays valid until then.
   */
  advance(): void {
    const length = this.#peekedLength;
    assert(length >= 0, 'SpscRing.advance without a peeked frame');
    this.#read = (this.#read + frameBytesOf(length)) | 0;
    this.#peekedLength = -1;
  }

  /** Gives back the space of every advanced frame; wakes the writer if it waits for it. */
  releaseAdvanced(): void {
    const read = this.#read;
    if (read === this.#readPublished) return;
    this.#readPublished = read;
    Atomics.store(this.#cells, READ_CELL, read);
    const wantedBytes = Atomics.load(this.#cells, WRITER_WAITING_CELL);
    if (wantedBytes !== 0 && this.capacityBytes - ((Atomics.load(this.#cells, WRITE_CELL) - read) | 0) >= wantedBytes) {
      Atomics.store(this.#cells, WRITER_WAITING_CELL, 0);
      Atomics.notify(this.#cells, READ_CELL, 1);
    }
  }

  /**
   * A mark after every frame committed so far (the write counter now). With isBefore, a
   * reader can take exactly the frames committed before some event, however fast the
   * writer goes on committing.
   */
  writeMark(): number {
    this.#writeSeen = Atomics.load(this.#cells, WRITE_CELL);
    return this.#writeSeen;
  }

  /** Whether a frame committed before `mark` (from writeMark) is still to be peeked. */
  isBefore(mark: number): boolean {
    return ((mark - this.#read) | 0) > 0;
  }

  /** True when there is no frame to peek. */
  isEmpty(): boolean {
    if (this.#read !== this.#writeSeen) return false;
    this.#writeSeen = Atomics.load(this.#cells, WRITE_CELL);
    return this.#read === this.#writeSeen;
  }

  /**
   * Blocks with Atomics.wait until a frame is there or `timeoutMs` passes (worker threads
   * only: the gateway never blocks, it uses waitAsync). Returns whether a frame is there:
   * false only once the timeout has passed.
   * Advanced frames are released first, so a writer waiting for space cannot deadlock us.
   */
  wait(timeoutMs: number): boolean {
    const deadlineMs = Date.now() + timeoutMs;
    while (this.#prepareToSleep()) {
      const remainingMs = deadlineMs - Date.now();
      // A wake can find the ring still empty: the notify of a commit this reader already
      // consumed may land in its next sleep. So sleep again until the deadline.
      if (remainingMs > 0) Atomics.wait(this.#cells, WRITE_CELL, this.#read, remainingMs);
      Atomics.store(this.#cells, READER_WAITING_CELL, 0);
      if (remainingMs <= 0) return !this.isEmpty();
    }
    return true;
  }

  /**
   * Resolves when a frame is there: at once when not empty, else on the writer's notify or
   * after min(timeoutMs, WAIT_ASYNC_TIMEOUT_MS_MAX). It may also resolve early with the ring
   * still empty (a late notify meant for a frame already consumed), so the caller re-checks
   * with peek either way. One outstanding waitAsync at a time. A pending wait keeps the
   * event loop alive with a timer of the same length unless `keepAlive` is false: for a
   * thread that something else keeps alive (a worker's port, the owners' Worker handles),
   * which saves a timer set and cleared per wait.
   */
  waitAsync(timeoutMs: number, keepAlive = true): Promise<void> {
    return this.#sleepAsync(Math.max(0, Math.min(timeoutMs, WAIT_ASYNC_TIMEOUT_MS_MAX)), keepAlive);
  }

  /**
   * As waitAsync, with no timeout and no keep-alive: resolves on the writer's notify or a
   * `wake`, possibly with the ring still empty, so the caller re-checks with peek either
   * way. For a reader that bounds the wait itself, with a timer or watchdog that calls
   * `wake`: a timed Atomics.waitAsync arms and cancels a platform task per wait, which
   * cost the waiting thread about 20 µs of CPU per wake-up here (docs/benchmarks.md, ninth
   * session), and the gateway and the owner each wake up about once per produced batch.
   */
  waitAsyncUntilWoken(): Promise<void> {
    return this.#sleepAsync(Infinity, false);
  }

  /** Wakes the reader's pending wait (any thread may call it); the reader sees a wake-up with nothing new, and re-checks. */
  wake(): void {
    Atomics.notify(this.#cells, WRITE_CELL);
  }

  /** Flags the sleep and waits on the write cell (see waitAsync), clearing the flag when it ends. */
  #sleepAsync(timeoutMs: number, keepAlive: boolean): Promise<void> {
    if (!this.#prepareToSleep()) return Promise.resolve();
    const pending = waitCellAsync(this.#cells, WRITE_CELL, this.#read, timeoutMs, keepAlive);
    if (pending === null) {
      Atomics.store(this.#cells, READER_WAITING_CELL, 0);
      return Promise.resolve();
    }
    return pending.then(() => {
      Atomics.store(this.#cells, READER_WAITING_CELL, 0);
    });
  }

  /** Returns false when a frame is already there; else publishes and flags the sleep. */
  #prepareToSleep(): boolean {
    this.releaseAdvanced(); // the writer's empty check compares with the published counter
    if (!this.isEmpty()) return false;
    Atomics.store(this.#cells, READER_WAITING_CELL, 1);
    if (!this.isEmpty()) {
      Atomics.store(this.#cells, READER_WAITING_CELL, 0);
      return false;
    }
    return true;
  }
}
