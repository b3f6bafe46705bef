// The consumer group coordinator (src/engine/group-coordinator.ts) driven step by step with
// a fake clock and an in-memory offset store. After every step (and inside every listener
// call) an invariant checker looks at the whole group: no partition held by two members,
// no two members told they own one partition, every partition owned once when stable.
import { describe, expect, it } from 'vitest';
import { SluiceError, type ErrorCode } from '../../src/errors.js';
import {
  GroupCoordinator,
  type AssignmentListener,
  type CommittedOffset,
  type CoordinatorClock,
  type JoinRequest,
  type MemberAssignment,
  type OffsetStore,
  type OffsetToCommit,
  type TopicPartition,
} from '../../src/engine/group-coordinator.js';
import { COMMIT_PARTITIONS_MAX, GROUPS_MAX, GROUP_MEMBERS_MAX, OFFSET_METADATA_BYTES_MAX } from '../../src/engine/group-limits.js';
import { seededRandom } from '../helpers/random.js';
import { testSeed } from './persist-helpers.js';

// ---------------------------------------------------------------- fakes

/** Timers fire only when the test advances time, in (time, creation) order. */
class FakeClock implements CoordinatorClock {
  nowMs = 0;
  readonly #timers = new Map<number, { atMs: number; fn: () => void }>();
  #nextId = 1;

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.nowMs + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    const endMs = this.nowMs + ms;
    for (;;) {
      let next: [number, { atMs: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].atMs <= endMs && (!next || entry[1].atMs < next[1].atMs)) next = entry;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.nowMs = next[1].atMs;
      next[1].fn();
    }
    this.nowMs = endMs;
  }
}

