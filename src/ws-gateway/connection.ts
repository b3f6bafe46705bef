/**
 * One WebSocket connection of the gateway: the handshake, the dispatch of every request of
 * docs/protocol.md to the Engine, the in-flight window, and the subscriptions it streams.
 *
 * Owner: the gateway (main) thread. Invariants:
 * - nothing touches the uWS socket after its close handler ran (`#open` false): uWS
 *   invalidates the object, and a late async response is dropped instead;
 * - every request that expects a response is counted in `#inFlight` from arrival until its
 *   response (or ERROR) is handed to the socket, exactly once (`Pending.settled`);
 * - a produced batch is a view into the uWS message buffer, which dies when the handler
 *   returns: it is handed to Engine.produce synchronously inside the handler, and the
 *   engine copies it into the owner's command ring before returning its promise (the one
 *   copy, house style 5); nothing keeps the view;
 * - a subscription sends only within its credit (protocol rule 2 aside) and only while the
 *   socket's buffered amount is below the soft limit and the gateway budget is not spent:
 *   the gateway keeps a cursor and two counters per subscription, never a queue of records.
 */
import type * as uWS from 'uWebSockets.js';
import type { Engine, TopicDescription } from '../engine/engine.js';
import type { GroupCoordinator } from '../engine/group-coordinator.js';
import { checkNotInternal } from '../engine/names.js';
import { topicConfigEntries, topicConfigFromEntries } from '../engine/topic-configs.js';
import { SluiceError } from '../errors.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_OFFSET,
  checkBatchFrameAt,
  LOG_OVERHEAD_BYTES,
  PRODUCER_ID_OFFSET,
  RECORD_COUNT_OFFSET,
} from '../persist/record-batch.js';
import type { Logger } from '../workers/owner-handle.js';
import {
  chooseProtocolVersion,
  decodeClientFrame,
  TopicNames,
  encodeCreateTopicOk,
  DATA_HEAD_BYTES,
  encodeDataHead,
  encodeDeleteTopicOk,
  encodeDescribeTopicOk,
  encodeError,
  encodeFetchOkHead,
  encodeHelloOk,
  encodeInitProducerOk,
  encodeListOffsetsOk,
  encodeListTopicsOk,
  encodeMetadataOk,
  encodeProduceOk,
  encodeServerFrame,
  encodeSubscribeOk,
  encodeSubscriptionClosed,
  encodeUnsubscribeOk,
  errorFrameOf,
  FrameError,
  Op,
  opName,
  protocolVersionOf,
  readFrameHeader,
  type ResponseFrame,
  type ClientFrame,
  type CreateTopicRequest,
  type CreditRequest,
  type FetchRequest,
  type HelloRequest,
  type ListOffsetsRequest,
  type ProduceRequest,
  type SubscribeRequest,
  type UnsubscribeRequest,
  writeDataHead,
} from './frames.js';
import type { FetchBuffers } from './fetch-buffers.js';
import { GroupSession, isGroupRequest } from './group-session.js';
import { BATCH_BYTES_MAX, FETCH_BYTES_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN } from './limits.js';
import type { GatewayMetrics } from './metrics.js';

/** WebSocket close codes the protocol uses (RFC 6455 section 7.4.1). */
export const CloseCode = {
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  POLICY_VIOLATION: 1008,
  INTERNAL_ERROR: 1011,
} as const;

/** DATA frames one subscription sends before yielding to the event loop, so one fast subscription cannot starve the others. */
const PUSH_FRAMES_PER_TURN = 16;
/** Wait before a subscription retries after OWNER_UNAVAILABLE or THROTTLED without a hint. */
const SUBSCRIPTION_RETRY_MS = 50;

/** The limits a gateway enforces; defaults are limits.ts's constants, tests shrink some. */
export interface GatewayLimits {
  inFlightMax: number;
  subscriptionsMax: number;
  frameBytesMax: number;
  fetchWaitMsMax: number;
  helloTimeoutMs: number;
  idleTimeoutS: number;
  socketBufferedBytesSoftMax: number;
  socketBufferedBytesHardMax: number;
  gatewayBufferedBytesMax: number;
  throttleBackoffMs: number;
}

/** What a connection needs from its gateway. */
export interface GatewayContext {
  readonly engine: Engine;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly limits: GatewayLimits;
  readonly serverVersion: string;
  readonly closing: boolean;
  producerIdIssued(producerId: number): boolean;
  /** Whether the gateway-wide buffered bytes reached the budget; registers `conn` to be resumed when they fall below it. */
  budgetSpent(conn: Connection): boolean;
  bufferedChanged(deltaBytes: number): void;
  topicDeleted(topic: string): void;
  readonly coordinator: GroupCoordinator;
  /** Buffers lent to Engine.fetch for results sent at once. */
  readonly fetchBuffers: FetchBuffers;
}

export interface SocketData {
  conn: Connection | null;
}

/** A request awaiting its answer. */
interface Pending {
  op: number;
  correlationId: number;
  startedMs: number;
  settled: boolean;
  /** For fetches: answered early on topic deletion or shutdown. */
  topic?: string;
}

