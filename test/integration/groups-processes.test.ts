/**
 * Consumer groups across processes, as users run them: a `sluice start` broker process and
 * consumer processes (test/fixtures/group-consumer.mjs) in one group.
 * - three members over 12 partitions: every partition owned by exactly one member at every
 *   sampled moment; SIGKILL of one moves its partitions within the session timeout; no
 *   record lost; records seen twice only at or after the victim's last commit.
 * - committed offsets survive a broker SIGKILL; a member restarted in the group resumes
 *   exactly after the last commit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, DIST, loadClient, tempDir } from '../helpers/dist.js';
import { startBroker, type Broker } from './cli-helpers.js';

type Client = typeof import('../../src/client/index.js');
let C: Client;

beforeAll(async () => {
  C = await loadClient();
});

const FIXTURE = fileURLToPath(new URL('../fixtures/group-consumer.mjs', import.meta.url));
const SESSION_TIMEOUT_MS = 3_000;
const HEARTBEAT_MS = Math.floor(SESSION_TIMEOUT_MS / 3);

const cleanups = cleanupsAfterEach();

interface Member {
  name: string;
  child: ChildProcess;
  events: Record<string, any>[];
  exited: Promise<number | null>;
}

function startMember(url: string, groupId: string, topic: string, name: string): Member {
  const child = spawn(process.execPath, [FIXTURE, DIST.href, url, groupId, topic, String(SESSION_TIMEOUT_MS), name], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Record<string, any>[] = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const l of lines) if (l.trim()) events.push(JSON.parse(l));
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  });
  void exited.then(() => {
    if (stderr.trim()) events.push({ t: 'stderr', text: stderr });
  });
  return { name, child, events, exited };
}

async function connect(url: string) {
  const client = await C.connect({ url, clientId: 'test', WebSocket: WebSocket as never });
  cleanups.push(() => client.close());
  return client;
}

async function until(what: string, fn: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<number> {
  const start = Date.now();
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return Date.now() - start;
}

async function produce(client: Awaited<ReturnType<typeof connect>>, topic: string, from: number, count: number): Promise<void> {
  const producer = client.producer({ lingerMs: 1 });
  await Promise.all(Array.from({ length: count }, (_, i) => producer.send({ topic, key: `k${from + i}`, value: `v${from + i}` })));
  await producer.flush();
}

/** Server-side check: no partition is held (owned or being revoked) by two members. */
function checkExclusive(d: Awaited<ReturnType<Awaited<ReturnType<typeof connect>>['describeGroup']>>): void {
  const seen = new Map<string, string>();
  for (const m of d.members) {
    for (const p of [...m.partitions, ...m.revoking]) {
      const k = `${p.topic}-${p.partition}`;
      expect(seen.get(k), `${k} held by ${seen.get(k)} and ${m.memberId}`).toBeUndefined();
      seen.set(k, m.memberId);
    }
  }
}

