import { describe, expect, it } from 'vitest';
import {
  CRC_OFFSET,
  decodeRecoveryPoint,
  encodeRecoveryPoint,
  POINT_OFFSET,
  RECOVERY_POINT_BYTES,
  RECOVERY_POINT_MAGIC,
  validateRecoveryPoint,
  VERSION_OFFSET,
} from '../../src/persist/recovery-point.js';

describe('recovery point file format', () => {
  it('encodes the layout at the top of recovery-point.ts, big-endian, and decodes it back', () => {
    for (const point of [0, 1, 4096, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
      const bytes = encodeRecoveryPoint(point);
      expect(bytes.length).toBe(RECOVERY_POINT_BYTES);
      const view = new DataView(bytes.buffer);
      expect(view.getUint32(0, false)).toBe(RECOVERY_POINT_MAGIC);
      expect(view.getUint16(VERSION_OFFSET, false)).toBe(1);
      expect(view.getBigInt64(POINT_OFFSET, false)).toBe(BigInt(point));
      expect(validateRecoveryPoint(bytes)).toBeNull();
      expect(decodeRecoveryPoint(bytes)).toEqual({ ok: true, recoveryPoint: point });
    }
  });

  it('rejects every flipped bit, every truncation, trailing bytes and a zero-filled file', () => {
    const good = encodeRecoveryPoint(123_456);
    for (let i = 0; i < good.length * 8; i++) {
      const bad = good.slice();
      bad[i >> 3] ^= 1 << (i & 7);
      expect(decodeRecoveryPoint(bad).ok, `bit ${i}`).toBe(false);
    }
    for (let n = 0; n < good.length; n++) expect(decodeRecoveryPoint(good.subarray(0, n)).ok).toBe(false);
    expect(decodeRecoveryPoint(new Uint8Array([...good, 0])).ok).toBe(false);
    expect(decodeRecoveryPoint(new Uint8Array(RECOVERY_POINT_BYTES))).toMatchObject({ ok: false, reason: expect.stringMatching(/magic/) });
  });

  it('rejects a negative point even with a matching CRC', async () => {
    const { crc32c } = await import('../../src/persist/crc32c.js');
    const bytes = encodeRecoveryPoint(1);
    const view = new DataView(bytes.buffer);
    view.setBigInt64(POINT_OFFSET, -1n, false);
    view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), false);
    expect(decodeRecoveryPoint(bytes)).toMatchObject({ ok: false, reason: expect.stringMatching(/out of range/) });
  });
});
