/**
 * Copying bytes into and out of shared memory at memcpy speed.
 *
 * V8 copies a TypedArray into or out of a SharedArrayBuffer (`set`, and Buffer's `copy`,
 * which calls it) with relaxed atomic stores, word by word when source and target are
 * equally aligned mod 8 and byte by byte otherwise: about 10-14 GB/s and 1.4-2 GB/s here,
 * against 31-37 GB/s for the same copy between ordinary ArrayBuffers (64 KiB pieces walked
 * over a 4 MiB area, `/tmp` script, 2026-11-27). Node's `Buffer.prototype.fill` with a
 * byte array as the value copies it with memcpy in C++ whatever the buffers are: 19-29 GB/s
 * from 16 KiB up, at any alignment, but about 150 ns per call, so small copies stay with
 * `set`. Races are the caller's business, as with `set`: the rings only copy bytes that
 * their protocol has handed to the copying thread.
 *
 * Owner: any thread; no state.
 */

/** From this many bytes on, a copy goes through memcpy (fill); below it, through `set`. */
export const MEMCPY_MIN_BYTES = 4096;

/**
 * Copies `source` to `target[targetOffset..]`; either or both may be views of shared
 * memory, but they must not overlap (memcpy, not memmove). Throws a RangeError, as `set`
 * does, when it does not fit.
 */
export function copyBytes(target: Uint8Array, targetOffset: number, source: Uint8Array): void {
  const length = source.length;
  if (length < MEMCPY_MIN_BYTES) {
    target.set(source, targetOffset);
    return;
  }
  if (targetOffset < 0 || targetOffset + length > target.length) throw new RangeError('copyBytes: the source does not fit in the target');
  // fill(value, start, end) copies value once when value.length === end - start.
  Buffer.prototype.fill.call(target, source, targetOffset, targetOffset + length);
}