class MemoryOffsetStore implements OffsetStore {
  readonly #groups = new Map<string, Map<string, CommittedOffset>>();
  readonly #clock: FakeClock;
  commits = 0;
  /** Thrown (as a rejection) by the next commit. */
  failNext: unknown = undefined;

  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  async commit(groupId: string, offsets: readonly OffsetToCommit[]): Promise<void> {
    this.commits++;
    if (this.failNext !== undefined) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    let group = this.#groups.get(groupId);
    if (!group) this.#groups.set(groupId, (group = new Map()));
    for (const o of offsets) group.set(`${o.topic}:${o.partition}`, { ...o, commitTimestamp: this.#clock.now() });
  }

  get(groupId: string): readonly CommittedOffset[] {
    return [...(this.#groups.get(groupId)?.values() ?? [])];
  }

  groupIds(): readonly string[] {
    return [...this.#groups.keys()];
  }
}

// ---------------------------------------------------------------- harness

const SESSION_MS = 10_000;
const key = (p: TopicPartition): string => `${p.topic}:${p.partition}`;
const keys = (ps: readonly TopicPartition[]): string[] => ps.map(key);
const all = (topic: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${topic}:${i}`);

class TestMember {
  assignment!: MemberAssignment;
  readonly pushes: MemberAssignment[] = [];
  detached = false;
  readonly listener: AssignmentListener = (a) => {
    if (this.assignment.memberId !== '') expect(a.memberId).toBe(this.assignment.memberId);
    this.pushes.push(a);
    this.assignment = a;
    this.onPush?.(a);
    this.h.check();
  };
  onPush: ((a: MemberAssignment) => void) | undefined;

  constructor(
    readonly h: Harness,
    readonly request: JoinRequest,
  ) {}

  get id(): string {
    return this.assignment.memberId;
  }

  get groupId(): string {
    return this.request.groupId;
  }

  get owned(): string[] {
    return keys(this.assignment.partitions);
  }

  /** Acknowledges the newest generation it has seen (it applied it). */
  ack(): MemberAssignment {
    this.assignment = this.h.coordinator.heartbeat(this.groupId, this.id, this.assignment.generation);
    this.h.check();
    return this.assignment;
  }

  commit(partitions: string[], generation = this.assignment.generation, offset = 42): Promise<void> {
    const offsets = partitions.map((k) => ({ topic: k.split(':')[0], partition: Number(k.split(':')[1]), offset, metadata: '' }));
    return this.h.coordinator.commitOffsets(this.groupId, this.id, generation, offsets);
  }
}

class Harness {
  readonly clock = new FakeClock();
  readonly store = new MemoryOffsetStore(this.clock);
  readonly counts: Map<string, number>;
  readonly logs: { level: string; msg: string | undefined; o: object }[] = [];
  readonly members: TestMember[] = [];
  readonly coordinator: GroupCoordinator;
  #uuid = 0;

  constructor(topics: Record<string, number>) {
    this.counts = new Map(Object.entries(topics));
    this.coordinator = new GroupCoordinator({
      partitionsOf: (topic) => this.counts.get(topic),
      offsets: this.store,
      clock: this.clock,
      randomUUID: () => `uuid-${String(++this.#uuid).padStart(5, '0')}`,
      logger: {
        info: (o, msg) => this.logs.push({ level: 'info', msg, o }),
        warn: (o, msg) => this.logs.push({ level: 'warn', msg, o }),
      },
    });
  }

  join(overrides: Partial<JoinRequest> = {}): TestMember {
    const request: JoinRequest = { groupId: 'g', memberId: '', clientId: 'c', topics: [...this.counts.keys()].slice(0, 1), sessionTimeoutMs: SESSION_MS, ...overrides };
    const member = new TestMember(this, request);
    member.assignment = { groupId: request.groupId, memberId: request.memberId, generation: -1, partitions: [], heartbeatIntervalMs: 0 };
    member.assignment = this.coordinator.join(request, member.listener);
    this.members.push(member);
    this.check();
    return member;
  }

  /** Live, attached members of a group: what they were last told is what they consume. */
  attached(groupId = 'g'): TestMember[] {
    let live: Set<string>;
    try {
      live = new Set(this.coordinator.describeGroup(groupId).members.map((m) => m.memberId));
    } catch {
      return [];
    }
    return this.members.filter((m) => m.groupId === groupId && !m.detached && live.has(m.id));
  }

  /** Every attached member acknowledges until the group is stable. */
  settle(groupId = 'g'): void {
    for (let round = 0; round < 20; round++) {
      if (this.coordinator.describeGroup(groupId).state === 'stable') return;
      for (const m of this.attached(groupId)) m.ack();
    }
    throw new Error(`group ${groupId} did not settle`);
  }

  /** The invariants, over every live group. Plain checks and one expect: this runs after every step. */
  check(): void {
    const faults: string[] = [];
    for (const listing of this.coordinator.listGroups()) {
      if (listing.members === 0) continue;
      const group = this.coordinator.describeGroup(listing.groupId);
      const holders = new Map<string, string>();
      for (const m of group.members) {
        for (const p of [...m.partitions, ...m.revoking]) {
          if (holders.has(key(p))) faults.push(`${key(p)} held by ${holders.get(key(p))} and ${m.memberId}`);
          holders.set(key(p), m.memberId);
        }
        // What it is revoking may be of a topic it just left; what it may consume may not.
        for (const p of m.partitions) if (!m.topics.includes(p.topic)) faults.push(`${m.memberId} consumes ${key(p)} outside its subscription`);
      }
      const believed = new Map<string, string>();
      for (const tm of this.attached(listing.groupId)) {
        for (const k of tm.owned) {
          if (believed.has(k)) faults.push(`${k} consumed by ${believed.get(k)} and ${tm.id}`);
          believed.set(k, tm.id);
        }
      }
      if (group.state === 'stable') {
        const subscribed = new Set(group.members.flatMap((m) => m.topics));
        const expected = [...subscribed].flatMap((t) => all(t, this.counts.get(t) ?? 0)).sort();
        if (JSON.stringify([...holders.keys()].sort()) !== JSON.stringify(expected)) faults.push('stable, but not every partition has one owner');
        for (const m of group.members) if (m.revoking.length > 0) faults.push(`stable, but ${m.memberId} is revoking`);
      }
    }
    expect(faults).toEqual([]);
  }

  /** Everything a rejected call must leave unchanged. */
  snapshot(): string {
    const groups = this.coordinator.listGroups();
    const described = groups.map((g) => this.coordinator.describeGroup(g.groupId));
    const stored = groups.map((g) => this.store.get(g.groupId));
    const pushes = this.members.map((m) => m.pushes.length);
    return JSON.stringify({ groups, described, stored, commits: this.store.commits, pushes, timers: this.clock.pending });
  }

  expectRejected(call: () => unknown, code: ErrorCode): void {
    const before = this.snapshot();
    let thrown: unknown;
    try {
      call();
    } catch (err) {
      thrown = err;
    }
    expect(thrown, `expected ${code}`).toBeInstanceOf(SluiceError);
    expect((thrown as SluiceError).code).toBe(code);
    expect(this.snapshot()).toEqual(before);
  }

  async expectRejectedAsync(call: () => Promise<unknown>, code: ErrorCode): Promise<void> {
    const before = this.snapshot();
    let thrown: unknown;
    try {
      await call();
    } catch (err) {
      thrown = err;
    }
    expect(thrown, `expected ${code}`).toBeInstanceOf(SluiceError);
    expect((thrown as SluiceError).code).toBe(code);
    expect(this.snapshot()).toEqual(before);
  }
}

const setup = (topics: Record<string, number> = { t: 12 }): Harness => new Harness(topics);

// ---------------------------------------------------------------- assignment and reconciliation

describe('group coordinator: assignment and cooperative reconciliation', () => {
  it('brings 3 members of a 12-partition topic to 4 partitions each, moving only what must move', () => {
    const h = setup({ t: 12 });
    const a = h.join();
    expect(a.owned).toEqual(all('t', 12));
    expect(a.assignment.generation).toBe(1);
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'stable', generation: 1, assignor: 'sticky' });

    const b = h.join();
    expect(b.assignment).toMatchObject({ generation: 2, partitions: [] });
    expect(a.pushes).toHaveLength(1);
    expect(a.assignment.generation).toBe(2);
    expect(a.owned).toEqual(all('t', 6));
    expect(h.coordinator.describeGroup('g').state).toBe('reconciling');
    a.ack();
    expect(b.pushes).toHaveLength(1);
    expect(b.owned).toEqual(['t:6', 't:7', 't:8', 't:9', 't:10', 't:11']);

    const c = h.join();
    expect(c.owned).toEqual([]);
    expect(a.owned).toHaveLength(4);
    expect(b.owned).toHaveLength(4);
    a.ack();
    expect(c.owned).toHaveLength(2);
    b.ack();
    expect(c.owned).toHaveLength(4);
    const group = h.coordinator.describeGroup('g');
    expect(group).toMatchObject({ state: 'stable', generation: 3 });
    expect(group.members.map((m) => m.partitions.length)).toEqual([4, 4, 4]);
    expect([a.pushes.length, b.pushes.length, c.pushes.length]).toEqual([2, 2, 2]);
  });

  it('sticky: a third member takes exactly one partition from each of two, which keep the same other two', () => {
    const h = setup({ t: 6 });
    const a = h.join();
    const b = h.join();
    h.settle();
    const before = [a.owned, b.owned];
    expect(before.map((o) => o.length)).toEqual([3, 3]);
    const c = h.join();
    for (const [i, m] of [a, b].entries()) {
      expect(m.owned).toHaveLength(2);
      expect(before[i]).toEqual(expect.arrayContaining(m.owned));
    }
    h.settle();
    expect(c.owned.sort()).toEqual([...before[0], ...before[1]].filter((k) => !a.owned.includes(k) && !b.owned.includes(k)).sort());
  });

  it('keeps a revoked partition from its new owner until the old owner acknowledges the revoking generation', () => {
    const h = setup({ t: 12 });
    const a = h.join();
    const b = h.join();
    expect(h.coordinator.describeGroup('g').members[0].revoking).toHaveLength(6);
    h.coordinator.heartbeat('g', a.id, 1); // an older generation acknowledges nothing
    expect(b.owned).toEqual([]);
    expect(h.coordinator.describeGroup('g').state).toBe('reconciling');
    h.expectRejected(() => h.coordinator.heartbeat('g', a.id, 3), 'ILLEGAL_GENERATION');
    a.ack();
    expect(b.owned).toHaveLength(6);
    expect(b.pushes).toHaveLength(1);
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
  });

  it('frees a dead member’s partitions at its session timeout and moves only those', () => {
    const h = setup({ t: 12 });
    const [a, b, c] = [h.join(), h.join(), h.join()];
    h.settle();
    const before = [a.owned, b.owned];
    for (let i = 0; i < 4; i++) {
      h.clock.advance(3_000);
      a.ack();
      b.ack();
      h.check();
    }
    expect(h.clock.nowMs).toBeGreaterThan(SESSION_MS);
    expect(h.logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'group member removed: session expired', o: expect.objectContaining({ memberId: c.id }) }));
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'stable', members: [{ memberId: a.id }, { memberId: b.id }] });
    for (const [i, m] of [a, b].entries()) {
      expect(m.owned).toHaveLength(6);
      expect(m.owned).toEqual(expect.arrayContaining(before[i]));
    }
    h.expectRejected(() => c.ack(), 'UNKNOWN_MEMBER_ID');
  });

  it('frees a leaving member’s partitions at once, with one push to each member that gains', () => {
    const h = setup({ t: 12 });
    const [a, b, c] = [h.join(), h.join(), h.join()];
    h.settle();
    const before = [a.owned, c.owned];
    const pushes = [a.pushes.length, c.pushes.length];
    h.coordinator.leave('g', b.id);
    h.check();
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
    expect([a.pushes.length - pushes[0], c.pushes.length - pushes[1]]).toEqual([1, 1]);
    for (const [i, m] of [a, c].entries()) {
      expect(m.owned).toHaveLength(6);
      expect(m.owned).toEqual(expect.arrayContaining(before[i]));
    }
    h.expectRejected(() => h.coordinator.leave('g', b.id), 'UNKNOWN_MEMBER_ID');
  });

  it('fences a member that does not acknowledge a revocation within its rebalance timeout', () => {
    const h = setup({ t: 12 });
    const a = h.join({ sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 2_000 });
    const b = h.join();
    h.clock.advance(1_000);
    h.coordinator.heartbeat('g', a.id, 1); // alive, but has not applied generation 2
    h.clock.advance(999);
    expect(h.coordinator.describeGroup('g').members).toHaveLength(2);
    h.clock.advance(1);
    expect(h.logs).toContainEqual(expect.objectContaining({ msg: 'group member removed: rebalance timeout', o: expect.objectContaining({ memberId: a.id }) }));
    expect(b.owned).toEqual(all('t', 12));
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'stable', members: [{ memberId: b.id }] });
    h.expectRejected(() => a.ack(), 'UNKNOWN_MEMBER_ID');
  });

  it('does not fence a member that acknowledges in time, and clears the rebalance timer', () => {
    const h = setup({ t: 12 });
    const a = h.join({ rebalanceTimeoutMs: 2_000 });
    const b = h.join({ rebalanceTimeoutMs: 2_000 });
    h.clock.advance(1_999);
    a.ack();
    b.ack();
    const timers = h.clock.pending;
    expect(timers).toBe(2); // one session timer each
    for (let i = 0; i < 10; i++) {
      h.clock.advance(3_000);
      a.ack();
      b.ack();
    }
    expect(h.coordinator.describeGroup('g').members).toHaveLength(2);
  });

  it('hands a partition back to a member that is still revoking it when its target returns it', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const b = h.join();
    expect(a.owned).toEqual(['t:0', 't:1']);
    h.coordinator.leave('g', b.id); // before a released t:2 and t:3
    expect(a.owned).toEqual(all('t', 4));
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'stable', members: [{ revoking: [] }] });
  });

  it('reconciles 10 members of a 100-partition topic in one pass when one leaves', () => {
    const h = setup({ t: 100 });
    const members = Array.from({ length: 10 }, () => h.join());
    h.settle();
    expect(members.map((m) => m.owned.length)).toEqual(new Array(10).fill(10));
    const before = members.map((m) => m.owned);
    const pushes = members.map((m) => m.pushes.length);
    h.coordinator.leave('g', members[5].id);
    const group = h.coordinator.describeGroup('g');
    expect(group.state).toBe('stable');
    members.forEach((m, i) => {
      if (i === 5) return;
      expect(m.pushes.length - pushes[i]).toBe(1);
      expect(m.owned).toEqual(expect.arrayContaining(before[i]));
    });
    expect(group.members.map((m) => m.partitions.length).sort()).toEqual([11, 11, 11, 11, 11, 11, 11, 11, 12]);
  });

  it('gives out added partitions on topicsChanged without revoking anything', () => {
    const h = setup({ t: 4 });
    const [a, b] = [h.join(), h.join()];
    h.settle();
    const epoch = h.coordinator.describeGroup('g').generation;
    const before = [a.owned, b.owned];
    h.counts.set('t', 8);
    h.coordinator.topicsChanged();
    const group = h.coordinator.describeGroup('g');
    expect(group).toMatchObject({ state: 'stable', generation: epoch + 1 });
    for (const [i, m] of [a, b].entries()) {
      expect(m.owned).toHaveLength(4);
      expect(m.owned).toEqual(expect.arrayContaining(before[i]));
      expect(m.assignment.generation).toBe(epoch + 1);
    }
    h.coordinator.topicsChanged(); // nothing changed: no new epoch, no push
    expect(h.coordinator.describeGroup('g').generation).toBe(epoch + 1);
    expect(a.pushes.at(-1)!.generation).toBe(epoch + 1);
  });

  it('drops the partitions of a deleted topic at once, without throwing, and gives them back when it returns', () => {
    const h = setup({ t: 2, u: 2 });
    const a = h.join({ topics: ['t', 'u'] });
    const b = h.join({ topics: ['t'] });
    h.settle();
    expect(a.owned.filter((k) => k.startsWith('u'))).toEqual(['u:0', 'u:1']);
    h.counts.delete('u');
    h.coordinator.topicsChanged();
    expect(a.owned.filter((k) => k.startsWith('u'))).toEqual([]);
    const group = h.coordinator.describeGroup('g');
    expect(group.members.flatMap((m) => m.revoking).filter((p) => p.topic === 'u')).toEqual([]);
    expect(group.members[0].topics).toEqual(['t', 'u']); // the subscription stays
    h.settle();
    a.ack();
    b.ack();
    h.counts.set('u', 3);
    h.coordinator.topicsChanged();
    h.settle();
    expect(a.owned.filter((k) => k.startsWith('u'))).toEqual(['u:0', 'u:1', 'u:2']);
  });

  it('moves a member to its new subscription when it joins again with its memberId', () => {
    const h = setup({ t: 4, u: 4 });
    const a = h.join({ topics: ['t'] });
    const b = h.join({ topics: ['t'] });
    h.settle();
    const again = h.coordinator.join({ ...a.request, memberId: a.id, topics: ['t', 'u'] }, a.listener);
    a.assignment = again;
    h.settle();
    expect(h.coordinator.describeGroup('g').members.find((m) => m.memberId === a.id)!.topics).toEqual(['t', 'u']);
    expect([...a.owned, ...b.owned].sort()).toEqual([...all('t', 4), ...all('u', 4)].sort());
    expect(a.owned.filter((k) => k.startsWith('u'))).toHaveLength(4);
  });

  it('lets the only member change the assignor, and refuses another one to a non-empty group', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    a.assignment = h.coordinator.join({ ...a.request, memberId: a.id, assignor: 'range' }, a.listener);
    expect(h.coordinator.describeGroup('g').assignor).toBe('range');
    h.expectRejected(() => h.join({ assignor: 'sticky' }), 'INCONSISTENT_GROUP_PROTOCOL');
    h.expectRejected(() => h.join(), 'INCONSISTENT_GROUP_PROTOCOL'); // the default is sticky
    const b = h.join({ assignor: 'range' });
    h.settle();
    expect([a.owned, b.owned]).toEqual([['t:0', 't:1'], ['t:2', 't:3']]);
  });

  it('assigns in (instanceId ?? memberId) order, so static members keep their places', () => {
    const h = setup({ t: 4 });
    const z = h.join({ instanceId: 'z', assignor: 'range' });
    const a = h.join({ instanceId: 'a', assignor: 'range' });
    h.settle();
    expect(a.owned).toEqual(['t:0', 't:1']);
    expect(z.owned).toEqual(['t:2', 't:3']);
    expect(h.coordinator.describeGroup('g').members.map((m) => m.instanceId)).toEqual(['a', 'z']);
  });

  it('reports the heartbeat interval as a third of the session timeout', () => {
    const h = setup({ t: 1 });
    expect(h.join({ sessionTimeoutMs: 500 }).assignment.heartbeatIntervalMs).toBe(166);
    expect(h.join({ sessionTimeoutMs: 10_000 }).assignment.heartbeatIntervalMs).toBe(3_333);
  });
});

