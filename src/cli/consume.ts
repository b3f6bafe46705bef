/**
 * `sluice consume TOPIC [--from-beginning] [--partition P [--offset O]] [--max-messages N]
 * [--idle-timeout-ms MS] [--print-key] [--print-timestamp] [--key-separator SEP] [--group G]`:
 * one value per line on stdout, in offset order per partition (with --print-timestamp,
 * `CreateTime:<ms>` or `LogAppendTime:<ms>` and the separator first, as Kafka's console
 * consumer's print.timestamp).
 *
 * Starts at the latest offset unless --from-beginning or --offset says otherwise (as
 * Kafka's console consumer; so does an --offset out of range), ends after N records or MS
 * without one (exit 0), or on an error (exit 1). A closed stdout (`| head -1`) ends it
 * quietly with exit 0.
 *
 * With --group G it is a member of consumer group G: the coordinator assigns it
 * partitions, it starts each at the group's committed offset (--from-beginning applies only
 * to partitions without one, as Kafka's console consumer), commits what it printed every
 * COMMIT_INTERVAL_MS and before it exits (also on Ctrl-C or SIGTERM, then exit 130/143,
 * and on a closed stdout, exit 0), and leaves the group; a deleted topic ends it with
 * exit 1. Owner: the main thread of the CLI process.
 */
import { Command } from 'commander';
import type { Consumer, ConsumerBatch, ConsumerRecord, Sluice, StartPosition } from '../client/index.js';
import { SluiceError } from '../errors.js';
import {
  brokerUrl,
  clientAction,
  clientCommand,
  errorLine,
  EXIT_OK,
  EXIT_SIGNAL,
  exitWithError,
  nonEmpty,
  nonNegativeInt,
  openClient,
  positiveInt,
  Progress,
  UsageError,
} from './client-common.js';

/** Kafka's console consumer separates key and value with a tab. */
const KEY_SEPARATOR_DEFAULT = '\t';

interface ConsumeFlags {
  broker?: string;
  fromBeginning?: boolean;
  partition?: number;
  offset?: number;
  group?: string;
  maxMessages?: number;
  idleTimeoutMs?: number;
  printKey?: boolean;
  printTimestamp?: boolean;
  keySeparator?: string;
}

function startPosition(flags: ConsumeFlags): StartPosition {
  if (flags.offset !== undefined) {
    if (flags.partition === undefined) throw new UsageError('--offset needs --partition');
    if (flags.fromBeginning) throw new UsageError('--offset and --from-beginning exclude each other');
    return { offset: flags.offset };
  }
  return resetPolicy(flags);
}

/**
 * Where a position out of range goes (an --offset past the end or below the log start, or
 * a committed offset that retention passed): the log start with --from-beginning, else the
 * latest offset, as Kafka's console consumer sets auto.offset.reset.
 */
function resetPolicy(flags: ConsumeFlags): 'earliest' | 'latest' {
  return flags.fromBeginning ? 'earliest' : 'latest';
}

/** How a consume command ends: `finish()` (N records, a signal) or `idleTimeoutMs` without records after `idle()`. */
class Ending {
  stopped = false;
  readonly done: Promise<void>;
  #resolve!: () => void;
  #timer: NodeJS.Timeout | undefined;
  readonly #idleTimeoutMs: number | undefined;

