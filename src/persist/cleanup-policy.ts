/**
 * A topic's cleanup policy (Kafka's cleanup.policy) and the tombstone retention that goes
 * with compaction (delete.retention.ms). Pure: no I/O, no state. Owner: any thread.
 *
 * - 'delete': retention deletes whole closed segments by time and size (retentionMs,
 *   retentionBytes). Today's behaviour and the default.
 * - 'compact': no deletion by time or size; compaction (compaction.ts) keeps the latest
 *   record of every key in the closed segments, and drops tombstones (records with a null
 *   value) once deleteRetentionMs has passed.
 * - 'compact,delete': both.
 */
import { SluiceError } from '../errors.js';

export const CLEANUP_POLICIES = ['delete', 'compact', 'compact,delete'] as const;
export type CleanupPolicy = (typeof CLEANUP_POLICIES)[number];

export const CLEANUP_POLICY_DEFAULT: CleanupPolicy = 'delete';
/** Kafka's delete.retention.ms default: a day for a consumer reading from the start to see a tombstone. */
export const DELETE_RETENTION_MS_DEFAULT = 24 * 60 * 60 * 1000;
/** Any non-negative safe integer: 0 drops a tombstone at the first pass after its segment closed. */
export const DELETE_RETENTION_MS_MAX = Number.MAX_SAFE_INTEGER;

/** Kafka also accepts the list in the other order; it means the same. */
const ALIASES: Readonly<Record<string, CleanupPolicy>> = Object.freeze({ 'delete,compact': 'compact,delete' });

export function isCleanupPolicy(value: unknown): value is CleanupPolicy {
  return typeof value === 'string' && (CLEANUP_POLICIES as readonly string[]).includes(value);
}

/** The policy `value` names ('delete,compact' is read as 'compact,delete'); INVALID_ARGUMENT otherwise. */
export function parseCleanupPolicy(value: unknown): CleanupPolicy {
  if (isCleanupPolicy(value)) return value;
  if (typeof value === 'string' && Object.prototype.hasOwnProperty.call(ALIASES, value)) return ALIASES[value];
  throw new SluiceError('INVALID_ARGUMENT', `cleanupPolicy must be one of ${CLEANUP_POLICIES.map((p) => `'${p}'`).join(', ')}, got ${JSON.stringify(value)}`);
}

/** Whether retention deletes segments by time and size under `policy`. */
export function deletesByRetention(policy: CleanupPolicy): boolean {
  return policy !== 'compact';
}

/** Whether the log is compacted under `policy`. */
export function isCompacted(policy: CleanupPolicy): boolean {
  return policy !== 'delete';
}
