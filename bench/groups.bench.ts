/**
 * The consumer-group benchmarks of issue 4, against a `sluice start` broker in a child
 * process:
 *
 *   node dist/bench/groups.bench.js [--smoke] [--runs N] [--records N] [--session-ms MS]
 *
 * 1. Rebalance time: a group of 10 members (10 clients in this process) over a topic of
 *    100 partitions. A clean leave (Consumer.close: commit, LEAVE_GROUP) is timed from the
 *    close() call until the survivors have been handed every partition of the leaver (their
 *    onAssigned callbacks); a death (the member's socket closed without LEAVE_GROUP) from
 *    the close until the same. Targets: clean leave under 100 ms; death under the session
 *    timeout plus 2 heartbeat intervals.
 * 2. Consume throughput of a 4-member group (4 processes, bench/groups-worker.ts) against
 *    one plain consumer process on the same stored backlog (8 partitions, 100-byte records).
 * 3. Commit throughput: one member committing one partition's offset per COMMIT_OFFSETS,
 *    durable (acks=all on __consumer_offsets), with 1 and 32 commits in flight.
 *
 * Figures are medians over the runs. Owner: the main thread of the bench process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Consumer, type Sluice } from '../src/client/index.js';
import { crc32c } from '../src/persist/crc32c.js';
import { Op } from '../src/ws-gateway/frames.js';
import { median, startBroker } from './ws.bench.js';

export const TARGETS = Object.freeze({ cleanLeaveMs: 100 });
const REBALANCE_MEMBERS = 10;
const REBALANCE_PARTITIONS = 100;
const CONSUME_PARTITIONS = 8;
const CONSUME_MEMBERS = 4;
const CONSUME_WINDOW_BYTES = 4 * 1024 * 1024;
const RECORD_VALUE_BYTES = 88;
const COMMIT_RUN_MS = 2_000;
/** Deadline of any one wait. */
const WAIT_MS = 120_000;

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

export interface GroupsBenchOptions {
  runs: number;
  records: number;
  sessionTimeoutMs: number;
}

export interface GroupsBenchResult {
  machine: string;
  options: GroupsBenchOptions;
  cleanLeaveMs: number[];
  deathMs: number[];
  deathLimitMs: number;
  /** Steady rates (10% to 90% of the records). */
  singleRecordsPerSec: number[];
  groupRecordsPerSec: number[];
  /** From spawning the processes to the last record. */
  singleWholeRecordsPerSec: number[];
  groupWholeRecordsPerSec: number[];
  commitsPerSecInFlight1: number[];
  commitsPerSecInFlight32: number[];
}

async function until(what: string, fn: () => boolean | Promise<boolean>, stepMs = 5): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

// ------------------------------------------------------------ 1. rebalance

interface BenchMember {
  client: Sluice;
  consumer: Consumer;
  /** performance.now() when each partition was last handed to this member. */
  assignedAt: Map<number, number>;
}

async function startMember(url: string, group: string, topic: string, sessionTimeoutMs: number): Promise<BenchMember> {
  const client = await connect({ url, clientId: 'rebalance', crc32c });
  const assignedAt = new Map<number, number>();
  const consumer = client.consumer({
    groupId: group,
    topics: [topic],
    sessionTimeoutMs,
    onAssigned: (ps) => {
      const now = performance.now();
      for (const p of ps) assignedAt.set(p.partition, now);
    },
  });
  return { client, consumer, assignedAt };
}

async function stable(admin: Sluice, group: string, members: number, partitions: number): Promise<void> {
  await until(`${members} members sharing ${partitions} partitions`, async () => {
    const d = await admin.describeGroup(group);
    return d.members.length === members && d.members.every((m) => m.revoking.length === 0) && d.members.reduce((n, m) => n + m.partitions.length, 0) === partitions;
  }, 20);
}

