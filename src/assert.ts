/**
 * Assertions for programmer errors (house style 19): they crash loudly and are never
 * caught to carry on. What the world can do to us is a SluiceError instead.
 * Owner: any thread; no state.
 */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

/**
 * Throws an AssertionError unless `condition` holds. A message with figures in it goes as a
 * function, built only on failure: a template literal argument is built on every call
 * (about 70 ns and a string of garbage each here; per batch on the owner that was a dozen).
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'string' ? message : message());
}

export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable ${what}: ${String(value)}`);
}
