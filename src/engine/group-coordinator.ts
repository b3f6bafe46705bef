/**
 * The consumer group coordinator: a transport-agnostic state machine (no sockets, no disk;
 * durable offsets go through an injected OffsetStore, time through an injected clock).
 * The WebSocket gateway and (later) the Kafka-protocol listener drive it.
 *
 * Model (KIP-848-like): the coordinator computes every assignment (server-side assignors,
 * see assignors.ts) and moves partitions incrementally (cooperative): a member keeps
 * consuming the partitions that stay with it while others move.
 *
 * Terms
 *   group epoch    increments whenever the target assignment is recomputed with a
 *                  different result (a member joins, leaves, dies, changes its
 *                  subscription, or partitions are added or removed).
 *   target(m)      what member m should own: the assignor applied to the members sorted by
 *                  (instanceId ?? memberId, memberId), their subscriptions and the partition
 *                  counts; sticky also gets the previous target as the previous owners
 *                  (the target, not the momentary holder, so that a member joining in the
 *                  middle of a rebalance does not make a partition move twice).
 *   current(m)     the partitions last handed to m: what it may consume now.
 *   revoking(m)    partitions taken out of current(m) that m has not yet released; each
 *                  remembers the generation that revoked it and when.
 *   held by m      in current(m) or revoking(m). INVARIANT: no partition is held by two
 *                  members at once (checked by an assertion after every change).
 *   generation(m)  the member epoch: the group epoch when current(m) last changed. Within
 *                  one generation current(m) only grows (partitions arrive as others
 *                  release them), so a generation does not name one partition list: compare
 *                  the partitions. A new member starts at the group epoch of its join.
 *
 * Reconciliation (after every change), for each member m in sort order:
 *   1. partitions of current(m) not in target(m) move to revoking(m) (a partition whose
 *      topic was deleted or shrank is dropped instead: nobody else can get it);
 *   2. current(m) gains each p in target(m) that no other member holds (a p that m itself
 *      is revoking comes straight back);
 *   3. if current(m) changed, generation(m) = group epoch and m's listener is told.
 *   Members already at their target are not told anything and keep consuming.
 *
 * Release and fencing
 *   - heartbeat(generation g) acknowledges g: m has applied an assignment of generation g,
 *     so it stopped consuming everything revoked at a generation <= g; those are released
 *     and reconciliation hands them to their new owners.
 *   - a revocation not released within rebalanceTimeoutMs fences m: it is removed (its
 *     calls get UNKNOWN_MEMBER_ID) and everything it held is freed.
 *   - every accepted call of a member (join, heartbeat, commit, fetchCommitted) renews its
 *     session to now + sessionTimeoutMs; at expiry it is removed as if it died. Timers are
 *     lazy: one session and one rebalance timer per member, re-armed when they fire early.
 *   - leave frees everything at once (the member committed before leaving).
 *   - a join with the instanceId of a live member replaces it (static membership): the new
 *     member gets a new memberId and the old one's current partitions and generation; the
 *     old memberId is fenced (its calls get FENCED_INSTANCE_ID, not UNKNOWN_MEMBER_ID, so its
 *     process stops instead of joining again); what the old one was revoking is released at once (the old
 *     process can no longer commit; the new one never consumed it).
 *
 * Listeners are called synchronously after the state change is complete, just before the
 * public call (or the timer callback) that caused it returns, once per distinct assignment:
 * a member is not told what its own join or heartbeat returns. A listener may call back
 * into the coordinator (then a member may be pushed an assignment during its own join or
 * heartbeat, and the call returns that same newest one); one that throws is logged and
 * ignored. detach() stops the
 * calls; a member removed from the group is not told (its next call gets UNKNOWN_MEMBER_ID).
 *
 * Bad input throws SluiceError before any state changes (all-or-nothing). A group exists
 * in memory while it has members; its committed offsets live in the OffsetStore, so a
 * group whose last member left is 'empty' and starts again at epoch 0.
 *
 * Owner: the gateway (main) thread; every method runs to completion on it.
 */
import { randomUUID as nodeRandomUUID } from 'node:crypto';
import { assert } from '../assert.js';
import { SluiceError, asStorageError } from '../errors.js';
import {
  DEFAULT_ASSIGNOR,
  assignPartitions,
  compareTopicPartitions,
  isAssignorName,
  partitionKey,
  type AssignorName,
  type TopicPartition,
} from './assignors.js';
import {
  CLIENT_ID_BYTES_MAX,
  COMMIT_PARTITIONS_MAX,
  GROUPS_MAX,
  GROUP_ID_BYTES_MAX,
  GROUP_MEMBERS_MAX,
  HEARTBEAT_INTERVAL_MS_MIN,
  INSTANCE_ID_BYTES_MAX,
  MEMBER_ID_BYTES_MAX,
  OFFSET_METADATA_BYTES_MAX,
  SESSION_TIMEOUT_MS_MAX,
  SESSION_TIMEOUT_MS_MIN,
  SUBSCRIBED_TOPICS_MAX,
} from './group-limits.js';
import { checkInteger, checkTopicName } from './names.js';

export type { AssignorName, TopicPartition } from './assignors.js';

// ---------------------------------------------------------------- public types

