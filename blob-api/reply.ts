/** Headers and replies shared by the blob routes. */
import type { Response } from 'express';
import { STORE_ERRORS } from '../engine/store/errors.js';
import { formatHlc, hlcToMs } from '../engine/store/time.js';
import type { BlobSummary } from '../engine/store/types.js';
import { writtenJson } from './json.js';
import { BLOBS_PATH } from './params.js';

const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
// What Node lets through setHeader; a stored type outside it (it came from a form part) is not sent.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** x-tempest-version and x-tempest-timestamp, on every reply about one version. */
export function setVersionHeaders(res: Response, v: BlobSummary): void {
  res.setHeader('x-tempest-version', v.version.toString());
  res.setHeader('x-tempest-timestamp', formatHlc(v.timestamp));
}

/** The validators and type of a blob version (GET, HEAD, 304). */
export function setBlobHeaders(res: Response, v: BlobSummary): void {
  setVersionHeaders(res, v);
  res.setHeader('etag', `"${v.sha256}"`);
  res.setHeader('last-modified', new Date(Math.floor(hlcToMs(v.timestamp))).toUTCString());
  res.setHeader('accept-ranges', 'bytes');
  res.setHeader('content-type', v.content_type !== '' && HEADER_VALUE.test(v.content_type) ? v.content_type : DEFAULT_CONTENT_TYPE);
}

/** 201 for a new version: its JSON, its ETag and where to read it. */
export function sendCreated(res: Response, v: BlobSummary): void {
  setVersionHeaders(res, v);
  res.setHeader('etag', `"${v.sha256}"`);
  res.setHeader('location', BLOBS_PATH + v.key.split('/').map(encodeURIComponent).join('/'));
  res.status(201).json(writtenJson(v));
}

/** 404 for a key whose version at that point is a delete marker. */
export function sendDeleteMarker(res: Response, v: BlobSummary): void {
  setVersionHeaders(res, v);
  res.setHeader('x-tempest-delete-marker', 'true');
  res.status(404).json({ error: STORE_ERRORS.NOT_FOUND, message: `${JSON.stringify(v.key)} is deleted at that point (a delete marker)` });
}
