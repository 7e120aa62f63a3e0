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
import { encode } from '../rpc/codec.js';
import { currentUpdate, replicatedType } from '../rpc/replicated-type.js';
import { StoreError, STORE_ERRORS } from './errors.js';
import { CHUNK_ID_BYTES, checkMeta, codecDelta, DELTA_HEADER_BYTES, deltaOf, OP_CHUNK, OP_COLLECT, OP_COMMIT, OP_DELETE, OP_MOVE, OP_NONE, OP_SMALL, OP_TICK, SMALL_BYTES_AT, CHUNK_BYTES_AT, OP_TOUCH, StoreDeltas, StoreState, storeStateCodec, type VersionRecord, type WireMeta } from './store-state.js';

export const STORE_TYPE_NAME = 'BlobStore';

/** Most entries one list or changes call returns (replies stay under the p2p reply limit). */
export const MAX_PAGE_ENTRIES = 1000;
/** Most keys one list call walks past (deleted or absent at that time) before it returns a partial page. */
const MAX_LIST_SCAN = 100_000;

/** A version as it crosses the wire (codec values). */
export type WireVersion = [key: string, version: bigint, timestamp: bigint, deleted: boolean, size: number, sha256: string, content_type: string, ids: Buffer | null, sizes: Buffer | null, meta: WireMeta | null];

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
  /** File-system attributes (the mount's); absent or null for plain blobs. */
  meta?: WireMeta | null;
}

function wire(r: VersionRecord, withChunks: boolean): WireVersion {
  return [r.key, r.version, r.timestamp, r.deleted, r.size, r.sha256, r.content_type, withChunks ? r.ids : null, withChunks ? r.sizes : null, r.meta];
}

