/**
 * The gateway's HTTP endpoints, on the same uWS app and port as the WebSocket:
 *
 *   GET    /healthz             200 {"status":"ok",...}; 503 while shutting down
 *   GET    /metrics             Prometheus text format (prom-client)
 *   GET    /topics              {"topics":[names]}
 *   GET    /topics/:name        the topic's description (config and partitions)
 *   POST   /topics              body {name, partitions?, retentionMs?, retentionBytes?, segmentMs?, segmentBytes?,
 *                                     cleanupPolicy?, deleteRetentionMs?, timestampType?} -> 201 description
 *   DELETE /topics/:name        204
 *   GET    /sluice-client.js    the browser client, as an ES module re-exporting /sluice/client/index.js
 *   GET    /sluice/<path>.js    read-only files under dist/src/ (only .js and their .js.map source maps, which
 *                                carry the TypeScript inline; no '..', no symlink escape)
 *
 * Errors are JSON `{"error":{"code","message","retriable"}}` with an HTTP status per code.
 * HEAD answers as GET without the body; a known path asked with another method gets 405 and
 * `Allow` (OPTIONS: 204 and `Allow`); anything else 404 NOT_FOUND.
 *
 * uWS rules kept here: the HttpRequest is read synchronously before any await (it dies when
 * the handler returns); every response that completes later registers onAborted first and
 * writes inside res.cork; nothing throws out of a handler.
 *
 * Owner: the gateway (main) thread.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { sep } from 'node:path';
import type * as uWS from 'uWebSockets.js';
import type { Engine, TopicConfig } from '../engine/engine.js';
import { checkNotInternal } from '../engine/names.js';
import { TOPIC_CONFIG_NAMES } from '../engine/topic-configs.js';
import { originAllowed } from './origins.js';
import { SluiceError, type ErrorCode } from '../errors.js';
import type { Logger } from '../workers/owner-handle.js';
import type { GatewayMetrics } from './metrics.js';

/** Largest admin request body: a topic's settings are a few hundred bytes. */
const HTTP_BODY_BYTES_MAX = 64 * 1024;
/** The settings POST /topics takes besides `partitions`: every TopicConfig field, as the engine names it. */
const TOPIC_SETTINGS: ReadonlySet<string> = new Set(Object.values(TOPIC_CONFIG_NAMES));
/** Largest static file served: the client's modules are tens of KiB. */
const STATIC_FILE_BYTES_MAX = 4 * 1024 * 1024;
/** A static path: letters, digits, '.', '_', '-' and '/', ending in .js or .js.map. */
const STATIC_PATH = /^[A-Za-z0-9._\-/]+\.js(\.map)?$/;

const STATUS_OF: Partial<Record<ErrorCode, string>> = {
  UNKNOWN_TOPIC_OR_PARTITION: '404 Not Found',
  TOPIC_ALREADY_EXISTS: '409 Conflict',
  INVALID_TOPIC: '400 Bad Request',
  INVALID_ARGUMENT: '400 Bad Request',
  INVALID_REQUEST: '400 Bad Request',
  THROTTLED: '429 Too Many Requests',
  ENGINE_CLOSED: '503 Service Unavailable',
  OWNER_UNAVAILABLE: '503 Service Unavailable',
  STORAGE_ERROR: '500 Internal Server Error',
  INTERNAL: '500 Internal Server Error',
};

export interface HttpContext {
  engine: Engine;
  logger: Logger;
  metrics: GatewayMetrics;
  /** dist/src/: the root of the files served at /sluice/. */
  staticRoot: string;
  /** Origins besides the gateway's own whose pages may create and delete topics (./origins.ts). */
  allowedOrigins: readonly string[];
  readonly closing: boolean;
  topicDeleted(topic: string): void;
  health(): Record<string, unknown>;
}

/** A response that completes later: tracks abortion so nothing writes to a dead HttpResponse. */
class Reply {
  readonly #res: uWS.HttpResponse;
  /** A HEAD request: the status and headers of GET, no body. */
  readonly #head: boolean;
  #done = false;

  constructor(res: uWS.HttpResponse, head = false) {
    this.#res = res;
    this.#head = head;
    res.onAborted(() => {
      this.#done = true;
    });
  }

