/**
 * Kafka's default partitioner for keyed records: murmur2 (MurmurHash2, 32 bit, seed
 * 0x9747b28c) over the key bytes, then `toPositive(hash) % partitions`, exactly as
 * org.apache.kafka.common.utils.Utils.murmur2 and BuiltInPartitioner do, so a key lands
 * in the same partition whether a Kafka client or this one wrote it.
 *
 * Browser-safe; owner: any thread; no state.
 */

/** Kafka's seed for murmur2 (Utils.murmur2). */
export const MURMUR2_SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/** Kafka's murmur2 of `bytes` as a signed 32-bit integer (Java's int). */
export function murmur2(bytes: Uint8Array): number {
  const length = bytes.length;
  let h = MURMUR2_SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = bytes[i4] | (bytes[i4 + 1] << 8) | (bytes[i4 + 2] << 16) | (bytes[i4 + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // Java's switch falls through 3 -> 2 -> 1; written as ifs (noFallthroughCasesInSwitch).
  const tail = length & ~3;
  const rest = length % 4;
  if (rest === 3) h ^= bytes[tail + 2] << 16;
  if (rest >= 2) h ^= bytes[tail + 1] << 8;
  if (rest >= 1) {
    h ^= bytes[tail];
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's Utils.toPositive: clears the sign bit (not Math.abs, which fails on MIN_VALUE). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/** The partition of a keyed record: toPositive(murmur2(key)) % partitions. */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  return toPositive(murmur2(key)) % partitions;
}
