/**
 * The file system as the persist layer sees it: synchronous calls only, because every caller
 * is a dedicated owner thread (or a verify task) that may block on its own disk and nothing
 * else. Owner: whichever thread constructed the object; none of these are shared.
 *
 * Three implementations:
 * - `nodeFileSystem`: node:fs. Failures are thrown as node throws them (an Error with a
 *   `code` such as ENOSPC); the persist layer wraps them as STORAGE_ERROR with its own
 *   context (which segment, which operation) at its public boundary.
 * - `FaultyFileSystem`: wraps another FileSystem and injects faults deterministically (a
 *   torn write after k bytes, ENOSPC, a failing fdatasync or ftruncate, a flipped bit, a
 *   zero-filled tail), and holds asynchronous fdatasyncs until the test releases them (an
 *   fsync still running, or one a crash interrupted), for the disk tests (house style 26).
 *
 * Writes and reads take any Uint8Array, including views over a SharedArrayBuffer: the owner
 * writes straight from its shared-memory log ring and reads straight into a shared fetch
 * buffer. node's writeSync/readSync accept those views without copying.
 */
import * as nodeFs from 'node:fs';
import * as nodePath from 'node:path';
import { assert } from '../assert.js';

/** 'read': must exist, read only. 'write': must exist, read and write. 'create': create or truncate, read and write. */
export type OpenMode = 'read' | 'write' | 'create';

export interface FileSystem {
  open(path: string, mode: OpenMode): number;
  /** Writes all of `bytes` at `position` (pwrite; loops over short writes). */
  write(fd: number, bytes: Uint8Array, position: number): void;
  /** Reads into `target` from `position` until it is full or the file ends; returns the bytes read. */
  read(fd: number, target: Uint8Array, position: number): number;
  fdatasync(fd: number): void;
  /**
   * fdatasync on another thread (libuv's pool), so an owner keeps appending while the disk
   * syncs; `callback` runs on the calling thread's event loop. The fd must stay open until then.
   */
  fdatasyncAsync(fd: number, callback: (err: Error | null) => void): void;
  ftruncate(fd: number, length: number): void;
  /** Size of the open file in bytes (fstat). */
  size(fd: number): number;
  close(fd: number): void;
  rename(from: string, to: string): void;
  unlink(path: string): void;
  /** Names (not paths) of the entries of a folder. */
  readdir(path: string): string[];
  /** mkdir -p. */
  mkdirp(path: string): void;
  /** rm -rf: no error when the path does not exist. */
  rmrf(path: string): void;
  exists(path: string): boolean;
  /** Whole small file (metadata, an index). */
  readFile(path: string): Uint8Array;
  /** Creates or replaces a small file; not durable by itself (see metadata.writeFileAtomic). */
  writeFile(path: string, bytes: Uint8Array): void;
  /** fsync of a folder, so that a create, rename or unlink inside it survives a power cut. */
  fsyncDir(path: string): void;
}

/** Suffix of a file written in full before it is renamed over its name (a partition's open removes leftovers). */
export const TMP_SUFFIX = '.tmp';

/**
 * Writes `bytes` to `<path>.tmp` and renames that over `path`: a reader finds the old file
 * or the new one, never a part. `durable` fdatasyncs it before the rename; the folder is
 * not synced (metadata.writeFileAtomic does that too).
 */
export function replaceFile(fs: FileSystem, path: string, bytes: Uint8Array, { durable }: { durable: boolean }): void {
  const tmp = path + TMP_SUFFIX;
  if (durable) writeFileDurable(fs, tmp, bytes);
  else fs.writeFile(tmp, bytes);
  fs.rename(tmp, path);
}

/**
 * Creates or truncates `path`, writes `bytes`, fdatasyncs and closes it: durable, not
 * atomic (replaceFile and metadata.writeFileAtomic add the temp file and rename around it).
 */
export function writeFileDurable(fs: FileSystem, path: string, bytes: Uint8Array): void {
  const fd = fs.open(path, 'create');
  try {
    if (bytes.length > 0) fs.write(fd, bytes, 0);
    fs.fdatasync(fd);
  } finally {
    fs.close(fd);
  }
}

const OPEN_FLAGS: Record<OpenMode, string> = { read: 'r', write: 'r+', create: 'w+' };

