/**
 * WireClient: one RPC connection to a WireServer. Requests are multiplexed (ids unique per
 * connection, replies matched in any order), each with its own timeout; PUSH frames go to onPush.
 *
 * - A request over max_request_bytes is refused at once, unsent (ERR_RPC_REQUEST_TOO_LARGE).
 * - A reply or push over max_reply_bytes is refused from its length prefix, unbuffered: its
 *   request rejects with ERR_RPC_REPLY_TOO_LARGE and the connection closes (the server broke its
 *   promise; nothing after it can be trusted to be in sync with what this side expects).
 * - When the connection drops, every pending request rejects with ERR_RPC_CONNECTION_LOST; after
 *   close() with ERR_RPC_CLOSED. A REPLY_ERROR becomes a RemoteError (errors.ts).
 */
import { connect, type Socket } from 'node:net';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { decode } from './codec.js';
import { RemoteError, type ErrorRecord } from './errors.js';
import { FRAME_PUSH, FRAME_REPLY_ERROR, FRAME_REPLY_OK, FRAME_REQUEST, idFromNumber, idToNumber } from './frame.js';
import { FrameReader, type FrameSink } from './frame-reader.js';
import { bodyBytes, FrameWriter, type WireBody } from './frame-writer.js';
import { attachSocket, checkKind, checkLimit, isWireBody, notifyClose, type CloseListener } from './wire-common.js';

/** A client accepts REPLY_ERROR bodies up to this size even when max_reply_bytes is smaller. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;

export interface WireClientOptions {
  host: string;
  port: number;
  connect_timeout_ms: number;
  /** Largest request body sent, bytes (larger ones are refused before sending). */
  max_request_bytes: number;
  /** Largest reply or push body accepted, bytes (a larger one closes the connection). */
  max_reply_bytes: number;
  log: Logger;
  /** Receives PUSH frames; `body` may be a view of a socket chunk. */
  onPush?: (kind: number, body: Buffer) => void;
}

