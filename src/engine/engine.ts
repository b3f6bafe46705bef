/**
 * Engine: the in-process, transport-agnostic API of Sluice. The WebSocket gateway and
 * (later) the Kafka-protocol listener call it; so do tests and embedders.
 *
 *   const engine = await Engine.open({ dataDir: './data' });
 *   await engine.createTopic('events', { partitions: 4 });
 *   const base = await engine.produce('events', 0, batchBytes);            // acks=all
 *   const { records, highWatermark } = await engine.fetch('events', 0, base);
 *   await engine.createPartitions('events', 8);                              // only grows
 *   await engine.createTopic('state', { cleanupPolicy: 'compact' });         // latest value per key
 *   await engine.compact('state');                                           // force a pass now
 *   await engine.close();
 *
 * It validates every argument, keeps the topic registry (persisted atomically in
 * topics.json), routes each partition to its owner thread, serves fetches of recent data
 * straight from the partition's log ring in shared memory and everything else through the
 * owner, which reads from disk. Errors are SluiceError with stable codes.
 *
 * Owner: the gateway (main) thread. Invariants: topic-level changes (create, delete, add
 * partitions) run one at a time; topics.json always names exactly the topics (and partition
 * counts) that exist after a change completes, and onTopicsChanged listeners hear of each
 * change after that; nothing is appended for a request that failed validation.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { assert } from '../assert.js';
import { SluiceError, asStorageError } from '../errors.js';
import { crc32cImplementation } from '../persist/crc32c.js';
import { nodeFileSystem, type FileSystem } from '../persist/fs.js';
import { DELETE_RETENTION_MS_MAX, isCompacted, parseCleanupPolicy } from '../persist/cleanup-policy.js';
import { parseTimestampType } from '../persist/timestamp-type.js';
import type { CompactionResult } from '../persist/compaction.js';
import { DEFAULT_LOG_CONFIG, removeDeletedPartitionDirs, type LogConfig } from '../persist/partition-log.js';
import { loadTopics, readJsonFile, saveTopics, writeJsonFile, type TopicFileConfig, type TopicsFile } from '../persist/metadata.js';
import { checkBatchFrame } from '../persist/record-batch.js';
import type { RecoveryReportSummary } from '../workers/commands.js';
import { OwnerHandle, type Logger, type OwnerLimits, type PartitionState } from '../workers/owner-handle.js';
import { checkInteger, checkTopicName, ownerOf, partitionDirName, PARTITIONS_PER_TOPIC_MAX } from './names.js';
import { DataDirLock } from './lock.js';
import { COPY_ALIGN_BYTES } from '../ring/log-ring.js';

// ---------------------------------------------------------------- limits

/** Holds several maximal batches, so a burst queues while the owner syncs. */
export const COMMAND_RING_BYTES = 8 * 1024 * 1024;
/** A frame may be a quarter of the ring: a full fetch (1 MiB, or one maximal batch) fits. */
export const COMPLETION_RING_BYTES = 8 * 1024 * 1024;
/**
 * The smallest log ring a partition gets: recent data readable without a hop to the owner,
 * and where produced batches wait for their owner. 2 MiB holds about 20 batches of 100 KB
 * in flight: acks=1 on one partition went from 1,085-1,221 to 1,345-1,410 MB/s over 1 MiB
 * (fourth session, docs/benchmarks.md).
 */
export const LOG_RING_BYTES = 2 * 1024 * 1024;
/**
 * The largest: a partition that has an owner (nearly) to itself gets a ring this deep, so a
 * producer may keep about 6 MB in flight to it (Kafka's producer: 5 requests of up to 1
 * MiB). acks=1 on one partition with 64 batches of 100 KB in flight, 4 interleaved pairs:
 * 1,588-2,113 against 1,330-1,526 MB/s with 16 in a 2 MiB ring (seventh session).
 */
export const LOG_RING_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Log ring bytes per owner that the ring sizes aim at: each partition opened gets this
 * divided by the partitions its owner then holds (a power of two, within [LOG_RING_BYTES,
 * LOG_RING_BYTES_MAX]). Rings are not resized later, so an owner's rings may add up to
 * more: at most LOG_RING_BYTES per partition plus this budget (partitions opened one by one).
 */
export const LOG_RING_BUDGET_BYTES = 16 * 1024 * 1024;

/** A fetch's offset: a safe integer (its range is the partition's to check). */
function checkOffset(offset: unknown): asserts offset is number {
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset)) {
    throw new SluiceError('INVALID_ARGUMENT', `offset must be an integer, got ${String(offset)}`);
  }
}

/** A fetch's maxBytes, checked and capped at FETCH_BYTES_MAX. */
function fetchMaxBytes(maxBytes: unknown): number {
  return Math.min(checkInteger(maxBytes, 'maxBytes', 1, 2 ** 31 - 1), FETCH_BYTES_MAX);
}

