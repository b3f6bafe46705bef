/**
 * The one catalogue of operating errors (house style 17-19).
 *
 * Every error the world can cause (bad input, full disk, corrupt bytes, overload) is a
 * SluiceError with a stable string `code`, a `retriable` flag and an optional `cause`.
 * Errors cross threads and sockets as plain data ({ code, message, retriable }) and are
 * rebuilt from the code on the other side. Each code also has a stable 16-bit number,
 * Kafka's own error number where Kafka has one, so that the Kafka-protocol listener and
 * the binary rings can carry it without strings.
 *
 * Programmer errors are not here: they are assertions (see assert.ts) and crash loudly.
 * Owner: any thread; no state.
 */

/** code -> [number, retriable, meaning]. Numbers below 1000 are Kafka's. */
const CATALOGUE = {
  OFFSET_OUT_OF_RANGE: [1, false, 'the offset is below the log start offset or above the high watermark'],
  CORRUPT_MESSAGE: [2, false, 'a batch failed its length, magic or CRC32C check'],
  UNKNOWN_TOPIC_OR_PARTITION: [3, false, 'no such topic or partition'],
  MESSAGE_TOO_LARGE: [10, false, 'the batch is larger than the broker accepts'],
  OFFSET_METADATA_TOO_LARGE: [12, false, 'the metadata of a committed offset is longer than the coordinator accepts'],
  INVALID_TOPIC: [17, false, 'the topic name is not legal'],
  INVALID_REQUIRED_ACKS: [21, false, 'acks must be 0, 1 or all (-1)'],
  ILLEGAL_GENERATION: [22, false, 'the generation is not one the coordinator gave this member for the request'],
  INCONSISTENT_GROUP_PROTOCOL: [23, false, 'the member asks for an assignor other than the one the group uses'],
  INVALID_GROUP_ID: [24, false, 'the group id is not a non-empty string of at most 255 UTF-8 bytes'],
  UNKNOWN_MEMBER_ID: [25, false, 'the group has no live member with this id'],
  INVALID_SESSION_TIMEOUT: [26, false, 'the session or rebalance timeout is outside the allowed range'],
  REBALANCE_IN_PROGRESS: [27, true, 'the group is rebalancing'],
  UNSUPPORTED_VERSION: [35, false, 'the peers share no protocol version'],
  TOPIC_ALREADY_EXISTS: [36, false, 'a topic with this name exists'],
  INVALID_PARTITIONS: [37, false, 'the partition count is not allowed (createPartitions only increases it, up to the per-topic limit)'],
  INVALID_REQUEST: [42, false, 'the request is malformed'],
  UNSUPPORTED_FOR_MESSAGE_FORMAT: [43, false, 'only RecordBatch v2 (magic 2) is accepted'],
  OUT_OF_ORDER_SEQUENCE: [45, true, 'an idempotent batch does not follow the last stored sequence of its producer'],
  DUPLICATE_SEQUENCE_NUMBER: [46, false, 'an idempotent batch older than the ones the broker remembers for its producer: it was stored already, at an offset no longer known'],
  INVALID_PRODUCER_EPOCH: [47, false, 'the producer epoch is not the one the broker issued for this producer id'],
  STORAGE_ERROR: [56, true, 'the disk failed a read, write or sync'],
  UNKNOWN_PRODUCER_ID: [59, false, 'the broker never issued this producer id'],
  NON_EMPTY_GROUP: [68, false, 'the group has live members'],
  GROUP_ID_NOT_FOUND: [69, false, 'no live group and no committed offsets under this group id'],
  GROUP_MAX_SIZE_REACHED: [81, false, 'the group has as many members as allowed, or the coordinator as many live groups'],
  FENCED_INSTANCE_ID: [82, false, 'another member joined with this instanceId (static membership) and replaced this one for good'],
  INVALID_RECORD: [87, false, 'a record breaks a rule of its topic (a compacted topic needs a key on every record)'],
  THROTTLED: [89, true, 'a queue is full; retry after the back-off hint'],
  INVALID_ARGUMENT: [1000, false, 'an argument is missing, of the wrong type or out of range'],
  OWNER_UNAVAILABLE: [1001, true, 'the owner thread of the partition died or is restarting'],
  ENGINE_CLOSED: [1002, false, 'the engine is closed or closing'],
  INTERNAL: [1003, false, 'an unexpected internal failure'],
  CONNECTION_LOST: [1004, true, 'the connection dropped before the answer came; the outcome is unknown'],
  CLIENT_CLOSED: [1005, false, 'the client was closed by the application'],
  PARTITION_NOT_ASSIGNED: [1006, false, 'the member does not own this partition in its current assignment'],
  DELIVERY_TIMEOUT: [1007, false, 'the producer gave up on records not acknowledged within its deliveryTimeoutMs; they may or may not be stored'],
} as const satisfies Record<string, readonly [number, boolean, string]>;

export type ErrorCode = keyof typeof CATALOGUE;

export const ERROR_CODES = Object.keys(CATALOGUE) as ErrorCode[];

const BY_NUMBER = new Map<number, ErrorCode>(
  ERROR_CODES.map((code) => [CATALOGUE[code][0], code]),
);

export interface WireError {
  code: ErrorCode;
  message: string;
  retriable: boolean;
  backoffMs?: number;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  /** For THROTTLED: how long the caller should wait before retrying. */
  readonly backoffMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; backoffMs?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retriable = CATALOGUE[code][1];
    this.backoffMs = options.backoffMs;
  }

  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message, retriable: this.retriable };
    if (this.backoffMs !== undefined) wire.backoffMs = this.backoffMs;
    return wire;
  }

  static fromWire(wire: WireError): SluiceError {
    const code = isErrorCode(wire.code) ? wire.code : 'INTERNAL';
    return new SluiceError(code, wire.message, { backoffMs: wire.backoffMs });
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(CATALOGUE, code);
}

export function errorNumber(code: ErrorCode): number {
  return CATALOGUE[code][0];
}

export function errorCodeOf(num: number): ErrorCode {
  return BY_NUMBER.get(num) ?? 'INTERNAL';
}

export function errorMeaning(code: ErrorCode): string {
  return CATALOGUE[code][2];
}

export function isRetriable(code: ErrorCode): boolean {
  return CATALOGUE[code][1];
}

/** Wraps anything thrown by the file system as STORAGE_ERROR, keeping typed errors as they are. */
export function asStorageError(err: unknown, what: string): SluiceError {
  if (err instanceof SluiceError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new SluiceError('STORAGE_ERROR', `${what}: ${detail}`, { cause: err });
}
