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
 * Reads of recent entries come from the tail index (and the write buffers for entries not yet
 * written); older ones from the LevelDB block index plus one positioned read.
 * Retention trims whole old segments in the background. File layout: entry-format.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../util/log.js';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import { type Hlc, hlcFromMs } from './hlc.js';
import { NO_VERSION, type Version } from './version.js';
import type { Log, LogEntry } from './log.js';
import { type LogBase, readBase, readBaseVersion, removeBase, writeBase } from './base-file.js';
import { checkEntry, EntryCheck, ENTRY_HEADER_BYTES, MAX_PAYLOAD_BYTES, newEntryHeader, SEGMENT_HEADER_BYTES, writeEntry, writeSegmentHeader } from './entry-format.js';
import * as io from './fs-io.js';
import { LogIndex } from './log-index.js';
import { LogIndexer } from './log-indexer.js';
import { recover } from './recovery.js';
import { Segment, SegmentFds } from './segment.js';
import { SegmentScanner } from './segment-scanner.js';
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
const COLD_CHUNK_BYTES = 64 * 1024;
const ITER_CHUNK_BYTES = MiB;

interface Located {
  index: number;
  version: bigint;
  timestamp: bigint;
  seg: number;
  offset: number;
  payload_bytes: number;
}

type Key = 'index' | 'version' | 'time';

