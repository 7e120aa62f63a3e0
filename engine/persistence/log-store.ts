/**
 * LogStore: one durable, append-only log of versioned entries in a directory (the backing store
 * of Persistent<T>). The write path is built for group commit:
 *   - append() is synchronous and O(payload): it encodes the entry (header + crc32 + payload)
 *     into a reused, growing write buffer and records it in the in-memory tail index; no syscall;
 *   - flush() writes everything appended so far with one positioned write per segment and one
 *     fdatasync; calls made while a flush runs share the next write + fsync; at most one
 *     write/fsync is in flight per log;
 *   - the LevelDB index is updated afterwards, in batches, by a background task the flush never
 *     waits for (see log-index.ts); recovery rebuilds whatever it lacks from the segments.
 * This file holds LogStore itself: its state (a LogState, log-state.ts, created here), open/close,
 * append and the group-commit flush. The other parts work on that same state object: the reads
 * (log-reader.ts: recent entries from the tail index and the write buffers, older ones from the
 * LevelDB block index plus one positioned read), truncation (log-truncator.ts), and retention,
 * which trims whole old segments in the background, with the base (log-retention.ts).
 * File layout: entry-format.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Hlc } from './hlc.js';
import { NO_VERSION, type Version } from './version.js';
import type { Log, LogBase, LogEntry } from './log.js';
import { readBaseVersion } from './base-file.js';
import { ENTRY_HEADER_BYTES, MAX_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES, writeEntry, writeSegmentHeader } from './entry-format.js';
import * as io from './fs-io.js';
import { type Pieces, piecesLength } from '../util/pieces.js';
import { LogIndex } from './log-index.js';
import { LogIndexer } from './log-indexer.js';
import { LogReader } from './log-reader.js';
import { LogRetention } from './log-retention.js';
import type { LogState } from './log-state.js';
import { LogTruncator } from './log-truncator.js';
import { recover } from './recovery.js';
import { Segment, SegmentFds } from './segment.js';
import { TailIndex } from './tail-index.js';
import { WriteBuffer } from './write-buffer.js';
import { deferred, type Deferred, Mutex } from './async-util.js';

export { MemoryLogStore, type MemoryLogStoreOptions } from './memory-log-store.js';
export type { Log, LogEntry, LogBase } from './log.js';

/** Fault injection for tests: return an errno code to make the next write (after writing half of it) or fsync fail. */
export interface IoFaults {
  write?(): string | null;
  fsync?(): string | null;
}

export interface LogStoreOptions {
  dir: string;
  /** fdatasync every flush (else a flush only hands the bytes to the OS). */
  durable: boolean;
  /** Segment files roll over at this size (default 64 MiB). */
  segment_size_bytes?: number;
  /** Keep at least this many newest entries; 0 = no count limit (default). */
  retain_entries?: number;
  /** Keep entries younger than this (by entry timestamp); 0 = no age limit (default). */
  retain_ms?: number;
  /** Delta logs: retention only drops entries with version <= the base's version. */
  requireBase?: boolean;
  log: Logger;
  /** append() refuses (ERR_PERSIST_BACKPRESSURE) beyond this many unwritten bytes (default 256 MiB). */
  max_buffered_bytes?: number;
  /** Entries per LevelDB index block (default 64; 1 = dense index). */
  index_stride?: number;
  /** A new index block starts once a block holds this many bytes (default 64 KiB). */
  index_block_bytes?: number;
  /** Bound of the in-memory tail index, in entries (default 2^20). */
  tail_entries_max?: number;
  /** append() refuses when this many index blocks wait for LevelDB (default 65536). */
  max_index_lag_blocks?: number;
  /** A flush that has not finished within this rejects with ERR_PERSIST_TIMEOUT (default 60 s). */
  io_timeout_ms?: number;
  /** A read that must wait for the indexer gives up after this (default 30 s). */
  read_timeout_ms?: number;
  /** Background retention period (default 5 s). */
  retention_interval_ms?: number;
  /** Open segment files kept at rest (default 16). */
  max_open_segments?: number;
  /** Wall clock for age retention (default Date.now). */
  now_ms?: () => number;
  faults?: IoFaults;
}

const MiB = 1 << 20;
const INDEX_DIR = 'index';

export class LogStore implements Log {
  readonly dir: string;
  readonly durable: boolean;
  requireBase: boolean;
  /** fdatasync calls made by flushes (for tests and metrics). */
  fsyncCount = 0;
  /** Segment writes made by flushes. */
  writeCount = 0;
  /** Flush batches completed. */
  batchCount = 0;

