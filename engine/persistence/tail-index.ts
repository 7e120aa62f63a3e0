/**
 * The in-memory index of the newest entries of a log: a ring of typed arrays (no object per
 * entry) holding each entry's version, timestamp and place. It always holds every entry not yet
 * written to disk, and grows (up to a bound) rather than drop entries the LevelDB index does not
 * cover yet, so recent reads need no I/O beyond the payload and never wait for the indexer.
 */
import { assert } from '../util/assert.js';

export class TailIndex {
  /** Entries with index in [start, end) are held. */
  start = 0;
  end = 0;
  private cap: number;
  private versions: BigInt64Array;
  private timestamps: BigUint64Array;
  private segs: Float64Array;
  private offsets: Float64Array;
  private lengths: Uint32Array;

  constructor(initial_entries: number, private readonly max_entries: number) {
    assert(initial_entries >= 1 && max_entries >= initial_entries, 'tail index sizes');
    this.cap = initial_entries;
    this.versions = new BigInt64Array(this.cap);
    this.timestamps = new BigUint64Array(this.cap);
    this.segs = new Float64Array(this.cap);
    this.offsets = new Float64Array(this.cap);
    this.lengths = new Uint32Array(this.cap);
  }

  get capacity(): number {
    return this.cap;
  }

  get maxEntries(): number {
    return this.max_entries;
  }

  get size(): number {
    return this.end - this.start;
  }

  /** Empties the ring; the next entry pushed has index `next`. */
  reset(next: number): void {
    this.start = this.end = next;
  }

  /**
   * Adds entry `index` (== end). When full, drops the oldest entry if its index is below both
   * `must_keep_from` (not yet on disk) and `prefer_keep_from` (not yet in LevelDB), else grows; at
   * the size bound it drops an entry below `must_keep_from` only. False when nothing can give way.
   */
  push(index: number, version: bigint, timestamp: bigint, seg: number, offset: number, payload_bytes: number, must_keep_from: number, prefer_keep_from: number): boolean {
    assert(index === this.end, 'tail index entries are contiguous');
    if (this.end - this.start === this.cap) {
      if (this.start < must_keep_from && this.start < prefer_keep_from) this.start++;
      else if (this.cap < this.max_entries) this.grow();
      else if (this.start < must_keep_from) this.start++;
      else return false;
    }
    const s = index % this.cap;
    this.versions[s] = version;
    this.timestamps[s] = timestamp;
    this.segs[s] = seg;
    this.offsets[s] = offset;
    this.lengths[s] = payload_bytes;
    this.end = index + 1;
    return true;
  }

  has(index: number): boolean {
    return index >= this.start && index < this.end;
  }

  version(index: number): bigint {
    return this.versions[index % this.cap]!;
  }

  timestamp(index: number): bigint {
    return this.timestamps[index % this.cap]!;
  }

  seg(index: number): number {
    return this.segs[index % this.cap]!;
  }

  offset(index: number): number {
    return this.offsets[index % this.cap]!;
  }

  payloadBytes(index: number): number {
    return this.lengths[index % this.cap]!;
  }

  /** Index of the newest held entry with version <= v; -1 if none is held or v is older than all held. */
  floorByVersion(v: bigint): number {
    return this.floor(v, this.versions);
  }

  /** Index of the newest held entry with timestamp <= t; -1 as floorByVersion. */
  floorByTime(t: bigint): number {
    return this.floor(t, this.timestamps);
  }

  /** Drops the entries with index >= end. */
  truncate(end: number): void {
    if (end <= this.start) this.start = this.end = end;
    else if (end < this.end) this.end = end;
  }

  /** Forgets entries below `first` (trimmed). */
  dropBelow(first: number): void {
    if (first > this.start) this.start = Math.min(first, this.end);
  }

  private floor(key: bigint, arr: BigInt64Array | BigUint64Array): number {
    if (this.end === this.start) return -1;
    const cap = this.cap;
    if (key < arr[this.start % cap]!) return -1;
    let lo = this.start;
    let hi = this.end - 1;
    while (lo < hi) {
      const mid = lo + Math.ceil((hi - lo) / 2);
      if (arr[mid % cap]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private grow(): void {
    const cap = Math.min(this.cap * 2, this.max_entries);
    const v = new BigInt64Array(cap);
    const t = new BigUint64Array(cap);
    const sg = new Float64Array(cap);
    const o = new Float64Array(cap);
    const l = new Uint32Array(cap);
    for (let i = this.start; i < this.end; i++) {
      const a = i % this.cap;
      const b = i % cap;
      v[b] = this.versions[a]!;
      t[b] = this.timestamps[a]!;
      sg[b] = this.segs[a]!;
      o[b] = this.offsets[a]!;
      l[b] = this.lengths[a]!;
    }
    this.cap = cap;
    this.versions = v;
    this.timestamps = t;
    this.segs = sg;
    this.offsets = o;
    this.lengths = l;
  }
}
