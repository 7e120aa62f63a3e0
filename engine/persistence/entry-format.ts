/**
 * The byte layout of segment files (all integers little-endian):
 *
 *   segment = segment header (40 bytes) + entries
 *   segment header: magic "TSEG" u32 | crc32 of bytes 8..40 u32 | format u32 | reserved u32 |
 *                   first_index u64 | prev_version i64 | prev_timestamp u64
 *   entry header:   magic "TENT" u32 | crc32 of header bytes 8..40 + payload u32 |
 *                   payload_length u32 | reserved u32 | version i64 | timestamp u64 | index u64
 *   then the payload.
 *
 * The segment header records the version and timestamp of the entry just before the segment's
 * first one, so a log whose old segments were trimmed still knows where its history starts, and
 * retention learns each segment's last version and time from the next segment's header.
 * One crc32 covers a whole entry: a torn or corrupt entry never passes it.
 */
import { crc32 } from 'node:zlib';
import { copyPieces, type Pieces, piecesLength } from '../util/pieces.js';

export const SEGMENT_HEADER_BYTES = 40;
export const ENTRY_HEADER_BYTES = 40;
export const SEGMENT_MAGIC = 0x4745_5354; // "TSEG" read as LE u32
export const ENTRY_MAGIC = 0x544e_4554; // "TENT" read as LE u32
export const SEGMENT_FORMAT = 1;
/** Payloads are at most this big (the length field is 32 bits; buffers stay well below it). */
export const MAX_PAYLOAD_BYTES = 0x7fff_ffff - ENTRY_HEADER_BYTES;

export interface SegmentHeader {
  first_index: number;
  prev_version: bigint;
  prev_timestamp: bigint;
}

export interface EntryHeader {
  payload_bytes: number;
  version: bigint;
  timestamp: bigint;
  index: number;
}

export function writeSegmentHeader(buf: Buffer, at: number, h: SegmentHeader): void {
  buf.writeUInt32LE(SEGMENT_MAGIC, at);
  buf.writeUInt32LE(SEGMENT_FORMAT, at + 8);
  buf.writeUInt32LE(0, at + 12);
  buf.writeBigUInt64LE(BigInt(h.first_index), at + 16);
  buf.writeBigInt64LE(h.prev_version, at + 24);
  buf.writeBigUInt64LE(h.prev_timestamp, at + 32);
  buf.writeUInt32LE(crc32(buf.subarray(at + 8, at + SEGMENT_HEADER_BYTES)), at + 4);
}

/** The header at `at`, or null if it is torn or corrupt. */
export function readSegmentHeader(buf: Buffer, at = 0): SegmentHeader | null {
  if (buf.length - at < SEGMENT_HEADER_BYTES) return null;
  if (buf.readUInt32LE(at) !== SEGMENT_MAGIC) return null;
  if (buf.readUInt32LE(at + 4) !== crc32(buf.subarray(at + 8, at + SEGMENT_HEADER_BYTES))) return null;
  if (buf.readUInt32LE(at + 8) !== SEGMENT_FORMAT) return null;
  return {
    first_index: Number(buf.readBigUInt64LE(at + 16)),
    prev_version: buf.readBigInt64LE(at + 24),
    prev_timestamp: buf.readBigUInt64LE(at + 32),
  };
}

/**
 * Writes header + payload at `at` (the caller made room for ENTRY_HEADER_BYTES + payload bytes).
 * O(payload): one copy and one crc pass. `view` is a DataView of `buf` (its 64-bit setters are
 * several times faster than Buffer's writeBigInt64LE).
 */
export function writeEntry(buf: Buffer, view: DataView, at: number, version: bigint, timestamp: bigint, index: number, payload: Pieces): number {
  const n = piecesLength(payload);
  view.setUint32(at, ENTRY_MAGIC, true);
  view.setUint32(at + 8, n, true);
  view.setUint32(at + 12, 0, true);
  view.setBigInt64(at + 16, version, true);
  view.setBigUint64(at + 24, timestamp, true);
  view.setUint32(at + 32, index % 0x1_0000_0000, true);
  view.setUint32(at + 36, Math.floor(index / 0x1_0000_0000), true);
  const end = copyPieces(buf, at + ENTRY_HEADER_BYTES, payload);
  view.setUint32(at + 4, crc32(buf.subarray(at + 8, end)), true);
  return end;
}

export const enum EntryCheck {
  Ok = 0,
  /** Not enough bytes in the buffer for the header or the payload it announces. */
  Short = 1,
  /** Wrong magic or checksum. */
  Corrupt = 2,
}

/**
 * Reads the header at `at` into `out` and checks the entry: EntryCheck.Short when `buf` ends
 * before the entry does (read more, or it is torn), Corrupt when magic or crc are wrong.
 * `out.payload_bytes` is set as soon as the header is there, so the caller knows how much to read.
 */
export function checkEntry(buf: Buffer, at: number, out: EntryHeader): EntryCheck {
  if (buf.length - at < ENTRY_HEADER_BYTES) return EntryCheck.Short;
  if (buf.readUInt32LE(at) !== ENTRY_MAGIC) return EntryCheck.Corrupt;
  const n = buf.readUInt32LE(at + 8);
  if (n > MAX_PAYLOAD_BYTES) return EntryCheck.Corrupt;
  out.payload_bytes = n;
  const end = at + ENTRY_HEADER_BYTES + n;
  if (end > buf.length) return EntryCheck.Short;
  if (buf.readUInt32LE(at + 4) !== crc32(buf.subarray(at + 8, end))) return EntryCheck.Corrupt;
  out.version = buf.readBigInt64LE(at + 16);
  out.timestamp = buf.readBigUInt64LE(at + 24);
  out.index = Number(buf.readBigUInt64LE(at + 32));
  return EntryCheck.Ok;
}

export function newEntryHeader(): EntryHeader {
  return { payload_bytes: 0, version: 0n, timestamp: 0n, index: 0 };
}
