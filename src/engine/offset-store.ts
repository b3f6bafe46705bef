/**
 * Committed group offsets, kept durably in the engine's own log: the internal compacted
 * topic `__consumer_offsets` (records: ./offset-records.ts), as Kafka does. A commit is one
 * batch appended with acks=all to the partition of its group (FNV-1a of the group id), so
 * it is answered only once fdatasync covers it; compaction keeps the latest commit per
 * (group, topic, partition). On open the store reads every partition of the topic from
 * its log start to its high watermark and rebuilds the latest offset of each key.
 *
 * The in-memory view is updated when a commit is durable, in log order: an entry remembers
 * the log offset of the record that set it, and an older record never overwrites a newer one
 * (two commits of one group may resolve out of order).
 *
 * Owner: the gateway thread (the thread that owns the Engine).
 */
import { SluiceError } from '../errors.js';
import { compressionOf, decodeRecords, encodeBatch, forEachBatch, RECORDS_OFFSET, validateBatch } from '../persist/record-batch.js';
import type { Logger } from '../workers/owner-handle.js';
import type { Engine } from './engine.js';
import type { CommittedOffset, OffsetStore as OffsetStoreContract, OffsetToCommit } from './group-coordinator.js';
import { fnv1a32 } from './names.js';
import { decodeOffsetKey, decodeOffsetValue, encodeOffsetKey, encodeOffsetValue } from './offset-records.js';

export const OFFSETS_TOPIC = '__consumer_offsets';
/** Partitions of the offsets topic: commits of different groups spread over owners. */
export const OFFSETS_TOPIC_PARTITIONS = 4;
/** Segments of the offsets topic roll small so that compaction has closed segments to clean. */
export const OFFSETS_TOPIC_SEGMENT_BYTES = 4 * 1024 * 1024;
export const OFFSETS_TOPIC_SEGMENT_MS = 60 * 60 * 1000;
/** Bytes read per fetch while loading. */
const LOAD_FETCH_BYTES = 1024 * 1024;


interface Entry extends CommittedOffset {
  /** Offset in __consumer_offsets of the record that set this entry. */
  logOffset: number;
}

const entryKey = (topic: string, partition: number): string => `${partition}\u0000${topic}`;

export class OffsetStore implements OffsetStoreContract {
  readonly #engine: Engine;
  readonly #groups = new Map<string, Map<string, Entry>>();
  readonly #now: () => number;
  #creating: Promise<void> | null = null;
  /** Partitions of the offsets topic once it exists (clients cannot alter it, so it stays). */
  #partitions = 0;

  private constructor(engine: Engine, now: () => number) {
    this.#engine = engine;
    this.#now = now;
  }

  /**
   * Loads every committed offset from the offsets topic. The topic itself is created by the
   * first commit (as Kafka creates __consumer_offsets on first use), so a broker whose
   * clients never use groups carries no idle partitions for it.
   */
  static async open(engine: Engine, options: { logger?: Logger; now?: () => number } = {}): Promise<OffsetStore> {
    const store = new OffsetStore(engine, options.now ?? Date.now);
    if (!engine.listTopics().includes(OFFSETS_TOPIC)) return store;
    store.#partitions = engine.describeTopic(OFFSETS_TOPIC).partitions.length;
    const skipped = await store.#load();
    if (skipped > 0) options.logger?.warn({ skipped }, 'offsets records that did not decode were skipped');
    return store;
  }

  /** The partition of __consumer_offsets that holds a group's commits. */
  static partitionOf(groupId: string, partitions: number): number {
    return fnv1a32(groupId) % partitions;
  }

