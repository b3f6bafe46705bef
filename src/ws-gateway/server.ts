/**
 * The gateway: one uWebSockets.js app serving the WebSocket protocol of docs/protocol.md
 * (at any path) and the HTTP endpoints of http.ts on one port, over an open Engine.
 *
 *   const engine = await Engine.open({ dataDir });
 *   const gateway = await startGateway({ engine, host: '127.0.0.1', port: 7070 });
 *   ...
 *   await gateway.close();   // stop accepting, answer what is in flight, close sockets (1001)
 *   await engine.close();    // finish appends, clean-shutdown markers
 *
 * Owner: the gateway (main) thread. Invariants: every uWS handler catches everything (the
 * app keeps serving other connections whatever one does); the gateway-wide buffered bytes
 * are the sum of each open socket's last known getBufferedAmount(); a connection that
 * stopped pushing because the budget was spent is resumed once it frees.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as uWS from 'uWebSockets.js';
import type { Engine } from '../engine/engine.js';
import type { GroupCoordinator } from '../engine/group-coordinator.js';
import { openGroups, type Groups } from '../engine/groups.js';
import { assert } from '../assert.js';
import { SluiceError } from '../errors.js';
import { crc32cImplementation } from '../persist/crc32c.js';
import type { Logger } from '../workers/owner-handle.js';
import { CloseCode, Connection, type GatewayContext, type GatewayLimits, type SocketData } from './connection.js';
import { FetchBuffers } from './fetch-buffers.js';
import { originAllowed, parseAllowedOrigins } from './origins.js';
import { registerHttpRoutes } from './http.js';
import {
  FETCH_WAIT_MS_MAX,
  FRAME_BYTES_MAX,
  GATEWAY_BUFFERED_BYTES_MAX,
  GATEWAY_THROTTLE_BACKOFF_MS,
  HELLO_TIMEOUT_MS,
  IDLE_TIMEOUT_S,
  IN_FLIGHT_PER_CONNECTION_MAX,
  SOCKET_BUFFERED_BYTES_HARD_MAX,
  SOCKET_BUFFERED_BYTES_SOFT_MAX,
  SUBSCRIPTIONS_PER_CONNECTION_MAX,
} from './limits.js';
import { GatewayMetrics } from './metrics.js';

export type { GatewayLimits } from './connection.js';

const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof uWS;

export const DEFAULT_GATEWAY_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  inFlightMax: IN_FLIGHT_PER_CONNECTION_MAX,
  subscriptionsMax: SUBSCRIPTIONS_PER_CONNECTION_MAX,
  frameBytesMax: FRAME_BYTES_MAX,
  fetchWaitMsMax: FETCH_WAIT_MS_MAX,
  helloTimeoutMs: HELLO_TIMEOUT_MS,
  idleTimeoutS: IDLE_TIMEOUT_S,
  socketBufferedBytesSoftMax: SOCKET_BUFFERED_BYTES_SOFT_MAX,
  socketBufferedBytesHardMax: SOCKET_BUFFERED_BYTES_HARD_MAX,
  gatewayBufferedBytesMax: GATEWAY_BUFFERED_BYTES_MAX,
  throttleBackoffMs: GATEWAY_THROTTLE_BACKOFF_MS,
});

/** How long close() waits for requests in flight (produces finishing their acks) before closing sockets anyway. */
const SHUTDOWN_DRAIN_MS_MAX = 10_000;
/** Poll interval while close() waits for in-flight requests. */
const SHUTDOWN_POLL_MS = 5;
/** uSockets' listen option for a port of its own (no SO_REUSEPORT); the typings have it only as the enum ListenOptions. */
const LISTEN_EXCLUSIVE_PORT: number = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;

