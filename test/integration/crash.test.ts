import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';
import { seededRandom as rng } from '../helpers/random.js';

const PRODUCER = new URL('../fixtures/crash-producer.mjs', import.meta.url);
const COMPACTOR = new URL('../fixtures/crash-compactor.mjs', import.meta.url);
const ROUNDS = 4;

interface Ack {
  partition: number;
  base: number;
  firstSeq: string;
  count: number;
}

function runUntilKilled(dataDir: string, run: number, killAfterMs: number, fixture = PRODUCER): Promise<{ acks: Ack[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture.pathname, dataDir, String(run), '15000'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
        const m = /^ack (?:(\d+) )?(\d+) (\S+) (\d+)$/.exec(line);
        if (m) acks.push({ partition: Number(m[1] ?? 0), base: Number(m[2]), firstSeq: m[3], count: Number(m[4]) });
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

/**
 * Reads the compacted topic `kv` after a kill: offsets increase, a record at an acknowledged
 * offset is the record acknowledged there, and each key's newest record is its newest
 * acknowledged one or a later write (stored but not acknowledged before the kill). Returns the
 * partition's segment count.
 */
async function checkCompacted(S: Awaited<ReturnType<typeof loadSluice>>, dataDir: string, acks: Ack[], seed: number, round: number): Promise<number> {
  const ackedAt = new Map<number, string>();
  const newestAcked = new Map<string, number>();
  for (const a of acks) {
    const [run, first] = a.firstSeq.split(':').map(Number);
    for (let k = 0; k < a.count; k++) {
      ackedAt.set(a.base + k, `${run}:${first + k}`);
      newestAcked.set(`k${(first + k) % 40}`, a.base + k);
    }
  }
  const engine = await S.Engine.open({ dataDir, workers: 2, logger: memoryLogger() });
  const newestRead = new Map<string, number>();
  let segments: number;
  try {
    const d = engine.describeTopic('kv').partitions[0];
    segments = d.segmentCount;
    let offset = d.logStartOffset;
    let last = -1;
    while (offset < d.highWatermark) {
      const res = await engine.fetch('kv', 0, offset);
      let next = offset;
      S.forEachBatch(res.records, (batch, h) => {
        for (const r of S.decodeBatch(batch).records) {
          if (r.offset < offset) continue;
          expect(r.offset, `seed ${seed} round ${round}: offsets increase`).toBeGreaterThan(last);
          last = r.offset;
          const id = Buffer.from(r.value!).toString().split(':').slice(0, 2).join(':');
          const acked = ackedAt.get(r.offset);
          if (acked !== undefined) expect(id, `seed ${seed} round ${round}: the record at ${r.offset}`).toBe(acked);
          newestRead.set(Buffer.from(r.key!).toString(), r.offset);
        }
        next = h.baseOffset + h.lastOffsetDelta + 1;
      });
      expect(next, `seed ${seed} round ${round}: reads move on`).toBeGreaterThan(offset);
      offset = next;
    }
  } finally {
    await engine.close();
  }
  for (const [key, offset] of newestAcked) {
    expect(newestRead.get(key) ?? -1, `seed ${seed} round ${round}: key ${key}'s acknowledged value at ${offset} is gone`).toBeGreaterThanOrEqual(offset);
  }
  const report = await S.verifyDataDir({ dataDir, threads: 2 });
  expect(report.ok, `seed ${seed} round ${round}: ${JSON.stringify(report.partitions.filter((p: any) => !p.report.ok))}`).toBe(true);
  const leftovers = readdirSync(join(dataDir, 'kv-0')).filter((n) => n.endsWith('.swap') || n.endsWith('.cleaned'));
  expect(leftovers, `seed ${seed} round ${round}: an open completes or removes a pass's files`).toEqual([]);
  return segments;
}

describe('kill -9 during compaction', () => {
  it('after each SIGKILL of a broker merging and compacting segments, every key keeps its newest acknowledged value and the log verifies', async () => {
    const S = await loadSluice();
    const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 1_000_000);
    const random = rng(seed);
    const dir = tempDir('crash-compact');
    const acks: Ack[] = [];
    try {
      for (let run = 0; run < ROUNDS; run++) {
        const killAfterMs = 300 + Math.floor(random() * 900);
        const result = await runUntilKilled(dir.path, run, killAfterMs, COMPACTOR);
        acks.push(...result.acks);
        expect(result.acks.length, `seed ${seed} run ${run}: nothing acknowledged; ${result.stderr}`).toBeGreaterThan(0);
        const segments = await checkCompacted(S, dir.path, acks, seed, run);
        // Segments rolled every 20 ms for about a second per run; merged, a handful remain.
        expect(segments, `seed ${seed} run ${run}`).toBeLessThan(20);
      }
    } finally {
      dir.remove();
    }
  }, 180_000);
});
