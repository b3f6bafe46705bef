/**
 * Idempotent-producer state of one partition: for each producer id, its epoch, the last
 * sequence stored and the last few batches (first and last sequence, base offset), so that
 * a batch re-sent after a lost acknowledgement is recognised and answered with its
 * original offset instead of being stored twice. As Kafka: sequences live inside the
 * RecordBatch v2 header (producerId, producerEpoch, baseSequence), int32, wrapping to 0.
 *
 * Decision for a batch of producer P, epoch E, sequences [first, last]:
 *
 * | state of P                          | batch                                  | verdict                     |
 * |-------------------------------------|----------------------------------------|-----------------------------|
 * | none (new, or state lost)           | any                                    | append (tracking starts)    |
 * | epoch > E                           | any                                    | INVALID_PRODUCER_EPOCH      |
 * | epoch < E                           | first = 0                              | append (new epoch)          |
 * | epoch < E                           | first != 0                             | OUT_OF_ORDER_SEQUENCE       |
 * | epoch = E                           | [first, last] equals a remembered one  | duplicate: its base offset  |
 * | epoch = E                           | first = last stored + 1                | append                      |
 * | epoch = E                           | first before that (already passed)     | DUPLICATE_SEQUENCE_NUMBER   |
 * | epoch = E                           | first after it (a gap)                 | OUT_OF_ORDER_SEQUENCE       |
 *
 * DUPLICATE_SEQUENCE_NUMBER (not retriable) is a batch older than the ones remembered: it
 * was stored, but its offset is no longer known (as Kafka; its clients count the batch as
 * stored, offset unknown). OUT_OF_ORDER_SEQUENCE (retriable) is a batch whose predecessor is
 * not stored yet. "Before" and "after" are within half the sequence space, with wrap.
 *
 * The state survives restarts: at each roll the owner writes it as of the new segment's
 * base (persist/producer-snapshot.ts, `snapshotBelow`), and an open loads the newest
 * snapshot (`restore`) and replays the batch headers after it. "State lost" covers a
 * producer evicted (PRODUCERS_MAX) or a data dir without a usable snapshot (then only the
 * last two segments are replayed), which is Kafka's behaviour once producer state expires.
 *
 * Owner: the partition's owner thread. Memory: one small object per producer id, with a
 * fixed ring of RECENT_BATCHES entries; producers beyond PRODUCERS_MAX evict the least
 * recently used.
 */
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';
import { SNAPSHOT_BATCHES_MAX, SNAPSHOT_PRODUCERS_MAX, type ProducerSnapshotEntry } from '../persist/producer-snapshot.js';

/**
 * Batches remembered per producer: at least the produces a client keeps in flight per
 * partition (IDEMPOTENT_BATCHES_PER_PARTITION in ws-gateway/limits.ts, 16; Kafka's clients
 * keep 5, its brokers remember 5).
 */
export const RECENT_BATCHES = 16;
/** Producer ids tracked per partition; the least recently used beyond it is forgotten. */
export const PRODUCERS_MAX = 10_000;
const SEQUENCE_MAX = 0x7fff_ffff;
assert(RECENT_BATCHES <= SNAPSHOT_BATCHES_MAX && PRODUCERS_MAX <= SNAPSHOT_PRODUCERS_MAX, 'a snapshot holds the whole state');
/** Sequences wrap at this; a batch within half of it before the next expected one has passed. */
const SEQUENCE_SPACE = SEQUENCE_MAX + 1;

/** Last sequence of a batch: int32 arithmetic wrapping to 0, as Kafka's. */
export function lastSequence(baseSequence: number, recordCount: number): number {
  const last = baseSequence + recordCount - 1;
  return last > SEQUENCE_MAX ? last - SEQUENCE_MAX - 1 : last;
}

function nextSequence(seq: number): number {
  return seq === SEQUENCE_MAX ? 0 : seq + 1;
}

class Producer {
  epoch: number;
  lastSeq: number;
  /** Flat triples (firstSeq, lastSeq, baseOffset), oldest overwritten first. */
  readonly recent = new Float64Array(RECENT_BATCHES * 3);
  count = 0;
  next = 0;

  constructor(epoch: number, lastSeq: number) {
    this.epoch = epoch;
    this.lastSeq = lastSeq;
  }

  remember(firstSeq: number, lastSeq: number, baseOffset: number): void {
    const at = this.next * 3;
    this.recent[at] = firstSeq;
    this.recent[at + 1] = lastSeq;
    this.recent[at + 2] = baseOffset;
    this.next = (this.next + 1) % RECENT_BATCHES;
    if (this.count < RECENT_BATCHES) this.count++;
    this.lastSeq = lastSeq;
  }

  /**
   * Forgets the remembered batches stored at or after `offset` (a failed write did not keep
   * them). Returns false when none is left: the state before them is unknown then.
   */
  forgetFrom(offset: number): boolean {
    const kept: number[] = [];
    const start = this.count < RECENT_BATCHES ? 0 : this.next;
    for (let k = 0; k < this.count; k++) {
      const at = ((start + k) % RECENT_BATCHES) * 3;
      if (this.recent[at + 2] < offset) kept.push(this.recent[at], this.recent[at + 1], this.recent[at + 2]);
    }
    if (kept.length === this.count * 3) return true;
    this.count = 0;
    this.next = 0;
    for (let k = 0; k < kept.length; k += 3) this.remember(kept[k], kept[k + 1], kept[k + 2]);
    return this.count > 0;
  }

