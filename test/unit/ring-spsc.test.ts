// SpscRing in one thread: a writer instance and a reader instance over the same
// SharedArrayBuffer, driven step by step. Cross-thread behaviour is in
// test/integration/ring-threads.test.ts.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  CAPACITY_BYTES_MAX,
  DATA_OFFSET,
  FRAME_HEADER_BYTES as H,
  PAD_MARKER,
  READ_COUNTER_OFFSET,
  SpscRing,
  WRITE_COUNTER_OFFSET,
} from '../../src/ring/spsc-ring.js';
import { prng, testSeed } from '../fixtures/ring-random.mjs';

const CAPACITY_BYTES = 4096;

/** Bytes a frame occupies in the ring (header + payload, 8-aligned). */
function frameBytes(payloadBytes: number): number {
  return (payloadBytes + H + 7) & ~7;
}

/** A writer and a reader over a fresh ring whose counters start at `counter` (and `readCounter`). */
function pairAt(counter: number, capacityBytes = CAPACITY_BYTES, readCounter = counter): { writer: SpscRing; reader: SpscRing } {
  const created = SpscRing.create(capacityBytes);
  const cells = new Int32Array(created.sab);
  cells[WRITE_COUNTER_OFFSET >> 2] = counter | 0;
  cells[READ_COUNTER_OFFSET >> 2] = readCounter | 0;
  return { writer: new SpscRing(created.sab), reader: new SpscRing(created.sab) };
}

function fillPayload(ring: SpscRing, offset: number, length: number, tag: number): void {
  for (let i = 0; i < length; i++) ring.data[offset + i] = (tag + i * 13) & 0xff;
}

function payloadMatches(ring: SpscRing, offset: number, length: number, tag: number): boolean {
  for (let i = 0; i < length; i++) if (ring.data[offset + i] !== ((tag + i * 13) & 0xff)) return false;
  return true;
}

describe('SpscRing construction', () => {
  it.each([0, -4096, 1000, 2048, 4095, 3 * 4096, 6144, 2 ** 31, NaN, 4096.5])(
    'rejects capacity %s with a RangeError', (capacityBytes) => {
      expect(() => SpscRing.create(capacityBytes)).toThrow(RangeError);
    });

  it('accepts powers of two from 4 KiB and reports frameBytesMax as a quarter of the ring', () => {
    const ring = SpscRing.create(4096);
    expect(ring.capacityBytes).toBe(4096);
    expect(ring.data.length).toBe(4096);
    expect(ring.view.byteLength).toBe(4096);
    expect(ring.sab.byteLength).toBe(DATA_OFFSET + 4096);
    expect(ring.frameBytesMax).toBe(1024);
    expect(SpscRing.frameBytesMax(1 << 20)).toBe(1 << 18);
    expect(CAPACITY_BYTES_MAX).toBe(2 ** 30);
  });

  it('attaches to an existing ring and refuses a buffer that is not one', () => {
    const ring = SpscRing.create(8192);
    expect(new SpscRing(ring.sab).capacityBytes).toBe(8192);
    expect(() => new SpscRing(new SharedArrayBuffer(DATA_OFFSET + 4096))).toThrow(/not an SpscRing/);
    expect(() => new SpscRing(new SharedArrayBuffer(16))).toThrow();
  });

  it('throws RangeError for a frame larger than frameBytesMax or not a whole byte count', () => {
    const ring = SpscRing.create(4096);
    expect(ring.reserve(1024)).toBeGreaterThanOrEqual(0);
    expect(() => ring.reserve(1025)).toThrow(RangeError);
    expect(() => ring.reserve(-1)).toThrow(RangeError);
    expect(() => ring.reserve(1.5)).toThrow(RangeError);
  });
});

