/**
 * Tests that run threads or processes use the built package (dist/), exactly what users
 * run: `npm test` builds first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { afterEach } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DIST = new URL('../../dist/src/', import.meta.url);

export async function loadSluice(): Promise<typeof import('../../src/index.js')> {
  return (await import(new URL('index.js', DIST).href)) as typeof import('../../src/index.js');
}

/** The client as built in dist/ (the file browsers get). */
export async function loadClient(): Promise<typeof import('../../src/client/index.js')> {
  return (await import(new URL('client/index.js', DIST).href)) as typeof import('../../src/client/index.js');
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `sluice-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A logger that keeps lines for assertions instead of printing them. */
export function memoryLogger(): { lines: { level: string; msg?: string; obj: object }[]; info: any; warn: any; error: any } {
  const lines: { level: string; msg?: string; obj: object }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, msg, obj });
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

/**
 * The cleanups of a test file: push functions during a test; after each test they run,
 * last first. Registers the file's afterEach hook.
 */
export function cleanupsAfterEach(): (() => Promise<unknown> | unknown)[] {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return cleanups;
}

/**
 * An Engine (from dist/) over `dataDir`, or over a fresh temporary folder that goes with it,
 * with a memoryLogger; closed by `cleanups` after the test.
 */
export async function openTestEngine(
  cleanups: (() => Promise<unknown> | unknown)[],
  options: { dataDir?: string; prefix?: string; workers?: number; limits?: object; flushIntervalMs?: number } = {},
) {
  const S = await loadSluice();
  const dir = options.dataDir ? null : tempDir(options.prefix ?? 'engine');
  const dataDir = options.dataDir ?? dir!.path;
  const logger = memoryLogger();
  const engine = await S.Engine.open({ dataDir, workers: options.workers ?? 2, logger, limits: options.limits as never, flushIntervalMs: options.flushIntervalMs });
  cleanups.push(async () => {
    await engine.close();
    dir?.remove();
  });
  return { engine, dataDir, logger };
}
