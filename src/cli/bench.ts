/**
 * `sluice bench` (issue 3): produce throughput (acks=all and acks=1), consume throughput of
 * a stored backlog, and end-to-end latency at a fixed rate, over loopback WebSocket through
 * the project's own client, each as a ratio to the machine's raw loopback WebSocket
 * bandwidth measured in the same run. The implementation is bench/ws.bench.ts; this file
 * is only the command line.
 *
 *   sluice bench [--broker URL] [--records N] [--record-bytes 100] [--runs 3] [--json FILE] [--smoke]
 *
 * Without --broker it starts its own broker as a child process (`sluice start --port 0`),
 * so that broker, producer process and consumer process are separate. Progress goes to
 * stderr (TTY only), the table to stdout. Owner: the CLI's main thread.
 */
import { Command, InvalidArgumentError } from 'commander';
import { benchDefaults, formatWsBench, runWsBench, writeJson } from '../../bench/ws.bench.js';
import { brokerUrlProblem, nonNegativeInt, positiveInt } from './client-common.js';

function recordBytes(value: string): number {
  const n = positiveInt(value);
  // The latency run stamps each record's first 8 bytes; one record must fit a 1 MiB batch.
  if (n < 8 || n > 512 * 1024) throw new InvalidArgumentError('expected 8 to 524288 bytes');
  return n;
}

function brokerUrl(value: string): string {
  const problem = brokerUrlProblem(value);
  if (problem !== null) throw new InvalidArgumentError(problem);
  return value;
}

function latencyAcks(value: string): 'all' | 1 {
  if (value === 'all' || value === '-1') return 'all';
  if (value === '1') return 1;
  throw new InvalidArgumentError('expected all or 1');
}

interface BenchFlags {
  broker?: string;
  records?: number;
  recordBytes?: number;
  runs?: number;
  json?: string;
  smoke?: boolean;
  producerThreads?: number;
  consumerThreads?: number;
  latencyRecords?: number;
  latencyWarmupRecords?: number;
  latencyAcks?: 'all' | 1;
}

export function benchCommand(): Command {
  return new Command('bench')
    .description('benchmark produce, consume (start to end and steady rates) and end-to-end latency over loopback WebSocket, against the raw loopback bandwidth and echo round trip')
    .option('--broker <url>', 'ws://host:port/ of a running broker (default: start one in a child process)', brokerUrl)
    .option('--records <n>', 'records per throughput run (default 2,000,000; --smoke 20,000)', positiveInt)
    .option('--record-bytes <n>', 'record value size in bytes (default 100)', recordBytes)
    .option('--runs <n>', 'runs of each measurement; figures are medians (default 3; --smoke 1)', positiveInt)
    .option('--json <file>', 'also write the results as JSON to FILE')
    .option('--smoke', 'a tiny run (seconds), as the test suite does')
    .option('--producer-threads <n>', 'producer threads (piscina) in the producer process (default 2)', positiveInt)
    .option('--consumer-threads <n>', 'consumer threads (piscina) in the consumer process (default 2)', positiveInt)
    .option('--latency-records <n>', 'records sent at 10,000/s in each latency run (default 100,000)', positiveInt)
    .option('--latency-warmup-records <n>', 'records sent at the same rate before those, not measured (default 30,000; --smoke 500; 0 for none)', nonNegativeInt)
    .option('--latency-acks <acks>', "the latency producer's acks: all (the default, as the client's) or 1", latencyAcks)
    .action(async (flags: BenchFlags) => {
      const d = benchDefaults(flags.smoke === true);
      const result = await runWsBench({
        broker: flags.broker,
        records: flags.records ?? d.records,
        recordBytes: flags.recordBytes ?? d.recordBytes,
        runs: flags.runs ?? d.runs,
        latencyRecords: flags.latencyRecords ?? d.latencyRecords,
        latencyWarmupRecords: flags.latencyWarmupRecords ?? d.latencyWarmupRecords,
        latencyAcks: flags.latencyAcks ?? 'all',
        loopbackBytes: d.loopbackBytes,
        producerThreads: flags.producerThreads ?? d.producerThreads,
        consumerThreads: flags.consumerThreads ?? d.consumerThreads,
        progress: true,
      });
      process.stdout.write(formatWsBench(result) + '\n');
      if (flags.json) writeJson(flags.json, result);
    });
}