describe('SpscRing frames', () => {
  it('delivers frames in order with their lengths, starting empty', () => {
    const { writer, reader } = pairAt(0);
    expect(reader.isEmpty()).toBe(true);
    expect(reader.peek()).toBe(-1);
    for (const [tag, length] of [[1, 0], [2, 1], [3, 7], [4, 8], [5, 100]] as const) {
      const offset = writer.reserve(length);
      fillPayload(writer, offset, length, tag);
      writer.commit();
    }
    for (const [tag, length] of [[1, 0], [2, 1], [3, 7], [4, 8], [5, 100]] as const) {
      const offset = reader.peek();
      expect(reader.frameLength).toBe(length);
      expect(payloadMatches(reader, offset, length, tag)).toBe(true);
      expect(reader.peek()).toBe(offset); // peeking again returns the same frame
      reader.release();
    }
    expect(reader.isEmpty()).toBe(true);
    expect(writer.freeBytes()).toBe(CAPACITY_BYTES);
  });

  it('wraps at every 8-byte alignment near the end for payloads of 0 to 64 bytes', () => {
    for (let gapBytes = 8; gapBytes <= 80; gapBytes += 8) {
      for (let length = 0; length <= 64; length++) {
        const { writer, reader } = pairAt(CAPACITY_BYTES - gapBytes);
        const offset = writer.reserve(length);
        const fits = frameBytes(length) <= gapBytes;
        expect(offset, `gap ${gapBytes} length ${length}`).toBe(fits ? CAPACITY_BYTES - gapBytes + H : H);
        fillPayload(writer, offset, length, gapBytes + length);
        writer.commit();
        if (!fits) expect(writer.view.getUint32(CAPACITY_BYTES - gapBytes, true)).toBe(PAD_MARKER);
        // The padding counts as used space until the reader passes it.
        const usedBytes = (fits ? 0 : gapBytes) + frameBytes(length);
        expect(writer.freeBytes()).toBe(CAPACITY_BYTES - usedBytes);
        expect(reader.peek()).toBe(offset);
        expect(reader.frameLength).toBe(length);
        expect(payloadMatches(reader, offset, length, gapBytes + length)).toBe(true);
        reader.release();
        expect(reader.isEmpty()).toBe(true);
        expect(writer.freeBytes()).toBe(CAPACITY_BYTES);
        // The next frame follows on without a gap (an empty frame always fits before the end).
        const nextOffset = writer.reserve(0);
        expect(nextOffset).toBe(((offset - H + frameBytes(length)) & (CAPACITY_BYTES - 1)) + H);
      }
    }
  });

  it('puts every payload on an 8-byte boundary, with the length and a zero word in front', () => {
    const { writer, reader } = pairAt(0);
    for (let length = 0; length < 40; length++) {
      const offset = writer.reserve(length);
      expect(offset % 8).toBe(0);
      writer.commit();
      expect(writer.view.getUint32(offset - H, true)).toBe(length);
      expect(writer.view.getUint32(offset - H + 4, true)).toBe(0);
      expect(reader.peek()).toBe(offset);
      reader.release();
    }
  });

  it('keeps working when the 32-bit counters wrap past 2^31 and 2^32', () => {
    for (const start of [2 ** 31 - 64, 2 ** 32 - 64]) {
      const { writer, reader } = pairAt(start);
      for (let frame = 0; frame < 40; frame++) {
        const offset = writer.reserve(3);
        fillPayload(writer, offset, 3, frame);
        writer.commit();
        const read = reader.peek();
        expect(reader.frameLength).toBe(3);
        expect(payloadMatches(reader, read, 3, frame)).toBe(true);
        reader.release();
      }
      expect(writer.freeBytes()).toBe(CAPACITY_BYTES);
    }
  });
});

