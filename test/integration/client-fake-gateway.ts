/**
 * A minimal in-memory gateway for the client's integration tests, built with the `ws`
 * WebSocketServer and the real frame codec (src/ws-gateway/frames.ts) and batch codec.
 * It follows docs/protocol.md for what the client uses: HELLO, admin, INIT_PRODUCER,
 * PRODUCE with the idempotence table, LIST_OFFSETS, SUBSCRIBE / CREDIT / UNSUBSCRIBE with
 * the credit rules, DATA pushes. Not a broker: no disk, no owners.
 *
 * Written because src/ws-gateway/server.ts (startGateway) did not exist yet when the
 * client was written. Fault hooks: drop the connection after the next append without
 * answering (a lost acknowledgement), THROTTLE the next produces, restart (close every
 * socket and listen again on the same port, keeping the data).
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { SluiceError } from '../../src/errors.js';
import { restartablePort } from '../helpers/net.js';
import { validateBatch, writeBaseOffset } from '../../src/persist/record-batch.js';
import {
  decodeClientFrame,
  encodeServerFrame,
  errorFrameOf,
  Op,
  type ClientFrame,
  type ServerFrame,
} from '../../src/ws-gateway/frames.js';
import { BATCH_BYTES_MAX, FETCH_BYTES_MAX, FETCH_WAIT_MS_MAX, FRAME_BYTES_MAX, IN_FLIGHT_PER_CONNECTION_MAX, PROTOCOL_VERSION, SUBSCRIPTIONS_PER_CONNECTION_MAX } from '../../src/ws-gateway/limits.js';

interface StoredBatch {
  bytes: Uint8Array;
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
}

interface ProducerState {
  lastSequence: number;
  recent: { baseSequence: number; lastSequence: number; baseOffset: number }[];
}

interface PartitionData {
  batches: StoredBatch[];
  nextOffset: number;
  producers: Map<number, ProducerState>;
}

interface Subscription {
  id: number;
  topic: string;
  partition: number;
  nextOffset: number;
  credit: number;
  window: number;
}

interface Conn {
  ws: WebSocket;
  hello: boolean;
  subs: Map<number, Subscription>;
}

export interface FakeGateway {
  url: string;
  port: number;
  topics: Map<string, PartitionData[]>;
  /** Appends the next produce, then closes its socket without answering. */
  dropAfterNextAppend(): void;
  /** Answers the next n produces THROTTLED (nothing appended). */
  throttleNext(n: number, backoffMs: number): void;
  /** Produce requests received (including duplicates and refused ones). */
  produceRequests: number;
  /** The creditBytes of each CREDIT received, in order. */
  credits: number[];
  /** Push each batch as its own DATA frame, the frames of one push back to back (default: one frame per push). */
  dataFramePerBatch: boolean;
  /** The server-side credit of each live subscription (all connections). */
  subscriptionCredits(): number[];
  /** Closes every socket and the server, then listens again on the same port after `downMs`. */
  restart(downMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startFakeGateway(): Promise<FakeGateway> {
  const topics = new Map<string, PartitionData[]>();
  const conns = new Set<Conn>();
  let nextProducerId = 0;
  let dropAfterAppend = false;
  let throttle = { n: 0, backoffMs: 0 };
  let wss: WebSocketServer;

  const send = (c: Conn, frame: ServerFrame) => {
    if (c.ws.readyState === c.ws.OPEN) c.ws.send(encodeServerFrame(frame));
  };

  const partitionOf = (topic: string, partition: number): PartitionData => {
    const t = topics.get(topic);
    if (!t || partition < 0 || partition >= t.length) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no ${topic}/${partition}`);
    return t[partition];
  };

  const pump = (c: Conn, s: Subscription) => {
    const p = topics.get(s.topic)?.[s.partition];
    if (!p) return;
    let i = p.batches.findIndex((b) => b.lastOffset >= s.nextOffset);
    if (i < 0 || s.credit <= 0) return;
    const chosen: StoredBatch[] = [];
    let bytes = 0;
    for (; i < p.batches.length; i++) {
      const b = p.batches[i];
      if (bytes + b.bytes.length > Math.min(s.credit, FETCH_BYTES_MAX)) break;
      chosen.push(b);
      bytes += b.bytes.length;
    }
    if (chosen.length === 0) {
      if (s.credit !== s.window) return;
      chosen.push(p.batches[i]); // rule 2: a batch larger than the whole window
      bytes = p.batches[i].bytes.length;
    }
    s.credit -= bytes;
    s.nextOffset = chosen[chosen.length - 1].lastOffset + 1;
    if (gateway.dataFramePerBatch) {
      for (const b of chosen) send(c, { op: Op.DATA, correlationId: 0, highWatermark: p.nextOffset, subscriptionId: s.id, records: b.bytes });
      return;
    }
    const records = new Uint8Array(bytes);
    let pos = 0;
    for (const b of chosen) {
      records.set(b.bytes, pos);
      pos += b.bytes.length;
    }
    send(c, { op: Op.DATA, correlationId: 0, highWatermark: p.nextOffset, subscriptionId: s.id, records });
  };

  const pumpAll = (topic: string, partition: number) => {
    for (const c of conns) for (const s of c.subs.values()) if (s.topic === topic && s.partition === partition) pump(c, s);
  };

  const describe = (topic: string) => {
    const t = topics.get(topic);
    if (!t) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `no topic ${topic}`);
    return {
      retentionMs: -1,
      retentionBytes: -1,
      segmentMs: 604800000,
      segmentBytes: 1 << 30,
      topic,
      partitions: t.map((p) => ({ logStartOffset: 0, logEndOffset: p.nextOffset, highWatermark: p.nextOffset, durableOffset: p.nextOffset, sizeBytes: 0, owner: 0 })),
    };
  };

  const produce = (c: Conn, f: Extract<ClientFrame, { op: typeof Op.PRODUCE }>): ServerFrame | null => {
    gateway.produceRequests++;
    const p = partitionOf(f.topic, f.partition);
    if (throttle.n > 0) {
      throttle.n--;
      throw new SluiceError('THROTTLED', 'fake gateway throttles', { backoffMs: throttle.backoffMs });
    }
    const header = validateBatch(f.batch, BATCH_BYTES_MAX);
    if (header.producerId !== f.producerId) throw new SluiceError('INVALID_REQUEST', 'producerId differs from the batch');
    const lastSequence = header.baseSequence + header.recordCount - 1;
    if (header.producerId >= 0) {
      if (header.producerId >= nextProducerId) throw new SluiceError('UNKNOWN_PRODUCER_ID', 'never issued');
      const st = p.producers.get(header.producerId);
      if (st) {
        const dup = st.recent.find((r) => r.baseSequence === header.baseSequence && r.lastSequence === lastSequence);
        if (dup) return { op: Op.PRODUCE_OK, correlationId: f.correlationId, baseOffset: dup.baseOffset, logStartOffset: 0 };
        if (header.baseSequence !== st.lastSequence + 1) throw new SluiceError('OUT_OF_ORDER_SEQUENCE', `expected ${st.lastSequence + 1}, got ${header.baseSequence}`);
      }
    }
    const bytes = f.batch.slice();
    const baseOffset = p.nextOffset;
    writeBaseOffset(new DataView(bytes.buffer), 0, baseOffset);
    p.batches.push({ bytes, baseOffset, lastOffset: baseOffset + header.lastOffsetDelta, maxTimestamp: header.maxTimestamp });
    p.nextOffset += header.recordCount;
    if (header.producerId >= 0) {
      const st = p.producers.get(header.producerId) ?? { lastSequence: -1, recent: [] };
      st.lastSequence = lastSequence;
      st.recent.push({ baseSequence: header.baseSequence, lastSequence, baseOffset });
      if (st.recent.length > 5) st.recent.shift();
      p.producers.set(header.producerId, st);
    }
    pumpAll(f.topic, f.partition);
    if (dropAfterAppend) {
      dropAfterAppend = false;
      c.ws.terminate();
      return null;
    }
    if (f.acks === 0) return null;
    return { op: Op.PRODUCE_OK, correlationId: f.correlationId, baseOffset, logStartOffset: 0 };
  };

  const handle = (c: Conn, f: ClientFrame): ServerFrame | null => {
    if (!c.hello) {
      if (f.op !== Op.HELLO) throw new SluiceError('INVALID_REQUEST', 'HELLO first');
      c.hello = true;
      return {
        op: Op.HELLO_OK,
        correlationId: f.correlationId,
        protocolVersion: PROTOCOL_VERSION,
        inFlightMax: IN_FLIGHT_PER_CONNECTION_MAX,
        subscriptionsMax: SUBSCRIPTIONS_PER_CONNECTION_MAX,
        frameBytesMax: FRAME_BYTES_MAX,
        fetchBytesMax: FETCH_BYTES_MAX,
        batchBytesMax: BATCH_BYTES_MAX,
        fetchWaitMsMax: FETCH_WAIT_MS_MAX,
        serverVersion: 'fake',
      };
    }
    switch (f.op) {
      case Op.METADATA:
        return { op: Op.METADATA_OK, correlationId: f.correlationId, owners: 1, serverVersion: 'fake', topics: [...topics.keys()].sort().map((name) => ({ name, partitions: topics.get(name)!.length })) };
      case Op.LIST_TOPICS:
        return { op: Op.LIST_TOPICS_OK, correlationId: f.correlationId, topics: [...topics.keys()].sort() };
      case Op.CREATE_TOPIC: {
        if (topics.has(f.topic)) throw new SluiceError('TOPIC_ALREADY_EXISTS', f.topic);
        topics.set(f.topic, Array.from({ length: f.partitions || 1 }, () => ({ batches: [], nextOffset: 0, producers: new Map() })));
        return { op: Op.CREATE_TOPIC_OK, correlationId: f.correlationId, ...describe(f.topic) };
      }
      case Op.DESCRIBE_TOPIC:
        return { op: Op.DESCRIBE_TOPIC_OK, correlationId: f.correlationId, ...describe(f.topic) };
      case Op.DELETE_TOPIC:
        if (!topics.delete(f.topic)) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', f.topic);
        return { op: Op.DELETE_TOPIC_OK, correlationId: f.correlationId };
      case Op.INIT_PRODUCER:
        return { op: Op.INIT_PRODUCER_OK, correlationId: f.correlationId, producerId: nextProducerId++, producerEpoch: 0 };
      case Op.PRODUCE:
        return produce(c, f);
      case Op.LIST_OFFSETS: {
        const p = partitionOf(f.topic, f.partition);
        let offset: number;
        if (f.timestamp === -2) offset = 0;
        else if (f.timestamp === -1) offset = p.nextOffset;
        else offset = p.batches.find((b) => b.maxTimestamp >= f.timestamp)?.baseOffset ?? -1;
        return { op: Op.LIST_OFFSETS_OK, correlationId: f.correlationId, offset };
      }
      case Op.SUBSCRIBE: {
        const p = partitionOf(f.topic, f.partition);
        const offset = f.offset === -2 ? 0 : f.offset === -1 ? p.nextOffset : f.offset;
        if (offset > p.nextOffset) throw new SluiceError('OFFSET_OUT_OF_RANGE', `${offset} > ${p.nextOffset}`);
        if (c.subs.has(f.subscriptionId)) throw new SluiceError('INVALID_REQUEST', 'id in use');
        const s: Subscription = { id: f.subscriptionId, topic: f.topic, partition: f.partition, nextOffset: offset, credit: f.creditBytes, window: f.creditBytes };
        c.subs.set(s.id, s);
        send(c, { op: Op.SUBSCRIBE_OK, correlationId: f.correlationId, offset, highWatermark: p.nextOffset, logStartOffset: 0, subscriptionId: s.id });
        pump(c, s);
        return null;
      }
      case Op.CREDIT: {
        const s = c.subs.get(f.subscriptionId);
        gateway.credits.push(f.creditBytes);
        if (s) {
          s.credit += f.creditBytes;
          s.window = Math.max(s.window, s.credit);
          pump(c, s);
        }
        return null;
      }
      case Op.UNSUBSCRIBE:
        c.subs.delete(f.subscriptionId);
        return { op: Op.UNSUBSCRIBE_OK, correlationId: f.correlationId, subscriptionId: f.subscriptionId };
      default:
        throw new SluiceError('INVALID_REQUEST', `fake gateway does not serve op ${f.op}`);
    }
  };

  const listen = (port: number) =>
    new Promise<number>((resolve) => {
      wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: FRAME_BYTES_MAX });
      wss.on('listening', () => resolve((wss.address() as { port: number }).port));
      wss.on('connection', (ws) => {
        const c: Conn = { ws, hello: false, subs: new Map() };
        conns.add(c);
        ws.on('close', () => conns.delete(c));
        ws.on('message', (data: Buffer, isBinary: boolean) => {
          if (!isBinary) return ws.close(1003);
          let frame: ClientFrame;
          try {
            frame = decodeClientFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
          } catch (err) {
            send(c, errorFrameOf(err, { op: 0, correlationId: 0 }));
            return ws.close(1002);
          }
          try {
            const answer = handle(c, frame);
            if (answer) send(c, answer);
          } catch (err) {
            if (!(frame.op === Op.PRODUCE && frame.acks === 0)) send(c, errorFrameOf(err, frame));
          }
        });
      });
    });

  const port = await listen(await restartablePort()); // restart() listens on it again: below the ephemeral range
  const closeServer = () =>
    new Promise<void>((resolve) => {
      for (const c of conns) c.ws.terminate();
      conns.clear();
      wss.close(() => resolve());
    });

  const gateway: FakeGateway = {
    url: `ws://127.0.0.1:${port}/`,
    port,
    topics,
    produceRequests: 0,
    credits: [],
    dataFramePerBatch: false,
    subscriptionCredits: () => [...conns].flatMap((c) => [...c.subs.values()].map((s) => s.credit)),
    dropAfterNextAppend: () => {
      dropAfterAppend = true;
    },
    throttleNext: (n, backoffMs) => {
      throttle = { n, backoffMs };
    },
    restart: async (downMs) => {
      await closeServer();
      await new Promise((r) => setTimeout(r, downMs));
      await listen(port);
    },
    close: closeServer,
  };
  return gateway;
}
