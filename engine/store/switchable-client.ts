/**
 * A StoreClient the front ends keep while the member under it is replaced: when the member's group
 * loses its majority, the node closes the group and starts it again from its logs (the restart
 * path every process takes, engine/node.ts). Meanwhile every call fails at once with
 * ERR_STORE_UNAVAILABLE (HTTP 503, EAGAIN in the mount) instead of waiting on a group that cannot
 * order anything; calls already running on the old client end with its errors.
 */
import { Readable } from 'node:stream';
import { assert } from '../util/assert.js';
import { StoreError, STORE_ERRORS } from './errors.js';
import type { BlobSummary, BlobVersion, ByteRange, ClusterSummary, CommitOptions, DeleteOptions, FileMeta, NewManifest, TimePoint, ListOptions, ListPage, PutOptions, ReadPoint, StoreClient, StoreStats, Watch } from './types.js';

export class SwitchableStoreClient implements StoreClient {
  readonly chunk_size_bytes: number;
  private current: StoreClient | null;
  private why = 'this member is rejoining its group';

  constructor(first: StoreClient) {
    this.chunk_size_bytes = first.chunk_size_bytes;
    this.current = first;
  }

  /** Calls go to `client` from now on (a client of the same configuration, so the same chunk size). */
  attach(client: StoreClient): void {
    assert(client.chunk_size_bytes === this.chunk_size_bytes, 'a client of the same chunk size');
    this.current = client;
  }

  /** Calls fail with ERR_STORE_UNAVAILABLE (`why`) until the next attach. */
  detach(why: string): void {
    this.current = null;
    this.why = why;
  }

  private client(): StoreClient {
    if (this.current === null) throw new StoreError(STORE_ERRORS.UNAVAILABLE, `the store is unavailable: ${this.why}`);
    return this.current;
  }

  put(key: string, body: Readable | AsyncIterable<Buffer>, opts: PutOptions): Promise<BlobVersion> {
    return this.call((c) => c.put(key, body, opts));
  }
  head(key: string, point: ReadPoint): Promise<BlobVersion> {
    return this.call((c) => c.head(key, point));
  }
  read(v: BlobVersion, range?: ByteRange): Readable {
    try {
      return this.client().read(v, range);
    } catch (err) {
      return new Readable({
        read() {
          this.destroy(err as Error);
        },
      });
    }
  }
  putChunk(key: string, bytes: Buffer, opts?: { owned?: boolean }): Promise<string> {
    return this.call((c) => c.putChunk(key, bytes, opts));
  }
  putSmall(key: string, bytes: Buffer, m: { sha256?: string; content_type?: string | undefined; meta?: FileMeta | null | undefined }, cond?: CommitOptions): Promise<BlobVersion> {
    return this.call((c) => c.putSmall(key, bytes, m, cond));
  }
  touchChunks(key: string, ids: string[]): Promise<void> {
    return this.call((c) => c.touchChunks(key, ids));
  }
  commit(key: string, m: NewManifest, opts?: CommitOptions): Promise<BlobVersion> {
    return this.call((c) => c.commit(key, m, opts));
  }
  readChunk(key: string, id: string, size: number): Promise<Buffer> {
    return this.call((c) => c.readChunk(key, id, size));
  }
  move(from: string, to: string, meta?: FileMeta | null): Promise<BlobVersion> {
    return this.call((c) => c.move(from, to, meta));
  }
  lookup(key: string, at: TimePoint | null): Promise<{ version: BlobVersion | null; child_timestamp: bigint | null }> {
    return this.call((c) => c.lookup(key, at));
  }
  sameShard(a: string, b: string): Promise<boolean> {
    return this.client().sameShard(a, b);
  }
  delete(key: string, opts?: DeleteOptions): Promise<BlobVersion> {
    return this.call((c) => c.delete(key, opts));
  }
  list(opts: ListOptions): Promise<ListPage> {
    return this.call((c) => c.list(opts));
  }
  versions(key: string): Promise<BlobSummary[]> {
    return this.call((c) => c.versions(key));
  }
  watch(prefix: string): Watch {
    return this.client().watch(prefix);
  }
  cluster(): Promise<ClusterSummary> {
    return this.call((c) => c.cluster());
  }
  stats(): Promise<StoreStats> {
    return this.call((c) => c.stats());
  }
  /** Closes nothing: the node owns the clients it attaches. */
  async close(): Promise<void> {
    this.current = null;
  }

  /** Async, so that "no client now" is a rejected promise like any other store failure. */
  private async call<T>(fn: (c: StoreClient) => Promise<T>): Promise<T> {
    return fn(this.client());
  }
}
