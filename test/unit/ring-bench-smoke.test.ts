// Benchmarks cannot rot (house style 27): the compiled ring benchmark runs here in smoke
// mode (build first: `npm test` does) and must produce positive figures.
import { describe, expect, it } from 'vitest';

describe('ring benchmark smoke run', () => {
  it('measures positive frame rates, bandwidths and ratios in under a few seconds', async () => {
    const { runRingBench, formatRingBench } = await import('../../dist/bench/ring.bench.js');
    const startedMs = performance.now();
    const result = await runRingBench({ smoke: true });
    expect(performance.now() - startedMs).toBeLessThan(10_000); // about 1 s alone; slack for a busy machine
    for (const figure of [
      result.smallFramesPerSec,
      result.smallFramesPerSecBatched,
      result.largeFramesGBps,
      result.largeFramesCopyInGBps,
      result.crossCoreCopyGBps,
      result.copyGBps,
      result.copyFromRingSizedAreaGBps,
      result.largeToCopyRatio,
    ]) {
      expect(Number.isFinite(figure) && figure > 0).toBe(true);
    }
    expect(result.env.smoke).toBe(true);
    expect(formatRingBench(result)).toContain('64 B frames');
  });
});
