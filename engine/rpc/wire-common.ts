/**
 * What WireServer and WireClient share: argument checks and close notification.
 */
import type { Socket } from 'node:net';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { MAX_FRAME_BODY_BYTES, MAX_KIND } from './frame.js';
import type { WireBody } from './frame-writer.js';

export function isWireBody(v: unknown): v is WireBody {
  return Buffer.isBuffer(v) || (Array.isArray(v) && v.every((b) => Buffer.isBuffer(b)));
}

export function checkLimit(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > MAX_FRAME_BODY_BYTES) {
    throw new TempestError('ERR_RPC_INVALID_ARGUMENT', `${name} must be an integer from 0 to ${MAX_FRAME_BODY_BYTES}, not ${v}`);
  }
}

export function checkKind(kind: number): void {
  if (!Number.isInteger(kind) || kind < 0 || kind > MAX_KIND) {
    throw new TempestError('ERR_RPC_INVALID_ARGUMENT', `kind must be an integer from 0 to ${MAX_KIND}, not ${kind}`);
  }
}

export type CloseListener = (err?: Error) => void;

export function notifyClose(listeners: CloseListener[], err: Error | undefined, log: Logger): void {
  for (const cb of listeners.splice(0)) {
    try {
      cb(err);
    } catch (e) {
      log.error({ err: e }, 'onClose callback threw');
    }
  }
}

/**
 * Sets a connection's socket up the same way on both sides: no Nagle delay (frames are small and
 * latency-bound), TCP keep-alive, and every chunk to the frame reader; a chunk that breaks the
 * frame format goes to `broken` (the caller closes the connection).
 */
export function attachSocket(socket: Socket, reader: { push(chunk: Buffer): void }, broken: (err: unknown) => void): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 10_000);
  socket.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch (err) {
      broken(err);
    }
  });
}