export interface CommittedOffset {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  commitTimestamp: number;
}

export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
}

/** Durable offsets; implemented elsewhere over an internal compacted topic. Tests use an in-memory fake. */
export interface OffsetStore {
  /** Resolves when the commit is durable. Rejects with a SluiceError on storage failure. */
  commit(groupId: string, offsets: readonly OffsetToCommit[]): Promise<void>;
  /** [] when none. */
  get(groupId: string): readonly CommittedOffset[];
  /** Groups with any committed offset. */
  groupIds(): readonly string[];
  deleteOffsets?(groupId: string, partitions: readonly TopicPartition[]): Promise<void>;
}

export interface CoordinatorClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface CoordinatorLogger {
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
}

export interface GroupCoordinatorOptions {
  /** Partition count of a topic, or undefined when the topic does not exist. */
  partitionsOf(topic: string): number | undefined;
  offsets: OffsetStore;
  /** Default: Date.now and global timers, unref'd so that they never keep the process alive. */
  clock?: CoordinatorClock;
  logger?: CoordinatorLogger;
  /** Random part of generated member ids (default: crypto.randomUUID); injected for deterministic tests. */
  randomUUID?: () => string;
}

export interface JoinRequest {
  groupId: string;
  /** '' = a new member; otherwise the id of a live member that joins again (e.g. to change its subscription). */
  memberId: string;
  /** Static membership (Kafka group.instance.id): replaces the live member with this instance id. */
  instanceId?: string;
  clientId: string;
  /** Non-empty, no duplicates, every topic must exist. */
  topics: readonly string[];
  /** SESSION_TIMEOUT_MS_MIN .. SESSION_TIMEOUT_MS_MAX. */
  sessionTimeoutMs: number;
  /** Default: sessionTimeoutMs; same bounds. */
  rebalanceTimeoutMs?: number;
  /** Default 'sticky'; the live members of a group must agree. */
  assignor?: AssignorName;
}

export interface MemberAssignment {
  groupId: string;
  memberId: string;
  /** The member's epoch: the group epoch when this member's assignment last changed. */
  generation: number;
  /** Sorted by topic then partition: what the member may consume now. */
  partitions: TopicPartition[];
  /** floor(sessionTimeoutMs / 3), at least HEARTBEAT_INTERVAL_MS_MIN. */
  heartbeatIntervalMs: number;
}

export type AssignmentListener = (assignment: MemberAssignment) => void;

export type GroupState = 'empty' | 'stable' | 'reconciling';

export interface GroupListing {
  groupId: string;
  state: GroupState;
  members: number;
  assignor: AssignorName | null;
}

export interface MemberDescription {
  memberId: string;
  instanceId?: string;
  clientId: string;
  generation: number;
  topics: string[];
  partitions: TopicPartition[];
  revoking: TopicPartition[];
  /** Where the member is heading: partitions = target once the group is stable. */
  target: TopicPartition[];
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  /** The group epoch (0 for a group with no live members). */
  generation: number;
  assignor: AssignorName | null;
  /** Sorted by (instanceId ?? memberId, memberId): the assignors' order. */
  members: MemberDescription[];
  offsets: CommittedOffset[];
}

/** Date.now and global timers, unref'd. */
export const systemCoordinatorClock: CoordinatorClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

const silentLogger: CoordinatorLogger = { info: () => {}, warn: () => {} };

// ---------------------------------------------------------------- internal state

interface Revocation {
  tp: TopicPartition;
  /** The generation that revoked it: an acknowledgement of this or later releases it. */
  generation: number;
  atMs: number;
}

interface Timer {
  handle: unknown;
  atMs: number;
}

interface Member {
  readonly group: Group;
  readonly memberId: string;
  readonly instanceId: string | undefined;
  clientId: string;
  /** Sorted, unique. */
  topics: string[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  assignor: AssignorName;
  generation: number;
  current: Map<string, TopicPartition>;
  revoking: Map<string, Revocation>;
  target: Map<string, TopicPartition>;
  listener: AssignmentListener | null;
  /** Bumps whenever current or generation changes; the listener is told when it differs from handedVersion. */
  version: number;
  handedVersion: number;
  sessionDeadlineMs: number;
  sessionTimer: Timer | null;
  rebalanceTimer: Timer | null;
}

interface Group {
  readonly groupId: string;
  epoch: number;
  readonly members: Map<string, Member>;
  /** instanceId -> memberId of the live static members. */
  readonly byInstance: Map<string, string>;
  /** memberId -> instanceId of static members replaced by a join with their instanceId: their calls get FENCED_INSTANCE_ID (the newest FENCED_MEMBERS_MAX). */
  readonly fenced: Map<string, string>;
}

/** Replaced static members a group remembers, so that each old process learns it is fenced instead of joining again (Kafka's FENCED_INSTANCE_ID). */
const FENCED_MEMBERS_MAX = 64;

type RemovalReason = 'left' | 'session expired' | 'rebalance timeout';

/** FENCED_INSTANCE_ID for a static member another join with its instanceId replaced. */
function checkNotFenced(group: Group | undefined, memberId: string): void {
  const instanceId = group?.fenced.get(memberId);
  if (instanceId !== undefined) {
    throw new SluiceError('FENCED_INSTANCE_ID', `member ${memberId} of group ${group!.groupId} was replaced by another member with instanceId ${instanceId}; two consumers may not share one instanceId`);
  }
}

// ---------------------------------------------------------------- the coordinator

export class GroupCoordinator {
  readonly #partitionsOfTopic: (topic: string) => number | undefined;
  readonly #offsets: OffsetStore;
  readonly #clock: CoordinatorClock;
  readonly #logger: CoordinatorLogger;
  readonly #randomUUID: () => string;
  readonly #groups = new Map<string, Group>();
  /** Members whose listener may have to be told, in the order they changed. */
  readonly #pending = new Set<Member>();
  #draining = false;
  #closed = false;

