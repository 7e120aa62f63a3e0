/**
 * Mount paths to what they name. The live tree maps `/a/b` to key `a/b`; history is read-only:
 *   /.snapshot                  the named snapshots (hidden from the root listing)
 *   /.snapshot/<time|name>/...  the whole tree at a time, or at a named snapshot's moment
 *   /a/b@<time>                 one file as it was (resolved only when no live `a/b@<time>` exists)
 * Names of snapshots are keys `.snapshot/<name>` (fs/snapshots.ts), so every mount and the HTTP
 * API see the same ones.
 */
import { ERRNO, fsError } from './errno.js';

export const SNAPSHOT_DIR = '.snapshot';
/** Longest key (DESIGN §11); longer paths are ENAMETOOLONG, not a store error. */
const MAX_KEY_BYTES = 1024;

export type MountPath =
  /** `/` */
  | { kind: 'root' }
  /** A key of the live tree. */
  | { kind: 'live'; key: string }
  /** `/.snapshot` itself. */
  | { kind: 'snapshots' }
  /** `/.snapshot/<which>` (key '') or below it. */
  | { kind: 'snapshot'; which: string; key: string };

/** Parses a path fuse hands over (always absolute, no `.` or `..` segments, no trailing slash). */
export function parseMountPath(path: string): MountPath {
  if (path === '/') return { kind: 'root' };
  const rest = path.slice(1);
  if (rest === SNAPSHOT_DIR) return { kind: 'snapshots' };
  if (rest.startsWith(`${SNAPSHOT_DIR}/`)) {
    const tail = rest.slice(SNAPSHOT_DIR.length + 1);
    const slash = tail.indexOf('/');
    const which = slash < 0 ? tail : tail.slice(0, slash);
    const key = slash < 0 ? '' : tail.slice(slash + 1);
    checkLength(key);
    return { kind: 'snapshot', which, key };
  }
  checkLength(rest);
  return { kind: 'live', key: rest };
}

function checkLength(key: string): void {
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw fsError(ERRNO.ENAMETOOLONG, `a path of more than ${MAX_KEY_BYTES} bytes`);
}

/** The key's parent directory key ('' for the root) and its last segment. */
export function splitKey(key: string): { parent: string; name: string } {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? { parent: '', name: key } : { parent: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The listing prefix of a directory key ('' for the root). */
export function dirPrefix(dirKey: string): string {
  return dirKey === '' ? '' : `${dirKey}/`;
}

/** For `name@<time>`: the name and the time text, split at the last `@`; null without one. */
export function splitAtTime(key: string): { key: string; time: string } | null {
  const { parent, name } = splitKey(key);
  const at = name.lastIndexOf('@');
  if (at <= 0 || at === name.length - 1) return null;
  const base = name.slice(0, at);
  return { key: parent === '' ? base : `${parent}/${base}`, time: name.slice(at + 1) };
}
