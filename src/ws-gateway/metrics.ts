/**
 * The gateway's Prometheus metrics (prom-client), served at GET /metrics.
 *
 * One Registry per gateway (no global registry: two gateways in one process, as tests run
 * them, keep separate counts). Counters are bumped per request or per batch, never per
 * record; per-partition state (log end offsets, high watermarks) and owner restarts are
 * read from the engine only when /metrics is scraped. The per-topic traffic counters
 * (records and bytes in and out) are plain numbers per topic (`traffic(topic)`) that the
 * counters read at scrape time: prom-client hashes a label object on every inc, and those
 * four incs per batch were a few per cent of the gateway thread at 1,000 batches a second.
 *
 * Owner: the gateway (main) thread.
 */
import type { Groups } from '../engine/groups.js';
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { Engine } from '../engine/engine.js';

/** Request latency buckets in seconds: 50 µs (a produce into the ring) to 30 s (a maximal long poll). */
export const LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Records and bytes through the gateway for one topic, since the gateway started. */
export interface TopicTraffic {
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #traffic = new Map<string, TopicTraffic>();
  readonly requestSeconds = new RequestHistogram('sluice_request_duration_seconds', 'time from a request frame arriving to its response being handed to the socket');
  readonly errors: Counter<'op' | 'code'>;
  readonly throttled: Counter<'cause'>;
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly originsRefused: Counter;
  readonly sendsDropped: Counter;
  readonly bufferedBytes: Gauge;
  readonly subscriptions: Gauge;
  readonly #unlisten: () => void;

  /** Counts one request of `op` (its name, as opName gives it) that took `seconds`. */
  observeRequest(op: string, seconds: number): void {
    this.requestSeconds.observe(op, seconds);
  }