  constructor(options: GroupCoordinatorOptions) {
    assert(typeof options.partitionsOf === 'function', 'partitionsOf is a function');
    assert(typeof options.offsets === 'object' && options.offsets !== null, 'an offset store is given');
    this.#partitionsOfTopic = options.partitionsOf;
    this.#offsets = options.offsets;
    this.#clock = options.clock ?? systemCoordinatorClock;
    this.#logger = options.logger ?? silentLogger;
    this.#randomUUID = options.randomUUID ?? nodeRandomUUID;
  }

  // -------------------------------------------------------------- membership

  /**
   * Adds a member (memberId ''), re-joins a live one, or replaces the live member with the
   * same instanceId. Returns the member's assignment now (possibly empty while others
   * release its partitions); later changes go to `listener`.
   */
  join(request: JoinRequest, listener: AssignmentListener): MemberAssignment {
    this.#checkOpen();
    if (typeof request !== 'object' || request === null) throw invalid('a join request must be an object');
    const groupId = checkGroupId(request.groupId);
    const memberId = checkMemberId(request.memberId);
    const instanceId = checkOptionalId(request.instanceId, 'instanceId', INSTANCE_ID_BYTES_MAX);
    const clientId = checkString(request.clientId, 'clientId', 0, CLIENT_ID_BYTES_MAX);
    const topics = this.#checkSubscription(request.topics);
    const sessionTimeoutMs = checkTimeout(request.sessionTimeoutMs, 'sessionTimeoutMs');
    const rebalanceTimeoutMs = request.rebalanceTimeoutMs === undefined ? sessionTimeoutMs : checkTimeout(request.rebalanceTimeoutMs, 'rebalanceTimeoutMs');
    const assignor = request.assignor === undefined ? DEFAULT_ASSIGNOR : request.assignor;
    if (!isAssignorName(assignor)) throw invalid(`unknown assignor ${JSON.stringify(assignor)}; use sticky, range or roundrobin`);
    if (typeof listener !== 'function') throw invalid('the assignment listener must be a function');

    let group = this.#groups.get(groupId);
    let existing: Member | undefined;
    let replaced: Member | undefined;
    if (memberId !== '') {
      checkNotFenced(group, memberId);
      existing = group?.members.get(memberId);
      if (!existing) throw new SluiceError('UNKNOWN_MEMBER_ID', `group ${groupId} has no live member ${memberId}; join with memberId ''`);
      if (existing.instanceId !== instanceId) {
        throw new SluiceError('UNKNOWN_MEMBER_ID', `member ${memberId} of group ${groupId} is not instance ${String(instanceId)}; join with memberId ''`);
      }
    } else if (instanceId !== undefined && group) {
      const id = group.byInstance.get(instanceId);
      replaced = id === undefined ? undefined : group.members.get(id);
    }
    if (group) {
      for (const other of group.members.values()) {
        if (other === existing || other === replaced) continue;
        if (other.assignor !== assignor) {
          throw new SluiceError('INCONSISTENT_GROUP_PROTOCOL', `group ${groupId} uses assignor ${other.assignor}, not ${assignor}`);
        }
        break; // the live members agree, so one other is enough
      }
    }
    if (!existing && !replaced) {
      if (group && group.members.size >= GROUP_MEMBERS_MAX) {
        throw new SluiceError('GROUP_MAX_SIZE_REACHED', `group ${groupId} has ${GROUP_MEMBERS_MAX} members, the limit`);
      }
      if (!group && this.#groups.size >= GROUPS_MAX) {
        throw new SluiceError('GROUP_MAX_SIZE_REACHED', `the coordinator runs ${GROUPS_MAX} live groups, the limit`);
      }
    }

    // Everything is valid: change state.
    if (!group) {
      group = { groupId, epoch: 0, members: new Map(), byInstance: new Map(), fenced: new Map() };
      this.#groups.set(groupId, group);
    }
    const settings = { clientId, topics, sessionTimeoutMs, rebalanceTimeoutMs, assignor, listener };
    let member: Member;
    let isNew = false;
    if (existing) {
      member = existing;
      Object.assign(member, settings);
      this.#logger.info({ groupId, memberId, topics }, 'group member joined again');
    } else {
      member = this.#newMember(group, instanceId, settings);
      if (replaced) {
        this.#clearTimers(replaced);
        this.#pending.delete(replaced);
        group.members.delete(replaced.memberId);
        member.generation = replaced.generation;
        member.current = replaced.current;
        member.target = replaced.target;
        // The old process may still run (two processes given one instanceId): its next call
        // tells it so, for good, instead of letting it join again and replace this one.
        group.fenced.set(replaced.memberId, instanceId!);
        if (group.fenced.size > FENCED_MEMBERS_MAX) group.fenced.delete(group.fenced.keys().next().value!);
        this.#logger.info({ groupId, memberId: member.memberId, instanceId, replacedMemberId: replaced.memberId }, 'static group member replaced');
      } else {
        isNew = true;
        this.#logger.info({ groupId, memberId: member.memberId, instanceId, topics }, 'group member joined');
      }
      group.members.set(member.memberId, member);
      if (instanceId !== undefined) group.byInstance.set(instanceId, member.memberId);
    }
    this.#touch(member);
    this.#recompute(group);
    if (isNew) member.generation = group.epoch;
    this.#reconcile(group);
    return this.#handOverAndDrain(member);
  }

