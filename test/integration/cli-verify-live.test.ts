/**
 * `sluice verify` beside a running broker under load: the broker writes the active
 * segments and their indexes while verify reads them, so one read may catch a batch half
 * written or index entries for batches written after the log was read. Verify must not call
 * that corruption, and must still report real corruption in an active segment.
 */
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { loadClient, tempDir } from '../helpers/dist.js';
import { dataDirWithOneRecord, sluice, startBroker } from './cli-helpers.js';

/** Bounds of the load loop: whichever comes first. */
const LOAD_RECORDS_MAX = 3_000_000;
const LOAD_MS_MAX = 60_000;
/** Records sent together (awaited as one group), so the broker writes many batches a second. */
const SEND_GROUP = 500;

describe('sluice verify beside a running broker', () => {
  it('reports a log under load as ok (tails being written are not corruption), and still finds a flipped byte in an active segment', async () => {
    const dir = tempDir('verify-live');
    const broker = await startBroker({ dataDir: dir.path });
    const C = await loadClient();
    const client = await C.connect({ url: broker.url, clientId: 'verify-live', WebSocket: WebSocket as never });
    let stop = false;
    let sent = 0;
    const startedMs = Date.now();
    try {
      await client.createTopic('live', { partitions: 2 });
      const producer = client.producer({ acks: 'all', lingerMs: 2 });
      const value = new Uint8Array(100).fill(7);
      const load = (async () => {
        while (!stop && sent < LOAD_RECORDS_MAX && Date.now() - startedMs < LOAD_MS_MAX) {
          const group: Promise<unknown>[] = [];
          for (let i = 0; i < SEND_GROUP; i++) group.push(producer.send({ topic: 'live', key: `k${(sent + i) % 64}`, value }));
          await Promise.all(group);
          sent += SEND_GROUP;
        }
      })();
      while (sent < 20_000) await new Promise((r) => setTimeout(r, 20));

      for (let run = 0; run < 3; run++) {
        const before = sent;
        const r = await sluice(['verify', '--data-dir', dir.path]);
        expect(r.stdout + r.stderr, 'a live verify').toMatch(/^ok: 2 partitions, \d+ batches/m);
        expect(r.status).toBe(0);
        expect(r.stderr).toContain(`a running broker (pid ${broker.child.pid})`);
        expect(sent, 'the load went on during the verify').toBeGreaterThan(before);
      }

      // Flip a byte inside the first batch of partition 0's active segment while the broker runs.
      const file = join(dir.path, 'live-0', '00000000000000000000.log');
      const fd = openSync(file, 'r+');
      try {
        const byte = Buffer.alloc(1);
        readSync(fd, byte, 0, 1, 80);
        byte[0] ^= 0x10;
        writeSync(fd, byte, 0, 1, 80);
      } finally {
        closeSync(fd);
      }
      const bad = await sluice(['verify', '--data-dir', dir.path]);
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(/^CORRUPT live-0\/00000000000000000000\.log position 0 offset 0: .*CRC/m);
      expect(bad.stdout).toMatch(/^CORRUPT: 2 partitions/m);
      stop = true;
      await load;
    } finally {
      stop = true;
      await client.close();
      await broker.stop();
      dir.remove();
    }
  }, 90_000);

  it('prints index problems of a stopped broker\'s data dir as INDEX lines, without the running-broker note', async () => {
    const dir = tempDir('verify-index');
    try {
      await dataDirWithOneRecord(dir.path);
      unlinkSync(join(dir.path, 't-0', '00000000000000000000.timeindex'));
      const r = await sluice(['verify', '--data-dir', dir.path]);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe(
        `INDEX t-0/00000000000000000000.timeindex: missing (rebuilt when the broker next opens the partition)\nCORRUPT: 1 partitions, 1 batches, ${r.stdout.match(/(\d+) bytes/)![1]} bytes verified in ${dir.path}\n`,
      );
      expect(r.stderr).toBe('');
    } finally {
      dir.remove();
    }
  });
});