describe('consumer groups across processes', () => {
  it('three members share 12 partitions; a SIGKILLed member’s partitions move within the session timeout; nothing lost', async () => {
    const dir = tempDir('groups-proc');
    cleanups.push(() => dir.remove());
    const broker: Broker = await startBroker({ dataDir: dir.path });
    cleanups.push(() => broker.stop());
    const admin = await connect(broker.url);
    await admin.createTopic('orders', { partitions: 12 });
    await produce(admin, 'orders', 0, 1200);

    const members = ['m0', 'm1', 'm2'].map((n) => startMember(broker.url, 'billing', 'orders', n));
    let samples = 0;
    const sample = async () => {
      const d = await admin.describeGroup('billing').catch((err) => {
        if (err.code === 'GROUP_ID_NOT_FOUND') return { members: [] as never[] } as unknown as Awaited<ReturnType<typeof admin.describeGroup>>;
        throw err;
      });
      checkExclusive(d);
      samples++;
      return d;
    };
    await until(
      'three members owning all 12 partitions',
      async () => {
        const d = await sample();
        return d.members.length === 3 && d.members.every((m) => m.partitions.length === 4 && m.revoking.length === 0);
      },
      20_000,
    );

    // Keep producing while one member dies.
    const producing = (async () => {
      for (let i = 0; i < 10; i++) {
        await produce(admin, 'orders', 1200 + i * 120, 120);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await new Promise((r) => setTimeout(r, 400));
    const victim = members[1];
    const before = await sample();
    const victimId = before.members.find((m) => m.clientId === 'm1')?.memberId;
    expect(victimId).toBeDefined();
    const victimPartitions = before.members.find((m) => m.memberId === victimId)!.partitions.map((p) => p.partition);
    victim.child.kill('SIGKILL');
    const moveMs = await until(
      "the victim's partitions owned by the survivors",
      async () => {
        const d = await sample();
        return !d.members.some((m) => m.memberId === victimId) && d.members.length === 2 && d.members.reduce((n, m) => n + m.partitions.length, 0) === 12;
      },
      SESSION_TIMEOUT_MS * 3,
    );
    expect(moveMs).toBeLessThan(SESSION_TIMEOUT_MS + 2 * HEARTBEAT_MS + 1_000);
    await producing;

    const end = await admin.describeTopic('orders');
    const total = end.partitions.reduce((n, p) => n + p.highWatermark, 0);
    expect(total).toBe(2400);
    const seenBy = (ms: Member[]) => {
      const seen = new Map<number, number[]>(); // partition -> offsets, with repeats
      for (const m of ms) for (const e of m.events) if (e.t === 'batch') for (const o of e.o) (seen.get(e.p) ?? seen.set(e.p, []).get(e.p)!).push(o);
      return seen;
    };
    await until(
      'every record consumed',
      () => {
        const seen = seenBy(members);
        return end.partitions.every((p, i) => new Set(seen.get(i) ?? []).size === p.highWatermark);
      },
      30_000,
      100,
    );
    // No loss: every offset of every partition was seen; duplicates only in the victim's
    // partitions, at or after its last acknowledged commit.
    const lastCommit = new Map<number, number>();
    for (const e of victim.events) if (e.t === 'commit') for (const o of e.offsets) lastCommit.set(o.partition, o.offset);
    const seen = seenBy(members);
    let duplicates = 0;
    for (const [p, offsets] of seen) {
      const counts = new Map<number, number>();
      for (const o of offsets) counts.set(o, (counts.get(o) ?? 0) + 1);
      for (const [o, n] of counts) {
        if (n === 1) continue;
        duplicates += n - 1;
        expect(victimPartitions, `offset ${o} of partition ${p} seen ${n} times`).toContain(p);
        expect(o, `duplicate below the victim's last commit in partition ${p}`).toBeGreaterThanOrEqual(lastCommit.get(p) ?? 0);
      }
    }
    expect(samples).toBeGreaterThan(10);
    for (const m of members) expect(m.events.filter((e) => e.t === 'error' || e.t === 'stderr'), m.name).toEqual([]);
    // Clean stop: SIGTERM commits and leaves.
    for (const m of [members[0], members[2]]) m.child.kill('SIGTERM');
    expect(await members[0].exited).toBe(0);
    expect(await members[2].exited).toBe(0);
    const after = await admin.describeGroup('billing');
    expect(after.members).toEqual([]);
    expect(after.offsets.reduce((n, o) => n + o.lag, 0)).toBe(0);
    console.log(`groups: partitions moved ${moveMs} ms after SIGKILL (session ${SESSION_TIMEOUT_MS} ms); ${duplicates} duplicates; ${samples} exclusive samples`);
  }, 120_000);

  it('committed offsets survive a broker SIGKILL; a restarted member resumes right after the last commit', async () => {
    const dir = tempDir('groups-restart');
    cleanups.push(() => dir.remove());
    let broker = await startBroker({ dataDir: dir.path });
    const stopBroker = () => broker.stop();
    cleanups.push(() => stopBroker());
    let client = await C.connect({ url: broker.url, clientId: 'test', WebSocket: WebSocket as never, reconnectBackoff: { initialMs: 20, maxMs: 100, multiplier: 2, jitter: 0 } });
    await client.createTopic('audit', { partitions: 2 });
    await produce(client, 'audit', 0, 200);
    const consumer = client.consumer({ groupId: 'auditors', topics: ['audit'], fromBeginning: true, autoCommit: false, sessionTimeoutMs: 2_000 });
    const it = consumer[Symbol.asyncIterator]();
    const got: { partition: number; offset: number }[] = [];
    while (got.length < 70) got.push((await it.next()).value);
    // Commit exactly what was processed: the iterator counts a record processed once the next is asked for.
    const offsets = consumer.processedOffsets();
    expect(offsets.length).toBeGreaterThan(0);
    await consumer.commit(offsets);
    broker.child.kill('SIGKILL');
    await broker.stop();
    client.connection.close();

    broker = await startBroker({ dataDir: dir.path });
    client = await C.connect({ url: broker.url, clientId: 'test2', WebSocket: WebSocket as never });
    cleanups.push(() => client.close());
    const committed = await client.committedOffsets('auditors');
    expect(committed.map((o) => ({ partition: o.partition, offset: o.offset })).sort((a, b) => a.partition - b.partition)).toEqual(
      offsets.map((o) => ({ partition: o.partition, offset: o.offset })).sort((a, b) => a.partition - b.partition),
    );
    const again = client.consumer({ groupId: 'auditors', topics: ['audit'], fromBeginning: true, sessionTimeoutMs: 2_000 });
    const firstByPartition = new Map<number, number>();
    const it2 = again[Symbol.asyncIterator]();
    while (firstByPartition.size < 2) {
      const r = (await it2.next()).value;
      if (!firstByPartition.has(r.partition)) firstByPartition.set(r.partition, r.offset);
    }
    for (const o of offsets) expect(firstByPartition.get(o.partition)).toBe(o.offset);
    // A partition without a commit in `offsets` would start at 0 (fromBeginning).
    for (const p of [0, 1]) if (!offsets.some((o) => o.partition === p)) expect(firstByPartition.get(p)).toBe(0);
    await again.close();
  }, 90_000);
});
