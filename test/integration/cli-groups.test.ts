/**
 * `sluice consume --group` and `sluice groups list|describe|reset-offsets` against a real
 * `sluice start` process: a group consumer commits exactly what it printed, so the next one
 * goes on from there; --from-beginning applies only where the group has no offset; resets
 * need an empty group.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/dist.js';
import { lines, sluice, startBroker, throughHead, type Broker } from './cli-helpers.js';

let broker: Broker;
let dir: ReturnType<typeof tempDir>;
let b: string[];

beforeAll(async () => {
  dir = tempDir('cli-groups');
  broker = await startBroker({ dataDir: dir.path });
  b = ['--broker', broker.url];
});

afterAll(async () => {
  expect(await broker?.stop()).toBe(0);
  dir?.remove();
});

async function ok(args: string[], input?: string) {
  const r = await sluice([...args, ...b], { input });
  expect(r.stderr, args.join(' ')).not.toMatch(/error|failed/i);
  expect(r.status, args.join(' ')).toBe(0);
  return r;
}

describe('sluice consume --group and sluice groups', () => {
  it('resumes after what was printed, describes lag, lists, and resets an empty group', async () => {
    await ok(['topics', 'create', 'jobs', '--partitions', '3']);
    const values = Array.from({ length: 30 }, (_, i) => `job-${i}`);
    // Keyed, so that the records spread over the three partitions.
    await ok(['produce', 'jobs', '--key-separator', ':'], `${values.map((v, i) => `key-${i}:${v}`).join('\n')}\n`);
    const counts = JSON.parse((await ok(['topics', 'describe', 'jobs', '--json'])).stdout).partitions.map((p: { highWatermark: number }) => p.highWatermark);
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(2);

    const first = lines((await ok(['consume', 'jobs', '--group', 'workers', '--from-beginning', '--max-messages', '10'])).stdout);
    expect(first).toHaveLength(10);
    const described = JSON.parse((await ok(['groups', 'describe', 'workers', '--json'])).stdout);
    expect(described.members).toEqual([]);
    expect(described.offsets.reduce((n: number, o: { offset: number }) => n + o.offset, 0)).toBe(10);
    for (const o of described.offsets) expect(o.lag).toBe(counts[o.partition] - o.offset);
    const table = lines((await ok(['groups', 'describe', 'workers'])).stdout);
    expect(table[0]).toMatch(/^group workers\s+state empty/);
    expect(table.some((l) => /^TOPIC\s+PARTITION\s+COMMITTED\s+LOG-END\s+LAG\s+MEMBER$/.test(l))).toBe(true);

    // The next member of the group goes on after the printed records: no repeats, no gaps.
    const rest = lines((await ok(['consume', 'jobs', '--group', 'workers', '--from-beginning', '--max-messages', '20'])).stdout);
    expect(new Set([...first, ...rest])).toEqual(new Set(values));
    expect(first.length + rest.length).toBe(30);

    const listed = lines((await ok(['groups', 'list'])).stdout);
    expect(listed[0].split(/\s+/)).toEqual(['GROUP', 'STATE', 'MEMBERS', 'ASSIGNOR']);
    expect(listed.some((l) => /^workers\s+empty\s+0/.test(l))).toBe(true);
    expect(JSON.parse((await ok(['groups', 'list', '--json'])).stdout)).toEqual([expect.objectContaining({ groupId: 'workers', members: 0, state: 'empty' })]);

    const reset = JSON.parse((await ok(['groups', 'reset-offsets', 'workers', '--to', 'earliest', '--json'])).stdout);
    expect(reset.map((o: { offset: number }) => o.offset)).toEqual([0, 0, 0]);
    const again = lines((await ok(['consume', 'jobs', '--group', 'workers', '--max-messages', '30'])).stdout);
    expect(new Set(again)).toEqual(new Set(values));
    await ok(['groups', 'reset-offsets', 'workers', '--to', 'offset', '--offset', '2', '--topic', 'jobs']);
    const at2 = JSON.parse((await ok(['groups', 'describe', 'workers', '--json'])).stdout);
    expect(at2.offsets.map((o: { offset: number }) => o.offset)).toEqual([2, 2, 2]);
    await ok(['groups', 'reset-offsets', 'workers', '--to', 'offset:1']);
    expect(JSON.parse((await ok(['groups', 'describe', 'workers', '--json'])).stdout).offsets.map((o: { offset: number }) => o.offset)).toEqual([1, 1, 1]);
    // A time after every record: the high watermark of each partition.
    const future = JSON.parse((await ok(['groups', 'reset-offsets', 'workers', '--to', 'timestamp', '--timestamp', '2100-01-01T00:00:00Z', '--json'])).stdout);
    expect(future.map((o: { offset: number }) => o.offset)).toEqual(counts);
  });

  it('a group member whose reader goes away (| head -2) commits only what it wrote and leaves the group at once', async () => {
    await ok(['topics', 'create', 'piped-jobs', '--partitions', '1']);
    const values = Array.from({ length: 20_000 }, (_, i) => `a line long enough to fill a pipe buffer quickly ${i}`);
    await ok(['produce', 'piped-jobs'], `${values.join('\n')}\n`);
    expect(lines((await ok(['consume', 'piped-jobs', '--group', 'piped', '--from-beginning', '--max-messages', '5'])).stdout)).toEqual(values.slice(0, 5));
    const { stdout, stderr } = await throughHead(['consume', 'piped-jobs', '--group', 'piped', '--from-beginning', '--idle-timeout-ms', '20000', ...b], 2);
    expect(stdout).toBe(`${values[5]}\n${values[6]}\n`);
    expect(stderr).toBe('status 0\n');
    const described = JSON.parse((await ok(['groups', 'describe', 'piped', '--json'])).stdout);
    // It left at once (no member holds the partition until a session timeout) and
    // committed only whole writes: the rest, in a write the pipe refused, will be read again.
    expect(described.members).toEqual([]);
    expect(described.offsets).toHaveLength(1);
    expect(described.offsets[0].offset).toBeGreaterThanOrEqual(5);
    expect(described.offsets[0].offset).toBeLessThan(values.length);
  });

  it('a group member whose topic is deleted exits 1 with one line and leaves the group, every time', async () => {
    for (let round = 0; round < 3; round++) {
      const group = `doomed-${round}`;
      await ok(['topics', 'create', 'doomed', '--partitions', '2']);
      await ok(['produce', 'doomed'], 'a\nb\nc\n');
      const running = sluice(['consume', 'doomed', '--group', group, '--from-beginning', '--idle-timeout-ms', '20000', ...b]);
      let members = 0;
      for (const until = Date.now() + 10_000; members === 0 && Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 100));
        const d = await sluice(['groups', 'describe', group, '--json', ...b]);
        if (d.status === 0) members = (JSON.parse(d.stdout) as { members: unknown[] }).members.length;
      }
      expect(members).toBe(1);
      await ok(['topics', 'delete', 'doomed']);
      const r = await running;
      expect(r.status).toBe(1);
      expect(lines(r.stderr)).toEqual([expect.stringMatching(/^sluice: UNKNOWN_TOPIC_OR_PARTITION: /)]);
      // It left: no member is left behind to hold a re-created topic's partitions.
      const after = await sluice(['groups', 'describe', group, '--json', ...b]);
      if (after.status === 0) expect((JSON.parse(after.stdout) as { members: unknown[] }).members).toEqual([]);
      else expect(after.stderr).toMatch(/GROUP_ID_NOT_FOUND/);
    }
  }, 60_000);

  it('creates a compacted topic with --config and describes its settings', async () => {
    await ok(['topics', 'create', 'state', '--partitions', '2', '--config', 'cleanup.policy=compact', '--config', 'delete.retention.ms=1000']);
    const d = JSON.parse((await ok(['topics', 'describe', 'state', '--json'])).stdout);
    expect(d.configs).toMatchObject({ 'cleanup.policy': 'compact', 'delete.retention.ms': '1000' });
    expect(lines((await ok(['topics', 'describe', 'state'])).stdout)[0]).toMatch(/cleanup\.policy compact\s+delete\.retention\.ms 1000/);
    const bad = await sluice(['topics', 'create', 'bad', '--config', 'cleanup.policy=sometimes', ...b]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT/);
    const unknown = await sluice(['topics', 'create', 'bad', '--config', 'colour=blue', ...b]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown topic config "colour"/);
    // A keyless record is refused by a compacted topic.
    const keyless = await sluice(['produce', 'state', ...b], { input: 'no-key\n' });
    expect(keyless.status).toBe(1);
    expect(keyless.stderr).toMatch(/INVALID_RECORD/);
  });

  it('creates a LogAppendTime topic with --config; consume --print-timestamp prints each record\'s type and time first', async () => {
    await ok(['topics', 'create', 'stamped', '--config', 'message.timestamp.type=LogAppendTime']);
    expect(lines((await ok(['topics', 'describe', 'stamped'])).stdout)[0]).toMatch(/message\.timestamp\.type LogAppendTime/);
    const before = Date.now();
    await ok(['produce', 'stamped', '--key-separator', ':'], 'k1:v1\n');
    const after = Date.now();
    const out = lines((await ok(['consume', 'stamped', '--from-beginning', '--max-messages', '1', '--print-timestamp', '--print-key', '--key-separator', '|'])).stdout);
    const m = /^LogAppendTime:(\d+)\|k1\|v1$/.exec(out[0]);
    expect(m, out[0]).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(before);
    expect(Number(m![1])).toBeLessThanOrEqual(after);
    await ok(['topics', 'create', 'plain']);
    await ok(['produce', 'plain'], 'v\n');
    expect(lines((await ok(['consume', 'plain', '--from-beginning', '--max-messages', '1', '--print-timestamp'])).stdout)[0]).toMatch(/^CreateTime:\d+\tv$/);
  });

  it('starts a new group at the latest offset without --from-beginning, and refuses bad flags', async () => {
    await ok(['topics', 'create', 'late', '--partitions', '1']);
    await ok(['produce', 'late'], 'old-1\nold-2\n');
    const none = await ok(['consume', 'late', '--group', 'latecomers', '--idle-timeout-ms', '1500']);
    expect(none.stdout).toBe('');
    const usage = await sluice(['groups', 'reset-offsets', 'latecomers', '--to', 'offset', ...b]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/--offset/);
    const mixed = await sluice(['consume', 'late', '--group', 'g', '--partition', '0', ...b]);
    expect(mixed.status).toBe(2);
    const empty = await sluice(['consume', 'late', '--group', '', ...b]);
    expect(empty.status).toBe(2);
    expect(empty.stderr).toMatch(/--group needs a group id/);
    const unknown = await sluice(['groups', 'describe', 'never-seen', ...b]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/GROUP_ID_NOT_FOUND/);
  });
});
