import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The consumer-group benchmark must not rot: `groups.bench.js --smoke` runs end to end (its
// own broker, 10 rebalance members, consumer processes, commits) and its table is checked.
describe('groups bench (smoke)', () => {
  it('measures rebalance times, group and single consume throughput and commits/s', async () => {
    const bench = fileURLToPath(new URL('../../dist/bench/groups.bench.js', import.meta.url));
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [bench, '--smoke'], { timeout: 90_000, maxBuffer: 1 << 20 }, (err, out, errOut) => {
        if (err) reject(new Error(`${err.message}\n${errOut}`));
        else resolve(out);
      });
    });
    const row = (name: string): string[] => {
      const line = stdout.split('\n').find((l) => l.startsWith(`| ${name}`));
      expect(line, name).toBeDefined();
      return line!.split('|').map((c) => c.trim());
    };
    const number = (cell: string) => Number(cell.replace(/[^0-9.]/g, ''));
    for (const name of ['rebalance, clean leave', 'rebalance, member dies', 'consume, 1 plain consumer, steady', 'consume, group of 4, steady', 'consume, group of 4, start to end', 'commits/s, 1 in flight', 'commits/s, 32 in flight']) {
      expect(number(row(name)[2]), name).toBeGreaterThan(0);
    }
    expect(row('consume, group of 4, steady')[4]).toMatch(/ratio to 1 consumer: \d+\.\d\d/);
  }, 120_000);
});
