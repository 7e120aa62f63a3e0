/**
 * PersistentMap<V> / VolatileMap<V>: a delta-mode field holding a string-keyed map, for the
 * key-value cache. The value is a TrackedMap, a Map that remembers the keys changed since the
 * last commit, so each version logs only its puts and deletes (a last write per key wins within
 * one version), not the whole map.
 *
 * Delta layout: u8 format (1) | u8 flags (bit 0: cleared first) | u32 count | per change:
 *   u8 op (1 put, 2 delete) | u32 key bytes | key (UTF-8) | [put: u32 value bytes | value].
 * Full value (bases): u32 count | per entry: u32 key bytes | key | u32 value bytes | value.
 * Integers are little-endian.
 */
import { TempestError } from '../util/errors.js';
import { bufferCodec } from './codecs.js';
import { type DeltaSupport, Persistent, type ValueCodec, Volatile } from './persistent.js';

const DELETED: unique symbol = Symbol('deleted');
const DELTA_FORMAT = 1;
const OP_PUT = 1;
const OP_DELETE = 2;

export class TrackedMap<V> implements Iterable<[string, V]> {
  private readonly map = new Map<string, V>();
  private changes = new Map<string, V | typeof DELETED>();
  private cleared = false;

  get size(): number {
    return this.map.size;
  }

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, value: V): this {
    this.map.set(key, value);
    this.changes.set(key, value);
    return this;
  }

  delete(key: string): boolean {
    if (!this.map.delete(key)) return false;
    this.changes.set(key, DELETED);
    return true;
  }

  clear(): void {
    this.map.clear();
    this.changes.clear();
    this.cleared = true;
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  entries(): IterableIterator<[string, V]> {
    return this.map.entries();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.map.entries();
  }

  forEach(fn: (value: V, key: string) => void): void {
    this.map.forEach((v, k) => fn(v, k));
  }

  /** Whether anything changed since the last takeChanges(). */
  get dirty(): boolean {
    return this.cleared || this.changes.size > 0;
  }

  /** The changes since the last call, and a fresh (empty) change set. */
  takeChanges(): { cleared: boolean; changes: Map<string, V | typeof DELETED> } {
    const out = { cleared: this.cleared, changes: this.changes };
    this.changes = new Map();
    this.cleared = false;
    return out;
  }

  /** Changes the map without recording it (replaying history). */
  setUntracked(key: string, value: V): void {
    this.map.set(key, value);
  }

  deleteUntracked(key: string): void {
    this.map.delete(key);
  }

  clearUntracked(): void {
    this.map.clear();
  }
}

function corrupt(what: string): TempestError {
  return new TempestError('ERR_PERSIST_CORRUPT', `a map ${what} is malformed`);
}

/** Bounds-checked reader of the layouts above. */
class Reader {
  at = 0;
  constructor(private readonly b: Buffer, private readonly what: string) {}
  u8(): number {
    if (this.at + 1 > this.b.length) throw corrupt(this.what);
    return this.b[this.at++]!;
  }
  u32(): number {
    if (this.at + 4 > this.b.length) throw corrupt(this.what);
    const v = this.b.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.at + n > this.b.length) throw corrupt(this.what);
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  end(): void {
    if (this.at !== this.b.length) throw corrupt(this.what);
  }
}

/** The DeltaSupport of a TrackedMap whose values use `codec`. */
export function mapDelta<V>(codec: ValueCodec<V>): DeltaSupport<TrackedMap<V>> {
  return {
    takeDelta(current: TrackedMap<V>): Buffer | null {
      if (!current.dirty) return null;
      const { cleared, changes } = current.takeChanges();
      const parts: { op: number; key: Buffer; value: Buffer | null }[] = [];
      let size = 6;
      for (const [k, v] of changes) {
        const key = Buffer.from(k, 'utf8');
        const value = v === DELETED ? null : codec.encode(v);
        parts.push({ op: value === null ? OP_DELETE : OP_PUT, key, value });
        size += 5 + key.length + (value === null ? 0 : 4 + value.length);
      }
      const out = Buffer.allocUnsafe(size);
      out[0] = DELTA_FORMAT;
      out[1] = cleared ? 1 : 0;
      out.writeUInt32LE(parts.length, 2);
      let at = 6;
      for (const p of parts) {
        out[at] = p.op;
        out.writeUInt32LE(p.key.length, at + 1);
        p.key.copy(out, at + 5);
        at += 5 + p.key.length;
        if (p.value !== null) {
          out.writeUInt32LE(p.value.length, at);
          p.value.copy(out, at + 4);
          at += 4 + p.value.length;
        }
      }
      return out;
    },
    applyDelta(value: TrackedMap<V>, delta: Buffer): TrackedMap<V> {
      const r = new Reader(delta, 'delta');
      if (r.u8() !== DELTA_FORMAT) throw corrupt('delta');
      if (r.u8() & 1) value.clearUntracked();
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const op = r.u8();
        const key = r.bytes().toString('utf8');
        if (op === OP_PUT) value.setUntracked(key, codec.decode(Buffer.from(r.bytes())));
        else if (op === OP_DELETE) value.deleteUntracked(key);
        else throw corrupt('delta');
      }
      r.end();
      return value;
    },
  };
}

/** The full-value codec of a TrackedMap (used for bases). */
export function mapCodec<V>(codec: ValueCodec<V>): ValueCodec<TrackedMap<V>> {
  return {
    encode(m: TrackedMap<V>): Buffer {
      const parts: Buffer[] = [];
      const count = Buffer.allocUnsafe(4);
      count.writeUInt32LE(m.size, 0);
      parts.push(count);
      for (const [k, v] of m) {
        const key = Buffer.from(k, 'utf8');
        const value = codec.encode(v);
        const head = Buffer.allocUnsafe(4);
        head.writeUInt32LE(key.length, 0);
        const vhead = Buffer.allocUnsafe(4);
        vhead.writeUInt32LE(value.length, 0);
        parts.push(head, key, vhead, value);
      }
      return Buffer.concat(parts);
    },
    decode(b: Buffer): TrackedMap<V> {
      const r = new Reader(b, 'value');
      const m = new TrackedMap<V>();
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const key = r.bytes().toString('utf8');
        m.setUntracked(key, codec.decode(Buffer.from(r.bytes())));
      }
      r.end();
      return m;
    },
  };
}

/** A string-keyed map logged as deltas to disk. Values default to Buffers. */
export class PersistentMap<V = Buffer> extends Persistent<TrackedMap<V>> {
  constructor(codec: ValueCodec<V> = bufferCodec as unknown as ValueCodec<V>) {
    super(() => new TrackedMap<V>(), mapCodec(codec), { delta: mapDelta(codec) });
  }
}

/** A string-keyed map logged as deltas in memory. */
export class VolatileMap<V = Buffer> extends Volatile<TrackedMap<V>> {
  constructor(codec: ValueCodec<V> = bufferCodec as unknown as ValueCodec<V>) {
    super(() => new TrackedMap<V>(), mapCodec(codec), { delta: mapDelta(codec) });
  }
}
