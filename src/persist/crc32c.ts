/**
 * CRC-32C (Castagnoli), as RecordBatch v2 uses it, through fast-crc32c.
 *
 * fast-crc32c loads the hardware-accelerated sse4_crc32 native addon when it built (about
 * 11 GB/s here) and otherwise falls back to a JavaScript table implementation (about
 * 0.5 GB/s). The fallback is silent, so we find out which one loaded and say so at start
 * (`crc32cImplementation`). Owner: any thread; the module holds only the loaded function.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface Crc32cModule {
  calculate(data: Uint8Array | string, initial?: number): number;
}

const fast = require('fast-crc32c') as Crc32cModule;

function detectImplementation(): 'native' | 'js' {
  try {
    const native = require('sse4_crc32') as Crc32cModule;
    return native.calculate === fast.calculate ? 'native' : 'js';
  } catch {
    return 'js';
  }
}

/** 'native' (sse4_crc32, hardware) or 'js' (the slow fallback). Log it at start. */
export const crc32cImplementation: 'native' | 'js' = detectImplementation();

/** CRC-32C of `bytes`, unsigned 32-bit. Accepts views over SharedArrayBuffer. */
export function crc32c(bytes: Uint8Array): number {
  return fast.calculate(bytes) >>> 0;
}

/**
 * Continues a CRC-32C over more bytes: crc32cUpdate(crc32c(a), b) === crc32c(a ++ b). Lets
 * recovery and verify check a large batch through a fixed-size read buffer.
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  return fast.calculate(bytes, crc) >>> 0;
}
