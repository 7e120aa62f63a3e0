/**
 * The StoreClient of types.ts over the group's external-client protocol: it works the same in a
 * member process (the HTTP API, the FUSE mount) and outside one (`tempest mount --connect`). Keys
 * map to shards of the BlobStore subgroup by hash (shard-map.ts); every call goes to a member of
 * the key's shard, fails over to another on a member's death and is retried with the same request
 * id, so a retried update is applied once (external-client.ts).
 *
 * Uploads are cut into chunks of `chunk_size_bytes` (the RDMC block size); each chunk is one
 * ordered call, with at most `upload_window` in flight, so an upload holds about that many chunks
 * in memory whatever its size. The version is committed (one more ordered call) only once every
 * chunk is durable on every shard member and the checksums held; an upload that fails anywhere
 * commits nothing, and its chunks are collected later (store-object.ts collect).
 *
 * Causality: the client keeps the newest timestamp it has seen and sends it with each update, so
 * an update it makes after another gets a later timestamp in whatever shard (consistent cuts).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ExternalClient } from '../rpc/external-client.js';
import { isRemoteError } from '../rpc/errors.js';
import type { OrderedOutcome } from '../rpc/query-results.js';
import { isTempestError, TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { StoreError, STORE_ERRORS, type StoreErrorCode } from './errors.js';
import { validateKey } from './key.js';
import { shardOfKey } from './shard-map.js';
import { type BlobStore, type CommitManifest, STORE_TYPE_NAME, type Unstable, type WireVersion, type WriteCondition } from './store-object.js';
import { CHUNK_ID_BYTES, type WireMeta } from './store-state.js';
import type { BlobSummary, BlobVersion, ByteRange, ClusterSummary, CommitOptions, DeleteOptions, FileMeta, NewManifest, ListOptions, ListPage, PutOptions, ReadPoint, StoreClient, StoreStats, TimePoint, Watch } from './types.js';

/** A member's own replicas, read without a round trip (the member's HTTP API and mount). */
export interface LocalReplicas {
  /** This member's replica of store shard `shard`, if it holds one. */
  replica(shard: number): BlobStore | undefined;
  /**
   * Sends an idempotent ordered call (a chunk) to shard `shard` from inside this member, without
   * the round trip through its own external port; undefined when it is not in that shard. The
   * arguments are encoded before it returns. Resolves as the external protocol answers, once
   * every replica of the shard has (so: stable and, in durable mode, persisted on all).
   */
  ordered?(shard: number, method: 'putChunk', args: unknown[], hlc: bigint): Promise<OrderedOutcome<unknown>> | undefined;
}

export interface StoreClientOptions {
  /** Members' external ports to start from. */
  contacts: { host: string; port: number }[];
  log: Logger;
  chunk_size_bytes: number;
  /** [DERECHO] max_p2p_reply_payload_size: remote chunk reads come in pieces under it. */
  max_reply_bytes: number;
  /** Largest request (a chunk plus framing). */
  max_request_bytes: number;
  /** Chunks of one upload in flight at once. */
  upload_window?: number;
  /** Chunks one download fetches ahead. */
  read_ahead?: number;
  /** Longest a read at a past time waits for that time to become stable, ms. */
  stable_wait_ms?: number;
  /** Longest one call waits across fail-overs, ms. */
  call_timeout_ms?: number;
  /** How often a watch asks each shard for new versions, ms. */
  watch_poll_ms?: number;
  local?: LocalReplicas;
}

const DEFAULT_UPLOAD_WINDOW = 8;
const DEFAULT_READ_AHEAD = 4;
const DEFAULT_STABLE_WAIT_MS = 10_000;
const DEFAULT_WATCH_POLL_MS = 200;
/** Room for the codec's framing in a reply carrying a chunk piece. */
const REPLY_MARGIN_BYTES = 4096;
/** Events a watch holds for a slow consumer before it stops asking for more. */
const WATCH_QUEUE_MAX = 10_000;
/** Pages of versions one versions() call reads at most (1,000 each). */
const MAX_VERSION_PAGES = 1_000;