/** The least string after every string that starts with `p` (p ends in a one-unit delimiter). */
function pastPrefix(p: string): string {
  return p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1);
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
  private record(delta: Buffer | readonly Buffer[]): void {
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
    // Header and id, then the bytes themselves (borrowed from the delivery): the log copies both
    // into its entry when the update is committed, before the delivery buffer is reused.
    const d = deltaOf(OP_CHUNK, u.version, u.timestamp, CHUNK_ID_BYTES);
    id.copy(d, DELTA_HEADER_BYTES);
    this.record([d, bytes]);
    return true;
  }

  /**
   * Keeps chunks a version does not refer to yet (a file still being written) from collection for
   * another grace period; how many of them are stored.
   */
  touchChunks(ids: Buffer): number {
    const u = currentUpdate();
    if (!Buffer.isBuffer(ids) || ids.length % CHUNK_ID_BYTES !== 0 || ids.length > 65_536 * CHUNK_ID_BYTES) {
      this.none();
      throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'touchChunks takes up to 65,536 ids of 32 bytes');
    }
    const d = deltaOf(OP_TOUCH, u.version, u.timestamp, ids.length);
    ids.copy(d, DELTA_HEADER_BYTES);
    this.record(d);
    let stored = 0;
    for (let at = 0; at < ids.length; at += CHUNK_ID_BYTES) if (this.s.chunks.has(ids.toString('hex', at, at + CHUNK_ID_BYTES))) stored++;
    return stored;
  }

  /** Makes a new version of `key` from stored chunks; [version, timestamp]. */
  commit(key: string, m: CommitManifest, cond: WriteCondition): [bigint, bigint] {
    const u = currentUpdate();
    let meta: WireMeta | null;
    try {
      if (typeof key !== 'string' || m.ids.length % CHUNK_ID_BYTES !== 0 || m.sizes.length * 8 !== m.ids.length) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a malformed manifest');
      meta = checkMeta(m.meta);
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
    this.record(codecDelta(OP_COMMIT, u.version, u.timestamp, [key, m.size, m.sha256, m.content_type, m.ids, m.sizes, meta]));
    return [u.version, u.timestamp];
  }

  /**
   * A version made of one chunk, stored and committed in one update (a small file); [version,
   * timestamp]. The manifest's ids and sizes name that chunk alone.
   */
  putSmall(key: string, id: Buffer, bytes: Buffer, m: CommitManifest, cond: WriteCondition): [bigint, bigint] {
    const u = currentUpdate();
    let meta: WireMeta | null;
    try {
      if (typeof key !== 'string' || !Buffer.isBuffer(id) || id.length !== CHUNK_ID_BYTES || !Buffer.isBuffer(bytes) || !m.ids.equals(id) || m.sizes.length !== 4 || m.sizes.readUInt32LE(0) !== bytes.length || m.size !== bytes.length) {
        throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'putSmall takes one chunk and a manifest of it alone');
      }
      meta = checkMeta(m.meta);
      this.check(key, cond);
    } catch (err) {
      this.none();
      throw err;
    }
    const commit = encode([key, m.size, m.sha256, m.content_type, m.ids, m.sizes, meta]);
    const d = deltaOf(OP_SMALL, u.version, u.timestamp, CHUNK_ID_BYTES + 4 + bytes.length + commit.length);
    id.copy(d, DELTA_HEADER_BYTES);
    d.writeUInt32LE(bytes.length, DELTA_HEADER_BYTES + CHUNK_ID_BYTES);
    bytes.copy(d, SMALL_BYTES_AT);
    commit.copy(d, SMALL_BYTES_AT + bytes.length);
    this.record(d);
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

  /**
   * Renames within the shard: `to` gets the live content of `from` (with `meta` when given) and
   * `from` a delete marker, in one update; [version, timestamp]. `cond` applies to `to`.
   */
  move(from: string, to: string, meta: WireMeta | null, cond: WriteCondition): [bigint, bigint] {
    const u = currentUpdate();
    let m: WireMeta | null;
    try {
      if (typeof from !== 'string' || typeof to !== 'string' || from === to) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a move is from one key to another');
      m = checkMeta(meta);
      const cur = this.s.at(from, null);
      if (cur === undefined || cur.deleted) throw new StoreError(STORE_ERRORS.NOT_FOUND, `no blob ${JSON.stringify(from)}`, cur?.deleted === true);
      this.check(to, cond);
    } catch (err) {
      this.none();
      throw err;
    }
    this.record(codecDelta(OP_MOVE, u.version, u.timestamp, [from, to, m]));
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

  /**
   * Live keys under `prefix` after `after` as of `at` (null: now), at most `limit` names; with a
   * `delimiter`, keys with it past the prefix roll up into one common prefix each (ending in the
   * delimiter, listed once, only when a live key is under it), S3 style: a directory listing.
   * [entries, more, common prefixes].
   */
  list(prefix: string, after: string | null, limit: number, at: bigint | null, delimiter: string | null = null): [WireVersion[], boolean, string[]] | Unstable {
    const u = this.unstable(at);
    if (u !== null) return u;
    if (delimiter !== null && (typeof delimiter !== 'string' || delimiter.length !== 1)) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a delimiter is one character');
    const max = Math.max(1, Math.min(MAX_PAGE_ENTRIES, limit));
    const out: WireVersion[] = [];
    const prefixes: string[] = [];
    const keys = this.s.sortedKeys;
    let scanned = 0;
    // After a common prefix, go on past every key under it.
    let i = delimiter !== null && after !== null && after.endsWith(delimiter) && after.startsWith(prefix) ? this.s.firstKeyIndex(pastPrefix(after), null) : this.s.firstKeyIndex(prefix, after);
    while (i < keys.length) {
      const k = keys[i]!;
      if (!k.startsWith(prefix)) return [out, false, prefixes];
      if (out.length + prefixes.length === max || scanned >= MAX_LIST_SCAN) return [out, true, prefixes];
      scanned++;
      const cut = delimiter === null ? -1 : k.indexOf(delimiter, prefix.length);
      if (cut >= 0) {
        const p = k.slice(0, cut + 1);
        const end = this.s.firstKeyIndex(pastPrefix(p), null);
        for (let j = i; j < end && scanned < MAX_LIST_SCAN; j++, scanned++) {
          const r = this.s.at(keys[j]!, at);
          if (r !== undefined && !r.deleted) {
            prefixes.push(p);
            break;
          }
        }
        i = end;
        continue;
      }
      const r = this.s.at(k, at);
      if (r !== undefined && !r.deleted) out.push(wire(r, false));
      i++;
    }
    return [out, false, prefixes];
  }

  /**
   * What a path lookup needs in one call: the version of `key` now (null) or at `at`, and the
   * timestamp of some live key under `key/` (a directory), or null. [version or null, timestamp or null].
   */
  lookup(key: string, at: bigint | null): [WireVersion | null, bigint | null] | Unstable {
    const u = this.unstable(at);
    if (u !== null) return u;
    const r = this.s.at(key, at);
    const v = r === undefined || r.deleted ? null : wire(r, true);
    const page = this.list(`${key}/`, null, 1, at);
    const child = Array.isArray(page) ? (page[0][0]?.[2] ?? null) : null;
    return [v, child];
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
    if (d === undefined || (d[0] !== OP_CHUNK && d[0] !== OP_SMALL) || d.toString('hex', DELTA_HEADER_BYTES, DELTA_HEADER_BYTES + CHUNK_ID_BYTES) !== hex) {
      throw new StoreError(STORE_ERRORS.CORRUPT, `the log entry of chunk ${hex} (version ${c.version}) is missing or holds something else`);
    }
    const from = (d[0] === OP_CHUNK ? CHUNK_BYTES_AT : SMALL_BYTES_AT) + offset;
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
  ordered: ['putChunk', 'putSmall', 'touchChunks', 'commit', 'remove', 'move', 'tick', 'collect'],
  p2p: ['head', 'lookup', 'list', 'versions', 'changes', 'readChunk', 'stats'],
  // They copy the chunk's bytes into their log entry and keep nothing else of their arguments.
  borrowing: ['putChunk', 'putSmall'],
});
