#!/usr/bin/env node
/**
 * The `sluice` command. Exit codes: 0 ok, 1 error, 2 usage.
 *
 *   sluice start [--data-dir D] [--workers N] [--host H] [--port P] [--flush-interval-ms MS] [--allowed-origins LIST] [--config FILE]
 *   sluice verify [--data-dir D] [--threads N]
 *   sluice topics create|list|describe|delete ...   (./topics.ts)
 *   sluice produce TOPIC ...                         (./produce.ts)
 *   sluice consume TOPIC ...                         (./consume.ts)
 *   sluice groups list|describe|reset-offsets ...    (./groups.ts)
 *   sluice bench ...                                 (./bench.ts)
 *
 * The client commands take --broker URL (default ws://127.0.0.1:7070, or SLUICE_BROKER).
 * Settings come, from strongest to weakest, from flags, environment variables
 * (SLUICE_DATA_DIR, SLUICE_WORKERS, SLUICE_HOST, SLUICE_PORT, SLUICE_FLUSH_INTERVAL_MS, SLUICE_ALLOWED_ORIGINS), the config file (JSON) and
 * the defaults. `start` serves the WebSocket protocol and HTTP on one port (0: any free
 * port; the start line says which). Owner: the main thread of the CLI process.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import pino from 'pino';
import { Engine } from '../engine/engine.js';
import { SluiceError } from '../errors.js';
import { crc32cImplementation } from '../persist/crc32c.js';
import { parseAllowedOrigins } from '../ws-gateway/origins.js';
import { startGateway } from '../ws-gateway/server.js';
import { verifyDataDir } from '../workers/verify-pool.js';
import { benchCommand } from './bench.js';
import { errorLine, positiveInt } from './client-common.js';
import { consumeCommand } from './consume.js';
import { groupsCommand } from './groups.js';
import { produceCommand } from './produce.js';
import { topicsCommand } from './topics.js';

const DEFAULT_DATA_DIR = './data';
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 7070;

interface StartSettings {
  dataDir: string;
  workers?: number;
  host: string;
  port: number;
  /** fsync acks=1 data at least this often (ms); -1 or absent: never (Engine's default). */
  flushIntervalMs?: number;
  /** Web origins whose pages may use the broker besides its own (ws-gateway/origins.ts). */
  allowedOrigins: string[];
}

/** A comma-separated list of origins, checked (INVALID_ARGUMENT names the bad one). */
function originList(value: string): string[] {
  return parseAllowedOrigins(value.split(',').filter((v) => v.trim() !== ''));
}

/** A flush interval: -1 (never) or 1 ms to a day (Engine.open checks the range). */
function flushInterval(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || (n !== -1 && n < 1)) throw new InvalidArgumentError('expected -1 (never) or a number of milliseconds');
  return n;
}

/** A TCP port; 0 asks the system for a free one. */
function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port, 0 to 65535');
  return n;
}

/**
 * The environment variable `name` parsed as its flag is (`parse` throws commander's
 * InvalidArgumentError), or undefined when it is unset or empty; a bad value is
 * INVALID_ARGUMENT naming the variable.
 */
function fromEnv(name: string, parse: (value: string) => number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  try {
    return parse(raw);
  } catch (err) {
    throw new SluiceError('INVALID_ARGUMENT', `${name}=${raw}: ${(err as Error).message}`);
  }
}

/** The config file's settings and the JSON type each must have. */
const CONFIG_FILE_SETTINGS: Readonly<Record<string, 'string' | 'number'>> = {
  dataDir: 'string',
  workers: 'number',
  host: 'string',
  port: 'number',
  flushIntervalMs: 'number',
  allowedOrigins: 'string',
};

/**
 * The JSON object of a config file. An unknown setting (a misspelling would otherwise be
 * ignored) or one of the wrong JSON type is INVALID_ARGUMENT; the values themselves are
 * checked where flags' values are.
 */
function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    for (const [key, value] of Object.entries(parsed)) {
      const type = CONFIG_FILE_SETTINGS[key];
      if (type === undefined) throw new Error(`unknown setting ${key} (known: ${Object.keys(CONFIG_FILE_SETTINGS).join(', ')})`);
      if (typeof value !== type) throw new Error(`${key} must be a JSON ${type}, got ${JSON.stringify(value)}`);
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new SluiceError('INVALID_ARGUMENT', `config file ${path}: ${(err as Error).message}`);
  }
}