describe('SpscRing full and empty edges', () => {
  it('accepts exactly capacity / 16 frames of 8 bytes, then answers -1 until the reader releases one', () => {
    const { writer, reader } = pairAt(0);
    for (let frame = 0; frame < CAPACITY_BYTES / 16; frame++) {
      const offset = writer.reserve(8);
      expect(offset).toBe(frame * 16 + H);
      writer.view.setUint32(offset, frame, true);
      writer.commit();
    }
    expect(writer.freeBytes()).toBe(0);
    expect(writer.reserve(0)).toBe(-1);
    expect(writer.reserve(8)).toBe(-1);
    expect(reader.peek()).toBe(H);
    reader.release();
    expect(writer.reserve(9)).toBe(-1); // a 24-byte frame still does not fit in 16 bytes
    expect(writer.reserve(8)).toBe(H); // wraps onto the released frame
    writer.view.setUint32(H, 99999, true);
    writer.commit();
    for (let frame = 1; frame < CAPACITY_BYTES / 16; frame++) {
      const offset = reader.peek();
      expect(reader.view.getUint32(offset, true)).toBe(frame); // nothing unread was overwritten
      reader.release();
    }
    expect(reader.view.getUint32(reader.peek(), true)).toBe(99999);
  });

  it('answers -1 when the free bytes hold the frame but not the padding it needs before it', () => {
    // Write position 16 bytes before the end, 32 bytes free in all. The unread bytes in
    // between are zero, which reads as frames of length 0 (8 bytes each).
    const { writer, reader } = pairAt(CAPACITY_BYTES - 16, CAPACITY_BYTES, CAPACITY_BYTES - 16 - (CAPACITY_BYTES - 32));
    expect(writer.freeBytes()).toBe(32);
    expect(writer.reserve(12)).toBe(-1); // 24-byte frame: 16 bytes of padding + 24 > 32
    expect(writer.reserve(8)).toBe(CAPACITY_BYTES - 16 + H); // a 16-byte frame fits before the end
    expect(reader.peek()).toBe(16 + H);
    expect(reader.frameLength).toBe(0);
    reader.release(); // 40 bytes free now
    expect(writer.reserve(12)).toBe(H);
    writer.commit();
    expect(writer.view.getUint32(CAPACITY_BYTES - 16, true)).toBe(PAD_MARKER);
    expect(writer.freeBytes()).toBe(0);
  });

  it('never overwrites unread bytes under a random mix of sizes, shrinks and partial drains (seeded)', () => {
    const seed = testSeed(0x5eed_0001);
    const next = prng(seed);
    const { writer, reader } = pairAt(next() | 0);
    const pending: Array<{ tag: number; length: number; bytes: number }> = [];
    let usedBytes = 0; // model: bytes between read and write counters, padding included
    let writePosition = writer.reserve(0) - H; // position of the write counter in data
    let tag = 0;
    for (let step = 0; step < 20_000; step++) {
      if (next() % 3 !== 0) {
        const reserved = next() % (writer.frameBytesMax + 1);
        const length = next() % 4 === 0 ? next() % (reserved + 1) : reserved;
        const untilEnd = CAPACITY_BYTES - writePosition;
        const neededBytes = (frameBytes(reserved) <= untilEnd ? 0 : untilEnd) + frameBytes(reserved);
        const offset = writer.reserve(reserved);
        expect(offset === -1, `seed ${seed} step ${step}`).toBe(neededBytes > CAPACITY_BYTES - usedBytes);
        if (offset === -1) continue;
        fillPayload(writer, offset, length, tag);
        writer.commit(length);
        const padBytes = frameBytes(reserved) <= untilEnd ? 0 : untilEnd;
        pending.push({ tag, length, bytes: padBytes + frameBytes(length) });
        usedBytes += padBytes + frameBytes(length);
        writePosition = (offset - H + frameBytes(length)) & (CAPACITY_BYTES - 1);
        tag += 1;
      } else {
        let drain = next() % 5;
        while (drain-- > 0 && pending.length > 0) {
          const expected = pending.shift()!;
          const offset = reader.peek();
          expect(offset, `seed ${seed} step ${step}`).toBeGreaterThanOrEqual(0);
          expect(reader.frameLength, `seed ${seed} step ${step}`).toBe(expected.length);
          expect(payloadMatches(reader, offset, expected.length, expected.tag), `seed ${seed} step ${step}`).toBe(true);
          reader.release();
          usedBytes -= expected.bytes;
        }
        expect(CAPACITY_BYTES - writer.freeBytes(), `seed ${seed} step ${step}`).toBe(usedBytes);
        if (pending.length === 0) expect(reader.isEmpty(), `seed ${seed}`).toBe(true);
      }
    }
  });
});