/** The log ring size of a partition opened on an owner that then holds `partitionsOnOwner` partitions. */
export function logRingBytesFor(partitionsOnOwner: number): number {
  assert(Number.isInteger(partitionsOnOwner) && partitionsOnOwner >= 1, 'an owner holds the partition being opened');
  let bytes = LOG_RING_BYTES_MAX;
  while (bytes > LOG_RING_BYTES && bytes * partitionsOnOwner > LOG_RING_BUDGET_BYTES) bytes /= 2;
  return bytes;
}
/** Entries (batches) per log ring: 2 MiB of 2 KiB batches. */
export const LOG_RING_ENTRIES = 1024;
/** One fetch returns at most this (at least one whole batch even if larger), as Kafka's max.partition.fetch.bytes. */
export const FETCH_BYTES_MAX = 1024 * 1024;
/** A buffer lent to fetch() (`into`) this large holds any result of up to FETCH_BYTES_MAX (a tail read may start up to 7 bytes in, at the ring's alignment). */
export const FETCH_INTO_BYTES_MIN = FETCH_BYTES_MAX + COPY_ALIGN_BYTES;
/** Requests waiting for an answer per owner; past it, produce is THROTTLED. */
export const IN_FLIGHT_MAX = 8192;
/** Back-off hint sent with THROTTLED: a full command ring drains in a few milliseconds. */
export const THROTTLE_BACKOFF_MS = 5;
/** How often owners apply retention and time-based rolls (Kafka: 5 minutes). */
export const HOUSEKEEPING_INTERVAL_MS = 5_000;
/**
 * acks=1 data is fsynced on a timer only when `flushIntervalMs` asks for it (Kafka's
 * log.flush.interval.ms, whose default is also never): acks=1 survives a crash of the
 * process, and a crash of the machine loses what the kernel had not written back yet
 * (Linux: dirty pages older than about 30 s are written within 5 s more). -1 = never.
 * Measured here (docs/benchmarks.md, fourth session, 2 pairs): a 1 s timer cost acks=1
 * 37-41% at 4 partitions and 12-42% at 1, because a write beside an fdatasync of the same
 * file runs at half speed.
 */
export const FLUSH_INTERVAL_MS_DEFAULT = -1;
/** The longest flushIntervalMs: a day. */
export const FLUSH_INTERVAL_MS_MAX = 24 * 60 * 60 * 1000;
/**
 * Whether the gateway thread verifies each produced batch's CRC-32C, in the log ring right
 * after copying it there, instead of the owner (see OwnerHandle.produce).
 */
export const CRC_ON_GATEWAY = true;
/** Longest long poll of a fetch, as Kafka's fetch.max.wait.ms is bounded by the request timeout. */
export const FETCH_WAIT_MS_MAX = 30_000;
/** Owner threads: one per core by default, capped so a big box does not spawn hundreds. */
export const OWNERS_MAX = 64;
assert(COMPLETION_RING_BYTES / 4 >= Math.max(FETCH_BYTES_MAX, DEFAULT_LOG_CONFIG.batchBytesMax) + 1024, 'a fetch frame fits the completion ring');
assert(COMMAND_RING_BYTES / 4 >= DEFAULT_LOG_CONFIG.batchBytesMax + 64, 'a maximal batch fits the command ring');

const TOPICS_FILE = 'topics.json';
/** The highest producer id handed out may be below this; ids are reserved in blocks. */
const PRODUCER_IDS_FILE = 'producer-ids.json';
/** Producer ids reserved per write of producer-ids.json: one fsync per 1000 producers. */
const PRODUCER_ID_BLOCK = 1000;

export type Acks = 'all' | -1 | 0 | 1;

/** A topic's settings: its partition count and what topics.json keeps per topic (persist/metadata.ts). */
export interface TopicConfig extends TopicFileConfig {
  partitions: number;
}

/** What onTopicsChanged listeners hear: `partitions` is the topic's count after the change ('deleted': before it). */
export interface TopicsChangedEvent {
  topic: string;
  kind: 'created' | 'deleted' | 'partitions';
  partitions: number;
}

export type { CleanupPolicy } from '../persist/cleanup-policy.js';
export type { CompactionResult } from '../persist/compaction.js';

export interface EngineOptions {
  dataDir: string;
  /** Owner threads (default: the number of cores). */
  workers?: number;
  logger?: Logger;
  /** Defaults for topics created without a setting. */
  topicDefaults?: Partial<TopicConfig>;
  /**
   * fsync acks=1 data at least this often, in ms (Kafka's log.flush.interval.ms); default
   * -1, never: acks=all requests, segment rolls and close sync it (FLUSH_INTERVAL_MS_DEFAULT).
   */
  flushIntervalMs?: number;
  /**
   * Overrides of the limits above, for tests and tuning. A `logRingBytes` given here is every
   * partition's log ring size; without it each gets `logRingBytesFor` its owner's partitions.
   */
  limits?: Partial<OwnerLimits> & { logRingBytes?: number };
  fs?: FileSystem;
}

export interface PartitionDescription extends PartitionState {
  partition: number;
  owner: number;
}

export interface TopicDescription {
  name: string;
  config: TopicConfig;
  partitions: PartitionDescription[];
}

export interface FetchResult {
  /** Whole RecordBatch v2 batches, concatenated; the first holds the requested offset. */
  records: Uint8Array;
  highWatermark: number;
  logStartOffset: number;
}

interface TopicState {
  name: string;
  config: TopicConfig;
  /** ms since the epoch, kept in topics.json. */
  createdAt: number;
  partitions: { owner: OwnerHandle; slot: number }[];
}

const DEFAULT_TOPIC_CONFIG: TopicConfig = {
  partitions: 1,
  retentionMs: DEFAULT_LOG_CONFIG.retentionMs,
  retentionBytes: DEFAULT_LOG_CONFIG.retentionBytes,
  segmentBytes: DEFAULT_LOG_CONFIG.segmentBytes,
  segmentMs: DEFAULT_LOG_CONFIG.segmentMs,
  cleanupPolicy: DEFAULT_LOG_CONFIG.cleanupPolicy,
  deleteRetentionMs: DEFAULT_LOG_CONFIG.deleteRetentionMs,
  timestampType: DEFAULT_LOG_CONFIG.timestampType,
};

/** Smallest segment: a segment must hold at least one maximal batch comfortably. */
const SEGMENT_BYTES_MIN = 16 * 1024;
const SEGMENT_BYTES_MAX = 2 ** 31 - 1; // positions in the offset index are u32; keep to int32 like Kafka
const DURATION_MS_MAX = Number.MAX_SAFE_INTEGER;

