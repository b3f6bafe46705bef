import { Histogram, Registry, type Metric } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS_S as BUCKETS, RequestHistogram } from '../../src/ws-gateway/metrics.js';
import { seededRandom } from '../helpers/random.js';

const NAME = 'sluice_request_duration_seconds';
const HELP = 'time from a request frame arriving to its response being handed to the socket';

describe('RequestHistogram', () => {
  it('writes the same Prometheus text as prom-client’s Histogram for the same observations', async () => {
    const ours = new Registry();
    const histogram = new RequestHistogram(NAME, HELP);
    ours.registerMetric(histogram as unknown as Metric);
    const theirs = new Registry();
    const reference = new Histogram({ name: NAME, help: HELP, labelNames: ['op'], buckets: BUCKETS, registers: [theirs] });
    const random = seededRandom(9);
    // Bucket bounds themselves (le is inclusive), values beyond the last bound, and random ones.
    const values = [...BUCKETS, 0, 31, 1e3, ...Array.from({ length: 500 }, () => random() ** 4 * 40)];
    for (const [i, v] of values.entries()) {
      const op = ['PRODUCE', 'FETCH', 'METADATA'][i % 3];
      histogram.observe(op, v);
      reference.observe({ op }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    histogram.reset();
    expect(await ours.metrics()).toBe(`# HELP ${NAME} ${HELP}\n# TYPE ${NAME} histogram\n`);
  });
});