/** Codes from below that mean "try later": no quorum, members gone, timeouts. */
const UNAVAILABLE_CODES = new Set([
  'ERR_NO_QUORUM',
  'ERR_MEMBERSHIP_OUTCOME_UNKNOWN',
  'ERR_MEMBERSHIP_CLOSED',
  'ERR_MEMBERSHIP_TIMEOUT',
  'ERR_MEMBERSHIP_BACKPRESSURE',
  'ERR_MULTICAST_WEDGED',
  'ERR_RPC_STARTING',
  'ERR_RPC_NOT_A_REPLICA',
  'ERR_RPC_NODE_REMOVED',
  'ERR_NOT_SHARD_MEMBER',
  'ERR_RPC_TIMEOUT',
  'ERR_RPC_NO_MEMBER',
  'ERR_RPC_CONNECTION_LOST',
  'ERR_RPC_CONNECT_FAILED',
  'ERR_RPC_CONNECT_TIMEOUT',
  'ERR_RPC_CLOSED',
]);

const STORE_CODES = new Set<string>(Object.values(STORE_ERRORS));

/** The error for a code from a replica or the rpc layer: the store's own, UNAVAILABLE, or as it is. */
function errorOfCode(code: string | undefined, message: string, cause: unknown): Error {
  if (code !== undefined && STORE_CODES.has(code)) return new StoreError(code as StoreErrorCode, message, false, { cause });
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) return new StoreError(STORE_ERRORS.UNAVAILABLE, `the store is unavailable: ${message}`, false, { cause });
  return cause instanceof Error ? cause : new TempestError(code ?? 'ERR_STORE_INTERNAL', message);
}

/** The StoreError for an error from the rpc layer (or a remote replica). */
export function toStoreError(err: unknown): Error {
  if (err instanceof StoreError) return err;
  const code = isRemoteError(err) ? err.remoteCode : isTempestError(err) ? err.code : undefined;
  return errorOfCode(code, (err as Error)?.message ?? String(err), err);
}

function isUnstable(v: unknown): v is Unstable {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as Unstable).unstable === 'bigint';
}

function metaOf(m: WireMeta | null | undefined): FileMeta | null {
  return m === null || m === undefined ? null : { mode: m[0], uid: m[1], gid: m[2], mtime_ms: m[3], ctime_ms: m[4] };
}

function wireMeta(m: FileMeta | null | undefined): WireMeta | null {
  return m === null || m === undefined ? null : [m.mode, m.uid, m.gid, m.mtime_ms, m.ctime_ms];
}

function toVersion(w: WireVersion): BlobVersion {
  const [key, version, timestamp, deleted, size, sha256, content_type, ids, sizes, meta] = w;
  const chunks: string[] = [];
  const chunk_sizes: number[] = [];
  if (ids !== null && sizes !== null) {
    for (let i = 0; i * CHUNK_ID_BYTES < ids.length; i++) {
      chunks.push(ids.toString('hex', i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES));
      chunk_sizes.push(sizes.readUInt32LE(i * 4));
    }
  }
  return { key, version, timestamp, deleted, size, sha256, content_type, chunks, chunk_sizes, meta: metaOf(meta) };
}

function toSummary(w: WireVersion): BlobSummary {
  const [key, version, timestamp, deleted, size, sha256, content_type, , , meta] = w;
  return { key, version, timestamp, deleted, size, sha256, content_type, meta: metaOf(meta) };
}

/** A checksum header's digest as bytes (hex or base64), or null when it is neither. */
function digestBytes(s: string, bytes: number): Buffer | null {
  if (new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(s)) return Buffer.from(s, 'hex');
  const b = Buffer.from(s, 'base64');
  return b.length === bytes && /^[A-Za-z0-9+/]+={0,2}$/.test(s) ? b : null;
}

/** The value of an ordered call (every replica computes the same one): the first success, else a failure. */
function valueOf(outcome: Promise<OrderedOutcome<unknown>>): Promise<unknown> {
  return outcome.then(
    (out) => {
      let failure: { code: string; message: string } | undefined;
      for (const r of out.replies.values()) {
        if (r.ok) return r.value;
        if (failure === undefined || failure.code === 'ERR_RPC_NODE_REMOVED') failure = r;
      }
      const f = failure ?? { code: 'ERR_RPC_NODE_REMOVED', message: 'no replica answered' };
      throw errorOfCode(f.code, f.message, undefined);
    },
    (err: unknown) => {
      throw toStoreError(err);
    },
  );
}

export class RemoteStoreClient implements StoreClient {
  readonly chunk_size_bytes: number;
  /** The newest timestamp this client has seen (sent with updates: causal time order). */
  private seen = 0n;
  private readonly ticking = new Map<number, Promise<void>>();
  private readonly watches = new Set<ShardWatch>();
  private closed = false;

  private constructor(
    private readonly ec: ExternalClient,
    private readonly opts: StoreClientOptions,
  ) {
    this.chunk_size_bytes = opts.chunk_size_bytes;
  }

