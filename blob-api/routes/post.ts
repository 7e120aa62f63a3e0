/**
 * POST /v1/blobs/{key}: a multipart/form-data upload (browsers, `curl -F file=@photo.jpg`). The
 * part named `file` becomes the new version, streamed into the store (multipart-storage.ts); its
 * Content-Type is recorded. Fields `content-md5` and `x-checksum-sha256` sent before the file part
 * are its checksums, as are the x-checksum-sha256 and If-Match / If-None-Match headers. Content-MD5
 * as a header is not used: it would be the digest of the whole form, not of the file.
 */
import type { Request, RequestHandler, Response } from 'express';
import multer from 'multer';
import { StoreError, STORE_ERRORS } from '../../engine/store/errors.js';
import { isTempestError } from '../../engine/util/errors.js';
import { writeConditions } from '../conditions.js';
import type { BlobContext } from '../context.js';
import { sendContinue } from '../continue.js';
import { HTTP_ERRORS, HttpError } from '../errors.js';
import { StoreStorage } from '../multipart-storage.js';
import { BLOBS_PATH, contentLengthOf, keyFromPath } from '../params.js';
import { sendCreated } from '../reply.js';

export const FILE_FIELD = 'file';

// Small limits for everything but the file: a form here is a file and a few checksums.
const MAX_FIELDS = 16;
const MAX_FIELD_BYTES = 16 * 1024;
const MAX_FIELD_NAME_BYTES = 100;
const MAX_PARTS = MAX_FIELDS + 1;
const MAX_HEADER_PAIRS = 32;
/** busboy's limit on the headers of one part. */
const MAX_PART_HEADER_BYTES = 16 * 1024;
/** The most a valid form can carry besides its file: a body announced longer is refused unread. */
const MAX_FORM_OVERHEAD_BYTES = MAX_FIELDS * (MAX_FIELD_BYTES + MAX_FIELD_NAME_BYTES) + MAX_PARTS * (MAX_PART_HEADER_BYTES + 200);

export function postBlob(ctx: BlobContext): RequestHandler {
  const storage = new StoreStorage(ctx.store, ctx.metrics.received);
  const upload = multer({
    storage,
    limits: {
      fileSize: ctx.max_blob_size_bytes,
      files: 1,
      fields: MAX_FIELDS,
      fieldSize: MAX_FIELD_BYTES,
      fieldNameSize: MAX_FIELD_NAME_BYTES,
      parts: MAX_PARTS,
      headerPairs: MAX_HEADER_PAIRS,
    },
  }).single(FILE_FIELD);

  return async (req, res) => {
    const key = keyFromPath(req.path, BLOBS_PATH);
    const length = contentLengthOf(req);
    if (length !== undefined && length > ctx.max_blob_size_bytes + MAX_FORM_OVERHEAD_BYTES) {
      throw new StoreError(STORE_ERRORS.TOO_LARGE, `Content-Length ${length} is more than a form with a file of at most ${ctx.max_blob_size_bytes} bytes can be`);
    }
    const conditions = await writeConditions(ctx.store, key, req.headers);
    storage.plan(req, {
      key,
      options: { ...conditions, max_size: ctx.max_blob_size_bytes, sha256: req.headers['x-checksum-sha256'] as string | undefined },
    });
    // Whatever happens, a put still waiting for the form's end is settled when the exchange ends.
    res.once('close', () => storage.discard(req));
    sendContinue(req, res);
    await readForm(upload, req, res);
    if (!storage.has(req)) {
      throw new HttpError(400, HTTP_ERRORS.MULTIPART, `a POST needs a multipart/form-data body with a file part named "${FILE_FIELD}" (or PUT the raw bytes)`);
    }
    sendCreated(res, await storage.commit(req));
  };
}

/** Runs multer; its own and busboy's errors (a malformed form) become 400s, the store's stay as they are. */
function readForm(upload: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    upload(req, res, (err?: unknown) => {
      if (err === undefined || err === null) resolve();
      else if (err instanceof multer.MulterError || isTempestError(err)) reject(err);
      else if (req.socket.destroyed) reject(new StoreError(STORE_ERRORS.ABORTED, 'the client went away during the upload', false, { cause: err }));
      else reject(new HttpError(400, HTTP_ERRORS.MULTIPART, `malformed multipart body: ${(err as Error).message ?? String(err)}`, {}, { cause: err }));
    });
  });
}