  async #load(): Promise<number> {
    let skipped = 0;
    const partitions = this.#engine.describeTopic(OFFSETS_TOPIC).partitions;
    for (const p of partitions) {
      let offset = p.logStartOffset;
      for (;;) {
        const result = await this.#engine.fetch(OFFSETS_TOPIC, p.partition, offset, { maxBytes: LOAD_FETCH_BYTES });
        if (result.records.length === 0) break;
        let next = offset;
        forEachBatch(result.records, (batch, header) => {
          next = header.baseOffset + header.lastOffsetDelta + 1;
          validateBatch(batch);
          if (compressionOf(header.attributes) !== 'none') {
            skipped += header.recordCount; // the store writes plain batches only
            return;
          }
          for (const r of decodeRecords(batch.subarray(RECORDS_OFFSET), header)) {
            if (r.offset < offset || r.key === null) continue;
            try {
              this.#apply(decodeOffsetKey(r.key), r.value === null ? null : decodeOffsetValue(r.value), r.offset);
            } catch (err) {
              if (!(err instanceof SluiceError)) throw err;
              skipped++;
            }
          }
        });
        if (next <= offset) break;
        offset = next;
        if (offset >= result.highWatermark) break;
      }
    }
    return skipped;
  }

  #apply(key: { groupId: string; topic: string; partition: number }, value: { offset: number; commitTimestamp: number; metadata: string } | null, logOffset: number): void {
    let group = this.#groups.get(key.groupId);
    const k = entryKey(key.topic, key.partition);
    const old = group?.get(k);
    if (old && old.logOffset > logOffset) return;
    if (value === null) {
      group?.delete(k);
      if (group && group.size === 0) this.#groups.delete(key.groupId);
      return;
    }
    if (!group) this.#groups.set(key.groupId, (group = new Map()));
    group.set(k, { topic: key.topic, partition: key.partition, offset: value.offset, metadata: value.metadata, commitTimestamp: value.commitTimestamp, logOffset });
  }

  /** Appends the commits as one batch (acks=all); resolves once durable and visible. */
  async commit(groupId: string, offsets: readonly OffsetToCommit[]): Promise<void> {
    if (offsets.length === 0) return;
    const commitTimestamp = this.#now();
    const records = offsets.map((o) => ({
      key: encodeOffsetKey({ groupId, topic: o.topic, partition: o.partition }),
      value: encodeOffsetValue({ offset: o.offset, commitTimestamp, metadata: o.metadata }),
      timestamp: commitTimestamp,
    }));
    await this.#append(groupId, records, (logOffset) => {
      offsets.forEach((o, i) => this.#apply({ groupId, topic: o.topic, partition: o.partition }, { offset: o.offset, commitTimestamp, metadata: o.metadata }, logOffset + i));
    });
  }

  /** Deletes committed offsets (tombstones); resolves once durable. */
  async deleteOffsets(groupId: string, partitions: readonly { topic: string; partition: number }[]): Promise<void> {
    const present = partitions.filter((p) => this.#groups.get(groupId)?.has(entryKey(p.topic, p.partition)));
    if (present.length === 0) return;
    const now = this.#now();
    const records = present.map((p) => ({ key: encodeOffsetKey({ groupId, topic: p.topic, partition: p.partition }), value: null, timestamp: now }));
    await this.#append(groupId, records, (logOffset) => {
      present.forEach((p, i) => this.#apply({ groupId, topic: p.topic, partition: p.partition }, null, logOffset + i));
    });
  }

  /** The offsets topic, created on first use; concurrent first commits share one creation. */
  #ensureTopic(): Promise<void> {
    if (this.#partitions > 0) return Promise.resolve();
    this.#creating ??= this.#engine
      .createTopic(OFFSETS_TOPIC, {
        partitions: OFFSETS_TOPIC_PARTITIONS,
        cleanupPolicy: 'compact',
        segmentBytes: OFFSETS_TOPIC_SEGMENT_BYTES,
        segmentMs: OFFSETS_TOPIC_SEGMENT_MS,
      })
      .then(
        (d) => {
          this.#partitions = d.partitions.length;
        },
        (err: unknown) => {
          // Created meanwhile by someone else is fine; anything else fails this commit (the next one tries again).
          if (!(err instanceof SluiceError && err.code === 'TOPIC_ALREADY_EXISTS')) throw err;
          this.#partitions = this.#engine.describeTopic(OFFSETS_TOPIC).partitions.length;
        },
      )
      .finally(() => {
        this.#creating = null;
      });
    return this.#creating;
  }

  async #append(groupId: string, records: { key: Uint8Array; value: Uint8Array | null; timestamp: number }[], applied: (baseOffset: number) => void): Promise<void> {
    await this.#ensureTopic();
    const batch = encodeBatch(records, { now: this.#now() });
    const baseOffset = await this.#engine.produce(OFFSETS_TOPIC, OffsetStore.partitionOf(groupId, this.#partitions), batch, { acks: 'all' });
    applied(baseOffset);
  }

  /** The committed offsets of a group, sorted by topic then partition ([] when none). */
  get(groupId: string): CommittedOffset[] {
    const group = this.#groups.get(groupId);
    if (!group) return [];
    return [...group.values()]
      .map(({ topic, partition, offset, metadata, commitTimestamp }) => ({ topic, partition, offset, metadata, commitTimestamp }))
      .sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  }

  /** Groups with at least one committed offset. */
  groupIds(): string[] {
    return [...this.#groups.keys()].sort();
  }
}
