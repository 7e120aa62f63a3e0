/**
 * File attributes: from a version's metadata (set by the mount), else defaults for plain blobs
 * written over HTTP (a regular file, 0644, mtime = the version's time). ctime is always the
 * version's time: every change, data or metadata, is a new version.
 */
import type { Stat } from 'fuse-native';
import { hlcToMs } from '../engine/store/time.js';
import type { BlobSummary, FileMeta } from '../engine/store/types.js';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
const DEFAULT_FILE_MODE = S_IFREG | 0o644;
const DEFAULT_DIR_MODE = S_IFDIR | 0o755;
/** st_blocks counts 512-byte units whatever the block size. */
const STAT_BLOCK_BYTES = 512;
export const BLOCK_SIZE_BYTES = 4096;

export type Kind = 'file' | 'dir' | 'symlink';

export function kindOfMode(mode: number): Kind {
  const t = mode & S_IFMT;
  return t === S_IFDIR ? 'dir' : t === S_IFLNK ? 'symlink' : 'file';
}

export function kindOf(v: { meta: FileMeta | null }): Kind {
  return v.meta === null ? 'file' : kindOfMode(v.meta.mode);
}

export interface Owner {
  uid: number;
  gid: number;
}

export function stat(mode: number, size: number, mtime_ms: number, ctime_ms: number, owner: Owner): Stat {
  return {
    mode,
    uid: owner.uid,
    gid: owner.gid,
    size,
    nlink: (mode & S_IFMT) === S_IFDIR ? 2 : 1,
    blksize: BLOCK_SIZE_BYTES,
    blocks: Math.ceil(size / STAT_BLOCK_BYTES),
    atime: new Date(mtime_ms),
    mtime: new Date(mtime_ms),
    ctime: new Date(ctime_ms),
  };
}

/** The attributes of a version (a file, a directory marker or a symlink). */
export function statOfVersion(v: BlobSummary, owner: Owner): Stat {
  const ctime = hlcToMs(v.timestamp);
  const m = v.meta;
  if (m === null) return stat(DEFAULT_FILE_MODE, v.size, ctime, ctime, owner);
  return stat(m.mode, kindOfMode(m.mode) === 'dir' ? BLOCK_SIZE_BYTES : v.size, m.mtime_ms, m.ctime_ms, { uid: m.uid, gid: m.gid });
}

/** A directory that exists only because keys are under it (or the root, or a snapshot). */
export function statOfImpliedDir(mtime_ms: number, owner: Owner): Stat {
  return stat(DEFAULT_DIR_MODE, BLOCK_SIZE_BYTES, mtime_ms, mtime_ms, owner);
}

export function withoutWrite(s: Stat): Stat {
  return { ...s, mode: s.mode & ~0o222 };
}
