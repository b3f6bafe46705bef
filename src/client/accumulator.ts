/**
 * Groups records into batches per partition, as Kafka's RecordAccumulator: a batch is
 * sealed when adding a record would take it past `batchBytes`, when `lingerMs` has passed
 * since its first record, or on flush. A record larger than `batchBytes` gets a batch of
 * its own. Sealed batches go to `onSeal` in the order they were sealed per key.
 *
 * What a batch holds is the caller's (`C`, made by `create`): the producer encodes each
 * record into its open batch as it comes (no object per record). Adding is two steps:
 * `open(key, sizeBytes)` gives the batch with room for the record (sealing a fuller one
 * first), the caller appends to its `content`, then `added(batch, sizeBytes)` counts it
 * and seals the batch if it is full.
 *
 * A batch whose linger ends while its key may not send (`canSeal` false: the partition's
 * window of requests in flight is full) stays open and keeps filling, as in Kafka, where
 * the sender drains a partition only when it has room: it is marked due, and the caller
 * seals it with `sealIfDue` once room frees. Sealing it anyway would queue batches behind
 * a stalled window and make them pay the window's wait one by one.
 *
 * Browser-safe; owner: the client's thread. The clock is injected so tests drive linger.
 */
import { assert } from '../assert.js';
import type { Clock, TimerHandle } from './clock.js';

export interface AccumulatorOptions<C> {
  lingerMs: number;
  batchBytes: number;
  clock: Clock;
  /** A new, empty batch for `key`. */
  create: (key: string) => C;
  /** Whether `key` may send now; when false, a batch whose linger ended stays open (due). Default: always. */
  canSeal?: (key: string) => boolean;
  onSeal: (key: string, content: C, bytes: number) => void;
}

export interface OpenBatch<C> {
  readonly key: string;
  readonly content: C;
  bytes: number;
  timer: TimerHandle | null;
  /** Its linger ended while its key could not send: sealed by `sealIfDue`. */
  due: boolean;
}

export class BatchAccumulator<C> {
  readonly #options: AccumulatorOptions<C>;
  readonly #open = new Map<string, OpenBatch<C>>();

  constructor(options: AccumulatorOptions<C>) {
    assert(options.lingerMs >= 0 && Number.isFinite(options.lingerMs), 'lingerMs is a finite number >= 0');
    assert(options.batchBytes >= 1, 'batchBytes >= 1');
    this.#options = options;
  }

  /** The open batch of `key` with room for `sizeBytes` more: the current one, or a new one after sealing it. */
  open(key: string, sizeBytes: number): OpenBatch<C> {
    let batch = this.#open.get(key);
    if (batch && batch.bytes + sizeBytes > this.#options.batchBytes) {
      this.seal(key);
      batch = undefined;
    }
    if (!batch) {
      const opened: OpenBatch<C> = (batch = { key, content: this.#options.create(key), bytes: 0, timer: null, due: false });
      this.#open.set(key, opened);
      opened.timer = this.#options.clock.setTimeout(() => {
        opened.timer = null;
        if (this.#open.get(key) !== opened) return;
        if (this.#options.canSeal?.(key) === false) opened.due = true;
        else this.seal(key);
      }, this.#options.lingerMs);
    }
    return batch;
  }

  /** Counts `sizeBytes` appended to the batch `open` gave (still open); seals it once full. */
  added(batch: OpenBatch<C>, sizeBytes: number): void {
    batch.bytes += sizeBytes;
    if (batch.bytes >= this.#options.batchBytes) this.seal(batch.key);
  }

  /** Seals the open batch of `key`, if any. */
  seal(key: string): void {
    const batch = this.#open.get(key);
    if (!batch) return;
    this.#open.delete(key);
    if (batch.timer !== null) this.#options.clock.clearTimeout(batch.timer);
    this.#options.onSeal(key, batch.content, batch.bytes);
  }

  /** The open batch of `key`, if any, left open. */
  peek(key: string): C | undefined {
    return this.#open.get(key)?.content;
  }

  /** Removes the open batch of `key` without sealing it (its records are failed by the caller). */
  take(key: string): { content: C; bytes: number } | undefined {
    const batch = this.#open.get(key);
    if (!batch) return undefined;
    this.#open.delete(key);
    if (batch.timer !== null) this.#options.clock.clearTimeout(batch.timer);
    return { content: batch.content, bytes: batch.bytes };
  }

  /** Seals the open batch of `key` if its linger ended while it could not send. */
  sealIfDue(key: string): void {
    if (this.#open.get(key)?.due === true) this.seal(key);
  }

  /** Seals every open batch. */
  flush(): void {
    for (const key of [...this.#open.keys()]) this.seal(key);
  }

  get openBatches(): number {
    return this.#open.size;
  }

  hasOpen(key: string): boolean {
    return this.#open.has(key);
  }
}
