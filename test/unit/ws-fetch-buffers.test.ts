// FetchBuffers: the gateway's pool of buffers lent to Engine.fetch.
import { describe, expect, it } from 'vitest';
import { FETCH_INTO_BYTES_MIN } from '../../src/engine/engine.js';
import { BUFFERS_MAX, FRAME_HEAD_ROOM_BYTES, FetchBuffers } from '../../src/ws-gateway/fetch-buffers.js';

describe('FetchBuffers', () => {
  it('lends buffers large enough for any fetch and reuses released ones', () => {
    const pool = new FetchBuffers();
    const a = pool.acquire()!;
    expect(a.length).toBe(FETCH_INTO_BYTES_MIN);
    // Room for a frame head in front of the records, in the same memory (one message on the wire).
    expect(a.byteOffset).toBe(FRAME_HEAD_ROOM_BYTES);
    expect(a.buffer.byteLength).toBe(FRAME_HEAD_ROOM_BYTES + FETCH_INTO_BYTES_MIN);
    pool.release(a);
    expect(pool.acquire()).toBe(a); // reused, not a new one
  });

  it('never has more than BUFFERS_MAX buffers: past them it lends none (the fetch allocates its exact size)', () => {
    const pool = new FetchBuffers();
    const lent = Array.from({ length: BUFFERS_MAX + 5 }, () => pool.acquire());
    const real = lent.filter((b) => b !== undefined);
    expect(real).toHaveLength(BUFFERS_MAX);
    expect(new Set(real).size).toBe(BUFFERS_MAX); // never the same buffer twice while lent
    expect(lent.slice(BUFFERS_MAX).every((b) => b === undefined)).toBe(true);
    for (const b of lent) pool.release(b); // undefined is accepted and ignored
    expect(pool.lent).toBe(0);
    expect(pool.free).toBe(BUFFERS_MAX);
    expect(pool.acquire()).toBeDefined();
  });

  it('refuses a buffer that is not its own, or one released twice', () => {
    const pool = new FetchBuffers(64, 4);
    expect(() => pool.release(new Uint8Array(32))).toThrow();
    const b = pool.acquire()!;
    pool.release(b);
    expect(() => pool.release(b)).toThrow();
  });
});
