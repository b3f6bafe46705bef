/**
 * Partition assignors of the consumer group coordinator: pure, deterministic functions
 * from (members in order, their subscriptions, partition counts, for sticky the previous
 * assignment) to one list of partitions per member. No I/O, no state, no randomness, so
 * the same input gives the same output in every process (house style 23).
 *
 * Invariants of every assignor's output:
 *   - every partition of a topic that at least one member subscribes to is given to
 *     exactly one member, and that member subscribes to its topic;
 *   - every member of the input has an entry (possibly empty), sorted by topic, then
 *     partition;
 *   - with identical subscriptions, per-member counts differ by at most one.
 *
 * The order of `members` is the tie-break ("first in order wins"); the coordinator sorts
 * them by (instanceId ?? memberId, memberId), so static members keep their places across
 * restarts. Topic names compare by UTF-16 code units (`<`), never by locale.
 *
 *   range       Kafka's RangeAssignor: per topic, partitions in contiguous ranges over the
 *               topic's subscribers in order; the first (count % subscribers) get one more.
 *   roundrobin  Kafka's RoundRobinAssignor: every subscribed partition, sorted by topic and
 *               partition, dealt to the members in order, skipping a member that does not
 *               subscribe to the partition's topic.
 *   sticky      1. keeps every partition with its previous owner while that owner still
 *                  subscribes to its topic; when all members subscribe to the same topics,
 *                  only up to the fair share: floor(P / M), or one more for the first
 *                  (P % M) members by (partitions kept, desc; order), trimming the
 *                  highest partitions;
 *               2. gives the rest, topics with the fewest subscribers first, each partition
 *                  to the least-loaded subscriber (ties: order);
 *               3. (mixed subscriptions only) moves one partition at a time from the most
 *                  loaded member that can give to the least-loaded subscriber holding at
 *                  least two fewer, until no such move exists.
 *               Hence: with no previous owners and identical subscriptions it equals
 *               roundrobin (so it is stable across restarts of the same static members);
 *               with identical subscriptions it is balanced, a member that joins only takes
 *               partitions and one that leaves only gives; and its output fed back as
 *               `previous` comes out unchanged (recomputing never churns).
 *
 * Owner: any thread; no state.
 */
import { assert } from '../assert.js';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export type AssignorName = 'sticky' | 'range' | 'roundrobin';

export const ASSIGNOR_NAMES: readonly AssignorName[] = ['sticky', 'range', 'roundrobin'];

export const DEFAULT_ASSIGNOR: AssignorName = 'sticky';

export interface AssignorMember {
  /** Unique among the members. */
  id: string;
  topics: readonly string[];
}

export interface AssignorInput {
  /** In tie-break order; ids unique. */
  members: readonly AssignorMember[];
  /** Partitions per topic. A subscribed topic missing here (deleted) or with 0 partitions contributes nothing. */
  partitionCounts: ReadonlyMap<string, number>;
  /** sticky only: member id -> the partitions it owned before. Unknown ids, partitions that no longer exist and partitions of topics the member left are ignored. */
  previous?: ReadonlyMap<string, readonly TopicPartition[]>;
}

/** Member id -> its partitions, sorted by topic then partition; one entry per input member. */
export type AssignmentMap = Map<string, TopicPartition[]>;

export type Assignor = (input: AssignorInput) => AssignmentMap;

export function isAssignorName(name: unknown): name is AssignorName {
  return typeof name === 'string' && (ASSIGNOR_NAMES as readonly string[]).includes(name);
}

/** The map key of a partition. Legal topic names never contain ':'. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

export function assignPartitions(name: AssignorName, input: AssignorInput): AssignmentMap {
  switch (name) {
    case 'sticky':
      return assignSticky(input);
    case 'range':
      return assignRange(input);
    case 'roundrobin':
      return assignRoundRobin(input);
  }
}

// ---------------------------------------------------------------- shared preparation

interface Prepared {
  /** Topics with at least one partition and one subscriber, sorted. */
  topics: string[];
  /** topic -> indices of its subscribers, in member order. */
  subscribers: Map<string, number[]>;
  counts: ReadonlyMap<string, number>;
  /** Per member: the partitions given so far (unsorted). */
  lists: TopicPartition[][];
}