  constructor(idleTimeoutMs: number | undefined) {
    this.#idleTimeoutMs = idleTimeoutMs;
    this.done = new Promise<void>((resolve) => (this.#resolve = resolve));
    this.idle();
  }

  finish(): void {
    this.stopped = true;
    this.#resolve();
  }

  /** Records are being handled: the idle clock stops. */
  busy(): void {
    clearTimeout(this.#timer);
  }

  /** Waiting for records: the idle clock runs. */
  idle(): void {
    if (this.#idleTimeoutMs !== undefined) this.#timer = setTimeout(() => this.finish(), this.#idleTimeoutMs);
  }
}

/**
 * Ends the command quietly (exit 0) when the reader of stdout went away (EPIPE): `sluice
 * consume ... | head -1` is a normal use. The write that failed rejects too (`write`), so
 * its records do not count as printed, and a group member still commits what was and
 * leaves the group. Any other stdout error is an error (exit 1).
 */
function endOnEpipe(end: Ending): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') end.finish();
    else exitWithError(err);
  });
}

function isEpipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

/**
 * Writes a chunk to stdout and resolves once stdout has taken it (rejecting if it could
 * not), so a slow reader slows the consumer, whose credit then stops the broker, and a
 * chunk counts as printed only once written.
 */
function write(data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** Commit errors of a member that is being rejoined to its group. */
const REJOIN_CODES: ReadonlySet<string> = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS']);

/** How often a group consumer commits what it printed. */
const COMMIT_INTERVAL_MS = 1_000;

async function consume(topic: string, flags: ConsumeFlags): Promise<number> {
  if (flags.group !== undefined) return consumeGroup(topic, flags.group, flags);
  const from = startPosition(flags);
  const client = await openClient(brokerUrl(flags), exitWithError);
  const description = await client.describeTopic(topic);
  const partitionCount = description.partitions.length;
  if (flags.partition !== undefined && flags.partition >= partitionCount) {
    throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${topic} has ${partitionCount} partitions, no partition ${flags.partition}`);
  }
  const consumer = client.consumer({ from, resetPolicy: resetPolicy(flags) });
  const partitions = flags.partition !== undefined ? [flags.partition] : Array.from({ length: partitionCount }, (_, p) => p);
  await consumer.assign(partitions.map((partition) => ({ topic, partition })));

  // The command ends by resolving `end.done` (N records, or idle), not by closing the
  // consumer: a clean close unsubscribes, which waits for a broker that may be gone.
  const end = new Ending(flags.idleTimeoutMs);
  endOnEpipe(end);
  await printUntilDone(consumer, flags, end, '');
  client.connection.close();
  return EXIT_OK;
}

/**
 * `--group`: a group member over one topic. Commits exactly what was printed (the next
 * offset after the last printed record of each partition), never more: a batch cut short
 * by --max-messages commits only its printed part.
 */
async function consumeGroup(topic: string, groupId: string, flags: ConsumeFlags): Promise<number> {
  if (flags.partition !== undefined || flags.offset !== undefined) throw new UsageError('--group takes its partitions from the group: no --partition or --offset');
  if (groupId === '') throw new UsageError('--group needs a group id');
  const client = await openClient(brokerUrl(flags), exitWithError);
  const printed = new Map<string, { topic: string; partition: number; offset: number }>();
  const committed = new Map<string, number>();
  const end = new Ending(flags.idleTimeoutMs);
  endOnEpipe(end);
  let failure: unknown = null;
  const consumer = client.consumer({
    groupId,
    topics: [topic],
    fromBeginning: flags.fromBeginning === true,
    resetPolicy: resetPolicy(flags),
    autoCommit: false,
    onRevoked: async (partitions) => {
      // The consumer still holds the revoked partitions while this runs.
      const left = consumer.assignment().length - partitions.length;
      await commitPrinted(partitions.map((p) => `${p.partition}\u0000${p.topic}`));
      for (const p of partitions) printed.delete(`${p.partition}\u0000${p.topic}`);
      // Left with nothing: a group with more members than partitions waits for a share,
      // but a deleted topic ends the command as it ends a plain consumer.
      if (left === 0 && (await topicGone(client, topic))) {
        failure ??= new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} was deleted`);
        end.finish();
      }
    },
  });
  const commitPrinted = async (keys?: string[]): Promise<void> => {
    // Only partitions the member holds: a commit is all or nothing, and one it no longer owns
    // (its revocation not seen yet, after a broker restart) would fail the others' too.
    const owned = new Set(consumer.assignment().map((p) => `${p.partition}\u0000${p.topic}`));
    const offsets = [...printed.entries()].filter(([k, o]) => (keys === undefined || keys.includes(k)) && owned.has(k) && committed.get(k) !== o.offset);
    if (offsets.length === 0) return;
    try {
      await consumer.commit(offsets.map(([, o]) => o));
      for (const [k, o] of offsets) committed.set(k, o.offset);
    } catch (err) {
      if (err instanceof SluiceError && err.code === 'UNKNOWN_TOPIC_OR_PARTITION') {
        for (const [k] of offsets) printed.delete(k); // the topic was deleted: nothing left to commit to
        return;
      }
      // The member is rejoining (a broker restart, a session that expired): the offsets stay
      // to commit after it, or go with the partitions' revocation. Not worth a line.
      if (err instanceof SluiceError && REJOIN_CODES.has(err.code)) return;
      process.stderr.write(`sluice consume: commit failed: ${errorLine(err)}\n`);
    }
  };

  let exitCode = EXIT_OK;
  const onSignal = (signal: NodeJS.Signals): void => {
    exitCode = EXIT_SIGNAL[signal] ?? EXIT_OK;
    end.finish();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const commitTimer = setInterval(() => void commitPrinted(), COMMIT_INTERVAL_MS);
  try {
    await printUntilDone(consumer, flags, end, ` (group ${groupId})`, (batch, take) => {
      printed.set(`${batch.partition}\u0000${batch.topic}`, { topic: batch.topic, partition: batch.partition, offset: batch.records[take - 1].offset + 1 });
    });
  } catch (err) {
    failure ??= err;
  } finally {
    clearInterval(commitTimer);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  // On an error too: commit what was printed, and leave the group at once (its partitions
  // move now, not after the session timeout).
  await commitPrinted();
  await Promise.race([consumer.close().catch(() => undefined), new Promise((r) => setTimeout(r, LEAVE_WAIT_MS))]);
  client.connection.close();
  if (failure !== null) throw failure;
  return exitCode;
}

/** Whether `topic` no longer exists (a failed lookup for another reason says no: the command goes on). */
async function topicGone(client: Sluice, topic: string): Promise<boolean> {
  try {
    await client.describeTopic(topic);
    return false;
  } catch (err) {
    return err instanceof SluiceError && err.code === 'UNKNOWN_TOPIC_OR_PARTITION';
  }
}

/** How long the CLI waits for a clean LEAVE_GROUP before it exits anyway. */
const LEAVE_WAIT_MS = 2_000;

/**
 * Runs `consumer`, printing every batch, until --max-messages records are printed, the idle
 * timeout passes or `end` is finished (a signal); `onPrinted(batch, take)` hears of each
 * batch's printed part. Shared by the plain and the --group command.
 */
async function printUntilDone(
  consumer: Consumer,
  flags: ConsumeFlags,
  end: Ending,
  label: string,
  onPrinted?: (batch: ConsumerBatch, take: number) => void,
): Promise<void> {
  let count = 0;
  const max = flags.maxMessages ?? Number.POSITIVE_INFINITY;
  const format: LineFormat = { key: flags.printKey === true, timestamp: flags.printTimestamp === true, sep: Buffer.from(flags.keySeparator ?? KEY_SEPARATOR_DEFAULT) };
  const progress = new Progress(() => `sluice consume: ${count} records${label}`);
  const running = consumer.run({
    eachBatch: async (batch) => {
      if (end.stopped) return;
      const take = Math.min(batch.records.length, max - count);
      try {
        await printBatch(batch.records, take, format, end);
      } catch (err) {
        if (!isEpipe(err)) throw err;
        end.finish(); // the reader went away: these records were not printed
        return;
      }
      count += take;
      if (take > 0) onPrinted?.(batch, take);
      if (count >= max) end.finish();
    },
  });
  try {
    await Promise.race([running, end.done]);
  } finally {
    end.busy();
    progress.stop();
  }
}

/** Prints the first `take` records of a batch; the idle clock then starts again (writing to a slow stdout is not idleness). */
async function printBatch(records: ConsumerRecord[], take: number, format: LineFormat, end: Ending): Promise<void> {
  end.busy();
  await write(formatLines(records, take, format));
  end.idle();
}

const NULL_TEXT = Buffer.from('null');
const NEWLINE = 0x0a;

/** What goes before each value: the timestamp and the key, as asked, each followed by the separator. */
interface LineFormat {
  key: boolean;
  timestamp: boolean;
  sep: Buffer;
}

/**
 * The first `count` records as lines (`[type:timestamp SEP][key SEP]value`), in
 * one buffer sized first and filled once: the record bytes are views into a frame that
 * goes back as credit, so they are copied, once. A null key or value prints as `null`
 * (as Kafka's console consumer).
 */
function formatLines(records: ConsumerRecord[], count: number, format: LineFormat): Buffer {
  const { key: printKey, sep } = format;
  const stamps = format.timestamp ? records.slice(0, count).map((r) => Buffer.from(`${r.timestampType}:${r.timestamp}`)) : null;
  let size = 0;
  for (let i = 0; i < count; i++) {
    const r = records[i];
    size += (r.value ?? NULL_TEXT).length + 1;
    if (printKey) size += (r.key ?? NULL_TEXT).length + sep.length;
    if (stamps !== null) size += stamps[i].length + sep.length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const r = records[i];
    if (stamps !== null) {
      out.set(stamps[i], at);
      at += stamps[i].length;
      out.set(sep, at);
      at += sep.length;
    }
    if (printKey) {
      const key = r.key ?? NULL_TEXT;
      out.set(key, at);
      at += key.length;
      out.set(sep, at);
      at += sep.length;
    }
    const value = r.value ?? NULL_TEXT;
    out.set(value, at);
    at += value.length;
    out[at++] = NEWLINE;
  }
  return out;
}

export function consumeCommand(): Command {
  return clientCommand('consume', 'print the records of a topic, one value per line')
    .argument('<topic>', 'topic to consume')
    .option('--from-beginning', 'start at the log start offset (default: the latest offset)')
    .option('--partition <p>', 'consume only this partition (default: every partition)', nonNegativeInt)
    .option('--offset <o>', 'start at this offset (needs --partition)', nonNegativeInt)
    .option('--group <g>', 'consume as a member of this consumer group: committed offsets, shared partitions')
    .option('--max-messages <n>', 'exit after N records', positiveInt)
    .option('--idle-timeout-ms <ms>', 'exit after MS without a record', positiveInt)
    .option('--print-key', 'print the key before the value')
    .option('--print-timestamp', "print the record's timestamp first, as CreateTime:<ms> or LogAppendTime:<ms>")
    .option('--key-separator <sep>', 'after the timestamp and the key with --print-timestamp and --print-key (default: a tab)', nonEmpty)
    .action(clientAction(consume));
}
