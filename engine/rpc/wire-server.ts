/**
 * WireServer: accepts RPC connections and answers REQUEST frames (format in frame.ts), in any
 * order, through one async handler; sends PUSH frames on demand.
 *
 * - An oversize request is refused by id (ERR_RPC_REQUEST_TOO_LARGE) from its length prefix and
 *   its body discarded as it streams past (never buffered), so the connection stays usable.
 * - A reply over max_reply_bytes is replaced by ERR_RPC_REPLY_TOO_LARGE; a handler's rejection by
 *   a REPLY_ERROR with its code (ERR_RPC_HANDLER when it has none), message and class name.
 * - Backpressure: a connection runs at most max_in_flight_requests handlers at once and stops
 *   reading its socket while at that limit or while its replies wait to drain.
 * - A peer that breaks the frame format loses its connection; nobody else notices.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { listenTcp } from '../transport/tcp-listen.js';
import { encode } from './codec.js';
import { toErrorRecord, type ErrorRecord } from './errors.js';
import { FRAME_PUSH, FRAME_REPLY_ERROR, FRAME_REPLY_OK, FRAME_REQUEST, idFromNumber, idToBigInt } from './frame.js';
import { FrameReader, type FrameSink } from './frame-reader.js';
import { bodyBytes, FrameWriter, type WireBody } from './frame-writer.js';
import { attachSocket, checkKind, checkLimit, isWireBody, notifyClose, type CloseListener } from './wire-common.js';

/** Handlers may run at once per server connection unless configured otherwise. */
export const DEFAULT_MAX_IN_FLIGHT_REQUESTS = 128;

export interface WireRequest {
  id: bigint;
  kind: number;
  /** May be a view of a socket chunk; copy it to keep it long after the reply. */
  body: Buffer;
  conn: WireServerConnection;
}

export interface WireServerOptions {
  host: string;
  /** 0 picks a free port (see WireServer.port). */
  port: number;
  /** Largest request body accepted, bytes. */
  max_request_bytes: number;
  /** Largest reply or push body sent, bytes. */
  max_reply_bytes: number;
  log: Logger;
  /** Answers one request; a rejection becomes a REPLY_ERROR with the error's code and message. */
  onRequest: (req: WireRequest) => Promise<WireBody>;
  /** Handlers running at once per connection; beyond it the socket is not read (default 128). */
  max_in_flight_requests?: number;
  /** Called for each accepted connection, e.g. to remember it for pushes. */
  onConnection?: (conn: WireServerConnection) => void;
  /** The configuration key naming this port, for listen errors (default `rpc port`). */
  what?: string;
}

interface QueuedRequest {
  kind: number;
  idHi: number;
  idLo: number;
  body: Buffer;
}

/** One accepted client connection, as the server sees it. */
export class WireServerConnection implements FrameSink {
  /** `ip:port` of the client. */
  readonly remote: string;
  private readonly reader: FrameReader;
  private readonly writer: FrameWriter;
  private readonly waiting: QueuedRequest[] = [];
  private inFlight = 0;
  private paused = false;
  private pushSeq = 0;
  private isClosed = false;
  private closeError: Error | undefined;
  private readonly closeListeners: CloseListener[] = [];

