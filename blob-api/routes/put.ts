/**
 * PUT /v1/blobs/{key}: the raw body becomes a new version, streamed into store.put as it arrives.
 * Everything that can be refused without the body (key, announced size, conditions) is checked
 * before the body is asked for (continue.ts), so a refused 5 GiB upload sends none of it.
 */
import type { RequestHandler } from 'express';
import { StoreError, STORE_ERRORS } from '../../engine/store/errors.js';
import type { PutOptions } from '../../engine/store/types.js';
import { writeConditions } from '../conditions.js';
import type { BlobContext } from '../context.js';
import { sendContinue } from '../continue.js';
import { BLOBS_PATH, contentLengthOf, keyFromPath } from '../params.js';
import { sendCreated } from '../reply.js';
import { countedChunks } from '../upload-body.js';

export function putBlob(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const key = keyFromPath(req.path, BLOBS_PATH);
    const expected_size = contentLengthOf(req);
    if (expected_size !== undefined && expected_size > ctx.max_blob_size_bytes) {
      throw new StoreError(STORE_ERRORS.TOO_LARGE, `Content-Length ${expected_size} is over the limit of ${ctx.max_blob_size_bytes} bytes`);
    }
    const opts: PutOptions = {
      ...(await writeConditions(ctx.store, key, req.headers)),
      max_size: ctx.max_blob_size_bytes,
      expected_size,
      content_type: req.headers['content-type'],
      md5_base64: req.headers['content-md5'] as string | undefined,
      sha256: req.headers['x-checksum-sha256'] as string | undefined,
    };
    sendContinue(req, res);
    sendCreated(res, await ctx.store.put(key, countedChunks(req, ctx.metrics.received), opts));
  };
}
