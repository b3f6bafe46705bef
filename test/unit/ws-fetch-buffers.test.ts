// FetchBuffers: the gateway's pool of buffers lent to Engine.fetch.
import { describe, expect, it } from 'vitest';
import { FETCH_INTO_BYTES_MIN } from '../../src/engine/engine.js';
import { FetchBuffers, POOLED_BUFFERS_MAX } from '../../src/ws-gateway/fetch-buffers.js';

describe('FetchBuffers', () => {
  it('lends buffers large enough for any fetch, reuses released ones, and keeps at most its maximum', () => {
    const pool = new FetchBuffers();
    const a = pool.acquire();
    expect(a.length).toBe(FETCH_INTO_BYTES_MIN);
    pool.release(a);
    expect(pool.acquire()).toBe(a); // reused, not a new one
    const many = Array.from({ length: POOLED_BUFFERS_MAX + 5 }, () => pool.acquire());
    expect(new Set(many).size).toBe(many.length); // never the same buffer twice while lent
    for (const b of many) pool.release(b);
    expect(pool.pooled).toBe(POOLED_BUFFERS_MAX);
  });

  it('refuses a buffer that is not its own, or one released twice', () => {
    const pool = new FetchBuffers(64, 4);
    expect(() => pool.release(new Uint8Array(32))).toThrow();
    const b = pool.acquire();
    pool.release(b);
    expect(() => pool.release(b)).toThrow();
  });
});
