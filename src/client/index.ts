/**
 * The Sluice client for browsers and Node: `connect({ url, clientId })`, then producers,
 * consumers and admin calls. Everything reachable from this file is browser-safe (no
 * Node-only import); the gateway serves the compiled file to browsers.
 */
export {
  connect,
  Sluice,
  type ConnectOptions,
  type GroupDescription,
  type GroupSummary,
  type Metadata,
  type OffsetSpec,
  type ResetTarget,
  type TopicDescription,
  type TopicSettings,
} from './client.js';
export { GroupMember, type AssignorName, type GroupOptions } from './group-member.js';
export { Producer, type Acks, type HeadersInput, type ProducerOptions, type ProducerRecord, type RecordMetadata } from './producer.js';
export { Consumer, type ConsumerBatch, type ConsumerOptions, type RunOptions, type StartPosition, type TopicPartition } from './consumer.js';
export { ClientClosedError, Connection, ConnectionLostError, type WebSocketConstructor, type WebSocketLike } from './connection.js';
export type { ClientCompression, ConsumerRecord } from './codec.js';
export type { TimestampType } from '../persist/timestamp-type.js';
export { murmur2, partitionForKey, toPositive } from './murmur2.js';
export { SluiceError, type ErrorCode } from '../errors.js';
