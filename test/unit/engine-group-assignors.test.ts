// The pure assignors of src/engine/assignors.ts: Kafka's worked examples, then seeded
// property tests of the invariants every assignor promises (coverage, eligibility,
// balance, determinism) and of sticky's promises (stickiness, fixpoint, roundrobin when
// nothing was owned before).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ASSIGNOR_NAMES,
  assignPartitions,
  assignRange,
  assignRoundRobin,
  assignSticky,
  compareTopicPartitions,
  isAssignorName,
  partitionKey,
  type AssignmentMap,
  type AssignorInput,
  type AssignorMember,
  type TopicPartition,
} from '../../src/engine/assignors.js';
import { testSeed } from './persist-helpers.js';

const tp = (topic: string, partition: number): TopicPartition => ({ topic, partition });
const counts = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));
const asObject = (a: AssignmentMap): Record<string, string[]> =>
  Object.fromEntries([...a].map(([id, list]) => [id, list.map((p) => partitionKey(p.topic, p.partition))]));
const sizes = (a: AssignmentMap): number[] => [...a.values()].map((l) => l.length);

/** Every partition of a subscribed, existing topic exactly once, to a subscriber; one sorted entry per member. */
function checkCoverage(input: AssignorInput, out: AssignmentMap): void {
  // Plain checks, one expect at the end: expect() per partition would dominate the run time.
  const faults: string[] = [];
  if ([...out.keys()].join() !== input.members.map((m) => m.id).join()) faults.push('not one entry per member, in order');
  const owners = new Set<string>();
  for (const member of input.members) {
    const list = out.get(member.id) ?? [];
    list.forEach((p, i) => {
      const key = partitionKey(p.topic, p.partition);
      if (i > 0 && compareTopicPartitions(list[i - 1], p) >= 0) faults.push(`${member.id}: list not sorted at ${key}`);
      if (!member.topics.includes(p.topic)) faults.push(`${member.id} got ${key} without subscribing`);
      const count = input.partitionCounts.get(p.topic);
      if (count === undefined || p.partition >= count) faults.push(`${key} does not exist`);
      if (owners.has(key)) faults.push(`${key} given twice`);
      owners.add(key);
    });
  }
  const subscribed = new Set(input.members.flatMap((m) => m.topics));
  for (const [topic, count] of input.partitionCounts) {
    if (!subscribed.has(topic)) continue;
    for (let p = 0; p < count; p++) if (!owners.has(partitionKey(topic, p))) faults.push(`${partitionKey(topic, p)} given to nobody`);
  }
  expect(faults).toEqual([]);
}

// ---------------------------------------------------------------- arbitraries

const TOPICS = ['a', 'b', 'c', 'd'];

/** Members with random subscriptions (some to topics that do not exist), topics with 1..24 partitions. */
const inputArb = fc
  .record({
    memberCount: fc.integer({ min: 1, max: 9 }),
    counts: fc.tuple(...TOPICS.map(() => fc.option(fc.integer({ min: 1, max: 24 }), { nil: undefined }))),
    subscriptions: fc.array(fc.subarray([...TOPICS, 'gone'], { minLength: 1 }), { minLength: 9, maxLength: 9 }),
  })
  .map(({ memberCount, counts: cs, subscriptions }): AssignorInput => ({
    members: Array.from({ length: memberCount }, (_, i) => ({ id: `m${String(i).padStart(2, '0')}`, topics: subscriptions[i] })),
    partitionCounts: new Map(TOPICS.flatMap((t, i) => (cs[i] === undefined ? [] : [[t, cs[i]!] as [string, number]]))),
  }));

/** All members subscribe to the same topics. */
const uniformInputArb = fc
  .record({
    memberCount: fc.integer({ min: 1, max: 12 }),
    partitions: fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 4 }),
  })
  .map(({ memberCount, partitions }): AssignorInput => {
    const topics = partitions.map((_, i) => TOPICS[i]);
    return {
      members: Array.from({ length: memberCount }, (_, i) => ({ id: `m${String(i).padStart(2, '0')}`, topics })),
      partitionCounts: new Map(topics.map((t, i) => [t, partitions[i]])),
    };
  });

/** A random previous ownership for sticky: any member, any partition, some stale or duplicated. */
function previousArb(input: AssignorInput): fc.Arbitrary<Map<string, TopicPartition[]>> {
  const ids = [...input.members.map((m) => m.id), 'departed'];
  const partition = fc.record({ topic: fc.constantFrom(...TOPICS, 'gone'), partition: fc.integer({ min: -1, max: 30 }) });
  return fc.array(fc.tuple(fc.constantFrom(...ids), partition), { maxLength: 80 }).map((pairs) => {
    const prev = new Map<string, TopicPartition[]>();
    for (const [id, p] of pairs) prev.set(id, [...(prev.get(id) ?? []), p]);
    return prev;
  });
}

// ---------------------------------------------------------------- examples

