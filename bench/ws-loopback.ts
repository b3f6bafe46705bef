/**
 * The machine's raw loopback WebSocket bandwidth, the limit `sluice bench` compares with:
 * a uWebSockets.js server in its own process (as the broker is) and a `ws` client (as the
 * project's client uses in Node) exchanging 1 MiB binary messages, in both directions:
 * client to server (what produce does) and server to client (what consume does).
 *
 *   node dist/bench/ws-loopback.js server      prints `port <n>`, serves until stdin closes
 *
 * Server commands (text messages): `up <bytes>`: count binary bytes received, answer
 * `done` once `bytes` arrived; `down <bytes>`: send that many bytes in 1 MiB binary
 * messages, honouring backpressure (send()'s result and drain); `echo`: send every binary
 * message back as it is (the round-trip latency of two hops between processes, the floor
 * under the broker's four: producer -> gateway -> owner -> gateway -> consumer).
 *
 *
 * Owner: the main thread of each side. Bounded: every transfer has a byte count and the
 * client a deadline.
 */
import { createRequire } from 'node:module';
import * as hdr from 'hdr-histogram-js';
import type * as uWS from 'uWebSockets.js';
import { WebSocket } from 'ws';

export const LOOPBACK_MESSAGE_BYTES = 1024 * 1024;
/** The server stops sending above this many buffered bytes and resumes on drain. */
const SERVER_BUFFERED_BYTES_MAX = 16 * 1024 * 1024;
/** The client waits for its sends to be written once this many are outstanding. */
const CLIENT_SENDS_OUTSTANDING_MAX = 16;

function serve(): void {
  const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof uWS;
  interface State {
    upBytesWanted: number;
    upBytes: number;
    downBytesLeft: number;
    echo: boolean;
  }
  const payload = new Uint8Array(LOOPBACK_MESSAGE_BYTES).fill(0x62);
  const pushDown = (ws: uWS.WebSocket<State>): void => {
    const s = ws.getUserData();
    while (s.downBytesLeft > 0 && ws.getBufferedAmount() < SERVER_BUFFERED_BYTES_MAX) {
      const n = Math.min(LOOPBACK_MESSAGE_BYTES, s.downBytesLeft);
      s.downBytesLeft -= n;
      if (ws.send(n === payload.length ? payload : payload.subarray(0, n), true) === 2) return; // dropped: the socket is closing
    }
  };
  const app = uws.App();
  app.ws<State>('/*', {
    maxPayloadLength: 2 * LOOPBACK_MESSAGE_BYTES,
    maxBackpressure: 4 * SERVER_BUFFERED_BYTES_MAX,
    closeOnBackpressureLimit: 0,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    maxLifetime: 0,
    compression: uws.DISABLED,
    upgrade: (res, req, context) => {
      res.upgrade<State>({ upBytesWanted: 0, upBytes: 0, downBytesLeft: 0, echo: false }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
    },
    message: (ws, message, isBinary) => {
      const s = ws.getUserData();
      if (isBinary) {
        if (s.echo) {
          ws.send(message, true);
          return;
        }
        s.upBytes += message.byteLength;
        if (s.upBytesWanted > 0 && s.upBytes >= s.upBytesWanted) {
          s.upBytesWanted = 0;
          ws.send('done', false);
        }
        return;
      }
      const [cmd, arg] = Buffer.from(message).toString('utf8').split(' ');
      if (cmd === 'up') {
        s.upBytes = 0;
        s.upBytesWanted = Number(arg);
      } else if (cmd === 'down') {
        s.downBytesLeft = Number(arg);
        pushDown(ws);
      } else if (cmd === 'echo') {
        s.echo = true;
      }
    },
    drain: (ws) => pushDown(ws),
  });
  app.listen('127.0.0.1', 0, (socket) => {
    if (!socket) {
      process.stderr.write('ws-loopback: cannot listen\n');
      process.exit(1);
    }
    process.stdout.write(`port ${uws.us_socket_local_port(socket as unknown as uWS.us_socket)}\n`);
  });
  // The parent closes our stdin to stop us.
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}

export interface LoopbackResult {
  /** Client to server (the produce direction), MB/s (10^6 bytes). */
  upMBps: number;
  /** Server to client (the consume direction), MB/s. */
  downMBps: number;
}

/** Measures both directions against a server started with `serve()` on `port`. */
export async function measureLoopback(port: number, bytes: number, timeoutMs: number): Promise<LoopbackResult> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: 4 * LOOPBACK_MESSAGE_BYTES });
  ws.binaryType = 'nodebuffer';
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const timeout = setTimeout(() => ws.terminate(), timeoutMs);
  try {
    const messages = Math.max(1, Math.ceil(bytes / LOOPBACK_MESSAGE_BYTES));
    const total = messages * LOOPBACK_MESSAGE_BYTES;
    // Up: the server answers `done` once it has every byte.
    const payload = Buffer.alloc(LOOPBACK_MESSAGE_BYTES, 0x63);
    const done = new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('close', () => reject(new Error('loopback: the socket closed during the up transfer')));
    });
    ws.send(`up ${total}`);
    const upStart = process.hrtime.bigint();
    let outstanding = 0;
    let wake: (() => void) | null = null;
    for (let i = 0; i < messages; i++) {
      outstanding++;
      ws.send(payload, { binary: true, compress: false }, () => {
        outstanding--;
        wake?.();
      });
      while (outstanding >= CLIENT_SENDS_OUTSTANDING_MAX) await new Promise<void>((r) => (wake = r));
    }
    await done;
    const upSecs = Number(process.hrtime.bigint() - upStart) / 1e9;
    // Down: count bytes until all arrived.
    const downStart = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      let received = 0;
      const onMessage = (data: Buffer): void => {
        received += data.length;
        if (received >= total) {
          ws.off('message', onMessage);
          resolve();
        }
      };
      ws.on('message', onMessage);
      ws.once('close', () => reject(new Error('loopback: the socket closed during the down transfer')));
      ws.send(`down ${total}`);
    });
    const downSecs = Number(process.hrtime.bigint() - downStart) / 1e9;
    return { upMBps: total / upSecs / 1e6, downMBps: total / downSecs / 1e6 };
  } finally {
    clearTimeout(timeout);
    ws.close();
  }
}

