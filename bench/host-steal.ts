/**
 * The host's steal time, from Linux's /proc/stat: the share of the vCPUs' time that the
 * hypervisor gave to other tenants while the vCPUs had work. On a shared VM the latency tail
 * follows it (docs/benchmarks.md, eleventh session), so `sluice bench` reports it beside each
 * latency run and each bare-path run.
 *
 * /proc/stat's first line: `cpu user nice system idle iowait irq softirq steal guest
 * guest_nice`, in clock ticks since boot, summed over the CPUs (guest time is already counted
 * in user and nice, so the total is the first eight). Null where it cannot be read (not Linux).
 *
 * Owner: none; reads a file, keeps no state.
 */
import { readFileSync } from 'node:fs';

/** Fields of /proc/stat's `cpu` line up to steal. */
const CPU_FIELDS = 8;
const STEAL_FIELD = 7;

export interface CpuTimes {
  steal: number;
  total: number;
}

/** Parses /proc/stat's text: the `cpu` line's steal and total ticks, or null. */
export function parseCpuTimes(procStat: string): CpuTimes | null {
  const line = procStat.split('\n', 1)[0];
  const parts = line.trim().split(/\s+/);
  if (parts[0] !== 'cpu' || parts.length < CPU_FIELDS + 1) return null;
  const fields = parts.slice(1, CPU_FIELDS + 1).map(Number);
  if (fields.some((n) => !Number.isSafeInteger(n) || n < 0)) return null;
  return { steal: fields[STEAL_FIELD], total: fields.reduce((a, b) => a + b, 0) };
}

export function readCpuTimes(): CpuTimes | null {
  try {
    return parseCpuTimes(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return null;
  }
}

/** The share of the time between two readings that was stolen (0 to 1), or null without both. */
export function stealShare(from: CpuTimes | null, to: CpuTimes | null): number | null {
  if (from === null || to === null || to.total <= from.total) return null;
  return Math.max(0, to.steal - from.steal) / (to.total - from.total);
}

/** Runs `run` and measures the host's steal share over it (null where unreadable). */
export async function stolenDuring<T>(run: () => Promise<T>): Promise<{ result: T; stealShare: number | null }> {
  const before = readCpuTimes();
  const result = await run();
  return { result, stealShare: stealShare(before, readCpuTimes()) };
}
