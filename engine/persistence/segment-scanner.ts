/**
 * Sequential, checked reading of the entries of one segment file, a large chunk at a time (one
 * positioned read per chunk, not per entry). Used by recovery, by cold reads (scan a block found
 * in the index) and by entries() iteration. Every entry's checksum is verified.
 */
import { checkEntry, EntryCheck, ENTRY_HEADER_BYTES, type EntryHeader } from './entry-format.js';
import * as io from './fs-io.js';

export type ScanStatus = 'ok' | 'end' | 'torn' | 'corrupt';

export const DEFAULT_CHUNK_BYTES = 1 << 20;

export class SegmentScanner {
  /** File offset of the next entry (after a stop: where the valid entries end). */
  offset: number;
  /** 'end': clean end at `limit`; 'torn': an entry runs past `limit`; 'corrupt': bad magic or crc. */
  status: ScanStatus = 'ok';
  private chunk: Buffer = Buffer.alloc(0);
  private chunk_start = 0;

  constructor(
    private readonly fd: number,
    offset: number,
    /** Bytes of the file that may be read (its size, or what is known to be written). */
    private readonly limit: number,
    private readonly chunk_bytes = DEFAULT_CHUNK_BYTES,
  ) {
    this.offset = offset;
  }

  /**
   * The next entry: its header in `out`, and where its bytes are (`buf` stays valid: each chunk
   * is a fresh buffer). Null at the end or at a bad entry (see `status`).
   */
  async next(out: EntryHeader): Promise<{ buf: Buffer; at: number } | null> {
    if (this.status !== 'ok') return null;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.offset >= this.limit) {
        this.status = this.offset === this.limit ? 'end' : 'torn';
        return null;
      }
      const at = this.offset - this.chunk_start;
      const have = at >= 0 && at <= this.chunk.length ? this.chunk : null;
      if (have !== null) {
        const r = checkEntry(have, at, out);
        if (r === EntryCheck.Ok) {
          this.offset += ENTRY_HEADER_BYTES + out.payload_bytes;
          return { buf: have, at };
        }
        if (r === EntryCheck.Corrupt) {
          this.status = 'corrupt';
          return null;
        }
        // Short: the entry continues past the chunk (or past the file).
        const need = have.length - at >= ENTRY_HEADER_BYTES ? ENTRY_HEADER_BYTES + out.payload_bytes : ENTRY_HEADER_BYTES;
        if (this.offset + need > this.limit) {
          this.status = 'torn';
          return null;
        }
        await this.fill(need);
      } else {
        await this.fill(ENTRY_HEADER_BYTES);
      }
    }
    this.status = 'torn';
    return null;
  }

  private async fill(need: number): Promise<void> {
    const size = Math.min(Math.max(need, this.chunk_bytes), this.limit - this.offset);
    const buf = Buffer.allocUnsafe(size);
    const n = await io.pread(this.fd, buf, 0, size, this.offset);
    this.chunk = n === size ? buf : buf.subarray(0, n);
    this.chunk_start = this.offset;
  }
}