describe('assignors: worked examples', () => {
  it('range splits each topic into contiguous ranges, the first members getting one more (Kafka RangeAssignor)', () => {
    const out = assignRange({
      members: [{ id: 'c0', topics: ['t0', 't1'] }, { id: 'c1', topics: ['t1', 't0'] }],
      partitionCounts: counts({ t0: 3, t1: 3 }),
    });
    expect(asObject(out)).toEqual({ c0: ['t0:0', 't0:1', 't1:0', 't1:1'], c1: ['t0:2', 't1:2'] });
  });

  it('roundrobin deals partitions in order, skipping members not subscribed (Kafka RoundRobinAssignor doc example)', () => {
    const out = assignRoundRobin({
      members: [{ id: 'c0', topics: ['t0'] }, { id: 'c1', topics: ['t0', 't1'] }, { id: 'c2', topics: ['t0', 't1', 't2'] }],
      partitionCounts: counts({ t0: 1, t1: 2, t2: 3 }),
    });
    expect(asObject(out)).toEqual({ c0: ['t0:0'], c1: ['t1:0'], c2: ['t1:1', 't2:0', 't2:1', 't2:2'] });
  });

  it('gives 3 members of a 12-partition topic 4 partitions each, with every assignor', () => {
    const input: AssignorInput = { members: ['a', 'b', 'c'].map((id) => ({ id, topics: ['t'] })), partitionCounts: counts({ t: 12 }) };
    for (const name of ASSIGNOR_NAMES) expect(sizes(assignPartitions(name, input))).toEqual([4, 4, 4]);
    expect(asObject(assignRange(input)).a).toEqual(['t:0', 't:1', 't:2', 't:3']);
    expect(asObject(assignRoundRobin(input)).a).toEqual(['t:0', 't:3', 't:6', 't:9']);
  });

  it('sticky: a third member takes exactly one partition from each of two members and they keep the other two', () => {
    const topics = ['t'];
    const previous = new Map([['a', [tp('t', 0), tp('t', 2), tp('t', 4)]], ['b', [tp('t', 1), tp('t', 3), tp('t', 5)]]]);
    const out = assignSticky({ members: ['a', 'b', 'c'].map((id) => ({ id, topics })), partitionCounts: counts({ t: 6 }), previous });
    expect(asObject(out)).toEqual({ a: ['t:0', 't:2'], b: ['t:1', 't:3'], c: ['t:4', 't:5'] });
  });

  it('sticky: the partitions of a departed member go to the least-loaded members; the others stay put', () => {
    const members = ['a', 'b', 'c'].map((id) => ({ id, topics: ['t'] }));
    const before = assignSticky({ members, partitionCounts: counts({ t: 12 }) });
    const after = assignSticky({ members: members.slice(0, 2), partitionCounts: counts({ t: 12 }), previous: before });
    expect(sizes(after)).toEqual([6, 6]);
    for (const id of ['a', 'b']) expect(after.get(id)).toEqual(expect.arrayContaining(before.get(id)!));
  });

  it('sticky gives a topic that few members subscribe to those members first, so mixed subscriptions balance', () => {
    const out = assignSticky({
      members: [{ id: 'a', topics: ['x'] }, { id: 'b', topics: ['x', 'y'] }],
      partitionCounts: counts({ x: 4, y: 4 }),
    });
    expect(asObject(out)).toEqual({ a: ['x:0', 'x:1', 'x:2', 'x:3'], b: ['y:0', 'y:1', 'y:2', 'y:3'] });
  });

  it('ignores topics that do not exist or have no partitions, and gives members with nothing an empty list', () => {
    for (const name of ASSIGNOR_NAMES) {
      const out = assignPartitions(name, {
        members: [{ id: 'a', topics: ['gone', 't'] }, { id: 'b', topics: ['gone'] }, { id: 'c', topics: ['empty'] }],
        partitionCounts: counts({ t: 2, empty: 0 }),
      });
      expect(asObject(out)).toEqual({ a: ['t:0', 't:1'], b: [], c: [] });
    }
    expect(asObject(assignSticky({ members: [], partitionCounts: counts({ t: 2 }) }))).toEqual({});
  });

  it('names its assignors', () => {
    expect(ASSIGNOR_NAMES).toEqual(['sticky', 'range', 'roundrobin']);
    for (const name of ASSIGNOR_NAMES) expect(isAssignorName(name)).toBe(true);
    for (const name of ['', 'Sticky', 'cooperative-sticky', 1, null, undefined]) expect(isAssignorName(name)).toBe(false);
  });

  it('asserts that member ids are unique (a programmer error)', () => {
    const members: AssignorMember[] = [{ id: 'a', topics: ['t'] }, { id: 'a', topics: ['t'] }];
    expect(() => assignRange({ members, partitionCounts: counts({ t: 1 }) })).toThrow(/assertion failed/);
  });
});

// ---------------------------------------------------------------- properties

