/**
 * Exponential back-off with jitter, for reconnects and for retries of retriable errors
 * (Kafka's reconnect.backoff.ms / reconnect.backoff.max.ms and retry.backoff.ms).
 *
 * Browser-safe; owner: any thread; no state.
 */
import type { Random } from './clock.js';

export interface BackoffOptions {
  /** The first delay. */
  initialMs: number;
  /** No delay is longer than this. */
  maxMs: number;
  /** Each attempt multiplies the delay by this. */
  multiplier: number;
  /** Fraction of the delay that is randomised either way (0: none, 0.2: +-20 %), so reconnecting clients spread out. */
  jitter: number;
}

/** Reconnects: 50 ms, doubling to 5 s, +-20 %: a restarting broker is found within a few seconds without a storm of attempts. */
export const RECONNECT_BACKOFF: BackoffOptions = { initialMs: 50, maxMs: 5_000, multiplier: 2, jitter: 0.2 };
/** Retries of a retriable error without a hint: Kafka's retry.backoff.ms (100 ms), doubling to 1 s. */
export const RETRY_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 1_000, multiplier: 2, jitter: 0.2 };

/** The delay before attempt `attempt` (0 for the first retry), in whole ms within [0, maxMs]. */
export function backoffDelayMs(attempt: number, options: BackoffOptions, random: Random): number {
  const base = Math.min(options.maxMs, options.initialMs * options.multiplier ** Math.max(0, attempt));
  const spread = base * options.jitter;
  const delay = base - spread + 2 * spread * random();
  return Math.max(0, Math.min(options.maxMs, Math.round(delay)));
}
