/**
 * Buffers the gateway lends to Engine.fetch (`into`) for results it sends at once: a
 * subscription's DATA frame, a FETCH_OK. uWS copies what it sends before `send` returns,
 * so a buffer is free again right after; a new buffer of a MiB per fetch cost about 0.4 ms
 * here (the kernel's fresh pages faulted in one by one) against 0.06 ms for copying the
 * records into it (docs/benchmarks.md, fifth session).
 *
 * Each lent buffer is a view that starts FRAME_HEAD_ROOM_BYTES into its own ArrayBuffer:
 * the gateway writes the frame's head into the bytes just before the records and sends
 * head and records as one WebSocket message, which a client reads without joining two
 * fragments (the `ws` package copies a fragmented message into a new buffer).
 *
 * At most BUFFERS_MAX buffers exist (lent or free, about 16 MiB). When all are lent,
 * acquire() gives none and that fetch gets a new buffer of exactly its result's size, as
 * without a pool: so many subscriptions fetching at once (a fan-out woken by one append)
 * cost what they cost before, never a MiB each.
 *
 * Owner: the gateway thread; a plain free list.
 */
import { assert } from '../assert.js';
import { FETCH_INTO_BYTES_MIN } from '../engine/engine.js';
import { DATA_HEAD_BYTES, FETCH_OK_HEAD_BYTES } from './frames.js';

/** Buffers that may exist, lent or free. */
export const BUFFERS_MAX = 16;
/** Bytes in front of each lent buffer for the head of the frame its records go out in. */
export const FRAME_HEAD_ROOM_BYTES = 64;
assert(FRAME_HEAD_ROOM_BYTES >= DATA_HEAD_BYTES && FRAME_HEAD_ROOM_BYTES >= FETCH_OK_HEAD_BYTES, 'a DATA or FETCH_OK head fits in the room');

export class FetchBuffers {
  readonly #free: Uint8Array[] = [];
  readonly #bufferBytes: number;
  readonly #max: number;
  #lent = 0;

  constructor(bufferBytes = FETCH_INTO_BYTES_MIN, max = BUFFERS_MAX) {
    assert(Number.isInteger(bufferBytes) && bufferBytes >= 1, 'bufferBytes is a positive integer');
    assert(Number.isInteger(max) && max >= 0, 'max is an integer >= 0');
    this.#bufferBytes = bufferBytes;
    this.#max = max;
  }

  /** A buffer to lend to one fetch, or undefined when all are lent; give it back with release() once done with its result. */
  acquire(): Uint8Array | undefined {
    let buffer = this.#free.pop();
    if (buffer === undefined) {
      if (this.#lent >= this.#max) return undefined;
      buffer = new Uint8Array(FRAME_HEAD_ROOM_BYTES + this.#bufferBytes).subarray(FRAME_HEAD_ROOM_BYTES);
    }
    this.#lent++;
    return buffer;
  }

  /** Takes back what acquire() gave (undefined included), once its fetch has settled and its result was sent. */
  release(buffer: Uint8Array | undefined): void {
    if (buffer === undefined) return;
    assert(buffer.length === this.#bufferBytes && this.#lent > 0 && !this.#free.includes(buffer), 'release() takes back a buffer of this pool, once');
    this.#lent--;
    this.#free.push(buffer);
  }

  /** Buffers lent now. */
  get lent(): number {
    return this.#lent;
  }

  /** Buffers free for reuse now. */
  get free(): number {
    return this.#free.length;
  }
}
