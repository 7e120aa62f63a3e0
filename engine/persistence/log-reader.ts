/**
 * The read paths of a LogStore: by index, by version, by time, the newest entry, and in-order
 * iteration. Reads of recent entries come from the tail index (and the write buffers for entries
 * not yet written); older ones from the LevelDB block index plus one positioned read or a checked
 * scan. Nothing here changes the log.
 */
import * as path from 'node:path';
import { TempestError } from '../util/errors.js';
import type { Hlc } from './hlc.js';
import type { Version } from './version.js';
import type { LogEntry } from './log.js';
import type { LogState } from './log-state.js';
import { checkEntry, EntryCheck, ENTRY_HEADER_BYTES, newEntryHeader, SEGMENT_HEADER_BYTES } from './entry-format.js';
import * as io from './fs-io.js';
import type { Segment } from './segment.js';
import { SegmentScanner } from './segment-scanner.js';

const MiB = 1 << 20;
const COLD_CHUNK_BYTES = 64 * 1024;

/**
 * An entry's payload out of a scanned chunk (a fresh buffer of the scanner's): a view when the
 * payload is most of it, else a copy, so that a small entry kept by the caller does not pin a
 * 64 KiB chunk.
 */
function payloadOf(chunk: Buffer, start: number, bytes: number): Buffer {
  const view = chunk.subarray(start, start + bytes);
  return bytes * 2 >= chunk.length ? view : Buffer.from(view);
}
const ITER_CHUNK_BYTES = MiB;

/** Where an entry is, and what its header says. */
export interface Located {
  index: number;
  version: bigint;
  timestamp: bigint;
  seg: number;
  offset: number;
  payload_bytes: number;
}

type Key = 'index' | 'version' | 'time';

export class LogReader {
  constructor(private readonly s: LogState) {}

  async getByIndex(i: number): Promise<LogEntry | undefined> {
    const s = this.s;
    if (!Number.isSafeInteger(i) || i < s.first || i >= s.nextIndex) return undefined;
    if (s.tail.has(i)) return this.readTail(i);
    return this.readCold('index', BigInt(i), true);
  }

  async getByVersion(v: Version): Promise<LogEntry | undefined> {
    const s = this.s;
    if (v < 0n || v > s.latestV || s.nextIndex === s.first) return undefined;
    if (s.tail.size > 0 && v >= s.tail.version(s.tail.start)) {
      const i = s.tail.floorByVersion(v);
      if (i < s.first || s.tail.version(i) !== v) return undefined;
      return this.readTail(i);
    }
    return this.readCold('version', v, true);
  }

  async getAtVersion(v: Version): Promise<LogEntry | undefined> {
    const s = this.s;
    if (v < 0n || s.nextIndex === s.first) return undefined;
    if (v >= s.latestV) return this.readTail(s.nextIndex - 1);
    if (s.tail.size > 0 && v >= s.tail.version(s.tail.start)) {
      const i = s.tail.floorByVersion(v);
      return i < s.first ? undefined : this.readTail(i);
    }
    return this.readCold('version', v, false);
  }

  async getByTime(t: Hlc): Promise<LogEntry | undefined> {
    const s = this.s;
    if (t < 0n || s.nextIndex === s.first) return undefined;
    if (t >= s.latestTs) return this.readTail(s.nextIndex - 1);
    if (s.tail.size > 0 && t >= s.tail.timestamp(s.tail.start)) {
      const i = s.tail.floorByTime(t);
      return i < s.first ? undefined : this.readTail(i);
    }
    return this.readCold('time', t, false);
  }

  latest(): Promise<LogEntry | undefined> {
    return this.getByIndex(this.s.nextIndex - 1);
  }

  /** Reads entry i, which the tail index holds: from a write buffer, or with one positioned read. */
  private async readTail(i: number): Promise<LogEntry | undefined> {
    const tail = this.s.tail;
    if (!tail.has(i)) return this.getByIndex(i);
    const loc: Located = {
      index: i,
      version: tail.version(i),
      timestamp: tail.timestamp(i),
      seg: tail.seg(i),
      offset: tail.offset(i),
      payload_bytes: tail.payloadBytes(i),
    };
    return this.readLocated(loc);
  }

