/**
 * Streams a blob's bytes (store.read) into a response, with backpressure. A client that goes away
 * destroys the read (nothing is fetched for nobody); a read that fails before the first byte is
 * still reported as a JSON error (next(err)); one that fails later can only cut the connection,
 * so the client sees a short body rather than a wrong one.
 */
import type { NextFunction, Response } from 'express';
import type { Readable } from 'node:stream';
import type { Logger } from '../engine/util/log.js';

export function sendBody(res: Response, body: Readable, onBytes: (n: number) => void, next: NextFunction, log: Logger): void {
  res.once('close', () => body.destroy());
  body.once('error', (err) => {
    body.unpipe(res);
    if (!res.headersSent) {
      next(err);
      return;
    }
    log.warn({ err }, 'a download failed after its first bytes; cutting the connection');
    res.destroy(err);
  });
  body.pipe(res);
  // After pipe, so that pipe's pause/resume alone decides the flow.
  body.on('data', (chunk: Buffer) => onBytes(chunk.length));
}
