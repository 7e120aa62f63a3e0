/**
 * Invariant checks (TigerBeetle style): a failed assertion is a bug in Tempest, never bad input.
 * Bad input gets a TempestError with a code instead.
 */
export class AssertionFailed extends Error {
  readonly code = 'ERR_ASSERTION';
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = 'AssertionFailed';
  }
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionFailed(message);
}
