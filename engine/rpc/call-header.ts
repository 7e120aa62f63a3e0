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
  writeU64(buf, 16, h.request);
  writeU64(buf, 24, h.client);
  writeU64(buf, 32, h.seq);
}

/** A u64 from a bigint; one conversion to a number when it is below 2^53 (request, client, seq). */
export function writeU64(buf: Buffer, at: number, v: bigint): void {
  if (v >= 0n && v <= 0x1fffffffffffffn) {
    const n = Number(v);
    const lo = n % 0x100000000;
    buf.writeUInt32LE(lo, at);
    buf.writeUInt32LE((n - lo) / 0x100000000, at + 4);
  } else buf.writeBigUInt64LE(v, at);
}

/**
 * A u64 as a bigint. Read per delivered update: request, client and seq are usually small (or 0),
 * and a value below 2^53 converts from one number instead of two halves shifted and joined.
 */
export function readU64(buf: Buffer, at: number): bigint {
  const lo = buf[at]! + buf[at + 1]! * 0x100 + buf[at + 2]! * 0x10000 + buf[at + 3]! * 0x1000000;
  const hi = buf[at + 4]! + buf[at + 5]! * 0x100 + buf[at + 6]! * 0x10000 + buf[at + 7]! * 0x1000000;
  if (hi === 0) return lo === 0 ? 0n : BigInt(lo);
  if (hi < 0x200000) return BigInt(hi * 0x100000000 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function readCallHeader(buf: Buffer): CallHeader {
  if (buf.length < CALL_HEADER_BYTES) throw new TempestError('ERR_RPC_MALFORMED', `an ordered call of ${buf.length} bytes is shorter than its header`);
  return {
    method: buf[0]! | (buf[1]! << 8),
    origin: buf.readUInt32LE(4),
    hlc: readU64(buf, 8),
    request: readU64(buf, 16),
    client: readU64(buf, 24),
    seq: readU64(buf, 32),
  };
}
