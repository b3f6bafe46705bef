// LogRing in one thread: a writer instance (data writer and entry writer at once, unless a
// test separates them) and a reader instance over the same SharedArrayBuffer. Races are
// staged deterministically by running writer steps in the middle of a reader's copy (see
// 'read returns null after overwrite'); free-running races are in
// test/integration/ring-log-threads.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import {
  LOG_RING_DATA_BYTES_MIN,
  LogRing,
  type LogRingRead,
} from '../../src/ring/log-ring.js';
import { prng, testSeed } from '../fixtures/ring-random.mjs';

const DATA_BYTES = LOG_RING_DATA_BYTES_MIN; // 64 KiB
const ENTRIES_MAX = 16;

function pair(dataBytes = DATA_BYTES, entriesMax = ENTRIES_MAX): { writer: LogRing; reader: LogRing } {
  const writer = LogRing.create({ dataBytes, entriesMax });
  return { writer, reader: new LogRing(writer.sab) };
}

/** Content of entry [firstKey, nextKey) of `length` bytes: a function of the keys only. */
function entryBytes(firstKey: number, nextKey: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (firstKey * 7 + nextKey * 3 + i) & 0xff;
  return bytes;
}

/**
 * Appends one entry as the two writers do (data writer: reserve, copy, commit; entry writer:
 * append with its keys); returns the data offset or -1.
 */
function append(ring: LogRing, firstKey: number, nextKey: number, length: number, entryWriter: LogRing = ring): number {
  const offset = ring.reserve(length);
  if (offset === -1) return -1;
  ring.data.set(entryBytes(firstKey, nextKey, length), offset);
  const entry = ring.reservedEntry;
  const position = ring.reservedPosition;
  ring.commit();
  entryWriter.append(entry, firstKey, nextKey, position, length);
  return offset;
}

