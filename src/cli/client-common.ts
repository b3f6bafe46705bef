/**
 * What the client commands of the `sluice` CLI (topics, produce, consume) share: the
 * `--broker` option, a connection that fails fast instead of reconnecting forever, the
 * one-line error format (`sluice: CODE: message`), exit codes, option parsers and the
 * progress line.
 *
 * Exit codes: 0 ok, 1 operating error (broker, topic, records), 2 usage (commander's
 * errors and UsageError). Owner: the main thread of the CLI process.
 */
import { Command, InvalidArgumentError } from 'commander';
import { connect, type Sluice } from '../client/index.js';
import { ConnectionLostError } from '../client/connection.js';
import { SluiceError } from '../errors.js';
import { crc32c } from '../persist/crc32c.js';

export const BROKER_URL_DEFAULT = 'ws://127.0.0.1:7070';
/** A broker that does not answer the handshake within this is reported unreachable (scripts should not hang). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** After a lost connection, the client reconnects for this long before the command gives up (a broker restart fits). */
export const RECONNECT_GIVE_UP_MS = 15_000;
/** The progress line on a TTY is redrawn this often. */
export const PROGRESS_INTERVAL_MS = 250;

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
/** The shell's codes for a process ended by SIGINT / SIGTERM (128 + the signal), used after a command's clean exit steps. */
export const EXIT_SIGNAL: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143 };

/** A usage error found after commander's parsing (conflicting flags): exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The one line printed for an error, without the `sluice: ` prefix. */
export function errorLine(err: unknown): string {
  if (err instanceof SluiceError) return `${err.code}: ${err.message}`; // the client's connection errors too
  const coded = err as { code?: unknown; message?: unknown } | null;
  if (coded && typeof coded.code === 'string' && typeof coded.message === 'string') return `${coded.code}: ${coded.message}`;
  if (err instanceof UsageError) return `usage: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The broker's URL: --broker, else SLUICE_BROKER, else the default. One that is not a ws://
 * or wss:// URL is a usage error from the flag (exit 2), INVALID_ARGUMENT from the
 * environment (exit 1), as the other settings.
 */
export function brokerUrl(flags: { broker?: string }): string {
  if (flags.broker !== undefined) {
    const problem = brokerUrlProblem(flags.broker);
    if (problem !== null) throw new UsageError(`--broker ${flags.broker}: ${problem}`);
    return flags.broker;
  }
  const fromEnv = process.env.SLUICE_BROKER;
  if (!fromEnv) return BROKER_URL_DEFAULT;
  const problem = brokerUrlProblem(fromEnv);
  if (problem !== null) throw new SluiceError('INVALID_ARGUMENT', `SLUICE_BROKER=${fromEnv}: ${problem}`);
  return fromEnv;
}

/** Why `value` is not a broker URL (a ws:// or wss:// URL), or null when it is one. */
export function brokerUrlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `expected a WebSocket URL such as ${BROKER_URL_DEFAULT}`;
  }
  return url.protocol === 'ws:' || url.protocol === 'wss:' ? null : `expected a ws:// or wss:// URL such as ${BROKER_URL_DEFAULT}`;
}

/** Adds `--broker URL` and a short usage hint on errors to a client command. */
export function clientCommand(name: string, description: string, usagePath = name): Command {
  return new Command(name)
    .description(description)
    .option('--broker <url>', `the broker's WebSocket URL (default ${BROKER_URL_DEFAULT}, or SLUICE_BROKER)`)
    .showHelpAfterError(`(run sluice ${usagePath} --help for usage)`);
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected an integer >= 0');
  return n;
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return n;
}

/** A retention or size setting: a positive integer, or -1 for unlimited. */
export function limitOrUnlimited(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || (n < 1 && n !== -1)) throw new InvalidArgumentError('expected an integer >= 1, or -1 for unlimited');
  return n;
}

export function nonEmpty(value: string): string {
  if (value === '') throw new InvalidArgumentError('expected a non-empty string');
  return value;
}

/**
 * Connects to the broker once: an unreachable broker is an error within CONNECT_TIMEOUT_MS,
 * not a reconnect loop. Once connected, a lost connection is reconnected (the producer
 * resends, the consumer resubscribes) for up to RECONNECT_GIVE_UP_MS, then `onGiveUp` runs.
 */
export async function openClient(url: string, onGiveUp: (err: Error) => void): Promise<Sluice> {
  let lastSocketError = '';
  let client: Sluice;
  try {
    client = await connect({
      url,
      clientId: 'sluice-cli',
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      crc32c,
      onLog: (event) => {
        const message = event.error instanceof Error ? event.error.message : event.message;
        if (event.level === 'warn') lastSocketError = message.replace(/^socket error: /, '');
      },
    });
  } catch (err) {
    // The broker answered and refused (e.g. UNSUPPORTED_VERSION): its error says it all.
    if (err instanceof SluiceError && err.code !== 'CONNECTION_LOST' && err.code !== 'CLIENT_CLOSED') throw err;
    const why = lastSocketError || (err instanceof Error ? err.message : String(err));
    throw new ConnectionLostError(`cannot reach the broker at ${url} (${why})`);
  }
  let timer: NodeJS.Timeout | null = null;
  client.connection.onDisconnected(() => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      onGiveUp(new ConnectionLostError(`lost the broker at ${url} and could not reconnect within ${RECONNECT_GIVE_UP_MS / 1000} s`));
    }, RECONNECT_GIVE_UP_MS);
  });
  client.connection.onReconnected(() => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  });
  return client;
}

/** Closes the client without waiting for a broker that may be gone. */
export async function closeClient(client: Sluice | null): Promise<void> {
  if (!client) return;
  if (client.connection.state !== 'ready') {
    client.connection.close();
    return;
  }
  await client.close();
}

/** Writes the error line, sets exit code 1 (2 for a usage error), and ends the process once stderr is written. */
export function exitWithError(err: unknown): never {
  process.stderr.write(`sluice: ${errorLine(err)}\n`);
  process.exit(err instanceof UsageError ? EXIT_USAGE : EXIT_ERROR);
}

/**
 * Runs a client command's body and ends the process with its exit code: the WebSocket,
 * stdin or a timer must not keep a finished command alive.
 */
export function clientAction<A extends unknown[]>(body: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    let code: number;
    try {
      code = (await body(...args)) ?? EXIT_OK;
    } catch (err) {
      exitWithError(err);
    }
    // stdout and stderr to files and pipes are written synchronously on Linux; a TTY too.
    process.exit(code);
  };
}

/** A line on stderr, redrawn in place, only when stderr is a terminal. */
export class Progress {
  readonly #render: () => string;
  readonly #timer: NodeJS.Timeout | null;
  #shown = false;

  constructor(render: () => string) {
    this.#render = render;
    this.#timer = process.stderr.isTTY ? setInterval(() => this.#draw(), PROGRESS_INTERVAL_MS) : null;
    this.#timer?.unref();
  }

  #draw(): void {
    process.stderr.write(`\r\x1b[2K${this.#render()}`);
    this.#shown = true;
  }

  /** Removes the line (before a summary or an error is printed). */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}

/** Connects to the broker of `--broker`, runs `body`, closes: for the one-shot admin commands. */
export async function withClient<T>(flags: { broker?: string }, body: (client: Sluice) => Promise<T>): Promise<T> {
  const client = await openClient(brokerUrl(flags), exitWithError);
  try {
    return await body(client);
  } finally {
    await closeClient(client);
  }
}