  private async readLocated(loc: Located): Promise<LogEntry | undefined> {
    const s = this.s;
    const seg = this.segmentOf(loc.seg);
    if (seg === undefined) return undefined;
    for (const b of [s.active, s.inflight]) {
      if (b === null) continue;
      const at = b.locate(seg, loc.offset);
      if (at >= 0) {
        const start = at + ENTRY_HEADER_BYTES;
        return { version: loc.version, timestamp: loc.timestamp, index: loc.index, payload: Buffer.from(b.buf.subarray(start, start + loc.payload_bytes)) };
      }
    }
    const gen = s.generation;
    const size = ENTRY_HEADER_BYTES + loc.payload_bytes;
    const buf = Buffer.allocUnsafe(size);
    let n: number;
    try {
      const fd = await s.fds.acquire(seg);
      try {
        n = await io.pread(fd, buf, 0, size, loc.offset);
      } finally {
        s.fds.release(seg);
      }
    } catch (err) {
      if (io.errnoCode(err) === 'ENOENT') return undefined; // trimmed meanwhile
      throw io.ioError(`log ${s.dir}: cannot read entry ${loc.index}`, err);
    }
    const h = newEntryHeader();
    if (n !== size || checkEntry(buf, 0, h) !== EntryCheck.Ok || h.index !== loc.index || h.version !== loc.version) {
      if (gen !== s.generation || loc.index < s.first || loc.index >= s.nextIndex) return undefined;
      throw new TempestError('ERR_PERSIST_CORRUPT', `log ${s.dir}: entry ${loc.index} in ${path.basename(seg.path)} at ${loc.offset} is damaged`);
    }
    return { version: h.version, timestamp: h.timestamp, index: h.index, payload: buf.subarray(ENTRY_HEADER_BYTES) };
  }

