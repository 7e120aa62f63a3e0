/**
 * The store's replicated object: one per shard of the `BlobStore` subgroup. Its one Persistent
 * field logs a delta per update (store-state.ts); a chunk's bytes live in the log entry of the
 * update that stored it, so they are durable on every shard member before the upload that sent
 * them is acknowledged, travel with state transfer, and come back after a restart with the rest.
 *
 * Ordered methods (every replica, in order): putChunk, commit, remove, tick, collect.
 * p2p methods (one replica): head, list, versions, changes, readChunk, stats.
 *
 * Reads at a time answer `{unstable}` when this replica has not yet applied an update later than
 * that time: updates it applies later could still be stamped at or before it. The client then
 * sends a `tick` (stamped after the time) and asks again, so a past snapshot never changes once
 * it has been read (DESIGN §9).
 */
import { Persistent } from '../persistence/persistent.js';
import { currentUpdate, replicatedType } from '../rpc/replicated-type.js';
import { StoreError, STORE_ERRORS } from './errors.js';
import { CHUNK_ID_BYTES, codecDelta, DELTA_HEADER_BYTES, deltaOf, OP_CHUNK, OP_COLLECT, OP_COMMIT, OP_DELETE, OP_NONE, OP_TICK, OP_TOUCH, StoreDeltas, StoreState, storeStateCodec, type VersionRecord } from './store-state.js';

export const STORE_TYPE_NAME = 'BlobStore';

/** Most entries one list or changes call returns (replies stay under the p2p reply limit). */
export const MAX_PAGE_ENTRIES = 1000;
/** Most keys one list call walks past (deleted or absent at that time) before it returns a partial page. */
const MAX_LIST_SCAN = 100_000;

/** A version as it crosses the wire (codec values). */
export type WireVersion = [key: string, version: bigint, timestamp: bigint, deleted: boolean, size: number, sha256: string, content_type: string, ids: Buffer | null, sizes: Buffer | null];

/** A read at a time this replica cannot answer yet: ask again after a tick later than that time. */
export type Unstable = { unstable: bigint };

/** Conditions of a commit or remove, checked at delivery against the key's current version. */
export interface WriteCondition {
  /** Only when the key has no live version. */
  if_none_match_any?: boolean;
  /** Only when the live version's sha256 is this. */
  if_match?: string;
}

export interface CommitManifest {
  size: number;
  sha256: string;
  content_type: string;
  /** 32 bytes per chunk id. */
  ids: Buffer;
  /** u32 LE per chunk size. */
  sizes: Buffer;
}

function wire(r: VersionRecord, withChunks: boolean): WireVersion {
  return [r.key, r.version, r.timestamp, r.deleted, r.size, r.sha256, r.content_type, withChunks ? r.ids : null, withChunks ? r.sizes : null];
}

function precondition(message: string): StoreError {
  return new StoreError(STORE_ERRORS.PRECONDITION, message);
}

export class BlobStore {
  private readonly deltas = new StoreDeltas();
  readonly state = new Persistent<StoreState>(() => new StoreState(), storeStateCodec, { delta: this.deltas });

  private get s(): StoreState {
    return this.state.value;
  }

  /** Records and applies one delta (the same apply that replays it). */
  private record(delta: Buffer): void {
    this.deltas.record(delta);
    this.s.apply(delta);
  }

  private none(): void {
    const u = currentUpdate();
    this.record(deltaOf(OP_NONE, u.version, u.timestamp, 0));
  }

  // ---- ordered -------------------------------------------------------------------------------

