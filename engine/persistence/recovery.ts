/**
 * Opening a log directory after a clean close or a crash. The segments are the truth; the
 * LevelDB index is trusted up to its last block, which is checked against the segment:
 *   1. read every segment's header; a damaged header ends the log there;
 *   2. find the last indexed block and verify its entries by checksum (if they do not match,
 *      distrust the index from the start of that block's segment);
 *   3. scan and verify everything after it: the first torn or corrupt entry, or a segment that
 *      does not continue the previous one, is CUT (file truncated there, later segments
 *      deleted, a warning says how many bytes), durably;
 *   4. re-index the scanned entries and delete index keys the segments do not back (after the
 *      cut, and below the oldest retained entry, left over from an interrupted trim).
 */
import * as fs from 'node:fs';
import type { Logger } from '../util/log.js';
import { NO_VERSION } from './version.js';
import { ENTRY_HEADER_BYTES, newEntryHeader, readSegmentHeader, SEGMENT_HEADER_BYTES } from './entry-format.js';
import * as io from './fs-io.js';
import type { BlockLocation, LogIndex } from './log-index.js';
import { listSegmentFiles, Segment, type SegmentFds } from './segment.js';
import { SegmentScanner } from './segment-scanner.js';
import type { TailIndex } from './tail-index.js';

export interface RecoveryOptions {
  dir: string;
  durable: boolean;
  index_stride: number;
  index_block_bytes: number;
  log: Logger;
}

export interface RecoveredState {
  segments: Segment[];
  next_index: number;
  first_index: number;
  latest_version: bigint;
  latest_timestamp: bigint;
  cut_bytes: number;
  reindexed_entries: number;
}

const REINDEX_BATCH_BLOCKS = 4096;

/** Cuts blocks of entries as the log does when appending (by count and bytes, never across segments). */
export class BlockCutter {
  current: BlockLocation | null = null;

  constructor(private readonly stride: number, private readonly block_bytes: number) {}

  /** Adds an entry; returns the block it starts, or null when it joined the current one. */
  add(index: number, version: bigint, timestamp: bigint, seg: number, offset: number, bytes: number): BlockLocation | null {
    const c = this.current;
    if (c !== null && c.seg === seg && c.count < this.stride && c.bytes < this.block_bytes && c.index + c.count === index) {
      c.count++;
      c.bytes += bytes;
      return null;
    }
    this.current = { index, version, timestamp, seg, offset, bytes, count: 1 };
    return this.current;
  }
}

