/**
 * FrameReader: cuts a TCP byte stream into RPC frames (format in frame.ts), zero-copy where it can.
 *
 * - A frame wholly inside one socket chunk is delivered as a view (subarray) of that chunk.
 * - A frame spanning chunks is assembled once, into a Buffer of exactly its body size, allocated
 *   only after the length has passed the size limit.
 * - A frame whose body exceeds the limit is reported by its header (so the receiver can refuse it
 *   by id) and its body is skipped as it streams past, never buffered; the stream stays in sync.
 * - A length too small to hold a header, or a frame type the receiver does not accept, cannot be
 *   resynchronised: push() throws ERR_RPC_PROTOCOL and the reader stops.
 */
import { TempestError } from '../util/errors.js';
import { FRAME_HEADER_BYTES, FRAME_LENGTH_OVERHEAD, frameTypeName } from './frame.js';

export interface FrameSink {
  /** One whole frame. `body` may be a view of a socket chunk: valid as long as the chunk is kept. */
  onFrame(type: number, kind: number, idHi: number, idLo: number, body: Buffer): void;
  /** A frame whose body exceeds the limit; its body_bytes will be skipped. */
  onOversize(type: number, kind: number, idHi: number, idLo: number, body_bytes: number): void;
}

const S_HEADER = 0;
const S_BODY = 1;
const S_SKIP = 2;

export class FrameReader {
  private state = S_HEADER;
  /** A header split across chunks is gathered here. */
  private readonly header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  private headerFill = 0;
  /** The current frame's fields, once its header is read. */
  private type = 0;
  private kind = 0;
  private idHi = 0;
  private idLo = 0;
  private bodyLen = 0;
  /** S_BODY: the body being assembled and how much of it has arrived. */
  private body: Buffer | undefined;
  private bodyFill = 0;
  /** S_SKIP: body bytes still to discard. */
  private skipLeft = 0;
  private stopped = false;
  private readonly accepted: boolean[] = [];

  constructor(
    private readonly maxBody_bytes: number,
    acceptedTypes: readonly number[],
    private readonly sink: FrameSink,
  ) {
    for (const t of acceptedTypes) this.accepted[t] = true;
  }

  /** Bytes held for a frame not yet complete (a header part or a partly assembled body). */
  get pending_bytes(): number {
    return this.state === S_BODY ? this.bodyFill : this.headerFill;
  }

  /** Ignores all further input (after the connection failed, or from within a sink callback). */
  stop(): void {
    this.stopped = true;
    this.body = undefined;
  }

  /** Feeds one socket chunk; delivers every frame it completes. Throws ERR_RPC_PROTOCOL. */
  push(chunk: Buffer): void {
    const end = chunk.length;
    let off = 0;
    while (off < end && !this.stopped) {
      if (this.state === S_HEADER) {
        if (this.headerFill === 0 && end - off >= FRAME_HEADER_BYTES) {
          this.parseHeader(chunk, off);
          off += FRAME_HEADER_BYTES;
          if (this.state === S_HEADER) {
            // Accepted, not oversize: deliver in place when the whole body is here.
            if (end - off >= this.bodyLen) {
              const body = chunk.subarray(off, off + this.bodyLen);
              off += this.bodyLen;
              this.sink.onFrame(this.type, this.kind, this.idHi, this.idLo, body);
            } else {
              this.startBody();
            }
          }
          continue;
        }
        const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, end - off);
        chunk.copy(this.header, this.headerFill, off, off + n);
        this.headerFill += n;
        off += n;
        if (this.headerFill < FRAME_HEADER_BYTES) continue;
        this.headerFill = 0;
        this.parseHeader(this.header, 0);
        if (this.state === S_HEADER) this.startBody();
      } else if (this.state === S_BODY) {
        const body = this.body!;
        const n = Math.min(this.bodyLen - this.bodyFill, end - off);
        chunk.copy(body, this.bodyFill, off, off + n);
        this.bodyFill += n;
        off += n;
        if (this.bodyFill === this.bodyLen) this.finishBody();
      } else {
        const n = Math.min(this.skipLeft, end - off);
        this.skipLeft -= n;
        off += n;
        if (this.skipLeft === 0) this.state = S_HEADER;
      }
    }
  }

  /** Reads a header; leaves state S_HEADER for a frame to receive, S_SKIP for an oversize one. */
  private parseHeader(buf: Buffer, at: number): void {
    const length = buf.readUInt32BE(at);
    const type = buf[at + 4]!;
    if (length < FRAME_LENGTH_OVERHEAD) {
      this.stopped = true;
      throw new TempestError('ERR_RPC_PROTOCOL', `frame length ${length} is below the ${FRAME_LENGTH_OVERHEAD}-byte header`);
    }
    if (this.accepted[type] !== true) {
      this.stopped = true;
      throw new TempestError('ERR_RPC_PROTOCOL', `unexpected frame type ${frameTypeName(type)}`);
    }
    this.type = type;
    this.kind = buf.readUInt16BE(at + 5);
    this.idHi = buf.readUInt32BE(at + 7);
    this.idLo = buf.readUInt32BE(at + 11);
    this.bodyLen = length - FRAME_LENGTH_OVERHEAD;
    if (this.bodyLen > this.maxBody_bytes) {
      this.skipLeft = this.bodyLen;
      this.state = this.skipLeft > 0 ? S_SKIP : S_HEADER;
      this.sink.onOversize(type, this.kind, this.idHi, this.idLo, this.bodyLen);
    }
  }

  private startBody(): void {
    if (this.bodyLen === 0) {
      this.sink.onFrame(this.type, this.kind, this.idHi, this.idLo, Buffer.alloc(0));
      return;
    }
    this.body = Buffer.allocUnsafe(this.bodyLen);
    this.bodyFill = 0;
    this.state = S_BODY;
  }

  private finishBody(): void {
    const body = this.body!;
    this.body = undefined;
    this.state = S_HEADER;
    this.sink.onFrame(this.type, this.kind, this.idHi, this.idLo, body);
  }
}