/** node:fs, synchronous. No state. */
export const nodeFileSystem: FileSystem = {
  open(path, mode) {
    return nodeFs.openSync(path, OPEN_FLAGS[mode]);
  },
  write(fd, bytes, position) {
    let done = 0;
    while (done < bytes.length) {
      const n = nodeFs.writeSync(fd, bytes, done, bytes.length - done, position + done);
      // writeSync throws on failure; a zero-byte write of a non-empty buffer would loop forever.
      assert(n > 0, 'writeSync wrote 0 bytes');
      done += n;
    }
  },
  read(fd, target, position) {
    let done = 0;
    while (done < target.length) {
      const n = nodeFs.readSync(fd, target, done, target.length - done, position + done);
      if (n === 0) break; // end of file
      done += n;
    }
    return done;
  },
  fdatasync(fd) {
    nodeFs.fdatasyncSync(fd);
  },
  fdatasyncAsync(fd, callback) {
    nodeFs.fdatasync(fd, (err) => callback(err ?? null));
  },
  ftruncate(fd, length) {
    nodeFs.ftruncateSync(fd, length);
  },
  size(fd) {
    return nodeFs.fstatSync(fd).size;
  },
  close(fd) {
    nodeFs.closeSync(fd);
  },
  rename(from, to) {
    nodeFs.renameSync(from, to);
  },
  unlink(path) {
    nodeFs.unlinkSync(path);
  },
  readdir(path) {
    return nodeFs.readdirSync(path);
  },
  mkdirp(path) {
    nodeFs.mkdirSync(path, { recursive: true });
  },
  rmrf(path) {
    nodeFs.rmSync(path, { recursive: true, force: true });
  },
  exists(path) {
    return nodeFs.existsSync(path);
  },
  readFile(path) {
    const buf = nodeFs.readFileSync(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  },
  writeFile(path, bytes) {
    nodeFs.writeFileSync(path, bytes);
  },
  fsyncDir(path) {
    const fd = nodeFs.openSync(path, 'r');
    try {
      nodeFs.fsyncSync(fd);
    } finally {
      nodeFs.closeSync(fd);
    }
  },
};

// ---------------------------------------------------------------- fault injection

/** Operations a fault can target. */
export type FaultOp = 'open' | 'write' | 'read' | 'fdatasync' | 'ftruncate' | 'rename' | 'unlink' | 'fsyncDir' | 'writeFile';

export interface FaultSpec {
  op: FaultOp;
  /** errno-style code of the thrown error: EIO (default), ENOSPC, ... */
  code?: string;
  /** Only calls on a path ending with this (for fd calls, the path the fd was opened with). */
  pathEndsWith?: string;
  /** For writes: write this many bytes of the buffer first, then throw (a torn write). */
  afterBytes?: number;
  /** Let this many matching calls pass before failing. */
  skip?: number;
  /** Fail this many matching calls in a row (default 1). */
  times?: number;
}

interface ArmedFault extends FaultSpec {
  skipLeft: number;
  timesLeft: number;
}

/** An error shaped like node's fs errors, so the code under test cannot tell them apart. */
export function fsError(code: string, syscall: string, path?: string): Error {
  const where = path === undefined ? syscall : `${syscall} '${path}'`;
  return Object.assign(new Error(`${code}: injected fault, ${where}`), { code, syscall, path });
}

/**
 * Wraps another FileSystem and fails the calls it was told to fail, deterministically: a
 * fault fires on the (skip + 1)-th matching call, `times` times, in the order faults were
 * armed. The direct corruptions (flipBit, zeroTail, appendZeros, truncateFile) change a
 * file at once, as a bad disk or a power cut would have. Owner: the test's thread.
 */
export class FaultyFileSystem implements FileSystem {
  readonly #inner: FileSystem;
  readonly #pathByFd = new Map<number, string>();
  readonly #faults: ArmedFault[] = [];
  /** fdatasyncAsync calls held back while #holding (path, start). */
  readonly #held: { path: string | undefined; start: () => void }[] = [];
  #holding = false;
  /** Calls per operation, for tests that count syscalls (e.g. one write per append). */
  readonly calls: Record<FaultOp, number> = {
    open: 0, write: 0, read: 0, fdatasync: 0, ftruncate: 0, rename: 0, unlink: 0, fsyncDir: 0, writeFile: 0,
  };

  constructor(inner: FileSystem = nodeFileSystem) {
    this.#inner = inner;
  }

  /** Arms a fault; see FaultSpec. */
  inject(spec: FaultSpec): this {
    this.#faults.push({ ...spec, skipLeft: spec.skip ?? 0, timesLeft: spec.times ?? 1 });
    return this;
  }

  /** The next write (matching) writes `afterBytes` bytes, then throws EIO. */
  tearNextWrite(afterBytes: number, pathEndsWith?: string): this {
    return this.inject({ op: 'write', afterBytes, pathEndsWith, code: 'EIO' });
  }

  /** The next write (matching) throws ENOSPC, optionally after writing a prefix. */
  failNextWriteNoSpace(pathEndsWith?: string, afterBytes = 0): this {
    return this.inject({ op: 'write', afterBytes, pathEndsWith, code: 'ENOSPC' });
  }

  failNextFdatasync(pathEndsWith?: string): this {
    return this.inject({ op: 'fdatasync', pathEndsWith, code: 'EIO' });
  }

  /**
   * From now on fdatasyncAsync calls wait (nothing is synced, nobody is called back) until
   * releaseAsyncSyncs(): an fdatasync that takes as long as the test wants, or, never
   * released, one that a crash interrupted.
   */
  holdAsyncSyncs(): this {
    this.#holding = true;
    return this;
  }

  /**
   * Starts the held fdatasyncAsync calls (on `pathEndsWith` only, when given), each as it
   * would have started (faults apply then; the callback comes on a later turn); with no
   * argument also stops holding. Returns how many it started.
   */
  releaseAsyncSyncs(pathEndsWith?: string): number {
    if (pathEndsWith === undefined) this.#holding = false;
    const chosen = this.#held.filter((h) => pathEndsWith === undefined || (h.path !== undefined && h.path.endsWith(pathEndsWith)));
    for (const h of chosen) this.#held.splice(this.#held.indexOf(h), 1);
    for (const h of chosen) h.start();
    return chosen.length;
  }

  /** Paths of the files open through this object (a test checks descriptors are closed, or kept open). */
  get openFiles(): string[] {
    return [...this.#pathByFd.values()];
  }

  /** Paths of the fdatasyncAsync calls held back, in call order. */
  get heldAsyncSyncs(): (string | undefined)[] {
    return this.#held.map((h) => h.path);
  }

  /** Faults armed and not yet fired. */
  get pendingFaults(): number {
    return this.#faults.length;
  }

  clearFaults(): void {
    this.#faults.length = 0;
  }

  // -------------------------------------------------------------- direct corruption

  /** XORs one bit of the byte at `offset` of the file. */
  flipBit(path: string, offset: number, bit = 0): void {
    assert(bit >= 0 && bit < 8, 'bit is 0..7');
    const fd = this.#inner.open(path, 'write');
    try {
      const one = new Uint8Array(1);
      assert(this.#inner.read(fd, one, offset) === 1, () => `offset ${offset} is inside ${path}`);
      one[0] ^= 1 << bit;
      this.#inner.write(fd, one, offset);
    } finally {
      this.#inner.close(fd);
    }
  }

  /** Overwrites the last `bytes` bytes of the file with zeros (a page that never reached the disk). */
  zeroTail(path: string, bytes: number): void {
    const fd = this.#inner.open(path, 'write');
    try {
      const size = this.#inner.size(fd);
      const n = Math.min(bytes, size);
      this.#inner.write(fd, new Uint8Array(n), size - n);
    } finally {
      this.#inner.close(fd);
    }
  }

  /** Extends the file with `bytes` zeros (a preallocated tail, as Redpanda's). */
  appendZeros(path: string, bytes: number): void {
    const fd = this.#inner.open(path, 'write');
    try {
      this.#inner.write(fd, new Uint8Array(bytes), this.#inner.size(fd));
    } finally {
      this.#inner.close(fd);
    }
  }

  /** Cuts the file to `size` bytes (a torn write that lost its end). */
  truncateFile(path: string, size: number): void {
    const fd = this.#inner.open(path, 'write');
    try {
      this.#inner.ftruncate(fd, size);
    } finally {
      this.#inner.close(fd);
    }
  }

  // -------------------------------------------------------------- FileSystem

  /** Returns the armed fault that fires for this call, if any, and consumes it. */
  #fire(op: FaultOp, path: string | undefined): ArmedFault | undefined {
    this.calls[op]++;
    for (let i = 0; i < this.#faults.length; i++) {
      const f = this.#faults[i];
      if (f.op !== op) continue;
      if (f.pathEndsWith !== undefined && (path === undefined || !path.endsWith(f.pathEndsWith))) continue;
      if (f.skipLeft > 0) {
        f.skipLeft--;
        return undefined;
      }
      f.timesLeft--;
      if (f.timesLeft <= 0) this.#faults.splice(i, 1);
      return f;
    }
    return undefined;
  }

  #check(op: FaultOp, path: string | undefined): void {
    const f = this.#fire(op, path);
    if (f) throw fsError(f.code ?? 'EIO', op, path);
  }

  open(path: string, mode: OpenMode): number {
    this.#check('open', path);
    const fd = this.#inner.open(path, mode);
    this.#pathByFd.set(fd, path);
    return fd;
  }

  write(fd: number, bytes: Uint8Array, position: number): void {
    const path = this.#pathByFd.get(fd);
    const f = this.#fire('write', path);
    if (f) {
      const prefix = Math.min(f.afterBytes ?? 0, bytes.length);
      if (prefix > 0) this.#inner.write(fd, bytes.subarray(0, prefix), position);
      throw fsError(f.code ?? 'EIO', 'write', path);
    }
    this.#inner.write(fd, bytes, position);
  }

  read(fd: number, target: Uint8Array, position: number): number {
    this.#check('read', this.#pathByFd.get(fd));
    return this.#inner.read(fd, target, position);
  }

  fdatasync(fd: number): void {
    this.#check('fdatasync', this.#pathByFd.get(fd));
    this.#inner.fdatasync(fd);
  }

  /** Faults apply as to fdatasync; the callback comes on a later turn, as the real one's does. */
  fdatasyncAsync(fd: number, callback: (err: Error | null) => void): void {
    if (this.#holding) {
      this.#held.push({ path: this.#pathByFd.get(fd), start: () => this.#fdatasyncLater(fd, callback) });
      return;
    }
    this.#fdatasyncLater(fd, callback);
  }

  #fdatasyncLater(fd: number, callback: (err: Error | null) => void): void {
    setImmediate(() => {
      try {
        this.fdatasync(fd);
      } catch (err) {
        callback(err as Error);
        return;
      }
      callback(null);
    });
  }

  ftruncate(fd: number, length: number): void {
    this.#check('ftruncate', this.#pathByFd.get(fd));
    this.#inner.ftruncate(fd, length);
  }

  size(fd: number): number {
    return this.#inner.size(fd);
  }

  close(fd: number): void {
    this.#pathByFd.delete(fd);
    this.#inner.close(fd);
  }

  rename(from: string, to: string): void {
    this.#check('rename', from);
    this.#inner.rename(from, to);
  }

  unlink(path: string): void {
    this.#check('unlink', path);
    this.#inner.unlink(path);
  }

  readdir(path: string): string[] {
    return this.#inner.readdir(path);
  }

  mkdirp(path: string): void {
    this.#inner.mkdirp(path);
  }

  rmrf(path: string): void {
    this.#inner.rmrf(path);
  }

  exists(path: string): boolean {
    return this.#inner.exists(path);
  }

  readFile(path: string): Uint8Array {
    return this.#inner.readFile(path);
  }

  writeFile(path: string, bytes: Uint8Array): void {
    this.#check('writeFile', path);
    this.#inner.writeFile(path, bytes);
  }

  fsyncDir(path: string): void {
    this.#check('fsyncDir', path);
    this.#inner.fsyncDir(path);
  }
}

/** Joins path parts (re-exported so persist files need not import node:path). */
export function joinPath(...parts: string[]): string {
  return nodePath.join(...parts);
}

export function dirName(path: string): string {
  return nodePath.dirname(path);
}

export function baseName(path: string): string {
  return nodePath.basename(path);
}
