/**
 * Groups records into batches per partition, as Kafka's RecordAccumulator: a batch is
 * sealed when adding a record would take it past `batchBytes`, when `lingerMs` has passed
 * since its first record, or on flush. A record larger than `batchBytes` gets a batch of
 * its own. Sealed batches go to `onSeal` in the order they were sealed per key.
 *
 * Browser-safe; owner: the client's thread. The clock is injected so tests drive linger.
 */
import { assert } from '../assert.js';
import type { Clock, TimerHandle } from './clock.js';

export interface AccumulatorOptions<T> {
  lingerMs: number;
  batchBytes: number;
  clock: Clock;
  onSeal: (key: string, items: T[], bytes: number) => void;
}

interface OpenBatch<T> {
  items: T[];
  bytes: number;
  timer: TimerHandle | null;
}

export class BatchAccumulator<T> {
  readonly #options: AccumulatorOptions<T>;
  readonly #open = new Map<string, OpenBatch<T>>();

  constructor(options: AccumulatorOptions<T>) {
    assert(options.lingerMs >= 0 && Number.isFinite(options.lingerMs), 'lingerMs is a finite number >= 0');
    assert(options.batchBytes >= 1, 'batchBytes >= 1');
    this.#options = options;
  }

  /** Adds an item of `sizeBytes` to the open batch of `key`. */
  add(key: string, item: T, sizeBytes: number): void {
    let batch = this.#open.get(key);
    if (batch && batch.bytes + sizeBytes > this.#options.batchBytes) {
      this.seal(key);
      batch = undefined;
    }
    if (!batch) {
      batch = { items: [], bytes: 0, timer: null };
      this.#open.set(key, batch);
      batch.timer = this.#options.clock.setTimeout(() => {
        const current = this.#open.get(key);
        if (current === batch) this.seal(key);
      }, this.#options.lingerMs);
    }
    batch.items.push(item);
    batch.bytes += sizeBytes;
    if (batch.bytes >= this.#options.batchBytes) this.seal(key);
  }

  /** Seals the open batch of `key`, if any. */
  seal(key: string): void {
    const batch = this.#open.get(key);
    if (!batch) return;
    this.#open.delete(key);
    if (batch.timer !== null) this.#options.clock.clearTimeout(batch.timer);
    this.#options.onSeal(key, batch.items, batch.bytes);
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
