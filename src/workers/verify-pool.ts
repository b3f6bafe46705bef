/**
 * Whole-data-dir verification: every partition's segments checked batch by batch (framing,
 * CRC32C, offsets, index consistency), partitions in parallel on a piscina pool
 * (stateless CPU and read work: the case piscina fits). Owner: the calling thread.
 *
 * The cleanup policy of each topic comes from the data dir's topics.json (when it loads):
 * a compacted topic's segments may end below the next one's base (see persist/verify.ts);
 * a topic not in it is checked as a 'delete' topic.
 *
 * A running broker may hold the data dir meanwhile (its `.lock` names a live process): the
 * partitions' last segments are then checked as live (persist/verify.ts: re-read, and only
 * what every read shows is reported).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { lockHolder } from '../engine/lock.js';
import type { FileSystem } from '../persist/fs.js';
import { nodeFileSystem } from '../persist/fs.js';
import { isCompacted } from '../persist/cleanup-policy.js';
import { loadTopics } from '../persist/metadata.js';
import type { VerifyReport } from '../persist/verify.js';
import type { VerifyTaskInput } from './verify-task.js';

/** Verification is disk- and CRC-bound: more threads than cores only adds contention. */
const VERIFY_THREADS_MAX = 16;
/** Partition folders are named `topic-N`. */
const PARTITION_DIR_PATTERN = /^(.+)-\d+$/;
/** The data dir's topic registry (engine.ts writes it). */
const TOPICS_FILE = 'topics.json';

export interface DataDirVerifyReport {
  ok: boolean;
  /** The process that held the data dir's lock when the verify began (a running broker), or null. */
  brokerPid: number | null;
  partitions: { dir: string; report: VerifyReport }[];
}

export async function verifyDataDir(options: { dataDir: string; threads?: number; fs?: FileSystem }): Promise<DataDirVerifyReport> {
  const fs = options.fs ?? nodeFileSystem;
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), VERIFY_THREADS_MAX));
  const dirs = fs
    .readdir(options.dataDir)
    .filter((name) => PARTITION_DIR_PATTERN.test(name) && !name.includes('.deleted'))
    .sort();
  const pool = new Piscina({
    filename: new URL('./verify-task.js', import.meta.url).href,
    minThreads: 1,
    maxThreads: threads,
    maxQueue: dirs.length + 1,
    idleTimeout: 1000,
  });
  const compactedTopics = compactedTopicsOf(fs, options.dataDir);
  const brokerPid = lockHolder(options.dataDir);
  try {
    const reports = await Promise.all(
      dirs.map(async (name) => {
        const input: VerifyTaskInput = { dir: join(options.dataDir, name), compacted: compactedTopics.has(PARTITION_DIR_PATTERN.exec(name)![1]), live: brokerPid !== null };
        return { dir: name, report: (await pool.run(input)) as VerifyReport };
      }),
    );
    return { ok: reports.every((r) => r.report.ok), brokerPid, partitions: reports };
  } finally {
    await pool.destroy();
  }
}

/** Names of the topics whose cleanup policy compacts, per topics.json; none when it does not load. */
function compactedTopicsOf(fs: FileSystem, dataDir: string): Set<string> {
  try {
    const file = loadTopics(fs, join(dataDir, TOPICS_FILE));
    return new Set(Object.entries(file.topics).filter(([, t]) => isCompacted(t.config.cleanupPolicy)).map(([name]) => name));
  } catch {
    // Verify still checks everything else; segment gaps of compacted topics are then reported.
    return new Set();
  }
}
