/**
 * The LevelDB index of one log (npm `level`): an accelerator for reads of entries older than the
 * in-memory tail, rebuilt from the segments whenever it lags or is lost. It is a sparse block
 * index, as an SSTable's: the entries are cut into blocks (a run of at most `index_stride`
 * entries and about 64 KiB within one segment, never spanning a flush batch) and each block has
 * three keys, by the index, the version and the timestamp of its first entry, all mapping to
 * the block's location. A cold read is one floor seek plus one positioned read of the block;
 * indexing costs three puts per block instead of three per entry (LevelDB puts cost about
 * 1.5 us of main-thread time each, which per entry would cap the log near 100k entries/s).
 * `index_stride` = 1 gives a dense index.
 *
 * Keys: one prefix byte ('I', 'V', 'T') + the unsigned 64-bit big-endian number, so that byte
 * order is numeric order. Value (48 bytes, LE): first index u64 | version i64 | timestamp u64 |
 * segment first index u64 | offset u64 | bytes u32 | entry count u32.
 */
import * as fs from 'node:fs';
import { Level } from 'level';
import type { Logger } from '../util/log.js';
import { TempestError } from '../util/errors.js';

export interface BlockLocation {
  /** Index, version and timestamp of the block's first entry. */
  index: number;
  version: bigint;
  timestamp: bigint;
  /** First index of the segment holding the block, and the block's offset in it. */
  seg: number;
  offset: number;
  /** Bytes of the block (headers included) and its number of entries. */
  bytes: number;
  count: number;
}

const P_INDEX = 0x49;
const P_VERSION = 0x56;
const P_TIME = 0x54;
const VALUE_BYTES = 48;

type Db = Level<Buffer, Buffer>;

function key(prefix: number, n: bigint): Buffer {
  const k = Buffer.allocUnsafe(9);
  k[0] = prefix;
  k.writeBigUInt64BE(n < 0n ? 0n : n, 1);
  return k;
}

/** The first key of a prefix's range and the first key after it. */
const lowest = (prefix: number): Buffer => key(prefix, 0n);
const beyond = (prefix: number): Buffer => Buffer.from([prefix + 1]);

function encode(b: BlockLocation, out: Buffer, at: number): Buffer {
  out.writeBigUInt64LE(BigInt(b.index), at);
  out.writeBigInt64LE(b.version, at + 8);
  out.writeBigUInt64LE(b.timestamp, at + 16);
  out.writeBigUInt64LE(BigInt(b.seg), at + 24);
  out.writeBigUInt64LE(BigInt(b.offset), at + 32);
  out.writeUInt32LE(b.bytes, at + 40);
  out.writeUInt32LE(b.count, at + 44);
  return out.subarray(at, at + VALUE_BYTES);
}

function decode(v: Buffer): BlockLocation {
  return {
    index: Number(v.readBigUInt64LE(0)),
    version: v.readBigInt64LE(8),
    timestamp: v.readBigUInt64LE(16),
    seg: Number(v.readBigUInt64LE(24)),
    offset: Number(v.readBigUInt64LE(32)),
    bytes: v.readUInt32LE(40),
    count: v.readUInt32LE(44),
  };
}

export class LogIndex {
  private constructor(private readonly db: Db) {}

  /**
   * Opens (creating) the index in `dir`. A damaged index is wiped and rebuilt from the segments
   * by the caller; one held by another process or LogStore is ERR_PERSIST_LOCKED.
   */
  static async open(dir: string, log: Logger): Promise<LogIndex> {
    // Small: the index holds three keys per block, and a process may host many logs.
    const options = { keyEncoding: 'buffer', valueEncoding: 'buffer', cacheSize: 2 << 20, writeBufferSize: 1 << 20, maxOpenFiles: 64 } as const;
    let db: Db = new Level<Buffer, Buffer>(dir, options);
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new TempestError('ERR_PERSIST_LOCKED', `the log index ${dir} is in use by another process or log`, { cause: err });
      }
      log.warn({ dir, err: cause?.message ?? String(err) }, 'log index unreadable: rebuilding it from the segments');
      await fs.promises.rm(dir, { recursive: true, force: true });
      db = new Level<Buffer, Buffer>(dir, options);
      await db.open();
    }
    return new LogIndex(db);
  }

  /** Adds the keys of `blocks` in one LevelDB batch (not synced: the segments are the truth). */
  async putBlocks(blocks: readonly BlockLocation[]): Promise<void> {
    if (blocks.length === 0) return;
    const values = Buffer.allocUnsafe(blocks.length * VALUE_BYTES);
    const batch = this.db.batch();
    blocks.forEach((b, i) => {
      const v = encode(b, values, i * VALUE_BYTES);
      batch.put(key(P_INDEX, BigInt(b.index)), v);
      batch.put(key(P_VERSION, b.version), v);
      batch.put(key(P_TIME, b.timestamp), v);
    });
    await batch.write();
  }

  /** The block with the greatest first index <= i. */
  floorByIndex(i: number): Promise<BlockLocation | null> {
    return this.floor(P_INDEX, BigInt(i));
  }

  /** The block with the greatest first version <= v. */
  floorByVersion(v: bigint): Promise<BlockLocation | null> {
    return this.floor(P_VERSION, v);
  }

  /** The block with the greatest first timestamp <= t. */
  floorByTime(t: bigint): Promise<BlockLocation | null> {
    return this.floor(P_TIME, t);
  }

  /** The block with the greatest first index. */
  async last(): Promise<BlockLocation | null> {
    const rows = await this.db.iterator({ gte: lowest(P_INDEX), lt: beyond(P_INDEX), reverse: true, limit: 1 }).all();
    return rows[0] ? decode(rows[0][1]) : null;
  }

  /** Deletes the blocks starting at index >= `index`, version >= `version`, timestamp >= `timestamp`. */
  async deleteFrom(index: number, version: bigint, timestamp: bigint): Promise<void> {
    await Promise.all([
      this.db.clear({ gte: key(P_INDEX, BigInt(index)), lt: beyond(P_INDEX) }),
      this.db.clear({ gte: key(P_VERSION, version), lt: beyond(P_VERSION) }),
      this.db.clear({ gte: key(P_TIME, timestamp), lt: beyond(P_TIME) }),
    ]);
  }

  /** Deletes the blocks starting below index `index`, at or below version `version` and timestamp `timestamp`. */
  async deleteBelow(index: number, version: bigint, timestamp: bigint): Promise<void> {
    const ops: Promise<void>[] = [this.db.clear({ gte: lowest(P_INDEX), lt: key(P_INDEX, BigInt(index)) })];
    if (version >= 0n) ops.push(this.db.clear({ gte: lowest(P_VERSION), lte: key(P_VERSION, version) }));
    if (timestamp > 0n) ops.push(this.db.clear({ gte: lowest(P_TIME), lte: key(P_TIME, timestamp) }));
    await Promise.all(ops);
  }

  async clearAll(): Promise<void> {
    await this.db.clear();
  }

  close(): Promise<void> {
    return this.db.close();
  }

  private async floor(prefix: number, n: bigint): Promise<BlockLocation | null> {
    if (n < 0n) return null;
    const rows = await this.db.iterator({ gte: lowest(prefix), lte: key(prefix, n), reverse: true, limit: 1 }).all();
    return rows[0] ? decode(rows[0][1]) : null;
  }
}
