/**
 * The CLI through a broker restart: half the lines produced, the broker stopped with
 * SIGTERM and started again on the same data dir and port, the rest produced; a consumer
 * reads every line once, in order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/dist.js';
import { restartablePort } from '../helpers/net.js';
import { lines, sluice, startBroker, type Broker } from './cli-helpers.js';

let broker: Broker | null = null;
let dir: ReturnType<typeof tempDir> | null = null;

afterEach(async () => {
  await broker?.stop();
  broker = null;
  dir?.remove();
  dir = null;
});

describe('sluice produce and consume across a broker restart', () => {
  it('keeps every line once, in order, when the broker restarts between two produces', async () => {
    dir = tempDir('cli-restart');
    broker = await startBroker({ dataDir: dir.path, port: await restartablePort() });
    const { port, url } = broker;
    const b = ['--broker', url];
    expect((await sluice(['topics', 'create', 'restart', '--partitions', '1', ...b])).status).toBe(0);
    const input = Array.from({ length: 2_000 }, (_, i) => `record ${i}`);
    const first = await sluice(['produce', 'restart', ...b], { input: `${input.slice(0, 1_000).join('\n')}\n` });
    expect(first.status).toBe(0);

    expect(await broker.stop()).toBe(0);
    broker = await startBroker({ dataDir: dir!.path, port });
    expect(broker.port).toBe(port);

    const second = await sluice(['produce', 'restart', ...b], { input: `${input.slice(1_000).join('\n')}\n` });
    expect(second.status).toBe(0);
    const all = await sluice(['consume', 'restart', '--from-beginning', '--max-messages', '2000', ...b]);
    expect(all.status).toBe(0);
    expect(lines(all.stdout)).toEqual(input);
    // Nothing more than the 2000 lines is there.
    const rest = await sluice(['consume', 'restart', '--partition', '0', '--offset', '2000', '--idle-timeout-ms', '500', ...b]);
    expect(rest.stdout).toBe('');
  }, 60_000);

  it('a consumer waiting through the restart reconnects and reads the lines produced after it', async () => {
    dir = tempDir('cli-restart');
    broker = await startBroker({ dataDir: dir.path, port: await restartablePort() });
    const { port, url } = broker;
    const b = ['--broker', url];
    expect((await sluice(['topics', 'create', 'through', '--partitions', '2', ...b])).status).toBe(0);
    const input = Array.from({ length: 400 }, (_, i) => `k${i % 5}:value ${i}`);
    expect((await sluice(['produce', 'through', '--key-separator', ':', ...b], { input: `${input.slice(0, 200).join('\n')}\n` })).status).toBe(0);
    // The broker stops once the consumer has printed the first half (so it is connected and waiting).
    let firstHalf!: () => void;
    const firstHalfPrinted = new Promise<void>((resolve) => (firstHalf = resolve));
    const consuming = sluice(['consume', 'through', '--from-beginning', '--max-messages', '400', '--print-key', '--key-separator', ':', ...b], {
      onStdout: (out) => {
        if (lines(out).length >= 200) firstHalf();
      },
    });
    await Promise.race([firstHalfPrinted, consuming]);

    expect(await broker.stop()).toBe(0);
    broker = await startBroker({ dataDir: dir!.path, port });
    expect((await sluice(['produce', 'through', '--key-separator', ':', ...b], { input: `${input.slice(200).join('\n')}\n` })).status).toBe(0);

    const r = await consuming;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = lines(r.stdout);
    expect(got).toHaveLength(400);
    expect(new Set(got).size).toBe(400);
    // Per key (one partition each), the lines come in input order.
    for (let k = 0; k < 5; k++) {
      const key = `k${k}:`;
      expect(got.filter((l) => l.startsWith(key))).toEqual(input.filter((l) => l.startsWith(key)));
    }
  }, 60_000);
});