async function ownedBy(admin: Sluice, group: string, memberId: string): Promise<number[]> {
  const d = await admin.describeGroup(group);
  return d.members.find((m) => m.memberId === memberId)?.partitions.map((p) => p.partition) ?? [];
}

/** Time from `t0` until every partition in `moved` was handed to a member in `survivors` after t0. */
async function handedOver(survivors: BenchMember[], moved: number[], t0: number): Promise<number> {
  let last = 0;
  await until('the moved partitions handed to the survivors', () => {
    last = 0;
    for (const p of moved) {
      const at = Math.max(...survivors.map((m) => m.assignedAt.get(p) ?? 0));
      if (at < t0) return false;
      last = Math.max(last, at);
    }
    return true;
  }, 1);
  return last - t0;
}

async function rebalanceRun(url: string, admin: Sluice, run: number, sessionTimeoutMs: number): Promise<{ cleanMs: number; deathMs: number }> {
  const topic = `rebalance-${run}`;
  const group = `rebalance-${run}`;
  await admin.createTopic(topic, { partitions: REBALANCE_PARTITIONS });
  const members: BenchMember[] = [];
  for (let i = 0; i < REBALANCE_MEMBERS; i++) members.push(await startMember(url, group, topic, sessionTimeoutMs));
  await stable(admin, group, REBALANCE_MEMBERS, REBALANCE_PARTITIONS);

  // Clean leave.
  const leaver = members.shift()!;
  const leaverPartitions = await ownedBy(admin, group, leaver.consumer.group!.memberId);
  let t0 = performance.now();
  await leaver.consumer.close();
  const cleanMs = await handedOver(members, leaverPartitions, t0);
  leaver.client.connection.close();
  await stable(admin, group, REBALANCE_MEMBERS - 1, REBALANCE_PARTITIONS);

  // Death: the socket goes away without LEAVE_GROUP; the session timeout removes the member.
  const victim = members.shift()!;
  const victimPartitions = await ownedBy(admin, group, victim.consumer.group!.memberId);
  t0 = performance.now();
  victim.client.connection.close();
  const deathMs = await handedOver(members, victimPartitions, t0);

  for (const m of members) await m.client.close();
  await admin.deleteTopic(topic);
  return { cleanMs, deathMs };
}

// ------------------------------------------------------------ 2. consume throughput

async function fillTopic(admin: Sluice, topic: string, records: number): Promise<void> {
  await admin.createTopic(topic, { partitions: CONSUME_PARTITIONS });
  const producer = admin.producer({ acks: 1, lingerMs: 5, batchBytes: 256 * 1024 });
  const value = new Uint8Array(RECORD_VALUE_BYTES).fill(0x61);
  const CHUNK = 10_000;
  for (let i = 0; i < records; i += CHUNK) {
    const n = Math.min(CHUNK, records - i);
    await Promise.all(Array.from({ length: n }, (_, j) => producer.send({ topic, partition: (i + j) % CONSUME_PARTITIONS, value })));
  }
  await producer.flush();
  await producer.close();
}

/**
 * Starts `processes` workers (group "-" = one plain consumer) and measures the steady
 * rate: records between 10% and 90% of `records` over the time between them (process
 * start-up, joins and the first assignment churn, and the tail are left out). Also the
 * whole time from spawning to the last record.
 */
