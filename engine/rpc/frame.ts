/**
 * The RPC frame format, shared by WireServer, WireClient and FrameReader. All integers big-endian:
 *
 *   offset  size  field
 *   0       4     length of everything after this field: 11 + body bytes
 *   4       1     frame type: REQUEST 1, REPLY_OK 2, REPLY_ERROR 3, PUSH 4
 *   5       2     kind: a number the layer above defines (which method, which notification);
 *                 replies echo their request's kind
 *   7       8     request id (REQUEST, REPLY_*: chosen by the client, unique per connection);
 *                 for PUSH the connection's push sequence number, from 1
 *   15      n     body: opaque bytes (REPLY_ERROR: codec-encoded {code, message, name})
 *
 * A length below 11 or an unknown frame type breaks the stream: the connection is closed.
 */

export const FRAME_REQUEST = 1;
export const FRAME_REPLY_OK = 2;
export const FRAME_REPLY_ERROR = 3;
export const FRAME_PUSH = 4;

/** Bytes before the body. */
export const FRAME_HEADER_BYTES = 15;
/** Bytes counted by the length field besides the body. */
export const FRAME_LENGTH_OVERHEAD = FRAME_HEADER_BYTES - 4;
/** Largest body the u32 length field can describe. */
export const MAX_FRAME_BODY_BYTES = 0xffffffff - FRAME_LENGTH_OVERHEAD;
/** Largest kind (u16). */
export const MAX_KIND = 0xffff;

const TWO_32 = 0x100000000;

export function frameTypeName(type: number): string {
  switch (type) {
    case FRAME_REQUEST:
      return 'REQUEST';
    case FRAME_REPLY_OK:
      return 'REPLY_OK';
    case FRAME_REPLY_ERROR:
      return 'REPLY_ERROR';
    case FRAME_PUSH:
      return 'PUSH';
    default:
      return `unknown(${type})`;
  }
}

/** Writes a frame header into `buf` at `at` (15 bytes). */
export function writeFrameHeader(buf: Buffer, at: number, type: number, kind: number, idHi: number, idLo: number, body_bytes: number): void {
  buf.writeUInt32BE(FRAME_LENGTH_OVERHEAD + body_bytes, at);
  buf[at + 4] = type;
  buf.writeUInt16BE(kind, at + 5);
  buf.writeUInt32BE(idHi, at + 7);
  buf.writeUInt32BE(idLo, at + 11);
}

/** A frame header in a new 15-byte Buffer (from Node's pool for small allocations). */
export function frameHeader(type: number, kind: number, idHi: number, idLo: number, body_bytes: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(h, 0, type, kind, idHi, idLo, body_bytes);
  return h;
}

/** The id as a bigint, from its two u32 halves. */
export function idToBigInt(idHi: number, idLo: number): bigint {
  return idHi === 0 ? BigInt(idLo) : (BigInt(idHi) << 32n) | BigInt(idLo);
}

/** A bigint id (0 .. 2^64 - 1) as its two u32 halves. */
export function idFromBigInt(id: bigint): [hi: number, lo: number] {
  return [Number((id >> 32n) & 0xffffffffn), Number(id & 0xffffffffn)];
}

/** A number id (0 .. 2^53 - 1) as its two u32 halves. */
export function idFromNumber(id: number): [hi: number, lo: number] {
  return [Math.floor(id / TWO_32), id >>> 0];
}

/** A number id from its two halves (exact while below 2^53). */
export function idToNumber(idHi: number, idLo: number): number {
  return idHi * TWO_32 + idLo;
}
