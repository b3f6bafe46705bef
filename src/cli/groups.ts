/**
 * `sluice groups list|describe|reset-offsets`: consumer groups, for operators and scripts.
 *
 *   sluice groups list [--json]                 GROUP STATE MEMBERS ASSIGNOR, one row per group
 *   sluice groups describe G [--json]           members and their partitions, then per
 *                                               partition: committed offset, log end offset, lag
 *   sluice groups reset-offsets G --to earliest|latest|offset|timestamp
 *        [--offset N] [--timestamp MS|ISO] [--topic T]...   (also --to offset:N, --to timestamp:MS)
 *                                               only while the group has no members (else
 *                                               NON_EMPTY_GROUP); without --topic, every
 *                                               partition the group has an offset for
 *
 * Owner: the main thread of the CLI process.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { GroupDescription, ResetTarget } from '../client/index.js';
import { clientAction, clientCommand, nonEmpty, nonNegativeInt, UsageError, withClient } from './client-common.js';

interface BrokerFlags {
  broker?: string;
}

/** Rows as an aligned table: the first column left-aligned, the rest right-aligned. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  return rows.map((r) => r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join('  ')).join('\n') + '\n';
}

export function describeGroupText(d: GroupDescription): string {
  const tp = (p: { topic: string; partition: number }) => `${p.topic}-${p.partition}`;
  let out = `group ${d.groupId}  state ${d.state}  generation ${d.generation}  assignor ${d.assignor || '-'}  members ${d.members.length}\n`;
  if (d.members.length > 0) {
    const rows = [['MEMBER', 'INSTANCE', 'GENERATION', 'PARTITIONS']];
    for (const m of d.members) rows.push([m.memberId, m.instanceId || '-', String(m.generation), m.partitions.map(tp).join(',') || '-']);
    out += table(rows);
  }
  const owner = new Map<string, string>();
  for (const m of d.members) for (const p of m.partitions) owner.set(tp(p), m.memberId);
  const rows = [['TOPIC', 'PARTITION', 'COMMITTED', 'LOG-END', 'LAG', 'MEMBER']];
  const dash = (n: number) => (n < 0 ? '-' : String(n));
  for (const o of d.offsets) rows.push([o.topic, String(o.partition), dash(o.offset), dash(o.logEndOffset), dash(o.lag), owner.get(tp(o)) ?? '-']);
  if (rows.length > 1) out += table(rows);
  return out;
}

/** `--timestamp`: ms since the epoch, or an ISO 8601 date-time (`2026-11-27T10:00:00Z`). */
function timestampArg(value: string): number {
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidArgumentError(`expected ms since the epoch or an ISO 8601 date-time, got ${JSON.stringify(value)}`);
  return ms;
}

function resetTarget(flags: { to: string; offset?: number; timestamp?: number }): ResetTarget {
  // `--to offset:N` / `--to offset=N` (and timestamp) are accepted as shorthands.
  const inline = /^(offset|timestamp)[:=](.+)$/.exec(flags.to);
  if (inline) {
    if (flags.offset !== undefined || flags.timestamp !== undefined) throw new UsageError(`--to ${flags.to} already says where; no --offset or --timestamp`);
    const value = inline[1] === 'offset' ? (/^\d+$/.test(inline[2]) ? Number(inline[2]) : NaN) : timestampArg(inline[2]);
    if (!Number.isSafeInteger(value)) throw new UsageError(`--to ${flags.to}: expected a non-negative integer`);
    return inline[1] === 'offset' ? { offset: value } : { timestamp: value };
  }
  switch (flags.to) {
    case 'earliest':
    case 'latest':
      if (flags.offset !== undefined || flags.timestamp !== undefined) throw new UsageError(`--to ${flags.to} takes no --offset or --timestamp`);
      return flags.to;
    case 'offset':
      if (flags.offset === undefined) throw new UsageError('--to offset needs --offset N');
      return { offset: flags.offset };
    case 'timestamp':
      if (flags.timestamp === undefined) throw new UsageError('--to timestamp needs --timestamp MS (ms since the epoch)');
      return { timestamp: flags.timestamp };
    default:
      throw new UsageError(`--to must be earliest, latest, offset or timestamp, got ${JSON.stringify(flags.to)}`);
  }
}

export function groupsCommand(): Command {
  const groups = new Command('groups').description('list, describe and reset consumer groups');

  groups.addCommand(
    clientCommand('list', 'print every consumer group: state, members, assignor', 'groups list')
      .option('--json', 'print a JSON array')
      .action(
        clientAction(async (flags: BrokerFlags & { json?: boolean }) => {
          const list = await withClient(flags, (c) => c.listGroups());
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(list)}\n`);
            return;
          }
          const rows = [['GROUP', 'STATE', 'MEMBERS', 'ASSIGNOR'], ...list.map((g) => [g.groupId, g.state, String(g.members), g.assignor || '-'])];
          process.stdout.write(list.length === 0 ? '' : table(rows));
        }),
      ),
  );

  groups.addCommand(
    clientCommand('describe', "print a group's members, assignment, committed offsets and lag", 'groups describe')
      .argument('<group>', 'group id')
      .option('--json', 'print the description as JSON')
      .action(
        clientAction(async (group: string, flags: BrokerFlags & { json?: boolean }) => {
          const d = await withClient(flags, (c) => c.describeGroup(group));
          process.stdout.write(flags.json ? `${JSON.stringify(d)}\n` : describeGroupText(d));
        }),
      ),
  );

  groups.addCommand(
    clientCommand('reset-offsets', "move a group's committed offsets (the group must have no members)", 'groups reset-offsets')
      .argument('<group>', 'group id')
      .requiredOption('--to <where>', 'earliest, latest, offset (with --offset) or timestamp (with --timestamp)')
      .option('--offset <n>', 'with --to offset: the offset (clamped into each log)', nonNegativeInt)
      .option('--timestamp <when>', 'with --to timestamp: the first offset at or after this time (ms since the epoch, or ISO 8601)', timestampArg)
      .option('--topic <t>', 'reset every partition of this topic (repeatable; default: the partitions the group has offsets for)', (v: string, acc: string[] = []) => [...acc, nonEmpty(v)])
      .option('--json', 'print the new offsets as JSON')
      .action(
        clientAction(async (group: string, flags: BrokerFlags & { to: string; offset?: number; timestamp?: number; topic?: string[]; json?: boolean }) => {
          const target = resetTarget(flags);
          const offsets = await withClient(flags, (c) => c.resetOffsets(group, target, flags.topic ?? []));
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(offsets)}\n`);
            return;
          }
          const rows = [['TOPIC', 'PARTITION', 'NEW-OFFSET'], ...offsets.map((o) => [o.topic, String(o.partition), String(o.offset)])];
          process.stdout.write(table(rows));
        }),
      ),
  );
  return groups;
}