async function consumeRun(url: string, topic: string, group: string, processes: number, records: number): Promise<{ steady: number; whole: number }> {
  const children: ChildProcess[] = [];
  const counts: number[] = new Array(processes).fill(0);
  const t0 = performance.now();
  let t10 = 0;
  let t90 = 0;
  const total = () => counts.reduce((a, b) => a + b, 0);
  try {
    for (let i = 0; i < processes; i++) {
      const child = spawn(process.execPath, [here('./groups-worker.js'), url, topic, group, String(CONSUME_WINDOW_BYTES)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      createInterface({ input: child.stdout! }).on('line', (l) => {
        try {
          counts[i] = (JSON.parse(l) as { count: number }).count;
        } catch {
          // not a count line
        }
        const n = total();
        if (t10 === 0 && n >= records * 0.1) t10 = performance.now();
        if (t90 === 0 && n >= records * 0.9) t90 = performance.now();
      });
    }
    await until(`${records} records consumed`, () => total() >= records, 2);
    return { steady: (records * 0.8) / ((t90 - t10) / 1000), whole: records / ((performance.now() - t0) / 1000) };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

// ------------------------------------------------------------ 3. commit throughput

async function commitRun(url: string, admin: Sluice, run: number, inFlight: number): Promise<number> {
  const topic = `commits-${run}-${inFlight}`;
  await admin.createTopic(topic, { partitions: 1 });
  const client = await connect({ url, clientId: 'commits', crc32c });
  try {
    const join = await client.connection.request({ op: Op.JOIN_GROUP, groupId: topic, memberId: '', instanceId: '', clientId: 'commits', sessionTimeoutMs: 30_000, rebalanceTimeoutMs: 0, assignor: '', topics: [topic] });
    if (join.op !== Op.JOIN_GROUP_OK) throw new Error('join failed');
    let offset = 0;
    let done = 0;
    const deadline = performance.now() + COMMIT_RUN_MS;
    const t0 = performance.now();
    const loop = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await client.connection.request({ op: Op.COMMIT_OFFSETS, groupId: topic, memberId: join.memberId, generation: join.generation, offsets: [{ topic, partition: 0, offset: ++offset, metadata: '' }] });
        done++;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, loop));
    return done / ((performance.now() - t0) / 1000);
  } finally {
    await client.close();
  }
}

// ------------------------------------------------------------ the bench

export async function runGroupsBench(opts: GroupsBenchOptions, log: (line: string) => void = () => undefined): Promise<GroupsBenchResult> {
  const broker = await startBroker();
  const admin = await connect({ url: broker.url, clientId: 'groups-bench', crc32c });
  const r: GroupsBenchResult = {
    machine: `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    options: opts,
    cleanLeaveMs: [],
    deathMs: [],
    deathLimitMs: opts.sessionTimeoutMs + 2 * Math.floor(opts.sessionTimeoutMs / 3),
    singleRecordsPerSec: [],
    groupRecordsPerSec: [],
    singleWholeRecordsPerSec: [],
    groupWholeRecordsPerSec: [],
    commitsPerSecInFlight1: [],
    commitsPerSecInFlight32: [],
  };
  try {
    for (let run = 0; run < opts.runs; run++) {
      const rb = await rebalanceRun(broker.url, admin, run, opts.sessionTimeoutMs);
      r.cleanLeaveMs.push(rb.cleanMs);
      r.deathMs.push(rb.deathMs);
      log(`run ${run + 1}: clean leave ${rb.cleanMs.toFixed(1)} ms, death ${rb.deathMs.toFixed(0)} ms`);
      const topic = `consume-${run}`;
      await fillTopic(admin, topic, opts.records);
      const single = await consumeRun(broker.url, topic, '-', 1, opts.records);
      const group = await consumeRun(broker.url, topic, `consumers-${run}`, CONSUME_MEMBERS, opts.records);
      r.singleRecordsPerSec.push(single.steady);
      r.groupRecordsPerSec.push(group.steady);
      r.singleWholeRecordsPerSec.push(single.whole);
      r.groupWholeRecordsPerSec.push(group.whole);
      log(`run ${run + 1}: consume steady: single ${Math.round(single.steady)} rec/s, group of ${CONSUME_MEMBERS} ${Math.round(group.steady)} rec/s; start to end: ${Math.round(single.whole)}, ${Math.round(group.whole)}`);
      await admin.deleteTopic(topic);
      r.commitsPerSecInFlight1.push(await commitRun(broker.url, admin, run, 1));
      r.commitsPerSecInFlight32.push(await commitRun(broker.url, admin, run, 32));
      log(`run ${run + 1}: commits/s ${Math.round(r.commitsPerSecInFlight1.at(-1)!)} (1 in flight), ${Math.round(r.commitsPerSecInFlight32.at(-1)!)} (32 in flight)`);
    }
  } finally {
    await admin.close();
    await broker.stop();
  }
  return r;
}

export function formatGroupsBench(r: GroupsBenchResult): string {
  const m = (xs: number[]) => median(xs);
  const single = m(r.singleRecordsPerSec);
  const group = m(r.groupRecordsPerSec);
  return [
    `machine: ${r.machine}`,
    `options: ${JSON.stringify(r.options)}`,
    '',
    '| figure | median | runs | target | |',
    '|---|---:|---|---|---|',
    `| rebalance, clean leave (10 members, 100 partitions) | ${m(r.cleanLeaveMs).toFixed(1)} ms | ${r.cleanLeaveMs.map((x) => x.toFixed(1)).join(', ')} | < ${TARGETS.cleanLeaveMs} ms | ${m(r.cleanLeaveMs) < TARGETS.cleanLeaveMs ? 'met' : 'missed'} |`,
    `| rebalance, member dies (session ${r.options.sessionTimeoutMs} ms) | ${m(r.deathMs).toFixed(0)} ms | ${r.deathMs.map((x) => x.toFixed(0)).join(', ')} | < ${r.deathLimitMs} ms | ${m(r.deathMs) < r.deathLimitMs ? 'met' : 'missed'} |`,
    `| consume, 1 plain consumer, steady | ${Math.round(single).toLocaleString('en')} rec/s | ${r.singleRecordsPerSec.map((x) => Math.round(x)).join(', ')} | | |`,
    `| consume, group of ${CONSUME_MEMBERS}, steady | ${Math.round(group).toLocaleString('en')} rec/s | ${r.groupRecordsPerSec.map((x) => Math.round(x)).join(', ')} | ratio to 1 consumer: ${(group / single).toFixed(2)} | |`,
    `| consume, 1 plain consumer, start to end | ${Math.round(m(r.singleWholeRecordsPerSec)).toLocaleString('en')} rec/s | ${r.singleWholeRecordsPerSec.map((x) => Math.round(x)).join(', ')} | | |`,
    `| consume, group of ${CONSUME_MEMBERS}, start to end | ${Math.round(m(r.groupWholeRecordsPerSec)).toLocaleString('en')} rec/s | ${r.groupWholeRecordsPerSec.map((x) => Math.round(x)).join(', ')} | ratio to 1 consumer: ${(m(r.groupWholeRecordsPerSec) / m(r.singleWholeRecordsPerSec)).toFixed(2)} | |`,
    `| commits/s, 1 in flight | ${Math.round(m(r.commitsPerSecInFlight1)).toLocaleString('en')} | ${r.commitsPerSecInFlight1.map((x) => Math.round(x)).join(', ')} | | |`,
    `| commits/s, 32 in flight | ${Math.round(m(r.commitsPerSecInFlight32)).toLocaleString('en')} | ${r.commitsPerSecInFlight32.map((x) => Math.round(x)).join(', ')} | | |`,
  ].join('\n');
}

export function groupsBenchDefaults(smoke: boolean): GroupsBenchOptions {
  return smoke ? { runs: 1, records: 20_000, sessionTimeoutMs: 1_000 } : { runs: 3, records: 1_000_000, sessionTimeoutMs: 6_000 };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const flag = (name: string): number | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  const opts = groupsBenchDefaults(args.includes('--smoke'));
  opts.runs = flag('--runs') ?? opts.runs;
  opts.records = flag('--records') ?? opts.records;
  opts.sessionTimeoutMs = flag('--session-ms') ?? opts.sessionTimeoutMs;
  const r = await runGroupsBench(opts, (l) => process.stderr.write(`${l}\n`));
  process.stdout.write(`${formatGroupsBench(r)}\n`);
  process.exit(0);
}
