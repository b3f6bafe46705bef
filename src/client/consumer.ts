/**
 * The consumer: one subscription per assigned partition (SUBSCRIBE with byte credit, DATA
 * pushes), records handed to the application through `for await` or `run({ eachBatch })`,
 * credit granted back as the application finishes with them (./credit.ts), seek,
 * pause/resume per partition, reset on OFFSET_OUT_OF_RANGE, and resubscription after a
 * reconnect from the next offset not yet handed to the application (at least once, no
 * loss; records received but not handed out are dropped and fetched again).
 *
 * Assignment is one entry point (#assign / #unassign): today `subscribe(topic)` assigns
 * every partition of the topic and `assign([...])` the given ones; consumer groups (the
 * next issue) will call the same two from the coordinator's assignment pushes, and add
 * commits of `position()` after processing.
 *
 * Browser-safe; owner: the client's thread.
 */
import { SluiceError } from '../errors.js';
import type { Crc32cFunction } from '../persist/record-batch-codec.js';
import { Op, toSluiceError, type DataPush, type SubscriptionClosedPush } from '../ws-gateway/frames.js';
import { backoffDelayMs, RETRY_BACKOFF } from './backoff.js';
import type { Clock, Random, TimerHandle } from './clock.js';
import { decodePayload, type ConsumerRecord, type DecodedPayload } from './codec.js';
import { ClientClosedError, ConnectionLostError, isRetriableError, type Connection } from './connection.js';
import { CONSUMER_WINDOW_BYTES_DEFAULT, CREDIT_IDLE_GRANT_MS, CreditAccount } from './credit.js';
import { GroupMember, partitionKey, type GroupOptions, type OffsetToCommit } from './group-member.js';

export type StartPosition = 'earliest' | 'latest' | { offset: number } | { timestamp: number };

export interface ConsumerOptions extends Partial<GroupOptions> {
  /** Where partitions without a position start. Default 'latest' (Kafka's auto.offset.reset). */
  from?: StartPosition;
  /**
   * Where a position out of range goes (retention removed it, or it is past the end). As
   * Kafka's one auto.offset.reset covers both cases, the default follows the start setting:
   * 'earliest' when `from` is 'earliest' (a group: `fromBeginning`), else 'latest'.
   */
  resetPolicy?: 'earliest' | 'latest';
  /** Record bytes the server may push per partition before the application consumes them. */
  windowBytes?: number;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface ConsumerBatch {
  topic: string;
  partition: number;
  records: ConsumerRecord[];
  highWatermark: number;
}

export interface RunOptions {
  eachBatch?: (batch: ConsumerBatch) => Promise<void> | void;
  eachRecord?: (record: ConsumerRecord) => Promise<void> | void;
}

export interface ConsumerContext {
  connection: Connection;
  clock: Clock;
  random: Random;
  crc32c?: Crc32cFunction;
  partitionCount(topic: string): Promise<number>;
}

/** Records of one DATA frame, as handed out; its record bytes go back as credit once finished. */
interface ReadyBatch {
  assignment: Assignment;
  generation: number;
  records: ConsumerRecord[];
  next: number;
  creditBytes: number;
  highWatermark: number;
}

interface Assignment {
  topic: string;
  partition: number;
  /** The next offset to hand to the application; null until the start position is resolved. */
  position: number | null;
  /** The next offset expected from the server (records below it are skipped). */
  fetchOffset: number;
  subscriptionId: number;
  /** Bumped at each (re)subscription; data of an older generation is dropped. */
  generation: number;
  credit: CreditAccount;
  /** Set while an idle grant is scheduled (./credit.ts). */
  idleTimer: TimerHandle | null;
  paused: boolean;
  /** DATA frames are decoded in order behind the subscription's start. */
  chain: Promise<void>;
  /** Links of `chain` (of this or an earlier subscription) not settled yet; 0: a DATA frame may be decoded at once. */
  chainPending: number;
  /** Start from here when position is null: the initial request or the reset policy. */
  start: StartPosition;
  active: boolean;
  /** The next offset after the records the application has finished with (what a group commits); null before any. */
  processed: number | null;
  /** A record or batch of this partition is with the application right now. */
  inHand: boolean;
  /** Counts seek() calls: a batch in hand stops at a seek, and the seek sets `processed`. */
  seeks: number;
  /** Being revoked by the group: hand out nothing more. */
  revoking: boolean;
  /** Assigned by the group and its onAssigned not done yet: its records wait (in its credit window, as when paused). */
  held: boolean;
}

const key = partitionKey;
/** How often quiesce() looks whether the application finished its records. */
const QUIESCE_POLL_MS = 5;

export class Consumer implements AsyncIterable<ConsumerRecord> {
  readonly #ctx: ConsumerContext;
  readonly #from: StartPosition;
  readonly #resetPolicy: 'earliest' | 'latest';
  readonly #windowBytes: number;
  readonly #assignments = new Map<string, Assignment>();
  readonly #ready: ReadyBatch[] = [];
  #wake: (() => void) | null = null;
  /** A run() or a for-await loop is reading: one at a time (#wake has room for one waiter). */
  #reading = false;
  #error: unknown = null;
  #closed = false;
  readonly #offReconnected: () => void;
  /** Set when the consumer is a member of a consumer group (options.groupId). */
  readonly #group: GroupMember | null = null;

