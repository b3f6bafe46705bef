/**
 * `sluice topics create|list|describe|delete`: the admin calls of the client, for scripts.
 *
 *   sluice topics create NAME [--partitions N] [--retention-ms MS] [--retention-bytes B] [--segment-bytes B]
 *        [--config NAME=VALUE]...                  any setting by its Kafka name, e.g. cleanup.policy=compact
 *   sluice topics list [--json]               one name per line
 *   sluice topics describe NAME [--json]      settings, then one row per partition
 *   sluice topics delete NAME
 *
 * Unset settings are sent as 0, which the broker reads as its default (docs/protocol.md,
 * CREATE_TOPIC). Owner: the main thread of the CLI process.
 */
import { Command, InvalidArgumentError } from 'commander';
import type { TopicDescription } from '../client/index.js';
import { clientAction, clientCommand, limitOrUnlimited, positiveInt, withClient } from './client-common.js';

interface BrokerFlags {
  broker?: string;
}

function unlimited(n: number): string {
  return n < 0 ? 'unlimited' : String(n);
}

/** The human-readable form of a description: settings on one line, then an aligned table. */
export function describeTable(d: TopicDescription, configs: Record<string, string> = {}): string {
  const compaction = configs['cleanup.policy'] === undefined ? '' : `  cleanup.policy ${configs['cleanup.policy']}  delete.retention.ms ${configs['delete.retention.ms']}`;
  const timestamps = configs['message.timestamp.type'] === undefined ? '' : `  message.timestamp.type ${configs['message.timestamp.type']}`;
  const head = `topic ${d.topic}  partitions ${d.partitions.length}  retention.ms ${unlimited(d.retentionMs)}  retention.bytes ${unlimited(d.retentionBytes)}  segment.bytes ${d.segmentBytes}  segment.ms ${unlimited(d.segmentMs)}${compaction}${timestamps}`;
  const rows: string[][] = [['PARTITION', 'OWNER', 'LOG-START', 'LOG-END', 'HIGH-WATERMARK', 'DURABLE', 'SIZE-BYTES']];
  d.partitions.forEach((p, i) => {
    rows.push([i, p.owner, p.logStartOffset, p.logEndOffset, p.highWatermark, p.durableOffset, p.sizeBytes].map(String));
  });
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  const lines = rows.map((r) => r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join('  '));
  return `${head}\n${lines.join('\n')}\n`;
}

/** `--config name=value`, repeatable, collected into one object. */
function configEntry(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`expected NAME=VALUE, got ${JSON.stringify(value)}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

export function topicsCommand(): Command {
  const topics = new Command('topics').description('create, list, describe and delete topics');

  topics.addCommand(
    clientCommand('create', 'create a topic', 'topics create')
      .argument('<name>', 'topic name')
      .option('--partitions <n>', "number of partitions (default: the broker's)", positiveInt)
      .option('--retention-ms <ms>', "delete segments older than this; -1 unlimited (default: the broker's)", limitOrUnlimited)
      .option('--retention-bytes <b>', "keep at most this many bytes per partition; -1 unlimited (default: the broker's)", limitOrUnlimited)
      .option('--segment-bytes <b>', "roll segments at this size (default: the broker's)", positiveInt)
      .option('--config <name=value>', 'a setting by its Kafka name (repeatable): cleanup.policy, delete.retention.ms, message.timestamp.type, retention.ms, retention.bytes, segment.ms, segment.bytes', configEntry)
      .action(
        clientAction(async (name: string, flags: BrokerFlags & { partitions?: number; retentionMs?: number; retentionBytes?: number; segmentBytes?: number; config?: Record<string, string> }) => {
          const d = await withClient(flags, (c) =>
            c.createTopic(name, { partitions: flags.partitions, retentionMs: flags.retentionMs, retentionBytes: flags.retentionBytes, segmentBytes: flags.segmentBytes, configs: flags.config }),
          );
          process.stdout.write(`created topic ${d.topic} with ${d.partitions.length} partitions\n`);
        }),
      ),
  );

  topics.addCommand(
    clientCommand('list', 'print the topic names, one per line', 'topics list')
      .option('--json', 'print a JSON array')
      .action(
        clientAction(async (flags: BrokerFlags & { json?: boolean }) => {
          const names = await withClient(flags, (c) => c.listTopics());
          process.stdout.write(flags.json ? `${JSON.stringify(names)}\n` : names.map((n) => `${n}\n`).join(''));
        }),
      ),
  );

  topics.addCommand(
    clientCommand('describe', "print a topic's settings and per-partition offsets, owner and size", 'topics describe')
      .argument('<name>', 'topic name')
      .option('--json', 'print the description as JSON')
      .action(
        clientAction(async (name: string, flags: BrokerFlags & { json?: boolean }) => {
          const [d, configs] = await withClient(flags, (c) => Promise.all([c.describeTopic(name), c.describeConfigs(name)]));
          process.stdout.write(flags.json ? `${JSON.stringify({ ...d, configs })}\n` : describeTable(d, configs));
        }),
      ),
  );

  topics.addCommand(
    clientCommand('delete', 'delete a topic and its data', 'topics delete')
      .argument('<name>', 'topic name')
      .action(
        clientAction(async (name: string, flags: BrokerFlags) => {
          await withClient(flags, (c) => c.deleteTopic(name));
          process.stdout.write(`deleted topic ${name}\n`);
        }),
      ),
  );
  return topics;
}
