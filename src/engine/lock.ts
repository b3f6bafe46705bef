/**
 * One engine per data directory: a lock file holding the owner's process id.
 *
 * Created exclusively; a lock left by a process that no longer runs (after kill -9) is
 * stale and taken over. A live holder, including another Engine in this very process, is
 * refused with STORAGE_ERROR naming its pid. It uses node:fs directly: the injectable
 * FileSystem has no exclusive create, and the lock is about processes, not data.
 * Owner: the gateway thread.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../errors.js';

const LOCK_FILE = '.lock';
/** Attempts to take over a stale lock before giving up (another process may race us). */
const TAKEOVER_ATTEMPTS_MAX = 3;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in `path` when that process runs; null when there is no lock file or it is stale. */
function liveHolder(path: string): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
  } catch {
    return null;
  }
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
}

/** The process that holds `dataDir`'s lock (a running broker, or this process), or null. */
export function lockHolder(dataDir: string): number | null {
  return liveHolder(join(dataDir, LOCK_FILE));
}

export class DataDirLock {
  readonly #path: string;
  #held = true;

  private constructor(path: string) {
    this.#path = path;
  }

  static acquire(dataDir: string): DataDirLock {
    const path = join(dataDir, LOCK_FILE);
    for (let attempt = 0; attempt < TAKEOVER_ATTEMPTS_MAX; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new DataDirLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new SluiceError('STORAGE_ERROR', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
        }
      }
      const pid = liveHolder(path);
      if (pid !== null) {
        throw new SluiceError('STORAGE_ERROR', `data directory ${dataDir} is in use by process ${pid} (${path})`);
      }
      try {
        unlinkSync(path); // stale: its process is gone
      } catch {
        // someone else took it over first; the next attempt finds out
      }
    }
    throw new SluiceError('STORAGE_ERROR', `could not take the lock ${path}`);
  }

  release(): void {
    if (!this.#held) return;
    this.#held = false;
    try {
      unlinkSync(this.#path);
    } catch {
      // already gone: nothing to release
    }
  }
}