  send(status: string, contentType: string | null, body: string | Uint8Array, headers: [string, string][] = []): void {
    if (this.#done) return;
    this.#done = true;
    this.#res.cork(() => {
      this.#res.writeStatus(status);
      if (contentType) this.#res.writeHeader('Content-Type', contentType);
      // The client's modules are public: a page on another origin imports them (module scripts need CORS).
      if (contentType?.startsWith('text/javascript')) this.#res.writeHeader('Access-Control-Allow-Origin', '*');
      this.#res.writeHeader('Cache-Control', 'no-store');
      for (const [name, value] of headers) this.#res.writeHeader(name, value);
      if (this.#head) {
        // GET's length, written by hand: this uWS's endWithoutBody(length) leaves the response open.
        this.#res.writeHeader('Content-Length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length));
        this.#res.endWithoutBody();
      } else {
        this.#res.end(body);
      }
    });
  }

  json(status: string, value: unknown, headers: [string, string][] = []): void {
    this.send(status, 'application/json; charset=utf-8', JSON.stringify(value), headers);
  }

  error(err: unknown): void {
    const e = err instanceof SluiceError ? err : new SluiceError('INTERNAL', err instanceof Error ? err.message : String(err));
    this.json(STATUS_OF[e.code] ?? '400 Bad Request', { error: { code: e.code, message: e.message, retriable: e.retriable } });
  }

  /** An error of HTTP's own (a route, a method, a media type, an origin), in the same JSON shape as error()'s; never retriable. */
  httpError(status: string, code: string, message: string, headers: [string, string][] = []): void {
    this.json(status, { error: { code, message, retriable: false } }, headers);
  }

  /** Collects the request body up to `bytesMax`, copying each chunk (uWS reuses them). */
  body(bytesMax: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      this.#res.onData((chunk, isLast) => {
        bytes += chunk.byteLength;
        if (bytes <= bytesMax) chunks.push(Buffer.from(chunk.slice(0)));
        if (isLast) {
          if (bytes > bytesMax) reject(new SluiceError('INVALID_REQUEST', `the request body is over ${bytesMax} bytes`));
          else resolve(Buffer.concat(chunks));
        }
      });
    });
  }
}

function guard(ctx: HttpContext, handler: (res: uWS.HttpResponse, req: uWS.HttpRequest) => void): (res: uWS.HttpResponse, req: uWS.HttpRequest) => void {
  return (res, req) => {
    try {
      handler(res, req);
    } catch (err) {
      ctx.logger.error({ err: err instanceof Error ? err.stack : String(err), url: req.getUrl() }, 'gateway HTTP handler failed');
      try {
        res.writeStatus('500 Internal Server Error').end('internal error');
      } catch {
        // the response was already completed
      }
    }
  };
}

/** A GET route, and HEAD on the same pattern answering the same without the body. */
function getAndHead(app: uWS.TemplatedApp, ctx: HttpContext, pattern: string, handler: (reply: Reply, req: uWS.HttpRequest) => void): void {
  app.get(
    pattern,
    guard(ctx, (res, req) => handler(new Reply(res), req)),
  );
  app.head(
    pattern,
    guard(ctx, (res, req) => handler(new Reply(res, true), req)),
  );
}

/** A path parameter, percent-decoded; a malformed escape is INVALID_REQUEST (decodeURIComponent throws URIError). */
function pathParameter(req: uWS.HttpRequest, index: number): string {
  const raw = req.getParameter(index) ?? '';
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new SluiceError('INVALID_REQUEST', `malformed percent-encoding in the path: ${JSON.stringify(raw)}`);
  }
}

/** Answers 403 to a change asked by a page of an origin not allowed (./origins.ts); true when it did. */
function refusedOrigin(ctx: HttpContext, reply: Reply, req: uWS.HttpRequest): boolean {
  const origin = req.getHeader('origin');
  if (originAllowed(ctx.allowedOrigins, origin, req.getHeader('host'))) return false;
  ctx.metrics.originsRefused.inc();
  reply.httpError('403 Forbidden', 'ORIGIN_NOT_ALLOWED', `pages of ${origin} may not change topics: start the broker with --allowed-origins ${origin} to allow it`);
  return true;
}

/** The methods a known path answers to (for 405 and OPTIONS); null for a path with no route. */
function allowedMethods(url: string): string | null {
  if (url === '/healthz' || url === '/metrics' || url === '/sluice-client.js' || url.startsWith('/sluice/')) return 'GET, HEAD';
  if (url === '/topics') return 'GET, HEAD, POST';
  if (/^\/topics\/[^/]+$/.test(url)) return 'GET, HEAD, DELETE';
  return null;
}