// ---------------------------------------------------------------- sessions, fencing, static members

describe('group coordinator: sessions and fencing', () => {
  it('keeps a member alive while it calls, whichever call it makes', async () => {
    const h = setup({ t: 2 });
    const a = h.join();
    for (let i = 0; i < 5; i++) {
      h.clock.advance(9_000);
      a.ack();
      h.clock.advance(9_000);
      await a.commit(['t:0']);
      h.clock.advance(9_000);
      h.coordinator.fetchCommitted('g', a.id, a.assignment.generation);
    }
    expect(h.coordinator.describeGroup('g').members).toHaveLength(1);
    h.clock.advance(SESSION_MS);
    expect(() => h.coordinator.describeGroup('g')).not.toThrow(); // known from its offsets
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'empty', members: [] });
  });

  it('fences a zombie: a member paused past its session gets UNKNOWN_MEMBER_ID on commit', async () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const b = h.join();
    h.settle();
    for (let i = 0; i < 4; i++) {
      h.clock.advance(3_000);
      b.ack();
    }
    await h.expectRejectedAsync(() => a.commit([a.owned[0]]), 'UNKNOWN_MEMBER_ID');
    expect(h.store.commits).toBe(0);
    h.expectRejected(() => a.ack(), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(() => h.coordinator.fetchCommitted('g', a.id, a.assignment.generation), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(() => h.coordinator.join({ ...a.request, memberId: a.id }, a.listener), 'UNKNOWN_MEMBER_ID');
    expect(b.owned).toEqual(all('t', 4));
  });

  it('lets a member commit a partition it is revoking until it releases it, then ILLEGAL_GENERATION for the old generation', async () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const b = h.join();
    expect(a.assignment.generation).toBe(2);
    expect(h.coordinator.describeGroup('g').members[0].revoking.map(key)).toEqual(['t:2', 't:3']);
    await a.commit(['t:2'], 2); // revoking, not yet released
    await a.commit(['t:3'], 1); // an older generation, still held
    a.ack();
    expect(b.owned).toEqual(['t:2', 't:3']);
    await h.expectRejectedAsync(() => a.commit(['t:3'], 1), 'ILLEGAL_GENERATION');
    await h.expectRejectedAsync(() => a.commit(['t:3'], 2), 'PARTITION_NOT_ASSIGNED');
    await h.expectRejectedAsync(() => a.commit(['t:0'], 3), 'ILLEGAL_GENERATION');
    await b.commit(['t:3']);
    expect(h.coordinator.fetchCommitted('g', '', -1).map((c) => [key(c), c.offset])).toEqual([['t:2', 42], ['t:3', 42]]);
  });

  it('replaces a static member: the new one takes its partitions and generation; the old one is fenced (FENCED_INSTANCE_ID)', async () => {
    const h = setup({ t: 6 });
    const a = h.join({ instanceId: 'i-a' });
    const b = h.join({ instanceId: 'i-b' });
    h.settle();
    const epoch = h.coordinator.describeGroup('g').generation;
    const bPushes = b.pushes.length;
    const a2 = h.join({ instanceId: 'i-a', clientId: 'c2' });
    expect(a2.id).not.toBe(a.id);
    expect(a2.id.startsWith('c2-')).toBe(true);
    expect(a2.assignment.partitions).toEqual(a.assignment.partitions);
    expect(a2.assignment.generation).toBe(a.assignment.generation);
    expect(h.coordinator.describeGroup('g')).toMatchObject({ state: 'stable', generation: epoch });
    expect(b.pushes.length).toBe(bPushes);
    expect(h.logs).toContainEqual(expect.objectContaining({ msg: 'static group member replaced', o: expect.objectContaining({ replacedMemberId: a.id }) }));
    // The old process (two given one instanceId) learns it is fenced for good, as with Kafka's FENCED_INSTANCE_ID, rather than joining again and replacing the new one.
    h.expectRejected(() => a.ack(), 'FENCED_INSTANCE_ID');
    await h.expectRejectedAsync(() => a.commit(a.owned), 'FENCED_INSTANCE_ID');
    h.expectRejected(() => h.coordinator.join({ ...a.request, memberId: a.id }, a.listener), 'FENCED_INSTANCE_ID');
    await a2.commit(a2.owned);
    expect(h.coordinator.describeGroup('g').members.map((m) => [m.instanceId, m.clientId])).toEqual([['i-a', 'c2'], ['i-b', 'c']]);
  });

  it('releases at once what a replaced static member was revoking', () => {
    const h = setup({ t: 6 });
    h.join({ instanceId: 'i-a' });
    const b = h.join({ instanceId: 'i-b' });
    h.settle();
    const c = h.join({ instanceId: 'i-c' });
    expect(c.owned).toEqual([]);
    h.join({ instanceId: 'i-a' }); // the new incarnation never consumed what the old one was giving up
    expect(c.owned).toHaveLength(1);
    b.ack();
    expect(c.owned).toHaveLength(2);
    h.check();
  });

  it('refuses a re-join that claims another instance id', () => {
    const h = setup({ t: 2 });
    const a = h.join({ instanceId: 'i-a' });
    h.expectRejected(() => h.coordinator.join({ ...a.request, memberId: a.id, instanceId: 'i-b' }, a.listener), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(() => h.coordinator.join({ ...a.request, memberId: a.id, instanceId: undefined }, a.listener), 'UNKNOWN_MEMBER_ID');
  });
});

