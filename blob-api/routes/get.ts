/**
 * GET and HEAD /v1/blobs/{key}: a version's bytes (current, `?version=N` or `?at=<time>`), one
 * Range of them (range.ts), conditional on If-None-Match (304) and If-Range. A delete marker at
 * that point is a 404 with `x-tempest-delete-marker: true`. HEAD answers the same headers and never
 * opens a read.
 */
import type { RequestHandler } from 'express';
import { hlcToMs } from '../../engine/store/time.js';
import type { ByteRange } from '../../engine/store/types.js';
import { ifRangeHolds, noneMatchHolds } from '../conditions.js';
import type { BlobContext } from '../context.js';
import { HTTP_ERRORS, HttpError } from '../errors.js';
import { BLOBS_PATH, keyFromPath, parseQuery, readPointOf } from '../params.js';
import { contentRange, parseRange } from '../range.js';
import { sendDeleteMarker, setBlobHeaders } from '../reply.js';
import { sendBody } from '../send-body.js';

export function getBlob(ctx: BlobContext): RequestHandler {
  return async (req, res, next) => {
    const key = keyFromPath(req.path, BLOBS_PATH);
    const v = await ctx.store.head(key, readPointOf(parseQuery(req.url)));
    if (v.deleted) {
      sendDeleteMarker(res, v);
      return;
    }
    setBlobHeaders(res, v);
    if (noneMatchHolds(req.headers['if-none-match'], v.sha256)) {
      res.removeHeader('content-type');
      res.status(304).end();
      return;
    }
    let range: ByteRange | undefined;
    if (req.headers.range !== undefined && ifRangeHolds(req.headers['if-range'] as string | undefined, v.sha256, hlcToMs(v.timestamp))) {
      const asked = parseRange(req.headers.range, v.size);
      if (asked.kind === 'unsatisfiable') {
        throw new HttpError(416, HTTP_ERRORS.RANGE_NOT_SATISFIABLE, `Range ${JSON.stringify(req.headers.range)} lies outside the ${v.size} bytes of the blob`, { 'content-range': contentRange(null, v.size) });
      }
      if (asked.kind === 'range') range = asked.range;
    }
    if (range) {
      res.status(206).setHeader('content-range', contentRange(range, v.size));
      res.setHeader('content-length', range.end - range.start + 1);
    } else {
      res.status(200).setHeader('content-length', v.size);
    }
    if (req.method === 'HEAD' || v.size === 0) {
      res.end();
      return;
    }
    sendBody(res, ctx.store.read(v, range), ctx.metrics.sent, next, ctx.log);
  };
}