  constructor(ctx: ConsumerContext, options: ConsumerOptions = {}) {
    this.#ctx = ctx;
    this.#from = options.from ?? 'latest';
    const fromStart = options.groupId !== undefined ? options.fromBeginning === true : this.#from === 'earliest';
    this.#resetPolicy = options.resetPolicy ?? (fromStart ? 'earliest' : 'latest');
    if (this.#resetPolicy !== 'earliest' && this.#resetPolicy !== 'latest') {
      throw new SluiceError('INVALID_ARGUMENT', `resetPolicy must be 'earliest' or 'latest', got ${String(options.resetPolicy)}`);
    }
    this.#windowBytes = options.windowBytes ?? CONSUMER_WINDOW_BYTES_DEFAULT;
    if (!Number.isInteger(this.#windowBytes) || this.#windowBytes < 1 || this.#windowBytes > 0xffff_ffff) {
      throw new SluiceError('INVALID_ARGUMENT', `windowBytes must be an integer in [1, 2^32 - 1], got ${this.#windowBytes}`);
    }
    this.#offReconnected = ctx.connection.onReconnected(() => {
      for (const a of this.#assignments.values()) if (a.active) this.#resubscribe(a);
    });
    if (options.groupId !== undefined) {
      this.#group = new GroupMember(
        ctx.connection,
        ctx.clock,
        ctx.random,
        {
          assign: (partitions) => Promise.all(partitions.map((p) => this.#assign(p.topic, p.partition, p.from ?? this.#from, true))).then(() => undefined),
          release: (partitions) => {
            for (const p of partitions) {
              const a = this.#assignments.get(key(p.topic, p.partition));
              if (a) a.held = false;
            }
            this.#signal();
          },
          unassign: (partitions) => Promise.all(partitions.map((p) => this.#unassign(p.topic, p.partition))).then(() => undefined),
          quiesce: (partitions, timeoutMs) => this.quiesce(partitions, timeoutMs),
          processedOffsets: (partitions) => this.processedOffsets(partitions),
          fail: (err) => this.#fail(err),
        },
        options as GroupOptions,
      );
      this.#group.start();
    }
  }

  /** The consumer group membership, when the consumer was made with a groupId. */
  get group(): { readonly memberId: string; readonly generation: number; readonly joined: Promise<void> } | null {
    return this.#group;
  }

  /**
   * Commits offsets for the group: the given ones, or the offsets after the records the
   * application has processed on every owned partition. Resolves once durable.
   */
  async commit(offsets?: OffsetToCommit[]): Promise<void> {
    if (!this.#group) throw new SluiceError('INVALID_ARGUMENT', 'commit() needs a consumer made with a groupId');
    await this.#group.commit(offsets);
  }

  /** Assigns every partition of `topic`. */
  async subscribe(topic: string, options: { from?: StartPosition } = {}): Promise<void> {
    this.#checkManual();
    const count = await this.#ctx.partitionCount(topic);
    await this.assign(Array.from({ length: count }, (_, partition) => ({ topic, partition, from: options.from })));
  }

  /** Assigns partitions, each from its own start (default: the consumer's `from`). Resolves once subscribed. */
  async assign(partitions: (TopicPartition & { from?: StartPosition })[]): Promise<void> {
    this.#checkOpen();
    this.#checkManual();
    await Promise.all(partitions.map((p) => this.#assign(p.topic, p.partition, p.from ?? this.#from)));
  }

  /** Stops consuming these partitions. */
  async unassign(partitions: TopicPartition[]): Promise<void> {
    this.#checkManual();
    await Promise.all(partitions.map((p) => this.#unassign(p.topic, p.partition)));
  }

  /** The partitions assigned. */
  assignment(): TopicPartition[] {
    return [...this.#assignments.values()].map((a) => ({ topic: a.topic, partition: a.partition }));
  }

  /** The next offset to hand to the application for a partition (null before it is known). */
  position(topic: string, partition: number): number | null {
    return this.#assignments.get(key(topic, partition))?.position ?? null;
  }

  /**
   * Continues a partition from `offset`: records buffered for it are dropped, and the rest
   * of a batch in hand (in `for await` or `run({ eachRecord })`) is not handed out. The
   * partition's processed offset (what a commit takes) becomes `offset`, as Kafka's commit
   * takes the position after a seek.
   */
  seek(topic: string, partition: number, offset: number): void {
    const a = this.#get(topic, partition);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SluiceError('INVALID_ARGUMENT', `offset must be >= 0, got ${offset}`);
    a.position = offset;
    a.processed = offset;
    a.seeks++;
    this.#resubscribe(a);
  }

  /** Stops handing out records of these partitions and stops granting them credit. */
  pause(partitions: TopicPartition[]): void {
    for (const p of partitions) {
      const a = this.#get(p.topic, p.partition);
      a.paused = true;
      a.credit.pause();
    }
  }

  resume(partitions: TopicPartition[]): void {
    for (const p of partitions) {
      const a = this.#get(p.topic, p.partition);
      a.paused = false;
      this.#returnCredit(a, a.credit.resume());
    }
    this.#signal();
  }

  paused(): TopicPartition[] {
    return [...this.#assignments.values()].filter((a) => a.paused).map((a) => ({ topic: a.topic, partition: a.partition }));
  }

  /**
   * For each assigned partition (or the given ones) whose application has finished records:
   * the offset to commit, i.e. the next offset after the last record processed. A record
   * handed out by `for await` counts as processed when the loop asks for the next one; a
   * batch given to run() when its handler resolves.
   */
  processedOffsets(partitions?: TopicPartition[]): { topic: string; partition: number; offset: number }[] {
    const out: { topic: string; partition: number; offset: number }[] = [];
    const list = partitions ? partitions.map((p) => this.#assignments.get(key(p.topic, p.partition))) : [...this.#assignments.values()];
    for (const a of list) if (a && a.processed !== null) out.push({ topic: a.topic, partition: a.partition, offset: a.processed });
    return out;
  }

  /**
   * Stops handing out records of these partitions and waits until the application is done
   * with the ones it holds (or `timeoutMs` passed): the first step of a group revocation.
   */
  async quiesce(partitions: TopicPartition[], timeoutMs: number): Promise<void> {
    const list = partitions.map((p) => this.#assignments.get(key(p.topic, p.partition))).filter((a): a is Assignment => a !== undefined);
    for (const a of list) a.revoking = true;
    const deadline = this.#ctx.clock.now() + timeoutMs;
    while (list.some((a) => a.inHand) && this.#ctx.clock.now() < deadline) {
      await new Promise((r) => this.#ctx.clock.setTimeout(r as () => void, QUIESCE_POLL_MS));
    }
  }

  /** Reports a failure to whoever iterates or runs (the group's fatal errors). */
  fail(err: unknown): void {
    this.#fail(err);
  }

  /** Ends every subscription; iterators finish. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#group) await this.#group.close().catch(() => undefined);
    this.#closed = true;
    this.#offReconnected();
    const all = [...this.#assignments.values()];
    await Promise.allSettled(all.map((a) => this.#unassign(a.topic, a.partition)));
    this.#signal();
  }

  /** Hands out records one at a time, in offset order per partition. */
  async *[Symbol.asyncIterator](): AsyncIterator<ConsumerRecord> {
    this.#startReading();
    let current: ReadyBatch | null = null;
    try {
      for (;;) {
        if (current && (current.next >= current.records.length || !this.#isCurrent(current) || current.assignment.paused)) {
          if (current.next >= current.records.length || !this.#isCurrent(current)) this.#finished(current);
          else this.#ready.unshift(current); // paused mid-batch: keep the rest for resume
          current = null;
        }
        if (!current) {
          current = await this.#nextBatch();
          if (!current) return;
          continue;
        }
        const record = current.records[current.next++];
        const a = current.assignment;
        const seeks = a.seeks;
        a.position = record.offset + 1;
        a.inHand = true;
        try {
          yield record;
        } finally {
          a.inHand = false;
        }
        // The application asked for the next record: it is done with this one (unless it
        // sought meanwhile, which set where processing goes on).
        if (a.seeks === seeks) a.processed = record.offset + 1;
      }
    } finally {
      if (current) {
        // Left mid-batch (a break, a return or a throw in the loop's body): the rest waits for
        // the next reader, as after a pause; dropping it would skip those records.
        if (current.next < current.records.length && this.#isCurrent(current) && !this.#closed) this.#ready.unshift(current);
        else this.#finished(current);
      }
      this.#reading = false;
    }
  }

  #startReading(): void {
    if (this.#reading) throw new SluiceError('INVALID_ARGUMENT', 'this consumer is read already (by run() or a for-await loop): one reader at a time');
    this.#reading = true;
  }

  /** Runs a handler per batch (or per record) until close(); a handler's error ends run() with it. */
  async run(options: RunOptions): Promise<void> {
    if (!options.eachBatch && !options.eachRecord) throw new SluiceError('INVALID_ARGUMENT', 'run needs eachBatch or eachRecord');
    this.#startReading();
    try {
      await this.#runLoop(options);
    } finally {
      this.#reading = false;
    }
  }

  async #runLoop(options: RunOptions): Promise<void> {
    for (;;) {
      const batch = await this.#nextBatch();
      if (!batch) return;
      // Checked again in the same synchronous step that marks the batch in hand: a
      // revocation (quiesce) may have begun between #nextBatch's choice and this turn, and
      // it must either see this batch in hand or this batch must not be handed out.
      if (!this.#isCurrent(batch)) {
        this.#finished(batch);
        continue;
      }
      const records = batch.records.slice(batch.next);
      batch.next = batch.records.length;
      const a = batch.assignment;
      a.position = records[records.length - 1].offset + 1;
      a.inHand = true;
      try {
        const seeks = a.seeks;
        if (options.eachBatch) {
          await options.eachBatch({ topic: a.topic, partition: a.partition, records, highWatermark: batch.highWatermark });
          if (a.seeks === seeks) a.processed = records[records.length - 1].offset + 1;
        } else {
          for (const r of records) {
            await options.eachRecord!(r);
            // Sought in the handler: the seek set where processing goes on, and the rest of
            // the batch is not handed out.
            if (a.seeks !== seeks) break;
            a.processed = r.offset + 1;
          }
        }
      } finally {
        a.inHand = false;
        this.#finished(batch);
      }
    }
  }

  // ------------------------------------------------------------ handing out

  #isCurrent(batch: ReadyBatch): boolean {
    return batch.assignment.active && !batch.assignment.revoking && batch.generation === batch.assignment.generation;
  }

  /** The next batch with records to hand out, waiting for one; null once closed. */
  async #nextBatch(): Promise<ReadyBatch | null> {
    for (;;) {
      if (this.#error) {
        const err = this.#error;
        this.#error = null;
        throw err;
      }
      if (this.#closed) return null;
      for (let i = 0; i < this.#ready.length; i++) {
        const b = this.#ready[i];
        if (!this.#isCurrent(b)) {
          this.#ready.splice(i--, 1);
          this.#finished(b);
          continue;
        }
        if (b.assignment.paused || b.assignment.held) continue;
        this.#ready.splice(i, 1);
        return b;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** The application is done with a batch: its bytes go back as credit (for a live subscription). */
  #finished(batch: ReadyBatch): void {
    if (batch.creditBytes === 0) return;
    const bytes = batch.creditBytes;
    batch.creditBytes = 0;
    if (this.#isCurrent(batch)) this.#returnCredit(batch.assignment, batch.assignment.credit.consumed(bytes));
  }

  /**
   * Grants `bytes` (0: none due yet), and if the application now holds nothing of this
   * partition while bytes are still owed, grants those once CREDIT_IDLE_GRANT_MS pass with
   * no DATA frame (./credit.ts).
   */
  #returnCredit(a: Assignment, bytes: number): void {
    this.#grant(a, bytes);
    if (a.credit.idle && a.idleTimer === null) this.#armIdleGrant(a);
  }

  /**
   * The idle grant's timer. It reads the account when it fires (a resubscription meanwhile
   * reset it); a DATA frame since it was set means the stream is between frames, not idle:
   * it waits again while the application holds nothing (else finishing re-arms it).
   */
  #armIdleGrant(a: Assignment): void {
    const frames = a.credit.framesReceived;
    a.idleTimer = this.#ctx.clock.setTimeout(() => {
      a.idleTimer = null;
      if (a.credit.framesReceived === frames) this.#grant(a, a.credit.idleGrant());
      else if (a.credit.idle) this.#armIdleGrant(a);
    }, CREDIT_IDLE_GRANT_MS);
  }

  #grant(a: Assignment, bytes: number): void {
    if (bytes > 0 && a.subscriptionId !== 0) this.#ctx.connection.sendNoResponse({ op: Op.CREDIT, subscriptionId: a.subscriptionId, creditBytes: bytes });
  }

  #fail(err: unknown): void {
    this.#error ??= err;
    this.#signal();
  }

  // ------------------------------------------------------------ assignment

  #get(topic: string, partition: number): Assignment {
    const a = this.#assignments.get(key(topic, partition));
    if (!a) throw new SluiceError('INVALID_ARGUMENT', `${topic}/${partition} is not assigned to this consumer`);
    return a;
  }

  #checkManual(): void {
    if (this.#group) throw new SluiceError('INVALID_ARGUMENT', 'a group consumer gets its partitions from the group coordinator; subscribe/assign/unassign are for consumers without a groupId');
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClientClosedError();
  }

  async #assign(topic: string, partition: number, from: StartPosition, held = false): Promise<void> {
    if (this.#assignments.has(key(topic, partition))) return;
    const a: Assignment = {
      topic,
      partition,
      position: typeof from === 'object' && 'offset' in from ? from.offset : null,
      fetchOffset: 0,
      subscriptionId: 0,
      generation: 0,
      credit: new CreditAccount(this.#windowBytes),
      idleTimer: null,
      paused: false,
      chain: Promise.resolve(),
      chainPending: 0,
      start: from,
      active: true,
      processed: null,
      inHand: false,
      seeks: 0,
      revoking: false,
      held,
    };
    this.#assignments.set(key(topic, partition), a);
    await this.#resubscribe(a);
  }

  async #unassign(topic: string, partition: number): Promise<void> {
    const a = this.#assignments.get(key(topic, partition));
    if (!a) return;
    this.#assignments.delete(key(topic, partition));
    a.active = false;
    a.generation++;
    if (a.idleTimer !== null) this.#ctx.clock.clearTimeout(a.idleTimer);
    a.idleTimer = null;
    await this.#endSubscription(a);
  }

  async #endSubscription(a: Assignment): Promise<void> {
    const id = a.subscriptionId;
    if (id === 0) return;
    a.subscriptionId = 0;
    try {
      await this.#ctx.connection.request({ op: Op.UNSUBSCRIBE, subscriptionId: id });
    } catch {
      // The connection dropped (the subscription died with it) or the client closed.
    } finally {
      this.#ctx.connection.removeSubscription(id);
    }
  }

  /** (Re)subscribes from the position (or the start), dropping what was received and not handed out. */
  #resubscribe(a: Assignment): Promise<void> {
    const generation = ++a.generation;
    const old = a.subscriptionId;
    a.subscriptionId = 0;
    const started = (async () => {
      if (old !== 0) {
        this.#ctx.connection.removeSubscription(old);
        this.#ctx.connection.request({ op: Op.UNSUBSCRIBE, subscriptionId: old }).catch(() => undefined);
      }
      await this.#subscribeLoop(a, generation);
    })();
    this.#link(a, started.catch(() => undefined));
    return started;
  }

  async #startOffset(a: Assignment): Promise<number> {
    if (a.position !== null) return a.position;
    const from = a.start;
    if (from === 'earliest') return -2;
    if (from === 'latest') return -1;
    if ('offset' in from) return from.offset;
    const ok = await this.#ctx.connection.request({ op: Op.LIST_OFFSETS, timestamp: from.timestamp, partition: a.partition, topic: a.topic });
    const offset = ok.op === Op.LIST_OFFSETS_OK ? ok.offset : -1;
    return offset < 0 ? -1 : offset;
  }

  async #subscribeLoop(a: Assignment, generation: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (generation !== a.generation || !a.active || this.#closed) return;
      let subscriptionId = 0;
      try {
        const offset = await this.#startOffset(a);
        if (generation !== a.generation) return;
        subscriptionId = this.#ctx.connection.addSubscription((push) => this.#onPush(a, generation, push));
        a.credit.reset();
        const ok = await this.#ctx.connection.request({ op: Op.SUBSCRIBE, offset, subscriptionId, partition: a.partition, creditBytes: this.#windowBytes, topic: a.topic });
        if (ok.op !== Op.SUBSCRIBE_OK) throw new SluiceError('INTERNAL', `SUBSCRIBE answered by op ${ok.op}`);
        if (generation !== a.generation) {
          this.#ctx.connection.removeSubscription(subscriptionId);
          this.#ctx.connection.request({ op: Op.UNSUBSCRIBE, subscriptionId }).catch(() => undefined);
          return;
        }
        a.subscriptionId = subscriptionId;
        a.position ??= ok.offset;
        a.fetchOffset = a.position;
        return;
      } catch (err) {
        if (subscriptionId !== 0) this.#ctx.connection.removeSubscription(subscriptionId);
        if (err instanceof ConnectionLostError) return; // the reconnect listener resubscribes
        if (err instanceof ClientClosedError) return;
        if (err instanceof SluiceError && err.code === 'OFFSET_OUT_OF_RANGE') {
          a.position = null;
          a.start = this.#resetPolicy;
          continue;
        }
        if (this.#deletedUnderGroup(err)) return;
        if (!isRetriableError(err)) {
          this.#fail(err);
          throw err;
        }
        const hint = err instanceof SluiceError ? (err.backoffMs ?? 0) : 0;
        await new Promise((r) => this.#ctx.clock.setTimeout(r as () => void, Math.max(hint, backoffDelayMs(attempt, RETRY_BACKOFF, this.#ctx.random))));
      }
    }
  }

  /** Makes `step` (already chained behind `a.chain`, or a subscription's start) the chain's new end, counted while pending. */
  #link(a: Assignment, step: Promise<void>): void {
    a.chainPending++;
    a.chain = step.finally(() => {
      a.chainPending--;
    });
  }

  #onPush(a: Assignment, generation: number, push: DataPush | SubscriptionClosedPush): void {
    if (push.op === Op.DATA) {
      a.credit.received(push.records.length);
      if (a.chainPending === 0) {
        // Nothing is still being decoded or subscribed before it: decode in this turn rather
        // than a few promise hops later, unless a batch needs gunzip (asynchronous).
        let rest: Promise<void> | undefined;
        try {
          rest = this.#onData(a, generation, push);
        } catch (err) {
          this.#fail(err);
          return;
        }
        if (rest !== undefined) this.#link(a, rest.catch((err) => this.#fail(err)));
        return;
      }
      this.#link(a, a.chain.then(() => this.#onData(a, generation, push)).catch((err) => this.#fail(err)));
      return;
    }
    this.#link(a, a.chain.then(() => this.#onClosed(a, generation, push)));
  }

  /** Decodes a DATA push and hands its records out; a promise only when a batch needs gunzip. */
  #onData(a: Assignment, generation: number, push: DataPush): Promise<void> | undefined {
    if (generation !== a.generation || !a.active) return undefined;
    const decoded = decodePayload(push.records, { topic: a.topic, partition: a.partition, offsetMin: a.fetchOffset, crc32c: this.#ctx.crc32c });
    if (decoded instanceof Promise) return decoded.then((d) => this.#onDecoded(a, generation, push, d));
    this.#onDecoded(a, generation, push, decoded);
    return undefined;
  }

  #onDecoded(a: Assignment, generation: number, push: DataPush, { records, nextOffset }: DecodedPayload): void {
    if (generation !== a.generation || !a.active) return;
    a.fetchOffset = Math.max(a.fetchOffset, nextOffset);
    const ready: ReadyBatch = { assignment: a, generation, records, next: 0, creditBytes: push.records.length, highWatermark: push.highWatermark };
    if (records.length === 0) {
      this.#finished(ready);
      return;
    }
    this.#ready.push(ready);
    this.#signal();
  }

  /**
   * A group member's partition whose topic was deleted (its subscription closed, or refused):
   * the coordinator takes it back in its next assignment and the member goes on with its
   * other topics, as Kafka's consumer. A consumer without a group fails instead.
   */
  #deletedUnderGroup(err: unknown): boolean {
    return this.#group !== null && err instanceof SluiceError && err.code === 'UNKNOWN_TOPIC_OR_PARTITION';
  }

  #onClosed(a: Assignment, generation: number, push: SubscriptionClosedPush): void {
    if (generation !== a.generation || !a.active) return;
    this.#ctx.connection.removeSubscription(push.subscriptionId);
    a.subscriptionId = 0;
    const err = toSluiceError(push);
    if (err.code === 'OFFSET_OUT_OF_RANGE') {
      a.position = null;
      a.start = this.#resetPolicy;
      void this.#resubscribe(a).catch(() => undefined);
    } else if (this.#deletedUnderGroup(err)) {
      return;
    } else if (err.code === 'ENGINE_CLOSED' || push.retriable) {
      // The server is going away (the reconnect resubscribes) or asks for a later retry.
      this.#ctx.clock.setTimeout(() => {
        if (generation === a.generation && a.active && this.#ctx.connection.state === 'ready') void this.#resubscribe(a).catch(() => undefined);
      }, Math.max(push.backoffMs, RETRY_BACKOFF.initialMs));
    } else {
      this.#fail(err);
    }
  }
}
