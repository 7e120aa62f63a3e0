/**
 * The base of a delta log: a full value as of one version, from which the entries after it are
 * replayed. One file, `base`, replaced atomically (temp file, fsync, rename, fsync of the
 * directory), so a crash leaves either the old base or the new one, never a mix.
 *
 * Layout (LE): magic "TBAS" u32 | crc32 of the rest u32 | version i64 | length u32 | reserved u32 | bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { TempestError } from '../util/errors.js';
import * as io from './fs-io.js';

const BASE_MAGIC = 0x5341_4254; // "TBAS"
const BASE_HEADER_BYTES = 24;
export const BASE_FILE = 'base';

export interface LogBase {
  version: bigint;
  bytes: Buffer;
}

export async function writeBase(dir: string, version: bigint, bytes: Uint8Array, durable: boolean): Promise<void> {
  const buf = Buffer.allocUnsafe(BASE_HEADER_BYTES + bytes.length);
  buf.writeUInt32LE(BASE_MAGIC, 0);
  buf.writeBigInt64LE(version, 8);
  buf.writeUInt32LE(bytes.length, 16);
  buf.writeUInt32LE(0, 20);
  buf.set(bytes, BASE_HEADER_BYTES);
  buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
  const file = path.join(dir, BASE_FILE);
  if (durable) {
    await io.writeFileAtomic(file, buf);
  } else {
    await fs.promises.writeFile(`${file}.tmp`, buf);
    await fs.promises.rename(`${file}.tmp`, file);
  }
}

/** The base, or null when none was written. A damaged base is ERR_PERSIST_CORRUPT. */
export async function readBase(dir: string): Promise<LogBase | null> {
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(path.join(dir, BASE_FILE));
  } catch (err) {
    if (io.errnoCode(err) === 'ENOENT') return null;
    throw new TempestError('ERR_PERSIST_IO', `cannot read the base of log ${dir}: ${(err as Error).message}`, { cause: err });
  }
  if (buf.length < BASE_HEADER_BYTES || buf.readUInt32LE(0) !== BASE_MAGIC || buf.readUInt32LE(4) !== crc32(buf.subarray(8)) || buf.readUInt32LE(16) !== buf.length - BASE_HEADER_BYTES) {
    throw new TempestError('ERR_PERSIST_CORRUPT', `the base of log ${dir} is damaged`);
  }
  return { version: buf.readBigInt64LE(8), bytes: buf.subarray(BASE_HEADER_BYTES) };
}

/** The version of the base (from its header only), or null when there is none. */
export async function readBaseVersion(dir: string): Promise<bigint | null> {
  let fd: number;
  try {
    fd = await io.open(path.join(dir, BASE_FILE), 'r');
  } catch (err) {
    if (io.errnoCode(err) === 'ENOENT') return null;
    throw new TempestError('ERR_PERSIST_IO', `cannot read the base of log ${dir}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const head = Buffer.alloc(BASE_HEADER_BYTES);
    const n = await io.pread(fd, head, 0, BASE_HEADER_BYTES, 0);
    if (n < BASE_HEADER_BYTES || head.readUInt32LE(0) !== BASE_MAGIC) throw new TempestError('ERR_PERSIST_CORRUPT', `the base of log ${dir} is damaged`);
    return head.readBigInt64LE(8);
  } finally {
    await io.close(fd);
  }
}

export async function removeBase(dir: string, durable: boolean): Promise<void> {
  await fs.promises.rm(path.join(dir, BASE_FILE), { force: true });
  if (durable) await io.fsyncDir(dir);
}