function prepare(input: AssignorInput): Prepared {
  const seen = new Set<string>();
  const subscribers = new Map<string, number[]>();
  input.members.forEach((member, index) => {
    assert(!seen.has(member.id), () => `assignor member ids are unique (${member.id})`);
    seen.add(member.id);
    for (const topic of new Set(member.topics)) {
      const count = input.partitionCounts.get(topic);
      if (count === undefined || count === 0) continue;
      assert(Number.isSafeInteger(count) && count > 0, () => `partition count of ${topic} is a positive integer`);
      let subs = subscribers.get(topic);
      if (!subs) subscribers.set(topic, (subs = []));
      subs.push(index);
    }
  });
  const topics = [...subscribers.keys()].sort(compareStrings);
  return { topics, subscribers, counts: input.partitionCounts, lists: input.members.map(() => []) };
}

function finish(input: AssignorInput, lists: TopicPartition[][]): AssignmentMap {
  const out: AssignmentMap = new Map();
  input.members.forEach((member, index) => out.set(member.id, lists[index].sort(compareTopicPartitions)));
  return out;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------- range

export function assignRange(input: AssignorInput): AssignmentMap {
  const { topics, subscribers, counts, lists } = prepare(input);
  for (const topic of topics) {
    const subs = subscribers.get(topic)!;
    const count = counts.get(topic)!;
    const base = Math.floor(count / subs.length);
    const extra = count % subs.length;
    let partition = 0;
    subs.forEach((member, i) => {
      const size = base + (i < extra ? 1 : 0);
      for (let end = partition + size; partition < end; partition++) lists[member].push({ topic, partition });
    });
  }
  return finish(input, lists);
}

// ---------------------------------------------------------------- roundrobin

export function assignRoundRobin(input: AssignorInput): AssignmentMap {
  const { topics, counts, lists } = prepare(input);
  const memberCount = input.members.length;
  const topicSets = input.members.map((m) => new Set(m.topics));
  let cursor = 0;
  for (const topic of topics) {
    const count = counts.get(topic)!;
    for (let partition = 0; partition < count; partition++) {
      // At most one full turn: the topic has a subscriber (prepare kept only those).
      let steps = 0;
      while (!topicSets[cursor % memberCount].has(topic)) {
        cursor++;
        assert(++steps <= memberCount, 'roundrobin finds a subscriber within one turn');
      }
      lists[cursor % memberCount].push({ topic, partition });
      cursor++;
    }
  }
  return finish(input, lists);
}

// ---------------------------------------------------------------- sticky

export function assignSticky(input: AssignorInput): AssignmentMap {
  const { topics, subscribers, counts } = prepare(input);
  const memberCount = input.members.length;
  const loads = new Array<number>(memberCount).fill(0);
  /** Per member: topic -> its partitions of the topic, ascending. */
  const held = input.members.map(() => new Map<string, number[]>());
  const owned = new Set<string>();

  const give = (member: number, topic: string, partition: number): void => {
    let list = held[member].get(topic);
    if (!list) held[member].set(topic, (list = []));
    insertSorted(list, partition);
    loads[member]++;
    owned.add(partitionKey(topic, partition));
  };
  /** Takes the member's highest partition (by topic, then partition) of `topic`, or of any topic. */
  const take = (member: number, topic?: string): void => {
    const from = topic ?? [...held[member].keys()].filter((t) => held[member].get(t)!.length > 0).sort(compareStrings).pop()!;
    const partition = held[member].get(from)!.pop()!;
    loads[member]--;
    owned.delete(partitionKey(from, partition));
  };

  // 1. Stickiness: every valid previous ownership stays (first member in order wins a duplicate).
  input.members.forEach((member, index) => {
    const before = input.previous?.get(member.id);
    if (!before) return;
    const subscribed = new Set(member.topics);
    for (const { topic, partition } of before) {
      const count = counts.get(topic);
      if (count === undefined || !subscribed.has(topic) || !Number.isSafeInteger(partition) || partition < 0 || partition >= count) continue;
      if (owned.has(partitionKey(topic, partition))) continue;
      give(index, topic, partition);
    }
  });
  const uniform = topics.every((t) => subscribers.get(t)!.length === memberCount);
  if (uniform && memberCount > 0) {
    let total = 0;
    for (const t of topics) total += counts.get(t)!;
    const floor = Math.floor(total / memberCount);
    const byKept = [...loads.keys()].sort((a, b) => loads[b] - loads[a] || a - b);
    byKept.forEach((member, rank) => {
      const quota = floor + (rank < total % memberCount ? 1 : 0);
      while (loads[member] > quota) take(member);
    });
  }

  // 2. The rest: scarce topics first, each partition to the least-loaded subscriber.
  const scarceFirst = [...topics].sort((a, b) => subscribers.get(a)!.length - subscribers.get(b)!.length || compareStrings(a, b));
  for (const topic of scarceFirst) {
    const count = counts.get(topic)!;
    const heap = new LoadHeap(subscribers.get(topic)!, loads);
    for (let partition = 0; partition < count; partition++) {
      if (owned.has(partitionKey(topic, partition))) continue;
      give(heap.min(), topic, partition);
      heap.minIncreased();
    }
  }

  // 3. Mixed subscriptions: single moves toward balance. Each move lowers the sum of squared
  //    loads by at least 2, so this ends. (Identical subscriptions are balanced already.)
  while (!uniform) {
    const lightest = new Map<string, number>(topics.map((t) => [t, leastLoaded(subscribers.get(t)!, loads)]));
    const heaviestFirst = [...loads.keys()].sort((a, b) => loads[b] - loads[a] || a - b);
    let move: { from: number; to: number; topic: string } | undefined;
    for (const from of heaviestFirst) {
      for (const [topic, list] of held[from]) {
        const to = lightest.get(topic)!;
        if (list.length === 0 || loads[to] > loads[from] - 2) continue;
        if (!move || loads[to] < loads[move.to] || (loads[to] === loads[move.to] && (to < move.to || (to === move.to && topic < move.topic)))) {
          move = { from, to, topic };
        }
      }
      if (move) break;
    }
    if (!move) break;
    const partition = held[move.from].get(move.topic)!.at(-1)!;
    take(move.from, move.topic);
    give(move.to, move.topic, partition);
  }

  const lists = held.map((byTopic) => {
    const list: TopicPartition[] = [];
    for (const [topic, partitions] of byTopic) for (const partition of partitions) list.push({ topic, partition });
    return list;
  });
  return finish(input, lists);
}

function insertSorted(list: number[], value: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1] > value) i--;
  list.splice(i, 0, value);
}

/** The subscriber with the lowest load; ties go to the first in member order. */
function leastLoaded(members: readonly number[], loads: readonly number[]): number {
  let best = members[0];
  for (const m of members) if (loads[m] < loads[best] || (loads[m] === loads[best] && m < best)) best = m;
  return best;
}

/** A binary min-heap of member indices keyed by (load, index); only the root's load ever grows. */
class LoadHeap {
  readonly #items: number[];
  readonly #loads: readonly number[];

  constructor(members: readonly number[], loads: readonly number[]) {
    this.#items = [...members];
    this.#loads = loads;
    for (let i = (this.#items.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  min(): number {
    return this.#items[0];
  }

  /** Call after the root's load went up. */
  minIncreased(): void {
    this.#siftDown(0);
  }

  #less(a: number, b: number): boolean {
    return this.#loads[a] < this.#loads[b] || (this.#loads[a] === this.#loads[b] && a < b);
  }

  #siftDown(start: number): void {
    const items = this.#items;
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < items.length && this.#less(items[left], items[smallest])) smallest = left;
      if (right < items.length && this.#less(items[right], items[smallest])) smallest = right;
      if (smallest === i) return;
      [items[i], items[smallest]] = [items[smallest], items[i]];
      i = smallest;
    }
  }
}