  private readonly segSize: number;
  private readonly maxBuffered: number;
  private readonly maxIndexLag: number;
  private readonly ioTimeout: number;
  private readonly faults: IoFaults | undefined;

  /** Position, buffers and shared resources: the same object the reader, truncator and retention work on. */
  private readonly s: LogState;
  private spare: WriteBuffer | null = new WriteBuffer();
  private current: Deferred<Version> | null = null;
  private next: Deferred<Version> | null = null;

  private readonly reader: LogReader;
  private readonly truncator: LogTruncator;
  private readonly retention: LogRetention;
  private closed: Promise<void> | null = null;

  private constructor(
    opts: LogStoreOptions,
    index: LogIndex,
    fds: SegmentFds,
    tail: TailIndex,
    recovered: { segments: Segment[]; next_index: number; first_index: number; latest_version: bigint; latest_timestamp: bigint },
    baseVersion: Version | null,
  ) {
    this.dir = opts.dir;
    this.durable = opts.durable;
    this.requireBase = opts.requireBase ?? false;
    this.segSize = opts.segment_size_bytes ?? 64 * MiB;
    this.maxBuffered = opts.max_buffered_bytes ?? 256 * MiB;
    this.maxIndexLag = opts.max_index_lag_blocks ?? 65536;
    this.ioTimeout = opts.io_timeout_ms ?? 60_000;
    this.faults = opts.faults;
    const maint = new Mutex();
    const host = { persistedEnd: () => s.persistedEnd, firstIndex: () => s.first, nextIndex: () => s.nextIndex };
    const s: LogState = {
      dir: opts.dir,
      durable: opts.durable,
      log: opts.log,
      index,
      fds,
      tail,
      indexer: new LogIndexer(host, index, maint, opts.index_stride ?? 64, opts.index_block_bytes ?? 64 * 1024, opts.read_timeout_ms ?? 30_000, opts.log, opts.dir, recovered.next_index),
      maint,
      segments: recovered.segments,
      first: recovered.first_index,
      nextIndex: recovered.next_index,
      latestV: recovered.latest_version,
      latestTs: recovered.latest_timestamp,
      persistedEnd: recovered.next_index,
      persistedV: recovered.latest_version,
      active: new WriteBuffer(),
      inflight: null,
      generation: 0,
      truncating: false,
      closing: false,
      baseV: baseVersion,
      baseChain: Promise.resolve(),
    };
    this.s = s;
    s.active.first_index = s.active.end_index = s.nextIndex;
    this.reader = new LogReader(s);
    this.truncator = new LogTruncator(s, this.reader, () => this.settle());
    this.retention = new LogRetention(s, this, opts);
  }

  static async open(opts: LogStoreOptions): Promise<LogStore> {
    const segSize = opts.segment_size_bytes ?? 64 * MiB;
    const check = (ok: boolean, what: string): void => {
      if (!ok) throw new TempestError('ERR_PERSIST_CONFIG', `log ${opts.dir}: ${what}`);
    };
    check(Number.isSafeInteger(segSize) && segSize >= 4096, `segment_size_bytes must be an integer >= 4096, not ${segSize}`);
    check(Number.isSafeInteger(opts.retain_entries ?? 0) && (opts.retain_entries ?? 0) >= 0, 'retain_entries must be a non-negative integer');
    check(Number.isFinite(opts.retain_ms ?? 0) && (opts.retain_ms ?? 0) >= 0, 'retain_ms must be >= 0');
    check(Number.isSafeInteger(opts.index_stride ?? 64) && (opts.index_stride ?? 64) >= 1, 'index_stride must be an integer >= 1');
    const maxBuffered = opts.max_buffered_bytes ?? 256 * MiB;
    check(maxBuffered >= 64 * 1024 && maxBuffered <= 1024 * MiB, 'max_buffered_bytes must be in 64 KiB..1 GiB');
    try {
      const made = await fs.promises.mkdir(opts.dir, { recursive: true });
      if (made !== undefined && opts.durable) {
        // New directories' own entries must survive a crash too: fsync each new one's parent.
        const top = path.dirname(path.resolve(made));
        for (let d = path.resolve(opts.dir); d !== top && d !== path.dirname(d); d = path.dirname(d)) await io.fsyncDir(path.dirname(d));
      }
    } catch (err) {
      throw io.ioError(`cannot create log directory ${opts.dir}`, err);
    }
    const index = await LogIndex.open(path.join(opts.dir, INDEX_DIR), opts.log);
    const fds = new SegmentFds(opts.max_open_segments ?? 16);
    const tailMax = opts.tail_entries_max ?? 1 << 20;
    const tail = new TailIndex(Math.min(4096, tailMax), tailMax);
    try {
      const t0 = performance.now();
      const state = await recover(
        { dir: opts.dir, durable: opts.durable, index_stride: opts.index_stride ?? 64, index_block_bytes: opts.index_block_bytes ?? 64 * 1024, log: opts.log },
        index,
        fds,
        tail,
      );
      const baseVersion = await readBaseVersion(opts.dir);
      opts.log.debug(
        { dir: opts.dir, entries: state.next_index - state.first_index, next_index: state.next_index, reindexed: state.reindexed_entries, ms: Math.round(performance.now() - t0) },
        'log opened',
      );
      return new LogStore(opts, index, fds, tail, state, baseVersion);
    } catch (err) {
      await fds.closeAll();
      await index.close().catch(() => {});
      if (err instanceof TempestError) throw err;
      throw io.ioError(`cannot open log ${opts.dir}`, err);
    }
  }