  /**
   * Renews the member's session and acknowledges `generation`, the newest generation it
   * has applied: what was revoked from it at that generation or before is released.
   * Returns its current assignment (for transports that poll).
   */
  heartbeat(groupId: string, memberId: string, generation: number): MemberAssignment {
    this.#checkOpen();
    const gid = checkGroupId(groupId);
    const id = checkMemberId(memberId);
    const acked = checkInteger(generation, 'generation', 0, Number.MAX_SAFE_INTEGER);
    const member = this.#liveMember(gid, id);
    checkNotNewer(member, acked);
    this.#touch(member);
    let released = false;
    for (const [key, revocation] of member.revoking) {
      if (revocation.generation <= acked) {
        member.revoking.delete(key);
        released = true;
      }
    }
    if (released) this.#reconcile(member.group);
    return this.#handOverAndDrain(member);
  }

  /** A clean leave: everything the member held is freed at once. */
  leave(groupId: string, memberId: string): void {
    this.#checkOpen();
    const member = this.#liveMember(checkGroupId(groupId), checkMemberId(memberId));
    this.#remove(member, 'left');
    this.#drain();
  }

  /**
   * The member's connection dropped: its listener is no longer called. The member stays
   * until its session expires and may join again with its memberId. With `listener`, only
   * detaches if that is still the member's listener (a late close of an old connection
   * must not detach the member from its new one). A member already gone is ignored: the
   * connection's cleanup races with expiry.
   */
  detach(groupId: string, memberId: string, listener?: AssignmentListener): void {
    this.#checkOpen();
    const group = this.#groups.get(checkGroupId(groupId));
    const id = checkMemberId(memberId);
    if (listener !== undefined && typeof listener !== 'function') throw invalid('listener must be a function when given');
    const member = group?.members.get(id);
    if (!member || (listener !== undefined && member.listener !== listener)) return;
    member.listener = null;
  }

  // -------------------------------------------------------------- offsets

  /**
   * Commits offsets for partitions the member holds. memberId '' with generation -1 is an
   * admin commit, allowed only while the group has no live members. All-or-nothing: every
   * check passes before the store is called. Resolves when the commit is durable.
   */
  async commitOffsets(groupId: string, memberId: string, generation: number, offsets: readonly OffsetToCommit[]): Promise<void> {
    this.#checkOpen();
    const gid = checkGroupId(groupId);
    const { member } = this.#fence(gid, memberId, generation);
    const entries = this.#checkOffsets(offsets);
    if (member) {
      for (const { topic, partition } of entries) {
        const key = partitionKey(topic, partition);
        if (member.current.has(key) || member.revoking.has(key)) continue;
        if (generation < member.generation) {
          throw new SluiceError('ILLEGAL_GENERATION', `member ${member.memberId} no longer holds ${key}: generation ${generation} is older than its generation ${member.generation}`);
        }
        throw new SluiceError('PARTITION_NOT_ASSIGNED', `member ${member.memberId} of group ${gid} does not hold ${key}`);
      }
      this.#touch(member);
    } else if (this.#groups.has(gid)) {
      throw new SluiceError('UNKNOWN_MEMBER_ID', `group ${gid} has live members: an admin commit (memberId '', generation -1) needs an empty group`);
    }
    await this.#store(gid, entries);
  }

