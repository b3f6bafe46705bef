/**
 * `sluice start` as a process: it serves WebSocket and HTTP on the port it was given, logs
 * one start line, and on SIGTERM stops cleanly (exit 0, clean-shutdown markers); a
 * restart finds the data.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.js';
import { describe, expect, it } from 'vitest';
import { as, F, RawClient } from '../fixtures/gateway-client.js';
import { loadSluice, tempDir } from '../helpers/dist.js';

const S = await loadSluice();
const CLI = join(fileURLToPath(new URL('../../', import.meta.url)), 'dist/src/cli/main.js');



function startProcess(dataDir: string, port: number, extra: string[] = [], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [CLI, 'start', '--data-dir', dataDir, '--workers', '1', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_PORT: String(port), ...env },
  });
  let seen = '';
  const started = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start line: ${seen}`)), 15_000);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split('\n').find((l) => l.includes('"msg":"sluice started"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, started, exited, output: () => seen };
}

describe('sluice start', () => {
  it('serves the gateway, stops cleanly on SIGTERM, and keeps the data across a restart', async () => {
    const dir = tempDir('gateway-cli');
    try {
      const port = await freePort();
      const first = startProcess(dir.path, port);
      const line = await first.started;
      expect(line).toMatchObject({ port, host: '127.0.0.1', dataDir: dir.path, owners: 1 });
      expect(['native', 'js']).toContain(line.crc32c);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const c = await RawClient.connect(port);
      as(await c.request((id) => F.encodeCreateTopic({ correlationId: id, topic: 'kept', partitions: 1, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 })), Op.CREATE_TOPIC_OK);
      for (let i = 0; i < 5; i++) {
        const batch = S.encodeBatch([{ value: S.utf8(`v${i}`) }]);
        as(await c.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition: 0, acks: -1, topic: 'kept', batch })), Op.PRODUCE_OK);
      }
      first.child.kill('SIGTERM');
      expect((await c.closed).code).toBe(1001);
      expect(await first.exited).toBe(0);
      expect(existsSync(join(dir.path, 'kept-0', '.clean-shutdown'))).toBe(true);

      const second = startProcess(dir.path, port);
      await second.started;
      const c2 = await RawClient.connect(port);
      const got = as(await c2.request((id) => F.encodeFetch({ correlationId: id, topic: 'kept', partition: 0, offset: 0, maxBytes: 1 << 20, minBytes: 0, maxWaitMs: 0 })), Op.FETCH_OK);
      expect(got.highWatermark).toBe(5);
      const values: string[] = [];
      S.forEachBatch(got.records, (b) => values.push(...S.decodeBatch(b).records.map((r) => Buffer.from(r.value!).toString())));
      expect(values).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
      second.child.kill('SIGINT');
      expect(await second.exited).toBe(0);
    } finally {
      dir.remove();
    }
  }, 40_000);

  it('a second broker on a port in use exits 1 with a one-line error, and the first keeps serving', async () => {
    const a = tempDir('gateway-cli-port-a');
    const b = tempDir('gateway-cli-port-b');
    const started: ReturnType<typeof startProcess>[] = [];
    try {
      const port = await freePort();
      const first = startProcess(a.path, port);
      started.push(first);
      await first.started;
      const second = startProcess(b.path, port);
      started.push(second);
      const outcome = await Promise.race([second.exited.then((code) => ({ code })), second.started.then(() => ({ started: true }))]);
      expect(outcome).toEqual({ code: 1 });
      expect(second.output()).toMatch(new RegExp(`sluice: INVALID_ARGUMENT: cannot listen on 127\\.0\\.0\\.1:${port} \\(in use`));
      expect(second.output()).not.toContain('"msg":"sluice started"');
      // Every new connection still reaches the first broker (uSockets' default, SO_REUSEPORT, would share them).
      for (let i = 0; i < 8; i++) {
        const c = await RawClient.connect(port);
        as(await c.request((id) => F.encodeCreateTopic({ correlationId: id, topic: `t${i}`, partitions: 1, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 })), Op.CREATE_TOPIC_OK);
        c.close();
      }
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { topics: number };
      expect(health.topics).toBe(8);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);
    } finally {
      for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
      a.remove();
      b.remove();
    }
  }, 40_000);

  it('--flush-interval-ms syncs acks=1 data on a timer; a bad value is a usage error (exit 2) or, from the environment, an error (exit 1)', async () => {
    const dir = tempDir('gateway-cli-flush');
    try {
      const port = await freePort();
      const bad = startProcess(dir.path, port, ['--flush-interval-ms', '0']);
      expect(await bad.exited).toBe(2);
      const badEnv = startProcess(dir.path, port, [], { SLUICE_FLUSH_INTERVAL_MS: 'soon' });
      expect(await badEnv.exited).toBe(1);

      const p = startProcess(dir.path, port, ['--flush-interval-ms', '100']);
      await p.started;
      const c = await RawClient.connect(port);
      as(await c.request((id) => F.encodeCreateTopic({ correlationId: id, topic: 'flushed', partitions: 1, retentionMs: 0, retentionBytes: 0, segmentMs: 0, segmentBytes: 0 })), Op.CREATE_TOPIC_OK);
      const batch = S.encodeBatch([{ value: S.utf8('v') }, { value: S.utf8('w') }]);
      as(await c.request((id) => F.encodeProduce({ correlationId: id, producerId: -1, partition: 0, acks: 1, topic: 'flushed', batch })), Op.PRODUCE_OK);
      let durable = -1;
      for (const until = Date.now() + 5_000; durable !== 2 && Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 50));
        const d = (await (await fetch(`http://127.0.0.1:${port}/topics/flushed`)).json()) as { partitions: { durableOffset: number }[] };
        durable = d.partitions[0].durableOffset;
      }
      expect(durable).toBe(2);
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    } finally {
      dir.remove();
    }
  }, 40_000);
});

const Op = F.Op;
