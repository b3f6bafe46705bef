/**
 * A consumer's membership in a consumer group: JOIN_GROUP, heartbeats, ASSIGNMENT pushes
 * applied one at a time, commits. The server decides the assignment (KIP-848 style), so
 * this side only follows it:
 *
 *   apply(assignment of generation g):
 *     revoked = owned - assigned   -> stop handing them out, wait until the application is
 *                                     done with what it holds, onRevoked, commit what was
 *                                     processed (autoCommit), unsubscribe
 *     added   = assigned - owned   -> fetch their committed offsets, subscribe from there
 *                                     (no commit: earliest with fromBeginning, else latest),
 *                                     onAssigned, and only then hand out their records
 *     then acknowledge g with a HEARTBEAT, which lets the coordinator hand the revoked
 *     partitions to their new owners.
 *
 * Partitions that stay are never touched: they keep flowing during a rebalance
 * (cooperative). Delivery is at least once: offsets are committed after the application
 * processed the records (see Consumer.processedOffsets), every autoCommitIntervalMs, on
 * revocation and on close.
 *
 * Fencing: UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION on a heartbeat, a commit or a rejoin
 * means the coordinator dropped this member (its session expired, or the broker restarted
 * and counts generations from 1 again); it gives up every partition without committing
 * (once, however many requests failed) and joins again as a new member.
 * FENCED_INSTANCE_ID (another member joined with this one's instanceId) is final: the
 * consumer fails with it, as Kafka's.
 *
 * Browser-safe; owner: the client's thread.
 */
import { SluiceError } from '../errors.js';
import { Op, type AssignmentPush, type HeartbeatOk, type JoinGroupOk } from '../ws-gateway/frames.js';
import { backoffDelayMs, RETRY_BACKOFF } from './backoff.js';
import type { Clock, Random, TimerHandle } from './clock.js';
import { ClientClosedError, ConnectionLostError, isRetriableError, type Connection } from './connection.js';
import type { StartPosition, TopicPartition } from './consumer.js';

export type AssignorName = 'sticky' | 'range' | 'roundrobin';

export interface GroupOptions {
  groupId: string;
  topics: string[];
  /** Commit processed offsets every autoCommitIntervalMs, on revocation and on close. Default true. */
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  /** The coordinator drops a member it has not heard from for this long. Default 10 s. */
  sessionTimeoutMs?: number;
  /** How long a revocation may take before the member is fenced. Default: sessionTimeoutMs. */
  rebalanceTimeoutMs?: number;
  /** Where partitions without a committed offset start: earliest when true, else latest. Default false. */
  fromBeginning?: boolean;
  assignor?: AssignorName;
  /** Static membership: a stable id, so a restarted member takes over its old assignment. */
  instanceId?: string;
  onAssigned?: (partitions: TopicPartition[]) => void | Promise<void>;
  onRevoked?: (partitions: TopicPartition[]) => void | Promise<void>;
}

export const AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000;
export const SESSION_TIMEOUT_MS_DEFAULT = 10_000;

/** What the member needs from its consumer. */
export interface GroupHost {
  /** Subscribes `partitions`, holding their records back until release(). */
  assign(partitions: (TopicPartition & { from?: StartPosition })[]): Promise<void>;
  unassign(partitions: TopicPartition[]): Promise<void>;
  quiesce(partitions: TopicPartition[], timeoutMs: number): Promise<void>;
  /** Starts handing out the records of partitions assigned held (their onAssigned has run). */
  release(partitions: TopicPartition[]): void;
  processedOffsets(partitions?: TopicPartition[]): { topic: string; partition: number; offset: number }[];
  fail(err: unknown): void;
}

type ResolvedGroupOptions = Required<Pick<GroupOptions, 'groupId' | 'topics' | 'autoCommit' | 'autoCommitIntervalMs' | 'sessionTimeoutMs' | 'rebalanceTimeoutMs' | 'fromBeginning'>> & GroupOptions;

type AssignmentFrame = Pick<JoinGroupOk | HeartbeatOk | AssignmentPush, 'generation' | 'heartbeatIntervalMs' | 'groupId' | 'memberId' | 'partitions'>;

