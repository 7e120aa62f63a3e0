/**
 * The state of one store shard, and the deltas that change it. Every ordered call of the store
 * (store-object.ts) becomes exactly one delta; the same `applyDelta` runs live and when a replica
 * replays its log after a restart or a state transfer, so the two can never differ.
 *
 * What the state holds:
 *   - per key, its whole history (blob versions and delete markers, by version and timestamp);
 *   - the keys in sorted order (listings with a prefix and pagination);
 *   - per chunk id, the version whose log entry holds the chunk's bytes, its size, how many
 *     versions refer to it, and when it was last stored or re-stored (garbage collection);
 *   - every version in version order (watch).
 * Chunk bytes are not in the state: they stay in the log entry of the `chunk` delta that stored
 * them and are read back by version (store-object.ts readChunk).
 *
 * Delta layout (little-endian): u8 op | u64 version | u64 timestamp | body
 *   OP_NONE     nothing changed (a refused call); still a version, so replay keeps the timestamp
 *   OP_CHUNK    32-byte chunk id | the chunk's bytes
 *   OP_TOUCH    32-byte chunk ids (chunks stored again, or kept by a file still being written:
 *               their collection waits another grace period; bytes are not kept twice)
 *   OP_COMMIT   codec [key, size, sha256, content_type, ids (32 B each), sizes (u32 each), meta]
 *               (meta: [mode, uid, gid, mtime_ms, ctime_ms] from the mount, or null; absent in older logs)
 *   OP_DELETE   codec [key]
 *   OP_COLLECT  ids (32 B each) of unreferenced chunks dropped
 *   OP_TICK     nothing (advances the shard's time for temporal reads)
 *   OP_SMALL    32-byte chunk id | u32 chunk length | the chunk's bytes | codec [key, size, sha256,
 *               content_type, ids, sizes, meta]: a chunk and the commit of a version that has only
 *               it, in one update (small files: one ordered call, not two)
 *   OP_MOVE     codec [from, to, meta]: `to` gets from's live content (and meta, when given) and
 *               `from` a delete marker, both at this version: a rename, atomic within the shard
 */
import { decode, encode } from '../rpc/codec.js';
import { assert } from '../util/assert.js';
import type { DeltaSupport, ValueCodec } from '../persistence/persistent.js';
import { StoreError, STORE_ERRORS } from './errors.js';
import { piecesLength } from '../util/pieces.js';

const DELTA_HEADER_BYTES_CONST = 17;
export const OP_NONE = 0;
export const OP_CHUNK = 1;
export const OP_TOUCH = 2;
export const OP_COMMIT = 3;
export const OP_DELETE = 4;
export const OP_COLLECT = 5;
export const OP_TICK = 6;
export const OP_MOVE = 7;
export const OP_SMALL = 8;
/** Where a chunk's bytes start in an OP_CHUNK delta, and in an OP_SMALL delta. */
export const CHUNK_BYTES_AT = DELTA_HEADER_BYTES_CONST + 32;
export const SMALL_BYTES_AT = DELTA_HEADER_BYTES_CONST + 32 + 4;

export const DELTA_HEADER_BYTES = DELTA_HEADER_BYTES_CONST;
export const CHUNK_ID_BYTES = 32;

/** One version of a key as the shard keeps it (chunk ids and sizes packed, not as strings). */
export interface VersionRecord {
  key: string;
  version: bigint;
  timestamp: bigint;
  deleted: boolean;
  size: number;
  sha256: string;
  content_type: string;
  /** Chunk ids, 32 bytes each, in content order. */
  ids: Buffer;
  /** Chunk sizes, u32 LE each. */
  sizes: Buffer;
  /** File-system attributes (the mount's, or set by metadata versions); null for plain blobs. */
  meta: WireMeta | null;
}

/** [mode (type and permission bits), uid, gid, mtime and ctime in ms since the epoch (fractions kept)]. */
export type WireMeta = [mode: number, uid: number, gid: number, mtime_ms: number, ctime_ms: number];

/** A meta value from a caller, checked; null when absent. */
export function checkMeta(m: unknown): WireMeta | null {
  if (m === null || m === undefined) return null;
  if (!Array.isArray(m) || m.length !== 5 || !m.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'file metadata is [mode, uid, gid, mtime_ms, ctime_ms]');
  const [mode, uid, gid, mtime_ms, ctime_ms] = m as WireMeta;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0xffff || !Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'file metadata has a bad mode, uid or gid');
  return [mode, uid, gid, mtime_ms, ctime_ms];
}

export interface ChunkRecord {
  /** Version of the OP_CHUNK delta whose log entry holds the bytes. */
  version: bigint;
  size: number;
  /** Versions referring to the chunk (counted once per version). */
  refs: number;
  /** Timestamp of the last OP_CHUNK or OP_TOUCH: a chunk of an upload in progress is recent. */
  touched: bigint;
}

const EMPTY = Buffer.alloc(0);