  static async connect(opts: StoreClientOptions): Promise<RemoteStoreClient> {
    const ec = await ExternalClient.connect({
      contacts: opts.contacts,
      log: opts.log,
      call_timeout_ms: opts.call_timeout_ms ?? 30_000,
      max_request_bytes: opts.max_request_bytes,
      max_reply_bytes: opts.max_reply_bytes + REPLY_MARGIN_BYTES,
    });
    return new RemoteStoreClient(ec, opts);
  }

  private observe(ts: bigint): void {
    if (ts > this.seen) this.seen = ts;
  }

  /** The store's shard count in the current view. */
  private shards(): number {
    const sg = this.ec.cluster.layout.find((s) => s.type === STORE_TYPE_NAME && s.index === 0);
    if (sg === undefined || sg.shards.length === 0) throw new StoreError(STORE_ERRORS.UNAVAILABLE, 'the group hosts no store (yet)');
    return sg.shards.length;
  }

  private shardOf(key: string): number {
    return shardOfKey(key, this.shards());
  }

  /**
   * One ordered call on a shard; its value (every replica computes the same one). Starts the call
   * synchronously, so the caller may reuse buffers in `args` as soon as this returns.
   */
  private ordered(shard: number, method: string, args: unknown[], hlc = this.seen): Promise<unknown> {
    return valueOf(this.ec.ordered(STORE_TYPE_NAME, 0, shard, method, args, hlc));
  }

  /**
   * putChunk on a shard: from inside the member when it holds a replica of the shard, else (or
   * when that fails, as in a view change) through the external-client protocol, which retries
   * across members. Storing a chunk twice only touches it, so the second try is harmless. `bytes`
   * must stay unchanged until the returned promise settles.
   */
  private async sendChunk(shard: number, id: Buffer, bytes: Buffer): Promise<unknown> {
    try {
      const local = this.opts.local?.ordered?.(shard, 'putChunk', [id, bytes], this.seen);
      if (local !== undefined) return await valueOf(local);
    } catch (err) {
      this.opts.log.debug({ shard, err: (err as Error).message }, 'a chunk sent from inside the member failed; sending it again through the external protocol');
    }
    return await this.ordered(shard, 'putChunk', [id, bytes]);
  }

