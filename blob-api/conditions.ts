/**
 * Conditional requests (RFC 9110 §13) over strong ETags `"<sha256>"`:
 * - reads: If-None-Match (weak comparison) -> 304, If-Range (strong) decides whether Range holds;
 * - writes: `If-None-Match: *` creates only, `If-Match` compares and swaps.
 *
 * The store takes one etag to match (PutOptions.if_match). `If-Match: *` and a list of several
 * tags are checked here against the current version and then passed on as that version's own etag,
 * so the write still happens only if nothing changed in between; a change in that gap gives a
 * (safe, retryable) 412 even where the new version would also have matched.
 */
import { isStoreError, StoreError, STORE_ERRORS } from '../engine/store/errors.js';
import type { BlobVersion, StoreClient } from '../engine/store/types.js';
import { badRequest } from './errors.js';

export interface EntityTag {
  tag: string;
  weak: boolean;
}

// One list element, after any empty ones: an optionally weak quoted tag, or (leniently) a bare
// token, then a comma or the end.
const ELEMENT = /[\s,]*(W\/)?(?:"([^"]*)"|([^",\s]+))\s*(?:,|$)/y;

/** `*`, or the tags of an If-Match / If-None-Match list. Throws 400 on a malformed list. */
export function parseEntityTags(header: string, name: string): '*' | EntityTag[] {
  if (header.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  ELEMENT.lastIndex = 0;
  while (ELEMENT.lastIndex < header.length) {
    const at = ELEMENT.lastIndex;
    const m = ELEMENT.exec(header);
    if (!m) {
      // Empty list elements (`a, , b`) are allowed; anything else is not.
      if (/^[\s,]*$/.test(header.slice(at))) break;
      throw badRequest(`${name} is not a list of entity tags: ${JSON.stringify(header.slice(0, 200))}`);
    }
    tags.push({ tag: m[2] ?? m[3]!, weak: m[1] !== undefined });
  }
  if (tags.length === 0) throw badRequest(`${name} is empty`);
  return tags;
}

/** If-None-Match on a read: true when the client's copy is current (answer 304). */
export function noneMatchHolds(header: string | undefined, sha256: string): boolean {
  if (header === undefined) return false;
  const tags = parseEntityTags(header, 'If-None-Match');
  return tags === '*' || tags.some((t) => t.tag === sha256);
}

/**
 * If-Range: true when a Range may be honoured: the tag matches strongly, or the date equals
 * Last-Modified to the second. Otherwise the whole blob is sent (the client's part is stale).
 */
export function ifRangeHolds(header: string | undefined, sha256: string, last_modified_ms: number): boolean {
  if (header === undefined) return true;
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tags = parseEntityTags(value, 'If-Range');
    return tags !== '*' && tags.length === 1 && !tags[0]!.weak && tags[0]!.tag === sha256;
  }
  const date_ms = Date.parse(value);
  return Number.isFinite(date_ms) && Math.floor(date_ms / 1000) === Math.floor(last_modified_ms / 1000);
}

export interface WriteConditions {
  if_match?: string;
  if_none_match_any?: boolean;
}

/** The store conditions of a PUT, POST or DELETE from its If-Match / If-None-Match headers. */
export async function writeConditions(store: StoreClient, key: string, headers: { 'if-match'?: string; 'if-none-match'?: string }): Promise<WriteConditions> {
  const out: WriteConditions = {};
  const noneMatch = headers['if-none-match'];
  if (noneMatch !== undefined) {
    // S3 does the same: "create only" is what a writer needs; a list of tags would be a read-side test.
    if (noneMatch.trim() !== '*') throw badRequest('If-None-Match on a write supports only *');
    out.if_none_match_any = true;
  }
  const match = headers['if-match'];
  if (match !== undefined) out.if_match = await etagToMatch(store, key, parseEntityTags(match, 'If-Match'));
  return out;
}

async function etagToMatch(store: StoreClient, key: string, tags: '*' | EntityTag[]): Promise<string> {
  if (tags !== '*' && tags.length === 1) {
    // Strong comparison: a weak tag never matches.
    if (tags[0]!.weak) throw failed(key, 'a weak entity tag never matches If-Match');
    return tags[0]!.tag;
  }
  const current = await currentLive(store, key);
  if (current === null) throw failed(key, 'it has no live version');
  if (tags !== '*' && !tags.some((t) => !t.weak && t.tag === current.sha256)) throw failed(key, 'its current etag is not in the list');
  return current.sha256;
}

async function currentLive(store: StoreClient, key: string): Promise<BlobVersion | null> {
  try {
    const v = await store.head(key, { kind: 'current' });
    return v.deleted ? null : v;
  } catch (err) {
    if (isStoreError(err, STORE_ERRORS.NOT_FOUND)) return null;
    throw err;
  }
}

function failed(key: string, why: string): StoreError {
  return new StoreError(STORE_ERRORS.PRECONDITION, `If-Match failed for ${JSON.stringify(key)}: ${why}`);
}
