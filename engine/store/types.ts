/**
 * The versioned object store's interface to its front ends (blob-api/, fs/, the CLI): what a blob
 * version is, and what a StoreClient does. The front ends see only this file and the errors of
 * errors.ts; how versions are replicated (store-object.ts) and reached (store-client.ts) is below.
 *
 * Times: an HLC timestamp is `(µs since the epoch << 10) | logical` (persistence/hlc.ts). Reads
 * "at" a time take a `TimePoint`: the updates with timestamp <= that point, in every shard.
 */
import type { Readable } from 'node:stream';

/** One version of a key: a blob (manifest) or a delete marker. */
export interface BlobVersion {
  key: string;
  /** `(view id << 32) | sequence`, unique and growing within the key's shard. */
  version: bigint;
  /** HLC timestamp of the version (time order agrees with causality across shards). */
  timestamp: bigint;
  /** True for a delete marker (size 0, no chunks). */
  deleted: boolean;
  size: number;
  /**
   * The strong ETag (sent as `"<sha256>"`): the hex sha256 of the whole content; for a version the
   * mount composed from edited chunks without reading the rest of the file back, the hex sha256
   * of its chunk ids followed by `-<chunk count>` (as S3 tags multipart uploads).
   */
  sha256: string;
  content_type: string;
  /** Ids (hex sha256) of the content's chunks in order; each at most the store's chunk size. */
  chunks: string[];
  /** Bytes of each chunk, in order (sums to size). */
  chunk_sizes: number[];
  /** File-system attributes, when the mount (or a metadata change) set them; null for plain blobs. */
  meta: FileMeta | null;
}

/** A file's attributes as the mount keeps them in its versions. */
export interface FileMeta {
  /** Type and permission bits, as st_mode (S_IFREG, S_IFDIR or S_IFLNK). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, ms since the epoch (fractions kept). */
  mtime_ms: number;
  /**
   * Change time: when the data or attributes last changed, which the mount reports while a file
   * is open and keeps in the version committed at close (not the version's own timestamp, which
   * comes later), so a file's ctime does not move when it is closed.
   */
  ctime_ms: number;
}

/** A new version made of chunks already stored in the key's shard (StoreClient.commit). */
export interface NewManifest {
  /** Chunk ids (hex sha256) in order; every one but the last exactly chunk_size_bytes long. */
  chunks: string[];
  chunk_sizes: number[];
  /** The ETag (see BlobVersion.sha256). */
  sha256: string;
  content_type?: string;
  meta?: FileMeta | null;
}

/** A version without its chunk list (listings, version lists, watch events). */
export type BlobSummary = Omit<BlobVersion, 'chunks' | 'chunk_sizes'>;

/** Which version to read: the current one, an exact version, or the one current at a time. */
export type ReadPoint = { kind: 'current' } | { kind: 'version'; version: bigint } | { kind: 'at'; at: TimePoint };

/** A point in time to read at: every update with HLC timestamp <= hlc. */
export interface TimePoint {
  hlc: bigint;
  /** The same moment in epoch milliseconds (for messages and headers). */
  ms: number;
}

export interface PutOptions {
  content_type?: string;
  /** Length announced by the client (Content-Length), checked against what arrives. */
  expected_size?: number;
  /** Refuse (ERR_STORE_TOO_LARGE) as soon as more than this many bytes arrive. */
  max_size: number;
  /** `If-None-Match: *`: create only (ERR_STORE_PRECONDITION when a live version exists). */
  if_none_match_any?: boolean;
  /** `If-Match`: the current live version's etag (sha256 hex, no quotes) must be this one. */
  if_match?: string;
  /** Content-MD5 (base64 of the 16-byte digest): ERR_STORE_CHECKSUM on mismatch. */
  md5_base64?: string;
  /** x-checksum-sha256 (hex or base64 of the 32-byte digest): ERR_STORE_CHECKSUM on mismatch. */
  sha256?: string;
  /** Called as bytes are taken from the source (progress bars). */
  onProgress?: (bytes: number) => void;
  /** File-system attributes to record with the version. */
  meta?: FileMeta | null;
}

export interface DeleteOptions {
  if_match?: string;
}

export interface CommitOptions {
  /** Only when the key has no live version. */
  if_none_match_any?: boolean;
  /** Only when the live version's etag is this one (compare and swap). */
  if_match?: string;
}

export interface ListOptions {
  prefix: string;
  /** List as of this time (default: now). */
  at?: TimePoint;
  /** Return keys strictly after this one (pagination). */
  after?: string;
  /** At most this many entries and common prefixes together (1..1000). */
  limit: number;
  /** Roll keys with this character past the prefix up into common prefixes (a directory listing). */
  delimiter?: string;
}