  /** Deletes the log in `dir` (`[PERS] reset`). The log must not be open. */
  static async reset(dir: string): Promise<void> {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }

  // ---- state ----

  get latestVersion(): Version {
    return this.s.latestV;
  }

  get latestTimestamp(): Hlc {
    return this.s.latestTs;
  }

  get latestIndex(): number {
    return this.s.nextIndex - 1;
  }

  get firstIndex(): number {
    return this.s.first;
  }

  get length(): number {
    return this.s.nextIndex - this.s.first;
  }

  get persistedVersion(): Version {
    return this.s.persistedV;
  }

  get trimmedVersion(): Version {
    return this.s.segments[0]?.prev_version ?? NO_VERSION;
  }

  get baseVersion(): Version | null {
    return this.s.baseV;
  }

  /** Bytes appended but not yet written. */
  get bufferedBytes(): number {
    return this.s.active.used + (this.s.inflight?.used ?? 0);
  }

  /** Entries written but not yet in the LevelDB index. */
  get indexLag(): number {
    return this.s.persistedEnd - Math.min(this.s.indexer.indexedEnd, this.s.persistedEnd);
  }

  // ---- writing ----

  append(version: Version, timestamp: Hlc, payload: Pieces): number {
    const s = this.s;
    if (s.closing) throw new TempestError('ERR_PERSIST_CLOSED', `log ${this.dir} is closed`);
    if (s.truncating) throw new TempestError('ERR_PERSIST_BUSY', `log ${this.dir} is being truncated`);
    // (Messages built only on failure: this is the hot path.)
    if (version <= s.latestV) assert(false, `log versions increase: ${version} after ${s.latestV}`);
    if (timestamp <= s.latestTs) assert(false, `log timestamps increase: ${timestamp} after ${s.latestTs}`);
    const n = piecesLength(payload);
    const bytes = ENTRY_HEADER_BYTES + n;
    if (n > MAX_PAYLOAD_BYTES || bytes + SEGMENT_HEADER_BYTES > this.maxBuffered) {
      throw new TempestError('ERR_PERSIST_TOO_LARGE', `a log entry of ${n} bytes exceeds what the log buffers (max_buffered_bytes ${this.maxBuffered})`);
    }
    if (s.active.used + (s.inflight?.used ?? 0) + bytes + SEGMENT_HEADER_BYTES > this.maxBuffered) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir} already buffers ${this.bufferedBytes} unwritten bytes: flush first`);
    }
    if (s.indexer.lagBlocks >= this.maxIndexLag) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir}: the index lags ${s.indexer.lagBlocks} blocks behind`);
    }
    const index = s.nextIndex;
    const tail = s.tail;
    if (tail.size === tail.capacity && tail.capacity >= tail.maxEntries && tail.start >= s.persistedEnd) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir} holds ${tail.size} unwritten entries: flush first`);
    }
    let seg = s.segments[s.segments.length - 1];
    if (seg === undefined || (seg.end_index > seg.first_index && seg.end_bytes + bytes > this.segSize)) seg = this.roll(index);
    const a = s.active;
    const fileOffset = seg.end_bytes;
    const at = a.reserve(bytes);
    writeEntry(a.buf, a.view, at, version, timestamp, index, payload);
    a.commit(seg, fileOffset, bytes);
    a.end_index = index + 1;
    a.last_version = version;
    seg.end_bytes = fileOffset + bytes;
    seg.end_index = index + 1;
    const held = tail.push(index, version, timestamp, seg.first_index, fileOffset, n, s.persistedEnd, s.indexer.indexedEnd);
    assert(held, 'the tail index has room (checked above)');
    s.indexer.addEntry(index, version, timestamp, seg.first_index, fileOffset, bytes);
    s.nextIndex = index + 1;
    s.latestV = version;
    s.latestTs = timestamp;
    return index;
  }

  /** Starts a new segment at `index` (its header goes into the write buffer with the entry). */
  private roll(index: number): Segment {
    const s = this.s;
    const prev = s.segments[s.segments.length - 1];
    if (prev) prev.pinned = false;
    const seg = new Segment(this.dir, index, s.latestV, s.latestTs, false);
    seg.pinned = true;
    const a = s.active;
    const at = a.reserve(SEGMENT_HEADER_BYTES);
    writeSegmentHeader(a.buf, at, { first_index: index, prev_version: s.latestV, prev_timestamp: s.latestTs });
    a.commit(seg, 0, SEGMENT_HEADER_BYTES);
    seg.end_bytes = SEGMENT_HEADER_BYTES;
    s.segments.push(seg);
    return seg;
  }

  flush(): Promise<Version> {
    if (this.s.active.empty) {
      if (this.current !== null) return this.current.promise;
      return Promise.resolve(this.s.persistedV);
    }
    if (this.current !== null) {
      this.next ??= this.timedDeferred();
      return this.next.promise;
    }
    const d = this.timedDeferred();
    this.startBatch(d);
    return d.promise;
  }

  /** Flushes everything appended and waits until no flush is in flight (truncation and close). */
  private async settle(): Promise<void> {
    await this.flush();
    while (this.current !== null) await this.current.promise;
  }

  private timedDeferred(): Deferred<Version> {
    const d = deferred<Version>();
    const timer = setTimeout(() => d.reject(new TempestError('ERR_PERSIST_TIMEOUT', `log ${this.dir}: a flush did not finish within ${this.ioTimeout} ms`)), this.ioTimeout);
    timer.unref();
    d.promise.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    return d;
  }

  private startBatch(d: Deferred<Version>): void {
    const s = this.s;
    assert(s.inflight === null && this.spare !== null, 'one flush in flight');
    const batch = s.active;
    s.active = this.spare;
    this.spare = null;
    s.active.first_index = s.active.end_index = s.nextIndex;
    s.indexer.endBatch(); // blocks never span batches: every block of this batch is final
    s.inflight = batch;
    this.current = d;
    this.writeBatch(batch).then(
      () => this.batchDone(batch, null),
      (err: unknown) => this.batchDone(batch, err),
    );
  }

  /** Writes a batch; on failure first cuts what it may have written, then rejects. */
  private async writeBatch(b: WriteBuffer): Promise<void> {
    try {
      await this.writePieces(b);
    } catch (err) {
      await this.cutFailed(b);
      throw err;
    }
  }

  private async writePieces(b: WriteBuffer): Promise<void> {
    const fds = this.s.fds;
    const touched: Segment[] = [];
    let needDirSync = false;
    for (const p of b.pieces) {
      const seg = p.seg;
      const fd = await fds.acquire(seg, true);
      seg.created = true;
      try {
        const fault = this.faults?.write?.() ?? null;
        if (fault !== null) {
          await io.pwriteAll(fd, b.buf, p.buf_offset, Math.floor(p.length / 2), p.file_offset);
          throw Object.assign(new Error(`${fault} (injected)`), { code: fault });
        }
        await io.pwriteAll(fd, b.buf, p.buf_offset, p.length, p.file_offset);
        this.writeCount++;
      } finally {
        fds.release(seg);
      }
      if (!touched.includes(seg)) touched.push(seg);
      if (!seg.dir_synced) needDirSync = true;
    }
    if (!this.durable) return;
    for (const seg of touched) {
      const fd = await fds.acquire(seg);
      try {
        const fault = this.faults?.fsync?.() ?? null;
        if (fault !== null) throw Object.assign(new Error(`${fault} (injected)`), { code: fault });
        await io.fdatasync(fd);
        this.fsyncCount++;
      } finally {
        fds.release(seg);
      }
    }
    if (needDirSync) {
      await io.fsyncDir(this.dir);
      for (const seg of touched) seg.dir_synced = true;
    }
  }

  private batchDone(b: WriteBuffer, err: unknown): void {
    const s = this.s;
    const d = this.current!;
    this.current = null;
    s.inflight = null;
    if (err === null) {
      for (const p of b.pieces) p.seg.written_bytes = Math.max(p.seg.written_bytes, p.file_offset + p.length);
      if (b.end_index > b.first_index) {
        s.persistedEnd = b.end_index;
        s.persistedV = b.last_version;
      }
      const rolled = b.pieces.length > 1 || (b.pieces[0]?.file_offset ?? 1) === 0;
      b.clear();
      this.spare = b;
      this.batchCount++;
      d.resolve(s.persistedV);
      s.indexer.kick();
      if (rolled && s.segments.length > 1) this.retention.scheduleRetention();
      const n = this.next;
      this.next = null;
      if (n !== null) {
        if (s.active.empty) n.resolve(s.persistedV);
        else this.startBatch(n);
      }
      return;
    }
    // Failed: no half entry may stay visible. What this batch may have written was cut (best
    // effort; recovery's checksums catch the rest); its entries stay at the front of the buffer so
    // that the next flush writes them again, from the same offsets (a failed fsync may have lost
    // dirty pages: they are rewritten, never trusted).
    const e = io.ioError(`log ${this.dir}: a flush failed`, err);
    s.log.error({ dir: this.dir, err: (err as Error).message, code: io.errnoCode(err) }, 'log flush failed; its entries stay buffered for the next flush');
    b.absorb(s.active);
    this.spare = s.active;
    s.active = b;
    s.active.end_index = s.nextIndex;
    d.reject(e);
    const n = this.next;
    this.next = null;
    n?.reject(e);
  }

  private async cutFailed(b: WriteBuffer): Promise<void> {
    const fds = this.s.fds;
    const segs = new Set(b.pieces.map((p) => p.seg));
    for (const seg of segs) {
      if (!seg.created) continue;
      try {
        const fd = await fds.acquire(seg);
        try {
          await io.ftruncate(fd, seg.written_bytes);
        } finally {
          fds.release(seg);
        }
      } catch {
        // The next write overwrites the same bytes; recovery cuts a torn tail anyway.
      }
    }
  }

  // ---- reading (log-reader.ts) ----

  getByIndex(i: number): Promise<LogEntry | undefined> {
    return this.reader.getByIndex(i);
  }

  getByVersion(v: Version): Promise<LogEntry | undefined> {
    return this.reader.getByVersion(v);
  }

  getAtVersion(v: Version): Promise<LogEntry | undefined> {
    return this.reader.getAtVersion(v);
  }

  getByTime(t: Hlc): Promise<LogEntry | undefined> {
    return this.reader.getByTime(t);
  }

  latest(): Promise<LogEntry | undefined> {
    return this.reader.latest();
  }

  entries(afterVersion: Version, uptoVersion?: Version): AsyncIterable<LogEntry> {
    return this.reader.entries(afterVersion, uptoVersion);
  }

  // ---- truncation (log-truncator.ts), retention and base (log-retention.ts) ----

  truncateAfter(v: Version): Promise<void> {
    return this.truncator.truncateAfter(v);
  }

  trimBefore(v: Version): Promise<void> {
    return this.retention.trimBefore(v);
  }

  runRetention(): Promise<void> {
    return this.retention.runRetention();
  }

  setBase(version: Version, bytes: Uint8Array): Promise<void> {
    return this.retention.setBase(version, bytes);
  }

  getBase(): Promise<LogBase | null> {
    return this.retention.getBase();
  }

  onBaseWanted(listener: ((version: Version) => void) | null): void {
    this.retention.onBaseWanted(listener);
  }

  // ---- closing ----

  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    const s = this.s;
    s.closing = true;
    this.retention.stop();
    let failure: unknown = null;
    try {
      await this.settle();
    } catch (err) {
      failure = err;
    }
    try {
      // Leave the index complete, so the next open verifies one block and scans nothing.
      if (failure === null) await s.indexer.drain();
      await s.indexer.stop();
      await s.maint.run(async () => {});
      await s.baseChain;
    } finally {
      await s.indexer.stop();
      await s.fds.closeAll();
      await s.index.close().catch(() => {});
    }
    if (failure !== null) throw failure;
  }
}
