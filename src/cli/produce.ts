/**
 * `sluice produce TOPIC [--acks all|1|0] [--key-separator SEP] [--partition P]`: one
 * record per line of stdin (the key is what precedes the first SEP; a line without SEP
 * has no key), then a summary on stderr (records, bytes, seconds, records/s).
 *
 * Memory is bounded: stdin is read line by line (readline's iterator pauses stdin when
 * 1024 lines wait), and at most PENDING_RECORDS_MAX records or PENDING_BYTES_MAX bytes are
 * sent and not yet acknowledged; past either, reading waits until half are answered. The
 * first failed record stops reading; what was sent before it is flushed, and the command
 * exits 1. Owner: the main thread of the CLI process.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { createInterface } from 'node:readline';
import type { Acks, Producer } from '../client/index.js';
import { SluiceError } from '../errors.js';
import {
  brokerUrl,
  clientAction,
  clientCommand,
  closeClient,
  EXIT_ERROR,
  EXIT_OK,
  EXIT_SIGNAL,
  errorLine,
  exitWithError,
  nonEmpty,
  nonNegativeInt,
  openClient,
  Progress,
} from './client-common.js';

/** Records sent and not yet answered before reading waits (bounds the promises held). */
export const PENDING_RECORDS_MAX = 10_000;
/** Record bytes sent and not yet answered before reading waits (below the producer's own 32 MiB buffer). */
export const PENDING_BYTES_MAX = 16 * 1024 * 1024;

interface ProduceFlags {
  broker?: string;
  acks: Acks;
  keySeparator?: string;
  partition?: number;
}

function acksOption(value: string): Acks {
  if (value === 'all' || value === '-1') return 'all';
  if (value === '1') return 1;
  if (value === '0') return 0;
  throw new InvalidArgumentError('expected all, 1 or 0');
}

/** Counts what is sent and unanswered, and lets the reader wait until it has fallen to half. */
class PendingWindow {
  records = 0;
  bytes = 0;
  #wake: (() => void) | null = null;

  get full(): boolean {
    return this.records >= PENDING_RECORDS_MAX || this.bytes >= PENDING_BYTES_MAX;
  }

  add(bytes: number): void {
    this.records++;
    this.bytes += bytes;
  }

  settle(bytes: number): void {
    this.records--;
    this.bytes -= bytes;
    if (this.#wake && this.records <= PENDING_RECORDS_MAX / 2 && this.bytes <= PENDING_BYTES_MAX / 2) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
    }
  }

  /** Resolves once half the window is free (every pending send settles eventually: the producer answers or fails each). */
  waitForRoom(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }
}

/** The signal that stopped the reading (null: none yet), and what stops it. */
interface Interruption {
  by: NodeJS.Signals | null;
  stopReading: () => void;
}

/**
 * Ctrl-C (or SIGTERM) stops the reading: what was sent is flushed and summed up, then exit
 * 130 (143). Caught from the start to the summary, so a signal while connecting or flushing
 * ends the same way; a second one ends the process at once.
 */
async function produce(topic: string, flags: ProduceFlags): Promise<number> {
  const interruption: Interruption = { by: null, stopReading: () => undefined };
  const interrupt = (signal: NodeJS.Signals) => {
    interruption.by = signal;
    interruption.stopReading();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    return await produceLines(topic, flags, interruption);
  } finally {
    process.removeListener('SIGINT', interrupt);
    process.removeListener('SIGTERM', interrupt);
  }
}

async function produceLines(topic: string, flags: ProduceFlags, interruption: Interruption): Promise<number> {
  let startedMs = performance.now();
  let sent = 0;
  let sentBytes = 0;
  let acknowledged = 0;
  let acknowledgedBytes = 0;
  let firstError: unknown = null;
  let progress: Progress | null = null;
  const seconds = () => (performance.now() - startedMs) / 1000;
  const printSummary = (): void => {
    progress?.stop();
    const s = seconds();
    const rate = s > 0 ? Math.round(acknowledged / s) : acknowledged;
    const acks = flags.acks === 'all' ? 'all' : String(flags.acks);
    process.stderr.write(`sluice produce: ${acknowledged} records, ${acknowledgedBytes} bytes in ${s.toFixed(3)} s (${rate} records/s, acks ${acks})\n`);
  };
  // Giving up on a lost broker ends the command at once, after the summary of what it acknowledged.
  const client = await openClient(brokerUrl(flags), (err) => {
    printSummary();
    exitWithError(err);
  });
  const description = await client.describeTopic(topic);
  if (flags.partition !== undefined && flags.partition >= description.partitions.length) {
    throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `${topic} has ${description.partitions.length} partitions, no partition ${flags.partition}`);
  }
  const producer = client.producer({ acks: flags.acks });
  startedMs = performance.now();
  const window = new PendingWindow();
  progress = new Progress(() => `sluice produce: ${sent} records sent, ${acknowledged} acknowledged, ${sentBytes} bytes, ${seconds().toFixed(1)} s`);
  const rl = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY, terminal: false });
  const sep = flags.keySeparator;
  interruption.stopReading = () => rl.close();
  if (interruption.by !== null) rl.close(); // while connecting
  try {
    for await (const line of rl) {
      if (firstError !== null || interruption.by !== null) break;
      let key: string | null = null;
      let value = line;
      if (sep !== undefined) {
        const at = line.indexOf(sep);
        if (at >= 0) {
          key = line.slice(0, at);
          value = line.slice(at + sep.length);
        }
      }
      const bytes = Buffer.byteLength(value) + (key === null ? 0 : Buffer.byteLength(key));
      send(producer, { topic, key, value, partition: flags.partition }, bytes);
      sent++;
      sentBytes += bytes;
      if (window.full) await window.waitForRoom();
    }
  } finally {
    rl.close();
  }
  await producer.flush();
  printSummary();
  await closeClient(client);
  if (firstError !== null) {
    process.stderr.write(`sluice: ${errorLine(firstError)}\n`);
    return EXIT_ERROR;
  }
  return interruption.by !== null ? (EXIT_SIGNAL[interruption.by] ?? EXIT_OK) : EXIT_OK;

  function send(p: Producer, record: { topic: string; key: string | null; value: string; partition?: number }, bytes: number): void {
    window.add(bytes);
    p.send(record).then(
      () => {
        acknowledged++;
        acknowledgedBytes += bytes;
        window.settle(bytes);
      },
      (err: unknown) => {
        firstError ??= err;
        window.settle(bytes);
      },
    );
  }
}

export function produceCommand(): Command {
  return clientCommand('produce', 'send each line of stdin as a record; a summary goes to stderr at the end')
    .argument('<topic>', 'topic to produce to')
    .addOption(new Option('--acks <acks>', 'all: on disk and synced; 1: written; 0: no answer').argParser(acksOption).default('all' as Acks, 'all'))
    .option('--key-separator <sep>', 'split each line at the first SEP: key before, value after', nonEmpty)
    .option('--partition <p>', 'send every record to this partition (default: by key hash, or sticky without a key)', nonNegativeInt)
    .action(clientAction(produce));
}
