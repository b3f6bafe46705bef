/**
 * The frame codec of the Sluice WebSocket protocol (docs/protocol.md is the specification;
 * this file implements it). Encode, decode, validate; no I/O, no sockets, no Node-only
 * imports: the browser client uses it as it is (Uint8Array, DataView, TextEncoder).
 *
 * One WebSocket binary message is one frame. ALL INTEGERS ARE BIG-ENDIAN (Kafka's order,
 * DataView's default; every DataView call below says `false` anyway).
 *
 * Frame header (8 bytes, then the op's body):
 *
 * | offset | size | field         | type | rule                                                        |
 * |-------:|-----:|---------------|------|-------------------------------------------------------------|
 * |      0 |    1 | op            | u8   | request 0x01-0x5F; response = request op | 0x80; push 0xE0-0xEF; ERROR 0xFF |
 * |      1 |    1 | flags         | u8   | 0 in version 1                                              |
 * |      2 |    2 | reserved      | u16  | 0 in version 1                                              |
 * |      4 |    4 | correlationId | u32  | chosen by the client, >= 1; echoed by the response; 0 on pushes |
 *
 * Field types: u8 i8 u16 i16 u32 i32; i64 (a JavaScript safe integer in memory, anything
 * outside +-(2^53 - 1) is rejected); bool (u8, 0 or 1); error (u16 error number of
 * src/errors.ts); string (u16 byte length + UTF-8, at most STRING_BYTES_MAX bytes); bytes
 * (u32 length + raw bytes: RecordBatch v2 data, never re-encoded); list (u32 count +
 * items); array (u32 count + structs). The body layout of each op is the schema below, in
 * wire order; docs/protocol.md has the same tables with offsets, and a test checks that
 * they agree.
 *
 * Decoding never copies record bytes: `batch` and `records` are views (subarray) of the
 * frame. Whoever keeps them past the uWS handler must copy them (the ArrayBuffer dies).
 *
 * Malformed input throws FrameError (a SluiceError with code INVALID_REQUEST) carrying
 * the op and correlationId when the header could be read, and `fatal`:
 * - fatal: the frame's structure is broken (shorter than the header, non-zero flags or
 *   reserved bits, correlationId 0 on a request, a field running past the end, bytes left
 *   over, a count larger than the bytes that follow). The peer's codec cannot be trusted:
 *   the gateway answers ERROR and closes (1002).
 * - not fatal: the structure is sound but a value is unacceptable (an unknown or reserved
 *   op, an int64 outside the safe range, invalid UTF-8, a string over STRING_BYTES_MAX, a
 *   bool other than 0 or 1). The gateway answers ERROR for that request and carries on.
 * The decision does not depend on field order: the decoder walks the whole frame, and a
 * structural fault anywhere wins over a bad value.
 *
 * Encoders size the frame first (validating every value: a wrong type or an out-of-range
 * number is a SluiceError INVALID_ARGUMENT), then write it once into one Uint8Array (new,
 * or a caller's buffer through writeClientFrame / writeServerFrame). Strings are encoded as
 * TextEncoder does (a lone surrogate becomes U+FFFD); `text` fields (error messages) are
 * cut to STRING_BYTES_MAX at a character boundary instead of being rejected.
 *
 * Owner: any thread; no state beyond the frozen tables below.
 */
import { assert } from '../assert.js';
import { errorCodeOf, errorNumber, isErrorCode, SluiceError, type ErrorCode } from '../errors.js';
import { GROUPS_PROTOCOL_VERSION, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN, STRING_BYTES_MAX } from './limits.js';

// ---------------------------------------------------------------- header

export const OP_OFFSET = 0;
export const OP_BYTES = 1;
export const FLAGS_OFFSET = OP_OFFSET + OP_BYTES;
export const FLAGS_BYTES = 1;
export const RESERVED_OFFSET = FLAGS_OFFSET + FLAGS_BYTES;
export const RESERVED_BYTES = 2;
export const CORRELATION_ID_OFFSET = RESERVED_OFFSET + RESERVED_BYTES;
export const CORRELATION_ID_BYTES = 4;
export const FRAME_HEADER_BYTES = CORRELATION_ID_OFFSET + CORRELATION_ID_BYTES;
assert(FRAME_HEADER_BYTES === 8, 'the frame header is 8 bytes');

/** A response's op is its request's op with this bit set. */
export const RESPONSE_BIT = 0x80;
/** Correlation ids are u32; 0 is reserved for pushes and connection-level errors. */
export const CORRELATION_ID_MAX = 0xffff_ffff;

// ---------------------------------------------------------------- op codes

export const Op = {
  // requests (client -> server)
  HELLO: 0x01,
  PRODUCE: 0x02,
  FETCH: 0x03,
  LIST_OFFSETS: 0x04,
  METADATA: 0x05,
  INIT_PRODUCER: 0x06,
  SUBSCRIBE: 0x10,
  CREDIT: 0x11,
  UNSUBSCRIBE: 0x12,
  LIST_TOPICS: 0x20,
  DESCRIBE_TOPIC: 0x21,
  CREATE_TOPIC: 0x22,
  DELETE_TOPIC: 0x23,
  CREATE_PARTITIONS: 0x24,
  CREATE_TOPIC_WITH_CONFIGS: 0x25,
  DESCRIBE_CONFIGS: 0x26,
  JOIN_GROUP: 0x30,
  HEARTBEAT: 0x31,
  LEAVE_GROUP: 0x32,
  COMMIT_OFFSETS: 0x33,
  FETCH_COMMITTED: 0x34,
  LIST_GROUPS: 0x35,
  DESCRIBE_GROUP: 0x36,
  RESET_OFFSETS: 0x37,
  // responses (server -> client): request op | 0x80
  HELLO_OK: 0x81,
  PRODUCE_OK: 0x82,
  FETCH_OK: 0x83,
  LIST_OFFSETS_OK: 0x84,
  METADATA_OK: 0x85,
  INIT_PRODUCER_OK: 0x86,
  SUBSCRIBE_OK: 0x90,
  UNSUBSCRIBE_OK: 0x92,
  LIST_TOPICS_OK: 0xa0,
  DESCRIBE_TOPIC_OK: 0xa1,
  CREATE_TOPIC_OK: 0xa2,
  DELETE_TOPIC_OK: 0xa3,
  CREATE_PARTITIONS_OK: 0xa4,
  CREATE_TOPIC_WITH_CONFIGS_OK: 0xa5,
  DESCRIBE_CONFIGS_OK: 0xa6,
  JOIN_GROUP_OK: 0xb0,
  HEARTBEAT_OK: 0xb1,
  LEAVE_GROUP_OK: 0xb2,
  COMMIT_OFFSETS_OK: 0xb3,
  FETCH_COMMITTED_OK: 0xb4,
  LIST_GROUPS_OK: 0xb5,
  DESCRIBE_GROUP_OK: 0xb6,
  RESET_OFFSETS_OK: 0xb7,
  // pushes (server -> client, correlationId 0)
  DATA: 0xe0,
  SUBSCRIPTION_CLOSED: 0xe1,
  ASSIGNMENT: 0xe8,
  // the error response to any request
  ERROR: 0xff,
} as const;
export type OpName = keyof typeof Op;

/** RESET_OFFSETS's u8 `strategy`: where the group's offsets go. */
export const ResetStrategy = { EARLIEST: 0, LATEST: 1, OFFSET: 2, TIMESTAMP: 3 } as const;

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, op]) => [op, name] as [number, string]));

/** 'PRODUCE', or '0x5a' for a code without a name: for messages and logs. */
export function opName(op: number): string {
  return OP_NAMES.get(op) ?? `0x${op.toString(16).padStart(2, '0')}`;
}

// ---------------------------------------------------------------- schemas

export type ScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'i64' | 'bool' | 'error' | 'string' | 'text' | 'bytes';
/** u32 count, then that many scalars. */
export interface ListType {
  readonly list: ScalarType;
}
/** u32 count, then that many structs laid out by the schema. */
export interface ArrayType {
  readonly array: Schema;
}
export type FieldType = ScalarType | ListType | ArrayType;
export type Field = readonly [name: string, type: FieldType];
/** The fields of a body in wire order. */
export type Schema = readonly Field[];

type ValueOf<T> = T extends 'string' | 'text'
  ? string
  : T extends 'bytes'
    ? Uint8Array
    : T extends 'bool'
      ? boolean
      : T extends 'error'
        ? ErrorCode
        : T extends { readonly list: infer S }
          ? ValueOf<S>[]
          : T extends { readonly array: infer S extends Schema }
            ? Fields<S>[]
            : number;