  private async p2p(shard: number, method: string, args: unknown[]): Promise<unknown> {
    const local = this.opts.local?.replica(shard);
    try {
      if (local !== undefined) return await (local[method as keyof BlobStore] as (...a: unknown[]) => unknown).apply(local, args);
      return await this.ec.p2p(STORE_TYPE_NAME, 0, shard, method, args);
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /** Makes shard `shard` final up to `at`: one tick stamped after it (one in flight per shard). */
  private async stabilize(shard: number, at: TimePoint): Promise<void> {
    let p = this.ticking.get(shard);
    if (p === undefined) {
      p = this.ordered(shard, 'tick', [], at.hlc > this.seen ? at.hlc : this.seen).then((ts) => this.observe(ts as bigint));
      this.ticking.set(shard, p);
      void p.finally(() => this.ticking.get(shard) === p && this.ticking.delete(shard)).catch(() => {});
    }
    await p;
  }

  /** A p2p read at a time, repeated after a tick while the shard answers unstable (bounded). */
  private async stableRead<T>(shard: number, at: TimePoint | undefined, read: () => Promise<T | Unstable>): Promise<T> {
    const deadline = Date.now() + (this.opts.stable_wait_ms ?? DEFAULT_STABLE_WAIT_MS);
    for (;;) {
      const r = await read();
      if (!isUnstable(r)) return r;
      if (at === undefined || Date.now() >= deadline) {
        throw new StoreError(STORE_ERRORS.UNAVAILABLE, `shard ${shard} did not become stable up to ${new Date(at?.ms ?? 0).toISOString()} within ${this.opts.stable_wait_ms ?? DEFAULT_STABLE_WAIT_MS} ms`);
      }
      await this.stabilize(shard, at);
    }
  }

  // ---- writes ----------------------------------------------------------------------------------

  async put(key: string, body: Readable | AsyncIterable<Buffer>, opts: PutOptions): Promise<BlobVersion> {
    validateKey(key);
    const shard = this.shardOf(key);
    const md5Want = opts.md5_base64 === undefined ? null : digestBytes(opts.md5_base64, 16);
    const shaWant = opts.sha256 === undefined ? null : digestBytes(opts.sha256, 32);
    if (opts.md5_base64 !== undefined && md5Want === null) throw new StoreError(STORE_ERRORS.CHECKSUM, 'Content-MD5 is not the base64 of 16 bytes');
    if (opts.sha256 !== undefined && shaWant === null) throw new StoreError(STORE_ERRORS.CHECKSUM, 'x-checksum-sha256 is not the hex or base64 of 32 bytes');
    if (opts.expected_size !== undefined && opts.expected_size > opts.max_size) throw new StoreError(STORE_ERRORS.TOO_LARGE, `${opts.expected_size} bytes is over the limit of ${opts.max_size}`);

    const chunk = this.chunk_size_bytes;
    const window = Math.max(1, this.opts.upload_window ?? DEFAULT_UPLOAD_WINDOW);
    const whole = createHash('sha256');
    const md5 = md5Want === null ? null : createHash('md5');
    const ids: Buffer[] = [];
    const sizes: number[] = [];
    const inFlight: Promise<unknown>[] = [];
    let failed: Error | null = null;
    // A chunk's buffer stays with its call until it settles (a failed call is sent again from
    // it), then is filled again: at most window + 1 buffers per upload, allocated once.
    const free: Buffer[] = [];
    let buf: Buffer = Buffer.allocUnsafe(chunk);
    let fill = 0;
    let total = 0;

    const send = (bytes: Buffer, whole: Buffer): void => {
      const id = createHash('sha256').update(bytes).digest();
      ids.push(id);
      sizes.push(bytes.length);
      const p = this.sendChunk(shard, id, bytes).finally(() => free.push(whole));
      p.catch((err: Error) => (failed ??= err));
      inFlight.push(p);
    };
    const settleAll = () => Promise.allSettled(inFlight);

    try {
      for await (const piece of body as AsyncIterable<Buffer | string>) {
        const b = typeof piece === 'string' ? Buffer.from(piece) : piece;
        total += b.length;
        if (total > opts.max_size) throw new StoreError(STORE_ERRORS.TOO_LARGE, `the body is over the limit of ${opts.max_size} bytes`);
        if (opts.expected_size !== undefined && total > opts.expected_size) throw new StoreError(STORE_ERRORS.SIZE_MISMATCH, `the body is longer than its announced ${opts.expected_size} bytes`);
        whole.update(b);
        md5?.update(b);
        opts.onProgress?.(total);
        for (let at = 0; at < b.length; ) {
          const n = Math.min(chunk - fill, b.length - at);
          b.copy(buf, fill, at, at + n);
          fill += n;
          at += n;
          if (fill === chunk) {
            send(buf, buf);
            buf = free.pop() ?? Buffer.allocUnsafe(chunk);
            fill = 0;
            if (failed !== null) throw failed;
            if (inFlight.length >= window) await inFlight.shift();
          }
        }
      }
      // A body of one chunk goes with its commit, in one update (below).
      if (fill > 0 && ids.length > 0) send(buf.subarray(0, fill), buf);
      for (const p of inFlight.splice(0)) await p;
    } catch (err) {
      await settleAll();
      const e = err instanceof StoreError ? err : failed ?? err;
      if (e instanceof StoreError || isTempestError(e)) throw toStoreError(e);
      throw new StoreError(STORE_ERRORS.ABORTED, `the upload was aborted: ${(e as Error)?.message ?? String(e)}`, false, { cause: e });
    }
    if (opts.expected_size !== undefined && total !== opts.expected_size) throw new StoreError(STORE_ERRORS.SIZE_MISMATCH, `the body has ${total} bytes, not the announced ${opts.expected_size}`);
    const sha = whole.digest();
    if (md5Want !== null && !md5!.digest().equals(md5Want)) throw new StoreError(STORE_ERRORS.CHECKSUM, 'the body does not match its Content-MD5');
    if (shaWant !== null && !sha.equals(shaWant)) throw new StoreError(STORE_ERRORS.CHECKSUM, 'the body does not match its x-checksum-sha256');
    const cond: WriteCondition = {};
    if (opts.if_none_match_any === true) cond.if_none_match_any = true;
    if (opts.if_match !== undefined) cond.if_match = opts.if_match;
    const small = ids.length === 0 && fill > 0 ? buf.subarray(0, fill) : null;
    if (small !== null) {
      const v = await this.putSmall(key, small, { sha256: sha.toString('hex'), content_type: opts.content_type, meta: opts.meta }, cond);
      return v;
    }
    const sizeBuf = Buffer.allocUnsafe(sizes.length * 4);
    sizes.forEach((n, i) => sizeBuf.writeUInt32LE(n, i * 4));
    const manifest: CommitManifest = { size: total, sha256: sha.toString('hex'), content_type: opts.content_type ?? 'application/octet-stream', ids: Buffer.concat(ids), sizes: sizeBuf, meta: wireMeta(opts.meta) };
    const [version, timestamp] = (await this.ordered(shard, 'commit', [key, manifest, cond])) as [bigint, bigint];
    this.observe(timestamp);
    return { key, version, timestamp, deleted: false, size: total, sha256: manifest.sha256, content_type: manifest.content_type, chunks: ids.map((i) => i.toString('hex')), chunk_sizes: sizes, meta: opts.meta ?? null };
  }

  async putSmall(key: string, bytes: Buffer, m: { sha256?: string; content_type?: string | undefined; meta?: FileMeta | null | undefined }, cond: CommitOptions = {}): Promise<BlobVersion> {
    validateKey(key);
    if (bytes.length === 0 || bytes.length > this.chunk_size_bytes) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `a small version is 1..${this.chunk_size_bytes} bytes, not ${bytes.length}`);
    const id = createHash('sha256').update(bytes).digest();
    const sizes = Buffer.allocUnsafe(4);
    sizes.writeUInt32LE(bytes.length, 0);
    const sha256 = m.sha256 ?? createHash('sha256').update(bytes).digest('hex');
    const manifest: CommitManifest = { size: bytes.length, sha256, content_type: m.content_type ?? 'application/octet-stream', ids: id, sizes, meta: wireMeta(m.meta) };
    const wc: WriteCondition = {};
    if (cond.if_none_match_any === true) wc.if_none_match_any = true;
    if (cond.if_match !== undefined) wc.if_match = cond.if_match;
    const [version, timestamp] = (await this.ordered(this.shardOf(key), 'putSmall', [key, id, bytes, manifest, wc])) as [bigint, bigint];
    this.observe(timestamp);
    return { key, version, timestamp, deleted: false, size: bytes.length, sha256, content_type: manifest.content_type, chunks: [id.toString('hex')], chunk_sizes: [bytes.length], meta: m.meta ?? null };
  }

  async touchChunks(key: string, ids: string[]): Promise<void> {
    validateKey(key);
    if (ids.length === 0) return;
    const raw = Buffer.allocUnsafe(ids.length * CHUNK_ID_BYTES);
    ids.forEach((id, i) => raw.write(id, i * CHUNK_ID_BYTES, 'hex'));
    await this.ordered(this.shardOf(key), 'touchChunks', [raw]);
  }

  putChunk(key: string, bytes: Buffer, opts: { owned?: boolean } = {}): Promise<string> {
    try {
      validateKey(key);
      if (bytes.length > this.chunk_size_bytes) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `a chunk is at most ${this.chunk_size_bytes} bytes, not ${bytes.length}`);
      const id = createHash('sha256').update(bytes).digest();
      const shard = this.shardOf(key);
      // Sent from inside the member, the bytes are needed again if it has to go the other way.
      const mine = opts.owned === true || this.opts.local?.ordered === undefined || this.opts.local.replica(shard) === undefined ? bytes : Buffer.from(bytes);
      return this.sendChunk(shard, id, mine).then(() => id.toString('hex'));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async commit(key: string, m: NewManifest, opts: CommitOptions = {}): Promise<BlobVersion> {
    validateKey(key);
    const n = m.chunks.length;
    if (m.chunk_sizes.length !== n) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a manifest has one size per chunk');
    const ids = Buffer.allocUnsafe(n * CHUNK_ID_BYTES);
    const sizes = Buffer.allocUnsafe(n * 4);
    let size = 0;
    for (let i = 0; i < n; i++) {
      const len = m.chunk_sizes[i]!;
      if (!/^[0-9a-f]{64}$/.test(m.chunks[i]!) || !Number.isInteger(len) || len < 1 || len > this.chunk_size_bytes || (i < n - 1 && len !== this.chunk_size_bytes)) {
        throw new StoreError(STORE_ERRORS.BAD_REQUEST, `chunk ${i} of the manifest is malformed (every chunk but the last is ${this.chunk_size_bytes} bytes)`);
      }
      ids.write(m.chunks[i]!, i * CHUNK_ID_BYTES, 'hex');
      sizes.writeUInt32LE(len, i * 4);
      size += len;
    }
    const manifest: CommitManifest = { size, sha256: m.sha256, content_type: m.content_type ?? 'application/octet-stream', ids, sizes, meta: wireMeta(m.meta) };
    const cond: WriteCondition = {};
    if (opts.if_none_match_any === true) cond.if_none_match_any = true;
    if (opts.if_match !== undefined) cond.if_match = opts.if_match;
    const [version, timestamp] = (await this.ordered(this.shardOf(key), 'commit', [key, manifest, cond])) as [bigint, bigint];
    this.observe(timestamp);
    return { key, version, timestamp, deleted: false, size, sha256: m.sha256, content_type: manifest.content_type, chunks: [...m.chunks], chunk_sizes: [...m.chunk_sizes], meta: m.meta ?? null };
  }

  async readChunk(key: string, id: string, size: number): Promise<Buffer> {
    validateKey(key);
    const raw = Buffer.from(id, 'hex');
    if (raw.length !== CHUNK_ID_BYTES) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `chunk id ${JSON.stringify(id)} is not 64 hex digits`);
    const bytes = await this.readChunkPart(this.shardOf(key), raw, 0, size);
    if (!createHash('sha256').update(bytes).digest().equals(raw)) throw new StoreError(STORE_ERRORS.CORRUPT, `chunk ${id} of ${JSON.stringify(key)} does not match its id`);
    return bytes;
  }

  async sameShard(a: string, b: string): Promise<boolean> {
    return this.shardOf(a) === this.shardOf(b);
  }

  async move(from: string, to: string, meta?: FileMeta | null): Promise<BlobVersion> {
    validateKey(from);
    validateKey(to);
    const shard = this.shardOf(from);
    if (shard !== this.shardOf(to)) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `${JSON.stringify(from)} and ${JSON.stringify(to)} are in different shards: copy, then delete`);
    const [version, timestamp] = (await this.ordered(shard, 'move', [from, to, wireMeta(meta), {}])) as [bigint, bigint];
    this.observe(timestamp);
    // The moved version as the shard now holds it (its content is from's at the move).
    return this.head(to, { kind: 'version', version });
  }