  /**
   * Committed offsets, sorted by topic then partition; partitions never committed are
   * absent. memberId '' with generation -1 reads without fencing (also for groups known only
   * from their offsets; an unknown group gives []). A member is fenced like a commit and
   * may read any partition of its subscription; without `partitions` it gets all of its
   * subscribed topics.
   */
  fetchCommitted(groupId: string, memberId: string, generation: number, partitions?: readonly TopicPartition[]): CommittedOffset[] {
    this.#checkOpen();
    const gid = checkGroupId(groupId);
    const { member } = this.#fence(gid, memberId, generation);
    const wanted = partitions === undefined ? undefined : checkPartitionList(partitions);
    if (member) {
      const subscribed = new Set(member.topics);
      for (const { topic, partition } of wanted?.values() ?? []) {
        if (!subscribed.has(topic)) throw invalid(`member ${member.memberId} does not subscribe to ${topic}`);
        const count = this.#partitionsOf(topic);
        if (count === undefined || partition >= count) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no partition ${partition} of topic ${topic}`);
      }
      this.#touch(member);
      return this.#committed(gid, (c) => (wanted ? wanted.has(partitionKey(c.topic, c.partition)) : subscribed.has(c.topic)));
    }
    return this.#committed(gid, (c) => !wanted || wanted.has(partitionKey(c.topic, c.partition)));
  }

  /** Sets offsets of a group with no live members (else NON_EMPTY_GROUP); the caller computes them. */
  async resetOffsets(groupId: string, offsets: readonly OffsetToCommit[]): Promise<void> {
    this.#checkOpen();
    const gid = checkGroupId(groupId);
    if (this.#groups.has(gid)) throw new SluiceError('NON_EMPTY_GROUP', `group ${gid} has live members; stop them before resetting its offsets`);
    const entries = this.#checkOffsets(offsets);
    await this.#store(gid, entries);
  }

  // -------------------------------------------------------------- admin

  /** Live groups and groups known only from committed offsets ('empty'), sorted by id. */
  listGroups(): GroupListing[] {
    this.#checkOpen();
    const out: GroupListing[] = [];
    for (const group of this.#groups.values()) {
      out.push({ groupId: group.groupId, state: stateOf(group), members: group.members.size, assignor: assignorOf(group) });
    }
    for (const groupId of new Set(this.#offsets.groupIds())) {
      if (!this.#groups.has(groupId)) out.push({ groupId, state: 'empty', members: 0, assignor: null });
    }
    return out.sort((a, b) => compareStrings(a.groupId, b.groupId));
  }

  describeGroup(groupId: string): GroupDescription {
    this.#checkOpen();
    const gid = checkGroupId(groupId);
    const group = this.#groups.get(gid);
    const offsets = this.#committed(gid, () => true);
    if (!group && offsets.length === 0) throw new SluiceError('GROUP_ID_NOT_FOUND', `no group ${gid}`);
    if (!group) return { groupId: gid, state: 'empty', generation: 0, assignor: null, members: [], offsets };
    const members = sortedMembers(group).map((m): MemberDescription => {
      const description: MemberDescription = {
        memberId: m.memberId,
        clientId: m.clientId,
        generation: m.generation,
        topics: [...m.topics],
        partitions: sortedPartitions(m.current.values()),
        revoking: sortedPartitions([...m.revoking.values()].map((r) => r.tp)),
        target: sortedPartitions(m.target.values()),
      };
      if (m.instanceId !== undefined) description.instanceId = m.instanceId;
      return description;
    });
    return { groupId: gid, state: stateOf(group), generation: group.epoch, assignor: assignorOf(group), members, offsets };
  }

  /** Topics were created or deleted or gained partitions: recompute every group. */
  topicsChanged(): void {
    this.#checkOpen();
    for (const group of this.#groups.values()) {
      this.#recompute(group);
      this.#reconcile(group);
    }
    this.#drain();
  }

  /** Clears every timer; later calls throw ENGINE_CLOSED and no listener is called again. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const group of this.#groups.values()) for (const member of group.members.values()) this.#clearTimers(member);
    this.#pending.clear();
  }

  // -------------------------------------------------------------- assignment core

  /** Recomputes the target assignment; bumps the group epoch when it differs. */
  #recompute(group: Group): void {
    const members = sortedMembers(group);
    if (members.length === 0) return;
    const counts = new Map<string, number>();
    for (const m of members) {
      for (const topic of m.topics) {
        if (counts.has(topic)) continue;
        const count = this.#partitionsOf(topic);
        if (count !== undefined) counts.set(topic, count);
      }
    }
    const assignor = members[0].assignor;
    assert(members.every((m) => m.assignor === assignor), 'the live members of a group agree on the assignor');
    const result = assignPartitions(assignor, {
      members: members.map((m) => ({ id: m.memberId, topics: m.topics })),
      partitionCounts: counts,
      previous: new Map(members.map((m) => [m.memberId, [...m.target.values()]])),
    });
    const changed = members.some((m) => !sameKeys(m.target, result.get(m.memberId)!));
    if (!changed) return;
    group.epoch++;
    for (const m of members) m.target = new Map(result.get(m.memberId)!.map((tp) => [partitionKey(tp.topic, tp.partition), tp]));
  }

  /** Moves every member toward its target as far as possible without two holders of one partition. */
  #reconcile(group: Group): void {
    const nowMs = this.#clock.now();
    const members = sortedMembers(group);
    const changed = new Set<Member>();
    // 1. Revoke what left the target; drop what no longer exists.
    for (const m of members) {
      for (const [key, tp] of m.current) {
        if (m.target.has(key)) continue;
        m.current.delete(key);
        changed.add(m);
        if (this.#exists(tp)) m.revoking.set(key, { tp, generation: group.epoch, atMs: nowMs });
      }
      for (const [key, revocation] of m.revoking) if (!this.#exists(revocation.tp)) m.revoking.delete(key);
    }
    // 2. Hand out target partitions that nobody else holds.
    const holders = new Map<string, Member>();
    for (const m of members) {
      for (const key of m.current.keys()) holders.set(key, m);
      for (const key of m.revoking.keys()) holders.set(key, m);
    }
    for (const m of members) {
      for (const [key, tp] of m.target) {
        if (m.current.has(key)) continue;
        const holder = holders.get(key);
        if (holder !== undefined && holder !== m) continue;
        m.revoking.delete(key);
        m.current.set(key, tp);
        holders.set(key, m);
        changed.add(m);
      }
    }
    // 3. Stamp and announce.
    for (const m of changed) {
      m.generation = group.epoch;
      m.version++;
      this.#pending.add(m);
    }
    for (const m of members) this.#armRebalanceTimer(m);
    checkInvariants(group);
  }

  #exists(tp: TopicPartition): boolean {
    const count = this.#partitionsOf(tp.topic);
    return count !== undefined && tp.partition < count;
  }

  #partitionsOf(topic: string): number | undefined {
    const count = this.#partitionsOfTopic(topic);
    assert(count === undefined || (Number.isSafeInteger(count) && count >= 0), () => `partitionsOf(${topic}) is undefined or a count`);
    return count;
  }

  // -------------------------------------------------------------- members, timers, listeners

  #newMember(
    group: Group,
    instanceId: string | undefined,
    settings: Pick<Member, 'clientId' | 'topics' | 'sessionTimeoutMs' | 'rebalanceTimeoutMs' | 'assignor' | 'listener'>,
  ): Member {
    let memberId = '';
    for (let attempt = 0; memberId === '' || group.members.has(memberId); attempt++) {
      assert(attempt < 8, 'randomUUID gives fresh ids');
      const uuid = this.#randomUUID();
      memberId = settings.clientId === '' ? uuid : `${settings.clientId}-${uuid}`;
    }
    return {
      group,
      memberId,
      instanceId,
      ...settings,
      generation: group.epoch,
      current: new Map(),
      revoking: new Map(),
      target: new Map(),
      version: 0,
      handedVersion: 0,
      sessionDeadlineMs: 0,
      sessionTimer: null,
      rebalanceTimer: null,
    };
  }

  #liveMember(groupId: string, memberId: string): Member {
    const group = this.#groups.get(groupId);
    checkNotFenced(group, memberId);
    const member = group?.members.get(memberId);
    if (!member) throw new SluiceError('UNKNOWN_MEMBER_ID', `group ${groupId} has no live member ${JSON.stringify(memberId)}; join again with memberId ''`);
    return member;
  }

  /** The member a commit or fetch speaks for, or none for the admin form ('' and -1). */
  #fence(groupId: string, memberId: unknown, generation: unknown): { member: Member | undefined } {
    const id = checkMemberId(memberId);
    const gen = checkInteger(generation, 'generation', -1, Number.MAX_SAFE_INTEGER);
    if ((id === '') !== (gen === -1)) throw invalid("memberId '' goes with generation -1 (an admin request), and only with it");
    if (id === '') return { member: undefined };
    const member = this.#liveMember(groupId, id);
    checkNotNewer(member, gen);
    return { member };
  }

  #isLive(member: Member): boolean {
    return this.#groups.get(member.group.groupId) === member.group && member.group.members.get(member.memberId) === member;
  }

  #remove(member: Member, reason: RemovalReason): void {
    const group = member.group;
    assert(this.#isLive(member), 'only a live member is removed');
    this.#clearTimers(member);
    group.members.delete(member.memberId);
    if (member.instanceId !== undefined) group.byInstance.delete(member.instanceId);
    this.#pending.delete(member);
    const log = { groupId: group.groupId, memberId: member.memberId, partitions: member.current.size + member.revoking.size };
    if (reason === 'left') this.#logger.info(log, 'group member left');
    else this.#logger.warn(log, `group member removed: ${reason}`);
    if (group.members.size === 0) {
      this.#groups.delete(group.groupId);
      return;
    }
    this.#recompute(group);
    this.#reconcile(group);
  }

  /** Renews the session: now + sessionTimeoutMs. */
  #touch(member: Member): void {
    member.sessionDeadlineMs = this.#clock.now() + member.sessionTimeoutMs;
    const timer = member.sessionTimer;
    // A timer that fires early re-arms itself; one that would fire late (a shorter
    // timeout on a re-join) is replaced.
    if (timer && timer.atMs <= member.sessionDeadlineMs) return;
    if (timer) this.#clock.clearTimeout(timer.handle);
    member.sessionTimer = this.#arm(member.sessionDeadlineMs, () => this.#onSessionTimer(member));
  }

  #onSessionTimer(member: Member): void {
    member.sessionTimer = null;
    if (this.#closed || !this.#isLive(member)) return;
    if (this.#clock.now() >= member.sessionDeadlineMs) {
      this.#remove(member, 'session expired');
      this.#drain();
    } else {
      member.sessionTimer = this.#arm(member.sessionDeadlineMs, () => this.#onSessionTimer(member));
    }
  }

  /** Arms (or clears) the timer for the oldest unreleased revocation. */
  #armRebalanceTimer(member: Member): void {
    let oldestMs = Infinity;
    for (const revocation of member.revoking.values()) oldestMs = Math.min(oldestMs, revocation.atMs);
    const deadlineMs = oldestMs + member.rebalanceTimeoutMs;
    const timer = member.rebalanceTimer;
    if (timer && timer.atMs === deadlineMs) return;
    if (timer) this.#clock.clearTimeout(timer.handle);
    member.rebalanceTimer = oldestMs === Infinity ? null : this.#arm(deadlineMs, () => this.#onRebalanceTimer(member));
  }

  #onRebalanceTimer(member: Member): void {
    member.rebalanceTimer = null;
    if (this.#closed || !this.#isLive(member)) return;
    const nowMs = this.#clock.now();
    for (const revocation of member.revoking.values()) {
      if (revocation.atMs + member.rebalanceTimeoutMs <= nowMs) {
        this.#remove(member, 'rebalance timeout');
        this.#drain();
        return;
      }
    }
    this.#armRebalanceTimer(member);
  }

  #arm(atMs: number, fn: () => void): Timer {
    const delayMs = Math.max(0, atMs - this.#clock.now());
    return { handle: this.#clock.setTimeout(fn, delayMs), atMs };
  }

  #clearTimers(member: Member): void {
    if (member.sessionTimer) this.#clock.clearTimeout(member.sessionTimer.handle);
    if (member.rebalanceTimer) this.#clock.clearTimeout(member.rebalanceTimer.handle);
    member.sessionTimer = null;
    member.rebalanceTimer = null;
  }

  /** The member's assignment, recorded as handed to it (its listener is not told it again). */
  #handOver(member: Member): MemberAssignment {
    member.handedVersion = member.version;
    return assignmentOf(member);
  }

  /**
   * The answer to the member's own call: what it is handed is not pushed to it as well.
   * Listeners of others may call back into the coordinator and change this member's
   * assignment again; it is then pushed, and the answer is that newest one too, so an
   * answer is never older than a push.
   */
  #handOverAndDrain(member: Member): MemberAssignment {
    this.#handOver(member);
    this.#drain();
    return this.#handOver(member);
  }

  /** Tells listeners of changed members; re-entrant calls add to the queue this loop drains. */
  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (const member of this.#pending) {
        this.#pending.delete(member);
        if (this.#closed) return;
        if (!member.listener || member.version === member.handedVersion || !this.#isLive(member)) continue;
        const assignment = this.#handOver(member);
        try {
          member.listener(assignment);
        } catch (err) {
          this.#logger.warn({ groupId: member.group.groupId, memberId: member.memberId, err }, 'assignment listener threw');
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  // -------------------------------------------------------------- validation and offsets

  #checkOpen(): void {
    if (this.#closed) throw new SluiceError('ENGINE_CLOSED', 'the group coordinator is closed');
  }

  #checkSubscription(topics: unknown): string[] {
    if (!Array.isArray(topics) || topics.length === 0 || topics.length > SUBSCRIBED_TOPICS_MAX) {
      throw invalid(`topics must be an array of 1 to ${SUBSCRIBED_TOPICS_MAX} topic names`);
    }
    const seen = new Set<string>();
    for (const topic of topics as unknown[]) {
      const name = checkTopicName(topic);
      if (seen.has(name)) throw invalid(`topic ${name} is named twice`);
      seen.add(name);
    }
    for (const name of seen) {
      if (this.#partitionsOf(name) === undefined) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no topic ${name}`);
    }
    return [...seen].sort(compareStrings);
  }