describe('SpscRing commit', () => {
  it('shrinks the frame to the committed length and places the next frame right after it', () => {
    const { writer, reader } = pairAt(0);
    expect(writer.reserve(100)).toBe(H);
    fillPayload(writer, H, 10, 7);
    writer.commit(10);
    expect(writer.reserve(0)).toBe(frameBytes(10) + H);
    writer.commit();
    expect(reader.peek()).toBe(H);
    expect(reader.frameLength).toBe(10);
    expect(payloadMatches(reader, H, 10, 7)).toBe(true);
    reader.release();
    expect(reader.peek()).toBe(frameBytes(10) + H);
    expect(reader.frameLength).toBe(0);
  });

  it('refuses to grow a frame at commit, and to commit without a reservation', () => {
    const { writer } = pairAt(0);
    expect(() => writer.commit()).toThrow(/without a successful reserve/);
    writer.reserve(10);
    expect(() => writer.commit(11)).toThrow(/only shrink/);
    expect(writer.reserve(0)).toBe(H); // the earlier reservation is replaced, not leaked
    writer.commit();
    expect(() => writer.commit()).toThrow(/without a successful reserve/);
    writer.reserve(CAPACITY_BYTES / 4);
    while (writer.reserve(CAPACITY_BYTES / 4) !== -1) writer.commit();
    expect(() => writer.commit()).toThrow(/without a successful reserve/); // -1 clears it
  });

  it('lets a second reserve replace the first one, padding decision included', () => {
    const { writer, reader } = pairAt(CAPACITY_BYTES - 16);
    expect(writer.reserve(100)).toBe(H); // would need to skip to 0
    expect(writer.reserve(8)).toBe(CAPACITY_BYTES - 16 + H); // fits before the end
    writer.commit();
    expect(writer.freeBytes()).toBe(CAPACITY_BYTES - 16);
    expect(reader.peek()).toBe(CAPACITY_BYTES - 16 + H);
    expect(reader.frameLength).toBe(8);
  });

  it('returns true only when the commit makes the ring go from empty to non-empty', () => {
    const { writer, reader } = pairAt(0);
    writer.reserve(1);
    expect(writer.commit()).toBe(true);
    writer.reserve(1);
    expect(writer.commit()).toBe(false);
    reader.peek();
    reader.release();
    writer.reserve(1);
    expect(writer.commit()).toBe(false); // one frame was still unread
    reader.peek();
    reader.release();
    reader.peek();
    reader.release();
    writer.reserve(1);
    expect(writer.commit()).toBe(true);
  });
});

describe('SpscRing batched release', () => {
  it('gives space back only at releaseAdvanced, after any number of advance calls', () => {
    const { writer, reader } = pairAt(0);
    for (let frame = 0; frame < 10; frame++) {
      writer.view.setUint32(writer.reserve(8), frame, true);
      writer.commit();
    }
    for (let frame = 0; frame < 10; frame++) {
      const offset = reader.peek();
      expect(reader.view.getUint32(offset, true)).toBe(frame);
      reader.advance();
    }
    expect(reader.peek()).toBe(-1);
    expect(writer.freeBytes()).toBe(CAPACITY_BYTES - 160);
    reader.releaseAdvanced();
    expect(writer.freeBytes()).toBe(CAPACITY_BYTES);
    expect(() => reader.advance()).toThrow(/without a peeked frame/);
  });
});