type Fields<S extends Schema> = { -readonly [F in S[number] as F[0]]: ValueOf<F[1]> };
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type FrameOf<O extends number, S extends Schema, C extends number = number> = Simplify<{ op: O; correlationId: C } & Fields<S>>;

const EMPTY = [] as const satisfies Schema;

// Requests. Fixed-size fields first, so their offsets are fixed; strings and bytes last.
const HELLO = [['versionMin', 'u16'], ['versionMax', 'u16'], ['clientId', 'string']] as const satisfies Schema;
const PRODUCE = [['producerId', 'i64'], ['partition', 'i32'], ['acks', 'i8'], ['topic', 'string'], ['batch', 'bytes']] as const satisfies Schema;
/** PRODUCE's fixed fields (the schema above), for the direct writer and reader of its head. */
const PRODUCE_PRODUCER_ID_OFFSET = FRAME_HEADER_BYTES;
const PRODUCE_PARTITION_OFFSET = PRODUCE_PRODUCER_ID_OFFSET + 8;
const PRODUCE_ACKS_OFFSET = PRODUCE_PARTITION_OFFSET + 4;
/** Where PRODUCE's topic length (u16) sits, after producerId, partition and acks. */
const PRODUCE_TOPIC_OFFSET = PRODUCE_ACKS_OFFSET + 1;
const FETCH = [
  ['offset', 'i64'],
  ['partition', 'i32'],
  ['maxBytes', 'i32'],
  ['minBytes', 'i32'],
  ['maxWaitMs', 'i32'],
  ['topic', 'string'],
] as const satisfies Schema;
const LIST_OFFSETS = [['timestamp', 'i64'], ['partition', 'i32'], ['topic', 'string']] as const satisfies Schema;
const SUBSCRIBE = [
  ['offset', 'i64'],
  ['subscriptionId', 'u32'],
  ['partition', 'i32'],
  ['creditBytes', 'u32'],
  ['topic', 'string'],
] as const satisfies Schema;
const CREDIT = [['subscriptionId', 'u32'], ['creditBytes', 'u32']] as const satisfies Schema;
const UNSUBSCRIBE = [['subscriptionId', 'u32']] as const satisfies Schema;
const TOPIC_ONLY = [['topic', 'string']] as const satisfies Schema;
const CREATE_TOPIC = [
  ['retentionMs', 'i64'],
  ['retentionBytes', 'i64'],
  ['segmentMs', 'i64'],
  ['segmentBytes', 'i64'],
  ['partitions', 'i32'],
  ['topic', 'string'],
] as const satisfies Schema;

const CREATE_PARTITIONS = [['partitions', 'i32'], ['topic', 'string']] as const satisfies Schema;
const CONFIG_ENTRY = [['name', 'string'], ['value', 'string']] as const satisfies Schema;
const CREATE_TOPIC_WITH_CONFIGS = [['partitions', 'i32'], ['topic', 'string'], ['configs', { array: CONFIG_ENTRY }]] as const satisfies Schema;
const DESCRIBE_CONFIGS_OK = [['topic', 'string'], ['configs', { array: CONFIG_ENTRY }]] as const satisfies Schema;
const JOIN_GROUP = [
  ['sessionTimeoutMs', 'u32'],
  ['rebalanceTimeoutMs', 'u32'],
  ['groupId', 'string'],
  ['memberId', 'string'],
  ['instanceId', 'string'],
  ['clientId', 'string'],
  ['assignor', 'string'],
  ['topics', { list: 'string' }],
] as const satisfies Schema;
const HEARTBEAT = [['generation', 'i32'], ['groupId', 'string'], ['memberId', 'string']] as const satisfies Schema;
const LEAVE_GROUP = [['groupId', 'string'], ['memberId', 'string']] as const satisfies Schema;
const TOPIC_PARTITION = [['partition', 'i32'], ['topic', 'string']] as const satisfies Schema;
const OFFSET_COMMIT = [['offset', 'i64'], ['partition', 'i32'], ['topic', 'string'], ['metadata', 'string']] as const satisfies Schema;
const COMMIT_OFFSETS = [
  ['generation', 'i32'],
  ['groupId', 'string'],
  ['memberId', 'string'],
  ['offsets', { array: OFFSET_COMMIT }],
] as const satisfies Schema;
const FETCH_COMMITTED = [
  ['generation', 'i32'],
  ['groupId', 'string'],
  ['memberId', 'string'],
  ['partitions', { array: TOPIC_PARTITION }],
] as const satisfies Schema;
const GROUP_ONLY = [['groupId', 'string']] as const satisfies Schema;
const RESET_OFFSETS = [
  ['value', 'i64'],
  ['strategy', 'u8'],
  ['groupId', 'string'],
  ['topics', { list: 'string' }],
] as const satisfies Schema;

// Responses and pushes.
const HELLO_OK = [
  ['protocolVersion', 'u16'],
  ['inFlightMax', 'u16'],
  ['subscriptionsMax', 'u16'],
  ['frameBytesMax', 'u32'],
  ['fetchBytesMax', 'u32'],
  ['batchBytesMax', 'u32'],
  ['fetchWaitMsMax', 'u32'],
  ['serverVersion', 'string'],
] as const satisfies Schema;
const PRODUCE_OK = [['baseOffset', 'i64'], ['logStartOffset', 'i64']] as const satisfies Schema;
const FETCH_OK = [['highWatermark', 'i64'], ['logStartOffset', 'i64'], ['records', 'bytes']] as const satisfies Schema;
const LIST_OFFSETS_OK = [['offset', 'i64']] as const satisfies Schema;
const METADATA_TOPIC = [['partitions', 'u32'], ['name', 'string']] as const satisfies Schema;
const METADATA_OK = [['owners', 'u16'], ['serverVersion', 'string'], ['topics', { array: METADATA_TOPIC }]] as const satisfies Schema;
const INIT_PRODUCER_OK = [['producerId', 'i64'], ['producerEpoch', 'i16']] as const satisfies Schema;
const SUBSCRIBE_OK = [
  ['offset', 'i64'],
  ['highWatermark', 'i64'],
  ['logStartOffset', 'i64'],
  ['subscriptionId', 'u32'],
] as const satisfies Schema;
const UNSUBSCRIBE_OK = [['subscriptionId', 'u32']] as const satisfies Schema;
const LIST_TOPICS_OK = [['topics', { list: 'string' }]] as const satisfies Schema;
const PARTITION_INFO = [
  ['logStartOffset', 'i64'],
  ['logEndOffset', 'i64'],
  ['highWatermark', 'i64'],
  ['durableOffset', 'i64'],
  ['sizeBytes', 'i64'],
  ['owner', 'u16'],
] as const satisfies Schema;
const TOPIC_DESCRIPTION = [
  ['retentionMs', 'i64'],
  ['retentionBytes', 'i64'],
  ['segmentMs', 'i64'],
  ['segmentBytes', 'i64'],
  ['topic', 'string'],
  ['partitions', { array: PARTITION_INFO }],
] as const satisfies Schema;
const ASSIGNMENT = [
  ['generation', 'i32'],
  ['heartbeatIntervalMs', 'u32'],
  ['groupId', 'string'],
  ['memberId', 'string'],
  ['partitions', { array: TOPIC_PARTITION }],
] as const satisfies Schema;
const COMMITTED_OFFSET = [
  ['offset', 'i64'],
  ['commitTimestamp', 'i64'],
  ['partition', 'i32'],
  ['topic', 'string'],
  ['metadata', 'string'],
] as const satisfies Schema;
const FETCH_COMMITTED_OK = [['offsets', { array: COMMITTED_OFFSET }]] as const satisfies Schema;
const GROUP_SUMMARY = [['members', 'u32'], ['groupId', 'string'], ['state', 'string'], ['assignor', 'string']] as const satisfies Schema;
const LIST_GROUPS_OK = [['groups', { array: GROUP_SUMMARY }]] as const satisfies Schema;
const GROUP_MEMBER = [
  ['generation', 'i32'],
  ['memberId', 'string'],
  ['instanceId', 'string'],
  ['clientId', 'string'],
  ['topics', { list: 'string' }],
  ['partitions', { array: TOPIC_PARTITION }],
  ['revoking', { array: TOPIC_PARTITION }],
] as const satisfies Schema;
const GROUP_OFFSET = [
  ['offset', 'i64'],
  ['logEndOffset', 'i64'],
  ['lag', 'i64'],
  ['commitTimestamp', 'i64'],
  ['partition', 'i32'],
  ['topic', 'string'],
  ['metadata', 'string'],
] as const satisfies Schema;
const DESCRIBE_GROUP_OK = [
  ['generation', 'i32'],
  ['groupId', 'string'],
  ['state', 'string'],
  ['assignor', 'string'],
  ['members', { array: GROUP_MEMBER }],
  ['offsets', { array: GROUP_OFFSET }],
] as const satisfies Schema;
const RESET_OFFSETS_OK = [['offsets', { array: OFFSET_COMMIT }]] as const satisfies Schema;
const DATA = [['highWatermark', 'i64'], ['subscriptionId', 'u32'], ['records', 'bytes']] as const satisfies Schema;
const SUBSCRIPTION_CLOSED = [
  ['subscriptionId', 'u32'],
  ['backoffMs', 'u32'],
  ['code', 'error'],
  ['retriable', 'bool'],
  ['message', 'text'],
] as const satisfies Schema;
const ERROR = [
  ['backoffMs', 'u32'],
  ['code', 'error'],
  ['requestOp', 'u8'],
  ['retriable', 'bool'],
  ['message', 'text'],
] as const satisfies Schema;

