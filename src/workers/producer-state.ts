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
 * | epoch = E                           | anything else                          | OUT_OF_ORDER_SEQUENCE       |
 *
 * "State lost" covers a producer not seen since the state was rebuilt (from the batch
 * headers of the active segment when the partition opens): then duplicates older than
 * that segment are not recognised, which is Kafka's behaviour once producer state expires.
 *
 * Owner: the partition's owner thread. Memory: one small object per producer id, with a
 * fixed ring of RECENT_BATCHES entries; producers beyond PRODUCERS_MAX evict the least
 * recently used.
 */
import { SluiceError } from '../errors.js';

/**
 * Batches remembered per producer: at least the produces a client keeps in flight per
 * partition (IDEMPOTENT_BATCHES_PER_PARTITION in ws-gateway/limits.ts, 16; Kafka's clients
 * keep 5, its brokers remember 5).
 */
export const RECENT_BATCHES = 16;
/** Producer ids tracked per partition; the least recently used beyond it is forgotten. */
export const PRODUCERS_MAX = 10_000;
const SEQUENCE_MAX = 0x7fff_ffff;

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
    if (baseSequence === nextSequence(p.lastSeq)) return APPEND;
    throw new SluiceError(
      'OUT_OF_ORDER_SEQUENCE',
      `producer ${producerId} sent sequence ${baseSequence}; the next expected is ${nextSequence(p.lastSeq)}`,
    );
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