  private segmentOf(first_index: number): Segment | undefined {
    const segs = this.s.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const f = segs[mid]!.first_index;
      if (f === first_index) return segs[mid];
      if (f < first_index) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /**
   * Entries older than the tail index: floor seek in the LevelDB index, then a checked scan of the
   * segment from that block on (one read of ~64 KiB covers a block). The newest entry with
   * key <= `key` (exact: equal to it).
   */
  private async readCold(kind: Key, key: bigint, exact: boolean): Promise<LogEntry | undefined> {
    const found = await this.locateCold(kind, key, exact, true);
    if (found === null) return undefined;
    return { version: found.version, timestamp: found.timestamp, index: found.index, payload: found.payload! };
  }

  private async locateCold(kind: Key, key: bigint, exact: boolean, withPayload: boolean): Promise<(Located & { payload?: Buffer }) | null> {
    const s = this.s;
    await s.indexer.covered(s.tail.start);
    const gen = s.generation;
    const block = kind === 'index' ? await s.index.floorByIndex(Number(key)) : kind === 'version' ? await s.index.floorByVersion(key) : await s.index.floorByTime(key);
    let pos: number;
    let offset: number;
    if (block !== null && block.index >= s.first && this.segmentOf(block.seg) !== undefined) {
      pos = s.segments.indexOf(this.segmentOf(block.seg)!);
      offset = block.offset;
    } else {
      pos = 0;
      offset = SEGMENT_HEADER_BYTES;
    }
    const h = newEntryHeader();
    let cand: (Located & { buf: Buffer; at: number }) | null = null;
    const numKey = Number(key);
    outer: for (; pos < s.segments.length; pos++, offset = SEGMENT_HEADER_BYTES) {
      const seg = s.segments[pos]!;
      let fd: number;
      try {
        fd = await s.fds.acquire(seg);
      } catch (err) {
        if (io.errnoCode(err) === 'ENOENT') return null;
        throw io.ioError(`log ${s.dir}: cannot read ${path.basename(seg.path)}`, err);
      }
      try {
        // The first read covers the whole block when the index gave it (one read, even for a
        // block that is one large entry); later ones go on in COLD_CHUNK_BYTES.
        const first = block !== null && offset === block.offset ? Math.max(COLD_CHUNK_BYTES, block.bytes) : COLD_CHUNK_BYTES;
        const sc = new SegmentScanner(fd, offset, seg.written_bytes, first);
        for (;;) {
          const r = await sc.next(h);
          if (r === null) {
            if (sc.status !== 'end') {
              if (gen !== s.generation) return null;
              throw new TempestError('ERR_PERSIST_CORRUPT', `log ${s.dir}: ${path.basename(seg.path)} is damaged at ${sc.offset}`);
            }
            // Past the written bytes: what follows is in the tail index, newer than the key.
            if (seg.written_bytes < seg.end_bytes) break outer;
            break;
          }
          const beyond = kind === 'index' ? h.index > numKey : kind === 'version' ? h.version > key : h.timestamp > key;
          if (beyond) break outer;
          cand = { index: h.index, version: h.version, timestamp: h.timestamp, seg: seg.first_index, offset: sc.offset - ENTRY_HEADER_BYTES - h.payload_bytes, payload_bytes: h.payload_bytes, buf: r.buf, at: r.at };
          if (exact && (kind === 'index' ? h.index === numKey : kind === 'version' ? h.version === key : h.timestamp === key)) break outer;
        }
      } finally {
        s.fds.release(seg);
      }
    }
    if (cand === null || cand.index < s.first || cand.index >= s.nextIndex) return null;
    if (exact && (kind === 'index' ? cand.index !== numKey : kind === 'version' ? cand.version !== key : cand.timestamp !== key)) return null;
    const start = cand.at + ENTRY_HEADER_BYTES;
    return {
      index: cand.index,
      version: cand.version,
      timestamp: cand.timestamp,
      seg: cand.seg,
      offset: cand.offset,
      payload_bytes: cand.payload_bytes,
      payload: withPayload ? payloadOf(cand.buf, start, cand.payload_bytes) : undefined,
    };
  }

  /** Where entry i is (tail index, else LevelDB + scan); null when it is not in the log. */
  async locateIndex(i: number): Promise<Located | null> {
    const s = this.s;
    if (i < s.first || i >= s.nextIndex) return null;
    if (s.tail.has(i)) {
      return { index: i, version: s.tail.version(i), timestamp: s.tail.timestamp(i), seg: s.tail.seg(i), offset: s.tail.offset(i), payload_bytes: s.tail.payloadBytes(i) };
    }
    return this.locateCold('index', BigInt(i), true, false);
  }

  /** Index of the newest entry with version <= v (first - 1 when v is older than every retained entry). */
  async floorIndexByVersion(v: Version): Promise<number> {
    const s = this.s;
    if (s.nextIndex === s.first || v >= s.latestV) return s.nextIndex - 1;
    if (s.tail.size > 0 && v >= s.tail.version(s.tail.start)) return Math.max(s.tail.floorByVersion(v), s.first - 1);
    const loc = await this.locateCold('version', v, false, false);
    return loc === null ? s.first - 1 : loc.index;
  }

  async *entries(afterVersion: Version, uptoVersion?: Version): AsyncIterable<LogEntry> {
    const s = this.s;
    const endV = uptoVersion === undefined || uptoVersion > s.latestV ? s.latestV : uptoVersion;
    if (s.nextIndex === s.first || endV <= afterVersion) return;
    const head = s.segments[0];
    if (head !== undefined && afterVersion < head.prev_version) {
      throw new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: entries after version ${afterVersion} were trimmed (history starts after ${head.prev_version})`);
    }
    const gen = s.generation;
    const endIndex = s.nextIndex;
    let i = (await this.floorIndexByVersion(afterVersion)) + 1;
    if (i < s.first) i = s.first;
    const h = newEntryHeader();
    const changed = (): boolean => gen !== s.generation;
    let loc: { seg: Segment; offset: number } | null = null;
    while (i < endIndex) {
      if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${s.dir} was truncated during iteration`);
      if (i < s.first) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: entry ${i} was trimmed during iteration`);
      if (loc === null) {
        const l = await this.locateIndex(i);
        const seg = l === null ? undefined : this.segmentOf(l.seg);
        if (l === null || seg === undefined) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: entry ${i} was trimmed during iteration`);
        loc = { seg, offset: l.offset };
      }
      const seg: Segment = loc.seg;
      if (loc.offset < seg.written_bytes) {
        // On disk: scan this segment sequentially, a large chunk per read.
        const fd: number = await s.fds.acquire(seg).catch((err: unknown) => {
          throw io.errnoCode(err) === 'ENOENT' ? new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: entry ${i} was trimmed during iteration`) : io.ioError(`log ${s.dir}: read failed`, err);
        });
        try {
          const sc: SegmentScanner = new SegmentScanner(fd, loc.offset, seg.written_bytes, ITER_CHUNK_BYTES);
          while (i < endIndex) {
            const r = await sc.next(h);
            if (r === null) break;
            if (h.index !== i) {
              if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${s.dir} was truncated during iteration`);
              throw new TempestError('ERR_PERSIST_CORRUPT', `log ${s.dir}: expected entry ${i}, found ${h.index}`);
            }
            if (h.version > endV) return;
            const start = r.at + ENTRY_HEADER_BYTES;
            yield { version: h.version, timestamp: h.timestamp, index: i, payload: Buffer.from(r.buf.subarray(start, start + h.payload_bytes)) };
            i++;
          }
          if (sc.status === 'torn' || sc.status === 'corrupt') {
            if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${s.dir} was truncated during iteration`);
            throw new TempestError('ERR_PERSIST_CORRUPT', `log ${s.dir}: ${path.basename(seg.path)} is damaged at ${sc.offset}`);
          }
          const nextSeg = s.segments[s.segments.indexOf(seg) + 1];
          loc = sc.offset === seg.end_bytes && nextSeg !== undefined && nextSeg.first_index === i ? { seg: nextSeg, offset: SEGMENT_HEADER_BYTES } : null;
        } finally {
          s.fds.release(seg);
        }
      } else {
        // Not written yet (or written after this scan began): from the tail index.
        const e = await this.getByIndex(i);
        if (e === undefined) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${s.dir}: entry ${i} is gone`);
        if (e.version > endV) return;
        yield e;
        i++;
        loc = null;
      }
    }
  }
}
