/**
 * The last handlers of the app: unknown routes (404), wrong methods (405) and the error handler
 * that turns any error into JSON `{error, message}` (errors.ts), once, and never on a dead socket.
 */
import type { IncomingMessage } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from '../engine/util/log.js';
import { HTTP_ERRORS, HttpError, toErrorReply } from './errors.js';

const MAX_PATH_IN_MESSAGE_CHARS = 200;
/** After an early reply, how much of the unread body is read and dropped before the connection is cut. */
const LINGER_MAX_BYTES = 16 * 1024 * 1024;
const LINGER_MS = 2_000;

function linger(req: IncomingMessage): void {
  const socket = req.socket;
  if (req.complete || socket.destroyed) return;
  let dropped_bytes = 0;
  const cut = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(cut, LINGER_MS);
  timer.unref();
  req.on('data', (b: Buffer) => {
    dropped_bytes += b.length;
    if (dropped_bytes > LINGER_MAX_BYTES) cut();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

export const noRoute: RequestHandler = (req, _res, next) => {
  const path = req.path.length > MAX_PATH_IN_MESSAGE_CHARS ? `${req.path.slice(0, MAX_PATH_IN_MESSAGE_CHARS)}...` : req.path;
  next(new HttpError(404, HTTP_ERRORS.NO_ROUTE, `no route for ${req.method} ${path}`));
};

/** The route exists but not with this method; OPTIONS is answered with the allowed ones. */
export function methodNotAllowed(allow: string): RequestHandler {
  return (req, res, next) => {
    if (req.method === 'OPTIONS') {
      res.status(204).setHeader('allow', allow).end();
      return;
    }
    next(new HttpError(405, HTTP_ERRORS.METHOD_NOT_ALLOWED, `${req.method} is not allowed here (allowed: ${allow})`, { allow }));
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const r = toErrorReply(err);
    if (r.internal) log.error({ err, method: req.method, url: req.originalUrl }, 'request failed');
    else log.debug({ err, method: req.method, url: req.originalUrl, status: r.status }, 'request refused');
    if (res.headersSent) {
      // Part of a body is out: the only honest signal left is a cut connection.
      if (!res.writableEnded) res.destroy();
      return;
    }
    // The client is gone (an aborted upload, a reset): there is nobody to answer.
    if (res.destroyed || req.socket.destroyed) return;
    // Headers set for the success path (Content-Length, ETag, ...) must not describe the error.
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    for (const [name, value] of Object.entries(r.headers)) res.setHeader(name, value);
    // A body left unread (refused before reading, or cut off by a limit) is not worth draining
    // whole. The connection lingers after the reply, reading and dropping up to
    // LINGER_MAX_BYTES for LINGER_MS, then is cut: a client that sends its body before it reads
    // (fetch with FormData, most browsers) gets the reply instead of EPIPE. (`Connection:
    // close` would not do: Node destroys the socket as soon as the reply is out.)
    if (!req.complete) res.once('finish', () => linger(req));
    res.status(r.status).json({ error: r.error, message: r.message });
  };
}
