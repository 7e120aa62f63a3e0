/**
 * GET /v1/blobs?prefix=&at=&limit=&after=: the live keys under a prefix, as of now or of `at`, in
 * key order, a page at a time (`next_after` is the `after` of the next page, null on the last).
 * Delete markers are never listed.
 */
import type { RequestHandler } from 'express';
import type { BlobContext } from '../context.js';
import { listEntryJson } from '../json.js';
import { listQueryOf, parseQuery } from '../params.js';

export function listBlobs(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const page = await ctx.store.list(listQueryOf(parseQuery(req.url)));
    res.json({ entries: page.entries.filter((e) => !e.deleted).map(listEntryJson), next_after: page.next_after });
  };
}