/** A partition's key among the high-watermark watchers: distinct per (owner, slot), as owner indexes are below OWNERS_MAX. */
function watchKey(owner: OwnerHandle, slot: number): number {
  return slot * OWNERS_MAX + owner.index;
}

function defaultLogger(): Logger {
  return pino({ level: process.env.SLUICE_LOG_LEVEL ?? 'info', base: undefined }, pino.destination(2));
}

function workerUrl(): URL {
  return new URL('../workers/owner-main.js', import.meta.url);
}

export class Engine {
  readonly dataDir: string;
  readonly #owners: OwnerHandle[];
  readonly #logger: Logger;
  readonly #fs: FileSystem;
  readonly #topics = new Map<string, TopicState>();
  readonly #topicDefaults: TopicConfig;
  readonly #lock: DataDirLock;
  /** Free slots per owner, so closed partitions' slots are reused. */
  readonly #slotsUsed: boolean[][];
  /** Every partition's log ring size when Engine.open's limits set one; else sized per owner. */
  readonly #logRingBytesFixed: number | undefined;
  #topicChain: Promise<unknown> = Promise.resolve();
  #producerIdChain: Promise<unknown> = Promise.resolve();
  #nextProducerId = -1;
  /** Listeners per partition (by watchKey: a number, no string built per completion), told when its high watermark moves. */
  readonly #watchers = new Map<number, Set<(highWatermark: number) => void>>();
  /** Long polls in progress, ended at close. */
  readonly #pollers = new Set<() => void>();
  #producerIdsReservedEnd = -1;
  /** The highest producer id any partition's idempotence state holds, as the partitions opened. */
  #producerIdSeenMax = -1;
  /** producer-ids.json was missing at open (see #loadProducerIds). */
  #producerIdsMissing = false;
  /** onTopicsChanged listeners, told after each topic-level change. */
  readonly #topicListeners = new Set<(event: TopicsChangedEvent) => void>();
  #closed = false;
  #inFlightProduces = 0;
  #drained: (() => void) | null = null;

  private constructor(dataDir: string, owners: OwnerHandle[], logger: Logger, fs: FileSystem, defaults: TopicConfig, lock: DataDirLock, logRingBytesFixed: number | undefined) {
    this.#logRingBytesFixed = logRingBytesFixed;
    this.dataDir = dataDir;
    this.#owners = owners;
    this.#logger = logger;
    this.#fs = fs;
    this.#topicDefaults = defaults;
    this.#lock = lock;
    this.#slotsUsed = owners.map(() => []);
  }

