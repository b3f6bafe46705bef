/**
 * The client in a real browser: Debian's Chromium (driven by playwright-core, never a
 * downloaded browser) loads the client the gateway serves at /sluice-client.js, produces
 * records (keys, headers, null values, gzip and none) through an in-process gateway and
 * consumes them back. The page reports what it read as plain data; the test checks every
 * record came back once, in offset order, byte for byte.
 *
 * Chromium must be installed (.ci/run installs it); without it this file fails, it does
 * not skip.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { as, F, RawClient } from '../fixtures/gateway-client.js';
import { loadClient, loadSluice, memoryLogger, tempDir } from '../helpers/dist.js';

const CHROMIUM_PATH = process.env.SLUICE_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Launching Chromium on a loaded 2-core machine takes a few seconds. */
const LAUNCH_TIMEOUT_MS = 30_000;
/** The page's own bound on one evaluate (it times out its consumer at 20 s). */
const EVALUATE_TIMEOUT_MS = 40_000;
const SCREENSHOT_PATH = '/tmp/sluice-browser-roundtrip.png';
const PAGE_MODULE = readFileSync(new URL('../fixtures/browser-page.mjs', import.meta.url), 'utf8');
const PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>sluice test</title>
<script type="module">import * as t from './browser-page.mjs'; window.sluiceTest = t; window.sluiceReady = true;</script>`;

const S = await loadSluice();
const C = await loadClient();

let dir: ReturnType<typeof tempDir>;
let engine: Awaited<ReturnType<typeof S.Engine.open>>;
let gateway: Awaited<ReturnType<typeof S.startGateway>>;
let browser: Browser;
let pageServer: Server;

beforeAll(async () => {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}: the browser tests need it (apt-get install -y --no-install-recommends chromium; .ci/run does this). Set SLUICE_CHROMIUM to use another binary.`);
  }
  dir = tempDir('browser');
  engine = await S.Engine.open({ dataDir: dir.path, workers: 1, logger: memoryLogger() });
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: LAUNCH_TIMEOUT_MS });
  // A page on another origin than the gateway, as an application would host it.
  pageServer = createServer((req, res) => {
    if (req.url === '/index.html') res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE_HTML);
    else if (req.url === '/browser-page.mjs') res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(PAGE_MODULE);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  // That origin is allowed, as an operator would allow the application's site; others are not.
  gateway = await S.startGateway({ engine, host: '127.0.0.1', port: 0, allowedOrigins: [`http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`] });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => (pageServer ? pageServer.close(resolve) : resolve(undefined)));
  await gateway?.close();
  await engine?.close();
  dir?.remove();
});

const gatewayOrigin = () => `http://127.0.0.1:${gateway.port}`;
const wsUrl = () => `ws://127.0.0.1:${gateway.port}/`;

/** Loads `url` in a fresh page and, unless told not to, waits for the test module; page errors and console errors are collected. */
async function openPage(url: string, options: { ready?: boolean } = {}): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // The browser asks every origin for /favicon.ico on its own; neither server has one.
    if (msg.type() === 'error' && !msg.location().url.endsWith('/favicon.ico')) errors.push(`console: ${msg.text()}`);
  });
  page.setDefaultTimeout(EVALUATE_TIMEOUT_MS);
  await page.goto(url);
  if (options.ready !== false) await page.waitForFunction('window.sluiceReady === true');
  return { page, errors };
}

type Wire = string | null | { bytes: number[] };
interface SpecRecord {
  key: Wire;
  value: Wire;
  headers: [string, Wire][];
  timestamp: number;
}

/** Record i: keys as text, bytes or null; values as text (multi-byte UTF-8), bytes or null; repeated and null headers. */
function record(i: number): SpecRecord {
  const key: Wire = i % 6 === 5 ? null : i % 4 === 0 ? { bytes: [0, 255, i, 128] } : `key-${i % 7}`;
  const value: Wire = i % 10 === 9 ? null : i % 3 === 0 ? { bytes: Array.from({ length: 40 + i }, (_, j) => (i * 31 + j * 7) & 0xff) } : `value-${i} ü € 😀`;
  const headers: [string, Wire][] = [
    ['i', String(i)],
    ['bin', { bytes: [i & 0xff, 0, 255] }],
  ];
  if (i % 5 === 0) headers.push(['nil', null], ['dup', 'a'], ['dup', 'b']);
  return { key, value, headers, timestamp: 1_700_000_000_000 + i * 7 };
}

function hexOf(v: Wire): string | null {
  if (v === null) return null;
  return Buffer.from(typeof v === 'string' ? new TextEncoder().encode(v) : Uint8Array.from(v.bytes)).toString('hex');
}

