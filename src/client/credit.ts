/**
 * Consumer-side credit accounting for one subscription (docs/protocol.md, flow control).
 *
 * The gateway may push record bytes while the subscription's credit lasts. The client
 * grants bytes back as the application finishes with them, so the pace of the
 * application sets the pace of the stream and the bytes held by the client never exceed
 * the window (plus one oversized batch, protocol rule 2). Grants are batched: one CREDIT
 * once the returned bytes reach CREDIT_REFILL_FRACTION of the window (floor: 1 byte), and
 * (`idleGrant`) CREDIT_IDLE_GRANT_MS after the application has finished with everything
 * it was sent, so an idle consumer is soon back at credit = window (which rule 2 needs to
 * send an oversized batch). "Idle" means quiet: a DATA frame within CREDIT_IDLE_GRANT_MS
 * puts the grant off again, so a consumer that keeps up with a steady trickle of small
 * batches grants at the refill threshold only, rather than every CREDIT_IDLE_GRANT_MS (a
 * CREDIT is a socket write, about 0.1 ms of the consumer's CPU here by a profile's share,
 * and wakes the gateway).
 * Until then the server still holds at least half the window, so only a batch larger than
 * that waits for the idle grant, and the stream stops in front of it, so the consumer goes
 * quiet and grants. While paused, nothing is granted; resume grants what accumulated by the
 * same rules.
 *
 * Browser-safe; owner: the client's thread; plain counters.
 */
import { assert } from '../assert.js';

/** Grant credit back once this fraction of the window has been consumed (nats.js and Kafka clients refill at about half). */
export const CREDIT_REFILL_FRACTION = 0.5;
/** Default window per subscription: one maximal fetch (FETCH_BYTES_MAX), so one DATA frame can be full. */
export const CONSUMER_WINDOW_BYTES_DEFAULT = 1024 * 1024;
/** The smallest grant threshold. */
export const CREDIT_REFILL_BYTES_MIN = 1;
/**
 * After the application finished with everything it was sent, grant the bytes still held
 * back once this long has passed with no DATA frame (if it is still idle then).
 */
export const CREDIT_IDLE_GRANT_MS = 10;

export class CreditAccount {
  readonly windowBytes: number;
  readonly refillBytes: number;
  /** Bytes received from the server and not yet finished by the application. */
  #heldBytes = 0;
  /** Bytes finished and not yet granted back. */
  #returnableBytes = 0;
  #paused = false;
  #framesReceived = 0;

  constructor(windowBytes: number, refillFraction = CREDIT_REFILL_FRACTION) {
    assert(Number.isInteger(windowBytes) && windowBytes >= 1 && windowBytes <= 0xffff_ffff, () => `windowBytes must be a u32 >= 1, got ${windowBytes}`);
    assert(refillFraction > 0 && refillFraction <= 1, 'the refill fraction is in (0, 1]');
    this.windowBytes = windowBytes;
    this.refillBytes = Math.max(CREDIT_REFILL_BYTES_MIN, Math.floor(windowBytes * refillFraction));
  }

  get heldBytes(): number {
    return this.#heldBytes;
  }

  get returnableBytes(): number {
    return this.#returnableBytes;
  }

  /** A new subscription starts with the whole window granted and nothing held. */
  reset(): void {
    this.#heldBytes = 0;
    this.#returnableBytes = 0;
  }

  /** A DATA frame with `bytes` record bytes arrived. */
  received(bytes: number): void {
    this.#heldBytes += bytes;
    this.#framesReceived++;
  }

  /** DATA frames received so far: the idle grant waits for a quiet CREDIT_IDLE_GRANT_MS, with none. */
  get framesReceived(): number {
    return this.#framesReceived;
  }

  /** The application finished with `bytes` record bytes; returns the bytes to grant now (0: none yet). */
  consumed(bytes: number): number {
    assert(bytes <= this.#heldBytes, () => `consumed ${bytes} bytes but only ${this.#heldBytes} are held`);
    this.#heldBytes -= bytes;
    this.#returnableBytes += bytes;
    return this.#grant();
  }

  pause(): void {
    this.#paused = true;
  }

  /** Returns the bytes to grant now that the subscription runs again. */
  resume(): number {
    this.#paused = false;
    return this.#grant();
  }

  /** Whether bytes wait for the idle grant: the application holds nothing and less than the refill threshold is owed. */
  get idle(): boolean {
    return !this.#paused && this.#heldBytes === 0 && this.#returnableBytes > 0;
  }

  /** Returns everything owed if the application still holds nothing (0 otherwise): the grant CREDIT_IDLE_GRANT_MS after going idle. */
  idleGrant(): number {
    if (!this.idle) return 0;
    const grant = this.#returnableBytes;
    this.#returnableBytes = 0;
    return grant;
  }

  #grant(): number {
    if (this.#paused || this.#returnableBytes < this.refillBytes) return 0;
    const grant = this.#returnableBytes;
    this.#returnableBytes = 0;
    return grant;
  }
}
