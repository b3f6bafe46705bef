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
  onSeal: (key: string, content: C, bytes: number) => void;
}

export interface OpenBatch<C> {
  readonly key: string;
  readonly content: C;
  bytes: number;
  timer: TimerHandle | null;
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
      const opened: OpenBatch<C> = (batch = { key, content: this.#options.create(key), bytes: 0, timer: null });
      this.#open.set(key, opened);
      opened.timer = this.#options.clock.setTimeout(() => {
        if (this.#open.get(key) === opened) this.seal(key);
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