// ---------------------------------------------------------------- listeners

describe('group coordinator: listeners', () => {
  it('tells a member each new assignment once, never what join or heartbeat just returned', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    expect(a.pushes).toEqual([]);
    h.join();
    expect(a.pushes.map((p) => keys(p.partitions))).toEqual([['t:0', 't:1']]);
    a.ack();
    expect(a.pushes).toHaveLength(1);
  });

  it('stops calling a detached member, which stays until its session ends and can attach again', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    h.coordinator.detach('g', a.id);
    a.detached = true;
    const b = h.join();
    expect(a.pushes).toEqual([]);
    expect(keys(h.coordinator.heartbeat('g', a.id, 1).partitions)).toEqual(['t:0', 't:1']); // polling still works
    const again = h.coordinator.join({ ...a.request, memberId: a.id }, a.listener);
    a.detached = false;
    a.assignment = again;
    expect(again.memberId).toBe(a.id);
    a.ack();
    expect(b.owned).toEqual(['t:2', 't:3']);
    h.coordinator.leave('g', b.id);
    expect(a.pushes.map((p) => keys(p.partitions))).toEqual([all('t', 4)]);
  });

  it('ignores a detach naming a listener the member no longer has, or a member already gone', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const oldListener: AssignmentListener = () => {};
    h.coordinator.detach('g', a.id, oldListener);
    h.coordinator.detach('g', 'gone', oldListener);
    h.coordinator.detach('nope', 'gone');
    h.join();
    expect(a.pushes).toHaveLength(1);
    h.coordinator.detach('g', a.id, a.listener);
    h.coordinator.join({ ...h.members[1].request, memberId: h.members[1].id, topics: ['t'] }, h.members[1].listener);
    h.coordinator.leave('g', h.members[1].id);
    expect(a.pushes).toHaveLength(1);
  });

  it('logs a listener that throws and still tells the others', () => {
    const h = setup({ t: 6 });
    const a = h.join();
    const b = h.join();
    a.ack();
    a.onPush = () => {
      throw new Error('boom');
    };
    h.join();
    expect(h.logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'assignment listener threw' }));
    expect(a.pushes).toHaveLength(2);
    expect(b.pushes).toHaveLength(2);
  });

  it('accepts calls from inside a listener (a member that acknowledges as soon as it is told)', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    a.onPush = () => a.ack();
    const b = h.join();
    // a was told, acknowledged from its listener, and b was told its partitions before join returned.
    expect(b.assignment.partitions.map(key)).toEqual(['t:2', 't:3']);
    expect(b.pushes).toHaveLength(1);
    expect(h.coordinator.describeGroup('g').state).toBe('stable');
  });
});