export interface GatewayOptions {
  engine: Engine;
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Port; 0 picks a free one (the result says which). Default 7070. */
  port?: number;
  logger?: Logger;
  /** Overrides of limits.ts's values (tests shrink them). */
  limits?: Partial<GatewayLimits>;
  /** Directory served at /sluice/ (default: this build's dist/src/). */
  staticRoot?: string;
  /** Reported in HELLO_OK and METADATA_OK (default: package.json's version). */
  serverVersion?: string;
  /** The group coordinator to serve (shared with other listeners); default: one opened over `engine` and closed with the gateway. */
  groups?: Groups;
  /**
   * Web origins (`scheme://host[:port]`, or `*` for any) whose pages may open WebSockets and
   * create or delete topics over HTTP, besides the gateway's own; requests without an Origin
   * (programs) are always served (./origins.ts). Default: none.
   */
  allowedOrigins?: readonly string[];
}

export interface Gateway {
  /** The port actually bound. */
  readonly port: number;
  readonly host: string;
  /** Stops accepting, answers requests in flight (ENGINE_CLOSED where they cannot finish), ends subscriptions, closes every socket with 1001. Idempotent. */
  close(): Promise<void>;
}

const silentLogger: Logger = { info() {}, warn() {}, error() {} };

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

class GatewayServer implements GatewayContext {
  readonly engine: Engine;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly limits: GatewayLimits;
  readonly serverVersion: string;
  closing = false;
  readonly connections = new Set<Connection>();
  #bufferedBytes = 0;
  readonly #budgetWaiters = new Set<Connection>();
  readonly coordinator: GroupCoordinator;
  readonly fetchBuffers = new FetchBuffers();