// ---------------------------------------------------------------- frame types

export type HelloRequest = FrameOf<typeof Op.HELLO, typeof HELLO>;
export type ProduceRequest = FrameOf<typeof Op.PRODUCE, typeof PRODUCE>;
export type FetchRequest = FrameOf<typeof Op.FETCH, typeof FETCH>;
export type ListOffsetsRequest = FrameOf<typeof Op.LIST_OFFSETS, typeof LIST_OFFSETS>;
export type MetadataRequest = FrameOf<typeof Op.METADATA, typeof EMPTY>;
export type InitProducerRequest = FrameOf<typeof Op.INIT_PRODUCER, typeof EMPTY>;
export type SubscribeRequest = FrameOf<typeof Op.SUBSCRIBE, typeof SUBSCRIBE>;
export type CreditRequest = FrameOf<typeof Op.CREDIT, typeof CREDIT>;
export type UnsubscribeRequest = FrameOf<typeof Op.UNSUBSCRIBE, typeof UNSUBSCRIBE>;
export type ListTopicsRequest = FrameOf<typeof Op.LIST_TOPICS, typeof EMPTY>;
export type DescribeTopicRequest = FrameOf<typeof Op.DESCRIBE_TOPIC, typeof TOPIC_ONLY>;
export type CreateTopicRequest = FrameOf<typeof Op.CREATE_TOPIC, typeof CREATE_TOPIC>;
export type DeleteTopicRequest = FrameOf<typeof Op.DELETE_TOPIC, typeof TOPIC_ONLY>;
export type CreatePartitionsRequest = FrameOf<typeof Op.CREATE_PARTITIONS, typeof CREATE_PARTITIONS>;
export type CreateTopicWithConfigsRequest = FrameOf<typeof Op.CREATE_TOPIC_WITH_CONFIGS, typeof CREATE_TOPIC_WITH_CONFIGS>;
export type DescribeConfigsRequest = FrameOf<typeof Op.DESCRIBE_CONFIGS, typeof TOPIC_ONLY>;
export type JoinGroupRequest = FrameOf<typeof Op.JOIN_GROUP, typeof JOIN_GROUP>;
export type HeartbeatRequest = FrameOf<typeof Op.HEARTBEAT, typeof HEARTBEAT>;
export type LeaveGroupRequest = FrameOf<typeof Op.LEAVE_GROUP, typeof LEAVE_GROUP>;
export type CommitOffsetsRequest = FrameOf<typeof Op.COMMIT_OFFSETS, typeof COMMIT_OFFSETS>;
export type FetchCommittedRequest = FrameOf<typeof Op.FETCH_COMMITTED, typeof FETCH_COMMITTED>;
export type ListGroupsRequest = FrameOf<typeof Op.LIST_GROUPS, typeof EMPTY>;
export type DescribeGroupRequest = FrameOf<typeof Op.DESCRIBE_GROUP, typeof GROUP_ONLY>;
export type ResetOffsetsRequest = FrameOf<typeof Op.RESET_OFFSETS, typeof RESET_OFFSETS>;

/** Every frame a client may send, discriminated by `op`. */
export type ClientFrame =
  | HelloRequest
  | ProduceRequest
  | FetchRequest
  | ListOffsetsRequest
  | MetadataRequest
  | InitProducerRequest
  | SubscribeRequest
  | CreditRequest
  | UnsubscribeRequest
  | ListTopicsRequest
  | DescribeTopicRequest
  | CreateTopicRequest
  | DeleteTopicRequest
  | CreatePartitionsRequest
  | CreateTopicWithConfigsRequest
  | DescribeConfigsRequest
  | JoinGroupRequest
  | HeartbeatRequest
  | LeaveGroupRequest
  | CommitOffsetsRequest
  | FetchCommittedRequest
  | ListGroupsRequest
  | DescribeGroupRequest
  | ResetOffsetsRequest;

export type HelloOk = FrameOf<typeof Op.HELLO_OK, typeof HELLO_OK>;
export type ProduceOk = FrameOf<typeof Op.PRODUCE_OK, typeof PRODUCE_OK>;
export type FetchOk = FrameOf<typeof Op.FETCH_OK, typeof FETCH_OK>;
export type ListOffsetsOk = FrameOf<typeof Op.LIST_OFFSETS_OK, typeof LIST_OFFSETS_OK>;
export type MetadataOk = FrameOf<typeof Op.METADATA_OK, typeof METADATA_OK>;
export type InitProducerOk = FrameOf<typeof Op.INIT_PRODUCER_OK, typeof INIT_PRODUCER_OK>;
export type SubscribeOk = FrameOf<typeof Op.SUBSCRIBE_OK, typeof SUBSCRIBE_OK>;
export type UnsubscribeOk = FrameOf<typeof Op.UNSUBSCRIBE_OK, typeof UNSUBSCRIBE_OK>;
export type ListTopicsOk = FrameOf<typeof Op.LIST_TOPICS_OK, typeof LIST_TOPICS_OK>;
export type DescribeTopicOk = FrameOf<typeof Op.DESCRIBE_TOPIC_OK, typeof TOPIC_DESCRIPTION>;
export type CreateTopicOk = FrameOf<typeof Op.CREATE_TOPIC_OK, typeof TOPIC_DESCRIPTION>;
export type DeleteTopicOk = FrameOf<typeof Op.DELETE_TOPIC_OK, typeof EMPTY>;
export type CreatePartitionsOk = FrameOf<typeof Op.CREATE_PARTITIONS_OK, typeof TOPIC_DESCRIPTION>;
export type CreateTopicWithConfigsOk = FrameOf<typeof Op.CREATE_TOPIC_WITH_CONFIGS_OK, typeof TOPIC_DESCRIPTION>;
export type DescribeConfigsOk = FrameOf<typeof Op.DESCRIBE_CONFIGS_OK, typeof DESCRIBE_CONFIGS_OK>;
export type JoinGroupOk = FrameOf<typeof Op.JOIN_GROUP_OK, typeof ASSIGNMENT>;
export type HeartbeatOk = FrameOf<typeof Op.HEARTBEAT_OK, typeof ASSIGNMENT>;
export type LeaveGroupOk = FrameOf<typeof Op.LEAVE_GROUP_OK, typeof EMPTY>;
export type CommitOffsetsOk = FrameOf<typeof Op.COMMIT_OFFSETS_OK, typeof EMPTY>;
export type FetchCommittedOk = FrameOf<typeof Op.FETCH_COMMITTED_OK, typeof FETCH_COMMITTED_OK>;
export type ListGroupsOk = FrameOf<typeof Op.LIST_GROUPS_OK, typeof LIST_GROUPS_OK>;
export type DescribeGroupOk = FrameOf<typeof Op.DESCRIBE_GROUP_OK, typeof DESCRIBE_GROUP_OK>;
export type ResetOffsetsOk = FrameOf<typeof Op.RESET_OFFSETS_OK, typeof RESET_OFFSETS_OK>;
export type AssignmentPush = FrameOf<typeof Op.ASSIGNMENT, typeof ASSIGNMENT, 0>;
export type ErrorFrame = FrameOf<typeof Op.ERROR, typeof ERROR>;
export type DataPush = FrameOf<typeof Op.DATA, typeof DATA, 0>;
export type SubscriptionClosedPush = FrameOf<typeof Op.SUBSCRIPTION_CLOSED, typeof SUBSCRIPTION_CLOSED, 0>;

/** One partition in DESCRIBE_TOPIC_OK / CREATE_TOPIC_OK (its index is its position). */
export type PartitionInfo = DescribeTopicOk['partitions'][number];
/** One topic in METADATA_OK. */
export type MetadataTopic = MetadataOk['topics'][number];