  /** @internal Made by WireServer. */
  constructor(
    private readonly socket: Socket,
    private readonly opts: Required<Pick<WireServerOptions, 'max_request_bytes' | 'max_reply_bytes' | 'onRequest' | 'max_in_flight_requests'>>,
    private readonly log: Logger,
  ) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.reader = new FrameReader(opts.max_request_bytes, [FRAME_REQUEST], this);
    this.writer = new FrameWriter(socket);
    attachSocket(socket, this.reader, (err) => {
      this.log.warn({ err, remote: this.remote }, 'closing an RPC connection that broke the frame format');
      this.fail(err as Error);
    });
    socket.on('drain', () => this.updateFlow());
    socket.on('error', (err) => {
      this.closeError ??= err;
      this.log.debug({ err, remote: this.remote }, 'RPC connection error');
    });
    socket.on('close', () => {
      this.isClosed = true;
      this.reader.stop();
      this.waiting.length = 0;
      notifyClose(this.closeListeners, this.closeError, this.log);
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Requests whose handler is running. */
  get in_flight_requests(): number {
    return this.inFlight;
  }

  /**
   * Sends a PUSH frame (a notification with no reply). False when the connection is closed.
   * Throws ERR_RPC_REPLY_TOO_LARGE for a body over max_reply_bytes.
   */
  push(kind: number, body: WireBody): boolean {
    checkKind(kind);
    const n = bodyBytes(body);
    if (n > this.opts.max_reply_bytes) {
      throw new TempestError('ERR_RPC_REPLY_TOO_LARGE', `push of ${n} bytes exceeds max_reply_bytes ${this.opts.max_reply_bytes}`);
    }
    if (this.isClosed || !this.socket.writable) return false;
    const [hi, lo] = idFromNumber(++this.pushSeq);
    this.writer.write(FRAME_PUSH, kind, hi, lo, body, n);
    return true;
  }

  /** Closes this connection at once; replies still to come are dropped. */
  close(): void {
    this.socket.destroy();
  }

  /** `cb` runs once when the connection closes (at once if it is closed), with its error if any. */
  onClose(cb: CloseListener): void {
    if (this.isClosed) queueMicrotask(() => cb(this.closeError));
    else this.closeListeners.push(cb);
  }

  // -- FrameSink --

  onFrame(_type: number, kind: number, idHi: number, idLo: number, body: Buffer): void {
    if (this.inFlight >= this.opts.max_in_flight_requests || this.waiting.length > 0) {
      this.waiting.push({ kind, idHi, idLo, body });
      this.updateFlow();
      return;
    }
    this.dispatch(kind, idHi, idLo, body);
  }

  onOversize(_type: number, kind: number, idHi: number, idLo: number, body_bytes: number): void {
    this.sendError(kind, idHi, idLo, {
      code: 'ERR_RPC_REQUEST_TOO_LARGE',
      message: `request of ${body_bytes} bytes exceeds max_request_bytes ${this.opts.max_request_bytes}`,
      name: 'TempestError',
    });
  }

  // -- internals --

  private dispatch(kind: number, idHi: number, idLo: number, body: Buffer): void {
    this.inFlight++;
    let result: Promise<WireBody>;
    try {
      result = Promise.resolve(this.opts.onRequest({ id: idToBigInt(idHi, idLo), kind, body, conn: this }));
    } catch (err) {
      result = Promise.reject(err);
    }
    result
      .then(
        (reply) => this.sendReply(kind, idHi, idLo, reply),
        (err: unknown) => {
          if (!(err instanceof TempestError)) this.log.warn({ err, kind }, 'RPC handler failed without an error code');
          this.sendError(kind, idHi, idLo, toErrorRecord(err));
        },
      )
      .then(
        () => this.settled(),
        (err: unknown) => {
          this.log.error({ err, kind }, 'sending an RPC reply failed');
          this.settled();
        },
      );
  }

  /** One handler finished: start waiting requests while below the limit. */
  private settled(): void {
    this.inFlight--;
    while (this.waiting.length > 0 && this.inFlight < this.opts.max_in_flight_requests && !this.isClosed) {
      const next = this.waiting.shift()!;
      this.dispatch(next.kind, next.idHi, next.idLo, next.body);
    }
    this.updateFlow();
  }

  private sendReply(kind: number, idHi: number, idLo: number, reply: unknown): void {
    if (!isWireBody(reply)) {
      this.log.error({ kind }, 'RPC handler returned something other than a Buffer or Buffer[]');
      this.sendError(kind, idHi, idLo, { code: 'ERR_RPC_HANDLER', message: 'the handler returned neither a Buffer nor a Buffer[]', name: 'TempestError' });
      return;
    }
    const n = bodyBytes(reply);
    if (n > this.opts.max_reply_bytes) {
      this.sendError(kind, idHi, idLo, {
        code: 'ERR_RPC_REPLY_TOO_LARGE',
        message: `reply of ${n} bytes exceeds max_reply_bytes ${this.opts.max_reply_bytes}`,
        name: 'TempestError',
      });
      return;
    }
    if (this.isClosed || !this.socket.writable) return;
    this.writer.write(FRAME_REPLY_OK, kind, idHi, idLo, reply, n);
  }

  private sendError(kind: number, idHi: number, idLo: number, record: ErrorRecord): void {
    if (this.isClosed || !this.socket.writable) return;
    const body = encode({ code: record.code, message: record.message, name: record.name });
    this.writer.write(FRAME_REPLY_ERROR, kind, idHi, idLo, body, body.length);
  }

  /** Reads the socket only while handlers are below the limit and replies are draining. */
  private updateFlow(): void {
    if (this.isClosed) return;
    const stop = this.inFlight >= this.opts.max_in_flight_requests || this.waiting.length > 0 || this.socket.writableNeedDrain;
    if (stop && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private fail(err: Error): void {
    this.closeError ??= err;
    this.reader.stop();
    this.socket.destroy();
  }
}

export class WireServer {
  private readonly conns = new Set<WireServerConnection>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    private readonly log: Logger,
  ) {}

  /** Listens on host:port; ERR_TRANSPORT_ADDRESS_IN_USE (or ERR_RPC_LISTEN) naming the port. */
  static async listen(opts: WireServerOptions): Promise<WireServer> {
    checkLimit('max_request_bytes', opts.max_request_bytes);
    checkLimit('max_reply_bytes', opts.max_reply_bytes);
    const max_in_flight_requests = opts.max_in_flight_requests ?? DEFAULT_MAX_IN_FLIGHT_REQUESTS;
    if (!Number.isInteger(max_in_flight_requests) || max_in_flight_requests < 1) {
      throw new TempestError('ERR_RPC_INVALID_ARGUMENT', `max_in_flight_requests must be a positive integer, not ${max_in_flight_requests}`);
    }
    const log = opts.log;
    const server = createServer();
    const self = new WireServer(server, log);
    const connOpts = {
      max_request_bytes: opts.max_request_bytes,
      max_reply_bytes: opts.max_reply_bytes,
      onRequest: opts.onRequest,
      max_in_flight_requests,
    };
    server.on('connection', (socket: Socket) => {
      const conn = new WireServerConnection(socket, connOpts, log);
      self.conns.add(conn);
      conn.onClose(() => self.conns.delete(conn));
      log.debug({ remote: conn.remote }, 'RPC connection accepted');
      try {
        opts.onConnection?.(conn);
      } catch (err) {
        log.error({ err }, 'onConnection callback threw');
      }
    });
    await listenTcp(server, opts.host, opts.port, opts.what ?? 'rpc port', 'ERR_RPC_LISTEN', log);
    return self;
  }

  /** The port listened on (the real one when 0 was asked for). */
  get port(): number {
    const addr = this.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : 0;
  }

  /** Open connections. */
  connections(): IterableIterator<WireServerConnection> {
    return this.conns.values();
  }

  /** Stops listening and closes every connection; replies still to come are dropped. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const conn of this.conns) conn.close();
      this.log.debug('RPC server closed');
    });
    return this.closing;
  }
}