function bytesOf(v: Exclude<Wire, null>): Uint8Array {
  return typeof v === 'string' ? new TextEncoder().encode(v) : Uint8Array.from(v.bytes);
}

/** The compression codec (attributes bits 0-2) of every batch stored in a partition. */
async function storedCodecs(topic: string, partition: number): Promise<number[]> {
  const c = await RawClient.connect(gateway.port);
  try {
    const ok = as(await c.request((id) => F.encodeFetch({ correlationId: id, topic, partition, offset: 0, maxBytes: 1 << 20, minBytes: 0, maxWaitMs: 0 })), F.Op.FETCH_OK);
    const codecs: number[] = [];
    const v = new DataView(ok.records.buffer, ok.records.byteOffset, ok.records.byteLength);
    // RecordBatch v2 (big-endian): batchLength at 8 counts the bytes after offset 12; attributes at 21.
    for (let at = 0; at < ok.records.length; at += 12 + v.getInt32(at + 8)) codecs.push(v.getInt16(at + 21) & 0x07);
    return codecs;
  } finally {
    c.close();
  }
}

describe('the client in Chromium', () => {
  it('produces keyed records with headers (gzip and none) from a page and consumes each back once, in offset order', async () => {
    // On the gateway's origin, so the page imports '/sluice-client.js' as an application served by the gateway would.
    const { page, errors } = await openPageOnGatewayOrigin();
    const phases = [
      { compression: 'none', acks: 'all', records: Array.from({ length: 25 }, (_, i) => record(i)) },
      { compression: 'gzip', acks: 'all', records: Array.from({ length: 25 }, (_, i) => record(25 + i)) },
      { compression: 'none', acks: 1, records: Array.from({ length: 10 }, (_, i) => record(50 + i)) },
    ];
    const all = phases.flatMap((p) => p.records);
    const topic = 'browser-events';
    const partitions = 3;
    const spec = { clientUrl: '/sluice-client.js', wsUrl: wsUrl(), topic, partitions, phases };
    const result = (await page.evaluate(`window.sluiceTest.roundtrip(${JSON.stringify(spec)})`)) as {
      sent: { partition: number; offset: number }[];
      got: { topic: string; partition: number; offset: number; timestamp: number; key: string | null; value: string | null; headers: [string, string | null][] }[];
      keyPartitions: (number | null)[];
      userAgent: string;
      hasCompressionStream: boolean;
    };
    expect(result.hasCompressionStream).toBe(true);
    expect(result.sent).toHaveLength(all.length);
    expect(result.got).toHaveLength(all.length);

    // Keyed records land on murmur2(key) % partitions, the same in the browser and in Node.
    for (let i = 0; i < all.length; i++) {
      const key = all[i].key;
      if (key === null) continue;
      expect(result.keyPartitions[i], `record ${i}`).toBe(C.partitionForKey(bytesOf(key), partitions));
      expect(result.sent[i].partition, `record ${i}`).toBe(result.keyPartitions[i]);
    }

    // Every record once, with its key, value, headers and timestamp.
    const indexAt = new Map(result.sent.map((m, i) => [`${m.partition}:${m.offset}`, i]));
    const seen = new Set<number>();
    for (const r of result.got) {
      const i = indexAt.get(`${r.partition}:${r.offset}`);
      expect(i, `a record at ${r.partition}:${r.offset} that was never sent`).toBeDefined();
      expect(seen.has(i!), `record ${i} came back twice`).toBe(false);
      seen.add(i!);
      const want = all[i!];
      expect(r, `record ${i}`).toEqual({
        topic,
        partition: result.sent[i!].partition,
        offset: result.sent[i!].offset,
        timestamp: want.timestamp,
        key: hexOf(want.key),
        value: hexOf(want.value),
        headers: want.headers.map(([k, v]) => [k, hexOf(v)]),
      });
    }
    expect(seen.size).toBe(all.length);

    // In order: per partition, offsets follow send order, start at 0, and come back ascending without gaps.
    for (let p = 0; p < partitions; p++) {
      const sentOffsets = result.sent.filter((m) => m.partition === p).map((m) => m.offset);
      expect(sentOffsets, `partition ${p}: offsets in send order`).toEqual(sentOffsets.map((_, j) => j));
      expect(result.got.filter((r) => r.partition === p).map((r) => r.offset), `partition ${p}: consumed order`).toEqual(sentOffsets);
    }

    // Both codecs reached the log: the gzip phase stored gzip batches, the others none.
    const codecs = new Set<number>();
    for (let p = 0; p < partitions; p++) for (const c of await storedCodecs(topic, p)) codecs.add(c);
    expect([...codecs].sort()).toEqual([0, 1]);

    const summary = [
      `${result.got.length} records produced and consumed back`,
      `partitions: ${[0, 1, 2].map((p) => `${p}: ${result.got.filter((r) => r.partition === p).length}`).join(', ')}`,
      `batch codecs stored: ${[...codecs].sort().map((c) => (c === 1 ? 'gzip' : 'none')).join(', ')}`,
      `browser: ${result.userAgent}`,
    ].join('\n');
    await page.evaluate(`window.sluiceTest.render(${JSON.stringify(summary)})`);
    await page.setViewportSize({ width: 900, height: 260 });
    await page.screenshot({ path: SCREENSHOT_PATH });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('runs a consumer group of two members in the page: split partitions, every record once, offsets committed', async () => {
    const { page, errors } = await openPageOnGatewayOrigin();
    const spec = { clientUrl: `${gatewayOrigin()}/sluice-client.js`, wsUrl: wsUrl(), topic: 'browser-group', groupId: 'browser-readers', records: 200 };
    const result = await page.evaluate(`window.sluiceTest.group(${JSON.stringify(spec)})`).catch((err: unknown) => ({ failed: String(err) }));
    expect(result, `errors in the page: ${errors.join('; ')}`).toEqual({ members: 2, partitionsPerMember: [2, 2], distinct: 200, committedTotal: 200 });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('loads the client cross-origin from a page served by another server', async () => {
    // Module scripts from another origin need CORS: the gateway allows any origin for its public client files.
    for (const path of ['/sluice-client.js', '/sluice/client/index.js']) {
      const res = await globalThis.fetch(`${gatewayOrigin()}${path}`, { headers: { Origin: 'http://example.test' } });
      expect(res.headers.get('access-control-allow-origin'), path).toBe('*');
    }
    const { port } = pageServer.address() as AddressInfo;
    const { page, errors } = await openPage(`http://127.0.0.1:${port}/index.html`);
    const spec = { clientUrl: `${gatewayOrigin()}/sluice-client.js`, wsUrl: wsUrl(), topic: 'browser-cross-origin' };
    const result = await page.evaluate(`window.sluiceTest.smoke(${JSON.stringify(spec)})`).catch((err: unknown) => ({ failed: String(err) }));
    expect(result, `errors in the page: ${errors.join('; ')}`).toEqual({ offset: 0, key: 'k', value: 'from another origin', header: 'x' });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('refuses the WebSocket of a page whose origin the broker does not allow, and its topic changes over HTTP', async () => {
    const { port } = pageServer.address() as AddressInfo;
    // The same server under another name: another origin, not in the gateway's list.
    const { page } = await openPage(`http://localhost:${port}/index.html`);
    const spec = { clientUrl: `${gatewayOrigin()}/sluice-client.js`, wsUrl: wsUrl(), topic: 'browser-refused' };
    const result = await page.evaluate(`window.sluiceTest.smoke(${JSON.stringify(spec)})`).then(
      () => 'connected',
      (err: unknown) => String(err),
    );
    expect(result).toMatch(/CONNECTION_LOST|could not connect|closed/i);
    // A page's fetch without a preflight (a text/plain POST) is refused too; the topic is not made.
    const posted = await page.evaluate(`fetch(${JSON.stringify(`${gatewayOrigin()}/topics`)}, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ name: 'made-by-a-page' }) }).then(() => 'sent', (e) => String(e))`);
    expect(posted).toBe('sent');
    expect(engine.listTopics()).not.toContain('made-by-a-page');
    expect(engine.listTopics()).not.toContain('browser-refused');
    // Both refused by the origin check (not by the browser): the handshake and the POST.
    const metrics = await (await globalThis.fetch(`${gatewayOrigin()}/metrics`)).text();
    expect(Number(/^sluice_origin_refused_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    await page.close();
  });
});

/**
 * A page on the gateway's own origin: a document the gateway really serves (/healthz), with
 * the test module added inline. Not a playwright-fulfilled document: Chromium's Local
 * Network Access checks treat a document that came from no address as public and block
 * its WebSocket to 127.0.0.1 (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
 */
async function openPageOnGatewayOrigin(): Promise<{ page: Page; errors: string[] }> {
  const { page, errors } = await openPage(`${gatewayOrigin()}/healthz`, { ready: false });
  await page.addScriptTag({ type: 'module', content: `${PAGE_MODULE}\nwindow.sluiceTest = { roundtrip, smoke, group, render }; window.sluiceReady = true;\n` });
  await page.waitForFunction('window.sluiceReady === true');
  return { page, errors };
}
