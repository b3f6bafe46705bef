/**
 * The Sluice client: one connection to the gateway shared by any number of producers and
 * consumers, plus the admin calls. `connect({ url, clientId })` opens it.
 *
 * Browser-safe (native WebSocket, CompressionStream, the JS CRC-32C); in Node the `ws`
 * package is imported only when there is no global WebSocket, and a faster CRC-32C can be
 * injected (`crc32c`). Owner: the thread that created it.
 */
import { SluiceError } from '../errors.js';
import type { Crc32cFunction } from '../persist/record-batch-codec.js';
import { Op, ResetStrategy, type DescribeGroupOk, type DescribeTopicOk, type FetchCommittedOk, type ListGroupsOk, type MetadataOk, type ResetOffsetsOk, type ServerFrame } from '../ws-gateway/frames.js';
import { backoffDelayMs, RETRY_BACKOFF } from './backoff.js';
import { systemClock, type Clock, type Random, type TimerHandle } from './clock.js';
import { ClientClosedError, Connection, isRetriableError, type ConnectionOptions, type RequestFrame } from './connection.js';
import { Consumer, type ConsumerOptions } from './consumer.js';
import { Producer, type ProducerOptions } from './producer.js';

export interface ConnectOptions extends ConnectionOptions {
  /** CRC-32C for batches; default: the native one in Node, the JS table in browsers. */
  crc32c?: Crc32cFunction;
}

export interface TopicSettings {
  partitions?: number;
  retentionMs?: number;
  retentionBytes?: number;
  segmentMs?: number;
  segmentBytes?: number;
  /** 'delete' (default), 'compact' or 'compact,delete'. */
  cleanupPolicy?: 'delete' | 'compact' | 'compact,delete';
  /** How long a compacted topic keeps tombstones. */
  deleteRetentionMs?: number;
  /** 'CreateTime' (default: the producer's timestamps) or 'LogAppendTime' (the broker's, at append). */
  timestampType?: 'CreateTime' | 'LogAppendTime';
  /** More settings by their Kafka names (`{ 'cleanup.policy': 'compact' }`). */
  configs?: Record<string, string>;
}

export type TopicDescription = Omit<DescribeTopicOk, 'op' | 'correlationId'>;
export type Metadata = Omit<MetadataOk, 'op' | 'correlationId'>;
export type GroupSummary = ListGroupsOk['groups'][number];
export type GroupDescription = Omit<DescribeGroupOk, 'op' | 'correlationId'>;
export type ResetTarget = 'earliest' | 'latest' | { offset: number } | { timestamp: number };
export type OffsetSpec = 'earliest' | 'latest' | { timestamp: number };

/** Read-only admin calls retry retriable errors this many times. */
const ADMIN_RETRIES_MAX = 5;
/** How long close() waits for producers to flush and consumers to leave before it closes the connection anyway (a producer's own deliveryTimeoutMs default). */
export const CLOSE_TIMEOUT_MS_DEFAULT = 120_000;
/** How long a topic's partition count is trusted before the broker is asked again (Kafka's metadata.max.age.ms). */
export const METADATA_MAX_AGE_MS = 300_000;

export async function connect(options: ConnectOptions): Promise<Sluice> {
  const connection = await Connection.open(options);
  const crc32c = options.crc32c ?? (await nativeCrc32c());
  return new Sluice(connection, { ...options, crc32c });
}

/**
 * In Node, the hardware CRC-32C the broker uses (about 20x the JS table); in browsers,
 * undefined (the JS table). A variable specifier keeps bundlers and browsers from resolving
 * the Node-only module, as for `ws`.
 */
async function nativeCrc32c(): Promise<Crc32cFunction | undefined> {
  const versions = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions;
  if (!versions?.node) return undefined;
  try {
    const specifier = '../persist/crc32c.js';
    const mod = (await import(specifier)) as { crc32c?: Crc32cFunction; crc32cImplementation?: string };
    return mod.crc32cImplementation === 'native' ? mod.crc32c : undefined;
  } catch {
    return undefined;
  }
}

