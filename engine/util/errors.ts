/**
 * Errors with stable codes, in the style of undici and the level modules: callers branch on
 * `err.code`, never on message text.
 */
export class TempestError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TempestError';
    this.code = code;
  }
}

export function isTempestError(err: unknown, code?: string): err is TempestError {
  return err instanceof TempestError && (code === undefined || err.code === code);
}
