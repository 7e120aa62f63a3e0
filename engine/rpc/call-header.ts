/**
 * The header of an ordered call as it travels through the multicast (binary, fixed 40 bytes,
 * little-endian), followed by the method's arguments in the codec (codec.ts):
 *
 *   0  u16 method       index into the type's `ordered` list
 *   2  u16 flags        reserved (0)
 *   4  u32 origin       member collecting the replies (NO_ORIGIN: nobody)
 *   8  u64 hlc          the sender's hybrid-clock reading (hlc.ts); replicas stamp max(this, last + 1)
 *  16  u64 request     the origin's request number (replies are matched by it)
 *  24  u64 client      external client id (0: none); with `seq` it makes a retried call idempotent
 *  32  u64 seq         the client's request number
 */
import { TempestError } from '../util/errors.js';

export const CALL_HEADER_BYTES = 40;
export const NO_ORIGIN = 0xffffffff;

export interface CallHeader {
  method: number;
  origin: number;
  hlc: bigint;
  request: bigint;
  client: bigint;
  seq: bigint;
}

export function writeCallHeader(buf: Buffer, h: CallHeader): void {
  buf.writeUInt16LE(h.method, 0);
  buf.writeUInt16LE(0, 2);
  buf.writeUInt32LE(h.origin, 4);
  buf.writeBigUInt64LE(h.hlc, 8);
  buf.writeBigUInt64LE(h.request, 16);
  buf.writeBigUInt64LE(h.client, 24);
  buf.writeBigUInt64LE(h.seq, 32);
}

export function readCallHeader(buf: Buffer): CallHeader {
  if (buf.length < CALL_HEADER_BYTES) throw new TempestError('ERR_RPC_MALFORMED', `an ordered call of ${buf.length} bytes is shorter than its header`);
  return {
    method: buf.readUInt16LE(0),
    origin: buf.readUInt32LE(4),
    hlc: buf.readBigUInt64LE(8),
    request: buf.readBigUInt64LE(16),
    client: buf.readBigUInt64LE(24),
    seq: buf.readBigUInt64LE(32),
  };
}