// ---------------------------------------------------------------- offsets and admin

describe('group coordinator: offsets and admin', () => {
  it('commits and resets offsets of a group without members, and lists and describes it', async () => {
    const h = setup({ t: 2, v: 1 });
    await h.coordinator.commitOffsets('g', '', -1, [{ topic: 't', partition: 0, offset: 5, metadata: 'm' }]);
    h.clock.advance(7);
    await h.coordinator.resetOffsets('g', [{ topic: 't', partition: 0, offset: 1, metadata: '' }, { topic: 'v', partition: 0, offset: 9, metadata: '' }]);
    expect(h.coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'empty', members: 0, assignor: null }]);
    expect(h.coordinator.describeGroup('g')).toEqual({
      groupId: 'g',
      state: 'empty',
      generation: 0,
      assignor: null,
      members: [],
      offsets: [
        { topic: 't', partition: 0, offset: 1, metadata: '', commitTimestamp: 7 },
        { topic: 'v', partition: 0, offset: 9, metadata: '', commitTimestamp: 7 },
      ],
    });
    expect(h.coordinator.fetchCommitted('g', '', -1, [{ topic: 'v', partition: 0 }, { topic: 't', partition: 1 }]).map(key)).toEqual(['v:0']);
    expect(h.coordinator.fetchCommitted('unknown', '', -1)).toEqual([]);
    await h.coordinator.resetOffsets('fresh', []); // nothing to store: the group stays unknown
    h.expectRejected(() => h.coordinator.describeGroup('fresh'), 'GROUP_ID_NOT_FOUND');

    const a = h.join({ topics: ['t'] });
    expect(h.coordinator.listGroups()).toEqual([{ groupId: 'g', state: 'stable', members: 1, assignor: 'sticky' }]);
    await h.expectRejectedAsync(() => h.coordinator.resetOffsets('g', [{ topic: 't', partition: 0, offset: 0, metadata: '' }]), 'NON_EMPTY_GROUP');
    await h.expectRejectedAsync(() => h.coordinator.commitOffsets('g', '', -1, [{ topic: 't', partition: 0, offset: 0, metadata: '' }]), 'UNKNOWN_MEMBER_ID');
    // A member reads any partition of its subscription, not others; without a list, its subscribed topics.
    expect(h.coordinator.fetchCommitted('g', a.id, a.assignment.generation).map(key)).toEqual(['t:0']);
    h.expectRejected(() => h.coordinator.fetchCommitted('g', a.id, a.assignment.generation, [{ topic: 'v', partition: 0 }]), 'INVALID_ARGUMENT');
    h.coordinator.leave('g', a.id);
    await h.coordinator.resetOffsets('g', [{ topic: 't', partition: 0, offset: 0, metadata: '' }]);
    expect(h.coordinator.fetchCommitted('g', '', -1, [{ topic: 't', partition: 0 }])[0].offset).toBe(0);
  });

  it('lets a member read committed offsets of partitions it does not hold', async () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const b = h.join();
    h.settle();
    await a.commit(a.owned, undefined, 7);
    const read = h.coordinator.fetchCommitted('g', b.id, b.assignment.generation, [{ topic: 't', partition: 0 }, { topic: 't', partition: 3 }]);
    expect(read.map((c) => [key(c), c.offset])).toEqual([['t:0', 7]]);
  });

  it('turns a storage failure into STORAGE_ERROR and passes typed errors through', async () => {
    const h = setup({ t: 1 });
    const entry = [{ topic: 't', partition: 0, offset: 1, metadata: '' }];
    h.store.failNext = new Error('disk on fire');
    await expect(h.coordinator.resetOffsets('g', entry)).rejects.toMatchObject({ code: 'STORAGE_ERROR', retriable: true });
    h.store.failNext = new SluiceError('THROTTLED', 'busy', { backoffMs: 5 });
    await expect(h.coordinator.resetOffsets('g', entry)).rejects.toMatchObject({ code: 'THROTTLED', backoffMs: 5 });
    expect(h.store.get('g')).toEqual([]);
  });

  it('accepts metadata of exactly OFFSET_METADATA_BYTES_MAX bytes and a group id of 255 UTF-8 bytes', async () => {
    const h = setup({ t: 1 });
    const groupId = 'é'.repeat(127) + 'e';
    await h.coordinator.resetOffsets(groupId, [{ topic: 't', partition: 0, offset: 0, metadata: 'é'.repeat(OFFSET_METADATA_BYTES_MAX / 2) }]);
    expect(h.coordinator.describeGroup(groupId).offsets).toHaveLength(1);
  });

  it('stops on close: timers cleared, later calls ENGINE_CLOSED', () => {
    const h = setup({ t: 2 });
    const a = h.join();
    h.join();
    expect(h.clock.pending).toBeGreaterThan(0);
    h.coordinator.close();
    expect(h.clock.pending).toBe(0);
    expect(() => a.ack()).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }));
    expect(() => h.coordinator.listGroups()).toThrow(expect.objectContaining({ code: 'ENGINE_CLOSED' }));
    h.coordinator.close();
  });
});

