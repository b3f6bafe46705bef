/**
 * A topic's timestamp type (Kafka's message.timestamp.type). Pure: no I/O, no state.
 * Owner: any thread.
 *
 * - 'CreateTime' (the default): a record's timestamp is the one its producer gave it.
 * - 'LogAppendTime': the owner stamps each batch as it appends it, as Kafka's broker does:
 *   the batch's timestampType attribute bit is set, its maxTimestamp becomes the broker's
 *   clock (ms since the epoch) and its CRC is rewritten; readers take that maxTimestamp as
 *   every record's timestamp (the records keep the producer's deltas, which they ignore).
 *   Retention by time and lookups by timestamp then go by the broker's clock.
 */
import { SluiceError } from '../errors.js';

export const TIMESTAMP_TYPES = ['CreateTime', 'LogAppendTime'] as const;
export type TimestampType = (typeof TIMESTAMP_TYPES)[number];

export const TIMESTAMP_TYPE_DEFAULT: TimestampType = 'CreateTime';

export function isTimestampType(value: unknown): value is TimestampType {
  return typeof value === 'string' && (TIMESTAMP_TYPES as readonly string[]).includes(value);
}

/** The type `value` names; INVALID_ARGUMENT otherwise. */
export function parseTimestampType(value: unknown): TimestampType {
  if (isTimestampType(value)) return value;
  throw new SluiceError('INVALID_ARGUMENT', `timestampType must be one of ${TIMESTAMP_TYPES.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(value)}`);
}
