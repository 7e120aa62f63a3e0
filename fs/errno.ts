/**
 * Store errors as the errno a file-system call returns (DESIGN §10). fuse-native takes them
 * negative. EIO is kept for real faults: corrupt bytes and errors nothing else explains.
 */
import { constants } from 'node:os';
import { isStoreError, STORE_ERRORS } from '../engine/store/errors.js';
import { isTempestError } from '../engine/util/errors.js';

const E = constants.errno;

/** `-errno` for fuse-native. */
export const ERRNO = {
  OK: 0,
  ENOENT: -E.ENOENT,
  EIO: -E.EIO,
  EROFS: -E.EROFS,
  ENOSPC: -E.ENOSPC,
  ENOTEMPTY: -E.ENOTEMPTY,
  EAGAIN: -E.EAGAIN,
  EEXIST: -E.EEXIST,
  EISDIR: -E.EISDIR,
  ENOTDIR: -E.ENOTDIR,
  EINVAL: -E.EINVAL,
  EBADF: -E.EBADF,
  EFBIG: -E.EFBIG,
  ENAMETOOLONG: -E.ENAMETOOLONG,
  EMFILE: -E.EMFILE,
  EPERM: -E.EPERM,
  ENOSYS: -E.ENOSYS,
  EXDEV: -E.EXDEV,
} as const;

/** An error the file system raises itself, carrying its errno. */
export class FsError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'FsError';
  }
}

export function fsError(errno: number, message: string): FsError {
  return new FsError(errno, message);
}

/** The `-errno` for an error thrown by the store, the mount or below. */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  if (isStoreError(err)) {
    switch (err.code) {
      case STORE_ERRORS.NOT_FOUND:
      case STORE_ERRORS.FUTURE_TIME:
      case STORE_ERRORS.BAD_TIME:
        return ERRNO.ENOENT;
      case STORE_ERRORS.BAD_KEY:
        return ERRNO.EINVAL;
      case STORE_ERRORS.UNAVAILABLE:
        return noSpace(err) ? ERRNO.ENOSPC : ERRNO.EAGAIN;
      case STORE_ERRORS.PRECONDITION:
        return ERRNO.EEXIST;
      case STORE_ERRORS.TOO_LARGE:
        return ERRNO.EFBIG;
      case STORE_ERRORS.BAD_REQUEST:
        return ERRNO.EINVAL;
      default:
        return noSpace(err) ? ERRNO.ENOSPC : ERRNO.EIO;
    }
  }
  if (noSpace(err)) return ERRNO.ENOSPC;
  return ERRNO.EIO;
}

/** A full disk anywhere below (the log store's ENOSPC, in the error or its causes). */
/** True when a full disk caused `err` (anywhere along its causes). */
export function noSpace(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown; message?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 8; e = e.cause as typeof e, depth++) {
    if (e.code === 'ENOSPC' || (isTempestError(e) && /ENOSPC|no space left/i.test(String(e.message)))) return true;
  }
  return false;
}
