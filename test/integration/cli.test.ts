import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/dist.js';
import { dataDirWithOneRecord } from './cli-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');

function waitForLine(child: ReturnType<typeof spawn>, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms: ${seen}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const line = seen.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

describe('the sluice command', () => {
  it('starts the engine over a data dir, logs the owners and CRC implementation, and stops cleanly on SIGTERM', async () => {
    const dir = tempDir('cli');
    try {
      // A topic with data, so that the clean shutdown has a partition to mark.
      await dataDirWithOneRecord(dir.path);
      const child = spawn(process.execPath, [CLI, 'start', '--data-dir', dir.path, '--workers', '2', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const line = await waitForLine(child, /"msg":"engine open"/, 20_000);
      const fields = JSON.parse(line);
      expect(fields).toMatchObject({ dataDir: dir.path, owners: 2, topics: 1 });
      expect(['native', 'js']).toContain(fields.crc32c);
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(join(dir.path, 't-0', '.clean-shutdown'))).toBe(true);
      expect(existsSync(join(dir.path, '.lock'))).toBe(false);
      const verify = spawnSync(process.execPath, [CLI, 'verify', '--data-dir', dir.path], { encoding: 'utf8' });
      expect(verify.status).toBe(0);
      expect(verify.stdout).toMatch(/^ok: 1 partitions, 1 batches/m);
    } finally {
      dir.remove();
    }
  });

  it('takes settings from the environment when no flag is given', async () => {
    const dir = tempDir('cli-env');
    try {
      const child = spawn(process.execPath, [CLI, 'start'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SLUICE_DATA_DIR: dir.path, SLUICE_WORKERS: '1', SLUICE_PORT: '0' },
      });
      const fields = JSON.parse(await waitForLine(child, /"msg":"engine open"/, 20_000));
      expect(fields).toMatchObject({ dataDir: dir.path, owners: 1 });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      // The engine ran on the directory from the environment and released its lock on exit.
      expect(readdirSync(dir.path)).not.toContain('.lock');
    } finally {
      dir.remove();
    }
  });

  it('exits 2 on usage errors and 1 on operating errors, with one clear line', () => {
    const usage = spawnSync(process.execPath, [CLI, 'start', '--workers', 'many'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/workers/);
    const unknown = spawnSync(process.execPath, [CLI, 'nope'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/start/);
    const bad = spawnSync(process.execPath, [CLI, 'start', '--config', '/nonexistent/sluice.json'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^sluice: INVALID_ARGUMENT: config file/);
    // Each of these is one INVALID_ARGUMENT line (exit 1), before the engine opens anything.
    const dir = tempDir('cli-bad-settings');
    try {
      const unknownKey = join(dir.path, 'unknown.json');
      const wrongType = join(dir.path, 'type.json');
      writeFileSync(unknownKey, '{"prot": 1}');
      writeFileSync(wrongType, '{"port": "7071"}');
      const dataDir = join(dir.path, 'never');
      for (const [args, env, message] of [
        [['start', '--config', unknownKey, '--data-dir', dataDir], {}, /^sluice: INVALID_ARGUMENT: config file .*unknown setting prot \(known: dataDir, workers, host, port, flushIntervalMs, allowedOrigins\)$/],
        [['start', '--allowed-origins', 'http://ok.test,app.test', '--data-dir', dataDir], {}, /^sluice: INVALID_ARGUMENT: allowed origin "app.test" is not a URL like http:\/\/host:port$/],
        [['start', '--data-dir', dataDir], { SLUICE_ALLOWED_ORIGINS: 'http://a.test/path' }, /^sluice: INVALID_ARGUMENT: allowed origin "http:\/\/a.test\/path" must be scheme/],
        [['start', '--config', wrongType, '--data-dir', dataDir], {}, /^sluice: INVALID_ARGUMENT: config file .*port must be a JSON number, got "7071"$/],
        [['start', '--data-dir', dataDir], { SLUICE_LOG_LEVEL: 'bogus' }, /^sluice: INVALID_ARGUMENT: SLUICE_LOG_LEVEL=bogus: expected one of fatal, error/],
        [['verify', '--data-dir', dataDir], {}, new RegExp(`^sluice: INVALID_ARGUMENT: no data directory at ${dataDir}$`)],
      ] as const) {
        const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
        expect({ args, status: r.status }).toEqual({ args, status: 1 });
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(message)]);
      }
      expect(existsSync(dataDir)).toBe(false);
      // A data dir that cannot be one: the catalogue's code, not the system call's.
      const aFile = join(dir.path, 'a-file');
      writeFileSync(aFile, '');
      for (const dataDir of [aFile, join(aFile, 'sub')]) {
        const r = spawnSync(process.execPath, [CLI, 'start', '--port', '0', '--data-dir', dataDir], { encoding: 'utf8' });
        expect(r.status).toBe(1);
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^sluice: STORAGE_ERROR: create the data dir .*(EEXIST|ENOTDIR)/)]);
      }
    } finally {
      dir.remove();
    }
  });

  it("is importable by the package's own name, with its types built", () => {
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', "const m = await import('sluice'); console.log(typeof m.Engine.open, typeof m.encodeBatch)"], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(out.stdout.trim()).toBe('function function');
    expect(existsSync(join(ROOT, 'dist/src/index.d.ts'))).toBe(true);
  });
});
