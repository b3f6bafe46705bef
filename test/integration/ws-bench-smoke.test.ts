import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Benchmarks must not rot: `sluice bench --smoke` runs here end to end (its own broker,
// producer and consumer processes, the loopback limit), and its table and JSON are checked.
describe('sluice bench (smoke)', () => {
  it('measures loopback, produce, consume and latency with positive figures and writes the JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-wsbench-test-'));
    const jsonFile = join(dir, 'result.json');
    try {
      const cli = fileURLToPath(new URL('../../dist/bench/ws-cli.js', import.meta.url));
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, [cli, '--smoke', '--json', jsonFile], { timeout: 60_000, maxBuffer: 1 << 20 }, (err, out, errOut) => {
          if (err) reject(new Error(`${err.message}\n${errOut}`));
          else resolve(out);
        });
      });
      expect(stdout).toContain('| produce acks=all |');
      expect(stdout).toContain('| consume backlog |');
      const r = JSON.parse(readFileSync(jsonFile, 'utf8'));
      expect(Object.keys(r).sort()).toEqual(['brokerRssPeakMB', 'consume', 'env', 'floor', 'latency', 'loadRssPeakMB', 'loopback', 'produceAcks1', 'produceAcksAll', 'settings'].sort());
      expect(r.settings).toMatchObject({ recordBytes: 100, runs: 1, latencyAcks: 'all' });
      expect(stdout).toContain('lingerMs 0, acks=all;');
      expect(r.loopback.upMBps).toBeGreaterThan(0);
      expect(r.loopback.downMBps).toBeGreaterThan(0);
      expect(r.loopback.echoRuns).toHaveLength(1);
      expect(r.loopback.echo.p50Us).toBeGreaterThan(0);
      expect(r.loopback.echo.p50Us).toBeLessThanOrEqual(r.loopback.echo.p999Us);
      // The bare path's latency (ws-floor.ts), and the measured latency's ratio to it.
      expect(r.floor.runs).toHaveLength(1);
      expect(r.floor.p50Us).toBeGreaterThan(0);
      expect(r.floor.p50Us).toBeLessThanOrEqual(r.floor.p999Us);
      expect(stdout).toContain('| the bare path');
      for (const f of [r.produceAcksAll, r.produceAcks1, r.consume]) {
        expect(f.recordsPerSec).toBeGreaterThan(0);
        expect(f.mbPerSec).toBeGreaterThan(0);
        expect(f.loopbackRatio).toBeGreaterThan(0);
        expect(f.runs).toHaveLength(1);
        // A smoke run may cross 10% and 90% in one step (then 0: not measured); unit-tested below.
        expect(f.steadyRuns).toHaveLength(1);
        expect(f.steadyRecordsPerSec).toBeGreaterThanOrEqual(0);
      }
      expect(r.produceAcksAll.targetRatio).toBeGreaterThan(0);
      expect(r.consume.targetRatio).toBeGreaterThan(0);
      expect(r.latency.count).toBe(r.settings.latencyRecords);
      for (const k of ['p50Us', 'p99Us', 'p999Us', 'maxUs']) expect(r.latency[k]).toBeGreaterThan(0);
      expect(r.latency.p50Us).toBeLessThanOrEqual(r.latency.p999Us);
      expect(r.latency.floorRatio.p50).toBeCloseTo(r.latency.p50Us / r.floor.p50Us, 6);
      // One run: the paired ratio is that run's measured over its own bare path.
      expect(r.latency.pairedFloorRatio.p99).toBeCloseTo(r.latency.runs[0].p99Us / r.floor.runs[0].p99Us, 6);
      expect(stdout).toContain('| measured / the bare path run just before it');
      // The host's steal beside each latency and bare-path run (Linux; null elsewhere).
      for (const run of [r.latency.runs[0], r.floor.runs[0]]) {
        if (process.platform === 'linux') expect(run.stealShare).toBeGreaterThanOrEqual(0);
        if (process.platform === 'linux') expect(run.stealShare).toBeLessThanOrEqual(1);
      }
      expect(stdout).toContain('host steal');
      expect(r.brokerRssPeakMB).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