describe('assignors: properties (seeded)', () => {
  it('every assignor gives each partition of a subscribed topic to exactly one subscriber', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(inputArb, (input) => {
        for (const name of ASSIGNOR_NAMES) checkCoverage(input, assignPartitions(name, input));
      }),
      { seed, numRuns: 250 },
    );
  });

  it('sticky keeps coverage whatever the previous ownership says (stale members, partitions, duplicates)', () => {
    const seed = testSeed();
    const arb = inputArb.chain((input) => previousArb(input).map((previous) => ({ ...input, previous })));
    fc.assert(
      fc.property(arb, (input) => checkCoverage(input, assignSticky(input))),
      { seed, numRuns: 250 },
    );
  });

  it('with identical subscriptions, roundrobin and sticky counts differ by at most 1, range per topic', () => {
    const seed = testSeed();
    const arb = uniformInputArb.chain((input) => previousArb(input).map((previous) => ({ ...input, previous })));
    fc.assert(
      fc.property(arb, (input) => {
        for (const name of ['roundrobin', 'sticky'] as const) {
          const s = sizes(assignPartitions(name, input));
          expect(Math.max(...s) - Math.min(...s), name).toBeLessThanOrEqual(1);
        }
        const out = assignRange(input);
        for (const topic of input.partitionCounts.keys()) {
          const perTopic = [...out.values()].map((l) => l.filter((p) => p.topic === topic).length);
          expect(Math.max(...perTopic) - Math.min(...perTopic)).toBeLessThanOrEqual(1);
        }
      }),
      { seed, numRuns: 250 },
    );
  });

  it('sticky with mixed subscriptions: no single move to another subscriber would narrow the gap (local balance)', () => {
    const seed = testSeed();
    const arb = inputArb.chain((input) => previousArb(input).map((previous) => ({ ...input, previous })));
    fc.assert(
      fc.property(arb, (input) => {
        const out = assignSticky(input);
        const load = new Map([...out].map(([id, list]) => [id, list.length]));
        for (const from of input.members) {
          for (const topic of new Set(out.get(from.id)!.map((p) => p.topic))) {
            for (const to of input.members) {
              if (to.topics.includes(topic)) expect(load.get(to.id)!).toBeGreaterThanOrEqual(load.get(from.id)! - 1);
            }
          }
        }
      }),
      { seed, numRuns: 200 },
    );
  });

  it('is deterministic: the same input (topics in any order within a subscription) gives the same output', () => {
    const seed = testSeed();
    const arb = inputArb.chain((input) => previousArb(input).map((previous) => ({ ...input, previous })));
    fc.assert(
      fc.property(arb, (input) => {
        const shuffled: AssignorInput = { ...input, members: input.members.map((m) => ({ id: m.id, topics: [...m.topics].reverse() })) };
        for (const name of ASSIGNOR_NAMES) {
          const once = asObject(assignPartitions(name, input));
          expect(asObject(assignPartitions(name, input))).toEqual(once);
          expect(asObject(assignPartitions(name, shuffled))).toEqual(once);
        }
      }),
      { seed, numRuns: 200 },
    );
  });

  it('sticky with nothing owned before and identical subscriptions equals roundrobin (stable across restarts)', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(uniformInputArb, (input) => {
        expect(asObject(assignSticky(input))).toEqual(asObject(assignRoundRobin(input)));
      }),
      { seed, numRuns: 200 },
    );
  });

  it('sticky is a fixpoint: its output fed back as the previous ownership comes out unchanged', () => {
    const seed = testSeed();
    const arb = inputArb.chain((input) => previousArb(input).map((previous) => ({ ...input, previous })));
    fc.assert(
      fc.property(arb, (input) => {
        const once = assignSticky(input);
        expect(asObject(assignSticky({ ...input, previous: once }))).toEqual(asObject(once));
      }),
      { seed, numRuns: 250 },
    );
  });

  it('sticky with identical subscriptions: a joining member only takes partitions, a departing one only gives', () => {
    const seed = testSeed();
    fc.assert(
      fc.property(uniformInputArb, (input) => {
        const before = assignSticky(input);
        const topics = input.members[0].topics;
        const joined = assignSticky({ ...input, members: [...input.members, { id: 'zz', topics }], previous: before });
        let moved = 0;
        for (const m of input.members) {
          const kept = joined.get(m.id)!;
          expect(before.get(m.id)).toEqual(expect.arrayContaining(kept));
          moved += before.get(m.id)!.length - kept.length;
        }
        expect(moved).toBe(joined.get('zz')!.length);
        if (input.members.length < 2) return;
        const left = assignSticky({ ...input, members: input.members.slice(1), previous: before });
        for (const m of input.members.slice(1)) expect(left.get(m.id)).toEqual(expect.arrayContaining(before.get(m.id)!));
      }),
      { seed, numRuns: 200 },
    );
  });

  it('sticky stays fast on a large group: 1000 members, 10 topics of 1024 partitions, one member joining', () => {
    const topics = Array.from({ length: 10 }, (_, i) => `t${i}`);
    const members = Array.from({ length: 1000 }, (_, i) => ({ id: `m${String(i).padStart(4, '0')}`, topics }));
    const partitionCounts = new Map(topics.map((t) => [t, 1024]));
    const before = assignSticky({ members: members.slice(0, 999), partitionCounts });
    const after = assignSticky({ members, partitionCounts, previous: before });
    const s = sizes(after);
    expect(Math.max(...s) - Math.min(...s)).toBeLessThanOrEqual(1);
    expect(after.get('m0999')!.length).toBe(10);
  });
});