interface PendingRequest {
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class WireClient implements FrameSink {
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 1;
  private isClosed = false;
  /** Why requests now fail: ERR_RPC_CLOSED or ERR_RPC_CONNECTION_LOST. */
  private closeError: TempestError | undefined;
  private readonly closeListeners: CloseListener[] = [];
  private readonly closedPromise: Promise<void>;
  private readonly target: string;

  private constructor(
    private readonly socket: Socket,
    private readonly opts: WireClientOptions,
    private readonly log: Logger,
  ) {
    this.target = `${opts.host}:${opts.port}`;
    this.writer = new FrameWriter(socket);
    this.reader = new FrameReader(Math.max(opts.max_reply_bytes, MAX_ERROR_BODY_BYTES), [FRAME_REPLY_OK, FRAME_REPLY_ERROR, FRAME_PUSH], this);
    attachSocket(socket, this.reader, (err) => {
      this.log.warn({ err }, 'closing an RPC connection whose server broke the frame format');
      this.fail(new TempestError('ERR_RPC_CONNECTION_LOST', `connection to ${this.target} closed: ${(err as Error).message}`, { cause: err }));
    });
    socket.on('error', (err) => {
      this.log.debug({ err }, 'RPC connection error');
      this.closeError ??= new TempestError('ERR_RPC_CONNECTION_LOST', `connection to ${this.target} lost: ${err.message}`, { cause: err });
    });
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.isClosed = true;
        this.reader.stop();
        const err = this.closeError ?? new TempestError('ERR_RPC_CONNECTION_LOST', `connection to ${this.target} closed by the server`);
        this.closeError = err;
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        notifyClose(this.closeListeners, err.code === 'ERR_RPC_CLOSED' ? undefined : err, this.log);
        resolve();
      });
    });
  }

  /** Connects; ERR_RPC_CONNECT_TIMEOUT or ERR_RPC_CONNECT_FAILED naming host:port. */
  static connect(opts: WireClientOptions): Promise<WireClient> {
    try {
      checkLimit('max_request_bytes', opts.max_request_bytes);
      checkLimit('max_reply_bytes', opts.max_reply_bytes);
    } catch (err) {
      return Promise.reject(err);
    }
    const target = `${opts.host}:${opts.port}`;
    const log = opts.log.child({ rpcServer: target });
    return new Promise((resolve, reject) => {
      const socket = connect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TempestError('ERR_RPC_CONNECT_TIMEOUT', `no connection to ${target} within ${opts.connect_timeout_ms} ms`));
      }, opts.connect_timeout_ms);
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(new TempestError('ERR_RPC_CONNECT_FAILED', `cannot connect to ${target}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new WireClient(socket, opts, log));
      });
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Requests sent and not yet answered, failed or timed out. */
  get pending_requests(): number {
    return this.pending.size;
  }

  /**
   * Sends one request and resolves with the reply body (possibly a view of a socket chunk).
   * Rejects with ERR_RPC_REQUEST_TOO_LARGE (at once), ERR_RPC_TIMEOUT, ERR_RPC_REPLY_TOO_LARGE,
   * ERR_RPC_CONNECTION_LOST, ERR_RPC_CLOSED, or a RemoteError. Buffers of `body` are written
   * without copying and must not change until written.
   */
  request(kind: number, body: WireBody, timeout_ms: number): Promise<Buffer> {
    try {
      checkKind(kind);
      if (!(timeout_ms > 0) || !Number.isFinite(timeout_ms)) {
        throw new TempestError('ERR_RPC_INVALID_ARGUMENT', `timeout_ms must be a positive number, not ${timeout_ms}`);
      }
      if (!isWireBody(body)) throw new TempestError('ERR_RPC_INVALID_ARGUMENT', 'body must be a Buffer or Buffer[]');
    } catch (err) {
      return Promise.reject(err);
    }
    const n = bodyBytes(body);
    if (n > this.opts.max_request_bytes) {
      return Promise.reject(new TempestError('ERR_RPC_REQUEST_TOO_LARGE', `request of ${n} bytes exceeds max_request_bytes ${this.opts.max_request_bytes}`));
    }
    if (this.isClosed || this.closeError !== undefined || !this.socket.writable) {
      return Promise.reject(this.closeError ?? new TempestError('ERR_RPC_CONNECTION_LOST', `connection to ${this.target} is closed`));
    }
    const id = this.nextId++;
    const [hi, lo] = idFromNumber(id);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TempestError('ERR_RPC_TIMEOUT', `request ${id} (kind ${kind}) to ${this.target}: no reply within ${timeout_ms} ms`));
      }, timeout_ms);
      this.pending.set(id, { resolve, reject, timer });
      this.writer.write(FRAME_REQUEST, kind, hi, lo, body, n);
    });
  }

  /** `cb` runs once when the connection closes (at once if closed): with the error, unless close() closed it. */
  onClose(cb: CloseListener): void {
    if (this.isClosed) {
      const err = this.closeError?.code === 'ERR_RPC_CLOSED' ? undefined : this.closeError;
      queueMicrotask(() => cb(err));
    } else this.closeListeners.push(cb);
  }

  /** Closes the connection; pending requests reject with ERR_RPC_CLOSED. */
  close(): Promise<void> {
    this.closeError ??= new TempestError('ERR_RPC_CLOSED', `connection to ${this.target} closed by this side`);
    this.socket.destroy();
    return this.closedPromise;
  }

  // -- FrameSink --

  onFrame(type: number, kind: number, idHi: number, idLo: number, body: Buffer): void {
    if (type === FRAME_PUSH) {
      if (body.length > this.opts.max_reply_bytes) return this.onOversize(type, kind, idHi, idLo, body.length);
      try {
        this.opts.onPush?.(kind, body);
      } catch (err) {
        this.log.error({ err, kind }, 'onPush callback threw');
      }
      return;
    }
    if (type === FRAME_REPLY_OK && body.length > this.opts.max_reply_bytes) return this.onOversize(type, kind, idHi, idLo, body.length);
    const id = idToNumber(idHi, idLo);
    const p = this.pending.get(id);
    if (p === undefined) {
      this.log.debug({ id, kind }, 'reply to a request no longer pending (timed out)');
      return;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (type === FRAME_REPLY_OK) p.resolve(body);
    else p.reject(this.remoteError(body));
  }

  onOversize(type: number, kind: number, idHi: number, idLo: number, body_bytes: number): void {
    const what = type === FRAME_PUSH ? 'push' : 'reply';
    const message = `${what} of ${body_bytes} bytes (kind ${kind}) from ${this.target} exceeds max_reply_bytes ${this.opts.max_reply_bytes}`;
    if (type !== FRAME_PUSH) {
      const id = idToNumber(idHi, idLo);
      const p = this.pending.get(id);
      if (p !== undefined) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        p.reject(new TempestError('ERR_RPC_REPLY_TOO_LARGE', message));
      }
    }
    this.log.warn({ kind, body_bytes }, `closing the connection after an oversize ${what}`);
    this.fail(new TempestError('ERR_RPC_CONNECTION_LOST', `connection closed: ${message}`));
  }

  // -- internals --

  private remoteError(body: Buffer): Error {
    let record: unknown;
    try {
      record = decode(body);
    } catch (err) {
      return new TempestError('ERR_RPC_PROTOCOL', `undecodable error reply from ${this.target}: ${(err as Error).message}`);
    }
    const r = record as Partial<Record<keyof ErrorRecord, unknown>> | null;
    if (typeof r !== 'object' || r === null || typeof r.code !== 'string' || typeof r.message !== 'string') {
      return new TempestError('ERR_RPC_PROTOCOL', `error reply from ${this.target} lacks a code or message`);
    }
    return new RemoteError(r.code, r.message, typeof r.name === 'string' ? r.name : 'Error');
  }

  private fail(err: TempestError): void {
    this.closeError ??= err;
    this.reader.stop();
    this.socket.destroy();
  }
}