describe('SpscRing waiting in one thread', () => {
  it('wait returns true at once when a frame is there and false after the timeout when empty', () => {
    const { writer, reader } = pairAt(0);
    expect(reader.wait(1)).toBe(false);
    writer.reserve(8);
    writer.commit();
    expect(reader.wait(10_000)).toBe(true);
  });

  it('waitAsync resolves at once when a frame is there', async () => {
    const { writer, reader } = pairAt(0);
    writer.reserve(8);
    writer.commit();
    const startedMs = performance.now();
    await reader.waitAsync(10_000);
    expect(performance.now() - startedMs).toBeLessThan(1000);
  });

  it('waitAsync resolves on the notify of a commit that makes the ring non-empty', async () => {
    const { writer, reader } = pairAt(0);
    const startedMs = performance.now();
    const waiting = reader.waitAsync(900);
    writer.reserve(8);
    expect(writer.commit()).toBe(true);
    await waiting;
    expect(performance.now() - startedMs).toBeLessThan(500);
    expect(reader.peek()).toBe(H);
  });

  it.each([true, false])('waitAsync resolves after its timeout when nothing arrives (keepAlive %s)', async (keepAlive) => {
    const { reader } = pairAt(0);
    const startedMs = performance.now();
    await reader.waitAsync(20, keepAlive);
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(15);
    expect(reader.isEmpty()).toBe(true);
  });

  it('waitAsync without keepAlive resolves on a commit too', async () => {
    const { writer, reader } = pairAt(0);
    const waiting = reader.waitAsync(900, false);
    writer.reserve(8);
    expect(writer.commit()).toBe(true);
    await waiting;
    expect(reader.peek()).toBe(H);
  });

  it('waitAsyncUntilWoken resolves at once when a frame is there, on a commit, and on wake with the ring empty', async () => {
    const { writer, reader } = pairAt(0);
    writer.reserve(8);
    writer.commit();
    await reader.waitAsyncUntilWoken();
    reader.peek();
    reader.release();
    let resolved = false;
    const onCommit = reader.waitAsyncUntilWoken().then(() => (resolved = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(resolved).toBe(false); // no timeout: only a notify ends it
    writer.reserve(8);
    expect(writer.commit()).toBe(true);
    await onCommit;
    expect(reader.peek()).toBeGreaterThanOrEqual(0);
    reader.release();
    const onWake = reader.waitAsyncUntilWoken();
    writer.wake(); // as a watchdog on any thread would
    await onWake;
    expect(reader.isEmpty()).toBe(true);
    // The sleep flag is down again: a commit into the empty ring finds no sleeper.
    writer.reserve(8);
    expect(writer.commit()).toBe(true);
    expect(reader.peek()).toBeGreaterThanOrEqual(0);
  });

  it.each([
    [true, 'resolved\n', 0],
    [false, '', 13],
  ])('a process awaiting only waitAsync stays alive until the timeout with keepAlive %s', (keepAlive, printed, status) => {
    // Without keepAlive nothing holds the event loop: the process exits with the wait
    // pending (13: Node's exit code for a top-level await that never settled).
    const ringUrl = new URL('../../dist/src/ring/spsc-ring.js', import.meta.url).href;
    const script = `const { SpscRing } = await import(${JSON.stringify(ringUrl)});
      const r = new SpscRing(SpscRing.create(4096).sab);
      await r.waitAsync(200, ${keepAlive});
      process.stdout.write('resolved\\n');`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    expect(run.stdout).toBe(printed);
    expect(run.status).toBe(status);
  });

  it('waitForSpace returns true at once when the frame fits and false after the timeout when full', () => {
    const { writer } = pairAt(0);
    expect(writer.waitForSpace(1024, 10_000)).toBe(true);
    while (writer.reserve(1024) !== -1) writer.commit();
    expect(writer.waitForSpace(1024, 5)).toBe(false);
    expect(writer.waitForSpace(0, 5)).toBe(true); // 1000 bytes are still free
    while (writer.reserve(0) !== -1) writer.commit();
    expect(writer.freeBytes()).toBe(0);
    expect(writer.waitForSpace(0, 5)).toBe(false);
  });
});