  /** Opens (or creates) a data directory, starts the owners and recovers every partition. */
  static async open(options: EngineOptions): Promise<Engine> {
    if (!options || typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new SluiceError('INVALID_ARGUMENT', 'Engine.open needs { dataDir }');
    }
    const workers = options.workers ?? Math.min(availableParallelism(), OWNERS_MAX);
    checkInteger(workers, 'workers', 1, OWNERS_MAX);
    const flushIntervalMs = options.flushIntervalMs ?? FLUSH_INTERVAL_MS_DEFAULT;
    if (flushIntervalMs !== -1) checkInteger(flushIntervalMs, 'flushIntervalMs (-1 = never)', 1, FLUSH_INTERVAL_MS_MAX);
    const logger = options.logger ?? defaultLogger();
    const fs = options.fs ?? nodeFileSystem;
    const defaults = checkTopicConfig({ ...DEFAULT_TOPIC_CONFIG, ...options.topicDefaults });
    try {
      fs.mkdirp(options.dataDir);
    } catch (err) {
      throw asStorageError(err, `create the data dir ${options.dataDir}`);
    }
    const lock = DataDirLock.acquire(options.dataDir);
    const { logRingBytes: logRingBytesFixed, ...ownerLimits } = options.limits ?? {};
    const limits: OwnerLimits = {
      commandRingBytes: COMMAND_RING_BYTES,
      completionRingBytes: COMPLETION_RING_BYTES,
      logRingEntries: LOG_RING_ENTRIES,
      fetchBytesMax: FETCH_BYTES_MAX,
      inFlightMax: IN_FLIGHT_MAX,
      throttleBackoffMs: THROTTLE_BACKOFF_MS,
      housekeepingIntervalMs: HOUSEKEEPING_INTERVAL_MS,
      flushIntervalMs,
      crcOnGateway: CRC_ON_GATEWAY,
      ...ownerLimits,
    };
    const owners: OwnerHandle[] = [];
    for (let i = 0; i < workers; i++) owners.push(new OwnerHandle(i, limits, logger, workerUrl()));
    const engine = new Engine(options.dataDir, owners, logger, fs, defaults, lock, logRingBytesFixed);
    for (const o of owners) o.onAdvance = (slot, hwm) => engine.#advanced(o, slot, hwm);
    try {
      await Promise.all(owners.map((o) => o.start()));
      await engine.#recover();
    } catch (err) {
      await engine.close().catch(() => {});
      throw err;
    }
    logger.info(
      { dataDir: options.dataDir, owners: workers, crc32c: crc32cImplementation, topics: engine.#topics.size },
      'engine open',
    );
    if (crc32cImplementation !== 'native') {
      logger.warn({ crc32c: crc32cImplementation }, 'CRC32C runs in JavaScript (about 20x slower): the sse4_crc32 addon did not load');
    }
    return engine;
  }

  async #recover(): Promise<void> {
    this.#loadProducerIds();
    // Folders a crash left half deleted go first, before any log opens.
    for (const dir of removeDeletedPartitionDirs(this.dataDir, this.#fs)) {
      this.#logger.info({ dir }, 'removed the leftover of a deleted topic');
    }
    const file = this.#loadTopicsFile();
    for (const [name, entry] of Object.entries(file.topics)) {
      const config = checkTopicConfig({ ...this.#topicDefaults, ...entry.config, partitions: entry.partitions });
      const state = await this.#openTopic(name, config, entry.createdAt);
      this.#topics.set(name, state);
    }
    this.#warnOfStrayPartitionDirs(file.topics);
    if (this.#producerIdsMissing && this.#producerIdSeenMax >= 0) {
      // The file is gone but the logs remember producers: counting from 0 again would hand out
      // their ids, and a new producer's first batches would be taken for their duplicates.
      // Ids no partition remembers are safe to reuse (no state holds them).
      const next = this.#producerIdSeenMax + 1;
      this.#logger.warn({ file: join(this.dataDir, PRODUCER_IDS_FILE), next }, 'producer-ids.json is missing: producer ids continue after the highest one the partitions remember');
      this.#nextProducerId = next;
      this.#producerIdsReservedEnd = next;
    }
  }

  #loadTopicsFile(): TopicsFile {
    return loadTopics(this.#fs, join(this.dataDir, TOPICS_FILE));
  }

  #saveTopicsFile(): void {
    const file: TopicsFile = { version: 1, topics: {} };
    for (const [name, t] of this.#topics) {
      const { partitions, ...config } = t.config;
      file.topics[name] = { partitions, config, createdAt: t.createdAt };
    }
    saveTopics(this.#fs, join(this.dataDir, TOPICS_FILE), file);
  }

  #allocateSlot(owner: OwnerHandle): number {
    const used = this.#slotsUsed[owner.index];
    let slot = used.indexOf(false);
    if (slot < 0) slot = used.length;
    used[slot] = true;
    return slot;
  }

  async #openTopic(name: string, config: TopicConfig, createdAt: number): Promise<TopicState> {
    const partitions = await this.#openPartitions(name, config, 0, config.partitions);
    return { name, config, createdAt, partitions };
  }

  /**
   * Opens partitions [from, to) of a topic on their owners (each owner opens its in turn,
   * the owners in parallel); on any failure closes those that opened and throws.
   */
  async #openPartitions(name: string, config: TopicConfig, from: number, to: number): Promise<{ owner: OwnerHandle; slot: number }[]> {
    const logConfig: LogConfig = {
      ...DEFAULT_LOG_CONFIG,
      segmentBytes: config.segmentBytes,
      segmentMs: config.segmentMs,
      retentionMs: config.retentionMs,
      retentionBytes: config.retentionBytes,
      cleanupPolicy: config.cleanupPolicy,
      deleteRetentionMs: config.deleteRetentionMs,
      timestampType: config.timestampType,
    };
    const partitions = Array.from({ length: to - from }, (_, k) => {
      const owner = this.#owners[ownerOf(name, from + k, this.#owners.length)];
      return { owner, slot: this.#allocateSlot(owner) };
    });
    // Sized once all of them count: the partitions of one topic get rings of one size per owner.
    const ringBytes = partitions.map(({ owner }) => this.#logRingBytesFixed ?? logRingBytesFor(this.#slotsUsed[owner.index].filter(Boolean).length));
    const opened = await Promise.allSettled(
      partitions.map(({ owner, slot }, k) => owner.openPartition(slot, join(this.dataDir, partitionDirName(name, from + k)), logConfig, ringBytes[k])),
    );
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.allSettled(
        partitions.map(({ owner, slot }, p) => (opened[p].status === 'fulfilled' ? owner.closePartition(slot, false) : Promise.resolve())),
      );
      for (const { owner, slot } of partitions) this.#slotsUsed[owner.index][slot] = false;
      throw failed.reason;
    }
    opened.forEach((r, k) => {
      const p = from + k;
      const report = (r as PromiseFulfilledResult<RecoveryReportSummary>).value;
      for (const t of report.truncations) {
        this.#logger.warn({ topic: name, partition: p, ...t }, 'recovery truncated a torn or corrupt tail');
      }
      if (report.segmentsDropped.length > 0) {
        this.#logger.warn({ topic: name, partition: p, segments: report.segmentsDropped }, 'recovery dropped the segments after a torn one');
      }
      if (report.indexesRebuilt.length > 0) {
        this.#logger.warn({ topic: name, partition: p, indexes: report.indexesRebuilt }, 'recovery rebuilt indexes');
      }
      if (report.producerIdMax > this.#producerIdSeenMax) this.#producerIdSeenMax = report.producerIdMax;
    });
    return partitions;
  }

  // ------------------------------------------------------------ topics

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#topicChain.then(fn, fn);
    this.#topicChain = run.catch(() => {});
    return run;
  }

  #open(): void {
    if (this.#closed) throw new SluiceError('ENGINE_CLOSED', 'the engine is closed');
  }

  createTopic(name: string, options: Partial<TopicConfig> = {}): Promise<TopicDescription> {
    return this.#serial(async () => {
      this.#open();
      checkTopicName(name);
      if (options === null || typeof options !== 'object') throw new SluiceError('INVALID_ARGUMENT', 'topic options must be an object');
      const config = checkTopicConfig({ ...this.#topicDefaults, ...options });
      if (this.#topics.has(name)) throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic ${name} already exists`);
      // Folders of a same-named topic whose deletion a crash interrupted are not ours.
      for (let p = 0; p < config.partitions; p++) {
        const dir = join(this.dataDir, partitionDirName(name, p));
        if (this.#fs.exists(dir)) this.#fs.rmrf(dir);
      }
      const state = await this.#openTopic(name, config, Date.now());
      this.#topics.set(name, state);
      try {
        this.#saveTopicsFile();
      } catch (err) {
        this.#topics.delete(name);
        await this.#closeTopic(state, true).catch(() => {});
        throw err;
      }
      this.#logger.info({ topic: name, ...config }, 'topic created');
      this.#topicsChanged({ topic: name, kind: 'created', partitions: config.partitions });
      return this.#describe(state);
    });
  }

  deleteTopic(name: string): Promise<void> {
    return this.#serial(async () => {
      this.#open();
      const state = this.#topic(name);
      this.#topics.delete(name);
      this.#saveTopicsFile();
      // Long polls end now (fetch finds the topic gone), not at their maxWaitMs. The pollers
      // of other topics wake too, find nothing new and wait again: a deletion is rare.
      for (const done of [...this.#pollers]) done();
      try {
        await this.#closeTopic(state, true);
        this.#logger.info({ topic: name }, 'topic deleted');
      } finally {
        // The topic is gone from the registry and topics.json even if a partition failed to close.
        this.#topicsChanged({ topic: name, kind: 'deleted', partitions: state.partitions.length });
      }
    });
  }

  /**
   * Kafka's CreatePartitions: raises a topic's partition count to `totalCount`. Only
   * increases (the same count or fewer, or more than PARTITIONS_PER_TOPIC_MAX, is
   * INVALID_PARTITIONS). The new partitions open on their owners like the existing ones
   * (same config) and topics.json is rewritten atomically; if that fails they are closed and
   * removed again. Existing partitions are untouched, so keys hashed to a partition may map
   * elsewhere from now on (as in Kafka). onTopicsChanged listeners then hear 'partitions'.
   */
  createPartitions(topic: string, totalCount: number): Promise<TopicDescription> {
    return this.#serial(async () => {
      this.#open();
      const state = this.#topic(topic);
      const current = state.partitions.length;
      if (typeof totalCount !== 'number' || !Number.isSafeInteger(totalCount)) {
        throw new SluiceError('INVALID_PARTITIONS', `the partition count must be an integer, got ${String(totalCount)}`);
      }
      if (totalCount <= current) {
        throw new SluiceError('INVALID_PARTITIONS', `topic ${topic} has ${current} partitions; the count can only increase, got ${totalCount}`);
      }
      if (totalCount > PARTITIONS_PER_TOPIC_MAX) {
        throw new SluiceError('INVALID_PARTITIONS', `${totalCount} partitions is more than the limit of ${PARTITIONS_PER_TOPIC_MAX} per topic`);
      }
      // Folders a failed earlier attempt may have left are not in topics.json: not ours.
      for (let p = current; p < totalCount; p++) {
        const dir = join(this.dataDir, partitionDirName(topic, p));
        if (this.#fs.exists(dir)) this.#fs.rmrf(dir);
      }
      const added = await this.#openPartitions(topic, state.config, current, totalCount);
      state.partitions.push(...added);
      state.config = { ...state.config, partitions: totalCount };
      try {
        this.#saveTopicsFile();
      } catch (err) {
        state.partitions.length = current;
        state.config = { ...state.config, partitions: current };
        await this.#closePartitions(added, true).catch(() => {});
        throw err;
      }
      this.#logger.info({ topic, partitions: totalCount, added: totalCount - current }, 'partitions added');
      this.#topicsChanged({ topic, kind: 'partitions', partitions: totalCount });
      return this.#describe(state);
    });
  }

  /**
   * Calls `listener` after each topic-level change completes: a topic created or deleted,
   * partitions added (createPartitions). The group coordinator rebalances from it. Listeners
   * run synchronously, in registration order, before the changing call resolves; one that
   * throws is logged and does not stop the others. Returns the function that unsubscribes.
   */
  onTopicsChanged(listener: (event: TopicsChangedEvent) => void): () => void {
    if (typeof listener !== 'function') throw new SluiceError('INVALID_ARGUMENT', 'onTopicsChanged needs a listener function');
    this.#topicListeners.add(listener);
    return () => {
      this.#topicListeners.delete(listener);
    };
  }

  #topicsChanged(event: TopicsChangedEvent): void {
    for (const listener of [...this.#topicListeners]) {
      try {
        listener({ ...event });
      } catch (err) {
        this.#logger.error({ ...event, err: err instanceof Error ? err.stack ?? err.message : String(err) }, 'an onTopicsChanged listener threw');
      }
    }
  }

  async #closeTopic(state: TopicState, deleteFiles: boolean): Promise<void> {
    await this.#closePartitions(state.partitions, deleteFiles);
  }

  async #closePartitions(partitions: { owner: OwnerHandle; slot: number }[], deleteFiles: boolean): Promise<void> {
    const closed = await Promise.allSettled(partitions.map(({ owner, slot }) => owner.closePartition(slot, deleteFiles)));
    // A slot whose close failed stays taken: its owner may still hold the partition.
    partitions.forEach(({ owner, slot }, p) => {
      if (closed[p].status === 'fulfilled') this.#slotsUsed[owner.index][slot] = false;
    });
    const failed = closed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  listTopics(): string[] {
    this.#open();
    return [...this.#topics.keys()].sort();
  }

  describeTopic(name: string): TopicDescription {
    this.#open();
    return this.#describe(this.#topic(name));
  }

  #describe(state: TopicState): TopicDescription {
    return {
      name: state.name,
      config: { ...state.config },
      partitions: state.partitions.map(({ owner, slot }, partition) => ({
        partition,
        owner: owner.index,
        ...owner.partitionState(slot),
      })),
    };
  }

  #topic(name: string): TopicState {
    const state = typeof name === 'string' ? this.#topics.get(name) : undefined;
    if (!state) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `unknown topic ${JSON.stringify(name)}`);
    return state;
  }

  #partition(topic: string, partition: number): { owner: OwnerHandle; slot: number } {
    const state = this.#topic(topic);
    if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition >= state.partitions.length) {
      throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} has no partition ${String(partition)} (it has ${state.partitions.length})`);
    }
    return state.partitions[partition];
  }

  // ------------------------------------------------------------ data

  /**
   * Appends one RecordBatch v2 to a partition. Resolves to the base offset assigned to it
   * once the acks level holds: 'all' (default) after fdatasync covers it, 1 after it is in
   * the segment file, 0 at once (resolving to -1; what the owner refuses afterwards goes
   * unreported, while a call refused here, an unknown partition or a malformed frame, rejects).
   */
  produce(topic: string, partition: number, batch: Uint8Array, options: { acks?: Acks } = {}): Promise<number> {
    try {
      this.#open();
      const { owner, slot } = this.#partition(topic, partition);
      const acks = checkAcks(options?.acks ?? 'all');
      if (!(batch instanceof Uint8Array)) throw new SluiceError('INVALID_ARGUMENT', 'the batch must be a Uint8Array holding one RecordBatch v2');
      // Framing only here; the CRC is checked where the batch lands in shared memory (by
      // the owner handle right after its copy into the log ring, or by the owner).
      checkBatchFrame(batch, DEFAULT_LOG_CONFIG.batchBytesMax);
      const result = owner.produce(slot, batch, acks);
      this.#inFlightProduces++;
      return result.finally(() => this.#produceDone());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #produceDone(): void {
    this.#inFlightProduces--;
    if (this.#inFlightProduces === 0 && this.#drained) this.#drained();
  }

  /**
   * Reads whole batches from `offset` (the first returned batch contains it), up to
   * maxBytes but at least one batch. An offset equal to the high watermark gives no
   * records; below the log start offset or above the high watermark, OFFSET_OUT_OF_RANGE.
   *
   * `into` lends a buffer for the records (at least FETCH_INTO_BYTES_MIN for a full fetch):
   * when they fit, `records` is a view of it, valid until the caller reuses it; when they
   * do not (a first batch larger than maxBytes), they come in a new buffer as without it.
   * A fresh buffer of a MiB costs several times its copy (the kernel's pages faulted in one
   * by one), so a caller that reads in a loop and is done with each result before the next
   * (the gateway's sends copy) lends the same few buffers.
   */
  async fetch(
    topic: string,
    partition: number,
    offset: number,
    options: { maxBytes?: number; minBytes?: number; maxWaitMs?: number; into?: Uint8Array } = {},
  ): Promise<FetchResult> {
    this.#open();
    const ref = this.#partition(topic, partition);
    checkOffset(offset);
    const maxBytes = fetchMaxBytes(options?.maxBytes ?? FETCH_BYTES_MAX);
    const minBytes = checkInteger(options?.minBytes ?? 1, 'minBytes', 0, 2 ** 31 - 1);
    const maxWaitMs = checkInteger(options?.maxWaitMs ?? 0, 'maxWaitMs', 0, FETCH_WAIT_MS_MAX);
    const into = options?.into;
    if (into !== undefined && !(into instanceof Uint8Array)) throw new SluiceError('INVALID_ARGUMENT', 'into must be a Uint8Array');
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      const result = await this.#fetchOnce(topic, partition, ref, offset, maxBytes, into);
      const remainingMs = deadline - Date.now();
      if (result.records.length >= minBytes || remainingMs <= 0 || this.#closed) return result;
      // Long poll: wait until the partition's high watermark moves or the time is up.
      await this.#waitForAdvance(ref, result.highWatermark, remainingMs);
      // The topic may have been deleted meanwhile, and its slot given to another partition.
      if (this.#partition(topic, partition) !== ref) {
        throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} was deleted or recreated during the fetch`);
      }
    }
  }

  /**
   * What fetch() (maxWaitMs 0) answers, synchronously, when the records are in the
   * partition's log ring or there are none yet; null when the owner must read them from disk
   * (then call fetch). The gateway's subscriptions push from it: an async fetch per DATA
   * frame cost about 20 µs of the gateway thread here. Throws as fetch does for an unknown
   * partition or an offset out of range.
   */
  fetchTail(topic: string, partition: number, offset: number, maxBytes: number, into?: Uint8Array): FetchResult | null {
    this.#open();
    const ref = this.#partition(topic, partition);
    checkOffset(offset);
    return this.#tail(topic, partition, ref, offset, fetchMaxBytes(maxBytes), into);
  }

  #tail(topic: string, partition: number, ref: { owner: OwnerHandle; slot: number }, offset: number, maxBytes: number, into: Uint8Array | undefined): FetchResult | null {
    const { owner, slot } = ref;
    const state = owner.partitionState(slot);
    if (offset < state.logStartOffset || offset > state.highWatermark) {
      throw new SluiceError(
        'OFFSET_OUT_OF_RANGE',
        `offset ${offset} is outside ${topic}-${partition}'s range [${state.logStartOffset}, ${state.highWatermark}]`,
      );
    }
    if (offset === state.highWatermark) {
      return { records: new Uint8Array(0), highWatermark: state.highWatermark, logStartOffset: state.logStartOffset };
    }
    const tail = owner.readTail(slot, offset, maxBytes, into);
    if (tail === null) return null;
    const after = owner.partitionState(slot);
    return { records: tail.bytes, highWatermark: Math.max(after.highWatermark, tail.nextKey), logStartOffset: after.logStartOffset };
  }

  async #fetchOnce(topic: string, partition: number, ref: { owner: OwnerHandle; slot: number }, offset: number, maxBytes: number, into: Uint8Array | undefined): Promise<FetchResult> {
    const tail = this.#tail(topic, partition, ref, offset, maxBytes, into);
    if (tail !== null) return tail;
    const raw = await ref.owner.fetch(ref.slot, offset, maxBytes, into);
    return { records: raw.records, highWatermark: raw.highWatermark, logStartOffset: raw.logStartOffset };
  }

  #waitForAdvance(ref: { owner: OwnerHandle; slot: number }, highWatermark: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const key = watchKey(ref.owner, ref.slot);
      const done = () => {
        clearTimeout(timer);
        this.#watchers.get(key)?.delete(listener);
        this.#pollers.delete(done);
        resolve();
      };
      this.#pollers.add(done);
      const listener = (hwm: number) => {
        if (hwm !== highWatermark) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#addWatcher(key, listener);
      // It may have moved between the read and the registration.
      if (ref.owner.partitionState(ref.slot).highWatermark !== highWatermark) done();
    });
  }

  #addWatcher(key: number, listener: (highWatermark: number) => void): void {
    let set = this.#watchers.get(key);
    if (!set) {
      set = new Set();
      this.#watchers.set(key, set);
    }
    set.add(listener);
  }

  #advanced(owner: OwnerHandle, slot: number, highWatermark: number): void {
    const set = this.#watchers.get(watchKey(owner, slot));
    if (!set) return;
    for (const listener of [...set]) listener(highWatermark);
  }

  /**
   * Calls `listener` with the new high watermark each time a partition's moves (after the
   * owner wrote new batches to the segment file). Returns the function that stops it. The
   * gateway's subscriptions push from it.
   */
  watch(topic: string, partition: number, listener: (highWatermark: number) => void): () => void {
    this.#open();
    if (typeof listener !== 'function') throw new SluiceError('INVALID_ARGUMENT', 'watch needs a listener function');
    const ref = this.#partition(topic, partition);
    const key = watchKey(ref.owner, ref.slot);
    this.#addWatcher(key, listener);
    return () => {
      this.#watchers.get(key)?.delete(listener);
    };
  }

  /** The first offset still stored in the partition (listOffset -2), read from shared memory at once. */
  logStartOffset(topic: string, partition: number): number {
    this.#open();
    const { owner, slot } = this.#partition(topic, partition);
    return owner.partitionState(slot).logStartOffset;
  }

  /**
   * Kafka's ListOffsets: -2 (earliest) gives the log start offset, -1 (latest) the high
   * watermark, any other timestamp the first offset at or after it (or null).
   */
  async listOffset(topic: string, partition: number, timestamp: number): Promise<number | null> {
    if (timestamp === -2) return this.logStartOffset(topic, partition);
    this.#open();
    const { owner, slot } = this.#partition(topic, partition);
    if (timestamp === -1) return owner.partitionState(slot).highWatermark;
    return this.offsetForTime(topic, partition, timestamp);
  }

  /** Number of owner threads. */
  get ownerCount(): number {
    return this.#owners.length;
  }

  /** The first offset whose record timestamp is >= timestamp, or null when there is none. */
  async offsetForTime(topic: string, partition: number, timestamp: number): Promise<number | null> {
    this.#open();
    const { owner, slot } = this.#partition(topic, partition);
    if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp)) {
      throw new SluiceError('INVALID_ARGUMENT', `timestamp must be an integer (ms since the epoch), got ${String(timestamp)}`);
    }
    const found = await owner.offsetForTime(slot, timestamp);
    return found < 0 ? null : found;
  }

  /**
   * Logs partition folders that belong to no partition of topics.json: left by a crash in
   * the middle of a topic's deletion or creation, or by a create that failed (a full disk).
   * They are not removed (topics.json is the record, and the operator may know better); the
   * warning repeats at each start until they are.
   */
  #warnOfStrayPartitionDirs(topics: Record<string, { partitions: number }>): void {
    const expected = new Set<string>();
    for (const [name, entry] of Object.entries(topics)) for (let p = 0; p < entry.partitions; p++) expected.add(partitionDirName(name, p));
    let stray: string[];
    try {
      stray = this.#fs.readdir(this.dataDir).filter((n) => /-\d+$/.test(n) && !expected.has(n));
    } catch {
      return; // only a warning
    }
    if (stray.length > 0) {
      this.#logger.warn({ dataDir: this.dataDir, folders: stray }, 'partition folders of no topic in topics.json (a crash during a topic delete or create left them): remove them to free their space');
    }
  }

  /**
   * A new idempotent producer identity, unique in this data directory across restarts.
   * The producer writes the id, the epoch and per-partition sequence numbers into its
   * batches' headers (as Kafka's); a batch re-sent after a lost acknowledgement is then
   * answered with its original offset instead of being stored twice.
   */
  initProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    // Its own chain: a new producer never waits behind the creation of a big topic.
    const run = this.#producerIdChain.then(async () => {
      this.#open();
      if (this.#nextProducerId >= this.#producerIdsReservedEnd) {
        this.#producerIdsReservedEnd = this.#nextProducerId + PRODUCER_ID_BLOCK;
        writeJsonFile(this.#fs, join(this.dataDir, PRODUCER_IDS_FILE), { next: this.#producerIdsReservedEnd });
      }
      return { producerId: this.#nextProducerId++, producerEpoch: 0 };
    });
    this.#producerIdChain = run.catch(() => {});
    return run;
  }

  /**
   * Whether `producerId` may have been issued by initProducerId in this data directory
   * (this run, or an earlier one: ids are reserved in blocks, so every id below the stored
   * block end counts). The gateway refuses batches of ids never issued.
   */
  producerIdIssued(producerId: number): boolean {
    return Number.isSafeInteger(producerId) && producerId >= 0 && producerId < this.#producerIdsReservedEnd;
  }

  #loadProducerIds(): void {
    const path = join(this.dataDir, PRODUCER_IDS_FILE);
    const stored = readJsonFile(this.#fs, path) as { next?: unknown } | undefined;
    this.#producerIdsMissing = stored === undefined;
    const next = stored?.next ?? 0;
    if (typeof next !== 'number' || !Number.isSafeInteger(next) || next < 0) {
      throw new SluiceError('STORAGE_ERROR', `${path} is corrupt: "next" must be a non-negative integer`);
    }
    this.#nextProducerId = next;
    this.#producerIdsReservedEnd = next;
  }

  /**
   * Applies retention and time-based rolls on every owner now, instead of on its timer, and
   * starts the compaction passes that are due (in the background: `compact` waits for one).
   */
  async runHousekeeping(): Promise<void> {
    this.#open();
    await Promise.all(this.#owners.map((o) => o.runHousekeeping()));
  }

  /**
   * Runs a compaction pass now on one partition of a compacted topic, or on every partition
   * when `partition` is omitted (in parallel across owners), instead of waiting for the
   * owners' housekeeping. Resolves when the passes are done (each after any pass already
   * running on its partition), with their totals. Only closed segments are compacted: the
   * active one is never touched. INVALID_ARGUMENT for a topic whose cleanupPolicy is 'delete'.
   */
  async compact(topic: string, partition?: number): Promise<CompactionResult> {
    this.#open();
    const state = this.#topic(topic);
    if (!isCompacted(state.config.cleanupPolicy)) {
      throw new SluiceError('INVALID_ARGUMENT', `topic ${topic} has cleanupPolicy 'delete'; compaction needs 'compact' or 'compact,delete'`);
    }
    const refs = partition === undefined ? state.partitions : [this.#partition(topic, partition)];
    const results = await Promise.all(refs.map(({ owner, slot }) => owner.compactPartition(slot)));
    const total: CompactionResult = { segmentsExamined: 0, segmentsRewritten: 0, segmentsMerged: 0, bytesBefore: 0, bytesAfter: 0, recordsRemoved: 0 };
    for (const r of results) {
      total.segmentsExamined += r.segmentsExamined;
      total.segmentsRewritten += r.segmentsRewritten;
      total.segmentsMerged += r.segmentsMerged;
      total.bytesBefore += r.bytesBefore;
      total.bytesAfter += r.bytesAfter;
      total.recordsRemoved += r.recordsRemoved;
    }
    return total;
  }

  /** The owner index of a partition (for operators and tests). */
  ownerIndexOf(topic: string, partition: number): number {
    return this.#partition(topic, partition).owner.index;
  }

  /**
   * Ends an owner thread abruptly, as a crash would; it restarts and recovers. A chaos
   * drill for operators and tests. Resolves once the owner serves again.
   */
  async crashOwner(index: number): Promise<void> {
    this.#open();
    checkInteger(index, 'owner index', 0, this.#owners.length - 1);
    const owner = this.#owners[index];
    await owner.kill();
    await owner.ready(); // the restart, with every partition reopened
  }


  /** Per owner: serving or not, restarts, requests in flight, command ring fill, log ring bytes of its partitions and spare ones kept for reuse (for /metrics). */
  ownerStats(): { owner: number; up: boolean; restarts: number; inFlight: number; commandRingUsedBytes: number; commandRingBytes: number; logRingBytes: number; spareLogRingBytes: number }[] {
    return this.#owners.map((o) => ({ owner: o.index, ...o.stats() }));
  }

  /**
   * Stops taking requests, lets appends in flight finish, syncs and closes every log with a
   * clean-shutdown marker, and stops the owner threads.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Long polls end now (they see #closed and return what they have); watchers stop.
    for (const done of [...this.#pollers]) done();
    this.#watchers.clear();
    if (this.#inFlightProduces > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    await this.#topicChain;
    await Promise.all(this.#owners.map((o) => o.shutdown().catch((err: unknown) => this.#logger.error({ err: String(err) }, 'owner shutdown failed'))));
    this.#lock.release();
    this.#logger.info({ dataDir: this.dataDir }, 'engine closed');
  }
}

// ---------------------------------------------------------------- checks

function checkTopicConfig(c: TopicConfig): TopicConfig {
  checkInteger(c.partitions, 'partitions', 1, PARTITIONS_PER_TOPIC_MAX);
  checkRetention(c.retentionMs, 'retentionMs');
  checkRetention(c.retentionBytes, 'retentionBytes');
  checkInteger(c.segmentBytes, 'segmentBytes', SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
  checkInteger(c.segmentMs, 'segmentMs', 1, DURATION_MS_MAX);
  const cleanupPolicy = parseCleanupPolicy(c.cleanupPolicy);
  checkInteger(c.deleteRetentionMs, 'deleteRetentionMs', 0, DELETE_RETENTION_MS_MAX);
  const timestampType = parseTimestampType(c.timestampType);
  return {
    partitions: c.partitions,
    retentionMs: c.retentionMs,
    retentionBytes: c.retentionBytes,
    segmentBytes: c.segmentBytes,
    segmentMs: c.segmentMs,
    cleanupPolicy,
    deleteRetentionMs: c.deleteRetentionMs,
    timestampType,
  };
}

/** -1 means unlimited, as in Kafka; otherwise a positive integer. */
function checkRetention(value: number, what: string): void {
  if (value === -1) return;
  checkInteger(value, `${what} (-1 for unlimited)`, 1, Number.MAX_SAFE_INTEGER);
}

function checkAcks(acks: unknown): 0 | 1 | -1 {
  if (acks === 'all' || acks === -1) return -1;
  if (acks === 1 || acks === 0) return acks;
  throw new SluiceError('INVALID_REQUIRED_ACKS', `acks must be 'all', -1, 1 or 0, got ${String(acks)}`);
}


