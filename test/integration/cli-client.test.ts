/**
 * The client commands of `sluice` (topics, produce, consume) against a real `sluice
 * start` process: what scripts rely on (exact lines in order, keys to stable partitions,
 * exit codes 0/1/2, one-line errors, EPIPE, an unreachable broker).
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/dist.js';
import { freePort } from '../helpers/net.js';
import { CLI, lines, sluice, startBroker, throughHead, type Broker } from './cli-helpers.js';
import { RECONNECT_GIVE_UP_MS } from '../../src/cli/client-common.js';

let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let b: string[];

beforeAll(async () => {
  dir = tempDir('cli-client');
  broker = await startBroker({ dataDir: dir.path });
  b = ['--broker', broker.url];
});

afterAll(async () => {
  expect(await broker?.stop()).toBe(0);
  dir?.remove();
});



/**
 * Runs `consume` (`args`) for one record while producing `new N` lines into `topic` every
 * 200 ms until it has one (it may not be subscribed yet when the first goes out): it must
 * print one of those, and nothing that was there before.
 */
async function expectNextRecordReaches(args: string[], topic: string): Promise<void> {
  const waiting = sluice([...args, '--max-messages', '1', '--idle-timeout-ms', '20000', ...b]);
  let done = false;
  void waiting.then(() => (done = true));
  for (let i = 0; i < 60 && !done; i++) {
    await sluice(['produce', topic, ...b], { input: `new ${i}\n` });
    await new Promise((r) => setTimeout(r, 200));
  }
  const r = await waiting;
  expect(r.status).toBe(0);
  expect(lines(r.stdout)).toEqual([expect.stringMatching(/^new \d+$/)]);
}

async function create(topic: string, partitions: number): Promise<void> {
  const r = await sluice(['topics', 'create', topic, '--partitions', String(partitions), ...b]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}

async function describeJson(topic: string): Promise<{ topic: string; partitions: { highWatermark: number }[]; retentionMs: number; retentionBytes: number; segmentBytes: number }> {
  const r = await sluice(['topics', 'describe', topic, '--json', ...b]);
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout);
}

describe('sluice topics', () => {
  it('creates, lists, describes (table and JSON) and deletes topics', async () => {
    const created = await sluice(['topics', 'create', 'admin-a', '--partitions', '3', '--retention-ms', '60000', '--retention-bytes', '-1', '--segment-bytes', '1048576', ...b]);
    expect(created.status).toBe(0);
    expect(created.stdout).toMatch(/admin-a.*3 partitions/);
    await create('admin-b', 1);

    // SLUICE_BROKER stands in for --broker.
    const list = await sluice(['topics', 'list'], { env: { SLUICE_BROKER: broker.url } });
    expect(list.status).toBe(0);
    expect(lines(list.stdout)).toEqual(expect.arrayContaining(['admin-a', 'admin-b']));
    expect(lines(list.stdout)).toEqual([...lines(list.stdout)].sort());
    const listJson = await sluice(['topics', 'list', '--json', ...b]);
    expect(JSON.parse(listJson.stdout)).toEqual(lines(list.stdout));

    const table = await sluice(['topics', 'describe', 'admin-a', ...b]);
    expect(table.status).toBe(0);
    const rows = lines(table.stdout);
    expect(rows[0]).toMatch(/topic admin-a\s+partitions 3\s+retention\.ms 60000\s+retention\.bytes unlimited\s+segment\.bytes 1048576/);
    expect(rows[1].split(/\s+/)).toEqual(['PARTITION', 'OWNER', 'LOG-START', 'LOG-END', 'HIGH-WATERMARK', 'DURABLE', 'SIZE-BYTES']);
    expect(rows.slice(2).map((r) => r.split(/\s+/)[0])).toEqual(['0', '1', '2']);
    const json = await describeJson('admin-a');
    expect(json).toMatchObject({ topic: 'admin-a', retentionMs: 60000, retentionBytes: -1, segmentBytes: 1048576 });
    expect(json.partitions).toHaveLength(3);

    const again = await sluice(['topics', 'create', 'admin-a', ...b]);
    expect(again.status).toBe(1);
    expect(lines(again.stderr)).toEqual([expect.stringMatching(/^sluice: TOPIC_ALREADY_EXISTS: /)]);

    const deleted = await sluice(['topics', 'delete', 'admin-a', ...b]);
    expect(deleted.status).toBe(0);
    const after = await sluice(['topics', 'list', ...b]);
    expect(lines(after.stdout)).not.toContain('admin-a');
    const gone = await sluice(['topics', 'describe', 'admin-a', ...b]);
    expect(gone.status).toBe(1);
    expect(lines(gone.stderr)).toEqual([expect.stringMatching(/^sluice: UNKNOWN_TOPIC_OR_PARTITION: /)]);
  });
});

