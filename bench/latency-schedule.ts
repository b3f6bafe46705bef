/**
 * The fixed-rate sender's schedule and the latency histogram's range, shared by the latency
 * run (ws-load.ts) and the bare path it is compared with (ws-floor.ts), so that both send and
 * measure alike.
 *
 * Owner: none; constants.
 */

/** Latencies above this (µs) are clamped into the histogram's last bucket. */
export const LATENCY_US_MAX = 60_000_000;
/** Shortest wait worth blocking for before the next scheduled send (µs); below it, go round the event loop. */
export const SCHEDULE_BLOCK_US_MIN = 20;
/** Longest single block (µs) so that acknowledgements and timers are not held up longer than this. */
export const SCHEDULE_BLOCK_US_MAX = 1000;
