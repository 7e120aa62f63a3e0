/**
 * The HTTP layer's own errors, and how any error becomes a status (DESIGN §11). Store errors carry
 * the meaning (errors.ts of engine/store); this file only says which status each meaning gets, so
 * a response's `error` field is always the code a program can branch on.
 */
import multer from 'multer';
import { StoreError, STORE_ERRORS, type StoreErrorCode } from '../engine/store/errors.js';
import { TempestError } from '../engine/util/errors.js';

export const HTTP_ERRORS = {
  /** A malformed request the store never saw (a header, a form). */
  BAD_REQUEST: 'ERR_HTTP_BAD_REQUEST',
  /** A multipart body that does not parse or breaks a form limit other than the file size. */
  MULTIPART: 'ERR_HTTP_MULTIPART',
  /** No route for this path. */
  NO_ROUTE: 'ERR_HTTP_NO_ROUTE',
  METHOD_NOT_ALLOWED: 'ERR_HTTP_METHOD_NOT_ALLOWED',
  /** A single Range that lies wholly past the end of the blob. */
  RANGE_NOT_SATISFIABLE: 'ERR_HTTP_RANGE_NOT_SATISFIABLE',
  /** The port is taken or cannot be bound. */
  LISTEN: 'ERR_HTTP_LISTEN',
  /** Anything without a known meaning (logged with its stack). */
  INTERNAL: 'ERR_HTTP_INTERNAL',
} as const;

/** An error with its status and any headers the response needs (Allow, Content-Range). */
export class HttpError extends TempestError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'HttpError';
  }
}

const STORE_STATUS: Record<StoreErrorCode, number> = {
  [STORE_ERRORS.BAD_KEY]: 400,
  [STORE_ERRORS.BAD_TIME]: 400,
  [STORE_ERRORS.FUTURE_TIME]: 400,
  [STORE_ERRORS.BAD_REQUEST]: 400,
  [STORE_ERRORS.CHECKSUM]: 400,
  [STORE_ERRORS.SIZE_MISMATCH]: 400,
  // Seen only when the source failed without the client going away (a broken form, say).
  [STORE_ERRORS.ABORTED]: 400,
  [STORE_ERRORS.NOT_FOUND]: 404,
  [STORE_ERRORS.PRECONDITION]: 412,
  [STORE_ERRORS.TOO_LARGE]: 413,
  [STORE_ERRORS.UNAVAILABLE]: 503,
  [STORE_ERRORS.CORRUPT]: 500,
};

/** Codes from below the store that mean "try again later", should one ever get past it. */
const UNAVAILABLE_CODES = new Set(['ERR_NO_QUORUM']);

/** Seconds a 503 asks the client to wait (a view change takes about a failure-detection timeout). */
const RETRY_AFTER_S = '1';

/** What the response to an error is: status, body and extra headers. */
export interface ErrorReply {
  status: number;
  error: string;
  message: string;
  headers: Record<string, string>;
  /** A fault of ours or below (logged at error level, not a client mistake). */
  internal: boolean;
}

export function toErrorReply(err: unknown): ErrorReply {
  if (err instanceof HttpError) return reply(err.status, err.code, err.message, err.headers);
  if (err instanceof StoreError) {
    const status = STORE_STATUS[err.code as StoreErrorCode] ?? 500;
    const headers: Record<string, string> = {};
    if (err.delete_marker) headers['x-tempest-delete-marker'] = 'true';
    if (status === 503) headers['retry-after'] = RETRY_AFTER_S;
    return reply(status, err.code, err.message, headers);
  }
  if (err instanceof multer.MulterError) {
    if (err.code === 'LIMIT_FILE_SIZE') return reply(413, STORE_ERRORS.TOO_LARGE, `the file part is larger than the limit (${err.message})`);
    return reply(400, HTTP_ERRORS.MULTIPART, `${err.message} (${err.code}${err.field ? `, field ${JSON.stringify(err.field)}` : ''})`);
  }
  if (err instanceof TempestError && UNAVAILABLE_CODES.has(err.code)) return reply(503, err.code, err.message, { 'retry-after': RETRY_AFTER_S });
  if (err instanceof TempestError) return reply(500, err.code, err.message);
  return reply(500, HTTP_ERRORS.INTERNAL, 'internal error (logged by the server)');
}

function reply(status: number, error: string, message: string, headers: Record<string, string> = {}): ErrorReply {
  return { status, error, message, headers, internal: status >= 500 && status !== 503 };
}

export function badRequest(message: string): HttpError {
  return new HttpError(400, HTTP_ERRORS.BAD_REQUEST, message);
}