// ---------------------------------------------------------------- bad input

describe('group coordinator: bad input is refused with a typed error and changes nothing', () => {
  const base = (): JoinRequest => ({ groupId: 'g', memberId: '', clientId: 'c', topics: ['t'], sessionTimeoutMs: SESSION_MS });

  it('join', () => {
    const h = setup({ t: 4, u: 2 });
    const a = h.join();
    const noop: AssignmentListener = () => {};
    const bad = (request: unknown, code: ErrorCode, ...listener: unknown[]): void =>
      h.expectRejected(() => h.coordinator.join(request as JoinRequest, (listener.length > 0 ? listener[0] : noop) as AssignmentListener), code);
    const cases: [Record<string, unknown>, ErrorCode][] = [
      [{ groupId: 42 }, 'INVALID_GROUP_ID'],
      [{ groupId: '' }, 'INVALID_GROUP_ID'],
      [{ groupId: undefined }, 'INVALID_GROUP_ID'],
      [{ groupId: 'x'.repeat(256) }, 'INVALID_GROUP_ID'],
      [{ groupId: 'é'.repeat(128) }, 'INVALID_GROUP_ID'],
      [{ memberId: 7 }, 'INVALID_ARGUMENT'],
      [{ memberId: undefined }, 'INVALID_ARGUMENT'],
      [{ memberId: 'x'.repeat(300) }, 'INVALID_ARGUMENT'],
      [{ memberId: 'nobody' }, 'UNKNOWN_MEMBER_ID'],
      [{ groupId: 'other', memberId: a.id }, 'UNKNOWN_MEMBER_ID'],
      [{ instanceId: '' }, 'INVALID_ARGUMENT'],
      [{ instanceId: 5 }, 'INVALID_ARGUMENT'],
      [{ instanceId: 'x'.repeat(256) }, 'INVALID_ARGUMENT'],
      [{ clientId: undefined }, 'INVALID_ARGUMENT'],
      [{ clientId: 5 }, 'INVALID_ARGUMENT'],
      [{ clientId: 'x'.repeat(256) }, 'INVALID_ARGUMENT'],
      [{ topics: 't' }, 'INVALID_ARGUMENT'],
      [{ topics: [] }, 'INVALID_ARGUMENT'],
      [{ topics: undefined }, 'INVALID_ARGUMENT'],
      [{ topics: Array.from({ length: 1001 }, (_, i) => `t${i}`) }, 'INVALID_ARGUMENT'],
      [{ topics: ['t', 't'] }, 'INVALID_ARGUMENT'],
      [{ topics: ['t', 'nope'] }, 'UNKNOWN_TOPIC_OR_PARTITION'],
      [{ topics: ['a/b'] }, 'INVALID_TOPIC'],
      [{ topics: [5] }, 'INVALID_TOPIC'],
      [{ sessionTimeoutMs: 499 }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: 30 * 60_000 + 1 }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: -1 }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: Number.NaN }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: Infinity }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: 1000.5 }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: '1000' }, 'INVALID_SESSION_TIMEOUT'],
      [{ sessionTimeoutMs: undefined }, 'INVALID_SESSION_TIMEOUT'],
      [{ rebalanceTimeoutMs: 100 }, 'INVALID_SESSION_TIMEOUT'],
      [{ rebalanceTimeoutMs: '5000' }, 'INVALID_SESSION_TIMEOUT'],
      [{ assignor: 'cooperative-sticky' }, 'INVALID_ARGUMENT'],
      [{ assignor: 5 }, 'INVALID_ARGUMENT'],
      [{ assignor: 'range' }, 'INCONSISTENT_GROUP_PROTOCOL'],
      [{ memberId: a.id, instanceId: 'i' }, 'UNKNOWN_MEMBER_ID'],
    ];
    for (const [override, code] of cases) {
      try {
        bad({ ...base(), ...override }, code);
      } catch (err) {
        throw new Error(`join with ${JSON.stringify(override).slice(0, 80)}: ${String(err)}`);
      }
    }
    bad(null, 'INVALID_ARGUMENT');
    bad('g', 'INVALID_ARGUMENT');
    bad(base(), 'INVALID_ARGUMENT', undefined);
    bad(base(), 'INVALID_ARGUMENT', 'listener');
  });

  it('heartbeat, leave, detach, describe', () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const gen = a.assignment.generation;
    const heartbeat = (g: unknown, m: unknown, n: unknown) => () => h.coordinator.heartbeat(g as string, m as string, n as number);
    h.expectRejected(heartbeat('', a.id, gen), 'INVALID_GROUP_ID');
    h.expectRejected(heartbeat(5, a.id, gen), 'INVALID_GROUP_ID');
    h.expectRejected(heartbeat('nope', a.id, gen), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(heartbeat('g', 'nope', gen), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(heartbeat('g', '', gen), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(heartbeat('g', 5, gen), 'INVALID_ARGUMENT');
    h.expectRejected(heartbeat('g', a.id, gen + 1), 'ILLEGAL_GENERATION');
    h.expectRejected(heartbeat('g', a.id, -1), 'INVALID_ARGUMENT');
    h.expectRejected(heartbeat('g', a.id, '1'), 'INVALID_ARGUMENT');
    h.expectRejected(heartbeat('g', a.id, 0.5), 'INVALID_ARGUMENT');
    h.expectRejected(heartbeat('g', a.id, undefined), 'INVALID_ARGUMENT');
    h.expectRejected(() => h.coordinator.leave('g', 'nope'), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(() => h.coordinator.leave('', a.id), 'INVALID_GROUP_ID');
    h.expectRejected(() => h.coordinator.leave('g', null as unknown as string), 'INVALID_ARGUMENT');
    h.expectRejected(() => h.coordinator.detach(5 as unknown as string, a.id), 'INVALID_GROUP_ID');
    h.expectRejected(() => h.coordinator.detach('g', a.id, 'x' as unknown as AssignmentListener), 'INVALID_ARGUMENT');
    h.expectRejected(() => h.coordinator.describeGroup('nope'), 'GROUP_ID_NOT_FOUND');
    h.expectRejected(() => h.coordinator.describeGroup(5 as unknown as string), 'INVALID_GROUP_ID');
  });

  it('commitOffsets and resetOffsets: all or nothing', async () => {
    const h = setup({ t: 4 });
    const a = h.join();
    const b = h.join();
    h.settle();
    const gen = a.assignment.generation;
    const mine = { topic: 't', partition: Number(a.owned[0].split(':')[1]), offset: 5, metadata: '' };
    const theirs = { ...mine, partition: Number(b.owned[0].split(':')[1]) };
    const commit = (offsets: unknown, memberId: unknown = a.id, generation: unknown = gen) => () =>
      h.coordinator.commitOffsets('g', memberId as string, generation as number, offsets as OffsetToCommit[]);
    const cases: [() => Promise<void>, ErrorCode][] = [
      [commit([mine], 'nope'), 'UNKNOWN_MEMBER_ID'],
      [commit([mine], a.id, gen + 1), 'ILLEGAL_GENERATION'],
      [commit([mine], a.id, -1), 'INVALID_ARGUMENT'],
      [commit([mine], '', gen), 'INVALID_ARGUMENT'],
      [commit([mine], a.id, '1'), 'INVALID_ARGUMENT'],
      [commit([mine, theirs]), 'PARTITION_NOT_ASSIGNED'],
      [commit([mine, mine]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, offset: -1 }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, offset: 2 ** 53 }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, offset: 1.5 }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, offset: '5' }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, offset: Number.NaN }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, metadata: 'é'.repeat(OFFSET_METADATA_BYTES_MAX / 2) + 'e' }]), 'OFFSET_METADATA_TOO_LARGE'],
      [commit([{ ...mine, metadata: 5 }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, metadata: undefined }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, topic: 'nope' }]), 'UNKNOWN_TOPIC_OR_PARTITION'],
      [commit([{ ...mine, topic: 'a b' }]), 'INVALID_TOPIC'],
      [commit([{ ...mine, partition: 4 }]), 'UNKNOWN_TOPIC_OR_PARTITION'],
      [commit([{ ...mine, partition: -1 }]), 'INVALID_ARGUMENT'],
      [commit([{ ...mine, partition: '0' }]), 'INVALID_ARGUMENT'],
      [commit([mine, null]), 'INVALID_ARGUMENT'],
      [commit('t:0'), 'INVALID_ARGUMENT'],
      [commit(null), 'INVALID_ARGUMENT'],
      [commit(new Array(COMMIT_PARTITIONS_MAX + 1).fill(mine)), 'INVALID_ARGUMENT'],
      [() => h.coordinator.commitOffsets('', a.id, gen, [mine]), 'INVALID_GROUP_ID'],
      [() => h.coordinator.resetOffsets('g', [mine]), 'NON_EMPTY_GROUP'],
      [() => h.coordinator.resetOffsets('empty', [{ ...mine, offset: -5 }]), 'INVALID_ARGUMENT'],
      [() => h.coordinator.resetOffsets('empty', [{ ...mine, topic: 'nope' }]), 'UNKNOWN_TOPIC_OR_PARTITION'],
      [() => h.coordinator.resetOffsets(['g'] as unknown as string, [mine]), 'INVALID_GROUP_ID'],
    ];
    for (const [call, code] of cases) await h.expectRejectedAsync(call, code);
    expect(h.store.commits).toBe(0);
    await commit([mine])();
    expect(h.store.commits).toBe(1);
  });

  it('fetchCommitted', () => {
    const h = setup({ t: 4, u: 1 });
    const a = h.join();
    const gen = a.assignment.generation;
    const fetch = (memberId: unknown, generation: unknown, partitions?: unknown) => () =>
      h.coordinator.fetchCommitted('g', memberId as string, generation as number, partitions as TopicPartition[]);
    h.expectRejected(fetch('nope', gen), 'UNKNOWN_MEMBER_ID');
    h.expectRejected(fetch(a.id, gen + 1), 'ILLEGAL_GENERATION');
    h.expectRejected(fetch(a.id, -1), 'INVALID_ARGUMENT');
    h.expectRejected(fetch('', 0), 'INVALID_ARGUMENT');
    h.expectRejected(fetch(a.id, gen, [{ topic: 'u', partition: 0 }]), 'INVALID_ARGUMENT');
    h.expectRejected(fetch(a.id, gen, [{ topic: 't', partition: 4 }]), 'UNKNOWN_TOPIC_OR_PARTITION');
    h.expectRejected(fetch(a.id, gen, [{ topic: 't', partition: 1 }, { topic: 't', partition: 1 }]), 'INVALID_ARGUMENT');
    h.expectRejected(fetch(a.id, gen, [{ topic: 't', partition: 1.5 }]), 'INVALID_ARGUMENT');
    h.expectRejected(fetch(a.id, gen, [{ topic: '', partition: 1 }]), 'INVALID_TOPIC');
    h.expectRejected(fetch(a.id, gen, 'all'), 'INVALID_ARGUMENT');
    h.expectRejected(fetch('', -1, [null]), 'INVALID_ARGUMENT');
    h.expectRejected(() => h.coordinator.fetchCommitted('', '', -1), 'INVALID_GROUP_ID');
  });
});

