/**
 * Small metadata files written atomically, and the topic registry `topics.json` of a data
 * directory. Owner: the gateway thread (the engine), at topic creation and deletion; never
 * on the hot path. Synchronous I/O through FileSystem.
 *
 * Atomic write: `<path>.tmp` in the same folder (so the rename cannot cross file systems),
 * write, fdatasync, rename over `<path>`, fsync the folder. After a crash at any point the
 * file is either the old one or the new one, never a mix; a leftover `.tmp` is ignored by
 * readers and overwritten by the next write.
 *
 * topics.json (UTF-8 JSON; the format is the object below, version 1):
 *   { "version": 1,
 *     "topics": { "<name>": { "partitions": 3,
 *                              "config": { "retentionMs": .., "retentionBytes": ..,
 *                                          "segmentBytes": .., "segmentMs": ..,
 *                                          "cleanupPolicy": "delete" | "compact" | "compact,delete",
 *                                          "deleteRetentionMs": ..,
 *                                          "timestampType": "CreateTime" | "LogAppendTime" },
 *                              "createdAt": <ms since epoch> } } }
 * Validated on load: a file that does not parse or does not match is a STORAGE_ERROR
 * naming the file and the field, never silently replaced (that would forget topics whose
 * data is still on disk). cleanupPolicy, deleteRetentionMs and timestampType came later: a
 * file written before them loads with 'delete', Kafka's default 86400000 and 'CreateTime'
 * (what those topics had); every save writes them.
 */
import { AssertionError } from '../assert.js';
import { asStorageError, SluiceError } from '../errors.js';
import { CLEANUP_POLICY_DEFAULT, DELETE_RETENTION_MS_DEFAULT, isCleanupPolicy, type CleanupPolicy } from './cleanup-policy.js';
import type { FileSystem } from './fs.js';
import { isTimestampType, TIMESTAMP_TYPE_DEFAULT, type TimestampType } from './timestamp-type.js';
import { dirName, TMP_SUFFIX, writeFileDurable } from './fs.js';

export const TOPICS_FILE_VERSION = 1;
/** Larger than any sane registry (thousands of topics), small enough to read at start without thinking. */
export const METADATA_FILE_BYTES_MAX = 64 * 1024 * 1024;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

function storageError(err: unknown, what: string): Error {
  if (err instanceof AssertionError) return err;
  return asStorageError(err, what);
}

/** Replaces `path` with `bytes` atomically and durably (see the top of the file). */
export function writeFileAtomic(fs: FileSystem, path: string, bytes: Uint8Array): void {
  const tmp = path + TMP_SUFFIX;
  try {
    writeFileDurable(fs, tmp, bytes);
    fs.rename(tmp, path);
    fs.fsyncDir(dirName(path));
  } catch (err) {
    try {
      if (fs.exists(tmp)) fs.unlink(tmp);
    } catch {
      // The write already failed; a leftover .tmp is harmless (overwritten next time).
    }
    throw storageError(err, `write ${path}`);
  }
}

