/**
 * Consumer groups through the real gateway and engine (dist/): the client's group consumer,
 * the wire ops directly (fencing, bad input), the admin calls and /metrics.
 */
import { WebSocket } from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach, DIST, loadClient, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';
import { restartablePort } from '../helpers/net.js';

type Server = Awaited<ReturnType<typeof loadSluice>>;
type Client = typeof import('../../src/client/index.js');
type Frames = typeof import('../../src/ws-gateway/frames.js');
let S: Server;
let C: Client;
let F: Frames;

beforeAll(async () => {
  S = await loadSluice();
  C = await loadClient();
  F = (await import(new URL('ws-gateway/frames.js', DIST).href)) as Frames;
});

const cleanups = cleanupsAfterEach();

async function start() {
  const dir = tempDir('groups');
  const engine = await S.Engine.open({ dataDir: dir.path, workers: 2, logger: memoryLogger() });
  const gateway = await S.startGateway({ engine, host: '127.0.0.1', port: 0 });
  cleanups.push(async () => {
    await gateway.close();
    await engine.close();
    dir.remove();
  });
  const url = `ws://127.0.0.1:${gateway.port}/`;
  const connect = async (clientId = 'it') => {
    const client = await C.connect({ url, clientId, WebSocket: WebSocket as never });
    cleanups.push(() => client.close());
    return client;
  };
  return { engine, gateway, url, connect, client: await connect() };
}

/**
 * A broker whose gateway can stop and come back on the same port (and, with forgetGroups,
 * a new coordinator over the same engine: what a broker restart leaves of groups), and a
 * client that reconnects to it with the given back-off.
 */
async function restartableBroker(label: string, backoff: { initialMs: number; maxMs: number }) {
  const dir = tempDir(label);
  const engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
  let groups = await S.openGroups(engine);
  let gateway = await S.startGateway({ engine, groups, host: '127.0.0.1', port: await restartablePort() });
  const port = gateway.port;
  cleanups.push(async () => {
    await gateway.close();
    groups.close();
    await engine.close();
    dir.remove();
  });
  const client = await C.connect({ url: `ws://127.0.0.1:${port}/`, clientId: 'r', WebSocket: WebSocket as never, reconnectBackoff: { ...backoff, multiplier: 2, jitter: 0 } });
  cleanups.push(() => client.close());
  const restart = async ({ forgetGroups }: { forgetGroups: boolean }) => {
    await gateway.close();
    if (forgetGroups) {
      groups.close();
      groups = await S.openGroups(engine);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        gateway = await S.startGateway({ engine, groups, host: '127.0.0.1', port });
        return;
      } catch (err) {
        if (attempt >= 40) throw err; // the old listen socket is released asynchronously
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  return { client, restart };
}

async function produce(client: Awaited<ReturnType<typeof C.connect>>, topic: string, count: number, from = 0): Promise<void> {
  const p = client.producer({ lingerMs: 1 });
  await Promise.all(Array.from({ length: count }, (_, i) => p.send({ topic, key: `k${from + i}`, value: `v${from + i}` })));
  await p.flush();
}

async function collect(consumer: ReturnType<Awaited<ReturnType<typeof C.connect>>['consumer']>, n: number, timeoutMs = 15_000) {
  const out: { partition: number; offset: number }[] = [];
  const it = consumer[Symbol.asyncIterator]();
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const r = await Promise.race([it.next(), new Promise<null>((r) => setTimeout(() => r(null), Math.max(0, deadline - Date.now())))]);
    if (r === null) throw new Error(`only ${out.length} of ${n} records within ${timeoutMs} ms`);
    if (r.done) break;
    out.push({ partition: r.value.partition, offset: r.value.offset });
  }
  // Done with the last record: an iterator left open holds it "in hand", and a revocation
  // waits for it (up to half the rebalance timeout), as Kafka waits for the next poll.
  await it.return?.();
  return out;
}

const request = (client: Awaited<ReturnType<typeof C.connect>>, frame: any) => client.connection.request(frame) as Promise<any>;
const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
};

