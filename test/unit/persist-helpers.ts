/**
 * Shared helpers of the persist unit tests: temporary folders, batch builders, a seeded
 * random generator whose seed is printed when a test fails, and a fake clock.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, onTestFailed } from 'vitest';
import { DEFAULT_LOG_CONFIG, type LogConfig, type PartitionLog } from '../../src/persist/partition-log.js';
import { encodeBatch, type RecordInput } from '../../src/persist/record-batch.js';

const dirs: string[] = [];

/** A fresh temporary folder, removed after the test. */
export function tempDir(prefix = 'sluice-persist-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

afterEach(() => {
  while (dirs.length > 0) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** Small segments and dense indexes so that a few KiB exercise every code path. */
export const SMALL_CONFIG: LogConfig = {
  ...DEFAULT_LOG_CONFIG,
  segmentBytes: 4096,
  segmentMs: 7 * 24 * 3600 * 1000,
  retentionMs: -1,
  retentionBytes: -1,
  indexIntervalBytes: 256,
};

export class FakeClock {
  nowMs: number;
  constructor(nowMs = 1_700_000_000_000) {
    this.nowMs = nowMs;
  }
  now(): number {
    return this.nowMs;
  }
}

export { seededRandom } from '../helpers/random.js';

/** A seed from SLUICE_SEED or the clock, printed if the current test fails. */
export function testSeed(): number {
  const seed = process.env.SLUICE_SEED !== undefined ? Number(process.env.SLUICE_SEED) : Date.now() % 1_000_000_007;
  onTestFailed(() => {
    console.error(`seed: ${seed} (rerun with SLUICE_SEED=${seed})`);
  });
  return seed;
}

export function valueOf(i: number, bytes: number): Uint8Array {
  const v = new Uint8Array(bytes);
  for (let k = 0; k < bytes; k++) v[k] = (i * 31 + k) & 0xff;
  return v;
}

export interface Appended {
  first: number;
  next: number;
  bytes: Uint8Array;
  timestamps: number[];
}

/**
 * Appends one batch of `count` records at the log end: values of `valueBytes`, timestamps
 * from `timestamp` (+1 per record unless `timestamps` is given).
 */
export function appendBatch(
  log: PartitionLog,
  opts: { count?: number; valueBytes?: number; timestamp?: number; timestamps?: number[]; compression?: 'none' | 'gzip' } = {},
): Appended {
  const count = opts.timestamps?.length ?? opts.count ?? 1;
  const ts0 = opts.timestamp ?? 1_700_000_000_000;
  const timestamps = opts.timestamps ?? Array.from({ length: count }, (_, i) => ts0 + i);
  const first = log.logEndOffset;
  const records: RecordInput[] = timestamps.map((t, i) => ({
    key: i % 3 === 0 ? null : valueOf(first + i, 4),
    value: valueOf(first + i, opts.valueBytes ?? 20),
    timestamp: t,
  }));
  let bytes: Uint8Array;
  if (opts.compression === 'gzip') {
    // The log never decompresses: any blob will do as the "compressed" records section.
    bytes = encodeBatch(records, { baseOffset: first, compression: 'gzip', compressedRecords: valueOf(first, 40) });
  } else bytes = encodeBatch(records, { baseOffset: first });
  const next = first + count;
  log.append(bytes, first, next);
  return { first, next, bytes, timestamps };
}

/** Concatenates batches already encoded with contiguous baseOffsets. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Resolves once no roll's seal fdatasync of `log` runs (they run on the thread pool: a
 * synchronous test that rolls and then expects retention or a fault count to see settled
 * segments waits for them first).
 */
export function sealed(log: PartitionLog): Promise<void> {
  return new Promise((resolve) => {
    if (!log.whenSealed(resolve)) resolve();
  });
}

export function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
  return undefined;
}
