/**
 * Chunk-sized buffers for files being written, reused instead of allocated per chunk: a sequential
 * write of a large file cycles through a few of them. Bounded: at most `max_free` are kept.
 */
export class ChunkPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly chunk_size_bytes: number,
    private readonly max_free: number,
  ) {}

  /** A buffer of chunk_size_bytes, all zeros (holes and file tails read as zeros). */
  take(): Buffer {
    const b = this.free.pop();
    if (b === undefined) return Buffer.alloc(this.chunk_size_bytes);
    b.fill(0);
    return b;
  }

  give(b: Buffer): void {
    if (b.length === this.chunk_size_bytes && this.free.length < this.max_free) this.free.push(b);
  }
}
