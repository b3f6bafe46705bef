/**
 * A piscina task: verify one partition folder (every segment, every CRC). Runs in a pool
 * thread; reads only, so it may run beside a live engine (the active segment's tail may
 * then be mid-write and is reported as such).
 */
import { verifyPartitionDir, type VerifyReport } from '../persist/verify.js';

export default function verifyTask(dir: string): VerifyReport {
  return verifyPartitionDir(dir);
}
