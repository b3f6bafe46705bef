import { describe, expect, it } from 'vitest';

// Benchmarks must not rot: the engine benchmark runs here in a tiny smoke mode.
describe('engine benchmark (smoke)', () => {
  it('measures the disk limits, produce, read-back and memory, with positive figures', async () => {
    const bench = (await import(new URL('../../dist/bench/engine.bench.js', import.meta.url).href)) as typeof import('../../bench/engine.bench.js');
    const result = await bench.runEngineBench({ smoke: true, runs: 1, bytesPerRun: 4 * 1024 * 1024, memoryBytes: 8 * 1024 * 1024 });
    expect(result.limits.bufferedWriteMBps).toBeGreaterThan(0);
    expect(result.limits.fdatasync1MiBMBps).toBeGreaterThan(0);
    expect(result.rows.map((r) => r.name)).toEqual([
      'produce acks=1 1p',
      'read back 1p',
      'produce acks=1 4p',
      'read back 4p',
      'produce acks=all 1p',
      'produce acks=all 4p',
    ]);
    for (const row of result.rows) expect(row.recordsPerSec).toBeGreaterThan(0);
    expect(result.memory.producedBytes).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect(result.memory.rssPeakMB).toBeGreaterThan(0);
    expect(bench.formatEngineBench(result)).toContain('| produce acks=all 4p |');
  }, 120_000);
});
