/**
 * A piscina task: verify one partition folder (every segment, every CRC). Runs in a pool
 * thread; reads only, so it may run beside a live engine (`live`: persist/verify.ts).
 */
import { verifyPartitionDir, type VerifyReport } from '../persist/verify.js';

export interface VerifyTaskInput {
  dir: string;
  /** The topic is compacted: gaps between segments are allowed. */
  compacted: boolean;
  /** A broker may be writing the partition meanwhile. */
  live: boolean;
}

export default function verifyTask(input: VerifyTaskInput): VerifyReport {
  return verifyPartitionDir(input.dir, undefined, { compacted: input.compacted, live: input.live });
}