describe('consumer groups through the gateway', () => {
  it('two groups on one topic each receive every record; members of one group split it', async () => {
    const { client, connect } = await start();
    await client.createTopic('news', { partitions: 4 });
    await produce(client, 'news', 400);
    const a = client.consumer({ groupId: 'ga', topics: ['news'], fromBeginning: true });
    const other = await connect('b');
    const b1 = other.consumer({ groupId: 'gb', topics: ['news'], fromBeginning: true });
    const got = await Promise.all([collect(a, 400), collect(b1, 400)]);
    for (const g of got) expect(new Set(g.map((r) => `${r.partition}:${r.offset}`)).size).toBe(400);
    // A second member of gb takes half of the partitions.
    const b2 = (await connect('b2')).consumer({ groupId: 'gb', topics: ['news'], fromBeginning: true });
    await b2.group!.joined;
    await expect.poll(async () => (await client.describeGroup('gb')).members.map((m) => m.partitions.length).sort(), { timeout: 10_000 }).toEqual([2, 2]);
    const d = await client.describeGroup('gb');
    expect(d.state).toBe('stable');
    expect(d.assignor).toBe('sticky');
  });

  it('a member paused past its session timeout is fenced: its commit is refused; a stale generation is refused', async () => {
    const { client } = await start();
    await client.createTopic('t', { partitions: 2 });
    const join = await request(client, { op: F.Op.JOIN_GROUP, groupId: 'g', memberId: '', instanceId: '', clientId: 'z', sessionTimeoutMs: 500, rebalanceTimeoutMs: 0, assignor: '', topics: ['t'] });
    expect(join.partitions).toHaveLength(2);
    const commit = (generation: number, partition = 0) =>
      request(client, { op: F.Op.COMMIT_OFFSETS, groupId: 'g', memberId: join.memberId, generation, offsets: [{ topic: 't', partition, offset: 1, metadata: '' }] });
    expect(await codeOf(commit(join.generation))).toBe('ok');
    expect(await codeOf(commit(join.generation + 5))).toBe('ILLEGAL_GENERATION');
    // Pause (no heartbeat) past the session timeout, then resume.
    await new Promise((r) => setTimeout(r, 900));
    expect(await codeOf(commit(join.generation))).toBe('UNKNOWN_MEMBER_ID');
    expect(await codeOf(request(client, { op: F.Op.HEARTBEAT, groupId: 'g', memberId: join.memberId, generation: join.generation }))).toBe('UNKNOWN_MEMBER_ID');
    // The commit made before the pause is kept.
    expect((await client.committedOffsets('g')).map((o) => o.offset)).toEqual([1]);
  });

  it('refuses bad group input with typed errors and leaves the state unchanged', async () => {
    const { client } = await start();
    await client.createTopic('t', { partitions: 2 });
    const join = (over: Record<string, unknown>) =>
      request(client, { op: F.Op.JOIN_GROUP, groupId: 'g', memberId: '', instanceId: '', clientId: 'x', sessionTimeoutMs: 5_000, rebalanceTimeoutMs: 0, assignor: '', topics: ['t'], ...over });
    expect(await codeOf(client.describeGroup('nope'))).toBe('GROUP_ID_NOT_FOUND');
    expect(await codeOf(join({ groupId: '' }))).toBe('INVALID_GROUP_ID');
    expect(await codeOf(join({ topics: ['missing'] }))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    expect(await codeOf(join({ topics: [] }))).not.toBe('ok');
    expect(await codeOf(join({ topics: ['__consumer_offsets'] }))).toBe('INVALID_TOPIC');
    expect(await codeOf(join({ sessionTimeoutMs: 1 }))).toBe('INVALID_SESSION_TIMEOUT');
    expect(await codeOf(join({ sessionTimeoutMs: 0xffff_ffff }))).toBe('INVALID_SESSION_TIMEOUT');
    expect(await codeOf(join({ assignor: 'magic' }))).not.toBe('ok');
    expect(await codeOf(client.describeGroup('g'))).toBe('GROUP_ID_NOT_FOUND');
    // A real member, then commits it may not make.
    await client.createTopic('u', { partitions: 1 });
    const m = await join({ topics: ['t'] });
    const before = await client.describeGroup('g');
    const commit = (offsets: unknown[], memberId = m.memberId, generation = m.generation) => request(client, { op: F.Op.COMMIT_OFFSETS, groupId: 'g', memberId, generation, offsets });
    expect(await codeOf(commit([{ topic: 'u', partition: 0, offset: 1, metadata: '' }]))).toBe('PARTITION_NOT_ASSIGNED');
    expect(await codeOf(commit([{ topic: 't', partition: 7, offset: 1, metadata: '' }]))).toBe('UNKNOWN_TOPIC_OR_PARTITION');
    // Metadata longer than a protocol string (STRING_BYTES_MAX) cannot even be sent.
    expect(await codeOf(commit([{ topic: 't', partition: 0, offset: 1, metadata: 'x'.repeat(5000) }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(commit([{ topic: 't', partition: 0, offset: 1, metadata: '' }, { topic: 't', partition: 0, offset: 2, metadata: '' }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(commit([{ topic: 't', partition: 0, offset: 1, metadata: '' }], 'who?'))).toBe('UNKNOWN_MEMBER_ID');
    expect(await codeOf(commit([{ topic: 't', partition: 0, offset: 1, metadata: '' }], '', -1))).toBe('UNKNOWN_MEMBER_ID');
    expect(await codeOf(client.resetOffsets('g', 'earliest', ['t']))).toBe('NON_EMPTY_GROUP');
    const after = await client.describeGroup('g');
    expect(after).toEqual(before);
    expect(await client.committedOffsets('g')).toEqual([]);
    // Internal topics are the broker's.
    expect(await codeOf(client.deleteTopic('__consumer_offsets'))).toBe('INVALID_TOPIC');
    // The group still works.
    expect(await codeOf(commit([{ topic: 't', partition: 0, offset: 3, metadata: 'm' }]))).toBe('ok');
    // That first commit created the offsets topic; clients may not write to it.
    expect(await codeOf(client.producer().send({ topic: '__consumer_offsets', value: 'x' }))).toBe('INVALID_TOPIC');
    expect((await client.committedOffsets('g')).map((o) => [o.partition, o.offset, o.metadata])).toEqual([[0, 3, 'm']]);
  });

  it('describes groups with lag, lists them, resets an empty group, exports lag in /metrics', async () => {
    const { client, gateway } = await start();
    await client.createTopic('t', { partitions: 2 });
    await produce(client, 't', 100);
    const c = client.consumer({ groupId: 'lagging', topics: ['t'], fromBeginning: true, autoCommit: false });
    await collect(c, 10);
    await c.commit([{ topic: 't', partition: 0, offset: 5 }]);
    const d = await client.describeGroup('lagging');
    expect(d.members).toHaveLength(1);
    const end0 = (await client.describeTopic('t')).partitions[0].highWatermark;
    const end1 = (await client.describeTopic('t')).partitions[1].highWatermark;
    expect(d.offsets).toEqual([
      expect.objectContaining({ topic: 't', partition: 0, offset: 5, logEndOffset: end0, lag: end0 - 5 }),
      // Assigned, never committed: listed without an offset or lag.
      expect.objectContaining({ topic: 't', partition: 1, offset: -1, logEndOffset: end1, lag: -1 }),
    ]);
    expect((await client.listGroups()).map((g) => [g.groupId, g.members])).toEqual([['lagging', 1]]);
    const metrics = await (await fetch(`http://127.0.0.1:${gateway.port}/metrics`)).text();
    expect(metrics).toContain(`sluice_group_lag{group="lagging",topic="t",partition="0"} ${end0 - 5}`);
    expect(metrics).toContain('sluice_group_members{group="lagging"} 1');
    await c.close();
    await expect.poll(async () => (await client.describeGroup('lagging')).members.length).toBe(0);
    const reset = await client.resetOffsets('lagging', 'latest', ['t']);
    expect(reset.map((o) => o.partition)).toEqual([0, 1]);
    const ends = (await client.describeTopic('t')).partitions.map((p) => p.highWatermark);
    expect(reset.map((o) => o.offset)).toEqual(ends);
    expect((await client.resetOffsets('lagging', { offset: 3 })).map((o) => o.offset)).toEqual([3, 3]);
    expect((await client.listGroups()).find((g) => g.groupId === 'lagging')?.state).toBe('empty');
  });

  it('hands out partitions added to a subscribed topic', async () => {
    const { client } = await start();
    await client.createTopic('grow', { partitions: 2 });
    const c = client.consumer({ groupId: 'g', topics: ['grow'], fromBeginning: true });
    await c.group!.joined;
    await client.createPartitions('grow', 4);
    await expect.poll(async () => (await client.describeGroup('g')).members[0]?.partitions.length, { timeout: 10_000 }).toBe(4);
    await produce(client, 'grow', 200);
    const got = await collect(c, 200);
    expect(new Set(got.map((r) => r.partition))).toEqual(new Set([0, 1, 2, 3]));
  });

  it('forgets the committed offsets of a deleted topic', async () => {
    const { client } = await start();
    await client.createTopic('gone', { partitions: 2 });
    await client.createTopic('kept', { partitions: 1 });
    await client.resetOffsets('g', { offset: 0 }, ['gone', 'kept']);
    expect((await client.committedOffsets('g')).map((o) => o.topic)).toEqual(['gone', 'gone', 'kept']);
    await client.deleteTopic('gone');
    await expect.poll(async () => (await client.committedOffsets('g')).map((o) => o.topic)).toEqual(['kept']);
  });

  it('a member whose connection drops rejoins with its member id and keeps its partitions', async () => {
    const { client, restart } = await restartableBroker('groups-reconnect', { initialMs: 20, maxMs: 100 });
    await client.createTopic('t', { partitions: 3 });
    await produce(client, 't', 30);
    const revoked: unknown[] = [];
    const c = client.consumer({ groupId: 'g', topics: ['t'], fromBeginning: true, sessionTimeoutMs: 10_000, onRevoked: (ps) => void revoked.push(ps) });
    const first = await collect(c, 30);
    const before = await client.describeGroup('g');
    // The gateway goes away (every socket closed) and comes back on the same port; the
    // coordinator (shared) keeps the member until its session timeout.
    await restart({ forgetGroups: false });
    await produce(client, 't', 30, 30);
    const second = await collect(c, 30);
    const after = await client.describeGroup('g');
    expect(after.members.map((m) => [m.memberId, m.generation, m.partitions])).toEqual(before.members.map((m) => [m.memberId, m.generation, m.partitions]));
    expect(revoked).toEqual([]);
    const seen = new Set([...first, ...second].map((r) => `${r.partition}:${r.offset}`));
    expect(seen.size).toBe(60);
  });

  it('a member rejoins as a new member after the broker restarts and forgets it, also with commits and heartbeats in flight', async () => {
    const { client, restart } = await restartableBroker('groups-restart', { initialMs: 5, maxMs: 20 });
    await client.createTopic('t', { partitions: 2 });
    // Commits and heartbeats are nearly always in flight: one of them meets the new coordinator
    // before the rejoin's answer does (UNKNOWN_MEMBER_ID both ways).
    const c = client.consumer({ groupId: 'g', topics: ['t'], fromBeginning: true, autoCommitIntervalMs: 5, sessionTimeoutMs: 6_000 });
    const seen = new Set<string>();
    // At least once: records read again after a restart (their commit was lost with the
    // connection) are fine; the member must go on until it has seen every one.
    const readUntil = async (total: number) => {
      while (seen.size < total) {
        let got;
        try { got = await collect(c, 1, 4000); } catch (e) { console.log('DBG stuck at', seen.size, 'of', total, JSON.stringify(await client.describeGroup('g')), JSON.stringify(await client.committedOffsets('g'))); throw e; }
        for (const r of got) seen.add(`${r.partition}:${r.offset}`);
      }
    };
    for (let round = 0; round < 4; round++) {
      await produce(client, 't', 20, round * 20);
      await readUntil((round + 1) * 20);
      // The coordinator's memberships go with the broker; committed offsets stay in the engine.
      await restart({ forgetGroups: true });
    }
    await produce(client, 't', 20, 80);
    await readUntil(100);
    expect((await client.describeGroup('g')).members).toHaveLength(1);
  });

  it('a member fenced while a slow onRevoked runs gives up its partitions once, rejoins and consumes again', async () => {
    const { client, connect } = await start();
    await client.createTopic('slow', { partitions: 4 });
    await produce(client, 'slow', 40);
    const revokedCalls: number[] = [];
    const a = client.consumer({
      groupId: 'sr', topics: ['slow'], fromBeginning: true, sessionTimeoutMs: 600, rebalanceTimeoutMs: 600,
      onRevoked: async (ps) => {
        revokedCalls.push(ps.length);
        // Longer than the rebalance timeout: the coordinator drops the member meanwhile, and
        // each heartbeat and commit in between is refused as it is.
        await new Promise((r) => setTimeout(r, 1500));
      },
    });
    await collect(a, 40);
    const other = await connect('other');
    const b = other.consumer({ groupId: 'sr', topics: ['slow'], fromBeginning: true, sessionTimeoutMs: 6000 });
    const bRead = collect(b, 1, 20_000);
    await bRead;
    // a is fenced during its revocation; once it has rejoined, a new record for each partition reaches one of the two.
    await new Promise((r) => setTimeout(r, 2500));
    expect(revokedCalls.filter((n) => n === 0)).toEqual([]);
    expect(revokedCalls.length).toBeLessThanOrEqual(2);
    await produce(client, 'slow', 40, 40);
    const both = await Promise.all([collect(a, 1, 20_000), collect(b, 1, 20_000)]);
    expect(both.flat()).toHaveLength(2);
    expect(new Set((await client.describeGroup('sr')).members.map((m) => m.partitions.length))).not.toContain(0);
  });

  it('of two consumers given one instanceId, the one replaced fails with FENCED_INSTANCE_ID instead of taking the place back', async () => {
    const { client, connect } = await start();
    await client.createTopic('static', { partitions: 2 });
    await produce(client, 'static', 20);
    const first = client.consumer({ groupId: 'st', topics: ['static'], instanceId: 'worker-1', fromBeginning: true, sessionTimeoutMs: 3000 });
    await collect(first, 20);
    const other = await connect('second');
    const second = other.consumer({ groupId: 'st', topics: ['static'], instanceId: 'worker-1', fromBeginning: true, sessionTimeoutMs: 3000 });
    const failed = (async () => {
      try {
        for await (const _ of first) void _;
        return 'ended';
      } catch (err) {
        return (err as { code?: string }).code ?? String(err);
      }
    })();
    await produce(client, 'static', 20, 20);
    await collect(second, 1);
    expect(await failed).toBe('FENCED_INSTANCE_ID');
    // No ping-pong: the second stays the member, with both partitions.
    await new Promise((r) => setTimeout(r, 2500));
    const d = await client.describeGroup('st');
    expect(d.members.map((m) => [m.clientId, m.instanceId, m.partitions.length])).toEqual([['second', 'worker-1', 2]]);
  });

  it('a member of a group over two topics goes on with the other when one is deleted', async () => {
    const { client } = await start();
    await client.createTopic('keep', { partitions: 1 });
    await client.createTopic('drop', { partitions: 1 });
    await produce(client, 'keep', 5);
    await produce(client, 'drop', 5);
    const revoked: string[] = [];
    const c = client.consumer({ groupId: 'two', topics: ['keep', 'drop'], fromBeginning: true, onRevoked: (ps) => void revoked.push(...ps.map((p) => p.topic)) });
    expect(await collect(c, 10)).toHaveLength(10);
    await client.deleteTopic('drop');
    await produce(client, 'keep', 5, 5);
    const after = await collect(c, 5);
    expect(after.map((r) => r.offset)).toEqual([5, 6, 7, 8, 9]);
    expect(revoked).toContain('drop');
    const d = await client.describeGroup('two');
    expect(d.members.map((m) => m.partitions.map((p) => p.topic))).toEqual([['keep']]);
  });

  it('an onRevoked that throws still lets the partitions go at once; the error reaches the application once, and the member goes on', async () => {
    const { client, connect } = await start();
    await client.createTopic('hook', { partitions: 4 });
    await produce(client, 'hook', 40);
    let calls = 0;
    const a = client.consumer({
      groupId: 'hk', topics: ['hook'], fromBeginning: true, sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 30_000,
      onRevoked: () => {
        calls++;
        throw new Error('the hook failed');
      },
    });
    await collect(a, 40);
    const errors: string[] = [];
    const reading = (async () => {
      for (let i = 0; i < 2; i++) {
        try {
          for await (const _ of a) void _;
          return;
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    })();
    const other = await connect('other');
    const b = other.consumer({ groupId: 'hk', topics: ['hook'], fromBeginning: true, sessionTimeoutMs: 30_000 });
    // Well within the 30 s rebalance timeout: the revocation was not held up by the hook.
    const started = Date.now();
    await collect(b, 1, 10_000);
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect.poll(() => errors).toEqual(['the hook failed']);
    expect(calls).toBe(1);
    const d = await client.describeGroup('hk');
    expect(d.members.map((m) => m.partitions.length).sort()).toEqual([2, 2]);
    await a.close();
    await reading;
  });

  it('close() waits for the batch in hand, calls onRevoked and commits it before another member gets the partition', async () => {
    const { client, connect } = await start();
    await client.createTopic('handover', { partitions: 1 });
    await produce(client, 'handover', 10);
    const events: string[] = [];
    let handlerEnd = 0;
    const a = client.consumer({
      groupId: 'h',
      topics: ['handover'],
      fromBeginning: true,
      onRevoked: (ps) => void events.push(`revoked ${ps.map((p) => p.partition).join(',')}`),
    });
    let inHandler!: () => void;
    const started = new Promise<void>((r) => (inHandler = r));
    const running = a.run({
      eachBatch: async (batch) => {
        events.push(`batch ${batch.records[0].offset}-${batch.records.at(-1)!.offset}`);
        inHandler();
        await new Promise((r) => setTimeout(r, 600));
        handlerEnd = Date.now();
        events.push('handler done');
      },
    });
    await started;
    await a.close();
    events.push('closed');
    await running;
    expect(events[0]).toMatch(/^batch 0-/);
    expect(events.slice(1)).toEqual(['handler done', 'revoked 0', 'closed']);
    const lastOffset = Number(/-(\d+)$/.exec(events[0])![1]);
    expect(await client.committedOffsets('h')).toMatchObject([{ topic: 'handover', partition: 0, offset: lastOffset + 1 }]);
    // The next member starts after the batch, and only after the first was done with it.
    await produce(client, 'handover', 1, 10);
    const b = (await connect('b')).consumer({ groupId: 'h', topics: ['handover'], fromBeginning: true });
    const it = b[Symbol.asyncIterator]();
    const first = await it.next();
    expect(Date.now()).toBeGreaterThanOrEqual(handlerEnd);
    expect(first.value.offset).toBe(lastOffset + 1);
    await it.return?.();
    await b.close();
  });

  it('hands out no record of an assigned partition before onAssigned resolves; a seek in it sets the start', async () => {
    const { client } = await start();
    await client.createTopic('assigned', { partitions: 1 });
    await produce(client, 'assigned', 50);
    const events: string[] = [];
    const c = client.consumer({
      groupId: 'oa',
      topics: ['assigned'],
      fromBeginning: true,
      onAssigned: async (ps) => {
        events.push('onAssigned start');
        await new Promise((r) => setTimeout(r, 300)); // records arrive meanwhile
        c.seek(ps[0].topic, ps[0].partition, 30);
        events.push('onAssigned done');
      },
    });
    const it = c[Symbol.asyncIterator]();
    const first = await it.next();
    events.push(`record ${first.value.offset}`);
    expect(events).toEqual(['onAssigned start', 'onAssigned done', 'record 30']);
    await it.return?.();
    await c.close();
  });

  it('a position out of range goes where the start setting points, as Kafka\'s one auto.offset.reset: latest by default', async () => {
    const { client } = await start();
    await client.createTopic('range', { partitions: 1 });
    await produce(client, 'range', 20);
    const past = client.consumer({ from: { offset: 500 } });
    await past.subscribe('range');
    const early = client.consumer({ from: 'earliest' });
    await early.subscribe('range');
    early.seek('range', 0, 10_000);
    const chosen = client.consumer({ from: { offset: 500 }, resetPolicy: 'earliest' });
    await chosen.subscribe('range');
    await produce(client, 'range', 1, 20);
    const firstOf = async (c: typeof past) => {
      const it = c[Symbol.asyncIterator]();
      const r = await it.next();
      await it.return?.();
      await c.close();
      return r.value.offset;
    };
    expect(await firstOf(past)).toBe(20); // at the end: only the record produced after
    expect(await firstOf(early)).toBe(0); // from 'earliest': back to the start
    expect(await firstOf(chosen)).toBe(0);
    expect(() => client.consumer({ resetPolicy: 'nearest' as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