describe('sluice produce and consume', () => {
  it('reads back exactly the lines produced with keys, in order per partition, each key always in one partition', async () => {
    await create('keyed', 4);
    const input = Array.from({ length: 300 }, (_, i) => `user-${i % 11}:value ${i}`);
    const produced = await sluice(['produce', 'keyed', '--key-separator', ':', ...b], { input: `${input.join('\n')}\n` });
    expect(produced.status).toBe(0);
    expect(produced.stderr).toMatch(/^sluice produce: 300 records, \d+ bytes in [\d.]+ s \(\d+ records\/s, acks all\)\n$/);

    const all = await sluice(['consume', 'keyed', '--from-beginning', '--max-messages', '300', '--print-key', '--key-separator', ':', ...b]);
    expect(all.status).toBe(0);
    expect(lines(all.stdout).sort()).toEqual([...input].sort());

    const json = await describeJson('keyed');
    const partitionOfKey = new Map<string, number>();
    let total = 0;
    for (let p = 0; p < 4; p++) {
      const r = await sluice(['consume', 'keyed', '--partition', String(p), '--from-beginning', '--idle-timeout-ms', '1000', '--print-key', '--key-separator', ':', ...b]);
      expect(r.status).toBe(0);
      const got = lines(r.stdout);
      expect(got).toHaveLength(json.partitions[p].highWatermark);
      total += got.length;
      for (const line of got) {
        const key = line.slice(0, line.indexOf(':'));
        expect(partitionOfKey.get(key) ?? p).toBe(p);
        partitionOfKey.set(key, p);
      }
      // In order: the partition's lines are the input's lines of its keys, in input order.
      expect(got).toEqual(input.filter((l) => partitionOfKey.get(l.slice(0, l.indexOf(':'))) === p));
    }
    expect(total).toBe(300);
    expect(partitionOfKey.size).toBe(11);
    // Without --print-key only the values.
    const values = await sluice(['consume', 'keyed', '--from-beginning', '--max-messages', '300', ...b]);
    expect(lines(values.stdout).sort()).toEqual(input.map((l) => l.slice(l.indexOf(':') + 1)).sort());
  });

  it('sends every record to --partition and reads from --partition --offset', async () => {
    await create('pinned', 3);
    const input = Array.from({ length: 20 }, (_, i) => `line ${i}`);
    const produced = await sluice(['produce', 'pinned', '--partition', '2', ...b], { input: `${input.join('\n')}\n` });
    expect(produced.status).toBe(0);
    expect((await describeJson('pinned')).partitions.map((p) => p.highWatermark)).toEqual([0, 0, 20]);
    const r = await sluice(['consume', 'pinned', '--partition', '2', '--offset', '5', '--max-messages', '15', ...b]);
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toEqual(input.slice(5));
    const outOfRange = await sluice(['produce', 'pinned', '--partition', '3', ...b], { input: 'x\n' });
    expect(outOfRange.status).toBe(1);
    expect(lines(outOfRange.stderr)).toEqual([expect.stringMatching(/^sluice: UNKNOWN_TOPIC_OR_PARTITION: .*no partition 3/)]);
  });

  it('starts an --offset out of range at the latest offset, as Kafka\'s console consumer: past the end it replays nothing', async () => {
    await create('ranged', 1);
    await sluice(['produce', 'ranged', ...b], { input: 'old 1\nold 2\nold 3\n' });
    const past = await sluice(['consume', 'ranged', '--partition', '0', '--offset', '7', '--idle-timeout-ms', '500', ...b]);
    expect(past.status).toBe(0);
    expect(past.stdout).toBe('');
    // Waiting at the end, it prints the next record.
    await expectNextRecordReaches(['consume', 'ranged', '--partition', '0', '--offset', '7'], 'ranged');
  });

  it('produces with --acks 0, 1 and all and reads every line back in order', async () => {
    await create('acks', 1);
    const expected: string[] = [];
    for (const acks of ['0', '1', 'all']) {
      const input = Array.from({ length: 100 }, (_, i) => `acks ${acks} record ${i}`);
      expected.push(...input);
      const r = await sluice(['produce', 'acks', '--acks', acks, ...b], { input: `${input.join('\n')}\n` });
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`^sluice produce: 100 records, .*acks ${acks}\\)\\n$`));
    }
    const r = await sluice(['consume', 'acks', '--from-beginning', '--max-messages', '300', ...b]);
    expect(lines(r.stdout)).toEqual(expected);
  });

  it('starts at the latest offset without --from-beginning and ends after --idle-timeout-ms', async () => {
    await create('latest', 1);
    await sluice(['produce', 'latest', ...b], { input: 'old 1\nold 2\n' });
    const quiet = await sluice(['consume', 'latest', '--idle-timeout-ms', '500', ...b]);
    expect(quiet.status).toBe(0);
    expect(quiet.stdout).toBe('');

    // A consumer waiting at the end sees the next record.
    await expectNextRecordReaches(['consume', 'latest'], 'latest');
  });

  it('exits 0 quietly when the reader of stdout goes away (| head -1)', async () => {
    await create('piped', 1);
    const input = Array.from({ length: 20_000 }, (_, i) => `a line long enough to fill a pipe buffer quickly ${i}`);
    expect((await sluice(['produce', 'piped', ...b], { input: `${input.join('\n')}\n` })).status).toBe(0);
    const startedMs = performance.now();
    const { stdout, stderr } = await throughHead(['consume', 'piped', '--from-beginning', '--idle-timeout-ms', '20000', ...b], 1);
    expect(stdout).toBe(`${input[0]}\n`);
    expect(stderr).toBe('status 0\n');
    // It ended at the broken pipe, not at the idle timeout.
    expect(performance.now() - startedMs).toBeLessThan(15_000);
  });
});

