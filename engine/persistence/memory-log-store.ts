/**
 * MemoryLogStore: the Log of Volatile<T> fields. Same interface and semantics as LogStore
 * (versions, timestamps, indices that survive trimming, base, truncation), nothing on disk:
 * flush() resolves at once and persistedVersion is the latest version. Retention by count (and
 * age) trims the oldest entries as appends go, in amortized O(1).
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import { type Hlc, hlcFromMs } from './hlc.js';
import type { Log, LogBase, LogEntry } from './log.js';
import { NO_VERSION, type Version } from './version.js';
import { copyPieces, type Pieces, piecesLength } from '../util/pieces.js';

export interface MemoryLogStoreOptions {
  /** Keep at least this many newest entries; 0 = no count limit (default). */
  retain_entries?: number;
  /** Keep entries younger than this (by entry timestamp); 0 = no age limit (default). */
  retain_ms?: number;
  requireBase?: boolean;
  now_ms?: () => number;
}

/** Trimming runs when this many entries (or retain/8) are over the limit: O(1) per append. */
const TRIM_SLACK = 64;
const AGE_CHECK_EVERY = 64;
const EMPTY = Buffer.alloc(0);

export class MemoryLogStore implements Log {
  requireBase: boolean;
  private readonly retainEntries: number;
  private readonly retainMs: number;
  private readonly nowMs: () => number;
  private versions: bigint[] = [];
  private timestamps: bigint[] = [];
  private payloads: Buffer[] = [];
  /** Position in the arrays of the oldest retained entry, and that entry's index. */
  private head = 0;
  private first = 0;
  private trimmedV: Version = NO_VERSION;
  private trimmedTs: Hlc = 0n;
  private latestV: Version = NO_VERSION;
  private latestTs: Hlc = 0n;
  private base: LogBase | null = null;
  private baseWanted: ((v: Version) => void) | null = null;
  private wantedAnnounced: Version = NO_VERSION;
  private appendsSinceAgeCheck = 0;
  private closed = false;

  constructor(opts: MemoryLogStoreOptions = {}) {
    this.retainEntries = opts.retain_entries ?? 0;
    this.retainMs = opts.retain_ms ?? 0;
    this.requireBase = opts.requireBase ?? false;
    this.nowMs = opts.now_ms ?? Date.now;
    if (!Number.isSafeInteger(this.retainEntries) || this.retainEntries < 0) throw new TempestError('ERR_PERSIST_CONFIG', 'retain_entries must be a non-negative integer');
  }

  get latestVersion(): Version {
    return this.latestV;
  }

  get latestTimestamp(): Hlc {
    return this.latestTs;
  }

  get latestIndex(): number {
    return this.first + this.count - 1;
  }

  get firstIndex(): number {
    return this.first;
  }

  get length(): number {
    return this.count;
  }

  get persistedVersion(): Version {
    return this.latestV;
  }

  get trimmedVersion(): Version {
    return this.trimmedV;
  }

  get baseVersion(): Version | null {
    return this.base?.version ?? null;
  }

  private get count(): number {
    return this.versions.length - this.head;
  }

  append(version: Version, timestamp: Hlc, payload: Pieces): number {
    if (this.closed) throw new TempestError('ERR_PERSIST_CLOSED', 'the memory log is closed');
    // (Messages built only on failure: this is the hot path.)
    if (version <= this.latestV) assert(false, `log versions increase: ${version} after ${this.latestV}`);
    if (timestamp <= this.latestTs) assert(false, `log timestamps increase: ${timestamp} after ${this.latestTs}`);
    const index = this.first + this.count;
    this.versions.push(version);
    this.timestamps.push(timestamp);
    const copy = Buffer.allocUnsafe(piecesLength(payload));
    copyPieces(copy, 0, payload);
    this.payloads.push(copy);
    this.latestV = version;
    this.latestTs = timestamp;
    if (this.retainEntries > 0 && this.count > this.retainEntries + Math.max(TRIM_SLACK, this.retainEntries >> 3)) this.retain();
    else if (this.retainMs > 0 && ++this.appendsSinceAgeCheck >= AGE_CHECK_EVERY) this.retain();
    return index;
  }

  flush(): Promise<Version> {
    return Promise.resolve(this.latestV);
  }

  async getByIndex(i: number): Promise<LogEntry | undefined> {
    if (!Number.isSafeInteger(i) || i < this.first || i > this.latestIndex) return undefined;
    return this.entryAt(this.head + (i - this.first));
  }

  async getByVersion(v: Version): Promise<LogEntry | undefined> {
    const k = this.floor(this.versions, v);
    return k >= 0 && this.versions[k] === v ? this.entryAt(k) : undefined;
  }

  async getAtVersion(v: Version): Promise<LogEntry | undefined> {
    const k = this.floor(this.versions, v);
    return k >= 0 ? this.entryAt(k) : undefined;
  }

  async getByTime(t: Hlc): Promise<LogEntry | undefined> {
    const k = this.floor(this.timestamps, t);
    return k >= 0 ? this.entryAt(k) : undefined;
  }