function strip<T extends { op: number; correlationId: number }>(frame: T): Omit<T, 'op' | 'correlationId'> {
  const { op: _op, correlationId: _c, ...rest } = frame;
  return rest;
}

export class Sluice {
  readonly connection: Connection;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #crc32c: Crc32cFunction | undefined;
  /** Each topic's partition count and when it was learnt (clock ms): metadata a producer and a consumer's subscribe use. */
  readonly #partitionCounts = new Map<string, { count: number; atMs: number }>();
  readonly #producers = new Set<Producer>();
  readonly #consumers = new Set<Consumer>();

  constructor(connection: Connection, options: Pick<ConnectOptions, 'clock' | 'random' | 'crc32c'> = {}) {
    this.connection = connection;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#crc32c = options.crc32c;
  }

  get limits(): Connection['limits'] {
    return this.connection.limits;
  }

  producer(options: ProducerOptions = {}): Producer {
    const p = new Producer(
      {
        connection: this.connection,
        clock: this.#clock,
        random: this.#random,
        crc32c: this.#crc32c,
        partitionCount: (topic, atLeast) => this.#partitionCount(topic, atLeast),
        cachedPartitionCount: (topic, nowMs) => this.#freshPartitionCount(topic, nowMs),
      },
      options,
    );
    this.#producers.add(p);
    return p;
  }

