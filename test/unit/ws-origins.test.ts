import { describe, expect, it } from 'vitest';
import { originAllowed, parseAllowedOrigins } from '../../src/ws-gateway/origins.js';

describe('allowed origins', () => {
  it('serves programs (no Origin), the gateway\'s own origin and the listed ones', () => {
    const allowed = parseAllowedOrigins(['https://app.example.com', 'http://127.0.0.1:3000']);
    expect(allowed).toEqual(['https://app.example.com', 'http://127.0.0.1:3000']);
    const host = '127.0.0.1:7070';
    expect(originAllowed(allowed, '', host)).toBe(true);
    expect(originAllowed(allowed, 'http://127.0.0.1:7070', host)).toBe(true);
    expect(originAllowed(allowed, 'http://127.0.0.1:7070', 'LOCALHOST:7070')).toBe(false);
    expect(originAllowed(allowed, 'http://localhost:7070', 'LOCALHOST:7070')).toBe(true);
    expect(originAllowed(allowed, 'https://app.example.com', host)).toBe(true);
    expect(originAllowed(allowed, 'http://app.example.com', host)).toBe(false);
    expect(originAllowed(allowed, 'http://127.0.0.1:3000', host)).toBe(true);
    expect(originAllowed(allowed, 'http://127.0.0.1:3001', host)).toBe(false);
    expect(originAllowed(allowed, 'null', host)).toBe(false);
    expect(originAllowed(allowed, 'not a url', host)).toBe(false);
    expect(originAllowed(['*'], 'http://anything.test', host)).toBe(true);
    expect(originAllowed([], 'http://anything.test', host)).toBe(false);
  });

  it('takes a page as the gateway\'s own only on an address or localhost: a DNS name may have been pointed here (DNS rebinding)', () => {
    expect(originAllowed([], 'http://evil.example:7070', 'evil.example:7070')).toBe(false);
    expect(originAllowed([], 'http://[::1]:7070', '[::1]:7070')).toBe(true);
    expect(originAllowed([], 'http://10.1.2.3:7070', '10.1.2.3:7070')).toBe(true);
    expect(originAllowed([], 'http://localhost:7070', 'localhost:7070')).toBe(true);
    // A name the operator serves pages under is listed.
    expect(originAllowed(parseAllowedOrigins(['http://broker.internal:7070']), 'http://broker.internal:7070', 'broker.internal:7070')).toBe(true);
  });

  it('refuses a listed origin that is not scheme://host[:port]', () => {
    expect(parseAllowedOrigins(['*', ' http://a.test:8080 ', 'HTTPS://B.TEST'])).toEqual(['*', 'http://a.test:8080', 'https://b.test']);
    for (const bad of ['a.test', 'ftp://a.test', 'http://a.test/', 'http://a.test/app', 'http://a.test?x=1', 'http://user@a.test']) {
      expect(() => parseAllowedOrigins([bad]), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});