  /** The remembered batches below `offset`, oldest first, as [firstSeq, lastSeq, baseOffset]. */
  batchesBelow(offset: number): [number, number, number][] {
    const out: [number, number, number][] = [];
    const start = this.count < RECENT_BATCHES ? 0 : this.next;
    for (let k = 0; k < this.count; k++) {
      const at = ((start + k) % RECENT_BATCHES) * 3;
      if (this.recent[at + 2] < offset) out.push([this.recent[at], this.recent[at + 1], this.recent[at + 2]]);
    }
    return out;
  }

  duplicateOf(firstSeq: number, lastSeq: number): number {
    for (let i = 0; i < this.count; i++) {
      if (this.recent[i * 3] === firstSeq && this.recent[i * 3 + 1] === lastSeq) return this.recent[i * 3 + 2];
    }
    return -1;
  }
}

/** What to do with an idempotent batch: append it, or answer with the offset it already has. */
export type Verdict = { kind: 'append' } | { kind: 'duplicate'; baseOffset: number };

const APPEND: Verdict = { kind: 'append' };

export class ProducerStates {
  readonly #producers = new Map<number, Producer>();

  get size(): number {
    return this.#producers.size;
  }

  /** The highest producer id tracked (-1: none). */
  producerIdMax(): number {
    let max = -1;
    for (const id of this.#producers.keys()) if (id > max) max = id;
    return max;
  }

  /** Decides per the table above; throws OUT_OF_ORDER_SEQUENCE or INVALID_PRODUCER_EPOCH. */
  check(producerId: number, epoch: number, baseSequence: number, recordCount: number): Verdict {
    const p = this.#producers.get(producerId);
    if (p === undefined) return APPEND;
    if (epoch < p.epoch) {
      throw new SluiceError('INVALID_PRODUCER_EPOCH', `producer ${producerId} epoch ${epoch} is older than its current epoch ${p.epoch}`);
    }
    if (epoch > p.epoch) {
      if (baseSequence === 0) return APPEND;
      throw new SluiceError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId} starts epoch ${epoch} at sequence ${baseSequence}, not 0`);
    }
    const last = lastSequence(baseSequence, recordCount);
    const original = p.duplicateOf(baseSequence, last);
    if (original >= 0) return { kind: 'duplicate', baseOffset: original };
    const next = nextSequence(p.lastSeq);
    if (baseSequence === next) return APPEND;
    const behind = (next - baseSequence + SEQUENCE_SPACE) % SEQUENCE_SPACE;
    if (behind <= SEQUENCE_SPACE / 2) {
      throw new SluiceError(
        'DUPLICATE_SEQUENCE_NUMBER',
        `producer ${producerId} sent sequence ${baseSequence}, older than the ${p.count} batches remembered (the next expected is ${next}): it was stored already`,
      );
    }
    throw new SluiceError('OUT_OF_ORDER_SEQUENCE', `producer ${producerId} sent sequence ${baseSequence}; the next expected is ${next}`);
  }

  /**
   * The state as of `offset`: what the batches below it say (the ones at or after it are
   * left out; a producer with none below it is left out), least recently used first.
   */
  snapshotBelow(offset: number): ProducerSnapshotEntry[] {
    const out: ProducerSnapshotEntry[] = [];
    for (const [producerId, p] of this.#producers) {
      const batches = p.batchesBelow(offset);
      if (batches.length > 0) out.push({ producerId, epoch: p.epoch, lastSequence: batches[batches.length - 1][1], batches });
    }
    return out;
  }

  /** Replaces the state with a snapshot's (before the batches after it are replayed with `record`). */
  restore(entries: ProducerSnapshotEntry[]): void {
    this.#producers.clear();
    for (const e of entries) {
      const p = new Producer(e.epoch, e.lastSequence);
      for (const [first, last, base] of e.batches) p.remember(first, last, base);
      p.lastSeq = e.lastSequence;
      this.#producers.set(e.producerId, p);
    }
    while (this.#producers.size > PRODUCERS_MAX) this.#producers.delete(this.#producers.keys().next().value as number);
  }

  /** Records a batch that was appended (after check said append, or during a rebuild). */
  record(producerId: number, epoch: number, baseSequence: number, recordCount: number, baseOffset: number): void {
    let p = this.#producers.get(producerId);
    const last = lastSequence(baseSequence, recordCount);
    if (p === undefined || epoch !== p.epoch) {
      p = new Producer(epoch, last);
      this.#producers.delete(producerId);
      this.#producers.set(producerId, p);
      if (this.#producers.size > PRODUCERS_MAX) {
        const oldest = this.#producers.keys().next().value as number;
        this.#producers.delete(oldest);
      }
    } else {
      // Keep insertion order as recency: move to the end.
      this.#producers.delete(producerId);
      this.#producers.set(producerId, p);
    }
    p.remember(baseSequence, last, baseOffset);
  }

  /**
   * After a failed write cut the log back to `offset`: forgets the batches recorded at or
   * after it, whose producers will resend them, and keeps the rest, so that a re-send of a
   * batch that was written is still recognised. A producer left with no batch is forgotten
   * (its state is lost, as after a rebuild).
   */
  forgetFrom(offset: number): void {
    for (const [producerId, p] of this.#producers) {
      if (!p.forgetFrom(offset)) this.#producers.delete(producerId);
    }
  }
}