/** A partition's key in the client's maps (the consumer's and its group member's). */
export const partitionKey = (topic: string, partition: number): string => `${partition}\u0000${topic}`;
const key = partitionKey;

/** An offset to commit: the next offset to read (the last processed + 1). */
export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: number;
  metadata?: string;
}

export class GroupMember {
  readonly #connection: Connection;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #host: GroupHost;
  readonly #options: ResolvedGroupOptions;
  #memberId = '';
  /** A fencing is queued or running (#onError queues one, however many requests fail). */
  #fencing = false;
  /** The generation applied last (-1: none). */
  #generation = -1;
  #heartbeatIntervalMs = 1000;
  readonly #owned = new Map<string, TopicPartition>();
  /** Offsets committed last, to skip commits that change nothing. */
  readonly #committed = new Map<string, number>();
  #chain: Promise<void> = Promise.resolve();
  #heartbeatTimer: TimerHandle | null = null;
  #commitTimer: TimerHandle | null = null;
  #closed = false;
  /** close() began (its promise: a second call waits for the same leave); assignments that arrive now are not applied. */
  #closing: Promise<void> | null = null;
  #joining = false;
  readonly #unlisten: (() => void)[] = [];
  #joined: { resolve: () => void; promise: Promise<void> };

  constructor(connection: Connection, clock: Clock, random: Random, host: GroupHost, options: GroupOptions) {
    this.#connection = connection;
    this.#clock = clock;
    this.#random = random;
    this.#host = host;
    this.#options = checkGroupOptions(options);
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#joined = { resolve, promise };
    this.#unlisten.push(connection.onAssignment((push) => this.#onPush(push)));
    this.#unlisten.push(connection.onReconnected(() => this.#rejoin()));
  }

