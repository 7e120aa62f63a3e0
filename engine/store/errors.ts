/**
 * The store's error codes. Front ends map them: blob-api/ to HTTP statuses, fs/ to errno.
 * Errors from below (ERR_NO_QUORUM and the rpc layer's fail-over codes) surface as
 * ERR_STORE_UNAVAILABLE with the cause attached, so front ends need to know only these.
 */
import { TempestError } from '../util/errors.js';

export const STORE_ERRORS = {
  /** A key that is not 1..1024 bytes of UTF-8 path with no empty, `.` or `..` segment. */
  BAD_KEY: 'ERR_STORE_BAD_KEY',
  /** A time that does not parse (see time.ts for the accepted forms). */
  BAD_TIME: 'ERR_STORE_BAD_TIME',
  /** A time later than now: the past can be read, the future cannot. */
  FUTURE_TIME: 'ERR_STORE_FUTURE_TIME',
  /** Any other bad argument (a version, a limit, a range). */
  BAD_REQUEST: 'ERR_STORE_BAD_REQUEST',
  /** No such key (or version, or nothing at that time). */
  NOT_FOUND: 'ERR_STORE_NOT_FOUND',
  /** If-Match / If-None-Match did not hold; nothing was written. */
  PRECONDITION: 'ERR_STORE_PRECONDITION',
  /** More bytes than the limit; nothing was written. */
  TOO_LARGE: 'ERR_STORE_TOO_LARGE',
  /** Content-MD5 or x-checksum-sha256 did not match; nothing was written. */
  CHECKSUM: 'ERR_STORE_CHECKSUM',
  /** The body ended before (or ran past) its announced length; nothing was written. */
  SIZE_MISMATCH: 'ERR_STORE_SIZE_MISMATCH',
  /** The source stream failed or was aborted; nothing was written. */
  ABORTED: 'ERR_STORE_ABORTED',
  /** No quorum, no member of the shard reachable, or a past time not stable within the bound. */
  UNAVAILABLE: 'ERR_STORE_UNAVAILABLE',
  /** Stored bytes do not match their chunk id (a real fault). */
  CORRUPT: 'ERR_STORE_CORRUPT',
} as const;

export type StoreErrorCode = (typeof STORE_ERRORS)[keyof typeof STORE_ERRORS];

export class StoreError extends TempestError {
  constructor(
    code: StoreErrorCode,
    message: string,
    /** For NOT_FOUND: the key's version at that point is a delete marker. */
    readonly delete_marker = false,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'StoreError';
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}
