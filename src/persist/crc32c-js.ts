/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) in plain JavaScript, slicing by
 * eight tables. Browser-safe: no Node-only import. The browser client computes its batch
 * CRCs with it; Node code uses ./crc32c.js (fast-crc32c, hardware-accelerated) instead.
 *
 * Owner: any thread; the module holds only the frozen tables built at load.
 */

const POLYNOMIAL_REFLECTED = 0x82f63b78;
const TABLES = 8;

function buildTables(): Uint32Array {
  const t = new Uint32Array(256 * TABLES);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL_REFLECTED : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < TABLES; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
}

const T = buildTables();

/** Continues a CRC-32C over more bytes: crc32cJsUpdate(crc32cJs(a), b) === crc32cJs(a ++ b). */
export function crc32cJsUpdate(crc: number, bytes: Uint8Array): number {
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const lo = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c =
      T[7 * 256 + (lo & 0xff)] ^
      T[6 * 256 + ((lo >>> 8) & 0xff)] ^
      T[5 * 256 + ((lo >>> 16) & 0xff)] ^
      T[4 * 256 + (lo >>> 24)] ^
      T[3 * 256 + bytes[i + 4]] ^
      T[2 * 256 + bytes[i + 5]] ^
      T[256 + bytes[i + 6]] ^
      T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32C of `bytes`, unsigned 32-bit. */
export function crc32cJs(bytes: Uint8Array): number {
  return crc32cJsUpdate(0, bytes);
}
