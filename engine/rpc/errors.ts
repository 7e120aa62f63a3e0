/**
 * The errors of the RPC wire: local failures are TempestErrors with ERR_RPC_* codes; a failure
 * reported by the other side is a RemoteError, whose own code is ERR_RPC_REMOTE and whose
 * remoteCode/remoteName/message are what the remote handler threw.
 *
 * Local codes: ERR_RPC_REQUEST_TOO_LARGE, ERR_RPC_REPLY_TOO_LARGE, ERR_RPC_TIMEOUT,
 * ERR_RPC_CONNECTION_LOST (the connection dropped), ERR_RPC_CLOSED (closed by this side),
 * ERR_RPC_CONNECT_TIMEOUT, ERR_RPC_CONNECT_FAILED, ERR_RPC_PROTOCOL (the peer broke the frame
 * format), ERR_RPC_INVALID_ARGUMENT. A server sends ERR_RPC_REQUEST_TOO_LARGE,
 * ERR_RPC_REPLY_TOO_LARGE and ERR_RPC_HANDLER (a handler threw something without a code) as
 * remote codes.
 */
import { TempestError } from '../util/errors.js';

export class RemoteError extends TempestError {
  /** The code the remote side gave (`ERR_...`), or ERR_RPC_HANDLER when it had none. */
  readonly remoteCode: string;
  /** The remote error's class name (`TempestError`, `TypeError`, ...). */
  readonly remoteName: string;

  constructor(remoteCode: string, message: string, remoteName: string) {
    super('ERR_RPC_REMOTE', message);
    this.name = 'RemoteError';
    this.remoteCode = remoteCode;
    this.remoteName = remoteName;
  }
}

/** True for a RemoteError, with the given remote code when one is given. */
export function isRemoteError(err: unknown, remoteCode?: string): err is RemoteError {
  return err instanceof RemoteError && (remoteCode === undefined || err.remoteCode === remoteCode);
}

/** What a REPLY_ERROR frame carries: a thrown value reduced to code, message and class name. */
export interface ErrorRecord {
  code: string;
  message: string;
  name: string;
}

/** Longest error message sent over the wire, characters (so an error reply stays small). */
export const MAX_ERROR_MESSAGE_CHARS = 4096;
/** Longest error code or class name sent over the wire, characters. */
export const MAX_ERROR_NAME_CHARS = 256;

export function toErrorRecord(err: unknown): ErrorRecord {
  const e = err as { code?: unknown; message?: unknown; name?: unknown } | null | undefined;
  const isObject = typeof err === 'object' && err !== null;
  const code = isObject && typeof e!.code === 'string' && e!.code.length > 0 ? e!.code : 'ERR_RPC_HANDLER';
  const message = isObject && typeof e!.message === 'string' ? e!.message : String(err);
  const name = isObject && typeof e!.name === 'string' ? e!.name : typeof err;
  return { code: clip(code, MAX_ERROR_NAME_CHARS), message: clip(message, MAX_ERROR_MESSAGE_CHARS), name: clip(name, MAX_ERROR_NAME_CHARS) };
}

function clip(s: string, max: number): string {
  return s.length > max ? s.slice(0, max) + '...' : s;
}