/** pino's levels: what SLUICE_LOG_LEVEL may name. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function logLevel(): string {
  const level = process.env.SLUICE_LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(level)) throw new SluiceError('INVALID_ARGUMENT', `SLUICE_LOG_LEVEL=${level}: expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

function startSettings(flags: Record<string, unknown>): StartSettings {
  const file = readConfigFile(flags.config as string | undefined);
  const pick = <T>(flag: unknown, env: T | undefined, fromFile: unknown, fallback: T): T =>
    (flag ?? env ?? fromFile ?? fallback) as T;
  return {
    dataDir: pick(flags.dataDir, process.env.SLUICE_DATA_DIR || undefined, file.dataDir, DEFAULT_DATA_DIR),
    workers: pick<number | undefined>(flags.workers, fromEnv('SLUICE_WORKERS', positiveInt), file.workers, undefined),
    host: pick(flags.host, process.env.SLUICE_HOST || undefined, file.host, DEFAULT_HOST),
    port: pick(flags.port, fromEnv('SLUICE_PORT', portNumber), file.port, DEFAULT_PORT),
    flushIntervalMs: pick<number | undefined>(flags.flushIntervalMs, fromEnv('SLUICE_FLUSH_INTERVAL_MS', flushInterval), file.flushIntervalMs, undefined),
    allowedOrigins: originList(pick(flags.allowedOrigins, process.env.SLUICE_ALLOWED_ORIGINS || undefined, file.allowedOrigins, '') as string),
  };
}

async function start(flags: Record<string, unknown>): Promise<void> {
  const settings = startSettings(flags);
  const level = logLevel();
  // Handlers first: a signal that comes while the engine recovers still ends in a clean close.
  let stopRequested: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stopRequested = resolve;
  });
  process.once('SIGINT', () => stopRequested('SIGINT'));
  process.once('SIGTERM', () => stopRequested('SIGTERM'));
  const logger = pino({ level, base: undefined }, pino.destination(2));
  const engine = await Engine.open({ dataDir: settings.dataDir, workers: settings.workers, flushIntervalMs: settings.flushIntervalMs, logger });
  let gateway;
  try {
    gateway = await startGateway({ engine, host: settings.host, port: settings.port, logger, allowedOrigins: settings.allowedOrigins });
  } catch (err) {
    await engine.close();
    throw err;
  }
  logger.info(
    { host: settings.host, port: gateway.port, dataDir: settings.dataDir, owners: engine.ownerCount, crc32c: crc32cImplementation, allowedOrigins: settings.allowedOrigins },
    'sluice started',
  );
  const signal = await stopped;
  logger.info({ signal }, 'stopping: no new connections, finishing appends in flight, closing cleanly');
  // The gateway answers what is in flight and closes its sockets; the engine then finishes
  // appends, syncs and writes the clean-shutdown markers.
  await gateway.close();
  await engine.close();
  logger.flush?.();
}

async function verify(flags: Record<string, unknown>): Promise<void> {
  const dataDir = (flags.dataDir as string | undefined) ?? process.env.SLUICE_DATA_DIR ?? DEFAULT_DATA_DIR;
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) throw new SluiceError('INVALID_ARGUMENT', `no data directory at ${dataDir}`);
  const report = await verifyDataDir({ dataDir, threads: flags.threads as number | undefined });
  if (report.brokerPid !== null) {
    process.stderr.write(`sluice verify: a running broker (pid ${report.brokerPid}) holds ${dataDir}: each active segment was read again where a read found a problem, and only what every read showed is reported\n`);
  }
  let batches = 0;
  let bytes = 0;
  for (const { dir, report: r } of report.partitions) {
    for (const seg of r.segments) {
      batches += seg.batches;
      bytes += seg.bytes;
      for (const e of seg.errors) {
        process.stdout.write(`CORRUPT ${dir}/${seg.file} position ${e.position} offset ${e.offset}: ${e.message}\n`);
      }
      for (const problem of seg.indexErrors) process.stdout.write(`INDEX ${dir}/${problem} (rebuilt when the broker next opens the partition)\n`);
    }
  }
  process.stdout.write(
    `${report.ok ? 'ok' : 'CORRUPT'}: ${report.partitions.length} partitions, ${batches} batches, ${bytes} bytes verified in ${dataDir}\n`,
  );
  if (!report.ok) process.exitCode = 1;
}

function program(): Command {
  const cmd = new Command('sluice')
    .description('Sluice: a single-machine event streaming engine with Apache Kafka\'s design')
    .exitOverride()
    .showHelpAfterError();
  cmd
    .command('start')
    .description('start the broker over a data directory')
    .option('--host <host>', `address to bind (default ${DEFAULT_HOST}, or SLUICE_HOST)`)
    .option('--port <port>', `port for WebSocket and HTTP (default ${DEFAULT_PORT}, or SLUICE_PORT; 0 picks a free one)`, portNumber)
    .option('--data-dir <dir>', `data directory (default ${DEFAULT_DATA_DIR}, or SLUICE_DATA_DIR)`)
    .option('--workers <n>', 'owner threads (default: one per core, or SLUICE_WORKERS)', positiveInt)
    .option('--flush-interval-ms <ms>', 'fsync acks=1 data at least this often (default -1: never, as Kafka; or SLUICE_FLUSH_INTERVAL_MS)', flushInterval)
    .option('--allowed-origins <list>', "web origins (http://host:port, comma-separated; * for any) whose pages may use the broker besides its own (default none, or SLUICE_ALLOWED_ORIGINS)")
    .option('--config <file>', 'JSON config file with dataDir, workers, host, port, flushIntervalMs, allowedOrigins')
    .action(start);
  cmd
    .command('verify')
    .description('check every segment of every partition (framing, CRC32C, offsets, indexes)')
    .option('--data-dir <dir>', `data directory (default ${DEFAULT_DATA_DIR}, or SLUICE_DATA_DIR)`)
    .option('--threads <n>', 'partitions verified in parallel (default: one per core)', positiveInt)
    .action(verify);
  cmd.addCommand(topicsCommand());
  cmd.addCommand(produceCommand());
  cmd.addCommand(consumeCommand());
  cmd.addCommand(groupsCommand());
  cmd.addCommand(benchCommand());
  exitOverrideEverywhere(cmd);
  return cmd;
}

/**
 * addCommand() does not pass settings down (only .command() does): without this, a usage
 * error in an added command would make commander call process.exit(1) itself, not exit 2.
 */
function exitOverrideEverywhere(cmd: Command): void {
  cmd.exitOverride();
  for (const sub of cmd.commands) exitOverrideEverywhere(sub);
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`sluice: ${errorLine(err)}\n`);
    process.exitCode = 1;
  }
}

void main();