export type ResponseFrame =
  | HelloOk
  | ProduceOk
  | FetchOk
  | ListOffsetsOk
  | MetadataOk
  | InitProducerOk
  | SubscribeOk
  | UnsubscribeOk
  | ListTopicsOk
  | DescribeTopicOk
  | CreateTopicOk
  | DeleteTopicOk
  | CreatePartitionsOk
  | CreateTopicWithConfigsOk
  | DescribeConfigsOk
  | JoinGroupOk
  | HeartbeatOk
  | LeaveGroupOk
  | CommitOffsetsOk
  | FetchCommittedOk
  | ListGroupsOk
  | DescribeGroupOk
  | ResetOffsetsOk
  | ErrorFrame;
export type PushFrame = DataPush | SubscriptionClosedPush | AssignmentPush;
/** Every frame a server may send, discriminated by `op`. */
export type ServerFrame = ResponseFrame | PushFrame;

/** A frame without its op (and, for pushes, without their correlationId 0): what the encodeX functions take. */
export type Body<F> = F extends { correlationId: 0 } ? Omit<F, 'op' | 'correlationId'> : Omit<F, 'op'>;

const CLIENT_SCHEMAS: ReadonlyMap<number, Schema> = new Map<number, Schema>([
  [Op.HELLO, HELLO],
  [Op.PRODUCE, PRODUCE],
  [Op.FETCH, FETCH],
  [Op.LIST_OFFSETS, LIST_OFFSETS],
  [Op.METADATA, EMPTY],
  [Op.INIT_PRODUCER, EMPTY],
  [Op.SUBSCRIBE, SUBSCRIBE],
  [Op.CREDIT, CREDIT],
  [Op.UNSUBSCRIBE, UNSUBSCRIBE],
  [Op.LIST_TOPICS, EMPTY],
  [Op.DESCRIBE_TOPIC, TOPIC_ONLY],
  [Op.CREATE_TOPIC, CREATE_TOPIC],
  [Op.DELETE_TOPIC, TOPIC_ONLY],
  [Op.CREATE_PARTITIONS, CREATE_PARTITIONS],
  [Op.CREATE_TOPIC_WITH_CONFIGS, CREATE_TOPIC_WITH_CONFIGS],
  [Op.DESCRIBE_CONFIGS, TOPIC_ONLY],
  [Op.JOIN_GROUP, JOIN_GROUP],
  [Op.HEARTBEAT, HEARTBEAT],
  [Op.LEAVE_GROUP, LEAVE_GROUP],
  [Op.COMMIT_OFFSETS, COMMIT_OFFSETS],
  [Op.FETCH_COMMITTED, FETCH_COMMITTED],
  [Op.LIST_GROUPS, EMPTY],
  [Op.DESCRIBE_GROUP, GROUP_ONLY],
  [Op.RESET_OFFSETS, RESET_OFFSETS],
]);

/** Client ops that came with protocol version 2 (limits.ts GROUPS_PROTOCOL_VERSION); every other op is in version 1. */
const VERSION_2_OPS: ReadonlySet<number> = new Set<number>([
  Op.CREATE_PARTITIONS,
  Op.CREATE_TOPIC_WITH_CONFIGS,
  Op.DESCRIBE_CONFIGS,
  Op.JOIN_GROUP,
  Op.HEARTBEAT,
  Op.LEAVE_GROUP,
  Op.COMMIT_OFFSETS,
  Op.FETCH_COMMITTED,
  Op.LIST_GROUPS,
  Op.DESCRIBE_GROUP,
  Op.RESET_OFFSETS,
]);

/** The protocol version a client op first appeared in: a connection that negotiated an older one is refused it (UNSUPPORTED_VERSION). */
export function protocolVersionOf(op: number): number {
  return VERSION_2_OPS.has(op) ? GROUPS_PROTOCOL_VERSION : PROTOCOL_VERSION_MIN;
}

const RESPONSE_SCHEMAS: ReadonlyMap<number, Schema> = new Map<number, Schema>([
  [Op.HELLO_OK, HELLO_OK],
  [Op.PRODUCE_OK, PRODUCE_OK],
  [Op.FETCH_OK, FETCH_OK],
  [Op.LIST_OFFSETS_OK, LIST_OFFSETS_OK],
  [Op.METADATA_OK, METADATA_OK],
  [Op.INIT_PRODUCER_OK, INIT_PRODUCER_OK],
  [Op.SUBSCRIBE_OK, SUBSCRIBE_OK],
  [Op.UNSUBSCRIBE_OK, UNSUBSCRIBE_OK],
  [Op.LIST_TOPICS_OK, LIST_TOPICS_OK],
  [Op.DESCRIBE_TOPIC_OK, TOPIC_DESCRIPTION],
  [Op.CREATE_TOPIC_OK, TOPIC_DESCRIPTION],
  [Op.DELETE_TOPIC_OK, EMPTY],
  [Op.CREATE_PARTITIONS_OK, TOPIC_DESCRIPTION],
  [Op.CREATE_TOPIC_WITH_CONFIGS_OK, TOPIC_DESCRIPTION],
  [Op.DESCRIBE_CONFIGS_OK, DESCRIBE_CONFIGS_OK],
  [Op.JOIN_GROUP_OK, ASSIGNMENT],
  [Op.HEARTBEAT_OK, ASSIGNMENT],
  [Op.LEAVE_GROUP_OK, EMPTY],
  [Op.COMMIT_OFFSETS_OK, EMPTY],
  [Op.FETCH_COMMITTED_OK, FETCH_COMMITTED_OK],
  [Op.LIST_GROUPS_OK, LIST_GROUPS_OK],
  [Op.DESCRIBE_GROUP_OK, DESCRIBE_GROUP_OK],
  [Op.RESET_OFFSETS_OK, RESET_OFFSETS_OK],
  [Op.ERROR, ERROR],
]);

const PUSH_SCHEMAS: ReadonlyMap<number, Schema> = new Map<number, Schema>([
  [Op.DATA, DATA],
  [Op.SUBSCRIPTION_CLOSED, SUBSCRIPTION_CLOSED],
  [Op.ASSIGNMENT, ASSIGNMENT],
]);

/** The body schema of an op (requests, responses, pushes), or undefined: for tests and docs. */
export function bodySchema(op: number): Schema | undefined {
  return CLIENT_SCHEMAS.get(op) ?? RESPONSE_SCHEMAS.get(op) ?? PUSH_SCHEMAS.get(op);
}

/** The ops a client may send, and those a server may send, in code order. */
export const CLIENT_OPS: readonly number[] = [...CLIENT_SCHEMAS.keys()].sort((a, b) => a - b);
export const SERVER_OPS: readonly number[] = [...RESPONSE_SCHEMAS.keys(), ...PUSH_SCHEMAS.keys()].sort((a, b) => a - b);

/** The op of a request's success response, or undefined for CREDIT (which has none). */
export function responseOpOf(requestOp: number): number | undefined {
  const op = requestOp | RESPONSE_BIT;
  return CLIENT_SCHEMAS.has(requestOp) && RESPONSE_SCHEMAS.has(op) ? op : undefined;
}

/** Whether the server answers this request at all: not CREDIT, not a produce with acks=0. */
export function expectsResponse(frame: ClientFrame): boolean {
  if (frame.op === Op.CREDIT) return false;
  if (frame.op === Op.PRODUCE && frame.acks === 0) return false;
  return true;
}

/** The version both sides speak: the highest this code supports within the client's range, or null. */
export function chooseProtocolVersion(versionMin: number, versionMax: number): number | null {
  const chosen = Math.min(versionMax, PROTOCOL_VERSION);
  return chosen >= Math.max(versionMin, PROTOCOL_VERSION_MIN) ? chosen : null;
}

for (const [op] of RESPONSE_SCHEMAS) {
  assert(op === Op.ERROR || CLIENT_SCHEMAS.has(op & ~RESPONSE_BIT), () => `response ${opName(op)} answers a request`);
}
for (const [op] of CLIENT_SCHEMAS) assert(op < 0x60, () => `request ${opName(op)} is in the request range`);
for (const [op] of PUSH_SCHEMAS) assert(op >= 0xe0 && op < 0xff, () => `push ${opName(op)} is in the push range`);

// ---------------------------------------------------------------- errors

/** A frame that cannot be decoded. code is INVALID_REQUEST; op and correlationId are 0 when the header was unreadable. */
export class FrameError extends SluiceError {
  readonly op: number;
  readonly correlationId: number;
  /** The frame's structure is broken: answer, then close the connection (1002). */
  readonly fatal: boolean;

  constructor(message: string, options: { op: number; correlationId: number; fatal: boolean }) {
    super('INVALID_REQUEST', message);
    this.name = 'FrameError';
    this.op = options.op;
    this.correlationId = options.correlationId;
    this.fatal = options.fatal;
  }
}

