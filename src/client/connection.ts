/**
 * One WebSocket to the gateway, kept open: HELLO handshake, correlation ids, the
 * in-flight window the server announced (requests beyond it wait here, in order), pushes
 * routed by subscription id, and reconnection with back-off when the socket drops.
 *
 * Requests are sent in the order `request()` was called (one FIFO outbox), so produces of
 * one partition reach the gateway in sequence order. When the socket drops, every request
 * sent or waiting fails with ConnectionLostError (retriable); callers decide what to
 * resend (the producer resends unacknowledged batches, the consumer resubscribes on
 * 'reconnected'). Requests made while disconnected wait for the next connection.
 *
 * The WebSocket class is injected, else the platform's (browsers), else the `ws` package
 * imported dynamically (Node 20 has no global WebSocket), so the browser path has no
 * Node-only import.
 *
 * Browser-safe; owner: the client's thread (every method runs on it).
 */
import { SluiceError } from '../errors.js';
import {
  CORRELATION_ID_MAX,
  decodeServerFrame,
  encodeClientFrame,
  Op,
  opName,
  setCorrelationId,
  toSluiceError,
  type AssignmentPush,
  type ClientFrame,
  type DataPush,
  type HelloOk,
  type ServerFrame,
  type SubscriptionClosedPush,
} from '../ws-gateway/frames.js';
import { PROTOCOL_VERSION, PROTOCOL_VERSION_MIN } from '../ws-gateway/limits.js';
import { backoffDelayMs, RECONNECT_BACKOFF, type BackoffOptions } from './backoff.js';
import { systemClock, type Clock, type Random, type TimerHandle } from './clock.js';

/** The subset of the WebSocket API the client uses (browsers' WebSocket and ws's both have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'close' | 'error' | 'message', listener: (event: any) => void): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Time from opening a socket to HELLO_OK before the attempt counts as failed (the server's HELLO_TIMEOUT_MS is 10 s). */
export const CONNECT_TIMEOUT_MS = 10_000;

/** The socket dropped before the request was answered; its outcome is unknown. Retriable. */
export class ConnectionLostError extends SluiceError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONNECTION_LOST', message, options);
    this.name = 'ConnectionLostError';
  }
}

/** The client was closed by the application. Not retriable. */
export class ClientClosedError extends SluiceError {
  constructor() {
    super('CLIENT_CLOSED', 'the Sluice client is closed');
    this.name = 'ClientClosedError';
  }
}

export function isRetriableError(err: unknown): boolean {
  return err instanceof SluiceError && err.retriable;
}

export interface ConnectionOptions {
  url: string;
  clientId?: string;
  /** The WebSocket class; default: globalThis.WebSocket, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  clock?: Clock;
  random?: Random;
  reconnectBackoff?: BackoffOptions;
  connectTimeoutMs?: number;
  /** Called with problems worth a log line (a socket error, a reconnect). */
  onLog?: (event: { level: 'info' | 'warn'; message: string; error?: unknown }) => void;
}

export type PushHandler = (frame: DataPush | SubscriptionClosedPush) => void;
/** A request without its correlationId (the connection assigns it). */
export type RequestFrame = ClientFrame extends infer F ? (F extends ClientFrame ? Omit<F, 'correlationId'> : never) : never;

interface Outgoing {
  /** A frame to encode, or one encoded already (its correlationId is set when it is sent). */
  frame: RequestFrame | Uint8Array;
  resolve: (frame: ServerFrame) => void;
  reject: (err: unknown) => void;
}

/**
 * The bytes of a request with `correlationId`: an encoded frame (from writeClientFrame, e.g.
 * a producer's PRODUCE built around its batch) gets the id written in place; it is sent
 * once at a time (a retry goes after its previous attempt was answered or its socket died).
 */
function encodedWith(frame: RequestFrame | Uint8Array, correlationId: number): Uint8Array {
  if (frame instanceof Uint8Array) {
    setCorrelationId(frame, correlationId);
    return frame;
  }
  return encodeClientFrame({ ...frame, correlationId } as ClientFrame);
}

