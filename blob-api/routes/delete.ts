/**
 * DELETE /v1/blobs/{key}: writes a delete marker (history stays readable), If-Match supported.
 * 404 when the key has no live version.
 */
import type { RequestHandler } from 'express';
import { writeConditions } from '../conditions.js';
import type { BlobContext } from '../context.js';
import { badRequest } from '../errors.js';
import { deletedJson } from '../json.js';
import { BLOBS_PATH, keyFromPath } from '../params.js';
import { setVersionHeaders } from '../reply.js';

export function deleteBlob(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const key = keyFromPath(req.path, BLOBS_PATH);
    // Deleting needs a live version anyway; "only if absent" would never delete anything.
    if (req.headers['if-none-match'] !== undefined) throw badRequest('If-None-Match has no meaning on DELETE');
    const { if_match } = await writeConditions(ctx.store, key, req.headers);
    const marker = await ctx.store.delete(key, if_match === undefined ? {} : { if_match });
    setVersionHeaders(res, marker);
    res.setHeader('x-tempest-delete-marker', 'true');
    res.status(200).json(deletedJson(marker));
  };
}
