/**
 * Limits of the consumer group coordinator (house style 9): every bound on what a client
 * can make the coordinator hold or compute, with its unit last and its reason.
 * Pure constants; owner: any thread.
 */
import { assert } from '../assert.js';

/** Kafka's group.min.session.timeout.ms is 6 s; we allow shorter for tests and local tools. */
export const SESSION_TIMEOUT_MS_MIN = 500;
/** Kafka's group.max.session.timeout.ms default: a dead member cannot hold partitions longer. */
export const SESSION_TIMEOUT_MS_MAX = 30 * 60_000;
/** A member is told to heartbeat at a third of its session timeout, but never more often than this. */
export const HEARTBEAT_INTERVAL_MS_MIN = 100;
/** Group ids are map keys and log fields; Kafka allows any length, we keep them short. */
export const GROUP_ID_BYTES_MAX = 255;
/** The free-text client id is part of generated member ids. */
export const CLIENT_ID_BYTES_MAX = 255;
/** Static member ids (Kafka group.instance.id). */
export const INSTANCE_ID_BYTES_MAX = 255;
/** A generated member id is `${clientId}-${uuid}`: the client id, a dash and 36 characters. */
export const MEMBER_ID_BYTES_MAX = CLIENT_ID_BYTES_MAX + 1 + 36;
/** Members per group (Kafka group.max.size is unbounded by default; the assignors are O(members x topics)). */
export const GROUP_MEMBERS_MAX = 1000;
/** Live groups (with at least one member); each holds members, timers and assignments in memory. */
export const GROUPS_MAX = 10_000;
/** Topics one member may subscribe to. */
export const SUBSCRIBED_TOPICS_MAX = 1000;
/** Kafka's offset.metadata.max.bytes default. */
export const OFFSET_METADATA_BYTES_MAX = 4096;
/** Offsets in one commit or one fetch of committed offsets (10 topics of the largest size). */
export const COMMIT_PARTITIONS_MAX = 10_240;

assert(SESSION_TIMEOUT_MS_MIN / 3 >= HEARTBEAT_INTERVAL_MS_MIN, 'the shortest session still gets three heartbeats');
assert(SESSION_TIMEOUT_MS_MIN < SESSION_TIMEOUT_MS_MAX, 'session timeout bounds are ordered');
assert(MEMBER_ID_BYTES_MAX >= CLIENT_ID_BYTES_MAX + 37, 'a generated member id is a legal member id');
