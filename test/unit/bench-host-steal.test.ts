/**
 * The host's steal time that `sluice bench` reports beside its latency runs
 * (bench/host-steal.ts): /proc/stat's cpu line parsed, and the share between two readings.
 */
import { describe, expect, it } from 'vitest';
import { parseCpuTimes, readCpuTimes, stealShare } from '../../bench/host-steal.js';

describe('host steal', () => {
  it("reads the cpu line's steal and its total of the first eight fields", () => {
    const stat = 'cpu  100 5 50 800 10 1 2 30 7 0\ncpu0 50 2 25 400 5 0 1 15 3 0\n';
    expect(parseCpuTimes(stat)).toEqual({ steal: 30, total: 100 + 5 + 50 + 800 + 10 + 1 + 2 + 30 });
  });

  it('gives null for text that is not /proc/stat', () => {
    expect(parseCpuTimes('')).toBeNull();
    expect(parseCpuTimes('cpu 1 2 3')).toBeNull();
    expect(parseCpuTimes('intr 1 2 3 4 5 6 7 8 9')).toBeNull();
    expect(parseCpuTimes('cpu 1 2 3 x 5 6 7 8')).toBeNull();
  });

  it('is the stolen share of the ticks between two readings', () => {
    expect(stealShare({ steal: 30, total: 1000 }, { steal: 80, total: 1500 })).toBeCloseTo(0.1, 10);
    expect(stealShare({ steal: 30, total: 1000 }, { steal: 30, total: 1000 })).toBeNull(); // no time passed
    expect(stealShare(null, { steal: 1, total: 2 })).toBeNull();
  });

  it('reads this machine (Linux)', () => {
    const t = readCpuTimes();
    if (process.platform !== 'linux') return expect(t).toBeNull();
    expect(t).not.toBeNull();
    expect(t!.total).toBeGreaterThan(0);
    expect(t!.steal).toBeGreaterThanOrEqual(0);
    expect(t!.steal).toBeLessThanOrEqual(t!.total);
  });
});
