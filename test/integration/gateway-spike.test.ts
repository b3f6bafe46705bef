import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/dist.js';
import { startBroker } from './cli-helpers.js';

/** Resident set of another process, from /proc (Linux). */
function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const SPIKE_MS = 4_000;
const RSS_LIMIT_BYTES = 300 * 1024 * 1024;

describe('producer spike against a real broker process', () => {
  it('keeps the broker resident memory bounded and serving while producers push as fast as they can', async () => {
    const client = (await import(new URL('../../dist/src/client/index.js', import.meta.url).href)) as typeof import('../../src/client/index.js');
    const dir = tempDir('spike');
    const broker = await startBroker({ dataDir: dir.path });
    try {
      const admin = await client.connect({ url: broker.url });
      await admin.createTopic('spike', { partitions: 4 });
      const rssStart = rssBytes(broker.child.pid!);
      let rssMax = rssStart;
      const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssBytes(broker.child.pid!))), 25);
      // Three connections, each with a deep window of 64 KiB batches of 100-byte records
      // sent as fast as the client can, acks=1: more than the owner can take, so the
      // broker has to push back (THROTTLED) instead of buffering.
      const producers = await Promise.all(
        [0, 1, 2].map(async () => {
          const c = await client.connect({ url: broker.url });
          return { c, p: c.producer({ acks: 1, lingerMs: 2, batchBytes: 64 * 1024, bufferBytesMax: 64 * 1024 * 1024 }) };
        }),
      );
      const value = new Uint8Array(100).fill(7);
      const deadline = Date.now() + SPIKE_MS;
      let sent = 0;
      let failed = 0;
      const loops = producers.map(async ({ p }) => {
        while (Date.now() < deadline) {
          const burst: Promise<unknown>[] = [];
          for (let i = 0; i < 2_000; i++) burst.push(p.send({ topic: 'spike', value }).catch(() => void failed++));
          sent += burst.length;
          await Promise.all(burst);
        }
      });
      // Meanwhile the broker answers health checks and fetches promptly.
      const probes: number[] = [];
      const prober = (async () => {
        while (Date.now() < deadline) {
          const t0 = Date.now();
          const res = await fetch(`http://127.0.0.1:${broker.port}/healthz`);
          expect(res.status).toBe(200);
          await admin.listOffsets('spike', 0, 'latest');
          probes.push(Date.now() - t0);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      await Promise.all([...loops, prober]);
      for (const { p, c } of producers) {
        await p.flush();
        await c.close();
      }
      clearInterval(sampler);
      const latest = await Promise.all([0, 1, 2, 3].map((p) => admin.listOffsets('spike', p, 'latest')));
      const stored = latest.reduce((a, b) => a + b, 0);
      console.log(
        `spike: ${sent} records sent, ${stored} stored, ${failed} failed; broker RSS ${(rssStart / 1e6).toFixed(0)} -> max ${(rssMax / 1e6).toFixed(0)} MB; probe p100 ${Math.max(...probes)} ms`,
      );
      expect(failed).toBe(0); // THROTTLED is retried by the client, never lost
      expect(stored).toBe(sent);
      expect(rssMax).toBeLessThan(RSS_LIMIT_BYTES);
      expect(probes.length).toBeGreaterThan(5);
      expect(Math.max(...probes)).toBeLessThan(2_000);
      await admin.close();
    } finally {
      expect(await broker.stop()).toBe(0);
      dir.remove();
    }
  }, 60_000);
});
