/**
 * Blob keys (DESIGN §11): UTF-8 paths of 1..1024 bytes whose segments are neither empty nor `.`
 * or `..`. One namespace serves the HTTP API and the mount, so a key must also be a path the
 * mount can show: no leading, trailing or double slash (each would be an empty segment), and no
 * NUL or other control character. Keys are only ever data (log records, shard hashes); they never
 * name anything on the host's file system, so nothing here is about escaping a directory.
 */
import { StoreError, STORE_ERRORS } from './errors.js';

export const MAX_KEY_BYTES = 1024;

/** Characters of a key quoted in an error message (keys can be 1 KiB of anything). */
const MAX_QUOTED_CHARS = 80;

// \p{Cc}: C0 controls (NUL included), DEL and C1 controls. \p{Cs} under the u flag matches only a
// lone surrogate (a pair is read as one code point), i.e. a string that has no UTF-8 encoding.
const CONTROL = /\p{Cc}/u;
const LONE_SURROGATE = /\p{Cs}/u;

/** Returns `key` unchanged when it is a valid key; otherwise throws ERR_STORE_BAD_KEY naming the problem. */
export function validateKey(key: string): string {
  if (typeof key !== 'string') throw bad(`a key is a string, not ${typeof key}`);
  if (key.length === 0) throw bad('the key is empty');
  checkCharacters(key, 'key');
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw bad(`key ${quote(key)} is ${bytes} bytes of UTF-8, more than ${MAX_KEY_BYTES}`);
  if (key.startsWith('/')) throw bad(`key ${quote(key)} starts with '/' (keys are relative paths)`);
  if (key.endsWith('/')) throw bad(`key ${quote(key)} ends with '/' (an empty last segment)`);
  for (const segment of key.split('/')) {
    if (segment === '') throw bad(`key ${quote(key)} has an empty segment ('//')`);
    if (segment === '.' || segment === '..') throw bad(`key ${quote(key)} has a '${segment}' segment`);
  }
  return key;
}

/**
 * Returns `prefix` unchanged when it can start a key: empty, or a string of valid characters of at
 * most 1024 bytes (it may end with '/' or stop inside a segment). Throws ERR_STORE_BAD_KEY.
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw bad(`a prefix is a string, not ${typeof prefix}`);
  checkCharacters(prefix, 'prefix');
  const bytes = Buffer.byteLength(prefix, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw bad(`prefix ${quote(prefix)} is ${bytes} bytes of UTF-8, more than ${MAX_KEY_BYTES}`);
  return prefix;
}

function checkCharacters(s: string, what: string): void {
  // Checked before anything quotes the string, so that a message never carries a control character.
  const control = CONTROL.exec(s);
  if (control) {
    const hex = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw bad(`${what} has a control character U+${hex} at index ${control.index}`);
  }
  const surrogate = LONE_SURROGATE.exec(s);
  if (surrogate) throw bad(`${what} is not valid UTF-8: a lone surrogate at index ${surrogate.index}`);
}

function quote(key: string): string {
  return JSON.stringify(key.length > MAX_QUOTED_CHARS ? `${key.slice(0, MAX_QUOTED_CHARS)}...` : key);
}

function bad(message: string): StoreError {
  return new StoreError(STORE_ERRORS.BAD_KEY, message);
}