// ---------------------------------------------------------------- limits

describe('group coordinator: limits', () => {
  it(`refuses member ${GROUP_MEMBERS_MAX + 1} of a group with GROUP_MAX_SIZE_REACHED, but not a re-join`, () => {
    const h = setup({ t: 1 });
    const noop: AssignmentListener = () => {};
    let first = '';
    for (let i = 0; i < GROUP_MEMBERS_MAX; i++) {
      const joined = h.coordinator.join({ groupId: 'g', memberId: '', clientId: 'c', topics: ['t'], sessionTimeoutMs: SESSION_MS }, noop);
      if (i === 0) first = joined.memberId;
    }
    h.expectRejected(() => h.coordinator.join({ groupId: 'g', memberId: '', clientId: 'c', topics: ['t'], sessionTimeoutMs: SESSION_MS }, noop), 'GROUP_MAX_SIZE_REACHED');
    expect(h.coordinator.join({ groupId: 'g', memberId: first, clientId: 'c', topics: ['t'], sessionTimeoutMs: SESSION_MS }, noop).memberId).toBe(first);
    expect(h.coordinator.describeGroup('g').members).toHaveLength(GROUP_MEMBERS_MAX);
  });

  it(`refuses live group ${GROUPS_MAX + 1} with GROUP_MAX_SIZE_REACHED`, () => {
    const h = setup({ t: 1 });
    const noop: AssignmentListener = () => {};
    const request = (groupId: string): JoinRequest => ({ groupId, memberId: '', clientId: 'c', topics: ['t'], sessionTimeoutMs: SESSION_MS });
    for (let i = 0; i < GROUPS_MAX; i++) h.coordinator.join(request(`g${i}`), noop);
    h.expectRejected(() => h.coordinator.join(request('one-too-many'), noop), 'GROUP_MAX_SIZE_REACHED');
    h.coordinator.join(request('g0'), noop); // a member for an existing group is fine
  });
});

