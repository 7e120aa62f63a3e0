/**
 * The JSON shapes of the API. Versions are decimal strings (64-bit, beyond a JSON number's exact
 * range), timestamps ISO 8601 with microseconds (formatHlc, accepted back by `?at=`), and `etag`
 * the bare sha256 hex: the ETag header and If-Match carry it in quotes, `"<etag>"`.
 */
import { formatHlc } from '../engine/store/time.js';
import type { BlobSummary } from '../engine/store/types.js';

/** For app.set('json replacer'): bigints (cluster view ids, versions) as decimal strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The reply to a PUT or POST. */
export function writtenJson(v: BlobSummary) {
  return { key: v.key, version: v.version.toString(), timestamp: formatHlc(v.timestamp), size: v.size, etag: v.sha256 };
}

/** The reply to a DELETE: the delete marker written. */
export function deletedJson(v: BlobSummary) {
  return { key: v.key, version: v.version.toString(), timestamp: formatHlc(v.timestamp), delete_marker: true as const };
}

/** One entry of a listing (delete markers are never listed). */
export function listEntryJson(v: BlobSummary) {
  return { ...writtenJson(v), content_type: v.content_type };
}

/** One entry of a key's version list. */
export function versionEntryJson(v: BlobSummary) {
  return { version: v.version.toString(), timestamp: formatHlc(v.timestamp), size: v.size, etag: v.deleted ? null : v.sha256, delete_marker: v.deleted };
}

/** The data of one watch event. */
export function eventJson(v: BlobSummary) {
  return { key: v.key, ...versionEntryJson(v), content_type: v.content_type };
}