  #checkOffsets(offsets: unknown): OffsetToCommit[] {
    if (!Array.isArray(offsets) || offsets.length > COMMIT_PARTITIONS_MAX) {
      throw invalid(`offsets must be an array of at most ${COMMIT_PARTITIONS_MAX} entries`);
    }
    const seen = new Set<string>();
    const entries: OffsetToCommit[] = [];
    for (const entry of offsets as unknown[]) {
      if (typeof entry !== 'object' || entry === null) throw invalid('each offset must be an object { topic, partition, offset, metadata }');
      const raw = entry as Record<string, unknown>;
      const topic = checkTopicName(raw.topic);
      const partition = checkInteger(raw.partition, 'partition', 0, Number.MAX_SAFE_INTEGER);
      const offset = checkInteger(raw.offset, 'offset', 0, Number.MAX_SAFE_INTEGER);
      const metadata = raw.metadata;
      if (typeof metadata !== 'string') throw invalid('metadata must be a string');
      if (utf8Bytes(metadata) > OFFSET_METADATA_BYTES_MAX) {
        throw new SluiceError('OFFSET_METADATA_TOO_LARGE', `metadata of ${topic}:${partition} is ${utf8Bytes(metadata)} bytes; the limit is ${OFFSET_METADATA_BYTES_MAX}`);
      }
      const count = this.#partitionsOf(topic);
      if (count === undefined || partition >= count) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no partition ${partition} of topic ${topic}`);
      const key = partitionKey(topic, partition);
      if (seen.has(key)) throw invalid(`partition ${key} is named twice`);
      seen.add(key);
      entries.push({ topic, partition, offset, metadata });
    }
    return entries;
  }

  async #store(groupId: string, entries: OffsetToCommit[]): Promise<void> {
    if (entries.length === 0) return;
    try {
      await this.#offsets.commit(groupId, entries);
    } catch (err) {
      throw asStorageError(err, `commit of ${entries.length} offsets of group ${groupId}`);
    }
  }

  #committed(groupId: string, keep: (c: CommittedOffset) => boolean): CommittedOffset[] {
    return this.#offsets
      .get(groupId)
      .filter(keep)
      .map((c) => ({ topic: c.topic, partition: c.partition, offset: c.offset, metadata: c.metadata, commitTimestamp: c.commitTimestamp }))
      .sort(compareTopicPartitions);
  }
}

// ---------------------------------------------------------------- helpers (pure)

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_ARGUMENT', message);
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkGroupId(groupId: unknown): string {
  if (typeof groupId !== 'string' || groupId.length === 0 || utf8Bytes(groupId) > GROUP_ID_BYTES_MAX) {
    throw new SluiceError('INVALID_GROUP_ID', `a group id must be a string of 1 to ${GROUP_ID_BYTES_MAX} UTF-8 bytes`);
  }
  return groupId;
}

/** A member id argument: '' or the id of a member ('' is never a live member's id). */
function checkMemberId(memberId: unknown): string {
  return checkString(memberId, 'memberId', 0, MEMBER_ID_BYTES_MAX);
}

function checkString(value: unknown, what: string, bytesMin: number, bytesMax: number): string {
  if (typeof value !== 'string') throw invalid(`${what} must be a string`);
  const bytes = utf8Bytes(value);
  if (bytes < bytesMin || bytes > bytesMax) throw invalid(`${what} must be ${bytesMin} to ${bytesMax} UTF-8 bytes, got ${bytes}`);
  return value;
}

function checkOptionalId(value: unknown, what: string, bytesMax: number): string | undefined {
  return value === undefined ? undefined : checkString(value, what, 1, bytesMax);
}

function checkTimeout(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < SESSION_TIMEOUT_MS_MIN || value > SESSION_TIMEOUT_MS_MAX) {
    throw new SluiceError('INVALID_SESSION_TIMEOUT', `${what} must be an integer from ${SESSION_TIMEOUT_MS_MIN} to ${SESSION_TIMEOUT_MS_MAX} ms, got ${String(value)}`);
  }
  return value;
}

function checkNotNewer(member: Member, generation: number): void {
  if (generation > member.generation) {
    throw new SluiceError('ILLEGAL_GENERATION', `generation ${generation} is newer than member ${member.memberId}'s generation ${member.generation}`);
  }
}

/** A list of partitions to read: legal names, non-negative integers, no duplicates. Keyed by partitionKey. */
function checkPartitionList(partitions: unknown): Map<string, TopicPartition> {
  if (!Array.isArray(partitions) || partitions.length > COMMIT_PARTITIONS_MAX) {
    throw invalid(`partitions must be an array of at most ${COMMIT_PARTITIONS_MAX} entries`);
  }
  const out = new Map<string, TopicPartition>();
  for (const entry of partitions as unknown[]) {
    if (typeof entry !== 'object' || entry === null) throw invalid('each partition must be an object { topic, partition }');
    const raw = entry as Record<string, unknown>;
    const topic = checkTopicName(raw.topic);
    const partition = checkInteger(raw.partition, 'partition', 0, Number.MAX_SAFE_INTEGER);
    const key = partitionKey(topic, partition);
    if (out.has(key)) throw invalid(`partition ${key} is named twice`);
    out.set(key, { topic, partition });
  }
  return out;
}

function sortedMembers(group: Group): Member[] {
  return [...group.members.values()].sort(
    (a, b) => compareStrings(a.instanceId ?? a.memberId, b.instanceId ?? b.memberId) || compareStrings(a.memberId, b.memberId),
  );
}

function sortedPartitions(partitions: Iterable<TopicPartition>): TopicPartition[] {
  return [...partitions].map((tp) => ({ topic: tp.topic, partition: tp.partition })).sort(compareTopicPartitions);
}

function sameKeys(target: ReadonlyMap<string, TopicPartition>, list: readonly TopicPartition[]): boolean {
  return target.size === list.length && list.every((tp) => target.has(partitionKey(tp.topic, tp.partition)));
}

function assignmentOf(member: Member): MemberAssignment {
  return {
    groupId: member.group.groupId,
    memberId: member.memberId,
    generation: member.generation,
    partitions: sortedPartitions(member.current.values()),
    heartbeatIntervalMs: Math.max(HEARTBEAT_INTERVAL_MS_MIN, Math.floor(member.sessionTimeoutMs / 3)),
  };
}

function stateOf(group: Group): GroupState {
  if (group.members.size === 0) return 'empty';
  for (const m of group.members.values()) {
    if (m.revoking.size > 0 || !sameKeys(m.target, [...m.current.values()])) return 'reconciling';
  }
  return 'stable';
}

function assignorOf(group: Group): AssignorName | null {
  for (const m of group.members.values()) return m.assignor;
  return null;
}

/** No partition held twice; current within target; nothing revoked that is in the target. */
function checkInvariants(group: Group): void {
  const held = new Set<string>();
  for (const m of group.members.values()) {
    for (const key of m.current.keys()) {
      assert(!held.has(key), () => `partition ${key} of group ${group.groupId} has one holder`);
      assert(m.target.has(key), () => `member ${m.memberId} holds only target partitions`);
      held.add(key);
    }
    for (const key of m.revoking.keys()) {
      assert(!held.has(key), () => `partition ${key} of group ${group.groupId} has one holder`);
      assert(!m.target.has(key), () => `member ${m.memberId} is not revoking a partition of its target`);
      held.add(key);
    }
  }
}