describe('sluice client command errors', () => {
  it('exits 2 on usage errors, 0 on --help', async () => {
    for (const args of [
      ['produce'],
      ['produce', 't', '--acks', '2'],
      ['produce', 't', '--partition', '-1'],
      ['consume', 't', '--max-messages', '0'],
      ['consume', 't', '--offset', '3'],
      ['consume', 't', '--partition', '0', '--offset', '3', '--from-beginning'],
      ['consume', 't', '--no-such-flag'],
      ['topics', 'create'],
      ['topics', 'create', 't', '--partitions', 'many'],
      ['topics', 'nope'],
    ]) {
      const r = await sluice([...args, ...b]);
      expect({ args, status: r.status }).toEqual({ args, status: 2 });
      expect(r.stderr).not.toBe('');
    }
    for (const url of ['not a url', 'ws://127.0.0.1:99999', 'http://127.0.0.1:7070']) {
      const r = await sluice(['topics', 'list', '--broker', url]);
      expect({ url, status: r.status }).toEqual({ url, status: 2 });
      expect(lines(r.stderr)).toEqual([expect.stringMatching(new RegExp(`^sluice: usage: --broker ${url.replace(/[.]/g, '\\.')}: expected a`))]);
    }
    const fromEnv = await sluice(['topics', 'list'], { env: { SLUICE_BROKER: 'http://127.0.0.1:7070' } });
    expect(fromEnv.status).toBe(1);
    expect(lines(fromEnv.stderr)).toEqual(['sluice: INVALID_ARGUMENT: SLUICE_BROKER=http://127.0.0.1:7070: expected a ws:// or wss:// URL such as ws://127.0.0.1:7070']);
    for (const args of [['topics', 'create', '--help'], ['produce', '--help'], ['consume', '--help'], ['topics', '--help']]) {
      const r = await sluice(args);
      expect({ args, status: r.status }).toEqual({ args, status: 0 });
      expect(r.stdout).toMatch(/Usage: sluice/);
    }
  });

  it('exits 1 with one line for an unknown topic, also in a group', async () => {
    for (const args of [['produce', 'missing'], ['consume', 'missing', '--from-beginning'], ['consume', 'missing', '--group', 'g'], ['topics', 'describe', 'missing'], ['topics', 'delete', 'missing']]) {
      const r = await sluice([...args, ...b], { input: 'x\n' });
      expect({ args, status: r.status }).toEqual({ args, status: 1 });
      expect(lines(r.stderr)).toEqual([expect.stringMatching(/^sluice: UNKNOWN_TOPIC_OR_PARTITION: .*missing/)]);
    }
  });

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('on %s, produce stops reading, flushes what it sent, prints its summary and exits %i', async (signal, code) => {
    expect((await sluice(['topics', 'create', `interrupted-${signal}`, '--partitions', '1', ...b])).status).toBe(0);
    const child = spawn(process.execPath, [CLI, 'produce', `interrupted-${signal}`, ...b], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 50; i++) child.stdin.write(`line-${i}\n`);
    // stdin stays open, as at a terminal; wait until the broker has the lines, then interrupt.
    const deadline = Date.now() + 10_000;
    let stored = 0;
    while (stored < 50 && Date.now() < deadline) {
      const d = await sluice(['topics', 'describe', `interrupted-${signal}`, '--json', ...b]);
      stored = JSON.parse(d.stdout).partitions[0].logEndOffset;
      if (stored < 50) await new Promise((r) => setTimeout(r, 50));
    }
    expect(stored).toBe(50);
    child.kill(signal);
    expect(await exited).toBe(code);
    expect(stderr).toMatch(/^sluice produce: 50 records, /m);
    child.stdin.destroy();
  });

  it('exits 1 with one line within a few seconds when the broker is unreachable', async () => {
    const url = `ws://127.0.0.1:${await freePort()}`;
    for (const args of [['topics', 'list'], ['produce', 't'], ['consume', 't']]) {
      const r = await sluice([...args, '--broker', url], { input: 'x\n' });
      expect({ args, status: r.status }).toEqual({ args, status: 1 });
      expect(lines(r.stderr)).toEqual([`sluice: CONNECTION_LOST: cannot reach the broker at ${url} (connect ECONNREFUSED ${url.slice(5)})`]);
      expect(r.elapsedMs).toBeLessThan(5_000);
    }
  });
});