export class StoreState {
  readonly keys = new Map<string, VersionRecord[]>();
  readonly sortedKeys: string[] = [];
  /** Chunk id as hex -> record. */
  readonly chunks = new Map<string, ChunkRecord>();
  /** Every version of every key, in version order. */
  readonly events: VersionRecord[] = [];
  unreferenced = 0;
  chunkBytes = 0;
  versionCount = 0;
  lastVersion = -1n;
  lastTimestamp = 0n;

  /** The newest version of `key` with timestamp <= hlc (any version when hlc is null). */
  at(key: string, hlc: bigint | null): VersionRecord | undefined {
    const h = this.keys.get(key);
    if (h === undefined || h.length === 0) return undefined;
    if (hlc === null) return h[h.length - 1];
    let lo = 0;
    let hi = h.length; // first index with timestamp > hlc
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (h[mid]!.timestamp <= hlc) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? undefined : h[lo - 1];
  }

  /** The version `version` of `key`, exactly. */
  byVersion(key: string, version: bigint): VersionRecord | undefined {
    const h = this.keys.get(key);
    if (h === undefined) return undefined;
    let lo = 0;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (h[mid]!.version < version) lo = mid + 1;
      else hi = mid;
    }
    return h[lo]?.version === version ? h[lo] : undefined;
  }

  /** Index in sortedKeys of the first key > `after` and >= `prefix`. */
  firstKeyIndex(prefix: string, after: string | null): number {
    const from = after !== null && after >= prefix ? after : prefix;
    const strict = after !== null && after >= prefix;
    let lo = 0;
    let hi = this.sortedKeys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.sortedKeys[mid]!;
      if (k < from || (strict && k === from)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first event with version > v. */
  firstEventAfter(v: bigint): number {
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.events[mid]!.version <= v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Applies one delta (live or in replay). Throws only on a malformed delta. */
  apply(whole: Buffer | readonly Buffer[]): void {
    // In pieces (a chunk whose bytes are borrowed from the delivery), the first holds the header
    // and all the state reads; the others only add to the body's length.
    const delta = Buffer.isBuffer(whole) ? whole : whole[0]!;
    const extra = piecesLength(whole) - delta.length;
    if (delta.length === 0) return; // an update logged before this type existed: nothing to do
    assert(delta.length >= DELTA_HEADER_BYTES, 'a store delta has its header');
    const op = delta[0]!;
    assert(extra === 0 || op === OP_CHUNK, 'only a chunk delta comes in pieces');
    const version = delta.readBigUInt64LE(1);
    const timestamp = delta.readBigUInt64LE(9);
    const body = delta.subarray(DELTA_HEADER_BYTES);
    assert(version > this.lastVersion, 'store versions only grow');
    this.lastVersion = version;
    if (timestamp > this.lastTimestamp) this.lastTimestamp = timestamp;
    switch (op) {
      case OP_NONE:
      case OP_TICK:
        return;
      case OP_CHUNK:
        this.storeChunk(body.subarray(0, CHUNK_ID_BYTES).toString('hex'), body.length + extra - CHUNK_ID_BYTES, version, timestamp);
        return;
      case OP_SMALL: {
        const n = body.readUInt32LE(CHUNK_ID_BYTES);
        this.storeChunk(body.subarray(0, CHUNK_ID_BYTES).toString('hex'), n, version, timestamp);
        this.commitOf(decode(body.subarray(CHUNK_ID_BYTES + 4 + n)), version, timestamp);
        return;
      }
      case OP_TOUCH:
        for (let at = 0; at + CHUNK_ID_BYTES <= body.length; at += CHUNK_ID_BYTES) {
          const c = this.chunks.get(body.toString('hex', at, at + CHUNK_ID_BYTES));
          if (c !== undefined) c.touched = timestamp;
        }
        return;
      case OP_COMMIT:
        this.commitOf(decode(body), version, timestamp);
        return;
      case OP_DELETE: {
        const [key] = decode(body) as [string];
        this.addVersion({ key, version, timestamp, deleted: true, size: 0, sha256: '', content_type: '', ids: EMPTY, sizes: EMPTY, meta: null });
        return;
      }
      case OP_MOVE: {
        const [from, to, meta] = decode(body) as [string, string, WireMeta | null];
        const src = this.at(from, null);
        assert(src !== undefined && !src.deleted, 'a move is of a live version');
        this.refer(src.ids);
        this.addVersion({ ...src, key: to, version, timestamp, meta: meta ?? src.meta });
        this.addVersion({ key: from, version, timestamp, deleted: true, size: 0, sha256: '', content_type: '', ids: EMPTY, sizes: EMPTY, meta: null });
        return;
      }
      case OP_COLLECT: {
        for (let at = 0; at < body.length; at += CHUNK_ID_BYTES) {
          const id = body.toString('hex', at, at + CHUNK_ID_BYTES);
          const c = this.chunks.get(id);
          assert(c !== undefined && c.refs === 0, 'only unreferenced chunks are collected');
          this.chunks.delete(id);
          this.unreferenced--;
          this.chunkBytes -= c.size;
        }
        return;
      }
      default:
        throw new StoreError(STORE_ERRORS.CORRUPT, `a store delta has unknown op ${op}`);
    }
  }

  private storeChunk(id: string, size: number, version: bigint, timestamp: bigint): void {
    const old = this.chunks.get(id);
    if (old !== undefined) {
      // Stored again after a collection raced an upload: the newer bytes serve.
      old.version = version;
      old.touched = timestamp;
      return;
    }
    this.chunks.set(id, { version, size, refs: 0, touched: timestamp });
    this.unreferenced++;
    this.chunkBytes += size;
  }

  private commitOf(value: unknown, version: bigint, timestamp: bigint): void {
    const [key, size, sha256, content_type, ids, sizes, meta] = value as [string, number, string, string, Buffer, Buffer, WireMeta | null | undefined];
    const rec: VersionRecord = { key, version, timestamp, deleted: false, size, sha256, content_type, ids: Buffer.from(ids), sizes: Buffer.from(sizes), meta: meta ?? null };
    this.refer(rec.ids);
    this.addVersion(rec);
  }

  /** One more version refers to each of these chunks (counted once per version). */
  private refer(ids: Buffer): void {
    const seen = new Set<string>();
    for (let at = 0; at < ids.length; at += CHUNK_ID_BYTES) {
      const id = ids.toString('hex', at, at + CHUNK_ID_BYTES);
      if (seen.has(id)) continue;
      seen.add(id);
      const c = this.chunks.get(id);
      assert(c !== undefined, 'a version refers only to stored chunks');
      if (c.refs === 0) this.unreferenced--;
      c.refs++;
    }
  }

  private addVersion(rec: VersionRecord): void {
    let h = this.keys.get(rec.key);
    if (h === undefined) {
      this.keys.set(rec.key, (h = []));
      this.sortedKeys.splice(this.firstKeyIndex(rec.key, null), 0, rec.key);
    }
    h.push(rec);
    this.events.push(rec);
    this.versionCount++;
  }
}

/** Builds a delta: header plus `body_bytes` of body, which the caller writes at DELTA_HEADER_BYTES. */
export function deltaOf(op: number, version: bigint, timestamp: bigint, body_bytes: number): Buffer {
  const d = Buffer.allocUnsafe(DELTA_HEADER_BYTES + body_bytes);
  d[0] = op;
  d.writeBigUInt64LE(version, 1);
  d.writeBigUInt64LE(timestamp, 9);
  return d;
}

export function codecDelta(op: number, version: bigint, timestamp: bigint, value: unknown): Buffer {
  const body = encode(value);
  const d = deltaOf(op, version, timestamp, body.length);
  body.copy(d, DELTA_HEADER_BYTES);
  return d;
}

/** The store's DeltaSupport: the pending delta of the update being applied (one per update). */
export class StoreDeltas implements DeltaSupport<StoreState> {
  private pending: Buffer | readonly Buffer[] | null = null;

  /** The update's delta, whole or in pieces (logged as their concatenation before the update ends). */
  record(delta: Buffer | readonly Buffer[]): void {
    assert(this.pending === null, 'one delta per update');
    this.pending = delta;
  }

  takeDelta(): Buffer | readonly Buffer[] | null {
    const d = this.pending;
    this.pending = null;
    return d;
  }

  applyDelta(state: StoreState, delta: Buffer): StoreState {
    state.apply(delta);
    return state;
  }
}

/**
 * The whole state as one value (the log's base, written when retention trims old entries):
 * [lastVersion, lastTimestamp, versions in version order, chunks]. Keys, sorted keys and counts
 * are rebuilt from the versions.
 */
export const storeStateCodec: ValueCodec<StoreState> = {
  encode(s: StoreState): Buffer {
    const versions = s.events.map((r) => [r.key, r.version, r.timestamp, r.deleted, r.size, r.sha256, r.content_type, r.ids, r.sizes, r.meta]);
    const chunks = [...s.chunks].map(([id, c]) => [Buffer.from(id, 'hex'), c.version, c.size, c.refs, c.touched]);
    return encode([s.lastVersion, s.lastTimestamp, versions, chunks]);
  },
  decode(b: Buffer): StoreState {
    const [lastVersion, lastTimestamp, versions, chunks] = decode(b) as [bigint, bigint, [string, bigint, bigint, boolean, number, string, string, Buffer, Buffer, WireMeta | null | undefined][], [Buffer, bigint, number, number, bigint][]];
    const s = new StoreState();
    for (const [key, version, timestamp, deleted, size, sha256, content_type, ids, sizes, meta] of versions) {
      const rec: VersionRecord = { key, version, timestamp, deleted, size, sha256, content_type, ids: Buffer.from(ids), sizes: Buffer.from(sizes), meta: meta ?? null };
      let h = s.keys.get(key);
      if (h === undefined) s.keys.set(key, (h = []));
      h.push(rec);
      s.events.push(rec);
      s.versionCount++;
    }
    s.sortedKeys.push(...[...s.keys.keys()].sort());
    for (const [id, version, size, refs, touched] of chunks) {
      s.chunks.set(id.toString('hex'), { version, size, refs, touched });
      if (refs === 0) s.unreferenced++;
      s.chunkBytes += size;
    }
    s.lastVersion = lastVersion;
    s.lastTimestamp = lastTimestamp;
    return s;
  },
};