export async function resolveWebSocket(injected?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (injected) return injected;
  const platform = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (platform) return platform;
  // A variable specifier keeps bundlers and browsers from resolving `ws`; only Node gets here.
  const specifier = 'ws';
  const mod = (await import(specifier)) as { WebSocket?: WsConstructor; default?: WsConstructor };
  const ctor = mod.WebSocket ?? mod.default;
  if (!ctor) throw new SluiceError('INVALID_ARGUMENT', 'no WebSocket: pass one in the options (the `ws` package in Node < 22)');
  return class extends ctor {
    constructor(url: string) {
      super(url, undefined, WS_CLIENT_OPTIONS);
    }
  };
}

/** The `ws` package's constructor, with its options argument. */
type WsConstructor = new (url: string, protocols?: string | string[], options?: object) => WebSocketLike;

/**
 * Options of the `ws` package in Node. A zero masking key: RFC 6455 masking protects
 * proxies from frames crafted by untrusted scripts in a browser, which a Node process
 * sending its own data is not, and `ws` skips the XOR and the copy it needs for a zero key
 * (a producer's frames were masked at 3% of its time, plus a copy of every byte). Browsers
 * mask as they must. No compression is negotiated (record batches carry their own).
 */
const WS_CLIENT_OPTIONS = Object.freeze({
  generateMask: (mask: Uint8Array) => mask.fill(0),
  perMessageDeflate: false,
});

export class Connection {
  readonly #options: Required<Pick<ConnectionOptions, 'url' | 'clientId' | 'clock' | 'random' | 'reconnectBackoff' | 'connectTimeoutMs'>> & ConnectionOptions;
  readonly #WebSocket: WebSocketConstructor;
  #socket: WebSocketLike | null = null;
  #state: 'connecting' | 'ready' | 'down' | 'closed' = 'down';
  #limits: HelloOk | null = null;
  #nextCorrelationId = 1;
  readonly #pending = new Map<number, Outgoing>();
  readonly #outbox: Outgoing[] = [];
  readonly #pushHandlers = new Map<number, PushHandler>();
  #nextSubscriptionId = 1;
  #attempt = 0;
  #reconnectTimer: TimerHandle | null = null;
  readonly #reconnectListeners = new Set<() => void>();
  readonly #disconnectListeners = new Set<(err: unknown) => void>();
  readonly #assignmentListeners = new Set<(push: AssignmentPush) => void>();
  #firstConnect: { resolve: () => void; reject: (err: unknown) => void } | null = null;
  #connections = 0;