  async lookup(key: string, at: TimePoint | null): Promise<{ version: BlobVersion | null; child_timestamp: bigint | null }> {
    validateKey(key);
    const home = this.shardOf(key);
    // The key lives in its shard; keys under it may be in any shard.
    const answers = await Promise.all(
      Array.from({ length: this.shards() }, (_, shard) => this.stableRead(shard, at ?? undefined, () => this.p2p(shard, 'lookup', [key, at?.hlc ?? null]) as Promise<[WireVersion | null, bigint | null] | Unstable>)),
    );
    const w = answers[home]![0];
    let child: bigint | null = null;
    for (const [, c] of answers) if (c !== null && (child === null || c > child)) child = c;
    const version = w === null ? null : toVersion(w);
    if (version !== null) this.observe(version.timestamp);
    return { version, child_timestamp: child };
  }

  async delete(key: string, opts: DeleteOptions = {}): Promise<BlobVersion> {
    validateKey(key);
    const cond: WriteCondition = opts.if_match === undefined ? {} : { if_match: opts.if_match };
    const [version, timestamp] = (await this.ordered(this.shardOf(key), 'remove', [key, cond])) as [bigint, bigint];
    this.observe(timestamp);
    return { key, version, timestamp, deleted: true, size: 0, sha256: '', content_type: '', chunks: [], chunk_sizes: [], meta: null };
  }

