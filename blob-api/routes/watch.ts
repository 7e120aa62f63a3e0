/**
 * GET /v1/watch?prefix=: Server-Sent Events, one `event: version` per new version under the
 * prefix (delete markers included), in the store's order, `id:` the version, `data:` its JSON.
 * A comment every 15 s keeps proxies and idle timeouts from closing a quiet stream. The store
 * Watch is closed as soon as the client goes (or the server shuts down). A store failure ends
 * the stream with one `event: error` carrying `{error, message}`.
 *
 * Last-Event-ID is not honoured: a watch starts at the present (version ids are per shard, so
 * they do not order events across keys).
 */
import type { RequestHandler, Response } from 'express';
import { validatePrefix } from '../../engine/store/key.js';
import type { BlobSummary } from '../../engine/store/types.js';
import type { BlobContext } from '../context.js';
import { toErrorReply } from '../errors.js';
import { eventJson } from '../json.js';
import { parseQuery } from '../params.js';

export const KEEP_ALIVE_MS = 15_000;

export function watchVersions(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const prefix = validatePrefix(parseQuery(req.url).get('prefix') ?? '');
    res.status(200);
    res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    res.setHeader('cache-control', 'no-cache');
    // nginx would otherwise buffer the stream.
    res.setHeader('x-accel-buffering', 'no');
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const watch = ctx.store.watch(prefix);
    let closed = false;
    const stop = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(keepAlive);
      forget();
      watch.close();
    };
    const forget = ctx.streams.add(() => {
      stop();
      res.end();
    });
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    res.once('close', stop);
    res.flushHeaders();
    res.write(`: watching ${JSON.stringify(prefix)}\n\n`);
    try {
      for (let v = await watch.next(); v !== null && !closed; v = await watch.next()) {
        if (!res.write(formatEvent(v))) await drained(res);
      }
    } catch (err) {
      const r = toErrorReply(err);
      if (r.internal) ctx.log.error({ err }, 'watch failed');
      if (!closed) res.write(`event: error\ndata: ${JSON.stringify({ error: r.error, message: r.message })}\n\n`);
    } finally {
      stop();
      if (!res.writableEnded) res.end();
    }
  };
}

function formatEvent(v: BlobSummary): string {
  return `event: version\nid: ${v.version}\ndata: ${JSON.stringify(eventJson(v))}\n\n`;
}

/** Resolves when the response can take more, or is gone. */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