// ---------------------------------------------------------------- random schedules

describe('group coordinator: random schedules (seeded)', () => {
  it('never lets two members hold or consume one partition, and converges to one owner per partition', async () => {
    const seed = testSeed();
    const random = seededRandom(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    const h = setup({ t: 7, u: 5, w: 3 });
    const subscriptions = [['t'], ['t', 'u'], ['u', 'w'], ['t', 'u', 'w']];
    for (let step = 0; step < 600; step++) {
      const live = h.attached();
      const roll = random();
      if (live.length === 0 || (roll < 0.15 && live.length < 7)) {
        h.join({ topics: pick(subscriptions), sessionTimeoutMs: 5_000, rebalanceTimeoutMs: 3_000, instanceId: random() < 0.3 ? pick(['s1', 's2', 's3']) : undefined });
      } else if (roll < 0.55) {
        pick(live).ack();
      } else if (roll < 0.65) {
        const m = pick(live);
        if (m.owned.length > 0) await m.commit([pick(m.owned)]);
      } else if (roll < 0.7) {
        const m = pick(live);
        h.coordinator.leave('g', m.id);
      } else if (roll < 0.73) {
        const m = pick(live);
        h.coordinator.detach('g', m.id, m.listener);
        m.detached = true;
      } else if (roll < 0.78) {
        const m = pick(live);
        m.assignment = h.coordinator.join({ ...m.request, memberId: m.id, topics: pick(subscriptions) }, m.listener);
      } else {
        h.clock.advance(Math.floor(random() * 2_000));
      }
      h.check();
    }
    // Detached members never acknowledge: let their sessions end while the others keep up.
    for (let i = 0; i < 5; i++) {
      h.clock.advance(2_000);
      for (const m of h.attached()) m.ack();
    }
    expect(h.coordinator.listGroups().find((g) => g.groupId === 'g')?.members ?? 0).toBe(h.attached().length);
    if (h.attached().length === 0) h.join({ topics: ['t', 'u', 'w'] });
    h.settle();
    h.check();
  });
});
