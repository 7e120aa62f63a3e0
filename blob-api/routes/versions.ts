/** GET /v1/versions/{key}: every version of a key, oldest first, delete markers included. */
import type { RequestHandler } from 'express';
import { StoreError, STORE_ERRORS } from '../../engine/store/errors.js';
import type { BlobContext } from '../context.js';
import { versionEntryJson } from '../json.js';
import { keyFromPath, VERSIONS_PATH } from '../params.js';

export function listVersions(ctx: BlobContext): RequestHandler {
  return async (req, res) => {
    const key = keyFromPath(req.path, VERSIONS_PATH);
    const versions = await ctx.store.versions(key);
    if (versions.length === 0) throw new StoreError(STORE_ERRORS.NOT_FOUND, `${JSON.stringify(key)} has no versions`);
    res.json({ key, versions: versions.map(versionEntryJson) });
  };
}