  private constructor(options: ConnectionOptions, WebSocket: WebSocketConstructor) {
    this.#options = {
      clientId: '',
      clock: systemClock,
      random: Math.random,
      reconnectBackoff: RECONNECT_BACKOFF,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      ...options,
    };
    this.#WebSocket = WebSocket;
  }

  /** Opens the connection; rejects if the first attempt fails (a wrong URL should be seen, not retried forever). */
  static async open(options: ConnectionOptions): Promise<Connection> {
    if (!options || typeof options.url !== 'string') throw new SluiceError('INVALID_ARGUMENT', 'connect needs { url }');
    const conn = new Connection(options, await resolveWebSocket(options.WebSocket));
    await new Promise<void>((resolve, reject) => {
      conn.#firstConnect = { resolve, reject };
      conn.#attemptConnect();
    });
    return conn;
  }

  /** The limits the server announced in HELLO_OK (of the current or last connection). */
  get limits(): HelloOk {
    if (!this.#limits) throw new SluiceError('INVALID_ARGUMENT', 'not connected yet');
    return this.#limits;
  }

  get state(): 'connecting' | 'ready' | 'down' | 'closed' {
    return this.#state;
  }

  /** How many times a HELLO_OK was received (1 after the first connect; +1 per reconnect). */
  get connections(): number {
    return this.#connections;
  }

  /** Requests sent and unanswered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  onReconnected(listener: () => void): () => void {
    this.#reconnectListeners.add(listener);
    return () => this.#reconnectListeners.delete(listener);
  }

  /** Routes ASSIGNMENT pushes (consumer groups) to `listener`; each group member filters by its group and member id. */
  onAssignment(listener: (push: AssignmentPush) => void): () => void {
    this.#assignmentListeners.add(listener);
    return () => this.#assignmentListeners.delete(listener);
  }

  onDisconnected(listener: (err: unknown) => void): () => void {
    this.#disconnectListeners.add(listener);
    return () => this.#disconnectListeners.delete(listener);
  }

  /** Sends a request and resolves with its response (an ERROR frame rejects with the SluiceError). */
  request(frame: RequestFrame | Uint8Array): Promise<ServerFrame> {
    if (this.#state === 'closed') return Promise.reject(new ClientClosedError());
    return new Promise<ServerFrame>((resolve, reject) => {
      this.#outbox.push({ frame, resolve, reject });
      this.#drain();
    });
  }

  /**
   * Sends a frame that gets no response (CREDIT, PRODUCE with acks=0) if connected; returns
   * false when it was dropped because the socket is down (a subscription is recreated on
   * reconnect anyway; acks=0 is at most once).
   */
  sendNoResponse(frame: RequestFrame | Uint8Array): boolean {
    if (this.#state !== 'ready' || !this.#socket) return false;
    this.#socket.send(encodedWith(frame, this.#correlationId()));
    return true;
  }

  /** Reserves a subscription id on this connection and routes its pushes to `handler`. */
  addSubscription(handler: PushHandler): number {
    const max = 0xffff_ffff;
    for (let i = 0; i < this.#pushHandlers.size + 1; i++) {
      const id = this.#nextSubscriptionId;
      this.#nextSubscriptionId = id >= max ? 1 : id + 1;
      if (!this.#pushHandlers.has(id)) {
        this.#pushHandlers.set(id, handler);
        return id;
      }
    }
    throw new SluiceError('INVALID_ARGUMENT', 'no free subscription id');
  }

  removeSubscription(id: number): void {
    this.#pushHandlers.delete(id);
  }

  /** Closes for good: fails what is pending, stops reconnecting. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#reconnectTimer !== null) this.#options.clock.clearTimeout(this.#reconnectTimer);
    this.#failAll(new ClientClosedError());
    this.#pushHandlers.clear();
    const socket = this.#socket;
    this.#socket = null;
    if (socket) socket.close(1000, 'client closed');
    this.#firstConnect?.reject(new ClientClosedError());
    this.#firstConnect = null;
  }

  /** Closes the socket as if the network dropped it (tests; the connection reconnects). */
  dropSocket(): void {
    this.#socket?.close(4000, 'dropped by the client');
  }

  #correlationId(): number {
    let id = this.#nextCorrelationId;
    while (this.#pending.has(id)) id = id >= CORRELATION_ID_MAX ? 1 : id + 1;
    this.#nextCorrelationId = id >= CORRELATION_ID_MAX ? 1 : id + 1;
    return id;
  }

  #drain(): void {
    if (this.#state !== 'ready' || !this.#socket || !this.#limits) return;
    const socket = this.#socket;
    while (this.#outbox.length > 0 && this.#pending.size < this.#limits.inFlightMax) {
      const out = this.#outbox.shift()!;
      const correlationId = this.#correlationId();
      let bytes: Uint8Array;
      try {
        bytes = encodedWith(out.frame, correlationId);
      } catch (err) {
        out.reject(err);
        continue;
      }
      this.#pending.set(correlationId, out);
      socket.send(bytes);
    }
  }

  #attemptConnect(): void {
    this.#reconnectTimer = null;
    if (this.#state === 'closed') return;
    this.#state = 'connecting';
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(this.#options.url);
    } catch (err) {
      this.#onSocketGone(null, err);
      return;
    }
    this.#socket = socket;
    socket.binaryType = 'arraybuffer';
    const clock = this.#options.clock;
    const timeout = clock.setTimeout(() => {
      if (this.#socket === socket && this.#state === 'connecting') {
        this.#log('warn', `no HELLO_OK within ${this.#options.connectTimeoutMs} ms`);
        socket.close(4001, 'handshake timeout');
        this.#onSocketGone(socket, new ConnectionLostError('handshake timeout'));
      }
    }, this.#options.connectTimeoutMs);
    const helloId = this.#correlationId();
    socket.addEventListener('open', () => {
      if (this.#socket !== socket) return;
      socket.send(encodeClientFrame({ op: Op.HELLO, correlationId: helloId, versionMin: PROTOCOL_VERSION_MIN, versionMax: PROTOCOL_VERSION, clientId: this.#options.clientId }));
    });
    socket.addEventListener('message', (event: { data: unknown }) => {
      if (this.#socket !== socket) return;
      this.#onMessage(socket, event.data, helloId, timeout);
    });
    socket.addEventListener('error', (event: { error?: unknown; message?: string }) => {
      this.#log('warn', `socket error: ${event?.message ?? 'unknown'}`, event?.error);
    });
    socket.addEventListener('close', (event: { code?: number; reason?: string }) => {
      clock.clearTimeout(timeout);
      this.#onSocketGone(socket, new ConnectionLostError(`the connection closed (${event?.code ?? '?'} ${event?.reason ?? ''})`));
    });
  }

  #onMessage(socket: WebSocketLike, data: unknown, helloId: number, timeout: TimerHandle): void {
    if (!(data instanceof ArrayBuffer)) {
      this.#log('warn', 'a text message from the server; closing');
      socket.close(1003, 'text messages are not part of the protocol');
      return;
    }
    let frame: ServerFrame;
    try {
      frame = decodeServerFrame(new Uint8Array(data));
    } catch (err) {
      this.#log('warn', 'an undecodable frame from the server; closing', err);
      socket.close(1002, 'protocol error');
      return;
    }
    if (this.#state === 'connecting') {
      this.#onHandshake(socket, frame, helloId, timeout);
      return;
    }
    if (frame.op === Op.DATA || frame.op === Op.SUBSCRIPTION_CLOSED) {
      this.#pushHandlers.get(frame.subscriptionId)?.(frame);
      return;
    }
    if (frame.op === Op.ASSIGNMENT) {
      for (const listener of [...this.#assignmentListeners]) listener(frame);
      return;
    }
    const out = this.#pending.get(frame.correlationId);
    if (!out) {
      if (frame.op === Op.ERROR) this.#log('warn', `connection error from the server: ${frame.code} ${frame.message}`);
      return;
    }
    this.#pending.delete(frame.correlationId);
    if (frame.op === Op.ERROR) out.reject(toSluiceError(frame));
    else out.resolve(frame);
    this.#drain();
  }

  #onHandshake(socket: WebSocketLike, frame: ServerFrame, helloId: number, timeout: TimerHandle): void {
    this.#options.clock.clearTimeout(timeout);
    if (frame.op === Op.ERROR) {
      const err = toSluiceError(frame);
      socket.close(1000, 'handshake failed');
      if (this.#firstConnect) {
        // A refusal of the handshake (e.g. UNSUPPORTED_VERSION) will not change by retrying.
        this.#firstConnect.reject(err);
        this.#firstConnect = null;
        this.close();
      }
      return;
    }
    if (frame.op !== Op.HELLO_OK || frame.correlationId !== helloId) {
      this.#log('warn', `expected HELLO_OK, got ${opName(frame.op)}; closing`);
      socket.close(1002, 'protocol error');
      return;
    }
    this.#limits = frame;
    this.#state = 'ready';
    this.#attempt = 0;
    this.#connections++;
    if (this.#firstConnect) {
      this.#firstConnect.resolve();
      this.#firstConnect = null;
    } else {
      this.#log('info', 'reconnected');
      for (const listener of [...this.#reconnectListeners]) listener();
    }
    this.#drain();
  }

  #onSocketGone(socket: WebSocketLike | null, err: unknown): void {
    if (socket !== null && this.#socket !== socket) return;
    this.#socket = null;
    if (this.#state === 'closed') return;
    const wasReady = this.#state === 'ready';
    this.#state = 'down';
    if (this.#firstConnect) {
      this.#firstConnect.reject(err);
      this.#firstConnect = null;
      this.close();
      return;
    }
    if (wasReady) {
      // Everything sent or queued on the lost socket fails; requests made from now on wait
      // for the next connection (a failed reconnect attempt fails nothing).
      this.#failAll(err);
      this.#pushHandlers.clear();
      for (const listener of [...this.#disconnectListeners]) listener(err);
    }
    const delay = backoffDelayMs(this.#attempt++, this.#options.reconnectBackoff, this.#options.random);
    this.#log('info', `reconnecting in ${delay} ms (attempt ${this.#attempt})`);
    this.#reconnectTimer = this.#options.clock.setTimeout(() => this.#attemptConnect(), delay);
  }

  #failAll(err: unknown): void {
    const failed = [...this.#pending.values(), ...this.#outbox.splice(0)];
    this.#pending.clear();
    for (const out of failed) out.reject(err);
  }

  #log(level: 'info' | 'warn', message: string, error?: unknown): void {
    this.#options.onLog?.({ level, message, error });
  }
}