/**
 * The ERROR frame answering a request that failed with `err`: a SluiceError keeps its code,
 * retriable flag and back-off hint; anything else is INTERNAL (its message is kept; it is
 * a bug to report).
 */
export function errorFrameOf(err: unknown, request: { op: number; correlationId: number }): ErrorFrame {
  const e = err instanceof SluiceError ? err : new SluiceError('INTERNAL', err instanceof Error ? err.message : String(err));
  return {
    op: Op.ERROR,
    correlationId: request.correlationId,
    backoffMs: clampU32(e.backoffMs ?? 0),
    code: e.code,
    requestOp: request.op & 0xff,
    retriable: e.retriable,
    message: e.message,
  };
}

/** The SluiceError an ERROR frame or SUBSCRIPTION_CLOSED push stands for, on the client. */
export function toSluiceError(frame: ErrorFrame | SubscriptionClosedPush): SluiceError {
  return new SluiceError(frame.code, frame.message, frame.backoffMs > 0 ? { backoffMs: frame.backoffMs } : {});
}

function clampU32(n: number): number {
  return Number.isFinite(n) ? Math.min(Math.max(Math.round(n), 0), 0xffff_ffff) : 0;
}

function invalidArgument(message: string): SluiceError {
  return new SluiceError('INVALID_ARGUMENT', message);
}

// ---------------------------------------------------------------- UTF-8

const utf8Encoder = new TextEncoder();
/** fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a leading U+FEFF is kept, so strings round-trip. */
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes TextEncoder writes for `s` (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** `s` cut to at most `bytesMax` UTF-8 bytes, at a character boundary. */
export function truncateUtf8(s: string, bytesMax: number): string {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1));
    const size = c < 0x80 ? 1 : c < 0x800 ? 2 : pair ? 4 : 3;
    if (bytes + size > bytesMax) return s.slice(0, i);
    bytes += size;
    if (pair) i++;
  }
  return s;
}

function wireText(value: string): string {
  return utf8Length(value) > STRING_BYTES_MAX ? truncateUtf8(value, STRING_BYTES_MAX) : value;
}

// ---------------------------------------------------------------- encoding

const INT_RANGES: Record<string, readonly [number, number, number]> = {
  // type: [bytes, min, max]
  u8: [1, 0, 0xff],
  i8: [1, -0x80, 0x7f],
  u16: [2, 0, 0xffff],
  i16: [2, -0x8000, 0x7fff],
  u32: [4, 0, 0xffff_ffff],
  i32: [4, -0x8000_0000, 0x7fff_ffff],
  i64: [8, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

const TWO_POW_32 = 2 ** 32;
/** int64 values are safe integers: the high 32 bits stay within +-2^21. */
const I64_HIGH_MIN = -0x20_0000;
const I64_HIGH_MAX = 0x1f_ffff;

/** Validates `value` against `type` and returns its encoded size. */
function fieldBytes(type: FieldType, value: unknown, name: string): number {
  if (typeof type === 'object') {
    if (!Array.isArray(value)) throw invalidArgument(`${name} must be an array`);
    let bytes = 4;
    if ('list' in type) {
      for (let i = 0; i < value.length; i++) bytes += fieldBytes(type.list, value[i], `${name}[${i}]`);
    } else {
      for (let i = 0; i < value.length; i++) bytes += structBytes(type.array, value[i], `${name}[${i}]`);
    }
    return bytes;
  }
  switch (type) {
    case 'bool':
      if (typeof value !== 'boolean') throw invalidArgument(`${name} must be a boolean, got ${String(value)}`);
      return 1;
    case 'error':
      if (!isErrorCode(value)) throw invalidArgument(`${name} must be an error code of the catalogue, got ${String(value)}`);
      return 2;
    case 'string': {
      if (typeof value !== 'string') throw invalidArgument(`${name} must be a string`);
      const bytes = utf8Length(value);
      if (bytes > STRING_BYTES_MAX) throw invalidArgument(`${name} is ${bytes} bytes of UTF-8; the limit is ${STRING_BYTES_MAX}`);
      return 2 + bytes;
    }
    case 'text':
      if (typeof value !== 'string') throw invalidArgument(`${name} must be a string`);
      return 2 + utf8Length(wireText(value));
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw invalidArgument(`${name} must be a Uint8Array`);
      return 4 + value.length;
    default: {
      const [bytes, min, max] = INT_RANGES[type];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        throw invalidArgument(`${name} must be an integer from ${min} to ${max} (${type}), got ${String(value)}`);
      }
      return bytes;
    }
  }
}

function structBytes(schema: Schema, value: unknown, name: string): number {
  if (value === null || typeof value !== 'object') throw invalidArgument(`${name} must be an object`);
  const record = value as Record<string, unknown>;
  let bytes = 0;
  for (const [field, type] of schema) bytes += fieldBytes(type, record[field], name === '' ? field : `${name}.${field}`);
  return bytes;
}

/** Writes a validated value; returns the position after it. */
function writeField(view: DataView, bytes: Uint8Array, pos: number, type: FieldType, value: unknown): number {
  if (typeof type === 'object') {
    const items = value as unknown[];
    view.setUint32(pos, items.length, false);
    pos += 4;
    if ('list' in type) for (const item of items) pos = writeField(view, bytes, pos, type.list, item);
    else for (const item of items) pos = writeStruct(view, bytes, pos, type.array, item as Record<string, unknown>);
    return pos;
  }
  switch (type) {
    case 'u8':
      view.setUint8(pos, value as number);
      return pos + 1;
    case 'i8':
      view.setInt8(pos, value as number);
      return pos + 1;
    case 'bool':
      view.setUint8(pos, value ? 1 : 0);
      return pos + 1;
    case 'u16':
      view.setUint16(pos, value as number, false);
      return pos + 2;
    case 'i16':
      view.setInt16(pos, value as number, false);
      return pos + 2;
    case 'error':
      view.setUint16(pos, errorNumber(value as ErrorCode), false);
      return pos + 2;
    case 'u32':
      view.setUint32(pos, value as number, false);
      return pos + 4;
    case 'i32':
      view.setInt32(pos, value as number, false);
      return pos + 4;
    case 'i64':
      writeI64(view, pos, value as number);
      return pos + 8;
    case 'string':
    case 'text': {
      const text = type === 'text' ? wireText(value as string) : (value as string);
      const length = utf8Length(text);
      view.setUint16(pos, length, false);
      const { written } = utf8Encoder.encodeInto(text, bytes.subarray(pos + 2, pos + 2 + length));
      assert(written === length, 'utf8Length agrees with TextEncoder');
      return pos + 2 + length;
    }
    case 'bytes': {
      const data = value as Uint8Array;
      view.setUint32(pos, data.length, false);
      // Already in place (a producer encodes its batch where the frame will hold it): no copy.
      if (data.buffer !== bytes.buffer || data.byteOffset !== bytes.byteOffset + pos + 4) bytes.set(data, pos + 4);
      return pos + 4 + data.length;
    }
  }
}

function writeStruct(view: DataView, bytes: Uint8Array, pos: number, schema: Schema, record: Record<string, unknown>): number {
  for (const [field, type] of schema) pos = writeField(view, bytes, pos, type, record[field]);
  return pos;
}

/** Any frame or frame body: encoders read its fields by name from the schema. */
type FrameLike = object & { readonly correlationId?: unknown };

type Direction = 'request' | 'response' | 'push';

function directionOf(op: number): Direction {
  if (PUSH_SCHEMAS.has(op)) return 'push';
  return RESPONSE_SCHEMAS.has(op) ? 'response' : 'request';
}

function checkCorrelationId(op: number, correlationId: unknown): number {
  const direction = directionOf(op);
  if (direction === 'push') {
    if (correlationId !== 0 && correlationId !== undefined) throw invalidArgument(`${opName(op)} is a push: its correlationId must be 0, got ${String(correlationId)}`);
    return 0;
  }
  const min = op === Op.ERROR ? 0 : 1;
  if (typeof correlationId !== 'number' || !Number.isInteger(correlationId) || correlationId < min || correlationId > CORRELATION_ID_MAX) {
    throw invalidArgument(`correlationId must be an integer from ${min} to ${CORRELATION_ID_MAX}, got ${String(correlationId)}`);
  }
  return correlationId;
}

function schemaFor(op: unknown, schemas: readonly ReadonlyMap<number, Schema>[], side: string): Schema {
  for (const map of schemas) {
    const schema = typeof op === 'number' ? map.get(op) : undefined;
    if (schema) return schema;
  }
  throw invalidArgument(`op ${typeof op === 'number' ? opName(op) : String(op)} is not a ${side} frame`);
}

const CLIENT_SIDE = [CLIENT_SCHEMAS];
const SERVER_SIDE = [RESPONSE_SCHEMAS, PUSH_SCHEMAS];

function frameBytes(op: number, schema: Schema, frame: FrameLike): number {
  checkCorrelationId(op, frame.correlationId);
  return FRAME_HEADER_BYTES + structBytes(schema, frame as Record<string, unknown>, '');
}

/** The 8-byte frame header at `at`: op, no flags, reserved 0, the correlation id. */
function writeFrameHeader(view: DataView, at: number, op: number, correlationId: number): void {
  view.setUint8(at + OP_OFFSET, op);
  view.setUint8(at + FLAGS_OFFSET, 0);
  view.setUint16(at + RESERVED_OFFSET, 0, false);
  view.setUint32(at + CORRELATION_ID_OFFSET, correlationId, false);
}

/** The big-endian i64 at `pos`, or null when it is not a safe integer. */
function readI64(view: DataView, pos: number): number | null {
  const high = view.getInt32(pos, false);
  const n = high * TWO_POW_32 + view.getUint32(pos + 4, false);
  return high < I64_HIGH_MIN || high > I64_HIGH_MAX || !Number.isSafeInteger(n) ? null : n;
}

/** A safe integer as a big-endian i64 at `pos`. */
function writeI64(view: DataView, pos: number, n: number): void {
  const high = Math.floor(n / TWO_POW_32);
  view.setInt32(pos, high, false);
  view.setUint32(pos + 4, n - high * TWO_POW_32, false);
}

function writeFrame(op: number, schema: Schema, frame: FrameLike, target: Uint8Array, offset: number, size: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > target.length) {
    throw invalidArgument(`a ${size}-byte ${opName(op)} frame does not fit at offset ${offset} of a ${target.length}-byte buffer`);
  }
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  writeFrameHeader(view, offset, op, (frame.correlationId as number | undefined) ?? 0);
  const end = writeStruct(view, target, offset + FRAME_HEADER_BYTES, schema, frame as Record<string, unknown>);
  assert(end === offset + size, () => `${opName(op)}: wrote ${end - offset} bytes, sized ${size}`);
  return size;
}