export async function recover(opts: RecoveryOptions, index: LogIndex, fds: SegmentFds, tail: TailIndex): Promise<RecoveredState> {
  const { dir, log } = opts;
  await fs.promises.rm(`${dir}/base.tmp`, { force: true });
  const names = await listSegmentFiles(dir);
  const segments: Segment[] = [];
  let cut_bytes = 0;
  const sizes = new Map<Segment, number>();

  // 1. Segment headers.
  let fallback_next = 0;
  for (const [k, first] of names.entries()) {
    const file = new Segment(dir, first, NO_VERSION, 0n, true).path;
    const fd = await io.open(file, 'r');
    let size: number;
    let header: ReturnType<typeof readSegmentHeader>;
    try {
      size = await io.fstatSize(fd);
      const head = Buffer.alloc(SEGMENT_HEADER_BYTES);
      await io.pread(fd, head, 0, SEGMENT_HEADER_BYTES, 0);
      header = readSegmentHeader(head);
    } finally {
      await io.close(fd);
    }
    if (header === null || header.first_index !== first) {
      // Written with its first entries, so no acknowledged entry is lost with it.
      if (k === 0) fallback_next = first;
      for (const later of names.slice(k)) {
        const path = new Segment(dir, later, NO_VERSION, 0n, true).path;
        cut_bytes += (await fs.promises.stat(path)).size;
        await fs.promises.unlink(path);
      }
      if (opts.durable) await io.fsyncDir(dir);
      break;
    }
    const seg = new Segment(dir, first, header.prev_version, header.prev_timestamp, true);
    segments.push(seg);
    sizes.set(seg, size);
  }

  if (segments.length === 0) {
    await index.clearAll();
    if (cut_bytes > 0) log.warn({ dir, cut_bytes }, 'log recovery cut damaged segment files');
    return { segments, next_index: fallback_next, first_index: fallback_next, latest_version: NO_VERSION, latest_timestamp: 0n, cut_bytes, reindexed_entries: 0 };
  }
  for (let k = 0; k + 1 < segments.length; k++) segments[k]!.end_index = segments[k + 1]!.first_index;

  // 2. Where to start verifying.
  const first = segments[0]!;
  let pos = 0;
  let offset = SEGMENT_HEADER_BYTES;
  let expect = first.first_index;
  let lastVersion = first.prev_version;
  let lastTs = first.prev_timestamp;
  const h = newEntryHeader();
  const last = await index.last();
  const p = last === null ? -1 : segments.findIndex((s) => s.first_index === last.seg);
  if (last !== null && p >= 0 && last.index >= first.first_index) {
    const seg = segments[p]!;
    pos = p;
    expect = seg.first_index;
    lastVersion = seg.prev_version;
    lastTs = seg.prev_timestamp;
    const limit = sizes.get(seg)!;
    const fd = await fds.acquire(seg);
    try {
      const sc = new SegmentScanner(fd, last.offset, limit, Math.max(last.bytes, ENTRY_HEADER_BYTES));
      let n = 0;
      let ok = last.count > 0 && last.offset + last.bytes <= limit;
      let v = NO_VERSION;
      let t = 0n;
      while (ok && n < last.count) {
        const r = await sc.next(h);
        if (r === null || h.index !== last.index + n || (n === 0 && (h.version !== last.version || h.timestamp !== last.timestamp))) ok = false;
        else {
          v = h.version;
          t = h.timestamp;
          n++;
        }
      }
      if (ok && sc.offset === last.offset + last.bytes) {
        offset = sc.offset;
        expect = last.index + last.count;
        lastVersion = v;
        lastTs = t;
      }
    } finally {
      fds.release(seg);
    }
  } else {
    await index.clearAll();
  }
  await index.deleteFrom(expect, lastVersion + 1n, lastTs + 1n);

  // 3. Verify (and index) everything after it.
  const startPos = pos;
  tail.reset(expect);
  const cutter = new BlockCutter(opts.index_stride, opts.index_block_bytes);
  let pending: BlockLocation[] = [];
  let reindexed = 0;
  const flushBlocks = async (all: boolean): Promise<void> => {
    // The current block may still grow: keep it back unless the scan is over.
    const ready = all ? pending : pending.filter((b) => b !== cutter.current);
    if (ready.length === 0) return;
    await index.putBlocks(ready);
    pending = all ? [] : pending.filter((b) => b === cutter.current);
  };
  const ALL = Number.MAX_SAFE_INTEGER;
  let cutAt: { pos: number; offset: number } | null = null;
  for (; pos < segments.length; pos++, offset = SEGMENT_HEADER_BYTES) {
    const seg = segments[pos]!;
    if (pos > startPos && (seg.first_index !== expect || seg.prev_version !== lastVersion || seg.prev_timestamp !== lastTs)) {
      cutAt = { pos, offset: 0 };
      break;
    }
    const limit = sizes.get(seg)!;
    const fd = await fds.acquire(seg);
    try {
      const sc = new SegmentScanner(fd, offset, limit);
      for (;;) {
        const at = sc.offset;
        const r = await sc.next(h);
        if (r === null) {
          if (sc.status !== 'end') cutAt = { pos, offset: sc.offset };
          break;
        }
        if (h.index !== expect || h.version <= lastVersion || h.timestamp <= lastTs) {
          cutAt = { pos, offset: at };
          break;
        }
        tail.push(expect, h.version, h.timestamp, seg.first_index, at, h.payload_bytes, ALL, ALL);
        const started = cutter.add(expect, h.version, h.timestamp, seg.first_index, at, ENTRY_HEADER_BYTES + h.payload_bytes);
        if (started !== null) {
          pending.push(started);
          if (pending.length >= REINDEX_BATCH_BLOCKS) await flushBlocks(false);
        }
        reindexed++;
        expect++;
        lastVersion = h.version;
        lastTs = h.timestamp;
      }
    } finally {
      fds.release(seg);
    }
    if (cutAt !== null) break;
    seg.end_index = expect;
  }
  await flushBlocks(true);

  if (cutAt !== null) {
    const seg = segments[cutAt.pos]!;
    const removed = segments.splice(cutAt.offset === 0 ? cutAt.pos : cutAt.pos + 1);
    if (cutAt.offset > 0) {
      cut_bytes += sizes.get(seg)! - cutAt.offset;
      sizes.set(seg, cutAt.offset);
      const fd = await fds.acquire(seg);
      try {
        await io.ftruncate(fd, cutAt.offset);
        if (opts.durable) await io.fdatasync(fd);
      } finally {
        fds.release(seg);
      }
      seg.end_index = expect;
    }
    for (const r of removed.reverse()) {
      cut_bytes += sizes.get(r)!;
      fds.retire(r);
      await fs.promises.unlink(r.path);
    }
    if (opts.durable) await io.fsyncDir(dir);
    await index.deleteFrom(expect, lastVersion + 1n, lastTs + 1n);
    log.warn({ dir, cut_bytes, next_index: expect }, 'log recovery cut a torn or corrupt tail');
  } else if (cut_bytes > 0) {
    log.warn({ dir, cut_bytes }, 'log recovery cut damaged segment files');
  }

  if (segments.length === 0) {
    // The only segment did not continue the (trimmed) history: nothing is left.
    return { segments, next_index: expect, first_index: expect, latest_version: lastVersion, latest_timestamp: lastTs, cut_bytes, reindexed_entries: reindexed };
  }
  const head = segments[0]!;
  await index.deleteBelow(head.first_index, head.prev_version, head.prev_timestamp);
  for (const s of segments) s.written_bytes = s.end_bytes = sizes.get(s)!;
  const tailSeg = segments[segments.length - 1]!;
  tailSeg.end_index = expect;
  tailSeg.pinned = true;
  return { segments, next_index: expect, first_index: head.first_index, latest_version: lastVersion, latest_timestamp: lastTs, cut_bytes, reindexed_entries: reindexed };
}
