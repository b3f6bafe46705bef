/**
 * One consumer process of bench/groups.bench.ts: a member of a consumer group (or, with
 * group "-", a plain consumer of every partition) that counts the records it receives and
 * prints `{"count":N}` every REPORT_MS on stdout until killed.
 *
 *   node dist/bench/groups-worker.js URL TOPIC GROUP|- WINDOW_BYTES
 */
import { connect } from '../src/client/index.js';
import { crc32c } from '../src/persist/crc32c.js';

const REPORT_MS = 50;

const [url, topic, group, windowArg] = process.argv.slice(2);
const client = await connect({ url, clientId: `bench-${process.pid}`, crc32c });
const windowBytes = Number(windowArg);
const consumer =
  group === '-'
    ? client.consumer({ from: 'earliest', windowBytes })
    : client.consumer({ groupId: group, topics: [topic], fromBeginning: true, windowBytes, autoCommitIntervalMs: 1_000 });
if (group === '-') await consumer.subscribe(topic, { from: 'earliest' });
let count = 0;
setInterval(() => process.stdout.write(`${JSON.stringify({ count })}\n`), REPORT_MS);
await consumer.run({
  eachBatch: (b) => {
    count += b.records.length;
  },
});
