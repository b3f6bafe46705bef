import { describe, expect, it } from 'vitest';
import { advance, MARK_SLOTS } from '../../bench/ws-worker.js';

describe("sluice bench's steady-state marks", () => {
  it('stamps the instant and the count at which the job crosses 10% and 90% of its records, once each, across threads sharing the counters', () => {
    const task = { progress: new Int32Array(new SharedArrayBuffer(4)), marks: new BigInt64Array(new SharedArrayBuffer(8 * MARK_SLOTS)), total: 1000 };
    advance(task, 60);
    expect(task.marks[0]).toBe(0n);
    advance(task, 60); // 120: crosses 100
    const t10 = task.marks[0];
    expect(t10).toBeGreaterThan(0n);
    expect(task.marks[1]).toBe(120n);
    for (let i = 0; i < 6; i++) advance(task, 100); // 720
    expect(task.marks[2]).toBe(0n);
    advance(task, 200); // 920: crosses 900
    expect(task.marks[2]).toBeGreaterThanOrEqual(t10);
    expect(task.marks[3]).toBe(920n);
    advance(task, 80);
    expect(task.marks[0]).toBe(t10); // never stamped again
    expect(task.marks[3]).toBe(920n);
    expect(Atomics.load(task.progress, 0)).toBe(1000);
  });

  it('a step that crosses both marks stamps both at once (a run too small to measure a steady rate: 0 records between them)', () => {
    const task = { progress: new Int32Array(new SharedArrayBuffer(4)), marks: new BigInt64Array(new SharedArrayBuffer(8 * MARK_SLOTS)), total: 100 };
    advance(task, 100);
    expect(task.marks[1]).toBe(100n);
    expect(task.marks[3]).toBe(100n);
  });
});