  async latest(): Promise<LogEntry | undefined> {
    return this.count > 0 ? this.entryAt(this.versions.length - 1) : undefined;
  }

  async *entries(afterVersion: Version, uptoVersion?: Version): AsyncIterable<LogEntry> {
    if (afterVersion < this.trimmedV) {
      throw new TempestError('ERR_PERSIST_TRIMMED', `memory log: entries after version ${afterVersion} were trimmed (history starts after ${this.trimmedV})`);
    }
    const endV = uptoVersion ?? this.latestV;
    const k = this.floor(this.versions, afterVersion);
    const startIndex = this.first + (k < 0 ? 0 : k + 1 - this.head);
    const endIndex = this.latestIndex;
    for (let i = startIndex; i <= endIndex; i++) {
      if (i < this.first) throw new TempestError('ERR_PERSIST_TRIMMED', `memory log: entry ${i} was trimmed during iteration`);
      const e = await this.getByIndex(i);
      if (e === undefined || e.version > endV) return;
      yield e;
    }
  }

  async truncateAfter(v: Version): Promise<void> {
    if (v >= this.latestV) return;
    if (v < this.trimmedV) {
      // Older than the trimmed history: the log restarts empty, after version v.
      this.versions = [];
      this.timestamps = [];
      this.payloads = [];
      this.head = 0;
      this.trimmedV = v;
      this.trimmedTs = 0n;
      this.latestV = v;
      this.latestTs = 0n;
      this.base = null;
      return;
    }
    if (this.base !== null && v < this.base.version) {
      if (this.trimmedV >= 0n) throw new TempestError('ERR_PERSIST_TRIMMED', `memory log: cannot truncate after version ${v}: below the base and history was trimmed`);
      this.base = null;
    }
    const k = this.floor(this.versions, v);
    const keep = k < 0 ? this.head : k + 1;
    this.versions.length = this.timestamps.length = this.payloads.length = keep;
    this.latestV = k < 0 ? this.trimmedV : this.versions[k]!;
    this.latestTs = k < 0 ? this.trimmedTs : this.timestamps[k]!;
  }

  async trimBefore(v: Version): Promise<void> {
    this.trimWhile((k) => this.versions[k]! < v);
  }

  async runRetention(): Promise<void> {
    this.retain();
  }

  async setBase(version: Version, bytes: Uint8Array): Promise<void> {
    assert(version >= 0n, 'a base is at a real version');
    this.base = { version, bytes: Buffer.from(bytes) };
    this.retain();
  }

  async getBase(): Promise<LogBase | null> {
    return this.base === null ? null : { version: this.base.version, bytes: Buffer.from(this.base.bytes) };
  }

  onBaseWanted(listener: ((version: Version) => void) | null): void {
    this.baseWanted = listener;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // ---- internals ----

  private retain(): void {
    this.appendsSinceAgeCheck = 0;
    const cutoff = this.retainMs > 0 ? hlcFromMs(Math.max(0, this.nowMs() - this.retainMs)) : -1n;
    const keepFrom = this.retainEntries > 0 ? this.versions.length - this.retainEntries : this.head;
    this.trimWhile((k) => k < keepFrom || this.timestamps[k]! < cutoff);
  }

  /** Drops the oldest entries while `want(position)`: never the newest, with requireBase never above the base. */
  private trimWhile(want: (k: number) => boolean): void {
    let k = this.head;
    const last = this.versions.length - 1;
    while (k < last && want(k)) {
      if (this.requireBase && (this.base === null || this.versions[k]! > this.base.version)) {
        const v = this.versions[k]!;
        if (this.baseWanted !== null && v > this.wantedAnnounced) {
          this.wantedAnnounced = v;
          const listener = this.baseWanted;
          // Ask for a base a little ahead, so that it is not asked for at every append.
          const ahead = this.versions[Math.min(last - 1, k + Math.max(TRIM_SLACK, this.retainEntries >> 3))] ?? v;
          queueMicrotask(() => listener(ahead > v ? ahead : v));
        }
        break;
      }
      k++;
    }
    if (k === this.head) return;
    this.trimmedV = this.versions[k - 1]!;
    this.trimmedTs = this.timestamps[k - 1]!;
    for (let j = this.head; j < k; j++) this.payloads[j] = EMPTY; // let trimmed payloads go now
    this.first += k - this.head;
    this.head = k;
    if (this.head > 1024 && this.head * 2 > this.versions.length) {
      this.versions = this.versions.slice(this.head);
      this.timestamps = this.timestamps.slice(this.head);
      this.payloads = this.payloads.slice(this.head);
      this.head = 0;
    }
  }

  private entryAt(k: number): LogEntry {
    return { version: this.versions[k]!, timestamp: this.timestamps[k]!, index: this.first + (k - this.head), payload: Buffer.from(this.payloads[k]!) };
  }

  /** Position of the newest retained entry with key <= x, or -1. */
  private floor(arr: bigint[], x: bigint): number {
    let lo = this.head;
    let hi = arr.length - 1;
    if (hi < lo || x < arr[lo]!) return -1;
    while (lo < hi) {
      const mid = lo + Math.ceil((hi - lo) / 2);
      if (arr[mid]! <= x) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
