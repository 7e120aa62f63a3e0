/**
 * Truncation of a LogStore: truncateAfter(v) removes every entry with version > v, durably (the
 * newer segments are deleted, the one holding v is cut after it), and the LevelDB index and the
 * in-memory positions follow. A v older than the trimmed history empties the log. A base above
 * the cut is removed with it.
 */
import * as fs from 'node:fs';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Hlc } from './hlc.js';
import type { Version } from './version.js';
import type { LogState } from './log-state.js';
import type { LogReader } from './log-reader.js';
import { removeBase } from './base-file.js';
import { ENTRY_HEADER_BYTES, SEGMENT_HEADER_BYTES, writeSegmentHeader } from './entry-format.js';
import * as io from './fs-io.js';
import { Segment } from './segment.js';

export class LogTruncator {
  /**
   * @param settle flushes everything appended and resolves once no flush is in flight (the
   *   write path's; appends are refused meanwhile, so the log then stands still).
   */
  constructor(
    private readonly s: LogState,
    private readonly reader: LogReader,
    private readonly settle: () => Promise<void>,
  ) {}

  async truncateAfter(v: Version): Promise<void> {
    const s = this.s;
    if (v >= s.latestV) return;
    if (s.truncating) throw new TempestError('ERR_PERSIST_BUSY', `log ${s.dir} is already being truncated`);
    s.truncating = true;
    try {
      await this.settle();
      await s.maint.run(() => this.truncateLocked(v));
    } finally {
      s.truncating = false;
    }
  }

  private async truncateLocked(v: Version): Promise<void> {
    const s = this.s;
    if (v >= s.latestV || s.segments.length === 0) return;
    const head = s.segments[0]!;
    if (v < head.prev_version) return this.truncateAll(v);
    if (s.baseV !== null && v < s.baseV) {
      if (head.prev_version >= 0n) {
        throw new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: cannot truncate after version ${v}: below the base (${s.baseV}) and history before ${head.prev_version} was trimmed`);
      }
      await this.dropBase();
    }
    const keep = await this.reader.floorIndexByVersion(v);
    let pos: number;
    let endBytes: number;
    let newV: Version;
    let newTs: Hlc;
    if (keep < s.first) {
      pos = 0;
      endBytes = SEGMENT_HEADER_BYTES;
      newV = head.prev_version;
      newTs = head.prev_timestamp;
    } else {
      const loc = await this.reader.locateIndex(keep);
      assert(loc !== null, 'the kept entry is in the log');
      pos = s.segments.findIndex((x) => x.first_index === loc.seg);
      endBytes = loc.offset + ENTRY_HEADER_BYTES + loc.payload_bytes;
      newV = loc.version;
      newTs = loc.timestamp;
    }
    const newNext = keep + 1 < s.first ? s.first : keep + 1;
    const cutBytes = s.segments.slice(pos).reduce((a, x, k) => a + (k === 0 ? x.written_bytes - endBytes : x.written_bytes), 0);
    s.generation++;
    const removed = s.segments.splice(pos + 1);
    const seg = s.segments[pos]!;
    try {
      await this.cutDurably(removed, null, seg, endBytes, null);
    } finally {
      seg.written_bytes = seg.end_bytes = endBytes;
      seg.end_index = newNext;
      seg.pinned = true;
      s.nextIndex = newNext;
      s.latestV = s.persistedV = newV;
      s.latestTs = newTs;
      s.persistedEnd = newNext;
      s.active.first_index = s.active.end_index = newNext;
      s.tail.truncate(newNext);
      s.indexer.truncate(newNext, endBytes);
    }
    await s.index.deleteFrom(newNext, newV + 1n, newTs + 1n);
    const last = await s.index.floorByIndex(newNext - 1);
    if (last !== null && last.index + last.count > newNext) {
      await s.index.putBlocks([{ ...last, count: newNext - last.index, bytes: endBytes - last.offset }]);
    }
    s.log.info({ dir: s.dir, after_version: v.toString(), cut_bytes: cutBytes, next_index: newNext }, 'log truncated');
  }

  /**
   * The durable part of a truncation: deletes the `removed` segments (newest first; `keep` stays on
   * disk under a new Segment), then cuts `seg` to `end_bytes`, after writing `header` at its start
   * when given, and syncs the file and the directory.
   */
  private async cutDurably(removed: Segment[], keep: Segment | null, seg: Segment, end_bytes: number, header: Buffer | null): Promise<void> {
    const s = this.s;
    try {
      for (const r of removed.reverse()) {
        s.fds.retire(r);
        if (r === keep) continue;
        await fs.promises.unlink(r.path).catch((err: unknown) => {
          if (io.errnoCode(err) !== 'ENOENT') throw err;
        });
      }
      const fd = await s.fds.acquire(seg);
      try {
        if (header !== null) await io.pwriteAll(fd, header, 0, header.length, 0);
        await io.ftruncate(fd, end_bytes);
        if (s.durable) await io.fdatasync(fd);
      } finally {
        s.fds.release(seg);
      }
      if (s.durable) await io.fsyncDir(s.dir);
    } catch (err) {
      throw io.ioError(`log ${s.dir}: truncation failed (reopen the log to repair it)`, err);
    }
  }

  /** truncateAfter(v) for v older than the trimmed history: the log restarts empty, after version v. */
  private async truncateAll(v: Version): Promise<void> {
    const s = this.s;
    const head = s.segments[0]!;
    const first = head.first_index;
    s.generation++;
    const removed = s.segments.splice(0);
    const fresh = new Segment(s.dir, first, v, 0n, true);
    // The first segment keeps its name; its header is rewritten (one sector) and the rest cut.
    const hdr = Buffer.alloc(SEGMENT_HEADER_BYTES);
    writeSegmentHeader(hdr, 0, { first_index: first, prev_version: v, prev_timestamp: 0n });
    try {
      await this.cutDurably(removed, head, fresh, SEGMENT_HEADER_BYTES, hdr);
    } finally {
      fresh.written_bytes = fresh.end_bytes = SEGMENT_HEADER_BYTES;
      fresh.end_index = first;
      fresh.pinned = true;
      s.segments = [fresh];
      s.first = s.nextIndex = s.persistedEnd = first;
      s.latestV = s.persistedV = v;
      s.latestTs = 0n;
      s.active.first_index = s.active.end_index = first;
      s.tail.reset(first);
      s.indexer.reset(first);
    }
    await s.index.clearAll();
    if (s.baseV !== null) await this.dropBase();
    s.log.info({ dir: s.dir, after_version: v.toString(), next_index: first }, 'log emptied by truncation below its trimmed history');
  }

  private async dropBase(): Promise<void> {
    const s = this.s;
    s.log.warn({ dir: s.dir, base_version: String(s.baseV) }, 'log base removed by truncation');
    await s.baseChain;
    try {
      await removeBase(s.dir, s.durable);
    } catch (err) {
      throw io.ioError(`log ${s.dir}: cannot remove the base`, err);
    }
    s.baseV = null;
  }
}