describe('sluice produce when the broker is lost for good', () => {
  it('gives up after RECONNECT_GIVE_UP_MS with the summary of what was acknowledged, then the error line (exit 1)', async () => {
    const own = tempDir('cli-produce-lost');
    const lost = await startBroker({ dataDir: own.path });
    try {
      const url = lost.url;
      expect((await sluice(['topics', 'create', 'gone-broker', '--broker', url])).status).toBe(0);
      const child = spawn(process.execPath, [CLI, 'produce', 'gone-broker', '--broker', url], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.stdin.write('one\ntwo\nthree\n'); // stdin stays open: the command waits for more
      let hwm = 0;
      for (const until = Date.now() + 10_000; hwm < 3 && Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 100));
        const d = await sluice(['topics', 'describe', 'gone-broker', '--json', '--broker', url]);
        hwm = (JSON.parse(d.stdout) as { partitions: { highWatermark: number }[] }).partitions.reduce((n, p) => n + p.highWatermark, 0);
      }
      expect(hwm).toBe(3);
      lost.child.kill('SIGKILL');
      const startedMs = Date.now();
      expect(await exited).toBe(1);
      expect(Date.now() - startedMs).toBeGreaterThan(RECONNECT_GIVE_UP_MS - 1_000);
      expect(lines(stderr)).toEqual([
        expect.stringMatching(/^sluice produce: 3 records, 11 bytes in [\d.]+ s \(\d+ records\/s, acks all\)$/),
        `sluice: CONNECTION_LOST: lost the broker at ${url} and could not reconnect within ${RECONNECT_GIVE_UP_MS / 1000} s`,
      ]);
      child.stdin.destroy();
    } finally {
      await lost.stop();
      own.remove();
    }
  }, 40_000);
});