function encodeWith(op: number, schema: Schema, frame: FrameLike): Uint8Array {
  const size = frameBytes(op, schema, frame);
  const bytes = new Uint8Array(size);
  writeFrame(op, schema, frame, bytes, 0, size);
  return bytes;
}

/**
 * Bytes of a PRODUCE frame before its batch. A producer encodes the batch this far into a
 * buffer, then writes the frame around it with writeClientFrame, which sees the batch in
 * place and does not copy it.
 */
export function produceHeadBytes(topic: string): number {
  return PRODUCE_TOPIC_OFFSET + 2 + utf8Length(topic) + 4;
}

/**
 * Writes the head of a PRODUCE frame into `frame`, whose last `batchLength` bytes already
 * hold the batch (as produceHeadBytes placed it): the bytes writeClientFrame writes, without
 * its walk of the schema (about 2.5 µs a batch here, on a producer's path from its linger
 * timer to the socket). `topicUtf8` is the topic as UTF-8, which the producer keeps.
 */
export function writeProduceHead(frame: Uint8Array, correlationId: number, producerId: number, partition: number, acks: number, topicUtf8: Uint8Array, batchLength: number): void {
  const topicAt = PRODUCE_TOPIC_OFFSET;
  const batchAt = topicAt + 2 + topicUtf8.length;
  assert(frame.length === batchAt + 4 + batchLength, () => `a PRODUCE frame of ${frame.length} bytes does not hold a ${topicUtf8.length}-byte topic and a ${batchLength}-byte batch`);
  assert(topicUtf8.length <= STRING_BYTES_MAX && Number.isSafeInteger(producerId) && producerId >= -1, 'PRODUCE head fields in range');
  const view = new DataView(frame.buffer, frame.byteOffset, batchAt + 4);
  writeFrameHeader(view, 0, Op.PRODUCE, correlationId);
  writeI64(view, PRODUCE_PRODUCER_ID_OFFSET, producerId);
  view.setInt32(PRODUCE_PARTITION_OFFSET, partition, false);
  view.setInt8(PRODUCE_ACKS_OFFSET, acks);
  view.setUint16(topicAt, topicUtf8.length, false);
  frame.set(topicUtf8, topicAt + 2);
  view.setUint32(batchAt, batchLength, false);
}

/** Sets the correlationId of an encoded frame (a request encoded once, sent again on a retry). */
export function setCorrelationId(frame: Uint8Array, correlationId: number): void {
  new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES).setUint32(CORRELATION_ID_OFFSET, correlationId, false);
}

/** The exact encoded size of a client frame (validating it). */
export function clientFrameBytes(frame: ClientFrame): number {
  return frameBytes(frame.op, schemaFor(frame.op, CLIENT_SIDE, 'client'), frame);
}

/** Writes a client frame into `target` at `offset` (a pooled buffer); returns the bytes written. */
export function writeClientFrame(frame: ClientFrame, target: Uint8Array, offset = 0): number {
  const schema = schemaFor(frame.op, CLIENT_SIDE, 'client');
  return writeFrame(frame.op, schema, frame, target, offset, frameBytes(frame.op, schema, frame));
}

export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  return encodeWith(frame.op, schemaFor(frame.op, CLIENT_SIDE, 'client'), frame);
}

/** The exact encoded size of a server frame (validating it). */
export function serverFrameBytes(frame: ServerFrame): number {
  return frameBytes(frame.op, schemaFor(frame.op, SERVER_SIDE, 'server'), frame);
}

/** Writes a server frame into `target` at `offset`; returns the bytes written. */
export function writeServerFrame(frame: ServerFrame, target: Uint8Array, offset = 0): number {
  const schema = schemaFor(frame.op, SERVER_SIDE, 'server');
  return writeFrame(frame.op, schema, frame, target, offset, frameBytes(frame.op, schema, frame));
}

export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  return encodeWith(frame.op, schemaFor(frame.op, SERVER_SIDE, 'server'), frame);
}

// One encoder per frame type: size first, write once.
export const encodeHello = (f: Body<HelloRequest>): Uint8Array => encodeWith(Op.HELLO, HELLO, f);
export const encodeProduce = (f: Body<ProduceRequest>): Uint8Array => encodeWith(Op.PRODUCE, PRODUCE, f);
export const encodeFetch = (f: Body<FetchRequest>): Uint8Array => encodeWith(Op.FETCH, FETCH, f);
export const encodeListOffsets = (f: Body<ListOffsetsRequest>): Uint8Array => encodeWith(Op.LIST_OFFSETS, LIST_OFFSETS, f);
export const encodeMetadata = (f: Body<MetadataRequest>): Uint8Array => encodeWith(Op.METADATA, EMPTY, f);
export const encodeInitProducer = (f: Body<InitProducerRequest>): Uint8Array => encodeWith(Op.INIT_PRODUCER, EMPTY, f);
export const encodeSubscribe = (f: Body<SubscribeRequest>): Uint8Array => encodeWith(Op.SUBSCRIBE, SUBSCRIBE, f);
export const encodeCredit = (f: Body<CreditRequest>): Uint8Array => encodeWith(Op.CREDIT, CREDIT, f);
export const encodeUnsubscribe = (f: Body<UnsubscribeRequest>): Uint8Array => encodeWith(Op.UNSUBSCRIBE, UNSUBSCRIBE, f);
export const encodeListTopics = (f: Body<ListTopicsRequest>): Uint8Array => encodeWith(Op.LIST_TOPICS, EMPTY, f);
export const encodeDescribeTopic = (f: Body<DescribeTopicRequest>): Uint8Array => encodeWith(Op.DESCRIBE_TOPIC, TOPIC_ONLY, f);
export const encodeCreateTopic = (f: Body<CreateTopicRequest>): Uint8Array => encodeWith(Op.CREATE_TOPIC, CREATE_TOPIC, f);
export const encodeDeleteTopic = (f: Body<DeleteTopicRequest>): Uint8Array => encodeWith(Op.DELETE_TOPIC, TOPIC_ONLY, f);

