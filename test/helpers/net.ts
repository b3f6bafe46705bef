/** Free TCP ports on 127.0.0.1 for test servers. */
import { createServer } from 'node:net';

/** restartablePort() picks from [RESTARTABLE_PORT_MIN, RESTARTABLE_PORT_END): below Linux's ephemeral range (32768-60999 by default). */
const RESTARTABLE_PORT_MIN = 20_000;
const RESTARTABLE_PORT_END = 32_000;
const RESTARTABLE_PORT_ATTEMPTS = 50;

/** A TCP port free right now (from the ephemeral range). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * A free port below the ephemeral range, for a server a test stops and starts again on the
 * same port while clients keep trying to reconnect: a port from the ephemeral range can be
 * taken meanwhile by an outgoing connection, including a client's own reconnect that the
 * kernel connects to itself (seen once in CI: "cannot listen on 127.0.0.1:56889 (in use)").
 */
export async function restartablePort(): Promise<number> {
  for (let attempt = 0; attempt < RESTARTABLE_PORT_ATTEMPTS; attempt++) {
    const port = RESTARTABLE_PORT_MIN + Math.floor(Math.random() * (RESTARTABLE_PORT_END - RESTARTABLE_PORT_MIN));
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port found below the ephemeral range');
}
