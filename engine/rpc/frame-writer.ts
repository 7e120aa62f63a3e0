/**
 * FrameWriter: writes RPC frames (format in frame.ts) to one socket, batching the frames of one
 * tick into one writev. The first frame of a tick corks the socket and a nextTick uncorks it, so
 * the many replies a burst of requests produces (or the many requests a burst of callers issues)
 * cost one system call instead of one each, for no added latency beyond the current tick.
 *
 * Small bodies are copied next to their header (one piece); larger bodies and every piece of a
 * Buffer[] body are written as they are, never copied: they must not change until written.
 */
import type { Socket } from 'node:net';
import { FRAME_HEADER_BYTES, frameHeader, writeFrameHeader } from './frame.js';

export type WireBody = Buffer | Buffer[];

/** Bodies up to this size share a Buffer with their header; larger ones are separate pieces. */
const COALESCE_MAX_BYTES = 2048;

export function bodyBytes(body: WireBody): number {
  if (!Array.isArray(body)) return body.length;
  let n = 0;
  for (const b of body) n += b.length;
  return n;
}

export class FrameWriter {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  /** Queues one frame; it goes out with the tick's other frames. `body_bytes` is bodyBytes(body). */
  write(type: number, kind: number, idHi: number, idLo: number, body: WireBody, body_bytes: number): void {
    const socket = this.socket;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(this.uncork);
    }
    if (!Array.isArray(body) && body_bytes <= COALESCE_MAX_BYTES) {
      const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body_bytes);
      writeFrameHeader(frame, 0, type, kind, idHi, idLo, body_bytes);
      frame.set(body, FRAME_HEADER_BYTES);
      socket.write(frame);
      return;
    }
    socket.write(frameHeader(type, kind, idHi, idLo, body_bytes));
    if (Array.isArray(body)) {
      for (const b of body) if (b.length > 0) socket.write(b);
    } else if (body_bytes > 0) {
      socket.write(body);
    }
  }
}