/** Parses a JSON file; undefined when it does not exist; STORAGE_ERROR when it cannot be read or parsed. */
export function readJsonFile(fs: FileSystem, path: string): unknown {
  let text: string;
  try {
    if (!fs.exists(path)) return undefined;
    const bytes = fs.readFile(path);
    if (bytes.length > METADATA_FILE_BYTES_MAX) {
      throw new SluiceError('STORAGE_ERROR', `${path} is ${bytes.length} bytes, more than ${METADATA_FILE_BYTES_MAX}: not a metadata file`);
    }
    text = textDecoder.decode(bytes);
  } catch (err) {
    throw storageError(err, `read ${path}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new SluiceError('STORAGE_ERROR', `${path} is not valid JSON (${(err as Error).message}); fix or restore it by hand, it is never replaced automatically`, { cause: err });
  }
}

export function writeJsonFile(fs: FileSystem, path: string, value: unknown): void {
  writeFileAtomic(fs, path, textEncoder.encode(JSON.stringify(value, null, 2) + '\n'));
}

// ---------------------------------------------------------------- topics.json

export interface TopicFileConfig {
  retentionMs: number;
  retentionBytes: number;
  segmentBytes: number;
  segmentMs: number;
  /**
   * Kafka's cleanup.policy: 'delete' (default: retention by retentionMs / retentionBytes),
   * 'compact' (no deletion by time or size; compaction keeps the latest record per key, and
   * every produced record needs a key) or 'compact,delete' (both). 'delete,compact' is
   * accepted as 'compact,delete'.
   */
  cleanupPolicy: CleanupPolicy;
  /** Kafka's delete.retention.ms: how long compaction keeps a tombstone (null value) after its segment's newest record; default a day. */
  deleteRetentionMs: number;
  /** Kafka's message.timestamp.type: 'CreateTime' (the producer's, default) or 'LogAppendTime' (the broker's, stamped at append). */
  timestampType: TimestampType;
}

export interface TopicEntry {
  partitions: number;
  config: TopicFileConfig;
  /** ms since epoch. */
  createdAt: number;
}

export interface TopicsFile {
  version: 1;
  topics: Record<string, TopicEntry>;
}

export function emptyTopicsFile(): TopicsFile {
  return { version: TOPICS_FILE_VERSION, topics: {} };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Checks the shape of a parsed topics.json; throws STORAGE_ERROR naming `path` and the
 * first bad field. Returns a fresh object (only the known fields).
 */
export function validateTopicsFile(value: unknown, path: string): TopicsFile {
  const bad = (what: string): SluiceError =>
    new SluiceError('STORAGE_ERROR', `${path} is not a valid topics file: ${what}; fix or restore it by hand, it is never replaced automatically`);
  if (!isObject(value)) throw bad('the top level is not an object');
  if (value.version !== TOPICS_FILE_VERSION) throw bad(`version is ${JSON.stringify(value.version)}, expected ${TOPICS_FILE_VERSION}`);
  if (!isObject(value.topics)) throw bad('"topics" is not an object');
  const topics: Record<string, TopicEntry> = {};
  for (const [name, entry] of Object.entries(value.topics)) {
    const where = `topic ${JSON.stringify(name)}`;
    if (name.length === 0) throw bad('a topic has an empty name');
    if (!isObject(entry)) throw bad(`${where} is not an object`);
    const int = (v: unknown, field: string, min: number): number => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`${where}: ${field} is ${JSON.stringify(v)}, expected an integer >= ${min}`);
      return v;
    };
    const partitions = int(entry.partitions, 'partitions', 1);
    const createdAt = int(entry.createdAt, 'createdAt', 0);
    if (!isObject(entry.config)) throw bad(`${where}: config is not an object`);
    const c = entry.config;
    const config: TopicFileConfig = {
      retentionMs: int(c.retentionMs, 'config.retentionMs', -1),
      retentionBytes: int(c.retentionBytes, 'config.retentionBytes', -1),
      segmentBytes: int(c.segmentBytes, 'config.segmentBytes', 1),
      segmentMs: int(c.segmentMs, 'config.segmentMs', 1),
      cleanupPolicy: CLEANUP_POLICY_DEFAULT,
      deleteRetentionMs: c.deleteRetentionMs === undefined ? DELETE_RETENTION_MS_DEFAULT : int(c.deleteRetentionMs, 'config.deleteRetentionMs', 0),
      timestampType: TIMESTAMP_TYPE_DEFAULT,
    };
    if (c.timestampType !== undefined) {
      if (!isTimestampType(c.timestampType)) throw bad(`${where}: config.timestampType is ${JSON.stringify(c.timestampType)}`);
      config.timestampType = c.timestampType;
    }
    if (c.cleanupPolicy !== undefined) {
      if (!isCleanupPolicy(c.cleanupPolicy)) throw bad(`${where}: config.cleanupPolicy is ${JSON.stringify(c.cleanupPolicy)}`);
      config.cleanupPolicy = c.cleanupPolicy;
    }
    // Own property, not topics[name] = ..., so that a topic named "__proto__" stays data.
    Object.defineProperty(topics, name, { value: { partitions, config, createdAt }, enumerable: true, writable: true, configurable: true });
  }
  return { version: TOPICS_FILE_VERSION, topics };
}

/** Loads topics.json at `path`; an empty registry when the file does not exist. */
export function loadTopics(fs: FileSystem, path: string): TopicsFile {
  const value = readJsonFile(fs, path);
  if (value === undefined) return emptyTopicsFile();
  return validateTopicsFile(value, path);
}

/** Writes topics.json at `path` atomically, after checking it would load back. */
export function saveTopics(fs: FileSystem, path: string, file: TopicsFile): void {
  let checked: TopicsFile;
  try {
    checked = validateTopicsFile(file, path);
  } catch (err) {
    // The caller built the registry: writing one we could not load back is a programmer error.
    throw new AssertionError(`saveTopics: ${(err as Error).message}`);
  }
  writeJsonFile(fs, path, checked);
}
