/**
 * The limits of the WebSocket protocol and of the gateway that serves it, kept together
 * with their reasons and relationships (house style 9). docs/protocol.md's limits table
 * names each of them.
 *
 * Pure constants: no I/O, no Node-only imports (the browser client imports this file
 * through frames.ts). Owner: any thread; no state.
 *
 * Two values mirror the engine's (BATCH_BYTES_MAX, FETCH_BYTES_MAX) instead of importing
 * them, because the engine's modules load Node-only code; test/unit/ws-frames.test.ts
 * checks that they agree.
 */
import { assert } from '../assert.js';

// ---------------------------------------------------------------- the protocol

/** The protocol version this code speaks; the handshake picks it when the client accepts it. */
export const PROTOCOL_VERSION = 2;
/** Consumer groups (JOIN_GROUP .. RESET_OFFSETS, ASSIGNMENT) came with version 2, and CREATE_PARTITIONS, CREATE_TOPIC_WITH_CONFIGS and DESCRIBE_CONFIGS. */
export const GROUPS_PROTOCOL_VERSION = 2;
/** The oldest protocol version this code still speaks. */
export const PROTOCOL_VERSION_MIN = 1;
/**
 * Bytes in every string on the wire (client id, topic names, error messages). Topic names
 * are at most 249 characters; 1 KiB leaves room for client ids and readable messages and
 * keeps string-heavy frames small. Error messages longer than this are cut (at a
 * character boundary) by the encoder, never rejected.
 */
export const STRING_BYTES_MAX = 1024;

// ---------------------------------------------------------------- mirrors of the engine

/** The largest batch a produce may carry: Kafka's message.max.bytes (the engine's DEFAULT_LOG_CONFIG.batchBytesMax). */
export const BATCH_BYTES_MAX = 1024 * 1024 + 12;
/** The most record bytes one fetch returns (the engine's FETCH_BYTES_MAX; at least one whole batch even if larger). */
export const FETCH_BYTES_MAX = 1024 * 1024;

// ---------------------------------------------------------------- per connection

/**
 * The largest frame, either way (uWS maxPayloadLength). 2 MiB holds a maximal produce (a
 * 1 MiB batch plus its header and topic) and a maximal fetch response or DATA push (1 MiB,
 * or one batch larger than the fetch limit, as KIP-74) with room to spare.
 */
export const FRAME_BYTES_MAX = 2 * 1024 * 1024;
/**
 * Requests awaiting a response, per connection. 64 pipelined produces of 16 KiB keep a
 * producer busy across an fsync (about 0.14 ms here) without letting one connection hold
 * more than 64 frames of gateway memory.
 */
export const IN_FLIGHT_PER_CONNECTION_MAX = 64;
/** Open subscriptions per connection; each holds a cursor and a credit counter in the gateway. */
export const SUBSCRIPTIONS_PER_CONNECTION_MAX = 256;
/** The longest a fetch may long-poll; Kafka clients default to 0.5 s (librdkafka) to 5 s (kafkajs). */
export const FETCH_WAIT_MS_MAX = 30_000;
/** A connection that has not completed its HELLO by then is closed (a socket that never speaks costs memory). */
export const HELLO_TIMEOUT_MS = 10_000;
/** uWS idleTimeout in seconds: the server pings automatically; a peer silent for this long is gone. */
export const IDLE_TIMEOUT_S = 120;
/**
 * Soft limit on a socket's buffered (unsent) bytes: at or above it the gateway pushes no
 * DATA and answers new FETCH and PRODUCE requests with THROTTLED, until 'drain'.
 */
export const SOCKET_BUFFERED_BYTES_SOFT_MAX = 4 * 1024 * 1024;
/**
 * Hard limit (uWS maxBackpressure, with closeOnBackpressureLimit): the soft limit plus a
 * full in-flight window of maximal responses, so a client that respects its window never
 * reaches it; one that does not read its socket is disconnected.
 */
export const SOCKET_BUFFERED_BYTES_HARD_MAX = SOCKET_BUFFERED_BYTES_SOFT_MAX + IN_FLIGHT_PER_CONNECTION_MAX * FRAME_BYTES_MAX;

// ---------------------------------------------------------------- the whole gateway

/**
 * The gateway's memory budget: bytes buffered in all sockets plus produce batches the
 * gateway holds for an owner. Past it, PRODUCE and FETCH are answered THROTTLED.
 */
export const GATEWAY_BUFFERED_BYTES_MAX = 512 * 1024 * 1024;
/** Back-off hint with THROTTLED from the gateway's own limits (the engine's THROTTLE_BACKOFF_MS is 5 for a full ring). */
export const GATEWAY_THROTTLE_BACKOFF_MS = 10;

// ---------------------------------------------------------------- idempotence

/**
 * Produces an idempotent producer keeps in flight per partition; the owner remembers as
 * many batches per (producerId, partition) to answer a retry with its original offset
 * (RECENT_BATCHES in workers/producer-state.ts, at least this). Kafka's is 5; 16 lets
 * sends go on through an fdatasync that is slow for a few milliseconds, where 5 stalled
 * them (at lingerMs 0 about one batch a millisecond goes out; docs/benchmarks.md, tenth
 * session). Kafka clients, which keep 5, fit.
 */
export const IDEMPOTENT_BATCHES_PER_PARTITION = 16;

/**
 * Overhead of a produce frame around its batch: header 8, producerId 8, partition 4,
 * acks 1, topic length 2 + the longest string, batch length 4.
 */
export const PRODUCE_FRAME_OVERHEAD_BYTES_MAX = 8 + 8 + 4 + 1 + 2 + STRING_BYTES_MAX + 4;

assert(PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION, 'the version range is not empty');
assert(STRING_BYTES_MAX <= 0xffff, 'string lengths are u16 on the wire');
assert(FRAME_BYTES_MAX >= BATCH_BYTES_MAX + PRODUCE_FRAME_OVERHEAD_BYTES_MAX, 'a maximal produce fits a frame');
assert(FRAME_BYTES_MAX >= Math.max(FETCH_BYTES_MAX, BATCH_BYTES_MAX) + 64, 'a maximal fetch response or DATA push fits a frame');
assert(SOCKET_BUFFERED_BYTES_SOFT_MAX >= FRAME_BYTES_MAX, 'one maximal frame can be buffered before the soft limit');
assert(IN_FLIGHT_PER_CONNECTION_MAX <= 0xffff && SUBSCRIPTIONS_PER_CONNECTION_MAX <= 0xffff, 'HELLO_OK carries them as u16');
assert(IDEMPOTENT_BATCHES_PER_PARTITION <= IN_FLIGHT_PER_CONNECTION_MAX, 'an idempotent producer can fill its per-partition window');
