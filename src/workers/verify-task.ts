/**
 * A piscina task: verify one partition folder (every segment, every CRC). Runs in a pool
 * thread; reads only, so it may run beside a live engine (the active segment's tail may
 * then be mid-write and is reported as such).
 */
import { verifyPartitionDir, type VerifyReport } from '../persist/verify.js';

export interface VerifyTaskInput {
  dir: string;
  /** The topic is compacted: gaps between segments are allowed. */
  compacted: boolean;
}

export default function verifyTask(input: VerifyTaskInput): VerifyReport {
  return verifyPartitionDir(input.dir, undefined, { compacted: input.compacted });
}
