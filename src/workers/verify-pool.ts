/**
 * Whole-data-dir verification: every partition's segments checked batch by batch (framing,
 * CRC32C, contiguous offsets, index consistency), partitions in parallel on a piscina pool
 * (stateless CPU and read work: the case piscina fits). Owner: the calling thread.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import type { FileSystem } from '../persist/fs.js';
import { nodeFileSystem } from '../persist/fs.js';
import type { VerifyReport } from '../persist/verify.js';

/** Verification is disk- and CRC-bound: more threads than cores only adds contention. */
const VERIFY_THREADS_MAX = 16;
/** Partition folders are named `topic-N`. */
const PARTITION_DIR_PATTERN = /^.+-\d+$/;

export interface DataDirVerifyReport {
  ok: boolean;
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
  try {
    const reports = await Promise.all(
      dirs.map(async (name) => ({ dir: name, report: (await pool.run(join(options.dataDir, name))) as VerifyReport })),
    );
    return { ok: reports.every((r) => r.report.ok), partitions: reports };
  } finally {
    await pool.destroy();
  }
}
