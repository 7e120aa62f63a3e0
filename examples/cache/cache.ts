/**
 * The Cache of the Derecho user guide (seed 003, "Replicated Objects"), as a Tempest replicated
 * class: a string map whose every change is a version in a Persistent log. `put` and `invalidate`
 * change state and are called with orderedSend (every replica applies them in the same order);
 * (`append` is ours: not idempotent, so a duplicate would show.) `get` and `contains` only read and are called with p2pSend on one replica. `getAt` reads the
 * map as it was at a version, a log index or a time (the log's history, DESIGN §8).
 *
 * The map is logged as deltas (the keys each call changed), not as a whole map per version.
 */
import type { DeltaSupport } from '../../engine/persistence/persistent.js';
import { Persistent } from '../../engine/persistence/persistent.js';
import { hlcFromMs } from '../../engine/persistence/hlc.js';
import { decode, encode } from '../../engine/rpc/codec.js';
import { replicatedType } from '../../engine/rpc/replicated-type.js';

/** Records the keys changed since the last version; a null value is a removal. */
class MapChanges implements DeltaSupport<Map<string, string>> {
  private pending: [string, string | null][] = [];

  record(key: string, value: string | null): void {
    this.pending.push([key, value]);
  }

  takeDelta(): Buffer | null {
    if (this.pending.length === 0) return null;
    const delta = encodeAsciiChanges(this.pending) ?? encode(this.pending);
    this.pending = [];
    return delta;
  }

  applyDelta(map: Map<string, string>, delta: Buffer): Map<string, string> {
    for (const [k, v] of decode(delta) as [string, string | null][]) {
      if (v === null) map.delete(k);
      else map.set(k, v);
    }
    return map;
  }
}

/**
 * encode(changes) for the common delta (a few changes, ASCII keys and values), written straight
 * into a Buffer of its exact size: every replica logs one per put, and encode() would write the
 * value into its scratch buffer and copy it out again. Byte for byte what encode() gives (codec.ts:
 * fixarray of fixarray pairs; strings as fixstr up to 10 units, else tag 0x08, varint length,
 * bytes; null 0x01); null when the changes are not of that kind.
 */
function encodeAsciiChanges(changes: readonly [string, string | null][]): Buffer | null {
  if (changes.length > 15) return null;
  let bytes = 1;
  for (const [k, v] of changes) {
    const kb = asciiStringBytes(k);
    const vb = v === null ? 1 : asciiStringBytes(v);
    if (kb < 0 || vb < 0) return null;
    bytes += 1 + kb + vb;
  }
  const out = Buffer.allocUnsafe(bytes);
  out[0] = 0x40 + changes.length;
  let at = 1;
  for (const [k, v] of changes) {
    out[at++] = 0x42;
    at = writeAsciiString(out, at, k);
    if (v === null) out[at++] = 0x01;
    else at = writeAsciiString(out, at, v);
  }
  return out;
}

/** Encoded size of an ASCII string (-1: not ASCII). */
function asciiStringBytes(s: string): number {
  const n = s.length;
  if (Buffer.byteLength(s, 'utf8') !== n) return -1;
  if (n <= 10) return 1 + n;
  let len = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) len++;
  return 1 + len + n;
}

function writeAsciiString(out: Buffer, at: number, s: string): number {
  const n = s.length;
  if (n <= 10) out[at++] = 0x20 + n;
  else {
    out[at++] = 0x08;
    let v = n;
    for (; v >= 0x80; v = Math.floor(v / 0x80)) out[at++] = (v % 0x80) | 0x80;
    out[at++] = v;
  }
  return at + out.write(s, at, n, 'latin1');
}

const mapCodec = {
  encode: (m: Map<string, string>): Buffer => encode(m),
  decode: (b: Buffer): Map<string, string> => decode(b) as Map<string, string>,
};

/** Where in the history to read: one of a version, a log index, or a time (epoch ms). */
export type HistoryPoint = { version: bigint } | { index: number } | { time_ms: number };

export class Cache {
  private readonly changes = new MapChanges();
  readonly data = new Persistent<Map<string, string>>(() => new Map(), mapCodec, { delta: this.changes });

  put(key: string, value: string): void {
    this.data.value.set(key, value);
    this.changes.record(key, value);
  }

  /** Appends to a key's value (not idempotent: a call applied twice would show twice). */
  append(key: string, text: string): string {
    const v = (this.data.value.get(key) ?? '') + text;
    this.put(key, v);
    return v;
  }

  invalidate(key: string): boolean {
    const had = this.data.value.delete(key);
    if (had) this.changes.record(key, null);
    return had;
  }

  get(key: string): string | undefined {
    return this.data.value.get(key);
  }

  contains(key: string): boolean {
    return this.data.value.has(key);
  }

  size(): number {
    return this.data.value.size;
  }

  /** The value of `key` as of a point in the history (undefined: not there then). */
  async getAt(key: string, at: HistoryPoint): Promise<string | undefined> {
    const map = 'version' in at ? await this.data.getAtVersion(at.version) : 'index' in at ? await this.data.getByIndex(at.index) : await this.data.getByTime(hlcFromMs(at.time_ms));
    return map?.get(key);
  }
}

export const CacheType = replicatedType({
  name: 'Cache',
  create: () => new Cache(),
  ordered: ['put', 'invalidate', 'append'],
  p2p: ['get', 'contains', 'size', 'getAt'],
});