export const encodeHelloOk = (f: Body<HelloOk>): Uint8Array => encodeWith(Op.HELLO_OK, HELLO_OK, f);
export const encodeProduceOk = (f: Body<ProduceOk>): Uint8Array => encodeWith(Op.PRODUCE_OK, PRODUCE_OK, f);
export const encodeFetchOk = (f: Body<FetchOk>): Uint8Array => encodeWith(Op.FETCH_OK, FETCH_OK, f);
export const encodeListOffsetsOk = (f: Body<ListOffsetsOk>): Uint8Array => encodeWith(Op.LIST_OFFSETS_OK, LIST_OFFSETS_OK, f);
export const encodeMetadataOk = (f: Body<MetadataOk>): Uint8Array => encodeWith(Op.METADATA_OK, METADATA_OK, f);
export const encodeInitProducerOk = (f: Body<InitProducerOk>): Uint8Array => encodeWith(Op.INIT_PRODUCER_OK, INIT_PRODUCER_OK, f);
export const encodeSubscribeOk = (f: Body<SubscribeOk>): Uint8Array => encodeWith(Op.SUBSCRIBE_OK, SUBSCRIBE_OK, f);
export const encodeUnsubscribeOk = (f: Body<UnsubscribeOk>): Uint8Array => encodeWith(Op.UNSUBSCRIBE_OK, UNSUBSCRIBE_OK, f);
export const encodeListTopicsOk = (f: Body<ListTopicsOk>): Uint8Array => encodeWith(Op.LIST_TOPICS_OK, LIST_TOPICS_OK, f);
export const encodeDescribeTopicOk = (f: Body<DescribeTopicOk>): Uint8Array => encodeWith(Op.DESCRIBE_TOPIC_OK, TOPIC_DESCRIPTION, f);
export const encodeCreateTopicOk = (f: Body<CreateTopicOk>): Uint8Array => encodeWith(Op.CREATE_TOPIC_OK, TOPIC_DESCRIPTION, f);
export const encodeDeleteTopicOk = (f: Body<DeleteTopicOk>): Uint8Array => encodeWith(Op.DELETE_TOPIC_OK, EMPTY, f);
export const encodeError = (f: Body<ErrorFrame>): Uint8Array => encodeWith(Op.ERROR, ERROR, f);
export const encodeData = (f: Body<DataPush>): Uint8Array => encodeWith(Op.DATA, DATA, f);
export const encodeSubscriptionClosed = (f: Body<SubscriptionClosedPush>): Uint8Array => encodeWith(Op.SUBSCRIPTION_CLOSED, SUBSCRIPTION_CLOSED, f);

/**
 * Everything of a FETCH_OK or DATA frame before its record bytes, ending with the u32
 * records length. Sent with uWS sendFirstFragment and the records with sendLastFragment,
 * the records are never copied into a frame buffer: head ++ records is the whole frame.
 */
function encodeHead(op: number, schema: Schema, frame: FrameLike, recordsBytes: number): Uint8Array {
  const last = schema[schema.length - 1];
  assert(last[1] === 'bytes', () => `${opName(op)} ends with its record bytes`);
  if (!Number.isInteger(recordsBytes) || recordsBytes < 0 || recordsBytes > 0xffff_ffff) {
    throw invalidArgument(`recordsBytes must be a u32, got ${recordsBytes}`);
  }
  const head = schema.slice(0, -1);
  const size = frameBytes(op, head, frame) + 4;
  const bytes = new Uint8Array(size);
  writeFrame(op, head, frame, bytes, 0, size - 4);
  new DataView(bytes.buffer).setUint32(size - 4, recordsBytes, false);
  return bytes;
}

export const encodeFetchOkHead = (f: Omit<Body<FetchOk>, 'records'>, recordsBytes: number): Uint8Array => encodeHead(Op.FETCH_OK, FETCH_OK, f, recordsBytes);
export const encodeDataHead = (f: Omit<Body<DataPush>, 'records'>, recordsBytes: number): Uint8Array => encodeHead(Op.DATA, DATA, f, recordsBytes);
/** Bytes of a FETCH_OK or DATA frame before its records (the head above). */
export const FETCH_OK_HEAD_BYTES = FRAME_HEADER_BYTES + 8 + 8 + 4;
/** DATA's head fields (highWatermark i64, subscriptionId u32, the records' length u32), for writeDataHead. */
const DATA_HIGH_WATERMARK_OFFSET = FRAME_HEADER_BYTES;
const DATA_SUBSCRIPTION_ID_OFFSET = DATA_HIGH_WATERMARK_OFFSET + 8;
const DATA_RECORDS_LENGTH_OFFSET = DATA_SUBSCRIPTION_ID_OFFSET + 4;
export const DATA_HEAD_BYTES = DATA_RECORDS_LENGTH_OFFSET + 4;

/**
 * Writes the head of a DATA frame into the first DATA_HEAD_BYTES of `frame`, whose rest
 * already holds the records: the bytes encodeDataHead gives, without a schema walk or a new
 * buffer (the gateway's push, where records land behind room kept for the head).
 */
export function writeDataHead(frame: Uint8Array, highWatermark: number, subscriptionId: number): void {
  assert(frame.length >= DATA_HEAD_BYTES && Number.isSafeInteger(highWatermark) && highWatermark >= 0, 'a DATA frame holds its head and a high watermark >= 0');
  const view = new DataView(frame.buffer, frame.byteOffset, DATA_HEAD_BYTES);
  writeFrameHeader(view, 0, Op.DATA, 0);
  writeI64(view, DATA_HIGH_WATERMARK_OFFSET, highWatermark);
  view.setUint32(DATA_SUBSCRIPTION_ID_OFFSET, subscriptionId, false);
  view.setUint32(DATA_RECORDS_LENGTH_OFFSET, frame.length - DATA_HEAD_BYTES, false);
}

// ---------------------------------------------------------------- decoding

/** The header of a frame. */
export interface FrameHeader {
  op: number;
  flags: number;
  reserved: number;
  correlationId: number;
}

/** Reads the 8-byte header; throws a fatal FrameError if there are fewer bytes. Does not judge its values. */
export function readFrameHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.length < FRAME_HEADER_BYTES) {
    throw new FrameError(`a frame has an ${FRAME_HEADER_BYTES}-byte header; got ${bytes.length} bytes`, { op: 0, correlationId: 0, fatal: true });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    op: view.getUint8(OP_OFFSET),
    flags: view.getUint8(FLAGS_OFFSET),
    reserved: view.getUint16(RESERVED_OFFSET, false),
    correlationId: view.getUint32(CORRELATION_ID_OFFSET, false),
  };
}

/**
 * A cursor over one frame. Structural faults throw at once (fatal); a bad value is noted
 * (the first one wins), replaced by a placeholder, and thrown after the whole frame was
 * walked, so that a structural fault later in the frame still makes the error fatal.
 */