  // ---- reads -----------------------------------------------------------------------------------

  async head(key: string, point: ReadPoint): Promise<BlobVersion> {
    validateKey(key);
    const shard = this.shardOf(key);
    const at = point.kind === 'at' ? point.at : undefined;
    const w = await this.stableRead(shard, at, () => this.p2p(shard, 'head', [key, at?.hlc ?? null, point.kind === 'version' ? point.version : null]) as Promise<WireVersion | Unstable | null>);
    if (w === null) {
      const what = point.kind === 'version' ? `version ${point.version} of ` : point.kind === 'at' ? `at ${new Date(point.at.ms).toISOString()} ` : '';
      throw new StoreError(STORE_ERRORS.NOT_FOUND, `no blob ${what}${JSON.stringify(key)}`);
    }
    const v = toVersion(w);
    this.observe(v.timestamp);
    return v;
  }

  read(v: BlobVersion, range?: ByteRange): Readable {
    if (v.deleted) throw new StoreError(STORE_ERRORS.NOT_FOUND, `${JSON.stringify(v.key)} is deleted at version ${v.version}`, true);
    const start = range?.start ?? 0;
    const end = range?.end ?? v.size - 1; // inclusive
    if (v.size === 0 || end < start) return Readable.from([]);
    if (start < 0 || end >= v.size) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `bytes ${start}-${end} are outside a blob of ${v.size} bytes`);
    const shard = this.shardOf(v.key);
    // The pieces to fetch: [chunk index, offset in chunk, length].
    const parts: [number, number, number][] = [];
    for (let i = 0, at = 0; i < v.chunks.length && at <= end; at += v.chunk_sizes[i]!, i++) {
      const size = v.chunk_sizes[i]!;
      if (at + size <= start) continue;
      const from = Math.max(start, at) - at;
      const to = Math.min(end + 1, at + size) - at;
      parts.push([i, from, to - from]);
    }
    const ahead = Math.max(1, this.opts.read_ahead ?? DEFAULT_READ_AHEAD);
    const fetches: Promise<Buffer>[] = [];
    let next = 0;
    const fetchPart = async (p: [number, number, number]): Promise<Buffer> => {
      const [i, off, len] = p;
      const id = Buffer.from(v.chunks[i]!, 'hex');
      const bytes = await this.readChunkPart(shard, id, off, len);
      // A whole chunk is checked against its id; a part of one has the log's checksum only.
      if (off === 0 && len === v.chunk_sizes[i] && !createHash('sha256').update(bytes).digest().equals(id)) {
        throw new StoreError(STORE_ERRORS.CORRUPT, `chunk ${v.chunks[i]} of ${JSON.stringify(v.key)} does not match its id`);
      }
      return bytes;
    };
    const top = () => {
      while (next < parts.length && fetches.length < ahead) {
        const f = fetchPart(parts[next++]!);
        f.catch(() => {});
        fetches.push(f);
      }
    };
    return Readable.from(
      (async function* () {
        try {
          while (fetches.length > 0 || next < parts.length) {
            top();
            yield await fetches.shift()!;
          }
        } finally {
          next = parts.length; // stop fetching when the reader goes away
        }
      })(),
      { objectMode: false, highWaterMark: 1 },
    );
  }

  /** Bytes of a chunk, in pieces that fit a p2p reply when the replica is remote. */
  private async readChunkPart(shard: number, id: Buffer, offset: number, length: number): Promise<Buffer> {
    if (this.opts.local?.replica(shard) !== undefined) return (await this.p2p(shard, 'readChunk', [id, offset, length])) as Buffer;
    const piece = Math.max(4096, this.opts.max_reply_bytes - REPLY_MARGIN_BYTES);
    if (length <= piece) return (await this.p2p(shard, 'readChunk', [id, offset, length])) as Buffer;
    const out: Buffer[] = [];
    for (let at = 0; at < length; at += piece) out.push((await this.p2p(shard, 'readChunk', [id, offset + at, Math.min(piece, length - at)])) as Buffer);
    return Buffer.concat(out);
  }

  async list(opts: ListOptions): Promise<ListPage> {
    if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > 1000) throw new StoreError(STORE_ERRORS.BAD_REQUEST, `limit must be 1..1000, not ${opts.limit}`);
    if (opts.delimiter !== undefined && opts.delimiter.length !== 1) throw new StoreError(STORE_ERRORS.BAD_REQUEST, 'a delimiter is one character');
    const n = this.shards();
    const pages = await Promise.all(
      Array.from({ length: n }, (_, shard) =>
        this.stableRead(shard, opts.at, () => this.p2p(shard, 'list', [opts.prefix, opts.after ?? null, opts.limit, opts.at?.hlc ?? null, opts.delimiter ?? null]) as Promise<[WireVersion[], boolean, string[]] | Unstable>),
      ),
    );
    // Entries and common prefixes of every shard in one order; a prefix several shards hold, once.
    type Name = { name: string; entry: WireVersion | null };
    const names: Name[] = [];
    const seen = new Set<string>();
    for (const [entries, , prefixes] of pages) {
      for (const e of entries) names.push({ name: e[0], entry: e });
      for (const p of prefixes ?? []) if (!seen.has(p)) seen.add(p) && names.push({ name: p, entry: null });
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const more = pages.some(([, m]) => m) || names.length > opts.limit;
    const page = names.slice(0, opts.limit);
    const entries = page.filter((x) => x.entry !== null).map((x) => toSummary(x.entry!));
    const prefixes = page.filter((x) => x.entry === null).map((x) => x.name);
    return { entries, prefixes, next_after: more && page.length > 0 ? page[page.length - 1]!.name : more ? (opts.after ?? null) : null };
  }

  async versions(key: string): Promise<BlobSummary[]> {
    validateKey(key);
    const shard = this.shardOf(key);
    const out: BlobSummary[] = [];
    let after = -1n;
    for (let page = 0; page < MAX_VERSION_PAGES; page++) {
      const [list, more] = (await this.p2p(shard, 'versions', [key, after])) as [WireVersion[], boolean];
      for (const w of list) out.push(toSummary(w));
      if (!more || list.length === 0) break;
      after = list[list.length - 1]![1];
    }
    return out;
  }

  watch(prefix: string): Watch {
    const w = new ShardWatch(this, prefix, this.opts.watch_poll_ms ?? DEFAULT_WATCH_POLL_MS);
    this.watches.add(w);
    w.onClose(() => this.watches.delete(w));
    return w;
  }

  /** @internal For ShardWatch: the shard count, and one page of changes of a shard. */
  watchShards(): number {
    return this.shards();
  }

  /** @internal */
  async changes(shard: number, prefix: string, after: bigint): Promise<[BlobSummary[], bigint]> {
    const [list, last] = (await this.p2p(shard, 'changes', [prefix, after, 1000])) as [WireVersion[], bigint];
    return [list.map(toSummary), last];
  }

  /** @internal The shard's last applied version (where a new watch starts). */
  async lastVersion(shard: number): Promise<bigint> {
    const s = (await this.p2p(shard, 'stats', [])) as ReturnType<BlobStore['stats']>;
    return s[6];
  }

  async cluster(): Promise<ClusterSummary> {
    const c = this.ec.cluster;
    return { vid: c.vid, leader: c.leader, members: c.members.map((m) => ({ ...m })), layout: c.layout.map((l) => ({ ...l, shards: l.shards.map((s) => [...s]) })), store: { shards: this.shards(), chunk_size_bytes: this.chunk_size_bytes } };
  }

  async stats(): Promise<StoreStats> {
    const out: StoreStats = { keys: 0, versions: 0, chunks: 0, unreferenced_chunks: 0, chunk_bytes: 0, frontier: [] };
    const all = await Promise.all(Array.from({ length: this.shards() }, (_, s) => this.p2p(s, 'stats', []) as Promise<ReturnType<BlobStore['stats']>>));
    for (const [shard, [keys, versions, chunks, unref, bytes, timestamp, version]] of all.entries()) {
      out.frontier.push({ shard, version, timestamp });
      out.keys += keys;
      out.versions += versions;
      out.chunks += chunks;
      out.unreferenced_chunks += unref;
      out.chunk_bytes += bytes;
    }
    return out;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.watches]) w.close();
    await this.ec.close();
  }
}