interface Subscription {
  readonly id: number;
  readonly topic: string;
  readonly partition: number;
  nextOffset: number;
  credit: number;
  window: number;
  closed: boolean;
  pumping: boolean;
  again: boolean;
  retryTimer: ReturnType<typeof setTimeout> | null;
  unwatch: () => void;
}

export class Connection {
  readonly #ws: uWS.WebSocket<SocketData>;
  readonly #ctx: GatewayContext;
  #open = true;
  #helloDone = false;
  #helloTimer: ReturnType<typeof setTimeout> | null;
  #inFlight = 0;
  /** getBufferedAmount() when last looked at; the gateway sums these. */
  #bufferedBytes = 0;
  readonly #subs = new Map<number, Subscription>();
  readonly #pendingFetches = new Set<Pending>();
  /** The topic names of this connection's PRODUCE frames, by their bytes (frames.ts). */
  readonly #topicNames = new TopicNames();
  readonly #groups: GroupSession;
  /** The version HELLO agreed on; group requests need 2. */
  #protocolVersion = 0;
  clientId = '';
  /** The frame #send hands to uWS inside cork(), and what send() said: one callback made once, not a closure per frame. */
  #corkedFrame: Uint8Array | null = null;
  #corkedStatus = 1;
  readonly #sendCorked = (): void => {
    this.#corkedStatus = this.#ws.send(this.#corkedFrame!, true, false);
  };

  constructor(ws: uWS.WebSocket<SocketData>, ctx: GatewayContext) {
    this.#ws = ws;
    this.#ctx = ctx;
    this.#groups = new GroupSession(
      ctx.coordinator,
      ctx.engine,
      (frame) => {
        if (this.#open) this.#send(frame);
      },
      () => this.clientId,
    );
    this.#helloTimer = setTimeout(() => this.#helloTimedOut(), ctx.limits.helloTimeoutMs);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get subscriptionCount(): number {
    return this.#subs.size;
  }

  // ------------------------------------------------------------ uWS events

  /** The uWS message handler. `message` dies when this returns; never throws. */
  onMessage(message: ArrayBuffer, isBinary: boolean): void {
    const bytes = new Uint8Array(message);
    try {
      if (!isBinary) {
        this.#fatal(0, 0, 'text messages are not part of the protocol: send binary frames', CloseCode.UNSUPPORTED_DATA);
        return;
      }
      let frame: ClientFrame;
      try {
        frame = decodeClientFrame(bytes, this.#topicNames);
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
        this.#ctx.metrics.errors.inc({ op: opName(err.op), code: err.code });
        if (err.fatal || !this.#helloDone) this.#fatal(err.op, err.correlationId, err.message, CloseCode.PROTOCOL_ERROR);
        else this.#sendError({ op: err.op, correlationId: err.correlationId }, err);
        return;
      }
      if (!this.#helloDone) {
        if (frame.op !== Op.HELLO) {
          this.#fatal(frame.op, frame.correlationId, `${opName(frame.op)} before HELLO: the first frame must be HELLO`, CloseCode.PROTOCOL_ERROR);
        } else {
          this.#hello(frame);
        }
        return;
      }
      if (frame.op === Op.HELLO) {
        this.#fatal(frame.op, frame.correlationId, 'a second HELLO on an open connection', CloseCode.PROTOCOL_ERROR);
        return;
      }
      this.#dispatch(frame);
    } catch (err) {
      this.#internalError(err, bytes);
    }
  }

  /** The uWS drain handler: the socket's buffer shrank; resume pushes that waited for it. */
  onDrain(): void {
    try {
      this.#noteBuffered();
      if (this.#bufferedBytes < this.#ctx.limits.socketBufferedBytesSoftMax) this.resume();
    } catch (err) {
      this.#ctx.logger.error({ err: String(err) }, 'gateway drain handler failed');
    }
  }

  /** The uWS close handler: the socket is gone; stop everything that would touch it. */
  onClose(): void {
    this.#open = false;
    if (this.#helloTimer) clearTimeout(this.#helloTimer);
    this.#helloTimer = null;
    for (const sub of this.#subs.values()) this.#dropSubscription(sub);
    this.#subs.clear();
    this.#pendingFetches.clear();
    this.#groups.close();
    this.#ctx.bufferedChanged(-this.#bufferedBytes);
    this.#bufferedBytes = 0;
  }

  /** Pushes to every subscription that may have waited (for drain, credit or the budget). */
  resume(): void {
    for (const sub of this.#subs.values()) this.#pump(sub);
  }

  /** The topic was deleted: waiting fetches and subscriptions on it end with UNKNOWN_TOPIC_OR_PARTITION. */
  topicDeleted(topic: string): void {
    const err = new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} was deleted`);
    for (const p of [...this.#pendingFetches]) if (p.topic === topic) this.#fail(p, err);
    for (const sub of [...this.#subs.values()]) if (sub.topic === topic) this.#closeSubscription(sub, err);
  }

  /** Server shutdown, step 1: end subscriptions and waiting fetches with ENGINE_CLOSED. */
  beginShutdown(): void {
    const err = new SluiceError('ENGINE_CLOSED', 'the server is shutting down');
    for (const p of [...this.#pendingFetches]) this.#fail(p, err);
    for (const sub of [...this.#subs.values()]) this.#closeSubscription(sub, err);
  }

  /** Server shutdown, step 2: close with 1001 (going away). */
  end(code: number, reason: string): void {
    if (!this.#open) return;
    try {
      this.#ws.end(code, reason);
    } catch (err) {
      this.#ctx.logger.warn({ err: String(err) }, 'closing a socket failed');
    }
  }

  // ------------------------------------------------------------ sending

  #noteBuffered(): void {
    if (!this.#open) return;
    const now = this.#ws.getBufferedAmount();
    this.#ctx.bufferedChanged(now - this.#bufferedBytes);
    this.#bufferedBytes = now;
  }

  #afterSend(status: number): void {
    // 1 sent, 0 buffered (drain follows), 2 dropped at maxBackpressure (uWS closes the socket: closeOnBackpressureLimit).
    if (status === 2) this.#ctx.metrics.sendsDropped.inc();
    this.#noteBuffered();
  }

  #send(frame: Uint8Array): void {
    if (!this.#open) return;
    this.#corkedFrame = frame;
    this.#ws.cork(this.#sendCorked);
    this.#corkedFrame = null;
    this.#afterSend(this.#corkedStatus);
  }

  /**
   * A FETCH_OK or DATA frame: its head and its records. When the records are a view of a
   * buffer the gateway lent to the fetch (`lent`, from FetchBuffers), the head goes into the
   * room in front of them and the frame leaves as one message; otherwise (no buffer was
   * free, or the result came in a buffer of its own) as two fragments of one message, so
   * the records are never copied into a frame buffer.
   */
  #sendWithRecords(head: Uint8Array, records: Uint8Array, lent?: Uint8Array): void {
    if (!this.#open) return;
    if (records.length === 0) {
      this.#send(head);
      return;
    }
    const frame = frameInRoom(records, lent, head.length);
    if (frame !== null) {
      frame.set(head, 0);
      this.#send(frame);
      return;
    }
    let ok = true;
    this.#ws.cork(() => {
      ok = this.#ws.sendFirstFragment(head, true, false);
      if (this.#open) ok = this.#ws.sendLastFragment(records, false) && ok;
    });
    this.#afterSend(ok ? 1 : 0);
  }

  #sendError(request: { op: number; correlationId: number }, err: unknown): void {
    this.#send(encodeError(errorFrameOf(err, request)));
  }

  /** Answers ERROR INVALID_REQUEST (or `code`), then closes with `closeCode`. */
  #fatal(op: number, correlationId: number, message: string, closeCode: number, code: 'INVALID_REQUEST' | 'UNSUPPORTED_VERSION' = 'INVALID_REQUEST'): void {
    this.#sendError({ op, correlationId }, new SluiceError(code, message));
    this.end(closeCode, message.slice(0, 100));
  }

  #internalError(err: unknown, bytes: Uint8Array): void {
    this.#ctx.logger.error({ err: err instanceof Error ? err.stack : String(err) }, 'gateway bug while serving a frame');
    try {
      let header = { op: 0, correlationId: 0 };
      try {
        header = readFrameHeader(bytes);
      } catch {
        // unreadable: the error concerns the connection
      }
      this.#sendError(header, new SluiceError('INTERNAL', `the gateway failed serving ${opName(header.op)}: ${err instanceof Error ? err.message : String(err)}`));
    } catch {
      this.end(CloseCode.INTERNAL_ERROR, 'internal error');
    }
  }

  #helloTimedOut(): void {
    this.#helloTimer = null;
    if (!this.#helloDone) this.end(CloseCode.POLICY_VIOLATION, 'no HELLO in time');
  }

  // ------------------------------------------------------------ requests

  #hello(frame: HelloRequest): void {
    const version = frame.versionMin > frame.versionMax ? null : chooseProtocolVersion(frame.versionMin, frame.versionMax);
    if (version === null) {
      const message = `no common protocol version: the client speaks [${frame.versionMin}, ${frame.versionMax}], this server [${PROTOCOL_VERSION_MIN}, ${PROTOCOL_VERSION}]`;
      this.#fatal(frame.op, frame.correlationId, message, CloseCode.PROTOCOL_ERROR, 'UNSUPPORTED_VERSION');
      return;
    }
    this.#helloDone = true;
    if (this.#helloTimer) clearTimeout(this.#helloTimer);
    this.#helloTimer = null;
    this.clientId = frame.clientId;
    const l = this.#ctx.limits;
    this.#send(
      encodeHelloOk({
        correlationId: frame.correlationId,
        protocolVersion: (this.#protocolVersion = version),
        inFlightMax: l.inFlightMax,
        subscriptionsMax: l.subscriptionsMax,
        frameBytesMax: l.frameBytesMax,
        fetchBytesMax: FETCH_BYTES_MAX,
        batchBytesMax: BATCH_BYTES_MAX,
        fetchWaitMsMax: l.fetchWaitMsMax,
        serverVersion: this.#ctx.serverVersion,
      }),
    );
  }

  #dispatch(frame: ClientFrame): void {
    if (frame.op === Op.CREDIT) {
      this.#credit(frame);
      return;
    }
    if (frame.op === Op.PRODUCE && frame.acks === 0) {
      this.#produceAcks0(frame);
      return;
    }
    const request: Pending = { op: frame.op, correlationId: frame.correlationId, startedMs: performance.now(), settled: false };
    if (this.#inFlight >= this.#ctx.limits.inFlightMax) {
      this.#throttle(request, 'window', `more than ${this.#ctx.limits.inFlightMax} requests in flight on this connection`);
      return;
    }
    this.#inFlight++;
    if (this.#ctx.closing) {
      this.#fail(request, new SluiceError('ENGINE_CLOSED', 'the server is shutting down'));
      return;
    }
    try {
      this.#execute(frame, request);
    } catch (err) {
      this.#fail(request, err);
    }
  }

  #execute(frame: ClientFrame, request: Pending): void {
    const engine = this.#ctx.engine;
    const since = protocolVersionOf(frame.op);
    if (since > this.#protocolVersion) {
      throw new SluiceError('UNSUPPORTED_VERSION', `${opName(frame.op)} needs protocol version ${since}; this connection speaks ${this.#protocolVersion}`);
    }
    if (isGroupRequest(frame)) {
      this.#settle(request, this.#groups.handle(frame), (body) => encodeServerFrame({ ...body, correlationId: request.correlationId } as ResponseFrame));
      return;
    }
    switch (frame.op) {
      case Op.PRODUCE:
        this.#produce(frame, request);
        return;
      case Op.FETCH:
        this.#fetch(frame, request);
        return;
      case Op.LIST_OFFSETS:
        this.#listOffsets(frame, request);
        return;
      case Op.METADATA: {
        const topics = engine.listTopics().map((name) => ({ name, partitions: engine.describeTopic(name).partitions.length }));
        this.#respond(request, encodeMetadataOk({ correlationId: request.correlationId, owners: engine.ownerCount, serverVersion: this.#ctx.serverVersion, topics }));
        return;
      }
      case Op.INIT_PRODUCER:
        this.#settle(request, engine.initProducerId(), ({ producerId, producerEpoch }) =>
          encodeInitProducerOk({ correlationId: request.correlationId, producerId, producerEpoch }),
        );
        return;
      case Op.SUBSCRIBE:
        this.#subscribe(frame, request);
        return;
      case Op.UNSUBSCRIBE:
        this.#unsubscribe(frame, request);
        return;
      case Op.LIST_TOPICS:
        this.#respond(request, encodeListTopicsOk({ correlationId: request.correlationId, topics: engine.listTopics() }));
        return;
      case Op.DESCRIBE_TOPIC:
        this.#respond(request, encodeDescribeTopicOk({ correlationId: request.correlationId, ...describeBody(engine.describeTopic(frame.topic)) }));
        return;
      case Op.CREATE_TOPIC:
        checkNotInternal(frame.topic);
        this.#settle(request, engine.createTopic(frame.topic, topicOptions(frame)), (d) =>
          encodeCreateTopicOk({ correlationId: request.correlationId, ...describeBody(d) }),
        );
        return;
      case Op.CREATE_TOPIC_WITH_CONFIGS: {
        checkNotInternal(frame.topic);
        const options = { ...topicConfigFromEntries(frame.configs), ...(frame.partitions !== 0 ? { partitions: frame.partitions } : {}) };
        this.#settle(request, engine.createTopic(frame.topic, options), (d) =>
          encodeServerFrame({ op: Op.CREATE_TOPIC_WITH_CONFIGS_OK, correlationId: request.correlationId, ...describeBody(d) }),
        );
        return;
      }
      case Op.DESCRIBE_CONFIGS:
        this.#respond(
          request,
          encodeServerFrame({ op: Op.DESCRIBE_CONFIGS_OK, correlationId: request.correlationId, topic: frame.topic, configs: topicConfigEntries(engine.describeTopic(frame.topic).config) }),
        );
        return;
      case Op.CREATE_PARTITIONS:
        checkNotInternal(frame.topic);
        this.#settle(request, engine.createPartitions(frame.topic, frame.partitions), (d) =>
          encodeServerFrame({ op: Op.CREATE_PARTITIONS_OK, correlationId: request.correlationId, ...describeBody(d) }),
        );
        return;
      case Op.DELETE_TOPIC:
        checkNotInternal(frame.topic);
        this.#settle(request, engine.deleteTopic(frame.topic), () => {
          this.#ctx.topicDeleted(frame.topic);
          return encodeDeleteTopicOk({ correlationId: request.correlationId });
        });
        return;
      case Op.HELLO:
      case Op.CREDIT:
        throw new Error(`${opName(frame.op)} is handled before dispatch`);
      default: {
        const unknown: never = frame;
        throw new Error(`no handler for ${opName((unknown as ClientFrame).op)}`);
      }
    }
  }

  /** Hands a response to the socket and ends the request's in-flight time; at most once. */
  #respond(request: Pending, frame: Uint8Array, records?: Uint8Array, lent?: Uint8Array): void {
    if (request.settled) return;
    request.settled = true;
    this.#inFlight--;
    this.#pendingFetches.delete(request);
    if (records) this.#sendWithRecords(frame, records, lent);
    else this.#send(frame);
    this.#ctx.metrics.observeRequest(opName(request.op), (performance.now() - request.startedMs) / 1000);
  }

  #fail(request: Pending, err: unknown): void {
    if (request.settled) return;
    request.settled = true;
    this.#inFlight--;
    this.#pendingFetches.delete(request);
    const code = err instanceof SluiceError ? err.code : 'INTERNAL';
    if (!(err instanceof SluiceError)) this.#ctx.logger.error({ op: opName(request.op), err: err instanceof Error ? err.stack : String(err) }, 'gateway request failed unexpectedly');
    this.#ctx.metrics.errors.inc({ op: opName(request.op), code });
    this.#sendError(request, err);
  }

  /** Answers with `encode(value)` once `promise` resolves, or with ERROR. Never rejects. */
  #settle<T>(request: Pending, promise: Promise<T>, encode: (value: T) => Uint8Array): void {
    promise.then(
      (value) => {
        try {
          this.#respond(request, encode(value));
        } catch (err) {
          this.#fail(request, err);
        }
      },
      (err: unknown) => this.#fail(request, err),
    );
  }

  /** THROTTLED at once, not counted in flight. `cause` labels the metric. */
  #throttle(request: Pending, cause: string, why: string): void {
    this.#ctx.metrics.throttled.inc({ cause });
    const backoffMs = this.#ctx.limits.throttleBackoffMs;
    this.#sendError(request, new SluiceError('THROTTLED', `${why}; retry after ${backoffMs} ms`, { backoffMs }));
  }

  /** Why a produce or fetch must be throttled by the gateway's own limits, or null. */
  #gatewayPressure(): { cause: string; why: string } | null {
    if (this.#open && this.#ws.getBufferedAmount() >= this.#ctx.limits.socketBufferedBytesSoftMax) {
      return { cause: 'socket', why: 'this socket has too many unsent bytes (read your socket)' };
    }
    if (this.#ctx.budgetSpent(this)) return { cause: 'budget', why: "the gateway's memory budget for unsent bytes is spent" };
    return null;
  }

  /** A request that was counted in flight is throttled: take it out again. */
  #throttleCounted(request: Pending, cause: string, why: string): void {
    request.settled = true;
    this.#inFlight--;
    this.#throttle(request, cause, why);
  }

  /** PRODUCE checks the gateway makes before the engine's: acks, the producer id. */
  #checkProduce(frame: ProduceRequest): void {
    checkNotInternal(frame.topic);
    if (frame.acks !== -1 && frame.acks !== 0 && frame.acks !== 1) {
      throw new SluiceError('INVALID_REQUIRED_ACKS', `acks must be -1 (all), 0 or 1, got ${frame.acks}`);
    }
    const batch = frame.batch;
    if (batch.length >= BATCH_HEADER_BYTES) {
      const batchProducerId = Number(new DataView(batch.buffer, batch.byteOffset, batch.byteLength).getBigInt64(PRODUCER_ID_OFFSET, false));
      if (batchProducerId !== frame.producerId) {
        throw new SluiceError('INVALID_REQUEST', `PRODUCE producerId ${frame.producerId} differs from the batch header's ${batchProducerId}`);
      }
    }
    if (frame.producerId < -1) throw new SluiceError('INVALID_REQUEST', `producerId must be -1 or an id from INIT_PRODUCER, got ${frame.producerId}`);
    if (frame.producerId >= 0 && !this.#ctx.producerIdIssued(frame.producerId)) {
      throw new SluiceError('UNKNOWN_PRODUCER_ID', `producer id ${frame.producerId} was never issued by this broker: call INIT_PRODUCER`);
    }
  }

  #produce(frame: ProduceRequest, request: Pending): void {
    this.#checkProduce(frame);
    const pressure = this.#gatewayPressure();
    if (pressure) {
      this.#throttleCounted(request, pressure.cause, pressure.why);
      return;
    }
    const { topic, batch } = frame;
    const records = recordCountOf(batch);
    const bytes = batch.length;
    // Engine.produce copies `batch` (a view of the dying uWS buffer) into the owner's command ring before it returns.
    const appended = this.#ctx.engine.produce(topic, frame.partition, batch, { acks: frame.acks as -1 | 1 });
    appended.then(
      (baseOffset) => {
        this.#countIn(topic, bytes, records);
        this.#respond(request, encodeProduceOk({ correlationId: request.correlationId, baseOffset, logStartOffset: this.#logStartOffset(topic, frame.partition) }));
      },
      (err: unknown) => {
        if (err instanceof SluiceError && err.code === 'THROTTLED') this.#ctx.metrics.throttled.inc({ cause: 'owner' });
        this.#fail(request, err);
      },
    );
  }

  /** The partition's log start offset for a PRODUCE_OK; 0 once the topic is gone (deleted since the append). */
  #logStartOffset(topic: string, partition: number): number {
    try {
      return this.#ctx.engine.logStartOffset(topic, partition);
    } catch {
      return 0;
    }
  }

  /**
   * acks=0: no answer, no in-flight slot; errors and drops are counted only. The engine is
   * asked with acks 1 so that the owner's verdict comes back: a batch it refuses (a bad CRC,
   * a keyless record on a compacted topic) is counted as an error, not as records in. A
   * decodable frame with bad acks cannot be acks=0.
   */
  #produceAcks0(frame: ProduceRequest): void {
    const op = opName(Op.PRODUCE);
    try {
      if (this.#ctx.closing) throw new SluiceError('ENGINE_CLOSED', 'the server is shutting down');
      this.#checkProduce(frame);
      const pressure = this.#gatewayPressure();
      if (pressure) {
        this.#ctx.metrics.throttled.inc({ cause: pressure.cause });
        return;
      }
      const records = recordCountOf(frame.batch);
      const bytes = frame.batch.length;
      this.#ctx.engine.produce(frame.topic, frame.partition, frame.batch, { acks: 1 }).then(
        () => this.#countIn(frame.topic, bytes, records),
        (err: unknown) => this.#countAcks0Error(op, err),
      );
    } catch (err) {
      this.#countAcks0Error(op, err);
    }
  }

  #countAcks0Error(op: string, err: unknown): void {
    if (err instanceof SluiceError && err.code === 'THROTTLED') this.#ctx.metrics.throttled.inc({ cause: 'owner' });
    else this.#ctx.metrics.errors.inc({ op, code: err instanceof SluiceError ? err.code : 'INTERNAL' });
  }

  #fetch(frame: FetchRequest, request: Pending): void {
    if (frame.offset < 0 || frame.maxBytes < 1 || frame.minBytes < 0 || frame.maxWaitMs < 0) {
      throw new SluiceError('INVALID_ARGUMENT', `FETCH needs offset >= 0, maxBytes >= 1, minBytes >= 0 and maxWaitMs >= 0; got ${frame.offset}, ${frame.maxBytes}, ${frame.minBytes}, ${frame.maxWaitMs}`);
    }
    const pressure = this.#gatewayPressure();
    if (pressure) {
      this.#throttleCounted(request, pressure.cause, pressure.why);
      return;
    }
    const { topic } = frame;
    request.topic = topic;
    this.#pendingFetches.add(request);
    const buffers = this.#ctx.fetchBuffers;
    const into = buffers.acquire();
    let result;
    try {
      result = this.#ctx.engine.fetch(topic, frame.partition, frame.offset, {
        maxBytes: Math.min(frame.maxBytes, FETCH_BYTES_MAX),
        minBytes: frame.minBytes,
        maxWaitMs: Math.min(frame.maxWaitMs, this.#ctx.limits.fetchWaitMsMax),
        into,
      });
    } catch (err) {
      buffers.release(into);
      throw err;
    }
    // The buffer goes back once the engine is done with it, even if the request was answered early.
    result.then(
      (r) => {
        if (!request.settled) {
          const head = encodeFetchOkHead({ correlationId: request.correlationId, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset }, r.records.length);
          this.#countOut(topic, r.records.length, recordCountOfBatches(r.records));
          this.#respond(request, head, r.records, into); // uWS copies: the buffer is free after this
        }
        buffers.release(into);
      },
      (err: unknown) => {
        buffers.release(into);
        this.#fail(request, err);
      },
    );
  }

  #listOffsets(frame: ListOffsetsRequest, request: Pending): void {
    if (frame.timestamp < -2) throw new SluiceError('INVALID_ARGUMENT', `timestamp must be -2 (earliest), -1 (latest) or >= 0, got ${frame.timestamp}`);
    this.#settle(request, this.#ctx.engine.listOffset(frame.topic, frame.partition, frame.timestamp), (offset) =>
      encodeListOffsetsOk({ correlationId: request.correlationId, offset: offset ?? -1 }),
    );
  }

  /** Counts `bytes` and `records` appended to `topic` (metrics). */
  #countIn(topic: string, bytes: number, records: number): void {
    const traffic = this.#ctx.metrics.traffic(topic);
    traffic.bytesIn += bytes;
    traffic.recordsIn += records;
  }

  /** Counts `bytes` and `records` handed out of `topic` (metrics). */
  #countOut(topic: string, bytes: number, records: number): void {
    if (bytes === 0) return;
    const traffic = this.#ctx.metrics.traffic(topic);
    traffic.bytesOut += bytes;
    traffic.recordsOut += records;
  }

  // ------------------------------------------------------------ subscriptions

  #subscribe(frame: SubscribeRequest, request: Pending): void {
    const { subscriptionId: id, topic, partition } = frame;
    if (this.#subs.has(id)) throw new SluiceError('INVALID_REQUEST', `subscription id ${id} is in use on this connection`);
    if (this.#subs.size >= this.#ctx.limits.subscriptionsMax) {
      throw new SluiceError('INVALID_REQUEST', `this connection already has ${this.#subs.size} subscriptions (the limit is ${this.#ctx.limits.subscriptionsMax})`);
    }
    if (frame.offset < -2) throw new SluiceError('INVALID_ARGUMENT', `offset must be >= 0, -2 (earliest) or -1 (latest), got ${frame.offset}`);
    const engine = this.#ctx.engine;
    const d = engine.describeTopic(topic);
    const state = d.partitions[partition];
    if (!state) throw new SluiceError('UNKNOWN_TOPIC_OR_PARTITION', `topic ${topic} has no partition ${partition} (it has ${d.partitions.length})`);
    const offset = frame.offset === -2 ? state.logStartOffset : frame.offset === -1 ? state.highWatermark : frame.offset;
    if (offset < state.logStartOffset || offset > state.highWatermark) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside ${topic}-${partition}'s range [${state.logStartOffset}, ${state.highWatermark}]`);
    }
    const sub: Subscription = {
      id,
      topic,
      partition,
      nextOffset: offset,
      credit: frame.creditBytes,
      window: frame.creditBytes,
      closed: false,
      pumping: false,
      again: false,
      retryTimer: null,
      unwatch: () => {},
    };
    sub.unwatch = engine.watch(topic, partition, () => this.#pump(sub));
    this.#subs.set(id, sub);
    this.#respond(
      request,
      encodeSubscribeOk({ correlationId: request.correlationId, offset, highWatermark: state.highWatermark, logStartOffset: state.logStartOffset, subscriptionId: id }),
    );
    this.#pump(sub);
  }

  #credit(frame: CreditRequest): void {
    const sub = this.#subs.get(frame.subscriptionId);
    if (!sub) return; // it may have just ended: the grant is ignored (protocol: CREDIT)
    sub.credit += frame.creditBytes;
    if (sub.credit > sub.window) sub.window = sub.credit;
    this.#pump(sub);
  }

  #unsubscribe(frame: UnsubscribeRequest, request: Pending): void {
    const sub = this.#subs.get(frame.subscriptionId);
    if (sub) {
      this.#dropSubscription(sub);
      this.#subs.delete(sub.id);
    }
    this.#respond(request, encodeUnsubscribeOk({ correlationId: request.correlationId, subscriptionId: frame.subscriptionId }));
  }

  #dropSubscription(sub: Subscription): void {
    sub.closed = true;
    sub.unwatch();
    if (sub.retryTimer) clearTimeout(sub.retryTimer);
    sub.retryTimer = null;
  }

  #closeSubscription(sub: Subscription, err: unknown): void {
    if (sub.closed) return;
    this.#dropSubscription(sub);
    this.#subs.delete(sub.id);
    const e = err instanceof SluiceError ? err : new SluiceError('INTERNAL', String(err));
    this.#send(
      encodeSubscriptionClosed({
        subscriptionId: sub.id,
        backoffMs: e.backoffMs ?? 0,
        code: e.code,
        retriable: e.retriable,
        message: e.message,
      }),
    );
  }

  /** Starts pushing for `sub` unless a push loop already runs for it (which then goes round once more). */
  #pump(sub: Subscription): void {
    if (sub.closed || !this.#open) return;
    if (sub.pumping) {
      sub.again = true;
      return;
    }
    sub.pumping = true;
    sub.again = false;
    this.#pushLoop(sub)
      .catch((err: unknown) => this.#closeSubscription(sub, err))
      .finally(() => {
        sub.pumping = false;
        if (sub.again) setImmediate(() => this.#pump(sub));
      });
  }

  /**
   * Sends DATA frames while the subscription has credit, records past its cursor, room in
   * the socket and in the gateway budget. Returns when one of them runs out; a watch
   * (new records), CREDIT or drain calls #pump again.
   */
  async #pushLoop(sub: Subscription): Promise<void> {
    for (let frames = 0; frames < PUSH_FRAMES_PER_TURN; frames++) {
      if (sub.closed || !this.#open || this.#ctx.closing || sub.credit <= 0) return;
      if (this.#ws.getBufferedAmount() >= this.#ctx.limits.socketBufferedBytesSoftMax) return; // 'drain' resumes
      if (this.#ctx.budgetSpent(this)) return; // the gateway resumes us when the budget frees
      const into = this.#ctx.fetchBuffers.acquire();
      try {
        if (!(await this.#pushOne(sub, into))) return;
      } finally {
        this.#ctx.fetchBuffers.release(into);
      }
    }
    sub.again = true; // yield to other work, then carry on
  }

  /** Fetches into `into` and sends one DATA frame; false when the loop should stop (nothing to send, or all sent up to the high watermark). */
  async #pushOne(sub: Subscription, into: Uint8Array | undefined): Promise<boolean> {
    let result;
    try {
      const maxBytes = Math.min(sub.credit, FETCH_BYTES_MAX);
      // From the log ring without a promise when the records are there (the usual push); else the owner reads.
      result = this.#ctx.engine.fetchTail(sub.topic, sub.partition, sub.nextOffset, maxBytes, into) ?? (await this.#ctx.engine.fetch(sub.topic, sub.partition, sub.nextOffset, { maxBytes, minBytes: 0, maxWaitMs: 0, into }));
    } catch (err) {
      this.#pushFailed(sub, err);
      return false;
    }
    if (sub.closed || !this.#open) return false;
    let cut;
    try {
      cut = cutBatches(result.records, sub.credit, sub.window);
    } catch (err) {
      this.#ctx.logger.error(
        { topic: sub.topic, partition: sub.partition, offset: sub.nextOffset, bytes: result.records.length, err: String(err) },
        'a fetch result for a subscription does not frame; the subscription is closed',
      );
      throw err;
    }
    if (cut === null) return false; // nothing new, or the next batch waits for credit
    const records = result.records.subarray(0, cut.bytes);
    sub.credit -= cut.bytes;
    sub.nextOffset = cut.nextOffset;
    this.#countOut(sub.topic, cut.bytes, cut.records);
    // uWS copies what it sends before returning: `into` is free again after this.
    const frame = frameInRoom(records, into, DATA_HEAD_BYTES);
    if (frame !== null) {
      writeDataHead(frame, result.highWatermark, sub.id);
      this.#send(frame);
    } else {
      this.#sendWithRecords(encodeDataHead({ highWatermark: result.highWatermark, subscriptionId: sub.id }, records.length), records); // no room: two fragments
    }
    // Caught up with the high watermark the fetch saw: stop rather than fetch nothing. Records
    // appended since then called the watch, which set sub.again (pumping), so #pump goes on.
    return sub.nextOffset < result.highWatermark;
  }

  #pushFailed(sub: Subscription, err: unknown): void {
    const code = err instanceof SluiceError ? err.code : 'INTERNAL';
    if (code === 'OWNER_UNAVAILABLE' || code === 'THROTTLED') {
      // Not an end: the owner recovers (or its ring drains); try again shortly.
      const backoffMs = (err instanceof SluiceError && err.backoffMs) || SUBSCRIPTION_RETRY_MS;
      if (!sub.retryTimer) {
        sub.retryTimer = setTimeout(() => {
          sub.retryTimer = null;
          this.#pump(sub);
        }, backoffMs);
      }
      return;
    }
    this.#closeSubscription(sub, err);
  }
}

// ---------------------------------------------------------------- helpers

/**
 * How much of `records` (whole batches, the first holding the cursor) a DATA frame may
 * carry under the credit rules of docs/protocol.md: as many whole batches as fit the
 * credit; or, when none fits and the client holds nothing (credit = window > 0), the first
 * batch alone. Null when nothing may be sent.
 */
export function cutBatches(records: Uint8Array, credit: number, window: number): { bytes: number; nextOffset: number; records: number } | null {
  if (records.length < BATCH_HEADER_BYTES || credit <= 0) return null;
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  let bytes = 0;
  let nextOffset = -1;
  let count = 0;
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= records.length; ) {
    // The engine hands out whole batches; bytes that do not frame mean a bug or damage
    // upstream: refuse to push them (the caller logs it) rather than let the client find out.
    let header;
    try {
      header = checkBatchFrameAt(records, view, pos, Number.MAX_SAFE_INTEGER, 'stored');
    } catch (err) {
      throw new SluiceError('CORRUPT_MESSAGE', `the bytes to push do not frame as whole batches at position ${pos} of ${records.length}: ${(err as Error).message}`);
    }
    const fits = bytes + header.sizeBytes <= credit;
    const oversizedAlone = bytes === 0 && !fits && credit === window;
    if (!fits && !oversizedAlone) break;
    bytes += header.sizeBytes;
    count += header.recordCount;
    nextOffset = header.baseOffset + header.lastOffsetDelta + 1;
    pos += header.sizeBytes;
    if (oversizedAlone) break;
  }
  return bytes === 0 ? null : { bytes, nextOffset, records: count };
}

/**
 * The whole frame, `headBytes` of head then `records`, as a view of the buffer lent to the
 * fetch when the records landed there behind FetchBuffers' room for the head; else null.
 */
function frameInRoom(records: Uint8Array, lent: Uint8Array | undefined, headBytes: number): Uint8Array | null {
  const start = records.byteOffset - headBytes;
  if (lent === undefined || records.buffer !== lent.buffer || start < 0) return null;
  return new Uint8Array(records.buffer, start, headBytes + records.length);
}

/** Records in `records`, whole batches back to back as the engine hands them out (their headers' counts). */
function recordCountOfBatches(records: Uint8Array): number {
  let count = 0;
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= records.length; pos += LOG_OVERHEAD_BYTES + view.getInt32(pos + BATCH_LENGTH_OFFSET, false)) {
    count += view.getInt32(pos + RECORD_COUNT_OFFSET, false);
  }
  return count;
}

function recordCountOf(batch: Uint8Array): number {
  if (batch.length < BATCH_HEADER_BYTES) return 0;
  return new DataView(batch.buffer, batch.byteOffset, batch.byteLength).getInt32(RECORD_COUNT_OFFSET, false);
}

/** CREATE_TOPIC's numeric fields, where 0 means the server's default. */
function topicOptions(frame: CreateTopicRequest): Record<string, number> {
  const options: Record<string, number> = {};
  for (const key of ['partitions', 'retentionMs', 'retentionBytes', 'segmentMs', 'segmentBytes'] as const) {
    if (frame[key] !== 0) options[key] = frame[key];
  }
  return options;
}

/** A TopicDescription laid out as DESCRIBE_TOPIC_OK's body. */
export function describeBody(d: TopicDescription): Omit<Parameters<typeof encodeDescribeTopicOk>[0], 'correlationId'> {
  return {
    retentionMs: d.config.retentionMs,
    retentionBytes: d.config.retentionBytes,
    segmentMs: d.config.segmentMs,
    segmentBytes: d.config.segmentBytes,
    topic: d.name,
    partitions: d.partitions.map((p) => ({
      logStartOffset: p.logStartOffset,
      logEndOffset: p.logEndOffset,
      highWatermark: p.highWatermark,
      durableOffset: p.durableOffset,
      sizeBytes: p.sizeBytes,
      owner: p.owner,
    })),
  };
}
