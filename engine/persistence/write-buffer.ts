/**
 * The bytes of appended entries not yet written to disk: one growing, reused buffer and the list
 * of (segment, file offset) pieces it maps to, in order. A flush writes each piece with one call
 * (one piece per segment; two when the batch crosses a segment boundary). The log keeps two of
 * these: one receiving appends, one being written.
 */
import { assert } from '../util/assert.js';
import type { Segment } from './segment.js';

export interface Piece {
  seg: Segment;
  file_offset: number;
  buf_offset: number;
  length: number;
}

/** Grows by doubling from here (a process may hold many logs, most of them quiet). */
const INITIAL_BYTES = 64 * 1024;
/** Buffers above this size shrink back after a long run of small batches. */
const SHRINK_ABOVE_BYTES = 16 << 20;
const SHRINK_AFTER_BATCHES = 64;

function viewOf(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export class WriteBuffer {
  buf: Buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  /** A DataView of `buf` (kept in step with it). */
  view: DataView = viewOf(this.buf);
  used = 0;
  readonly pieces: Piece[] = [];
  /** Index of the first entry held (when not empty) and one past the last. */
  first_index = 0;
  end_index = 0;
  last_version = -1n;
  private small_batches = 0;

  get empty(): boolean {
    return this.used === 0;
  }

  /** Makes room for `n` more bytes; returns the offset they go to. */
  reserve(n: number): number {
    const need = this.used + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, 0, this.used);
      this.buf = next;
      this.view = viewOf(next);
    }
    return this.used;
  }

  /** Records that the `n` bytes just written at `used` go to `seg` at `file_offset`. */
  commit(seg: Segment, file_offset: number, n: number): void {
    const last = this.pieces[this.pieces.length - 1];
    if (last !== undefined && last.seg === seg && last.file_offset + last.length === file_offset) last.length += n;
    else this.pieces.push({ seg, file_offset, buf_offset: this.used, length: n });
    this.used += n;
  }

  /** Offset in `buf` of the byte at `file_offset` of `seg`, or -1 when this buffer does not hold it. */
  locate(seg: Segment, file_offset: number): number {
    for (const p of this.pieces) {
      if (p.seg === seg && file_offset >= p.file_offset && file_offset < p.file_offset + p.length) {
        return p.buf_offset + (file_offset - p.file_offset);
      }
    }
    return -1;
  }

  clear(): void {
    if (this.buf.length > SHRINK_ABOVE_BYTES && this.used < this.buf.length / 8) {
      if (++this.small_batches >= SHRINK_AFTER_BATCHES) {
        this.buf = Buffer.allocUnsafe(this.buf.length / 2);
        this.view = viewOf(this.buf);
        this.small_batches = 0;
      }
    } else {
      this.small_batches = 0;
    }
    this.used = 0;
    this.pieces.length = 0;
  }

  /** Appends the contents of `later` (whose entries follow this buffer's) and empties it. */
  absorb(later: WriteBuffer): void {
    if (later.empty) return;
    if (this.empty) this.first_index = later.first_index;
    else assert(later.first_index === this.end_index, 'absorbed entries follow');
    for (const p of later.pieces) {
      this.reserve(p.length);
      later.buf.copy(this.buf, this.used, p.buf_offset, p.buf_offset + p.length);
      this.commit(p.seg, p.file_offset, p.length);
    }
    this.end_index = later.end_index;
    this.last_version = later.last_version;
    later.clear();
  }
}