/**
 * A watch: polls each shard for versions after the last one it saw, and queues them (bounded: a
 * consumer that falls WATCH_QUEUE_MAX behind stops the polling until it catches up, so nothing is
 * dropped and memory stays bounded). Order is the shard's version order; each version once.
 */
class ShardWatch implements Watch {
  private readonly queue: BlobSummary[] = [];
  private waiter: ((v: BlobSummary | null) => void) | null = null;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly closeListeners: (() => void)[] = [];
  private readonly after: bigint[] = [];
  private readonly ready: Promise<void>;

  constructor(
    private readonly client: RemoteStoreClient,
    private readonly prefix: string,
    private readonly poll_ms: number,
  ) {
    this.ready = this.start();
    this.ready.catch(() => this.close());
  }

  private async start(): Promise<void> {
    const n = this.client.watchShards();
    for (let s = 0; s < n; s++) this.after.push(await this.client.lastVersion(s));
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.poll(), this.poll_ms);
  }

  private async poll(): Promise<void> {
    try {
      for (let s = 0; s < this.after.length && !this.closed && this.queue.length < WATCH_QUEUE_MAX; s++) {
        const [list, last] = await this.client.changes(s, this.prefix, this.after[s]!);
        if (last > this.after[s]!) this.after[s] = last;
        for (const v of list) this.push(v);
      }
    } catch {
      // A member failing over: the next poll asks again from the same version.
    }
    this.schedule();
  }

  private push(v: BlobSummary): void {
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w(v);
    } else this.queue.push(v);
  }

  async next(): Promise<BlobSummary | null> {
    await this.ready;
    if (this.queue.length > 0) return this.queue.shift()!;
    if (this.closed) return null;
    return new Promise((resolve) => (this.waiter = resolve));
  }

  onClose(fn: () => void): void {
    this.closeListeners.push(fn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.waiter?.(null);
    this.waiter = null;
    for (const fn of this.closeListeners) fn();
  }
}
