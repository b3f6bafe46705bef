import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AssertionError, assert } from '../../src/assert.js';
import { ERROR_CODES, SluiceError, errorCodeOf, errorNumber, isRetriable } from '../../src/errors.js';

describe('error catalogue', () => {
  it('documents every code in docs/protocol.md with its number and retriable flag', () => {
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    for (const code of ERROR_CODES) {
      const row = doc.split('\n').find((line) => line.startsWith(`| ${code} |`));
      expect(row, `${code} is documented`).toBeDefined();
      const cells = row!.split('|').map((c) => c.trim());
      expect(Number(cells[2])).toBe(errorNumber(code));
      expect(cells[3]).toBe(isRetriable(code) ? 'yes' : 'no');
    }
  });

  it('gives every code a distinct number that maps back to it', () => {
    const numbers = ERROR_CODES.map(errorNumber);
    expect(new Set(numbers).size).toBe(numbers.length);
    for (const code of ERROR_CODES) expect(errorCodeOf(errorNumber(code))).toBe(code);
    expect(errorCodeOf(65535)).toBe('INTERNAL');
  });

  it('round-trips through the wire form, keeping the back-off hint', () => {
    const err = new SluiceError('THROTTLED', 'ring full', { backoffMs: 5 });
    const back = SluiceError.fromWire(JSON.parse(JSON.stringify(err.toWire())));
    expect(back).toBeInstanceOf(SluiceError);
    expect(back).toMatchObject({ code: 'THROTTLED', message: 'ring full', retriable: true, backoffMs: 5 });
    expect(SluiceError.fromWire({ code: 'NOPE' as any, message: 'x', retriable: false }).code).toBe('INTERNAL');
  });
});

describe('assert', () => {
  it('throws an AssertionError with the message, and builds a function message only on failure', () => {
    expect(() => assert(false, 'plain')).toThrow(new AssertionError('plain'));
    expect(() => assert(0, () => `built ${1 + 1}`)).toThrow('assertion failed: built 2');
    let built = 0;
    assert(true, () => `never ${++built}`);
    expect(built).toBe(0);
  });
});