class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #header: FrameHeader;
  pos = FRAME_HEADER_BYTES;
  badValue: string | null = null;

  constructor(bytes: Uint8Array, view: DataView, header: FrameHeader) {
    this.#bytes = bytes;
    this.#view = view;
    this.#header = header;
  }

  fail(message: string, fatal: boolean): FrameError {
    return new FrameError(`${opName(this.#header.op)}: ${message}`, { op: this.#header.op, correlationId: this.#header.correlationId, fatal });
  }

  #need(n: number, name: string): number {
    const pos = this.pos;
    if (n > this.#bytes.length - pos) {
      throw this.fail(`${name} needs ${n} bytes at offset ${pos}, the frame has ${this.#bytes.length - pos} left`, true);
    }
    this.pos = pos + n;
    return pos;
  }

  #bad(message: string): void {
    if (this.badValue === null) this.badValue = message;
  }

  get remaining(): number {
    return this.#bytes.length - this.pos;
  }

  read(type: FieldType, name: string): unknown {
    if (typeof type === 'object') return this.#readItems(type, name);
    const view = this.#view;
    switch (type) {
      case 'u8':
        return view.getUint8(this.#need(1, name));
      case 'i8':
        return view.getInt8(this.#need(1, name));
      case 'bool': {
        const b = view.getUint8(this.#need(1, name));
        if (b > 1) this.#bad(`${name} must be 0 or 1, got ${b}`);
        return b === 1;
      }
      case 'u16':
        return view.getUint16(this.#need(2, name), false);
      case 'i16':
        return view.getInt16(this.#need(2, name), false);
      case 'error':
        return errorCodeOf(view.getUint16(this.#need(2, name), false));
      case 'u32':
        return view.getUint32(this.#need(4, name), false);
      case 'i32':
        return view.getInt32(this.#need(4, name), false);
      case 'i64': {
        const n = readI64(view, this.#need(8, name));
        if (n === null) {
          this.#bad(`${name} is outside the safe integer range +-(2^53 - 1)`);
          return 0;
        }
        return n;
      }
      case 'string':
      case 'text':
        return this.#readString(name);
      case 'bytes': {
        const length = view.getUint32(this.#need(4, name), false);
        const pos = this.#need(length, name);
        return this.#bytes.subarray(pos, pos + length);
      }
    }
  }

  #readString(name: string): string {
    const length = this.#view.getUint16(this.#need(2, name), false);
    const pos = this.#need(length, name);
    if (length > STRING_BYTES_MAX) {
      this.#bad(`${name} is ${length} bytes; the limit is ${STRING_BYTES_MAX}`);
      return '';
    }
    try {
      return utf8Decoder.decode(this.#bytes.subarray(pos, pos + length));
    } catch {
      this.#bad(`${name} is not valid UTF-8`);
      return '';
    }
  }

  #readItems(type: ListType | ArrayType, name: string): unknown[] {
    const count = this.#view.getUint32(this.#need(4, name), false);
    const itemBytesMin = 'list' in type ? fieldBytesMin(type.list) : schemaBytesMin(type.array);
    if (count * itemBytesMin > this.remaining) {
      throw this.fail(`${name} counts ${count} items of at least ${itemBytesMin} bytes, the frame has ${this.remaining} left`, true);
    }
    const items: unknown[] = [];
    for (let i = 0; i < count; i++) {
      items.push('list' in type ? this.read(type.list, `${name}[${i}]`) : this.readStruct(type.array, {}, `${name}[${i}].`));
    }
    return items;
  }

  readStruct(schema: Schema, into: Record<string, unknown>, prefix: string): Record<string, unknown> {
    for (const [field, type] of schema) into[field] = this.read(type, prefix + field);
    return into;
  }
}

function fieldBytesMin(type: FieldType): number {
  if (typeof type === 'object') return 4;
  switch (type) {
    case 'string':
    case 'text':
      return 2;
    case 'bytes':
      return 4;
    case 'error':
      return 2;
    case 'bool':
      return 1;
    default:
      return INT_RANGES[type][0];
  }
}

function schemaBytesMin(schema: Schema): number {
  let bytes = 0;
  for (const [, type] of schema) bytes += fieldBytesMin(type);
  return bytes;
}

for (const schema of [METADATA_TOPIC, PARTITION_INFO]) assert(schemaBytesMin(schema) > 0, 'array items take bytes, so a count is bounded by the frame');

function checkHeader(header: FrameHeader): void {
  if (header.flags !== 0 || header.reserved !== 0) {
    throw new FrameError(`${opName(header.op)}: flags and reserved header bits must be 0 (in every protocol version so far), got flags ${header.flags}, reserved ${header.reserved}`, {
      op: header.op,
      correlationId: header.correlationId,
      fatal: true,
    });
  }
}

function decodeBody(bytes: Uint8Array, header: FrameHeader, schema: Schema): Record<string, unknown> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reader = new Reader(bytes, view, header);
  const frame = reader.readStruct(schema, { op: header.op, correlationId: header.correlationId }, '');
  if (reader.remaining !== 0) throw reader.fail(`${reader.remaining} bytes after the last field`, true);
  if (reader.badValue !== null) throw reader.fail(reader.badValue, false);
  return frame;
}

function unknownOp(header: FrameHeader, side: string): FrameError {
  return new FrameError(`unknown op ${opName(header.op)} for a ${side} frame`, { op: header.op, correlationId: header.correlationId, fatal: false });
}

/**
 * Decodes a frame a client sent (the gateway's side). Record bytes are views into `bytes`.
 * Throws FrameError (INVALID_REQUEST) for anything malformed; see the top of the file for
 * which faults are fatal. A well-formed PRODUCE (the busiest request) is read without the
 * schema walk, its topic name looked up in `topics` (a connection's cache) before it is
 * decoded; anything unusual in it goes the schema's way, which finds the exact fault.
 */
export function decodeClientFrame(bytes: Uint8Array, topics?: TopicNames): ClientFrame {
  const header = readRequestHeader(bytes);
  if (header.op === Op.PRODUCE) {
    const produce = decodeProduceFast(bytes, header.correlationId, topics);
    if (produce !== null) return produce;
  }
  return decodeRequestBody(bytes, header);
}

/** decodeClientFrame without its PRODUCE fast path: the schema walk alone (tests compare the two). */
export function decodeClientFrameBySchema(bytes: Uint8Array): ClientFrame {
  return decodeRequestBody(bytes, readRequestHeader(bytes));
}

/** A client frame's header, checked: version-1 flags and reserved bits, a correlation id. */
function readRequestHeader(bytes: Uint8Array): FrameHeader {
  const header = readFrameHeader(bytes);
  checkHeader(header);
  if (header.correlationId === 0) {
    throw new FrameError(`${opName(header.op)}: a request's correlationId must not be 0`, { op: header.op, correlationId: 0, fatal: true });
  }
  return header;
}

function decodeRequestBody(bytes: Uint8Array, header: FrameHeader): ClientFrame {
  const schema = CLIENT_SCHEMAS.get(header.op);
  if (!schema) throw unknownOp(header, 'client');
  return decodeBody(bytes, header, schema) as ClientFrame;
}

/** Topic names a connection keeps (TopicNames). */
const TOPIC_NAMES_CACHED = 8;

/**
 * The topic names of a connection's last PRODUCE frames, by their UTF-8 bytes: a hit
 * skips TextDecoder, a call into C++ (1.6% of the gateway thread's samples in a profile at
 * 1,000 produces a second; by that share about 4 µs a frame; ninth session). At most
 * TOPIC_NAMES_CACHED names, the oldest replaced first; a name comes from a fatal UTF-8
 * decode of the same bytes, so a hit equals that decode.
 */
export class TopicNames {
  readonly #bytes: Uint8Array[] = [];
  readonly #names: string[] = [];
  #next = 0;

  /** The name whose UTF-8 bytes are `bytes[at, at + length)`, if kept. */
  lookup(bytes: Uint8Array, at: number, length: number): string | undefined {
    for (let i = 0; i < this.#bytes.length; i++) {
      const kept = this.#bytes[i];
      if (kept.length !== length) continue;
      let j = 0;
      while (j < length && kept[j] === bytes[at + j]) j++;
      if (j === length) return this.#names[i];
    }
    return undefined;
  }

  remember(bytes: Uint8Array, at: number, length: number, name: string): void {
    const i = this.#next;
    this.#bytes[i] = bytes.slice(at, at + length);
    this.#names[i] = name;
    this.#next = (i + 1) % TOPIC_NAMES_CACHED;
  }
}

/**
 * A PRODUCE body read field by field (PRODUCE's schema: producerId i64, partition i32,
 * acks i8, topic string, batch bytes), or null when anything is off (short, long, a value
 * out of range, bad UTF-8): the schema walk then decodes it and names the fault.
 */
function decodeProduceFast(bytes: Uint8Array, correlationId: number, topics: TopicNames | undefined): ProduceRequest | null {
  const n = bytes.length;
  const topicAt = PRODUCE_TOPIC_OFFSET + 2;
  if (n < topicAt) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, n);
  const producerId = readI64(view, PRODUCE_PRODUCER_ID_OFFSET);
  if (producerId === null) return null;
  const partition = view.getInt32(PRODUCE_PARTITION_OFFSET, false);
  const acks = view.getInt8(PRODUCE_ACKS_OFFSET);
  const topicLength = view.getUint16(PRODUCE_TOPIC_OFFSET, false);
  const batchAt = topicAt + topicLength + 4;
  if (topicLength > STRING_BYTES_MAX || batchAt > n || batchAt + view.getUint32(batchAt - 4, false) !== n) return null;
  let topic = topics?.lookup(bytes, topicAt, topicLength);
  if (topic === undefined) {
    try {
      topic = utf8Decoder.decode(bytes.subarray(topicAt, topicAt + topicLength));
    } catch {
      return null;
    }
    topics?.remember(bytes, topicAt, topicLength, topic);
  }
  return { op: Op.PRODUCE, correlationId, producerId, partition, acks, topic, batch: bytes.subarray(batchAt, n) };
}

/**
 * Decodes a frame a server sent (the client's side). An error number this code does not
 * know decodes as INTERNAL (the message and the retriable flag from the wire are kept).
 */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  const header = readFrameHeader(bytes);
  checkHeader(header);
  const schema = RESPONSE_SCHEMAS.get(header.op) ?? PUSH_SCHEMAS.get(header.op);
  if (!schema) throw unknownOp(header, 'server');
  const push = PUSH_SCHEMAS.has(header.op);
  if (push !== (header.correlationId === 0) && header.op !== Op.ERROR) {
    throw new FrameError(
      push ? `${opName(header.op)} is a push: its correlationId must be 0, got ${header.correlationId}` : `${opName(header.op)}: a response's correlationId must not be 0`,
      { op: header.op, correlationId: header.correlationId, fatal: true },
    );
  }
  return decodeBody(bytes, header, schema) as ServerFrame;
}
