import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';
import { seededRandom as rng } from '../helpers/random.js';

const PRODUCER = new URL('../fixtures/crash-producer.mjs', import.meta.url);
const ROUNDS = 4;

interface Ack {
  partition: number;
  base: number;
  firstSeq: string;
  count: number;
}

function runUntilKilled(dataDir: string, run: number, killAfterMs: number): Promise<{ acks: Ack[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PRODUCER.pathname, dataDir, String(run), '15000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acks: Ack[] = [];
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line === 'ready') timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        const m = /^ack (\d+) (\d+) (\S+) (\d+)$/.exec(line);
        if (m) acks.push({ partition: Number(m[1]), base: Number(m[2]), firstSeq: m[3], count: Number(m[4]) });
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`producer exited with ${code} before it was killed: ${stderr}`));
      resolve({ acks, stderr });
    });
  });
}

/** Reads every partition of `crash` and checks acks: exactly once, contiguous, at the acknowledged offsets. */
async function checkAll(S: Awaited<ReturnType<typeof loadSluice>>, dataDir: string, acks: Ack[], seed: number, round: number): Promise<number> {
  const engine = await S.Engine.open({ dataDir, workers: 2, logger: memoryLogger() });
  const byOffset: Map<number, string>[] = [];
  let records = 0;
  try {
    for (let p = 0; p < 4; p++) {
      const seen = new Map<number, string>();
      const ids = new Set<string>();
      const d = engine.describeTopic('crash').partitions[p];
      let offset = d.logStartOffset;
      expect(offset).toBe(0);
      while (offset < d.highWatermark) {
        const res = await engine.fetch('crash', p, offset);
        S.forEachBatch(res.records, (batch) => {
          for (const r of S.decodeBatch(batch).records) {
            if (r.offset < offset) continue;
            expect(r.offset, `seed ${seed} round ${round}: offsets must be contiguous`).toBe(offset);
            const id = Buffer.from(r.value!).toString().split(':').slice(0, 2).join(':');
            expect(ids.has(id), `seed ${seed} round ${round}: record ${id} stored twice`).toBe(false);
            ids.add(id);
            seen.set(r.offset, id);
            offset++;
          }
        });
      }
      records += seen.size;
      byOffset.push(seen);
    }
  } finally {
    await engine.close();
  }
  for (const a of acks) {
    const [run, first] = a.firstSeq.split(':').map(Number);
    for (let k = 0; k < a.count; k++) {
      expect(byOffset[a.partition].get(a.base + k), `seed ${seed} round ${round}: acknowledged record lost`).toBe(`${run}:${first + k}`);
    }
  }
  const report = await S.verifyDataDir({ dataDir, threads: 2 });
  expect(report.ok, `seed ${seed} round ${round}: ${JSON.stringify(report.partitions.filter((p: any) => !p.report.ok))}`).toBe(true);
  return records;
}

describe('kill -9 durability', () => {
  it('after each SIGKILL every acknowledged record is there exactly once, offsets are contiguous and every CRC verifies', async () => {
    const S = await loadSluice();
    const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 1_000_000);
    const random = rng(seed);
    const dir = tempDir('crash');
    const acks: Ack[] = [];
    try {
      for (let run = 0; run < ROUNDS; run++) {
        const killAfterMs = 300 + Math.floor(random() * 900);
        const result = await runUntilKilled(dir.path, run, killAfterMs);
        acks.push(...result.acks);
        expect(result.acks.length, `seed ${seed} run ${run}: the producer acknowledged nothing`).toBeGreaterThan(0);
        // Reopen after this kill: recovery runs, then every acknowledgement so far must hold.
        const records = await checkAll(S, dir.path, acks, seed, run);
        expect(records).toBeGreaterThanOrEqual(acks.reduce((n, a) => n + a.count, 0));
      }
    } finally {
      dir.remove();
    }
  }, 180_000);
});