export function registerHttpRoutes(app: uWS.TemplatedApp, ctx: HttpContext): void {
  getAndHead(app, ctx, '/healthz', (reply) => {
    reply.json(ctx.closing ? '503 Service Unavailable' : '200 OK', { status: ctx.closing ? 'closing' : 'ok', ...ctx.health() });
  });

  getAndHead(app, ctx, '/metrics', (reply) => {
    ctx.metrics.registry.metrics().then(
      (text) => reply.send('200 OK', ctx.metrics.registry.contentType, text),
      (err: unknown) => reply.error(err),
    );
  });

  getAndHead(app, ctx, '/topics', (reply) => {
    try {
      reply.json('200 OK', { topics: ctx.engine.listTopics() });
    } catch (err) {
      reply.error(err);
    }
  });

  getAndHead(app, ctx, '/topics/:name', (reply, req) => {
    try {
      reply.json('200 OK', describeJson(ctx.engine.describeTopic(pathParameter(req, 0))));
    } catch (err) {
      reply.error(err);
    }
  });

  app.post(
    '/topics',
    guard(ctx, (res, req) => {
      const reply = new Reply(res);
      if (refusedOrigin(ctx, reply, req)) return;
      // Only JSON: a page may send a form or text/plain to any origin without asking first.
      const type = req.getHeader('content-type').split(';')[0].trim().toLowerCase();
      if (type !== 'application/json') {
        reply.httpError('415 Unsupported Media Type', 'UNSUPPORTED_MEDIA_TYPE', `the body must be application/json, not ${JSON.stringify(type || 'none')}`);
        return;
      }
      reply
        .body(HTTP_BODY_BYTES_MAX)
        .then((raw) => {
          let body: unknown;
          try {
            body = JSON.parse(raw.toString('utf8'));
          } catch {
            throw new SluiceError('INVALID_REQUEST', 'the body must be a JSON object: {"name": ..., "partitions": ...}');
          }
          if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new SluiceError('INVALID_REQUEST', 'the body must be a JSON object');
          const { name, ...options } = body as Record<string, unknown>;
          if (typeof name !== 'string') throw new SluiceError('INVALID_TOPIC', 'the body needs "name", a string');
          checkNotInternal(name);
          for (const key of Object.keys(options)) {
            if (key !== 'partitions' && !TOPIC_SETTINGS.has(key)) {
              throw new SluiceError('INVALID_ARGUMENT', `unknown topic setting ${JSON.stringify(key)}`);
            }
          }
          if (ctx.closing) throw new SluiceError('ENGINE_CLOSED', 'the server is shutting down');
          // The engine checks each value's type and range.
          return ctx.engine.createTopic(name, options as Partial<TopicConfig>);
        })
        .then(
          (d) => reply.json('201 Created', describeJson(d)),
          (err: unknown) => reply.error(err),
        );
    }),
  );

  app.del(
    '/topics/:name',
    guard(ctx, (res, req) => {
      const reply = new Reply(res);
      if (refusedOrigin(ctx, reply, req)) return;
      if (ctx.closing) {
        reply.error(new SluiceError('ENGINE_CLOSED', 'the server is shutting down'));
        return;
      }
      let name: string;
      try {
        name = pathParameter(req, 0);
        checkNotInternal(name);
      } catch (err) {
        reply.error(err);
        return;
      }
      ctx.engine.deleteTopic(name).then(
        () => {
          ctx.topicDeleted(name);
          reply.send('204 No Content', null, '');
        },
        (err: unknown) => reply.error(err),
      );
    }),
  );

  registerStatic(app, ctx);

  app.any(
    '/*',
    guard(ctx, (res, req) => {
      const method = req.getMethod().toUpperCase();
      const url = req.getUrl();
      const reply = new Reply(res, method === 'HEAD');
      const allow = allowedMethods(url);
      if (allow === null) {
        reply.httpError('404 Not Found', 'NOT_FOUND', `no route for ${method} ${url}`);
      } else if (method === 'OPTIONS') {
        reply.send('204 No Content', null, '', [['Allow', allow]]);
      } else {
        reply.httpError('405 Method Not Allowed', 'METHOD_NOT_ALLOWED', `${url} answers ${allow}, not ${method}`, [['Allow', allow]]);
      }
    }),
  );
}

function registerStatic(app: uWS.TemplatedApp, ctx: HttpContext): void {
  getAndHead(app, ctx, '/sluice-client.js', (reply) => {
    stat(`${ctx.staticRoot}${sep}client${sep}index.js`).then(
      () => reply.send('200 OK', 'text/javascript; charset=utf-8', "export * from './sluice/client/index.js';\n"),
      () =>
        reply.send(
          '503 Service Unavailable',
          'text/plain; charset=utf-8',
          'the browser client is not built: dist/src/client/index.js does not exist (run `npm run build` once src/client exists)\n',
        ),
    );
  });

  getAndHead(app, ctx, '/sluice/*', (reply, req) => {
    const path = req.getUrl().slice('/sluice/'.length);
    const notFound = () => reply.httpError('404 Not Found', 'NOT_FOUND', `no file /sluice/${path}`);
    if (!STATIC_PATH.test(path) || path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      notFound();
      return;
    }
    readStatic(ctx.staticRoot, path).then(
      (bytes) => (bytes ? reply.send('200 OK', path.endsWith('.map') ? 'application/json; charset=utf-8' : 'text/javascript; charset=utf-8', bytes) : notFound()),
      () => notFound(),
    );
  });
}

/** The file at `root/path` if it is a regular .js or .js.map file whose real path stays inside root; else null. */
async function readStatic(root: string, path: string): Promise<Uint8Array | null> {
  // All asynchronous: the gateway thread never waits on the disk.
  const rootReal = await realpath(root);
  let real: string;
  try {
    real = await realpath(`${rootReal}${sep}${path.split('/').join(sep)}`);
  } catch {
    return null;
  }
  if (!real.startsWith(rootReal + sep) || !(real.endsWith('.js') || real.endsWith('.js.map'))) return null;
  const info = await stat(real);
  if (!info.isFile() || info.size > STATIC_FILE_BYTES_MAX) return null;
  return readFile(real);
}

function describeJson(d: ReturnType<Engine['describeTopic']>): Record<string, unknown> {
  return { name: d.name, config: d.config, partitions: d.partitions };
}
