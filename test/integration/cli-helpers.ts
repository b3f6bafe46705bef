/**
 * For the CLI client tests: a real `sluice start` process on a free port (port 0, read
 * back from its `sluice started` line) and an async runner for `sluice` commands (async,
 * so the broker's output pipes keep being read while a command runs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSluice, memoryLogger } from '../helpers/dist.js';

export const CLI = join(fileURLToPath(new URL('../../', import.meta.url)), 'dist/src/cli/main.js');
/** A command that has not finished by then is a failed test, not a hung suite. */
const COMMAND_TIMEOUT_MS = 30_000;

export interface Broker {
  child: ChildProcess;
  port: number;
  url: string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export async function startBroker(options: { dataDir: string; port?: number }): Promise<Broker> {
  const child = spawn(process.execPath, [CLI, 'start', '--data-dir', options.dataDir, '--workers', '1', '--port', String(options.port ?? 0)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let seen = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start line: ${seen}`)), 20_000);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split('\n').find((l) => l.includes('"msg":"sluice started"'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the broker exited (${code}) before starting: ${seen}`));
    });
  });
  return {
    child,
    port,
    url: `ws://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** Runs `sluice ...args` with `input` on stdin (then EOF); `onStdout` sees the output as it comes. */
export function sluice(args: string[], options: { input?: string; env?: Record<string, string>; onStdout?: (stdoutSoFar: string) => void } = {}): Promise<RunResult> {
  const startedMs = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    options.onStdout?.(stdout);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.on('error', () => undefined); // a command that exits before reading stdin
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sluice ${args.join(' ')} did not finish within ${COMMAND_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, COMMAND_TIMEOUT_MS);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, elapsedMs: performance.now() - startedMs });
    });
  });
}

/** Lines of a command's output, without the final empty one. */
export function lines(text: string): string[] {
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

/**
 * Runs `sluice ...args | head -<lines>` in bash: the command's stdout as head passed it on,
 * and its exit status (PIPESTATUS) as the stderr line `status N` after whatever it wrote.
 */
export async function throughHead(args: string[], headLines: number): Promise<{ stdout: string; stderr: string }> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const sh = spawn('bash', ['-c', `"${process.execPath}" "${CLI}" ${quoted} | head -${headLines}; echo "status \${PIPESTATUS[0]}" >&2`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  sh.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  sh.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  await new Promise((resolve) => sh.on('close', resolve));
  return { stdout, stderr };
}

/** Writes a data dir holding topic `t` (1 partition) with one record `x`, through the engine, closed cleanly. */
export async function dataDirWithOneRecord(dataDir: string): Promise<void> {
  const S = await loadSluice();
  const e = await S.Engine.open({ dataDir, workers: 1, logger: memoryLogger() });
  await e.createTopic('t', { partitions: 1 });
  await e.produce('t', 0, S.encodeBatch([{ value: S.utf8('x') }]));
  await e.close();
}