  get memberId(): string {
    return this.#memberId;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Resolves once the first assignment was applied. */
  get joined(): Promise<void> {
    return this.#joined.promise;
  }

  /** The partitions this member owns now. */
  owned(): TopicPartition[] {
    return [...this.#owned.values()];
  }

  start(): void {
    void this.#join();
    if (this.#options.autoCommit) this.#scheduleCommit();
  }

  // ------------------------------------------------------------ joining

  async #join(): Promise<void> {
    if (this.#joining || this.#closed) return;
    this.#joining = true;
    try {
      for (let attempt = 0; !this.#closed; attempt++) {
        // The id this attempt asks with: a fencing meanwhile may clear this.#memberId.
        const memberId = this.#memberId;
        try {
          const ok = await this.#connection.request({
            op: Op.JOIN_GROUP,
            groupId: this.#options.groupId,
            memberId,
            instanceId: this.#options.instanceId ?? '',
            clientId: '',
            sessionTimeoutMs: this.#options.sessionTimeoutMs,
            rebalanceTimeoutMs: this.#options.rebalanceTimeoutMs,
            assignor: this.#options.assignor ?? '',
            topics: this.#options.topics,
          });
          if (ok.op !== Op.JOIN_GROUP_OK) throw new SluiceError('INTERNAL', `JOIN_GROUP answered by op ${ok.op}`);
          this.#memberId = ok.memberId;
          this.#heartbeatIntervalMs = ok.heartbeatIntervalMs;
          this.#enqueue(ok);
          this.#scheduleHeartbeat();
          return;
        } catch (err) {
          if (this.#closed || err instanceof ClientClosedError) return;
          if (err instanceof ConnectionLostError) return; // the reconnect listener joins again
          if (err instanceof SluiceError && err.code === 'UNKNOWN_MEMBER_ID' && memberId !== '') {
            // The coordinator forgot this member (its session ran out, or the broker
            // restarted and counts generations from 1 again): as when fenced, its partitions
            // go without a commit, and it joins as a new member.
            if (this.#memberId === memberId) this.#memberId = '';
            const lost = this.#chain.then(() => this.#lose());
            this.#chain = lost.catch(() => undefined);
            try {
              await lost;
            } catch (e) {
              this.#host.fail(e);
              return;
            }
            continue;
          }
          if (!isRetriableError(err)) {
            this.#host.fail(err);
            return;
          }
          await this.#sleep(Math.max(err instanceof SluiceError ? (err.backoffMs ?? 0) : 0, backoffDelayMs(attempt, RETRY_BACKOFF, this.#random)));
        }
      }
    } finally {
      this.#joining = false;
    }
  }

  #rejoin(): void {
    if (this.#closed) return;
    this.#cancelHeartbeat();
    void this.#join();
  }

  #onPush(push: AssignmentPush): void {
    if (push.groupId !== this.#options.groupId || push.memberId !== this.#memberId || this.#closed) return;
    this.#enqueue(push);
  }

  // ------------------------------------------------------------ assignments

  #enqueue(assignment: AssignmentFrame): void {
    this.#chain = this.#chain.then(() => this.#apply(assignment)).catch((err) => this.#onError(err));
  }

  async #apply(a: AssignmentFrame): Promise<void> {
    if (this.#closed || this.#closing !== null || a.memberId !== this.#memberId || a.generation < this.#generation) return;
    // Within one generation a member's partitions only grow (others release them): an
    // assignment of the applied generation matters only if it adds partitions.
    if (a.generation === this.#generation && a.partitions.every((p) => this.#owned.has(key(p.topic, p.partition)))) return;
    this.#heartbeatIntervalMs = a.heartbeatIntervalMs;
    const target = new Map(a.partitions.map((p) => [key(p.topic, p.partition), { topic: p.topic, partition: p.partition }]));
    const revoked = [...this.#owned].filter(([k]) => !target.has(k)).map(([, p]) => p);
    const added = [...target].filter(([k]) => !this.#owned.has(k)).map(([, p]) => p);
    // A throwing onRevoked does not stop the revocation (the partitions would stay with this
    // member, and the hook run again at every heartbeat, until the rebalance timeout fenced
    // it): they go, uncommitted (the hook may not have finished what the records were for),
    // and the application hears of the error once, when the assignment is applied.
    let hookFailure: { error: unknown } | null = null;
    if (revoked.length > 0) {
      await this.#host.quiesce(revoked, Math.floor(this.#options.rebalanceTimeoutMs / 2));
      try {
        await this.#options.onRevoked?.(revoked);
      } catch (error) {
        hookFailure = { error };
      }
      if (this.#options.autoCommit && hookFailure === null) await this.#commitQuietly(revoked, a.generation);
      for (const p of revoked) {
        this.#owned.delete(key(p.topic, p.partition));
        this.#committed.delete(key(p.topic, p.partition));
      }
      await this.#host.unassign(revoked);
    }
    // Revocations are done: this generation is applied as far as the coordinator is
    // concerned, and records of the added partitions may be committed under it once they
    // are handed out (after onAssigned).
    this.#generation = a.generation;
    if (added.length > 0) {
      const committed = await this.#fetchCommitted(added, a.generation);
      for (const p of added) this.#owned.set(key(p.topic, p.partition), p);
      const fallback: StartPosition = this.#options.fromBeginning ? 'earliest' : 'latest';
      await this.#host.assign(
        added.map((p) => {
          const offset = committed.get(key(p.topic, p.partition));
          return { ...p, from: offset === undefined ? fallback : { offset } };
        }),
      );
      for (const p of added) {
        const offset = committed.get(key(p.topic, p.partition));
        if (offset !== undefined) this.#committed.set(key(p.topic, p.partition), offset);
      }
      try {
        await this.#options.onAssigned?.(added);
      } finally {
        // Their records are handed out from now on (Kafka's poll returns none before
        // onPartitionsAssigned ran); a seek inside onAssigned has set where they start.
        this.#host.release(added);
      }
    }
    this.#joined.resolve();
    // Acknowledge at once: revoked partitions are released to their new owners.
    if (revoked.length > 0) await this.#heartbeat();
    if (hookFailure !== null) throw hookFailure.error;
  }

  async #fetchCommitted(partitions: TopicPartition[], generation: number): Promise<Map<string, number>> {
    const ok = await this.#connection.request({
      op: Op.FETCH_COMMITTED,
      groupId: this.#options.groupId,
      memberId: this.#memberId,
      generation,
      partitions: partitions.map((p) => ({ topic: p.topic, partition: p.partition })),
    });
    if (ok.op !== Op.FETCH_COMMITTED_OK) throw new SluiceError('INTERNAL', `FETCH_COMMITTED answered by op ${ok.op}`);
    return new Map(ok.offsets.map((o) => [key(o.topic, o.partition), o.offset]));
  }

  /** The coordinator dropped this member: give everything up without committing, join anew. */
  async #fenced(err: SluiceError): Promise<void> {
    if (err.code === 'UNKNOWN_MEMBER_ID') this.#memberId = '';
    await this.#lose();
    this.#cancelHeartbeat();
    void this.#join();
  }

  /** Gives up every partition without committing (Kafka's partitions lost); the next assignment of any generation applies. */
  async #lose(): Promise<void> {
    const all = [...this.#owned.values()];
    this.#owned.clear();
    this.#committed.clear();
    this.#generation = -1;
    if (all.length === 0) return;
    await this.#host.quiesce(all, 0);
    await this.#options.onRevoked?.(all);
    await this.#host.unassign(all);
  }

  #onError(err: unknown): void {
    if (this.#closed || err instanceof ClientClosedError || err instanceof ConnectionLostError) return;
    if (err instanceof SluiceError && (err.code === 'UNKNOWN_MEMBER_ID' || err.code === 'ILLEGAL_GENERATION')) {
      // Once: every heartbeat and commit of a fenced member fails alike until it has joined again.
      if (this.#fencing) return;
      this.#fencing = true;
      this.#chain = this.#chain
        .then(() => this.#fenced(err))
        .catch((e) => this.#host.fail(e))
        .finally(() => {
          this.#fencing = false;
        });
      return;
    }
    if (isRetriableError(err)) return; // the next heartbeat brings the assignment again
    this.#host.fail(err);
  }

  // ------------------------------------------------------------ heartbeats

  #scheduleHeartbeat(): void {
    this.#cancelHeartbeat();
    if (this.#closed) return;
    this.#heartbeatTimer = this.#clock.setTimeout(() => {
      this.#heartbeatTimer = null;
      void this.#heartbeat().finally(() => this.#scheduleHeartbeat());
    }, this.#heartbeatIntervalMs);
  }

  #cancelHeartbeat(): void {
    if (this.#heartbeatTimer !== null) this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
  }

  async #heartbeat(): Promise<void> {
    if (this.#closed || this.#memberId === '' || this.#connection.state !== 'ready') return;
    try {
      const ok = await this.#connection.request({ op: Op.HEARTBEAT, groupId: this.#options.groupId, memberId: this.#memberId, generation: Math.max(this.#generation, 0) });
      if (ok.op === Op.HEARTBEAT_OK && ok.generation >= this.#generation) this.#enqueue(ok);
    } catch (err) {
      this.#onError(err);
    }
  }

  // ------------------------------------------------------------ commits

  /**
   * Commits offsets: the given ones, or the processed offsets of every owned partition that
   * moved since its last commit. Resolves once durable on the broker.
   */
  async commit(offsets?: OffsetToCommit[]): Promise<void> {
    if (this.#closed) throw new ClientClosedError();
    await this.#commit(offsets ?? this.#uncommitted(), this.#generation);
  }

  /** The processed offsets of `partitions` (default: every owned one) not committed yet. */
  #uncommitted(partitions: TopicPartition[] = this.owned()): OffsetToCommit[] {
    return this.#host.processedOffsets(partitions).filter((o) => this.#committed.get(key(o.topic, o.partition)) !== o.offset);
  }

  async #commit(offsets: OffsetToCommit[], generation: number): Promise<void> {
    if (offsets.length === 0) return;
    if (this.#memberId === '' || generation < 0) {
      throw new SluiceError('REBALANCE_IN_PROGRESS', 'the consumer has not joined its group yet; commit after the assignment', { backoffMs: 100 });
    }
    const list = offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset, metadata: o.metadata ?? '' }));
    const ok = await this.#connection.request({ op: Op.COMMIT_OFFSETS, groupId: this.#options.groupId, memberId: this.#memberId, generation, offsets: list });
    if (ok.op !== Op.COMMIT_OFFSETS_OK) throw new SluiceError('INTERNAL', `COMMIT_OFFSETS answered by op ${ok.op}`);
    for (const o of list) this.#committed.set(key(o.topic, o.partition), o.offset);
  }