  consumer(options: ConsumerOptions = {}): Consumer {
    // A subscription asks the broker for the count each time (subscribing is rare; partitions added since count).
    const c = new Consumer({ connection: this.connection, clock: this.#clock, random: this.#random, crc32c: this.#crc32c, partitionCount: (topic) => this.#partitionCount(topic, Number.POSITIVE_INFINITY) }, options);
    this.#consumers.add(c);
    return c;
  }

  async createTopic(topic: string, settings: TopicSettings = {}): Promise<TopicDescription> {
    if (settings.cleanupPolicy !== undefined || settings.deleteRetentionMs !== undefined || settings.timestampType !== undefined || settings.configs !== undefined) {
      // Settings beyond CREATE_TOPIC's fixed ones travel as Kafka-named configs (version 2).
      const configs = new Map(Object.entries(settings.configs ?? {}));
      // The broker's names (engine/topic-configs.ts), written out here: the browser path
      // imports nothing of the engine's.
      const named: [string, unknown][] = [
        ['cleanup.policy', settings.cleanupPolicy],
        ['delete.retention.ms', settings.deleteRetentionMs],
        ['message.timestamp.type', settings.timestampType],
        ['retention.ms', settings.retentionMs],
        ['retention.bytes', settings.retentionBytes],
        ['segment.ms', settings.segmentMs],
        ['segment.bytes', settings.segmentBytes],
      ];
      for (const [name, value] of named) if (value !== undefined) configs.set(name, String(value));
      const ok = await this.connection.request({
        op: Op.CREATE_TOPIC_WITH_CONFIGS,
        topic,
        partitions: settings.partitions ?? 0,
        configs: [...configs].map(([name, value]) => ({ name, value })),
      });
      const d = expect(ok, Op.CREATE_TOPIC_WITH_CONFIGS_OK);
      this.#rememberPartitions(topic, d.partitions.length);
      return strip(d);
    }
    const ok = await this.connection.request({
      op: Op.CREATE_TOPIC,
      topic,
      partitions: settings.partitions ?? 0,
      retentionMs: settings.retentionMs ?? 0,
      retentionBytes: settings.retentionBytes ?? 0,
      segmentMs: settings.segmentMs ?? 0,
      segmentBytes: settings.segmentBytes ?? 0,
    });
    const d = expect(ok, Op.CREATE_TOPIC_OK);
    this.#rememberPartitions(topic, d.partitions.length);
    return strip(d);
  }

  async deleteTopic(topic: string): Promise<void> {
    this.#partitionCounts.delete(topic);
    expect(await this.connection.request({ op: Op.DELETE_TOPIC, topic }), Op.DELETE_TOPIC_OK);
  }

  async listTopics(): Promise<string[]> {
    return expect(await this.#readOnly({ op: Op.LIST_TOPICS }), Op.LIST_TOPICS_OK).topics;
  }

  async describeTopic(topic: string): Promise<TopicDescription> {
    const d = expect(await this.#readOnly({ op: Op.DESCRIBE_TOPIC, topic }), Op.DESCRIBE_TOPIC_OK);
    this.#rememberPartitions(topic, d.partitions.length);
    return strip(d);
  }

  async metadata(): Promise<Metadata> {
    const m = expect(await this.#readOnly({ op: Op.METADATA }), Op.METADATA_OK);
    for (const t of m.topics) this.#rememberPartitions(t.name, t.partitions);
    return strip(m);
  }

  /** earliest: the log start offset; latest: the high watermark; a timestamp: the first offset at or after it, or -1. */
  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<number> {
    const timestamp = spec === 'earliest' ? -2 : spec === 'latest' ? -1 : spec.timestamp;
    return expect(await this.#readOnly({ op: Op.LIST_OFFSETS, topic, partition, timestamp }), Op.LIST_OFFSETS_OK).offset;
  }

  /** Every setting of a topic by its Kafka name (cleanup.policy, retention.ms, ...). */
  async describeConfigs(topic: string): Promise<Record<string, string>> {
    const ok = expect(await this.#readOnly({ op: Op.DESCRIBE_CONFIGS, topic }), Op.DESCRIBE_CONFIGS_OK);
    return Object.fromEntries(ok.configs.map((c) => [c.name, c.value]));
  }

  /** Adds partitions to a topic (only up): the new total count. Groups subscribed to it rebalance. */
  async createPartitions(topic: string, partitions: number): Promise<TopicDescription> {
    const d = expect(await this.connection.request({ op: Op.CREATE_PARTITIONS, topic, partitions }), Op.CREATE_PARTITIONS_OK);
    this.#rememberPartitions(topic, d.partitions.length);
    return strip(d);
  }

  /** Consumer groups: live ones and those known only by their committed offsets. */
  async listGroups(): Promise<GroupSummary[]> {
    return expect(await this.#readOnly({ op: Op.LIST_GROUPS }), Op.LIST_GROUPS_OK).groups;
  }

  /** A group's members and assignment, and per committed partition its offset, log end offset and lag. */
  async describeGroup(groupId: string): Promise<GroupDescription> {
    return strip(expect(await this.#readOnly({ op: Op.DESCRIBE_GROUP, groupId }), Op.DESCRIBE_GROUP_OK));
  }

  /** Committed offsets of a group (all, or of the given partitions), read without joining it. */
  async committedOffsets(groupId: string, partitions: { topic: string; partition: number }[] = []): Promise<FetchCommittedOk['offsets']> {
    return expect(await this.#readOnly({ op: Op.FETCH_COMMITTED, groupId, memberId: '', generation: -1, partitions }), Op.FETCH_COMMITTED_OK).offsets;
  }

  /**
   * Moves a group's committed offsets (only while the group has no members): to the log
   * start, the high watermark, an offset (clamped into the log) or the first offset at or
   * after a timestamp. Every partition of `topics`, or when empty every partition the
   * group has an offset for. Resolves to the new offsets.
   */
  async resetOffsets(groupId: string, to: ResetTarget, topics: string[] = []): Promise<ResetOffsetsOk['offsets']> {
    const isObject = typeof to === 'object' && to !== null;
    const [strategy, value] =
      to === 'earliest'
        ? [ResetStrategy.EARLIEST, 0]
        : to === 'latest'
          ? [ResetStrategy.LATEST, 0]
          : isObject && 'offset' in to
            ? [ResetStrategy.OFFSET, to.offset]
            : isObject && 'timestamp' in to
              ? [ResetStrategy.TIMESTAMP, to.timestamp]
              : [null, 0];
    if (strategy === null) throw new SluiceError('INVALID_ARGUMENT', `reset to 'earliest', 'latest', { offset } or { timestamp }, not ${JSON.stringify(to)}`);
    return expect(await this.connection.request({ op: Op.RESET_OFFSETS, groupId, strategy, value, topics }), Op.RESET_OFFSETS_OK).offsets;
  }

  /**
   * Flushes and closes producers, closes consumers (a group member leaves), then the
   * connection. If that takes longer than `timeoutMs` (the broker is gone, and a producer
   * waits up to its deliveryTimeoutMs), the connection closes anyway: what is still pending
   * fails with CLIENT_CLOSED.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? CLOSE_TIMEOUT_MS_DEFAULT;
    if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) throw new SluiceError('INVALID_ARGUMENT', `timeoutMs must be a number >= 0, got ${String(options.timeoutMs)}`);
    const graceful = (async () => {
      await Promise.allSettled([...this.#producers].map((p) => p.close()));
      await Promise.allSettled([...this.#consumers].map((c) => c.close()));
    })();
    let timer: TimerHandle = null;
    await Promise.race([graceful, new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, timeoutMs)))]);
    this.#clock.clearTimeout(timer);
    this.connection.close(); // fails every request still pending or waiting for a reconnect
    for (const p of this.#producers) p.abort(new ClientClosedError()); // and what the producers hold back
    await graceful;
  }

  #rememberPartitions(topic: string, count: number): void {
    this.#partitionCounts.set(topic, { count, atMs: this.#clock.now() });
  }

  /** The cached count of `topic` unless it is older than METADATA_MAX_AGE_MS at `nowMs` (then undefined). */
  #freshPartitionCount(topic: string, nowMs = this.#clock.now()): number | undefined {
    const cached = this.#partitionCounts.get(topic);
    return cached !== undefined && nowMs - cached.atMs < METADATA_MAX_AGE_MS ? cached.count : undefined;
  }

  /**
   * `topic`'s partition count: the cached one while it is fresh and at least `atLeast`
   * (a send to partition P asks for P + 1: partitions added by another client appear on
   * the first send that needs them), else the broker's, as Kafka's producer refreshes its
   * metadata every metadata.max.age.ms and when a partition it needs is missing.
   */
  async #partitionCount(topic: string, atLeast = 0): Promise<number> {
    const fresh = this.#freshPartitionCount(topic);
    if (fresh !== undefined && fresh >= atLeast) return fresh;
    try {
      await this.describeTopic(topic);
    } catch (err) {
      if (err instanceof SluiceError && err.code === 'UNKNOWN_TOPIC_OR_PARTITION') {
        this.#partitionCounts.delete(topic);
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no topic ${topic}`);
      }
      throw err;
    }
    return this.#partitionCounts.get(topic)!.count;
  }

  async #readOnly(frame: RequestFrame): Promise<ServerFrame> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.connection.request(frame);
      } catch (err) {
        if (!isRetriableError(err) || attempt >= ADMIN_RETRIES_MAX) throw err;
        const hint = err instanceof SluiceError ? (err.backoffMs ?? 0) : 0;
        await new Promise((r) => this.#clock.setTimeout(r as () => void, Math.max(hint, backoffDelayMs(attempt, RETRY_BACKOFF, this.#random))));
      }
    }
  }
}

function expect<O extends ServerFrame['op']>(frame: ServerFrame, op: O): Extract<ServerFrame, { op: O }> {
  if (frame.op !== op) throw new SluiceError('INTERNAL', `expected op ${op}, got ${frame.op}`);
  return frame as Extract<ServerFrame, { op: O }>;
}
