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

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable ${what}: ${String(value)}`);
}