export interface EchoResult {
  /** Round trip (client -> server -> client) at a fixed rate, µs, corrected for coordinated omission. */
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/**
 * Round trips of `messages` 100-byte messages sent at `ratePerSec` on a fixed schedule
 * (each stamped with its intended send time, as the broker's latency run does) to a server
 * started with `serve()`, which echoes them. A new connection; the server's echo mode
 * lasts as long as it.
 */
export async function measureEcho(port: number, messages: number, ratePerSec: number, timeoutMs: number): Promise<EchoResult> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const nowNs = (): number => Number(process.hrtime.bigint());
  const deadlineNs = nowNs() + timeoutMs * 1e6;
  try {
    let received = 0;
    const all = new Promise<void>((resolve, reject) => {
      ws.on('message', (data: Buffer) => {
        histogram.recordValue(Math.max(1, Math.round((nowNs() - data.readDoubleLE(0)) / 1e3)));
        if (++received >= messages) resolve();
      });
      ws.once('close', () => reject(new Error('loopback: the socket closed during the echo run')));
    });
    ws.send('echo');
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const intervalNs = 1e9 / ratePerSec;
    const startNs = nowNs() + 10e6;
    for (let sent = 0; sent < messages && nowNs() < deadlineNs; ) {
      const waitMs = (startNs + sent * intervalNs - nowNs()) / 1e6;
      if (waitMs > 0.02) Atomics.wait(sleeper, 0, 0, Math.min(waitMs, 1));
      const now = nowNs();
      while (sent < messages && startNs + sent * intervalNs <= now) {
        const message = Buffer.alloc(100);
        message.writeDoubleLE(startNs + sent * intervalNs, 0);
        ws.send(message, { binary: true, compress: false });
        sent++;
      }
      await new Promise((r) => setImmediate(r));
    }
    const timer = setTimeout(() => ws.terminate(), Math.max(0, (deadlineNs - nowNs()) / 1e6));
    await all.finally(() => clearTimeout(timer));
    return { p50Us: histogram.getValueAtPercentile(50), p99Us: histogram.getValueAtPercentile(99), p999Us: histogram.getValueAtPercentile(99.9) };
  } finally {
    ws.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv[2] === 'server') serve();
