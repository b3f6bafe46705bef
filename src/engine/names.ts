/**
 * Topic names, topic configuration checks and the partition-to-owner mapping. Pure: no
 * I/O, no state. Owner: any thread.
 */
import { SluiceError } from '../errors.js';

/** Kafka's limit: the folder `name-N` must stay a legal file name. */
export const TOPIC_NAME_CHARS_MAX = 249;
/** Partitions per topic; every partition costs a log ring in shared memory and files. */
export const PARTITIONS_PER_TOPIC_MAX = 1024;
/** Kafka's legal characters; no '/', '\\' or '..' can reach the file system. */
const TOPIC_NAME_PATTERN = /^[a-zA-Z0-9._-]+$/;

/** Topics the engine keeps for itself (committed group offsets); clients may not produce to, delete or alter them. */
export const INTERNAL_TOPICS: ReadonlySet<string> = new Set(['__consumer_offsets']);

export function isInternalTopic(name: string): boolean {
  return INTERNAL_TOPICS.has(name);
}

/**
 * The one check every client-facing transport (WebSocket, HTTP admin, a Kafka listener)
 * makes before a client writes, deletes, alters or joins on a topic: INVALID_TOPIC for an
 * internal one. The Engine API itself allows them (the broker's own code uses it).
 */
export function checkNotInternal(topic: string): void {
  if (isInternalTopic(topic)) throw new SluiceError('INVALID_TOPIC', `${topic} is an internal topic of the broker`);
}

export function checkTopicName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new SluiceError('INVALID_TOPIC', 'a topic name must be a non-empty string');
  }
  if (name.length > TOPIC_NAME_CHARS_MAX) {
    throw new SluiceError('INVALID_TOPIC', `topic name is ${name.length} characters; the limit is ${TOPIC_NAME_CHARS_MAX}`);
  }
  if (name === '.' || name === '..' || !TOPIC_NAME_PATTERN.test(name)) {
    throw new SluiceError('INVALID_TOPIC', `topic name ${JSON.stringify(name)} may only use a-z, A-Z, 0-9, '.', '_' and '-', and may not be '.' or '..'`);
  }
  return name;
}

export function checkInteger(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new SluiceError('INVALID_ARGUMENT', `${what} must be an integer from ${min} to ${max}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
  }
  return value;
}

/** 32-bit FNV-1a of a string's UTF-16 code units: stable across runs and platforms. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The owner of a partition: spread a topic's partitions over owners starting at a place
 * that depends on the topic, so that many one-partition topics do not all land on owner 0.
 */
export function ownerOf(topic: string, partition: number, owners: number): number {
  return (fnv1a32(topic) + partition) % owners;
}

/** The folder of a partition inside the data dir, as Kafka names it. */
export function partitionDirName(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}