  constructor(engine: Engine, groups: Groups, logger: Logger, limits: GatewayLimits, serverVersion: string) {
    this.engine = engine;
    this.coordinator = groups.coordinator;
    this.logger = logger;
    this.limits = limits;
    this.serverVersion = serverVersion;
    this.metrics = new GatewayMetrics(engine, groups, {
      bufferedBytes: () => this.#bufferedBytes,
      subscriptions: () => {
        let n = 0;
        for (const c of this.connections) n += c.subscriptionCount;
        return n;
      },
    });
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  producerIdIssued(producerId: number): boolean {
    return this.engine.producerIdIssued(producerId);
  }

  budgetSpent(conn: Connection): boolean {
    if (this.#bufferedBytes < this.limits.gatewayBufferedBytesMax) return false;
    this.#budgetWaiters.add(conn);
    return true;
  }

  bufferedChanged(deltaBytes: number): void {
    this.#bufferedBytes += deltaBytes;
    if (deltaBytes < 0 && this.#budgetWaiters.size > 0 && this.#bufferedBytes < this.limits.gatewayBufferedBytesMax) {
      const waiters = [...this.#budgetWaiters];
      this.#budgetWaiters.clear();
      // Not synchronously: this runs inside another socket's send or drain.
      setImmediate(() => {
        for (const c of waiters) c.resume();
      });
    }
  }

  topicDeleted(topic: string): void {
    for (const c of this.connections) c.topicDeleted(topic);
  }

  forget(conn: Connection): void {
    this.connections.delete(conn);
    this.#budgetWaiters.delete(conn);
  }
}

/** Starts the gateway; resolves once it listens. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  if (!options || !options.engine) throw new SluiceError('INVALID_ARGUMENT', 'startGateway needs { engine }');
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 7070;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SluiceError('INVALID_ARGUMENT', `port must be 0 to 65535, got ${port}`);
  const limits: GatewayLimits = { ...DEFAULT_GATEWAY_LIMITS, ...options.limits };
  const logger = options.logger ?? silentLogger;
  const groups = options.groups ?? (await openGroups(options.engine, { logger }));
  const server = new GatewayServer(options.engine, groups, logger, limits, options.serverVersion ?? packageVersion());
  const staticRoot = options.staticRoot ?? fileURLToPath(new URL('../', import.meta.url));
  const allowedOrigins = parseAllowedOrigins(options.allowedOrigins ?? []);

  const app = uws.App();
  app.ws<SocketData>('/*', {
    // Every option explicitly (house style 15).
    maxPayloadLength: limits.frameBytesMax,
    maxBackpressure: limits.socketBufferedBytesHardMax,
    closeOnBackpressureLimit: 1,
    idleTimeout: limits.idleTimeoutS,
    sendPingsAutomatically: true,
    maxLifetime: 0,
    compression: uws.DISABLED,
    upgrade: (res, req, context) => {
      try {
        if (server.closing) {
          res.writeStatus('503 Service Unavailable').end('shutting down');
          return;
        }
        const origin = req.getHeader('origin');
        if (!originAllowed(allowedOrigins, origin, req.getHeader('host'))) {
          server.metrics.originsRefused.inc();
          res.writeStatus('403 Forbidden').end(`origin ${origin} may not connect: start the broker with --allowed-origins ${origin} to allow it`);
          return;
        }
        res.upgrade<SocketData>(
          { conn: null },
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      } catch (err) {
        logger.error({ err: String(err) }, 'gateway upgrade failed');
      }
    },
    open: (ws) => {
      try {
        const conn = new Connection(ws, server);
        ws.getUserData().conn = conn;
        server.connections.add(conn);
        server.metrics.connections.inc();
        server.metrics.connectionsTotal.inc();
      } catch (err) {
        logger.error({ err: String(err) }, 'gateway open handler failed');
      }
    },
    message: (ws, message, isBinary) => {
      ws.getUserData().conn?.onMessage(message, isBinary);
    },
    drain: (ws) => {
      ws.getUserData().conn?.onDrain();
    },
    close: (ws) => {
      try {
        const conn = ws.getUserData().conn;
        if (!conn) return;
        conn.onClose();
        server.forget(conn);
        server.metrics.connections.dec();
      } catch (err) {
        logger.error({ err: String(err) }, 'gateway close handler failed');
      }
    },
  });
  registerHttpRoutes(app, {
    engine: options.engine,
    logger,
    metrics: server.metrics,
    staticRoot,
    allowedOrigins,
    get closing() {
      return server.closing;
    },
    topicDeleted: (topic) => server.topicDeleted(topic),
    health: () => ({
      owners: options.engine.ownerCount,
      connections: server.connections.size,
      topics: safe(() => options.engine.listTopics().length, 0),
      crc32c: crc32cImplementation,
      serverVersion: server.serverVersion,
    }),
  });

  const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    listenExclusive(app, host, port, (socket) => {
      if (socket) resolve(socket);
      else reject(new SluiceError('INVALID_ARGUMENT', `cannot listen on ${host}:${port} (in use, or not an address of this machine)`));
    });
  });
  const boundPort = uws.us_socket_local_port(listenSocket as unknown as uWS.us_socket);

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      server.closing = true;
      uws.us_listen_socket_close(listenSocket);
      for (const c of server.connections) c.beginShutdown();
      const deadline = Date.now() + SHUTDOWN_DRAIN_MS_MAX;
      while (Date.now() < deadline && [...server.connections].some((c) => c.inFlight > 0)) {
        await new Promise((r) => setTimeout(r, SHUTDOWN_POLL_MS));
      }
      for (const c of [...server.connections]) c.end(CloseCode.GOING_AWAY, 'server shutting down');
      if (!options.groups) groups.close();
      server.metrics.close();
      (app as unknown as { close?: () => void }).close?.();
      logger.info({ port: boundPort }, 'gateway closed');
    })();
    return closed;
  };
  return { port: boundPort, host, close };
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/**
 * uSockets listens with SO_REUSEPORT unless told otherwise: a second broker started on a
 * port in use would then start too, and the kernel would share new connections between the
 * two. With the exclusive option the second listen fails, as Kafka's and NATS's do. The
 * typings lack the host + options overload that the native listen takes.
 */
function listenExclusive(app: uWS.TemplatedApp, host: string, port: number, done: (socket: uWS.us_listen_socket | false) => void): void {
  const listen = app.listen as unknown as (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => unknown;
  assert(Number.isInteger(LISTEN_EXCLUSIVE_PORT), 'uWebSockets.js exports LIBUS_LISTEN_EXCLUSIVE_PORT');
  listen.call(app, host, port, LISTEN_EXCLUSIVE_PORT, done);
}