  /** Stores a chunk's bytes under its id (its sha256); a chunk stored before is only touched. */
  putChunk(id: Buffer, bytes: Buffer): boolean {
    const u = currentUpdate();
    if (!Buffer.isBuffer(id) || id.length !== CHUNK_ID_BYTES || !Buffer.isBuffer(bytes)) {
      this.none();
      throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'putChunk takes a 32-byte id and the bytes');
    }
    if (this.s.chunks.has(id.toString('hex'))) {
      const d = deltaOf(OP_TOUCH, u.version, u.timestamp, CHUNK_ID_BYTES);
      id.copy(d, DELTA_HEADER_BYTES);
      this.record(d);
      return false;
    }
    const d = deltaOf(OP_CHUNK, u.version, u.timestamp, CHUNK_ID_BYTES + bytes.length);
    id.copy(d, DELTA_HEADER_BYTES);
    bytes.copy(d, DELTA_HEADER_BYTES + CHUNK_ID_BYTES);
    this.record(d);
    return true;
  }

  /** Makes a new version of `key` from stored chunks; [version, timestamp]. */
  commit(key: string, m: CommitManifest, cond: WriteCondition): [bigint, bigint] {
    const u = currentUpdate();
    try {
      if (typeof key !== 'string' || m.ids.length % CHUNK_ID_BYTES !== 0 || m.sizes.length * 8 !== m.ids.length) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a malformed manifest');
      this.check(key, cond);
      const missing: string[] = [];
      for (let at = 0; at < m.ids.length; at += CHUNK_ID_BYTES) {
        const id = m.ids.toString('hex', at, at + CHUNK_ID_BYTES);
        if (!this.s.chunks.has(id)) missing.push(id);
      }
      if (missing.length > 0) throw new StoreError(STORE_ERRORS.UNAVAILABLE, `${missing.length} chunk(s) of the upload are no longer stored (collected during a long pause?); upload again`);
    } catch (err) {
      this.none();
      throw err;
    }
    this.record(codecDelta(OP_COMMIT, u.version, u.timestamp, [key, m.size, m.sha256, m.content_type, m.ids, m.sizes]));
    return [u.version, u.timestamp];
  }

  /** Writes a delete marker for `key`; [version, timestamp]. */
  remove(key: string, cond: WriteCondition): [bigint, bigint] {
    const u = currentUpdate();
    try {
      const cur = this.s.at(key, null);
      if (cur === undefined || cur.deleted) throw new StoreError(STORE_ERRORS.NOT_FOUND, `no blob ${JSON.stringify(key)}`, cur?.deleted === true);
      this.check(key, cond);
    } catch (err) {
      this.none();
      throw err;
    }
    this.record(codecDelta(OP_DELETE, u.version, u.timestamp, [key]));
    return [u.version, u.timestamp];
  }

  /** Advances the shard's time (temporal reads wait for a version later than the time they read). */
  tick(): bigint {
    const u = currentUpdate();
    this.record(deltaOf(OP_TICK, u.version, u.timestamp, 0));
    return u.timestamp;
  }

  /** Drops unreferenced chunks last stored before `before` (HLC); how many were dropped. */
  collect(before: bigint): number {
    const u = currentUpdate();
    const ids: Buffer[] = [];
    for (const [id, c] of this.s.chunks) {
      if (c.refs === 0 && c.touched < before) ids.push(Buffer.from(id, 'hex'));
      if (ids.length >= 65_536) break;
    }
    const d = deltaOf(OP_COLLECT, u.version, u.timestamp, ids.length * CHUNK_ID_BYTES);
    ids.forEach((id, i) => id.copy(d, DELTA_HEADER_BYTES + i * CHUNK_ID_BYTES));
    this.record(d);
    return ids.length;
  }

  private check(key: string, cond: WriteCondition): void {
    const cur = this.s.at(key, null);
    const live = cur !== undefined && !cur.deleted ? cur : undefined;
    if (cond.if_none_match_any === true && live !== undefined) throw precondition(`${JSON.stringify(key)} exists (If-None-Match: *)`);
    if (cond.if_match !== undefined && live?.sha256 !== cond.if_match) throw precondition(`the current version of ${JSON.stringify(key)} does not have etag "${cond.if_match}"`);
  }

  // ---- p2p -------------------------------------------------------------------------------------

  /** The shard's latest applied timestamp: reads at times up to it are final here. */
  private unstable(hlc: bigint | null): Unstable | null {
    return hlc !== null && this.s.lastTimestamp < hlc ? { unstable: this.s.lastTimestamp } : null;
  }

  /** The version of `key` now (null), at time `at`, or exactly `version`; with its chunks. */
  head(key: string, at: bigint | null, version: bigint | null): WireVersion | Unstable | null {
    if (version !== null) {
      const r = this.s.byVersion(key, version);
      return r === undefined ? null : wire(r, true);
    }
    const u = this.unstable(at);
    if (u !== null) return u;
    const r = this.s.at(key, at);
    return r === undefined ? null : wire(r, true);
  }

  /** Live keys under `prefix` after `after` as of `at` (null: now), at most `limit`; [entries, more]. */
  list(prefix: string, after: string | null, limit: number, at: bigint | null): [WireVersion[], boolean] | Unstable {
    const u = this.unstable(at);
    if (u !== null) return u;
    const max = Math.max(1, Math.min(MAX_PAGE_ENTRIES, limit));
    const out: WireVersion[] = [];
    const keys = this.s.sortedKeys;
    let scanned = 0;
    for (let i = this.s.firstKeyIndex(prefix, after); i < keys.length; i++) {
      const k = keys[i]!;
      if (!k.startsWith(prefix)) return [out, false];
      if (out.length === max || scanned === MAX_LIST_SCAN) return [out, true];
      scanned++;
      const r = this.s.at(k, at);
      if (r !== undefined && !r.deleted) out.push(wire(r, false));
    }
    return [out, false];
  }

  /** Every version of `key` after version `after`, oldest first, at most MAX_PAGE_ENTRIES; [versions, more]. */
  versions(key: string, after: bigint): [WireVersion[], boolean] {
    const h = this.s.keys.get(key) ?? [];
    let i = 0;
    while (i < h.length && h[i]!.version <= after) i++;
    const page = h.slice(i, i + MAX_PAGE_ENTRIES);
    return [page.map((r) => wire(r, false)), i + page.length < h.length];
  }

  /** Versions of keys under `prefix` after version `after`, in version order, at most `limit`; [versions, last version looked at]. */
  changes(prefix: string, after: bigint, limit: number): [WireVersion[], bigint] {
    const max = Math.max(1, Math.min(MAX_PAGE_ENTRIES, limit));
    const ev = this.s.events;
    const out: WireVersion[] = [];
    let last = after;
    for (let i = this.s.firstEventAfter(after); i < ev.length && out.length < max && i - out.length < MAX_LIST_SCAN; i++) {
      const r = ev[i]!;
      last = r.version;
      if (r.key.startsWith(prefix)) out.push(wire(r, false));
    }
    return [out, last > this.s.lastVersion ? this.s.lastVersion : last];
  }

  /** Bytes [offset, offset + length) of a stored chunk. */
  async readChunk(id: Buffer, offset: number, length: number): Promise<Buffer> {
    const hex = Buffer.isBuffer(id) ? id.toString('hex') : '';
    const c = this.s.chunks.get(hex);
    if (c === undefined) throw new StoreError(STORE_ERRORS.NOT_FOUND, `no chunk ${hex}`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > c.size) {
      throw new StoreError(STORE_ERRORS.BAD_REQUEST, `bytes ${offset}+${length} are outside chunk ${hex} of ${c.size} bytes`);
    }
    const d = await this.state.getDeltaAtVersion(c.version);
    if (d === undefined || d[0] !== OP_CHUNK || d.toString('hex', DELTA_HEADER_BYTES, DELTA_HEADER_BYTES + CHUNK_ID_BYTES) !== hex) {
      throw new StoreError(STORE_ERRORS.CORRUPT, `the log entry of chunk ${hex} (version ${c.version}) is missing or holds something else`);
    }
    const from = DELTA_HEADER_BYTES + CHUNK_ID_BYTES + offset;
    return d.subarray(from, from + length);
  }

  /** [keys, versions, chunks, unreferenced chunks, chunk bytes, last timestamp, last version]. */
  stats(): [number, number, number, number, number, bigint, bigint] {
    const s = this.s;
    return [s.keys.size, s.versionCount, s.chunks.size, s.unreferenced, s.chunkBytes, s.lastTimestamp, s.lastVersion];
  }
}

export const BlobStoreType = replicatedType({
  name: STORE_TYPE_NAME,
  create: () => new BlobStore(),
  ordered: ['putChunk', 'commit', 'remove', 'tick', 'collect'],
  p2p: ['head', 'list', 'versions', 'changes', 'readChunk', 'stats'],
});