  /** Commits the processed offsets of `partitions`; a failure is not fatal (at least once: they are read again). */
  async #commitQuietly(partitions: TopicPartition[] | undefined, generation: number): Promise<void> {
    try {
      await this.#commit(this.#uncommitted(partitions), generation);
    } catch (err) {
      if (err instanceof SluiceError && (err.code === 'UNKNOWN_MEMBER_ID' || err.code === 'ILLEGAL_GENERATION' || err.code === 'FENCED_INSTANCE_ID')) this.#onError(err);
    }
  }

  #scheduleCommit(): void {
    if (this.#closed) return;
    this.#commitTimer = this.#clock.setTimeout(() => {
      this.#commitTimer = null;
      // Through the chain, so that a commit never races an assignment being applied.
      this.#chain = this.#chain.then(() => this.#commitQuietly(undefined, this.#generation)).catch(() => undefined);
      void this.#chain.finally(() => this.#scheduleCommit());
    }, this.#options.autoCommitIntervalMs);
  }

  // ------------------------------------------------------------ leaving

  /**
   * Leaves the group as a revocation of everything: stops handing out records, waits until
   * the application is done with what it holds (up to rebalanceTimeoutMs / 2: a handler that
   * awaits close() itself waits that long), onRevoked, commits what was processed
   * (autoCommit), then LEAVE_GROUP and gives up every partition. Only then can the
   * coordinator hand them to another member, so no record is with two members at once.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closing ??= this.#leave();
    return this.#closing;
  }

  async #leave(): Promise<void> {
    await this.#chain.catch(() => undefined);
    const owned = this.owned();
    await this.#host.quiesce(owned, Math.floor(this.#options.rebalanceTimeoutMs / 2));
    if (owned.length > 0) {
      try {
        await this.#options.onRevoked?.(owned);
      } catch {
        // The member leaves all the same; what was not committed is read again by the next owner.
      }
    }
    if (this.#options.autoCommit) await this.#commitQuietly(undefined, this.#generation);
    this.#closed = true;
    this.#cancelHeartbeat();
    if (this.#commitTimer !== null) this.#clock.clearTimeout(this.#commitTimer);
    this.#commitTimer = null;
    for (const off of this.#unlisten) off();
    const all = [...this.#owned.values()];
    this.#owned.clear();
    if (this.#memberId !== '' && this.#connection.state === 'ready') {
      try {
        await this.#connection.request({ op: Op.LEAVE_GROUP, groupId: this.#options.groupId, memberId: this.#memberId });
      } catch {
        // Gone already (session expired, connection lost): the session timeout removes it.
      }
    }
    await this.#host.unassign(all);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => this.#clock.setTimeout(r as () => void, ms));
  }
}

function checkGroupOptions(o: GroupOptions): ResolvedGroupOptions {
  if (typeof o.groupId !== 'string' || o.groupId.length === 0) throw new SluiceError('INVALID_GROUP_ID', 'groupId must be a non-empty string');
  if (!Array.isArray(o.topics) || o.topics.length === 0 || o.topics.some((t) => typeof t !== 'string' || t.length === 0)) {
    throw new SluiceError('INVALID_ARGUMENT', 'a group consumer needs topics: a non-empty array of topic names');
  }
  const int = (v: unknown, what: string, fallback: number, min: number, max: number): number => {
    const n = v === undefined ? fallback : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new SluiceError('INVALID_ARGUMENT', `${what} must be an integer from ${min} to ${max}, got ${String(v)}`);
    return n;
  };
  const sessionTimeoutMs = int(o.sessionTimeoutMs, 'sessionTimeoutMs', SESSION_TIMEOUT_MS_DEFAULT, 1, 0xffff_ffff);
  return {
    ...o,
    topics: [...new Set(o.topics)],
    autoCommit: o.autoCommit ?? true,
    autoCommitIntervalMs: int(o.autoCommitIntervalMs, 'autoCommitIntervalMs', AUTO_COMMIT_INTERVAL_MS_DEFAULT, 1, 2 ** 31 - 1),
    sessionTimeoutMs,
    rebalanceTimeoutMs: int(o.rebalanceTimeoutMs, 'rebalanceTimeoutMs', sessionTimeoutMs, 1, 0xffff_ffff),
    fromBeginning: o.fromBeginning ?? false,
  };
}