export interface ListPage {
  entries: BlobSummary[];
  /** With a delimiter: the common prefixes (each ending in the delimiter) in this page, in order. */
  prefixes: string[];
  /** Set when more keys follow; pass it as `after` for the next page. */
  next_after: string | null;
}

/** A byte range of a blob: [start, end] inclusive, as HTTP Range has it (already resolved). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ClusterSummary {
  vid: number;
  leader: number;
  members: { id: number; ip: string; external_port: number; http_port?: number }[];
  /** Per subgroup type: shards as lists of member ids. */
  layout: { type: string; index: number; shards: number[][] }[];
  /** The store's shard count and chunk size. */
  store: { shards: number; chunk_size_bytes: number };
}

export interface StoreStats {
  keys: number;
  versions: number;
  chunks: number;
  /** Chunks referenced by no version (left by aborted uploads; collected after a grace period). */
  unreferenced_chunks: number;
  chunk_bytes: number;
  /**
   * Per shard, the newest update the answering replica has applied (delivered, so stable on every
   * replica of the shard): a read at any time up to `timestamp` is answered at once.
   */
  frontier: { shard: number; version: bigint; timestamp: bigint }[];
}

/** A watch subscription: versions under a prefix, in order per key (and per shard), each once. */
export interface Watch {
  /** Next event; resolves null once closed. */
  next(): Promise<BlobSummary | null>;
  close(): void;
}

/** What blob-api/ and fs/ call. Every method may throw a StoreError (errors.ts). */
export interface StoreClient {
  readonly chunk_size_bytes: number;
  /** Stores a new version from a stream of bytes, chunk by chunk (never whole in memory). */
  put(key: string, body: Readable | AsyncIterable<Buffer>, opts: PutOptions): Promise<BlobVersion>;
  /** The version at `point` (a delete marker is returned as such); ERR_STORE_NOT_FOUND when none. */
  head(key: string, point: ReadPoint): Promise<BlobVersion>;
  /** Streams the bytes of `v` (or of `range` of them), chunk by chunk, verified against the chunk ids. */
  read(v: BlobVersion, range?: ByteRange): Readable;
  /**
   * Stores one chunk (at most chunk_size_bytes) in the shard of `key`; resolves with its id (hex
   * sha256) once it is durable there. The caller may reuse `bytes` as soon as this returns,
   * unless it passes `owned`: then it leaves them unchanged until the promise settles (and saves
   * a copy).
   */
  putChunk(key: string, bytes: Buffer, opts?: { owned?: boolean }): Promise<string>;
  /**
   * A version of 1..chunk_size_bytes bytes in one update: the chunk and the commit together
   * (small files). `sha256` defaults to the content's.
   */
  putSmall(key: string, bytes: Buffer, m: { sha256?: string; content_type?: string | undefined; meta?: FileMeta | null | undefined }, cond?: CommitOptions): Promise<BlobVersion>;
  /** Keeps chunks stored for a version not committed yet (a file open for long) from collection. */
  touchChunks(key: string, ids: string[]): Promise<void>;
  /** Makes a version of `key` from chunks stored in its shard (putChunk, or other versions'). */
  commit(key: string, m: NewManifest, opts?: CommitOptions): Promise<BlobVersion>;
  /** The bytes of chunk `id` (`size` bytes long) in the shard of `key`, checked against the id. */
  readChunk(key: string, id: string, size: number): Promise<Buffer>;
  /**
   * Renames `from` to `to` in one update when both are in one shard (`to` gets from's content,
   * with `meta` when given; `from` a delete marker); ERR_STORE_BAD_REQUEST when they are not.
   */
  move(from: string, to: string, meta?: FileMeta | null): Promise<BlobVersion>;
  /**
   * A path lookup in one call: the live version of `key` at `point` (null when none or deleted),
   * and the timestamp of some live key under `key/` (null when none).
   */
  lookup(key: string, at: TimePoint | null): Promise<{ version: BlobVersion | null; child_timestamp: bigint | null }>;
  /** True when keys `a` and `b` live in the same shard (a version of one may use the other's chunks). */
  sameShard(a: string, b: string): Promise<boolean>;
  /** Writes a delete marker; ERR_STORE_NOT_FOUND when the key has no live version. */
  delete(key: string, opts?: DeleteOptions): Promise<BlobVersion>;
  list(opts: ListOptions): Promise<ListPage>;
  /** Every version of the key, oldest first, delete markers included. */
  versions(key: string): Promise<BlobSummary[]>;
  watch(prefix: string): Watch;
  cluster(): Promise<ClusterSummary>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}
