/**
 * Segment files of one log: naming (`seg-<first index, 16 hex digits>.log`, so that names sort in
 * log order), the in-memory record of each segment, and a bounded cache of open file descriptors
 * (reads of old segments open them on demand; an fd in use is never closed under a reader, and a
 * trimmed segment's file stays readable through an fd that is still held).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assert } from '../util/assert.js';
import * as io from './fs-io.js';

const SEGMENT_RE = /^seg-([0-9a-f]{16})\.log$/;

export function segmentFileName(first_index: number): string {
  return `seg-${first_index.toString(16).padStart(16, '0')}.log`;
}

/** First indices of the segment files in `dir`, ascending. */
export async function listSegmentFiles(dir: string): Promise<number[]> {
  const names = await fs.promises.readdir(dir);
  const out: number[] = [];
  for (const n of names) {
    const m = SEGMENT_RE.exec(n);
    if (m) out.push(Number.parseInt(m[1]!, 16));
  }
  return out.sort((a, b) => a - b);
}

export class Segment {
  readonly path: string;
  /** Bytes the file holds (header included); what lies beyond is still in the write buffers. */
  written_bytes = 0;
  /** Where the next entry of this segment goes (written + buffered bytes). */
  end_bytes = 0;
  /** The file exists on disk (a new segment is created by the flush that first writes it). */
  created: boolean;
  /** Its directory entry is durable (the directory was fsynced after the file was created). */
  dir_synced: boolean;
  /** One past the index of the last entry (for the segment being written: the log's next index). */
  end_index: number;
  fd: number | null = null;
  refs = 0;
  opening: Promise<number> | null = null;
  /** The segment being appended to: its fd stays open. */
  pinned = false;
  /** Trimmed or cut: close the fd once the last user releases it. */
  removed = false;
  last_use = 0;

  constructor(
    dir: string,
    readonly first_index: number,
    /** Version and timestamp of the entry before the first one (NO_VERSION / 0n at the log's start). */
    readonly prev_version: bigint,
    readonly prev_timestamp: bigint,
    created: boolean,
  ) {
    this.path = path.join(dir, segmentFileName(first_index));
    this.created = created;
    this.dir_synced = created;
    this.end_index = first_index;
  }
}

/** Open file descriptors of segments, at most `max_open` unpinned ones at rest. */
export class SegmentFds {
  private readonly open = new Set<Segment>();
  private clock = 0;

  constructor(private readonly max_open: number) {
    assert(max_open >= 1, 'at least one open segment file');
  }

  /**
   * An fd for `seg` (opened read-write; created when `create` and the file does not exist yet).
   * Pair with release(). Rejects with the file system's error (ENOENT once a segment is gone).
   */
  async acquire(seg: Segment, create = false): Promise<number> {
    seg.refs++;
    seg.last_use = ++this.clock;
    try {
      if (seg.fd !== null) return seg.fd;
      if (seg.opening === null) {
        seg.opening = (async () => {
          let fd: number;
          if (create && !seg.created) {
            try {
              fd = await io.open(seg.path, 'wx+');
            } catch (err) {
              if (io.errnoCode(err) !== 'EEXIST') throw err;
              fd = await io.open(seg.path, 'r+');
            }
          } else {
            fd = await io.open(seg.path, 'r+');
          }
          seg.fd = fd;
          this.open.add(seg);
          return fd;
        })().finally(() => {
          seg.opening = null;
        });
      }
      return await seg.opening;
    } catch (err) {
      seg.refs--;
      throw err;
    }
  }

  release(seg: Segment): void {
    assert(seg.refs > 0, 'release() pairs with acquire()');
    seg.refs--;
    if (seg.refs === 0 && seg.removed) this.closeQuietly(seg);
    else if (this.open.size > this.max_open) this.evict();
  }

  /** The segment is gone from the log: its fd closes now or when its last user releases it. */
  retire(seg: Segment): void {
    seg.removed = true;
    seg.pinned = false;
    if (seg.refs === 0) this.closeQuietly(seg);
  }

  async closeAll(): Promise<void> {
    const all = [...this.open];
    this.open.clear();
    await Promise.all(all.map(async (s) => {
      const fd = s.fd;
      s.fd = null;
      if (fd !== null) await io.close(fd).catch(() => {});
    }));
  }

  private evict(): void {
    let victim: Segment | null = null;
    for (const s of this.open) {
      if (s.refs === 0 && !s.pinned && s.opening === null && (victim === null || s.last_use < victim.last_use)) victim = s;
    }
    if (victim) this.closeQuietly(victim);
  }

  private closeQuietly(seg: Segment): void {
    const fd = seg.fd;
    if (fd === null) return;
    seg.fd = null;
    this.open.delete(seg);
    io.close(fd).catch(() => {});
  }
}