function ioError(what: string, err: unknown): TempestError {
  return new TempestError('ERR_PERSIST_IO', `${what}: ${(err as Error).message ?? String(err)}`, { cause: err });
}

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
  private readonly retainEntries: number;
  private readonly retainMs: number;
  private readonly maxBuffered: number;
  private readonly maxIndexLag: number;
  private readonly ioTimeout: number;
  private readonly nowMs: () => number;
  private readonly faults: IoFaults | undefined;
  private readonly log: Logger;

  private segments: Segment[];
  private nextIndex: number;
  private first: number;
  private latestV: Version;
  private latestTs: Hlc;
  private persistedEnd: number;
  private persistedV: Version;

  private active = new WriteBuffer();
  private spare: WriteBuffer | null = new WriteBuffer();
  private inflight: WriteBuffer | null = null;
  private current: Deferred<Version> | null = null;
  private next: Deferred<Version> | null = null;

  private readonly indexer: LogIndexer;

  private readonly maint = new Mutex();
  private retentionTimer: NodeJS.Timeout | null = null;
  private retentionScheduled = false;
  private baseV: Version | null;
  private baseWanted: ((v: Version) => void) | null = null;
  private baseChain: Promise<void> = Promise.resolve();

  /** Bumped by truncateAfter: reads that raced with it re-check before reporting corruption. */
  private generation = 0;
  private truncating = false;
  private closing = false;
  private closed: Promise<void> | null = null;

  private constructor(
    opts: LogStoreOptions,
    private readonly index: LogIndex,
    private readonly fds: SegmentFds,
    private readonly tail: TailIndex,
    state: { segments: Segment[]; next_index: number; first_index: number; latest_version: bigint; latest_timestamp: bigint },
    baseVersion: Version | null,
  ) {
    this.dir = opts.dir;
    this.durable = opts.durable;
    this.requireBase = opts.requireBase ?? false;
    this.segSize = opts.segment_size_bytes ?? 64 * MiB;
    this.retainEntries = opts.retain_entries ?? 0;
    this.retainMs = opts.retain_ms ?? 0;
    this.maxBuffered = opts.max_buffered_bytes ?? 256 * MiB;
    this.maxIndexLag = opts.max_index_lag_blocks ?? 65536;
    this.ioTimeout = opts.io_timeout_ms ?? 60_000;
    this.nowMs = opts.now_ms ?? Date.now;
    this.faults = opts.faults;
    this.log = opts.log;
    this.segments = state.segments;
    this.nextIndex = state.next_index;
    this.first = state.first_index;
    this.latestV = state.latest_version;
    this.latestTs = state.latest_timestamp;
    this.persistedEnd = state.next_index;
    this.persistedV = state.latest_version;
    const host = { persistedEnd: () => this.persistedEnd, firstIndex: () => this.first, nextIndex: () => this.nextIndex };
    this.indexer = new LogIndexer(host, index, this.maint, opts.index_stride ?? 64, opts.index_block_bytes ?? 64 * 1024, opts.read_timeout_ms ?? 30_000, opts.log, opts.dir, state.next_index);
    this.baseV = baseVersion;
    this.active.first_index = this.active.end_index = this.nextIndex;
    if (this.retainEntries > 0 || this.retainMs > 0) {
      this.retentionTimer = setInterval(() => this.scheduleRetention(), opts.retention_interval_ms ?? 5000);
      this.retentionTimer.unref();
    }
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
      throw ioError(`cannot create log directory ${opts.dir}`, err);
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
      throw ioError(`cannot open log ${opts.dir}`, err);
    }
  }

  /** Deletes the log in `dir` (`[PERS] reset`). The log must not be open. */
  static async reset(dir: string): Promise<void> {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }

  // ---- state ----

  get latestVersion(): Version {
    return this.latestV;
  }

  get latestTimestamp(): Hlc {
    return this.latestTs;
  }

  get latestIndex(): number {
    return this.nextIndex - 1;
  }

  get firstIndex(): number {
    return this.first;
  }

  get length(): number {
    return this.nextIndex - this.first;
  }

  get persistedVersion(): Version {
    return this.persistedV;
  }

  get trimmedVersion(): Version {
    return this.segments[0]?.prev_version ?? NO_VERSION;
  }

  get baseVersion(): Version | null {
    return this.baseV;
  }

  /** Bytes appended but not yet written. */
  get bufferedBytes(): number {
    return this.active.used + (this.inflight?.used ?? 0);
  }

  /** Entries written but not yet in the LevelDB index. */
  get indexLag(): number {
    return this.persistedEnd - Math.min(this.indexer.indexedEnd, this.persistedEnd);
  }

  // ---- writing ----

  append(version: Version, timestamp: Hlc, payload: Uint8Array): number {
    if (this.closing) throw new TempestError('ERR_PERSIST_CLOSED', `log ${this.dir} is closed`);
    if (this.truncating) throw new TempestError('ERR_PERSIST_BUSY', `log ${this.dir} is being truncated`);
    // (Messages built only on failure: this is the hot path.)
    if (version <= this.latestV) assert(false, `log versions increase: ${version} after ${this.latestV}`);
    if (timestamp <= this.latestTs) assert(false, `log timestamps increase: ${timestamp} after ${this.latestTs}`);
    const n = payload.length;
    const bytes = ENTRY_HEADER_BYTES + n;
    if (n > MAX_PAYLOAD_BYTES || bytes + SEGMENT_HEADER_BYTES > this.maxBuffered) {
      throw new TempestError('ERR_PERSIST_TOO_LARGE', `a log entry of ${n} bytes exceeds what the log buffers (max_buffered_bytes ${this.maxBuffered})`);
    }
    if (this.active.used + (this.inflight?.used ?? 0) + bytes + SEGMENT_HEADER_BYTES > this.maxBuffered) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir} already buffers ${this.bufferedBytes} unwritten bytes: flush first`);
    }
    if (this.indexer.lagBlocks >= this.maxIndexLag) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir}: the index lags ${this.indexer.lagBlocks} blocks behind`);
    }
    const index = this.nextIndex;
    if (this.tail.size === this.tail.capacity && this.tail.capacity >= this.tail.maxEntries && this.tail.start >= this.persistedEnd) {
      throw new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir} holds ${this.tail.size} unwritten entries: flush first`);
    }
    let seg = this.segments[this.segments.length - 1];
    if (seg === undefined || (seg.end_index > seg.first_index && seg.end_bytes + bytes > this.segSize)) seg = this.roll(index);
    const a = this.active;
    const fileOffset = seg.end_bytes;
    const at = a.reserve(bytes);
    writeEntry(a.buf, a.view, at, version, timestamp, index, payload);
    a.commit(seg, fileOffset, bytes);
    a.end_index = index + 1;
    a.last_version = version;
    seg.end_bytes = fileOffset + bytes;
    seg.end_index = index + 1;
    const held = this.tail.push(index, version, timestamp, seg.first_index, fileOffset, n, this.persistedEnd, this.indexer.indexedEnd);
    assert(held, 'the tail index has room (checked above)');
    this.indexer.addEntry(index, version, timestamp, seg.first_index, fileOffset, bytes);
    this.nextIndex = index + 1;
    this.latestV = version;
    this.latestTs = timestamp;
    return index;
  }

  /** Starts a new segment at `index` (its header goes into the write buffer with the entry). */
  private roll(index: number): Segment {
    const prev = this.segments[this.segments.length - 1];
    if (prev) prev.pinned = false;
    const seg = new Segment(this.dir, index, this.latestV, this.latestTs, false);
    seg.pinned = true;
    const a = this.active;
    const at = a.reserve(SEGMENT_HEADER_BYTES);
    writeSegmentHeader(a.buf, at, { first_index: index, prev_version: this.latestV, prev_timestamp: this.latestTs });
    a.commit(seg, 0, SEGMENT_HEADER_BYTES);
    seg.end_bytes = SEGMENT_HEADER_BYTES;
    this.segments.push(seg);
    return seg;
  }

  flush(): Promise<Version> {
    if (this.active.empty) {
      if (this.current !== null) return this.current.promise;
      return Promise.resolve(this.persistedV);
    }
    if (this.current !== null) {
      this.next ??= this.timedDeferred();
      return this.next.promise;
    }
    const d = this.timedDeferred();
    this.startBatch(d);
    return d.promise;
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
    assert(this.inflight === null && this.spare !== null, 'one flush in flight');
    const batch = this.active;
    this.active = this.spare;
    this.spare = null;
    this.active.first_index = this.active.end_index = this.nextIndex;
    this.indexer.endBatch(); // blocks never span batches: every block of this batch is final
    this.inflight = batch;
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
    const touched: Segment[] = [];
    let needDirSync = false;
    for (const p of b.pieces) {
      const seg = p.seg;
      const fd = await this.fds.acquire(seg, true);
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
        this.fds.release(seg);
      }
      if (!touched.includes(seg)) touched.push(seg);
      if (!seg.dir_synced) needDirSync = true;
    }
    if (!this.durable) return;
    for (const seg of touched) {
      const fd = await this.fds.acquire(seg);
      try {
        const fault = this.faults?.fsync?.() ?? null;
        if (fault !== null) throw Object.assign(new Error(`${fault} (injected)`), { code: fault });
        await io.fdatasync(fd);
        this.fsyncCount++;
      } finally {
        this.fds.release(seg);
      }
    }
    if (needDirSync) {
      await io.fsyncDir(this.dir);
      for (const seg of touched) seg.dir_synced = true;
    }
  }

  private batchDone(b: WriteBuffer, err: unknown): void {
    const d = this.current!;
    this.current = null;
    this.inflight = null;
    if (err === null) {
      for (const p of b.pieces) p.seg.written_bytes = Math.max(p.seg.written_bytes, p.file_offset + p.length);
      if (b.end_index > b.first_index) {
        this.persistedEnd = b.end_index;
        this.persistedV = b.last_version;
      }
      const rolled = b.pieces.length > 1 || (b.pieces[0]?.file_offset ?? 1) === 0;
      b.clear();
      this.spare = b;
      this.batchCount++;
      d.resolve(this.persistedV);
      this.indexer.kick();
      if (rolled && this.segments.length > 1) this.scheduleRetention();
      const n = this.next;
      this.next = null;
      if (n !== null) {
        if (this.active.empty) n.resolve(this.persistedV);
        else this.startBatch(n);
      }
      return;
    }
    // Failed: no half entry may stay visible. What this batch may have written was cut (best
    // effort; recovery's checksums catch the rest); its entries stay at the front of the buffer so
    // that the next flush writes them again, from the same offsets (a failed fsync may have lost
    // dirty pages: they are rewritten, never trusted).
    const e = ioError(`log ${this.dir}: a flush failed`, err);
    this.log.error({ dir: this.dir, err: (err as Error).message, code: io.errnoCode(err) }, 'log flush failed; its entries stay buffered for the next flush');
    b.absorb(this.active);
    this.spare = this.active;
    this.active = b;
    this.active.end_index = this.nextIndex;
    d.reject(e);
    const n = this.next;
    this.next = null;
    n?.reject(e);
  }

  private async cutFailed(b: WriteBuffer): Promise<void> {
    const segs = new Set(b.pieces.map((p) => p.seg));
    for (const seg of segs) {
      if (!seg.created) continue;
      try {
        const fd = await this.fds.acquire(seg);
        try {
          await io.ftruncate(fd, seg.written_bytes);
        } finally {
          this.fds.release(seg);
        }
      } catch {
        // The next write overwrites the same bytes; recovery cuts a torn tail anyway.
      }
    }
  }

  // ---- reading ----

  async getByIndex(i: number): Promise<LogEntry | undefined> {
    if (!Number.isSafeInteger(i) || i < this.first || i >= this.nextIndex) return undefined;
    if (this.tail.has(i)) return this.readTail(i);
    return this.readCold('index', BigInt(i), true);
  }

  async getByVersion(v: Version): Promise<LogEntry | undefined> {
    if (v < 0n || v > this.latestV || this.length === 0) return undefined;
    if (this.tail.size > 0 && v >= this.tail.version(this.tail.start)) {
      const i = this.tail.floorByVersion(v);
      if (i < this.first || this.tail.version(i) !== v) return undefined;
      return this.readTail(i);
    }
    return this.readCold('version', v, true);
  }

  async getAtVersion(v: Version): Promise<LogEntry | undefined> {
    if (v < 0n || this.length === 0) return undefined;
    if (v >= this.latestV) return this.readTail(this.nextIndex - 1);
    if (this.tail.size > 0 && v >= this.tail.version(this.tail.start)) {
      const i = this.tail.floorByVersion(v);
      return i < this.first ? undefined : this.readTail(i);
    }
    return this.readCold('version', v, false);
  }

  async getByTime(t: Hlc): Promise<LogEntry | undefined> {
    if (t < 0n || this.length === 0) return undefined;
    if (t >= this.latestTs) return this.readTail(this.nextIndex - 1);
    if (this.tail.size > 0 && t >= this.tail.timestamp(this.tail.start)) {
      const i = this.tail.floorByTime(t);
      return i < this.first ? undefined : this.readTail(i);
    }
    return this.readCold('time', t, false);
  }

  latest(): Promise<LogEntry | undefined> {
    return this.getByIndex(this.nextIndex - 1);
  }

  /** Reads entry i, which the tail index holds: from a write buffer, or with one positioned read. */
  private async readTail(i: number): Promise<LogEntry | undefined> {
    if (!this.tail.has(i)) return this.getByIndex(i);
    const loc: Located = {
      index: i,
      version: this.tail.version(i),
      timestamp: this.tail.timestamp(i),
      seg: this.tail.seg(i),
      offset: this.tail.offset(i),
      payload_bytes: this.tail.payloadBytes(i),
    };
    return this.readLocated(loc);
  }

  private async readLocated(loc: Located): Promise<LogEntry | undefined> {
    const seg = this.segmentOf(loc.seg);
    if (seg === undefined) return undefined;
    for (const b of [this.active, this.inflight]) {
      if (b === null) continue;
      const at = b.locate(seg, loc.offset);
      if (at >= 0) {
        const start = at + ENTRY_HEADER_BYTES;
        return { version: loc.version, timestamp: loc.timestamp, index: loc.index, payload: Buffer.from(b.buf.subarray(start, start + loc.payload_bytes)) };
      }
    }
    const gen = this.generation;
    const size = ENTRY_HEADER_BYTES + loc.payload_bytes;
    const buf = Buffer.allocUnsafe(size);
    let n: number;
    try {
      const fd = await this.fds.acquire(seg);
      try {
        n = await io.pread(fd, buf, 0, size, loc.offset);
      } finally {
        this.fds.release(seg);
      }
    } catch (err) {
      if (io.errnoCode(err) === 'ENOENT') return undefined; // trimmed meanwhile
      throw ioError(`log ${this.dir}: cannot read entry ${loc.index}`, err);
    }
    const h = newEntryHeader();
    if (n !== size || checkEntry(buf, 0, h) !== EntryCheck.Ok || h.index !== loc.index || h.version !== loc.version) {
      if (gen !== this.generation || loc.index < this.first || loc.index >= this.nextIndex) return undefined;
      throw new TempestError('ERR_PERSIST_CORRUPT', `log ${this.dir}: entry ${loc.index} in ${path.basename(seg.path)} at ${loc.offset} is damaged`);
    }
    return { version: h.version, timestamp: h.timestamp, index: h.index, payload: buf.subarray(ENTRY_HEADER_BYTES) };
  }

  private segmentOf(first_index: number): Segment | undefined {
    const s = this.segments;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const f = s[mid]!.first_index;
      if (f === first_index) return s[mid];
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
    await this.indexer.covered(this.tail.start);
    const gen = this.generation;
    const block = kind === 'index' ? await this.index.floorByIndex(Number(key)) : kind === 'version' ? await this.index.floorByVersion(key) : await this.index.floorByTime(key);
    let pos: number;
    let offset: number;
    if (block !== null && block.index >= this.first && this.segmentOf(block.seg) !== undefined) {
      pos = this.segments.indexOf(this.segmentOf(block.seg)!);
      offset = block.offset;
    } else {
      pos = 0;
      offset = SEGMENT_HEADER_BYTES;
    }
    const h = newEntryHeader();
    let cand: (Located & { buf: Buffer; at: number }) | null = null;
    const numKey = Number(key);
    outer: for (; pos < this.segments.length; pos++, offset = SEGMENT_HEADER_BYTES) {
      const seg = this.segments[pos]!;
      let fd: number;
      try {
        fd = await this.fds.acquire(seg);
      } catch (err) {
        if (io.errnoCode(err) === 'ENOENT') return null;
        throw ioError(`log ${this.dir}: cannot read ${path.basename(seg.path)}`, err);
      }
      try {
        const sc = new SegmentScanner(fd, offset, seg.written_bytes, COLD_CHUNK_BYTES);
        for (;;) {
          const r = await sc.next(h);
          if (r === null) {
            if (sc.status !== 'end') {
              if (gen !== this.generation) return null;
              throw new TempestError('ERR_PERSIST_CORRUPT', `log ${this.dir}: ${path.basename(seg.path)} is damaged at ${sc.offset}`);
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
        this.fds.release(seg);
      }
    }
    if (cand === null || cand.index < this.first || cand.index >= this.nextIndex) return null;
    if (exact && (kind === 'index' ? cand.index !== numKey : kind === 'version' ? cand.version !== key : cand.timestamp !== key)) return null;
    const start = cand.at + ENTRY_HEADER_BYTES;
    return {
      index: cand.index,
      version: cand.version,
      timestamp: cand.timestamp,
      seg: cand.seg,
      offset: cand.offset,
      payload_bytes: cand.payload_bytes,
      payload: withPayload ? Buffer.from(cand.buf.subarray(start, start + cand.payload_bytes)) : undefined,
    };
  }

  /** Where entry i is (tail index, else LevelDB + scan); null when it is not in the log. */
  private async locateIndex(i: number): Promise<Located | null> {
    if (i < this.first || i >= this.nextIndex) return null;
    if (this.tail.has(i)) {
      return { index: i, version: this.tail.version(i), timestamp: this.tail.timestamp(i), seg: this.tail.seg(i), offset: this.tail.offset(i), payload_bytes: this.tail.payloadBytes(i) };
    }
    return this.locateCold('index', BigInt(i), true, false);
  }

  /** Index of the newest entry with version <= v (first - 1 when v is older than every retained entry). */
  private async floorIndexByVersion(v: Version): Promise<number> {
    if (this.length === 0 || v >= this.latestV) return this.nextIndex - 1;
    if (this.tail.size > 0 && v >= this.tail.version(this.tail.start)) return Math.max(this.tail.floorByVersion(v), this.first - 1);
    const loc = await this.locateCold('version', v, false, false);
    return loc === null ? this.first - 1 : loc.index;
  }

  async *entries(afterVersion: Version, uptoVersion?: Version): AsyncIterable<LogEntry> {
    const endV = uptoVersion === undefined || uptoVersion > this.latestV ? this.latestV : uptoVersion;
    if (this.length === 0 || endV <= afterVersion) return;
    const head = this.segments[0];
    if (head !== undefined && afterVersion < head.prev_version) {
      throw new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: entries after version ${afterVersion} were trimmed (history starts after ${head.prev_version})`);
    }
    const gen = this.generation;
    const endIndex = this.nextIndex;
    let i = (await this.floorIndexByVersion(afterVersion)) + 1;
    if (i < this.first) i = this.first;
    const h = newEntryHeader();
    const changed = (): boolean => gen !== this.generation;
    let loc: { seg: Segment; offset: number } | null = null;
    while (i < endIndex) {
      if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${this.dir} was truncated during iteration`);
      if (i < this.first) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: entry ${i} was trimmed during iteration`);
      if (loc === null) {
        const l = await this.locateIndex(i);
        const seg = l === null ? undefined : this.segmentOf(l.seg);
        if (l === null || seg === undefined) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: entry ${i} was trimmed during iteration`);
        loc = { seg, offset: l.offset };
      }
      const seg: Segment = loc.seg;
      if (loc.offset < seg.written_bytes) {
        // On disk: scan this segment sequentially, a large chunk per read.
        const fd: number = await this.fds.acquire(seg).catch((err: unknown) => {
          throw io.errnoCode(err) === 'ENOENT' ? new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: entry ${i} was trimmed during iteration`) : ioError(`log ${this.dir}: read failed`, err);
        });
        try {
          const sc: SegmentScanner = new SegmentScanner(fd, loc.offset, seg.written_bytes, ITER_CHUNK_BYTES);
          while (i < endIndex) {
            const r = await sc.next(h);
            if (r === null) break;
            if (h.index !== i) {
              if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${this.dir} was truncated during iteration`);
              throw new TempestError('ERR_PERSIST_CORRUPT', `log ${this.dir}: expected entry ${i}, found ${h.index}`);
            }
            if (h.version > endV) return;
            const start = r.at + ENTRY_HEADER_BYTES;
            yield { version: h.version, timestamp: h.timestamp, index: i, payload: Buffer.from(r.buf.subarray(start, start + h.payload_bytes)) };
            i++;
          }
          if (sc.status === 'torn' || sc.status === 'corrupt') {
            if (changed()) throw new TempestError('ERR_PERSIST_TRUNCATED', `log ${this.dir} was truncated during iteration`);
            throw new TempestError('ERR_PERSIST_CORRUPT', `log ${this.dir}: ${path.basename(seg.path)} is damaged at ${sc.offset}`);
          }
          const nextSeg = this.segments[this.segments.indexOf(seg) + 1];
          loc = sc.offset === seg.end_bytes && nextSeg !== undefined && nextSeg.first_index === i ? { seg: nextSeg, offset: SEGMENT_HEADER_BYTES } : null;
        } finally {
          this.fds.release(seg);
        }
      } else {
        // Not written yet (or written after this scan began): from the tail index.
        const e = await this.getByIndex(i);
        if (e === undefined) throw new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: entry ${i} is gone`);
        if (e.version > endV) return;
        yield e;
        i++;
        loc = null;
      }
    }
  }

  // ---- truncation, retention, base ----

  async truncateAfter(v: Version): Promise<void> {
    if (v >= this.latestV) return;
    if (this.truncating) throw new TempestError('ERR_PERSIST_BUSY', `log ${this.dir} is already being truncated`);
    this.truncating = true;
    try {
      await this.flush();
      while (this.current !== null) await this.current.promise;
      await this.maint.run(() => this.truncateLocked(v));
    } finally {
      this.truncating = false;
    }
  }

  private async truncateLocked(v: Version): Promise<void> {
    if (v >= this.latestV || this.segments.length === 0) return;
    const head = this.segments[0]!;
    if (v < head.prev_version) return this.truncateAll(v);
    if (this.baseV !== null && v < this.baseV) {
      if (head.prev_version >= 0n) {
        throw new TempestError('ERR_PERSIST_TRIMMED', `log ${this.dir}: cannot truncate after version ${v}: below the base (${this.baseV}) and history before ${head.prev_version} was trimmed`);
      }
      await this.dropBase();
    }
    const keep = await this.floorIndexByVersion(v);
    let pos: number;
    let endBytes: number;
    let newV: Version;
    let newTs: Hlc;
    if (keep < this.first) {
      pos = 0;
      endBytes = SEGMENT_HEADER_BYTES;
      newV = head.prev_version;
      newTs = head.prev_timestamp;
    } else {
      const loc = await this.locateIndex(keep);
      assert(loc !== null, 'the kept entry is in the log');
      pos = this.segments.findIndex((s) => s.first_index === loc.seg);
      endBytes = loc.offset + ENTRY_HEADER_BYTES + loc.payload_bytes;
      newV = loc.version;
      newTs = loc.timestamp;
    }
    const newNext = keep + 1 < this.first ? this.first : keep + 1;
    const cutBytes = this.segments.slice(pos).reduce((a, s, k) => a + (k === 0 ? s.written_bytes - endBytes : s.written_bytes), 0);
    this.generation++;
    const removed = this.segments.splice(pos + 1);
    const seg = this.segments[pos]!;
    try {
      await this.cutDurably(removed, null, seg, endBytes, null);
    } finally {
      seg.written_bytes = seg.end_bytes = endBytes;
      seg.end_index = newNext;
      seg.pinned = true;
      this.nextIndex = newNext;
      this.latestV = this.persistedV = newV;
      this.latestTs = newTs;
      this.persistedEnd = newNext;
      this.active.first_index = this.active.end_index = newNext;
      this.tail.truncate(newNext);
      this.indexer.truncate(newNext, endBytes);
    }
    await this.index.deleteFrom(newNext, newV + 1n, newTs + 1n);
    const last = await this.index.floorByIndex(newNext - 1);
    if (last !== null && last.index + last.count > newNext) {
      await this.index.putBlocks([{ ...last, count: newNext - last.index, bytes: endBytes - last.offset }]);
    }
    this.log.info({ dir: this.dir, after_version: v.toString(), cut_bytes: cutBytes, next_index: newNext }, 'log truncated');
  }

  /**
   * The durable part of a truncation: deletes the `removed` segments (newest first; `keep` stays on
   * disk under a new Segment), then cuts `seg` to `end_bytes`, after writing `header` at its start
   * when given, and syncs the file and the directory.
   */
  private async cutDurably(removed: Segment[], keep: Segment | null, seg: Segment, end_bytes: number, header: Buffer | null): Promise<void> {
    try {
      for (const r of removed.reverse()) {
        this.fds.retire(r);
        if (r === keep) continue;
        await fs.promises.unlink(r.path).catch((err: unknown) => {
          if (io.errnoCode(err) !== 'ENOENT') throw err;
        });
      }
      const fd = await this.fds.acquire(seg);
      try {
        if (header !== null) await io.pwriteAll(fd, header, 0, header.length, 0);
        await io.ftruncate(fd, end_bytes);
        if (this.durable) await io.fdatasync(fd);
      } finally {
        this.fds.release(seg);
      }
      if (this.durable) await io.fsyncDir(this.dir);
    } catch (err) {
      throw ioError(`log ${this.dir}: truncation failed (reopen the log to repair it)`, err);
    }
  }

  /** truncateAfter(v) for v older than the trimmed history: the log restarts empty, after version v. */
  private async truncateAll(v: Version): Promise<void> {
    const head = this.segments[0]!;
    const first = head.first_index;
    this.generation++;
    const removed = this.segments.splice(0);
    const fresh = new Segment(this.dir, first, v, 0n, true);
    // The first segment keeps its name; its header is rewritten (one sector) and the rest cut.
    const hdr = Buffer.alloc(SEGMENT_HEADER_BYTES);
    writeSegmentHeader(hdr, 0, { first_index: first, prev_version: v, prev_timestamp: 0n });
    try {
      await this.cutDurably(removed, head, fresh, SEGMENT_HEADER_BYTES, hdr);
    } finally {
      fresh.written_bytes = fresh.end_bytes = SEGMENT_HEADER_BYTES;
      fresh.end_index = first;
      fresh.pinned = true;
      this.segments = [fresh];
      this.first = this.nextIndex = this.persistedEnd = first;
      this.latestV = this.persistedV = v;
      this.latestTs = 0n;
      this.active.first_index = this.active.end_index = first;
      this.tail.reset(first);
      this.indexer.reset(first);
    }
    await this.index.clearAll();
    if (this.baseV !== null) await this.dropBase();
    this.log.info({ dir: this.dir, after_version: v.toString(), next_index: first }, 'log emptied by truncation below its trimmed history');
  }

  private async dropBase(): Promise<void> {
    this.log.warn({ dir: this.dir, base_version: String(this.baseV) }, 'log base removed by truncation');
    await this.baseChain;
    try {
      await removeBase(this.dir, this.durable);
    } catch (err) {
      throw ioError(`log ${this.dir}: cannot remove the base`, err);
    }
    this.baseV = null;
  }

  async trimBefore(v: Version): Promise<void> {
    await this.maint.run(() => this.trimLocked((next) => next.prev_version < v));
  }

  runRetention(): Promise<void> {
    if (this.retainEntries === 0 && this.retainMs === 0) return Promise.resolve();
    return this.maint.run(() => {
      const cutoff = this.retainMs > 0 ? hlcFromMs(Math.max(0, this.nowMs() - this.retainMs)) : -1n;
      return this.trimLocked((next) => (this.retainEntries > 0 && this.nextIndex - next.first_index >= this.retainEntries) || next.prev_timestamp < cutoff);
    });
  }

  private scheduleRetention(): void {
    if (this.retentionScheduled || this.closing) return;
    if (this.retainEntries === 0 && this.retainMs === 0) return;
    this.retentionScheduled = true;
    setImmediate(() => {
      this.retentionScheduled = false;
      if (this.closing) return;
      this.runRetention().catch((err: unknown) => this.log.warn({ dir: this.dir, err: (err as Error).message }, 'log retention failed'));
    });
  }

  /**
   * Drops the oldest segments while `want(next segment)` says the one before it may go (a
   * segment's last version and timestamp are in the next segment's header). Never the segment
   * being written, never one whose successor's first entry is not durable yet (so the log always
   * keeps its position), and with requireBase never entries above the base.
   */
  private async trimLocked(want: (next: Segment) => boolean): Promise<void> {
    let drop = 0;
    let wanted: Version | null = null;
    let blocked = false;
    for (let k = 0; k + 1 < this.segments.length; k++) {
      const next = this.segments[k + 1]!;
      if (next.first_index >= this.persistedEnd || !want(next)) break;
      if (this.requireBase && (this.baseV === null || next.prev_version > this.baseV)) {
        // Ask for a base covering everything retention wants gone, not just this segment.
        blocked = true;
        wanted = next.prev_version;
      }
      if (!blocked) drop = k + 1;
    }
    if (wanted !== null && this.baseWanted !== null) {
      const listener = this.baseWanted;
      const v = wanted;
      queueMicrotask(() => listener(v));
    }
    if (drop === 0) return;
    const dropped = this.segments.splice(0, drop);
    const head = this.segments[0]!;
    this.first = head.first_index;
    this.tail.dropBelow(this.first);
    let bytes = 0;
    try {
      for (const s of dropped) {
        bytes += s.written_bytes;
        this.fds.retire(s);
        await fs.promises.unlink(s.path).catch((err: unknown) => {
          if (io.errnoCode(err) !== 'ENOENT') throw err;
        });
        // One at a time and in order, so a crash never leaves a hole in the middle of the log.
        if (this.durable) await io.fsyncDir(this.dir);
      }
    } catch (err) {
      throw ioError(`log ${this.dir}: trimming failed`, err);
    }
    await this.index.deleteBelow(head.first_index, head.prev_version, head.prev_timestamp);
    this.log.debug({ dir: this.dir, segments: drop, bytes, first_index: this.first }, 'log trimmed');
  }

  async setBase(version: Version, bytes: Uint8Array): Promise<void> {
    assert(version >= 0n, 'a base is at a real version');
    const run = this.baseChain.then(async () => {
      try {
        await writeBase(this.dir, version, bytes, this.durable);
      } catch (err) {
        throw ioError(`log ${this.dir}: cannot write the base`, err);
      }
      this.baseV = version;
    });
    this.baseChain = run.catch(() => {});
    await run;
    this.scheduleRetention();
  }

  getBase(): Promise<LogBase | null> {
    return this.baseChain.then(() => readBase(this.dir));
  }

  onBaseWanted(listener: ((version: Version) => void) | null): void {
    this.baseWanted = listener;
  }

  // ---- closing ----

  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    let failure: unknown = null;
    try {
      await this.flush();
      while (this.current !== null) await this.current.promise;
    } catch (err) {
      failure = err;
    }
    try {
      // Leave the index complete, so the next open verifies one block and scans nothing.
      if (failure === null) await this.indexer.drain();
      await this.indexer.stop();
      await this.maint.run(async () => {});
      await this.baseChain;
    } finally {
      await this.indexer.stop();
      await this.fds.closeAll();
      await this.index.close().catch(() => {});
    }
    if (failure !== null) throw failure;
  }
}