  constructor(engine: Engine, groups: Pick<Groups, 'coordinator' | 'offsets'>, gauges: { bufferedBytes(): number; subscriptions(): number }) {
    const registers = [this.registry];
    const traffic = this.#traffic;
    const trafficCounter = (name: string, help: string, field: keyof TopicTraffic) =>
      new Counter({
        name,
        help,
        labelNames: ['topic'],
        registers,
        collect() {
          this.reset();
          for (const [topic, t] of traffic) if (t[field] > 0) this.inc({ topic }, t[field]);
        },
      });
    trafficCounter('sluice_records_in_total', 'records appended through the gateway', 'recordsIn');
    trafficCounter('sluice_bytes_in_total', 'batch bytes appended through the gateway', 'bytesIn');
    trafficCounter('sluice_records_out_total', 'records sent to consumers (fetch and subscriptions)', 'recordsOut');
    trafficCounter('sluice_bytes_out_total', 'batch bytes sent to consumers (fetch and subscriptions)', 'bytesOut');
    // Not a prom-client type (see RequestHistogram); the registry reads any metric through get().
    this.registry.registerMetric(this.requestSeconds as unknown as Metric);
    this.errors = new Counter({ name: 'sluice_request_errors_total', help: 'requests answered with ERROR (or failed silently, for acks=0)', labelNames: ['op', 'code'], registers });
    this.throttled = new Counter({ name: 'sluice_throttled_total', help: 'requests answered THROTTLED, by cause', labelNames: ['cause'], registers });
    this.connections = new Gauge({ name: 'sluice_connections', help: 'open WebSocket connections', registers });
    this.connectionsTotal = new Counter({ name: 'sluice_connections_total', help: 'WebSocket connections opened', registers });
    this.originsRefused = new Counter({ name: 'sluice_origin_refused_total', help: 'WebSocket handshakes and topic changes refused: the page origin is not allowed', registers });
    this.sendsDropped = new Counter({ name: 'sluice_sends_dropped_total', help: 'frames uWS dropped at maxBackpressure (the socket is then closed)', registers });
    this.bufferedBytes = new Gauge({
      name: 'sluice_gateway_buffered_bytes',
      help: 'bytes buffered in sockets, gateway-wide (the memory budget counts these)',
      registers,
      collect() {
        this.set(gauges.bufferedBytes());
      },
    });
    this.subscriptions = new Gauge({
      name: 'sluice_subscriptions',
      help: 'open subscriptions',
      registers,
      collect() {
        this.set(gauges.subscriptions());
      },
    });
    new Gauge({
      name: 'sluice_owner_restarts',
      help: 'times each owner thread was restarted after dying',
      labelNames: ['owner'],
      registers,
      collect() {
        this.reset();
        for (const o of engine.ownerStats()) this.set({ owner: String(o.owner) }, o.restarts);
      },
    });
    const ownerGauge = (name: string, help: string, value: (s: ReturnType<Engine['ownerStats']>[number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['owner'],
        registers,
        collect() {
          this.reset();
          for (const s of engine.ownerStats()) this.set({ owner: String(s.owner) }, value(s));
        },
      });
    ownerGauge('sluice_owner_up', '1 while the owner thread serves, 0 while it restarts', (s) => (s.up ? 1 : 0));
    ownerGauge('sluice_owner_requests_in_flight', 'requests sent to the owner and not yet answered', (s) => s.inFlight);
    ownerGauge('sluice_command_ring_fill_ratio', 'share of the owner command ring holding unread commands', (s) => s.commandRingUsedBytes / s.commandRingBytes);
    ownerGauge('sluice_log_ring_bytes', "shared memory in the log rings of the owner's partitions", (s) => s.logRingBytes);
    ownerGauge('sluice_log_ring_spare_bytes', "shared memory in log rings of closed partitions, kept for the owner's next partitions", (s) => s.spareLogRingBytes);
    const partitionGauge = (name: string, help: string, field: 'logEndOffset' | 'highWatermark' | 'logStartOffset' | 'durableOffset' | 'sizeBytes') =>
      new Gauge({
        name,
        help,
        labelNames: ['topic', 'partition'],
        registers,
        collect() {
          this.reset();
          for (const d of describeAll(engine)) {
            for (const p of d.partitions) this.set({ topic: d.name, partition: String(p.partition) }, p[field]);
          }
        },
      });
    partitionGauge('sluice_log_end_offset', 'next offset to assign, per partition', 'logEndOffset');
    partitionGauge('sluice_high_watermark', 'offset below which records are visible, per partition', 'highWatermark');
    partitionGauge('sluice_log_start_offset', 'first offset still stored, per partition', 'logStartOffset');
    partitionGauge('sluice_durable_offset', 'offset below which records are fsynced, per partition', 'durableOffset');
    partitionGauge('sluice_partition_size_bytes', 'bytes stored, per partition', 'sizeBytes');
    new Gauge({
      name: 'sluice_group_lag',
      help: "records between a group's committed offset and the partition's high watermark",
      labelNames: ['group', 'topic', 'partition'],
      registers,
      collect() {
        this.reset();
        const ends = new Map<string, number[]>();
        for (const d of describeAll(engine)) ends.set(d.name, d.partitions.map((p) => p.highWatermark));
        for (const group of groups.offsets.groupIds()) {
          for (const o of groups.offsets.get(group)) {
            const end = ends.get(o.topic)?.[o.partition];
            if (end !== undefined) this.set({ group, topic: o.topic, partition: String(o.partition) }, Math.max(0, end - o.offset));
          }
        }
      },
    });
    new Gauge({
      name: 'sluice_group_members',
      help: 'live members per consumer group',
      labelNames: ['group'],
      registers,
      collect() {
        this.reset();
        for (const g of groups.coordinator.listGroups()) this.set({ group: g.groupId }, g.members);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
    // A deleted topic's series go (as Kafka drops a deleted topic's metrics); a topic
    // created again under its name counts from zero.
    this.#unlisten = engine.onTopicsChanged((event) => {
      if (event.kind === 'deleted') traffic.delete(event.topic);
    });
  }

  /** Stops following the engine's topic changes (the gateway closes). */
  close(): void {
    this.#unlisten();
  }

  /** The traffic counts of `topic`, to add to (made on first use; kept while the gateway runs and the topic exists). */
  traffic(topic: string): TopicTraffic {
    let t = this.#traffic.get(topic);
    if (t === undefined) this.#traffic.set(topic, (t = { recordsIn: 0, bytesIn: 0, recordsOut: 0, bytesOut: 0 }));
    return t;
  }
}

/** One line of a histogram as prom-client's Registry formats it. */
interface HistogramValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/** One op's latency counts: per bucket of LATENCY_BUCKETS_S (not cumulative), then the sum and count. */
interface OpLatency {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram with the label `op`, kept as plain counts and written out in Prometheus'
 * histogram form (cumulative `_bucket{le}`, `_sum`, `_count`) when the registry is read.
 * An observe is a short bucket search and three adds: prom-client's Histogram validated
 * and hashed a label object and found its bucket by string key on every observe, about 4%
 * of the gateway thread at 1,000 produces a second (perf, ninth session).
 */
export class RequestHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #ops = new Map<string, OpLatency>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  observe(op: string, seconds: number): void {
    let o = this.#ops.get(op);
    if (o === undefined) this.#ops.set(op, (o = { buckets: new Float64Array(LATENCY_BUCKETS_S.length), sum: 0, count: 0 }));
    let b = 0;
    while (b < LATENCY_BUCKETS_S.length && seconds > LATENCY_BUCKETS_S[b]) b++;
    if (b < LATENCY_BUCKETS_S.length) o.buckets[b]++;
    o.sum += seconds;
    o.count++;
  }

  /** The values in prom-client's form: what Registry.metrics() formats. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramValue[] }> {
    const values: HistogramValue[] = [];
    for (const [op, o] of this.#ops) {
      let cumulative = 0;
      for (let b = 0; b < LATENCY_BUCKETS_S.length; b++) {
        cumulative += o.buckets[b];
        values.push({ labels: { le: LATENCY_BUCKETS_S[b], op }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { le: '+Inf', op }, value: o.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { op }, value: o.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { op }, value: o.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#ops.clear();
  }
}

function describeAll(engine: Engine): ReturnType<Engine['describeTopic']>[] {
  try {
    const out: ReturnType<Engine['describeTopic']>[] = [];
    for (const name of engine.listTopics()) {
      try {
        out.push(engine.describeTopic(name));
      } catch {
        // deleted between the list and the describe
      }
    }
    return out;
  } catch {
    return []; // the engine is closed
  }
}
