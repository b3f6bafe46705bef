import { describe, expect, it } from 'vitest';
import { ProducerStates, RECENT_BATCHES, lastSequence } from '../../src/workers/producer-state.js';
import { IDEMPOTENT_BATCHES_PER_PARTITION } from '../../src/ws-gateway/limits.js';

describe('idempotent producer state (the decision table, row by row)', () => {
  it('appends the first batch of a producer it does not know, whatever its sequence', () => {
    const s = new ProducerStates();
    expect(s.check(7, 0, 0, 10)).toEqual({ kind: 'append' });
    expect(s.check(8, 3, 500, 10)).toEqual({ kind: 'append' });
  });

  it('appends the next sequence and answers a re-sent batch with its original offset', () => {
    const s = new ProducerStates();
    s.record(7, 0, 0, 10, 100);
    expect(s.check(7, 0, 10, 5)).toEqual({ kind: 'append' });
    s.record(7, 0, 10, 5, 110);
    expect(s.check(7, 0, 0, 10)).toEqual({ kind: 'duplicate', baseOffset: 100 });
    expect(s.check(7, 0, 10, 5)).toEqual({ kind: 'duplicate', baseOffset: 110 });
  });

  it('after a failed write forgets only the batches at or after its end, keeping earlier ones and their order', () => {
    const s = new ProducerStates();
    for (let i = 0; i < RECENT_BATCHES + 2; i++) s.record(7, 0, i * 10, 10, 100 + i * 10); // the ring wrapped
    s.record(8, 0, 0, 1, 500); // only batches past the cut: forgotten entirely
    s.forgetFrom(150);
    expect(s.check(7, 0, 40, 10)).toEqual({ kind: 'duplicate', baseOffset: 140 });
    expect(s.check(7, 0, 50, 10)).toEqual({ kind: 'append' }); // the next after the last kept
    expect(() => s.check(7, 0, 70, 10)).toThrow(expect.objectContaining({ code: 'OUT_OF_ORDER_SEQUENCE' }));
    expect(s.check(8, 0, 5, 1)).toEqual({ kind: 'append' }); // unknown again
    s.record(7, 0, 50, 10, 150);
    expect(s.check(7, 0, 20, 10)).toEqual({ kind: 'duplicate', baseOffset: 120 });
  });

  it('refuses a gap with OUT_OF_ORDER_SEQUENCE (retriable), and a batch before the next expected one with DUPLICATE_SEQUENCE_NUMBER (not)', () => {
    const s = new ProducerStates();
    s.record(7, 0, 0, 10, 100);
    expect(() => s.check(7, 0, 11, 1)).toThrow(expect.objectContaining({ code: 'OUT_OF_ORDER_SEQUENCE', retriable: true }));
    expect(() => s.check(7, 0, 5, 10)).toThrow(expect.objectContaining({ code: 'DUPLICATE_SEQUENCE_NUMBER', retriable: false }));
  });

  it('tells behind from ahead across the wrap of the sequence', () => {
    const s = new ProducerStates();
    s.record(7, 0, 0x7fff_fff0, 0x20, 100); // ends at sequence 0x0f: next is 0x10
    expect(s.check(7, 0, 0x10, 1)).toEqual({ kind: 'append' });
    expect(() => s.check(7, 0, 0x7fff_ff00, 1)).toThrow(expect.objectContaining({ code: 'DUPLICATE_SEQUENCE_NUMBER' })); // before the wrap: behind
    expect(() => s.check(7, 0, 0x20, 1)).toThrow(expect.objectContaining({ code: 'OUT_OF_ORDER_SEQUENCE' })); // ahead
  });

  it('snapshots the state below an offset and restores it: duplicates, the next sequence and the recency order come back', () => {
    const s = new ProducerStates();
    for (let i = 0; i < RECENT_BATCHES + 3; i++) s.record(7, 0, i * 10, 10, 100 + i * 10); // the ring wrapped
    s.record(8, 2, 0, 5, 400);
    s.record(9, 0, 0, 1, 500); // at the cut: left out
    s.record(8, 2, 5, 5, 510); // at the cut: left out, 8 keeps its batch below
    const entries = s.snapshotBelow(500);
    expect(entries.map((e) => [e.producerId, e.epoch, e.lastSequence, e.batches.length])).toEqual([
      [7, 0, 189, RECENT_BATCHES],
      [8, 2, 4, 1],
    ]);
    const r = new ProducerStates();
    r.restore(entries);
    expect(r.check(7, 0, 180, 10)).toEqual({ kind: 'duplicate', baseOffset: 280 });
    expect(r.check(7, 0, 190, 10)).toEqual({ kind: 'append' });
    expect(r.check(8, 2, 0, 5)).toEqual({ kind: 'duplicate', baseOffset: 400 });
    expect(r.check(8, 2, 5, 5)).toEqual({ kind: 'append' }); // replayed next, from the log
    expect(r.check(9, 0, 3, 1)).toEqual({ kind: 'append' }); // unknown: its batch is replayed from the log
    expect(() => r.check(7, 0, 0, 10)).toThrow(expect.objectContaining({ code: 'DUPLICATE_SEQUENCE_NUMBER' }));
  });

  it('fences an older epoch and lets a newer one start again at 0 only', () => {
    const s = new ProducerStates();
    s.record(7, 2, 0, 1, 100);
    expect(() => s.check(7, 1, 1, 1)).toThrow(expect.objectContaining({ code: 'INVALID_PRODUCER_EPOCH' }));
    expect(() => s.check(7, 3, 1, 1)).toThrow(expect.objectContaining({ code: 'OUT_OF_ORDER_SEQUENCE' }));
    expect(s.check(7, 3, 0, 1)).toEqual({ kind: 'append' });
    s.record(7, 3, 0, 1, 101);
    expect(() => s.check(7, 2, 1, 1)).toThrow(expect.objectContaining({ code: 'INVALID_PRODUCER_EPOCH' }));
  });

  it(`remembers the last ${RECENT_BATCHES} batches only, at least a client's window`, () => {
    expect(RECENT_BATCHES).toBeGreaterThanOrEqual(IDEMPOTENT_BATCHES_PER_PARTITION);
    const s = new ProducerStates();
    for (let i = 0; i < RECENT_BATCHES + 1; i++) s.record(1, 0, i, 1, 1000 + i);
    expect(() => s.check(1, 0, 0, 1)).toThrow(expect.objectContaining({ code: 'DUPLICATE_SEQUENCE_NUMBER' }));
    expect(s.check(1, 0, 1, 1)).toEqual({ kind: 'duplicate', baseOffset: 1001 });
  });

  it('wraps sequences past 2^31 - 1 to 0, as Kafka', () => {
    expect(lastSequence(0x7fff_fffe, 3)).toBe(0);
    const s = new ProducerStates();
    s.record(1, 0, 0x7fff_fffe, 2, 10);
    expect(s.check(1, 0, 0, 1)).toEqual({ kind: 'append' });
  });
});
