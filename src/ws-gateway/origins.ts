/**
 * Which web pages may use the gateway: a browser sends the page's origin in the `Origin`
 * header of every WebSocket handshake and of every cross-origin POST or DELETE, and any
 * page the user opens could otherwise produce, consume, create and delete topics on a
 * broker the browser can reach (127.0.0.1 included). Allowed: requests without an Origin
 * (programs: the Node client, the CLI, curl), the gateway's own origin when it is an
 * address or localhost (a page it served: the Origin's host and port are the request's
 * Host), and the origins the operator lists (`sluice start --allowed-origins`; `*` allows
 * any, as NATS' allowed_origins empty does). A page whose own origin is a DNS name needs
 * that name listed: otherwise a page of any site could point its name at 127.0.0.1 (DNS
 * rebinding) and pass for one the gateway served.
 * Pure. Owner: the gateway thread.
 */
import { SluiceError } from '../errors.js';

/** Any origin may connect. */
export const ANY_ORIGIN = '*';

/** A checked list of allowed origins: `scheme://host[:port]` (http or https), or `*`. */
export function parseAllowedOrigins(values: readonly string[]): string[] {
  return values.map((value) => {
    const v = value.trim();
    if (v === ANY_ORIGIN) return v;
    let url: URL;
    try {
      url = new URL(v);
    } catch {
      throw new SluiceError('INVALID_ARGUMENT', `allowed origin ${JSON.stringify(value)} is not a URL like http://host:port`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || v.endsWith('/')) {
      throw new SluiceError('INVALID_ARGUMENT', `allowed origin ${JSON.stringify(value)} must be scheme://host[:port] (http or https, no path)`);
    }
    return url.origin;
  });
}

/** Whether a request with this Origin header (empty: none) and Host header may go on. */
export function originAllowed(allowed: readonly string[], origin: string, host: string): boolean {
  if (origin === '') return true;
  if (allowed.includes(ANY_ORIGIN)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed page, a file) or garbage
  }
  if (url.host === host.toLowerCase() && isAddressOrLocalhost(url.hostname)) return true;
  return allowed.includes(url.origin);
}

/** An IPv4 or IPv6 literal (as URL.hostname writes them), or localhost: names no other site can point here. */
function isAddressOrLocalhost(hostname: string): boolean {
  return hostname === 'localhost' || /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || (hostname.startsWith('[') && hostname.endsWith(']'));
}
