/**
 * GET /v1/blobs?prefix=&at=&limit=&after=&delimiter=: the live keys under a prefix, as of now or of
 * `at`, in key order, a page at a time (`next_after` is the `after` of the next page, null on the
 * last). Delete markers are never listed. With `delimiter` (one character, usually `/`), keys with
 * it past the prefix are rolled up into `prefixes`, S3 style: one directory level.
 */
import type { RequestHandler } from 'express';
import type { BlobContext } from '../context.js';
import { listEntryJson } from '../json.js';
import { listQueryOf, parseQuery } from '../params.js';

export function listBlobs(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const q = listQueryOf(parseQuery(req.url));
    const page = await ctx.store.list(q);
    res.json({ entries: page.entries.filter((e) => !e.deleted).map(listEntryJson), ...(q.delimiter !== undefined ? { prefixes: page.prefixes } : {}), next_after: page.next_after });
  };
}
