/**
 * A file open for reading: one version, fixed at open (close-to-open consistency, and a snapshot
 * never changes anyway). Reads come chunk by chunk from the store with the next chunk fetched
 * ahead, so a sequential read keeps one request in flight while the kernel copies the last.
 */
import type { BlobVersion, StoreClient } from '../engine/store/types.js';
import type { FsMetrics } from './metrics.js';

/** Chunks fetched ahead of the one being read (a sequential read keeps this many requests in flight). */
const READ_AHEAD_CHUNKS = 2;
/** Chunks kept per handle: the one being read, those fetched ahead, and one behind. */
const CACHED_CHUNKS = READ_AHEAD_CHUNKS + 2;

export class ReadHandle {
  private readonly cache = new Map<number, Promise<Buffer>>();
  private readonly starts: number[] = [];

  constructor(
    readonly version: BlobVersion,
    private readonly store: StoreClient,
    private readonly metrics: FsMetrics,
  ) {
    let at = 0;
    for (const n of version.chunk_sizes) {
      this.starts.push(at);
      at += n;
    }
  }

  private chunk(i: number): Promise<Buffer> {
    let p = this.cache.get(i);
    if (p === undefined) {
      this.metrics.call('read');
      p = this.store.readChunk(this.version.key, this.version.chunks[i]!, this.version.chunk_sizes[i]!);
      p.catch(() => this.cache.delete(i));
      this.cache.set(i, p);
      while (this.cache.size > CACHED_CHUNKS) this.cache.delete(this.cache.keys().next().value!);
    }
    return p;
  }

  /** The chunk holding byte `pos` (chunks are chunk_size long but the last, so search by start). */
  private indexOf(pos: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async read(out: Buffer, len: number, pos: number): Promise<number> {
    const end = Math.min(pos + len, this.version.size);
    let copied = 0;
    for (let at = pos; at < end; ) {
      const i = this.indexOf(at);
      const bytes = await this.chunk(i);
      for (let j = i + 1; j <= i + READ_AHEAD_CHUNKS && j < this.starts.length; j++) if (!this.cache.has(j)) void this.chunk(j).catch(() => {});
      const off = at - this.starts[i]!;
      const n = Math.min(bytes.length - off, end - at);
      bytes.copy(out, copied, off, off + n);
      copied += n;
      at += n;
    }
    return copied;
  }
}