/** Appends one rejected entry of `length` garbage bytes as void at `key`; returns its offset or -1. */
function appendVoid(ring: LogRing, key: number, length: number): number {
  const offset = ring.reserve(length);
  if (offset === -1) return -1;
  ring.data.fill(0xee, offset, offset + length);
  const entry = ring.reservedEntry;
  const position = ring.reservedPosition;
  ring.commit();
  ring.appendVoid(entry, key, position, length);
  return offset;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

function expectRead(result: LogRingRead | null, firstKey: number, nextKey: number, bytes: Uint8Array): void {
  expect(result).not.toBeNull();
  expect(result!.firstKey).toBe(firstKey);
  expect(result!.nextKey).toBe(nextKey);
  expect(Buffer.from(result!.bytes).equals(Buffer.from(bytes))).toBe(true);
}

describe('LogRing construction', () => {
  it.each([
    [0, 16], [1000, 16], [32 * 1024, 16], [96 * 1024, 16], [2 ** 31, 16],
    [DATA_BYTES, 0], [DATA_BYTES, 1], [DATA_BYTES, 3], [DATA_BYTES, 2 ** 21], [DATA_BYTES, 2.5],
  ])('rejects dataBytes %s with entriesMax %s as a RangeError', (dataBytes, entriesMax) => {
    expect(() => LogRing.create({ dataBytes, entriesMax })).toThrow(RangeError);
  });

  it('attaches to an existing ring and refuses a buffer that is not one', () => {
    const ring = LogRing.create({ dataBytes: 128 * 1024, entriesMax: 8 });
    const attached = new LogRing(ring.sab);
    expect(attached.dataBytes).toBe(128 * 1024);
    expect(attached.entriesMax).toBe(8);
    expect(attached.entryBytesMax).toBe(64 * 1024);
    expect(attached.data.length).toBe(128 * 1024);
    expect(() => new LogRing(new SharedArrayBuffer(ring.sab.byteLength))).toThrow(/not a LogRing/);
  });
});

describe('LogRing append, publish and read', () => {
  it('keeps committed entries invisible until publish', () => {
    const { writer, reader } = pair();
    expect(reader.read(0, 1000)).toBeNull();
    expect(reader.oldestKey()).toBe(-1);
    expect(reader.visibleNextKey()).toBe(-1);
    append(writer, 0, 5, 100);
    expect(reader.read(0, 1000)).toBeNull();
    expect(reader.visibleNextKey()).toBe(-1);
    writer.publish();
    expectRead(reader.read(0, 1000), 0, 5, entryBytes(0, 5, 100));
    expect(reader.oldestKey()).toBe(0);
    expect(reader.visibleNextKey()).toBe(5);
  });

  it('answers a key inside an entry with the whole entry, from its firstKey', () => {
    const { writer, reader } = pair();
    append(writer, 10, 20, 50);
    append(writer, 20, 21, 30);
    writer.publish();
    expectRead(reader.read(15, 50), 10, 20, entryBytes(10, 20, 50));
    expectRead(reader.read(19, 50), 10, 20, entryBytes(10, 20, 50));
    expectRead(reader.read(20, 1000), 20, 21, entryBytes(20, 21, 30));
  });

  it('copies into a lent buffer when the result fits it (at the alignment of the ring), else into a new one', () => {
    const { writer, reader } = pair();
    append(writer, 0, 3, 5); // the next entry starts 5 bytes past an 8-byte boundary
    append(writer, 3, 4, 6000);
    writer.publish();
    const into = new Uint8Array(6000 + 8);
    const lent = reader.read(3, 6000, into);
    expectRead(lent, 3, 4, entryBytes(3, 4, 6000));
    expect(lent!.bytes.buffer).toBe(into.buffer);
    expect(lent!.bytes.byteOffset % 8).toBe(5); // aligned like the entry in the ring
    const tooSmall = new Uint8Array(6000);
    const fresh = reader.read(3, 6000, tooSmall);
    expectRead(fresh, 3, 4, entryBytes(3, 4, 6000));
    expect(fresh!.bytes.buffer).not.toBe(tooSmall.buffer);
  });

  it('adds following entries while the total stays within maxBytes, and always returns the first', () => {
    const { writer, reader } = pair();
    append(writer, 0, 3, 100);
    append(writer, 3, 4, 200);
    append(writer, 4, 9, 300);
    writer.publish();
    const [a, b, c] = [entryBytes(0, 3, 100), entryBytes(3, 4, 200), entryBytes(4, 9, 300)];
    expectRead(reader.read(1, 10), 0, 3, a); // larger than maxBytes, still returned
    expectRead(reader.read(1, 299), 0, 3, a);
    expectRead(reader.read(1, 300), 0, 4, concat(a, b));
    expectRead(reader.read(1, 599), 0, 4, concat(a, b));
    expectRead(reader.read(0, 600), 0, 9, concat(a, b, c));
    expectRead(reader.read(3, 1 << 20), 3, 9, concat(b, c));
  });

  it('returns null below the oldest entry, in a gap between entries and at or past visibleNextKey', () => {
    const { writer, reader } = pair();
    append(writer, 100, 110, 10);
    append(writer, 120, 130, 10); // keys 110..119 are in no entry
    append(writer, 130, 140, 10);
    writer.publish(writer.appendedEnd - 1); // 130..139 stays pending
    expect(reader.read(99, 1000)).toBeNull();
    expect(reader.read(0, 1000)).toBeNull();
    expect(reader.read(110, 1000)).toBeNull();
    expect(reader.read(119, 1000)).toBeNull();
    expect(reader.read(130, 1000)).toBeNull();
    expect(reader.read(1e12, 1000)).toBeNull();
    expect(reader.visibleNextKey()).toBe(130);
    // A read stops at a gap: the keys missing there may be stored elsewhere (the owner
    // writes batches too large for the ring straight to disk), so what follows is not
    // the continuation of what was read.
    expectRead(reader.read(100, 1000), 100, 110, entryBytes(100, 110, 10));
    expectRead(reader.read(120, 1000), 120, 130, entryBytes(120, 130, 10));
  });

  it('accepts entries of zero bytes and of exactly entryBytesMax, and answers -1 above it', () => {
    const { writer, reader } = pair();
    expect(append(writer, 0, 1, 0)).toBe(0);
    expect(writer.reserve(writer.entryBytesMax + 1)).toBe(-1);
    expect(append(writer, 1, 2, writer.entryBytesMax)).toBe(0);
    writer.publish();
    expectRead(reader.read(0, 0), 0, 1, new Uint8Array(0));
    expectRead(reader.read(1, 0), 1, 2, entryBytes(1, 2, writer.entryBytesMax));
  });

  it('returns bytes aligned like the ring (a view into a slightly larger buffer) for fast copies', () => {
    const { writer, reader } = pair();
    for (let key = 0; key < 8; key++) append(writer, key, key + 1, 13 + key);
    writer.publish();
    for (let key = 0; key < 8; key++) {
      const result = reader.read(key, 1 << 20)!;
      expect(result.bytes.byteOffset).toBe(writer.entryDataOffset(key) % 8);
      expect(result.bytes.byteLength).toBe(Array.from({ length: 8 - key }, (_, k) => 13 + key + k).reduce((a, b) => a + b, 0));
      expect(Buffer.from(result.bytes.subarray(0, 13 + key)).equals(Buffer.from(entryBytes(key, key + 1, 13 + key)))).toBe(true);
    }
  });

  it('refuses keys that go back, appended entries that hold no key, and entries out of commit order', () => {
    const { writer } = pair();
    append(writer, 10, 20, 1);
    // Key checks come first: these throw before the (uncommitted) entry number is looked at.
    const e = writer.appendedEnd;
    expect(() => writer.append(e, 19, 25, 8, 1)).toThrow(/must not go back/);
    expect(() => writer.append(e, 20, 20, 8, 1)).toThrow(/firstKey < nextKey/);
    expect(() => writer.append(e, -1, 2, 8, 1)).toThrow();
    expect(() => writer.append(e, 2 ** 53, 2 ** 53 + 2, 8, 1)).toThrow();
    expect(() => writer.appendVoid(e, 19, 8, 0)).toThrow(/must not go back/);
    expect(() => writer.commit()).toThrow(/without a successful reserve/);
    expect(() => writer.reservedEntry).toThrow(/without a successful reserve/);
    // Entry numbers must follow the commits: one skipped or repeated is a programmer error.
    const offset = writer.reserve(4);
    const entry = writer.reservedEntry;
    const position = writer.reservedPosition;
    writer.commit();
    expect(() => writer.append(entry + 1, 20, 21, position, 4)).toThrow(/commit order/);
    expect(() => writer.append(entry - 1, 20, 21, position, 4)).toThrow(/commit order/);
    writer.append(entry + 2 ** 32, 20, 21, position, 4); // the command carries it mod 2^32
    expect(writer.entryDataOffset(entry)).toBe(offset);
    expect(append(writer, 21, 22, 1)).toBeGreaterThanOrEqual(0);
  });

  it('iterates pending entries by absolute index without allocating, and publishes a prefix', () => {
    const { writer, reader } = pair();
    const offsets = [append(writer, 0, 2, 10), append(writer, 2, 3, 20), append(writer, 3, 7, 30)];
    expect(writer.pendingStart).toBe(0);
    expect(writer.appendedEnd).toBe(3);
    for (let i = writer.pendingStart; i < writer.appendedEnd; i++) {
      expect(writer.entryDataOffset(i)).toBe(offsets[i]);
      expect(writer.entryLength(i)).toBe([10, 20, 30][i]);
      expect(writer.entryFirstKey(i)).toBe([0, 2, 3][i]);
      expect(writer.entryNextKey(i)).toBe([2, 3, 7][i]);
    }
    expect(offsets).toEqual([0, 10, 30]); // contiguous
    writer.publish(2);
    expect(writer.pendingStart).toBe(2);
    expect(reader.visibleNextKey()).toBe(3);
    writer.publish();
    expect(writer.pendingStart).toBe(3);
    expect(reader.visibleNextKey()).toBe(7);
    expect(() => writer.publish(2)).toThrow();
    expect(() => writer.entryLength(3)).toThrow(/is appended/);
  });
});

describe('LogRing wrap and eviction', () => {
  it('starts an entry that does not fit before the end at 0 and reads across the wrap in one copy', () => {
    const { writer, reader } = pair();
    const big = 30 * 1024;
    expect(append(writer, 0, 1, big)).toBe(0);
    expect(append(writer, 1, 2, big)).toBe(big);
    writer.publish();
    // 4 KiB left before the end: a 5 KiB entry goes to 0 and evicts entry 0 first.
    expect(append(writer, 2, 3, 5 * 1024)).toBe(0);
    writer.publish();
    expect(reader.oldestKey()).toBe(1);
    expect(reader.read(0, 1 << 20)).toBeNull();
    expectRead(reader.read(1, 1 << 20), 1, 3, concat(entryBytes(1, 2, big), entryBytes(2, 3, 5 * 1024)));
  });

  it('evicts the oldest published entries, only as many as the new entry needs', () => {
    const { writer, reader } = pair();
    for (let key = 0; key < 8; key++) append(writer, key, key + 1, 8 * 1024); // fills 64 KiB
    writer.publish();
    expect(reader.oldestKey()).toBe(0);
    append(writer, 8, 9, 8 * 1024 + 1); // needs two old entries' room
    writer.publish();
    expect(reader.oldestKey()).toBe(2);
    expect(reader.read(1, 1 << 20)).toBeNull();
    expectRead(reader.read(2, 8 * 1024), 2, 3, entryBytes(2, 3, 8 * 1024));
    expect(reader.visibleNextKey()).toBe(9);
  });

  it('never evicts an unpublished entry: reserve answers -1 until publish', () => {
    const { writer, reader } = pair();
    for (let key = 0; key < 8; key++) append(writer, key, key + 1, 8 * 1024);
    expect(writer.reserve(1)).toBe(-1);
    writer.publish(3);
    expect(append(writer, 8, 9, 8 * 1024)).toBe(0); // evicts entry 0 only
    expect(writer.reserve(16 * 1024 + 1)).toBe(-1); // needs entries 1, 2 and 3 (pending)
    expect(reader.oldestKey()).toBe(1); // and -1 evicted nothing
    writer.publish();
    expect(append(writer, 9, 10, 16 * 1024 + 1)).toBe(8 * 1024);
    expect(reader.oldestKey()).toBe(4);
  });

  it('answers -1 when every entry slot is pending, and evicts for a slot once published', () => {
    const { writer, reader } = pair(DATA_BYTES, 4);
    for (let key = 0; key < 4; key++) append(writer, key, key + 1, 10);
    expect(writer.reserve(10)).toBe(-1);
    writer.publish();
    expect(append(writer, 4, 5, 10)).toBe(40);
    writer.publish();
    expect(reader.oldestKey()).toBe(1);
    expectRead(reader.read(1, 1000), 1, 5, concat(...[1, 2, 3, 4].map((k) => entryBytes(k, k + 1, 10))));
  });

  it('voids the pending entries a truncation dropped, keeps those below it, and accepts lower keys afterwards', () => {
    const { writer, reader } = pair();
    append(writer, 100, 110, 10);
    writer.publish();
    append(writer, 110, 115, 10); // written before the failure: stays
    append(writer, 115, 120, 10); // lost with the truncation
    appendVoid(writer, 120, 10);
    append(writer, 120, 130, 10); // lost too
    expect(() => writer.voidPending(105)).toThrow(/below a published key/);
    writer.voidPending(115);
    expect(writer.entryIsVoid(1)).toBe(false);
    for (const i of [2, 3, 4]) {
      expect(writer.entryIsVoid(i)).toBe(true);
      expect(writer.entryFirstKey(i)).toBe(115);
    }
    writer.publish();
    expect(reader.visibleNextKey()).toBe(115);
    expectRead(reader.read(100, 1000), 100, 115, concat(entryBytes(100, 110, 10), entryBytes(110, 115, 10)));
    expect(reader.read(115, 1000)).toBeNull();
    append(writer, 115, 118, 10);
    writer.publish();
    expectRead(reader.read(110, 1000), 110, 118, concat(entryBytes(110, 115, 10), entryBytes(115, 118, 10)));
  });

  it('serves every published key a random workload leaves in the ring, with the right bytes (seeded)', () => {
    const seed = testSeed(0x109_0001);
    const next = prng(seed);
    const { writer, reader } = pair(DATA_BYTES, 32);
    const model = new Map<number, { nextKey: number; length: number }>(); // firstKey -> entry
    let key = 0;
    for (let step = 0; step < 5_000; step++) {
      const action = next() % 10;
      if (action < 6) {
        const firstKey = key + (next() % 4 === 0 ? next() % 3 : 0);
        const nextKey = firstKey + 1 + (next() % 5);
        const length = next() % 4 === 0 ? next() % (writer.entryBytesMax + 1) : next() % 2000;
        const rejected = next() % 8 === 0; // a rejected batch: a void entry, no key used
        const write = () => (rejected ? appendVoid(writer, key, length) : append(writer, firstKey, nextKey, length));
        if (write() === -1) {
          writer.publish(); // the owner flushes and publishes, the gateway tries again
          expect(write(), `seed ${seed} step ${step}`).toBeGreaterThanOrEqual(0);
        }
        if (rejected) continue;
        model.set(firstKey, { nextKey, length });
        key = nextKey;
      } else if (action < 8) {
        writer.publish();
      } else {
        const oldest = reader.oldestKey();
        const newest = reader.visibleNextKey();
        if (oldest < 0) continue;
        const probe = oldest + (next() % (newest - oldest));
        const maxBytes = next() % 40_000;
        const result = reader.read(probe, maxBytes);
        // Find the model entry holding the probe key, if any.
        let first = probe;
        while (first >= oldest && !model.has(first)) first -= 1;
        const entry = model.get(first);
        if (entry === undefined || probe >= entry.nextKey) {
          expect(result, `seed ${seed} step ${step}: key ${probe} is in a gap`).toBeNull();
          continue;
        }
        // One thread: nothing can race, so a key in the visible range must be served.
        expect(result, `seed ${seed} step ${step}: key ${probe}`).not.toBeNull();
        const parts: Uint8Array[] = [];
        let total = 0;
        let at = first;
        let lastNext = first;
        while (at < newest) {
          const e = model.get(at);
          if (e === undefined) break; // a gap ends the read
          if (parts.length > 0 && total + e.length > maxBytes) break;
          parts.push(entryBytes(at, e.nextKey, e.length));
          total += e.length;
          lastNext = e.nextKey;
          at = e.nextKey;
        }
        expect(result!.firstKey, `seed ${seed} step ${step}`).toBe(first);
        expect(result!.nextKey, `seed ${seed} step ${step}`).toBe(lastNext);
        expect(Buffer.from(result!.bytes).equals(Buffer.from(concat(...parts))), `seed ${seed} step ${step}`).toBe(true);
      }
    }
  });
});

describe('LogRing read returns null after overwrite', () => {
  // Runs `during` inside the reader's copy: the first copy into a target of `targetLength`
  // bytes (the reader's result array) calls it before (or after) copying.
  const originalSet = Uint8Array.prototype.set;
  const originalFill = Buffer.prototype.fill;
  afterEach(() => {
    Uint8Array.prototype.set = originalSet;
    Buffer.prototype.fill = originalFill;
  });

  /**
   * Runs `during` right before or after the reader's copy of `targetLength` bytes, whichever
   * primitive copyBytes uses for that length (`set` below MEMCPY_MIN_BYTES, Buffer's `fill`
   * from it on).
   */
  function interleave(targetLength: number, when: 'before' | 'after', during: () => void): void {
    let fired = false;
    const around = (isTheCopy: boolean, copy: () => void): void => {
      const trigger = !fired && isTheCopy;
      if (trigger && when === 'before') { fired = true; during(); }
      copy();
      if (trigger && when === 'after') { fired = true; during(); }
    };
    Uint8Array.prototype.set = function patchedSet(this: Uint8Array, source: ArrayLike<number>, offset?: number) {
      around(this.length === targetLength, () => originalSet.call(this, source, offset));
    } as typeof Uint8Array.prototype.set;
    Buffer.prototype.fill = function patchedFill(this: Buffer, ...args: Parameters<Buffer['fill']>) {
      around(this.length === targetLength, () => originalFill.apply(this, args));
      return this;
    } as typeof Buffer.prototype.fill;
  }

  /** A ring holding entries 0..7 of 8 KiB each, full and published. */
  function fullRing(): { writer: LogRing; reader: LogRing } {
    const rings = pair();
    for (let key = 0; key < 8; key++) append(rings.writer, key, key + 1, 8 * 1024);
    rings.writer.publish();
    return rings;
  }

  it('returns null when the writer overwrites the entry while the reader copies it', () => {
    const { writer, reader } = fullRing();
    interleave(8 * 1024, 'before', () => {
      // Evicts entry 0 and writes new bytes over it before the reader's copy runs.
      expect(append(writer, 8, 9, 8 * 1024)).toBe(0);
    });
    expect(reader.read(0, 8 * 1024)).toBeNull();
  });

  it('returns null when the entry is evicted after the copy, even though the copy happened to be intact', () => {
    const { writer, reader } = fullRing();
    interleave(8 * 1024, 'after', () => {
      expect(writer.reserve(8 * 1024)).toBe(0); // tails move; no byte written yet
    });
    expect(reader.read(0, 8 * 1024)).toBeNull();
  });

  it('returns the copy when only entries older than it were evicted meanwhile', () => {
    const { writer, reader } = fullRing();
    interleave(8 * 1024, 'before', () => {
      expect(append(writer, 8, 9, 8 * 1024)).toBe(0); // evicts entry 0 only
    });
    expectRead(reader.read(1, 8 * 1024), 1, 2, entryBytes(1, 2, 8 * 1024));
  });

  it('returns null when the entry is evicted to make room for a reservation the gateway then abandons', () => {
    const { writer, reader } = fullRing();
    interleave(16 * 1024, 'after', () => {
      expect(writer.reserve(16 * 1024)).toBe(0); // evicts entries 0 and 1; never committed
    });
    expect(reader.read(1, 16 * 1024)).toBeNull();
    expectRead(reader.read(2, 8 * 1024), 2, 3, entryBytes(2, 3, 8 * 1024));
  });
});

describe('LogRing void entries (rejected batches)', () => {
  it('skips void entries between, before and after readable ones, copying none of their bytes', () => {
    const { writer, reader } = pair();
    appendVoid(writer, 0, 50);
    append(writer, 0, 5, 100);
    appendVoid(writer, 5, 70);
    appendVoid(writer, 5, 0);
    append(writer, 5, 9, 30);
    appendVoid(writer, 9, 20);
    writer.publish();
    const [a, b] = [entryBytes(0, 5, 100), entryBytes(5, 9, 30)];
    expectRead(reader.read(0, 1 << 20), 0, 9, concat(a, b));
    expectRead(reader.read(3, 100), 0, 5, a); // b would pass maxBytes
    expectRead(reader.read(5, 1 << 20), 5, 9, b);
    expect(reader.read(9, 1 << 20)).toBeNull(); // only a void entry holds "9": nothing to read
    expect(reader.visibleNextKey()).toBe(9);
    expect(reader.oldestKey()).toBe(0);
  });

  it('never lets a void entry join a read across a wrap, and frees its room on eviction', () => {
    const { writer, reader } = pair();
    expect(append(writer, 0, 1, 30 * 1024)).toBe(0);
    expect(appendVoid(writer, 1, 30 * 1024)).toBe(30 * 1024);
    writer.publish();
    expect(append(writer, 1, 2, 5 * 1024)).toBe(0); // wraps, evicts entry 0
    writer.publish();
    expect(reader.read(0, 1 << 20)).toBeNull();
    expectRead(reader.read(1, 1 << 20), 1, 2, entryBytes(1, 2, 5 * 1024));
    expect(append(writer, 2, 3, 30 * 1024)).toBe(5 * 1024); // evicts the void entry
    writer.publish();
    expectRead(reader.read(1, 1 << 20), 1, 3, concat(entryBytes(1, 2, 5 * 1024), entryBytes(2, 3, 30 * 1024)));
  });

  it('counts void entries for slots and bytes: the data writer never needs to hear which were rejected', () => {
    const { writer, reader } = pair(DATA_BYTES, 4);
    for (let n = 0; n < 4; n++) appendVoid(writer, 0, 10);
    expect(writer.reserve(1)).toBe(-1); // four slots, all pending
    writer.publish();
    expect(append(writer, 0, 1, 10)).toBe(40);
    writer.publish();
    expectRead(reader.read(0, 1000), 0, 1, entryBytes(0, 1, 10));
  });
});

describe('LogRing with the data writer and the entry writer apart', () => {
  it('hands entries over by number and position; the entry writer never reserves, the data writer never keys', () => {
    const dataWriter = LogRing.create({ dataBytes: DATA_BYTES, entriesMax: 8 });
    const entryWriter = new LogRing(dataWriter.sab);
    const reader = new LogRing(dataWriter.sab);
    // Three batches in flight before the owner looks at any of them.
    const handed: { entry: number; position: number; length: number }[] = [];
    for (const length of [100, 200, 300]) {
      const offset = dataWriter.reserve(length);
      dataWriter.data.fill(length & 0xff, offset, offset + length);
      handed.push({ entry: dataWriter.reservedEntry, position: dataWriter.reservedPosition, length });
      dataWriter.commit();
    }
    expect(reader.read(0, 1 << 20)).toBeNull(); // committed is not visible
    entryWriter.append(handed[0].entry, 0, 1, handed[0].position, handed[0].length);
    entryWriter.appendVoid(handed[1].entry, 1, handed[1].position, handed[1].length);
    entryWriter.append(handed[2].entry, 1, 4, handed[2].position, handed[2].length);
    expect(reader.read(0, 1 << 20)).toBeNull(); // pending is not visible
    entryWriter.publish();
    const result = reader.read(0, 1 << 20)!;
    expect(result.firstKey).toBe(0);
    expect(result.nextKey).toBe(4);
    expect(result.bytes.length).toBe(400);
    expect(result.bytes[0]).toBe(100);
    expect(result.bytes[399]).toBe(300 & 0xff);
    // The data writer sees what the entry writer published and evicts it for room.
    for (let n = 0; n < 200; n++) {
      const offset = dataWriter.reserve(1000);
      expect(offset, `reservation ${n}`).toBeGreaterThanOrEqual(0);
      const entry = dataWriter.reservedEntry;
      const position = dataWriter.reservedPosition;
      dataWriter.commit();
      entryWriter.append(entry, 4 + n, 5 + n, position, 1000);
      entryWriter.publish();
    }
    expect(reader.visibleNextKey()).toBe(204);
  });

  it('answers -1 while the entries it must evict are committed but not yet appended or published', () => {
    const dataWriter = LogRing.create({ dataBytes: DATA_BYTES, entriesMax: 8 });
    const entryWriter = new LogRing(dataWriter.sab);
    const handed: [number, number][] = [];
    for (let n = 0; n < 8; n++) {
      dataWriter.reserve(8 * 1024);
      handed.push([dataWriter.reservedEntry, dataWriter.reservedPosition]);
      dataWriter.commit();
    }
    expect(dataWriter.reserve(1)).toBe(-1); // every slot and byte is committed
    entryWriter.append(handed[0][0], 0, 1, handed[0][1], 8 * 1024);
    expect(dataWriter.reserve(1)).toBe(-1); // appended, not published
    entryWriter.publish();
    expect(dataWriter.reserve(1)).toBe(0); // entry 0 evicted
  });
});

describe('LogRing.hideBelow', () => {
  it('hides only the published entries wholly below the key; readers then miss them and still read the rest', () => {
    const { writer, reader } = pair();
    append(writer, 0, 5, 100);
    append(writer, 5, 10, 100);
    append(writer, 10, 12, 100);
    writer.publish();
    append(writer, 12, 20, 100); // pending: never evicted
    writer.hideBelow(9); // [5, 10) reaches past 9: stays
    expect(reader.read(0, 1 << 20)).toBeNull();
    expectRead(reader.read(5, 100), 5, 10, entryBytes(5, 10, 100));
    writer.hideBelow(20);
    expect(reader.oldestKey()).toBe(-1); // every published entry is hidden; [12, 20) is pending
    expect(reader.read(5, 100)).toBeNull();
    expect(reader.read(10, 100)).toBeNull();
    writer.publish();
    expectRead(reader.read(12, 100), 12, 20, entryBytes(12, 20, 100));
    // Appends go on after hiding, with the ring's room intact, and hidden entries are evicted as usual.
    for (let k = 20; k < 200; k++) {
      expect(append(writer, k, k + 1, 4000)).toBeGreaterThanOrEqual(0);
      writer.publish();
    }
    expectRead(reader.read(199, 4000), 199, 200, entryBytes(199, 200, 4000));
  });
});
