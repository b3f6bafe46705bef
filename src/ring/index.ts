/**
 * src/ring: SharedArrayBuffer rings and Atomics signalling, a leaf module that knows
 * nothing of records. See each file's top comment for its layout and invariants.
 * Owner: none (re-exports only).
 */
export { SpscRing } from './spsc-ring.js';
export { LogRing } from './log-ring.js';
export type { LogRingOptions, LogRingRead } from './log-ring.js';
export { SeqlockCells } from './seqlock-cells.js';
export { copyBytes, MEMCPY_MIN_BYTES } from './shared-copy.js';
