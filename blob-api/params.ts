/**
 * What a request names, read strictly from the raw URL: the key after `/v1/blobs/` or
 * `/v1/versions/` (percent-decoded exactly once, so `%2F` is a slash inside the key and `%252F`
 * the three characters `%2F`), and query parameters (decoded the same way; malformed -> 400,
 * rather than the silent U+FFFD of URLSearchParams).
 */
import type { IncomingMessage } from 'node:http';
import { StoreError, STORE_ERRORS } from '../engine/store/errors.js';
import { validateKey, validatePrefix } from '../engine/store/key.js';
import { parseTime } from '../engine/store/time.js';
import type { ReadPoint, TimePoint } from '../engine/store/types.js';

export const BLOBS_PATH = '/v1/blobs/';
export const VERSIONS_PATH = '/v1/versions/';

export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIST_LIMIT = 1000;
/** Versions are `(view id << 32) | sequence`: 64 bits, at most 20 decimal digits. */
const VERSION = /^\d{1,20}$/;
const LIMIT = /^\d{1,4}$/;

/** The key of a path under `base` (the path as sent, not yet decoded). Throws ERR_STORE_BAD_KEY. */
export function keyFromPath(path: string, base: string): string {
  const raw = path.slice(base.length);
  if (raw === '') throw new StoreError(STORE_ERRORS.BAD_KEY, `the path names no key after ${base}`);
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new StoreError(STORE_ERRORS.BAD_KEY, `the key in the path is not valid percent-encoded UTF-8: ${JSON.stringify(raw.slice(0, 200))}`);
  }
  return validateKey(key);
}

/** The query parameters of a request URL; a repeated or malformed one is a 400. */
export function parseQuery(url: string): Map<string, string> {
  const params = new Map<string, string>();
  const q = url.indexOf('?');
  if (q < 0) return params;
  for (const part of url.slice(q + 1).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decodeComponent(eq < 0 ? part : part.slice(0, eq), 'a query parameter name');
    const value = decodeComponent(eq < 0 ? '' : part.slice(eq + 1), `query parameter ${name}`);
    if (params.has(name)) throw badArgument(`query parameter ${name} is given twice`);
    params.set(name, value);
  }
  return params;
}

/** `?version=N` or `?at=<time>` (not both), else the current version. */
export function readPointOf(query: Map<string, string>): ReadPoint {
  const version = query.get('version');
  const at = query.get('at');
  if (version !== undefined && at !== undefined) throw badArgument('give ?version= or ?at=, not both');
  if (version !== undefined) {
    if (!VERSION.test(version) || BigInt(version) >= 1n << 64n) throw badArgument(`version ${JSON.stringify(version)} is not a version number (decimal digits)`);
    return { kind: 'version', version: BigInt(version) };
  }
  if (at !== undefined) return { kind: 'at', at: parseTime(at) };
  return { kind: 'current' };
}

export interface ListQuery {
  prefix: string;
  at?: TimePoint;
  after?: string;
  delimiter?: string;
  limit: number;
}

/** `?prefix=&at=&limit=&after=` of a listing. */
export function listQueryOf(query: Map<string, string>): ListQuery {
  const out: ListQuery = { prefix: validatePrefix(query.get('prefix') ?? ''), limit: limitOf(query.get('limit')) };
  const at = query.get('at');
  if (at !== undefined) out.at = parseTime(at);
  // `after` is where the last page stopped: any string a key may start with.
  const after = query.get('after');
  if (after !== undefined && after !== '') out.after = validatePrefix(after);
  // `delimiter=/` lists one directory level: deeper keys come back as common `prefixes`.
  const delimiter = query.get('delimiter');
  if (delimiter !== undefined && delimiter !== '') {
    if (delimiter.length !== 1) throw badArgument(`delimiter ${JSON.stringify(delimiter)} is not one character`);
    out.delimiter = delimiter;
  }
  return out;
}

function limitOf(s: string | undefined): number {
  if (s === undefined) return DEFAULT_LIST_LIMIT;
  const n = LIMIT.test(s) ? Number(s) : NaN;
  if (!(n >= 1 && n <= MAX_LIST_LIMIT)) throw badArgument(`limit ${JSON.stringify(s)} is not an integer 1..${MAX_LIST_LIMIT}`);
  return n;
}

/** The announced body length, or undefined for a chunked body (Node has already checked its syntax). */
export function contentLengthOf(req: IncomingMessage): number | undefined {
  const h = req.headers['content-length'];
  return h === undefined ? undefined : Number(h);
}

function decodeComponent(s: string, what: string): string {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    throw badArgument(`${what} is not valid percent-encoded UTF-8`);
  }
}

function badArgument(message: string): StoreError {
  return new StoreError(STORE_ERRORS.BAD_REQUEST, message);
}
