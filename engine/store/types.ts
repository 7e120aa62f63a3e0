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
  /** Hex sha256 of the whole content; the strong ETag is `"<sha256>"`. */
  sha256: string;
  content_type: string;
  /** Ids (hex sha256) of the content's chunks in order; each at most the store's chunk size. */
  chunks: string[];
  /** Bytes of each chunk, in order (sums to size). */
  chunk_sizes: number[];
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
}

export interface DeleteOptions {
  if_match?: string;
}

export interface ListOptions {
  prefix: string;
  /** List as of this time (default: now). */
  at?: TimePoint;
  /** Return keys strictly after this one (pagination). */
  after?: string;
  /** At most this many entries (1..1000). */
  limit: number;
}

export interface ListPage {
  entries: BlobSummary[];
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
