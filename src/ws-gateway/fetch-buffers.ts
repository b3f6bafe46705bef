/**
 * Buffers the gateway lends to Engine.fetch (`into`) for results it sends at once: a
 * subscription's DATA frame, a FETCH_OK. uWS copies what it sends before `send` returns,
 * so a buffer is free again right after; a new buffer of a MiB per fetch cost about 0.4 ms
 * here (the kernel's fresh pages faulted in one by one) against 0.06 ms for copying the
 * records into it (docs/benchmarks.md, fifth session).
 *
 * At most POOLED_BUFFERS_MAX are kept; a fetch that finds none free gets a new one, which
 * is kept on release if there is room, else left to the garbage collector. So the pool
 * holds at most POOLED_BUFFERS_MAX * FETCH_INTO_BYTES_MIN (about 16 MiB) when idle, and
 * what is in use is bounded by the fetches in flight, as before.
 *
 * Owner: the gateway thread; a plain free list.
 */
import { assert } from '../assert.js';
import { FETCH_INTO_BYTES_MIN } from '../engine/engine.js';

/** Buffers kept for reuse. */
export const POOLED_BUFFERS_MAX = 16;

export class FetchBuffers {
  readonly #free: Uint8Array[] = [];
  readonly #bufferBytes: number;
  readonly #pooledMax: number;

  constructor(bufferBytes = FETCH_INTO_BYTES_MIN, pooledMax = POOLED_BUFFERS_MAX) {
    assert(Number.isInteger(bufferBytes) && bufferBytes >= 1, 'bufferBytes is a positive integer');
    assert(Number.isInteger(pooledMax) && pooledMax >= 0, 'pooledMax is an integer >= 0');
    this.#bufferBytes = bufferBytes;
    this.#pooledMax = pooledMax;
  }

  /** A buffer to lend to one fetch; give it back with release() once done with its result. */
  acquire(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.#bufferBytes);
  }

  /** Takes back a buffer acquire() gave, whose fetch has settled and whose result was sent. */
  release(buffer: Uint8Array): void {
    assert(buffer.length === this.#bufferBytes && !this.#free.includes(buffer), 'release() takes back a buffer of this pool, once');
    if (this.#free.length < this.#pooledMax) this.#free.push(buffer);
  }

  /** Buffers kept for reuse now. */
  get pooled(): number {
    return this.#free.length;
  }
}
