/** Ready value codecs for Persistent<T> fields and PersistentMap values. */
import type { ValueCodec } from './persistent.js';

/** Buffers as they are (the log copies on append and hands out fresh buffers on reads). */
export const bufferCodec: ValueCodec<Buffer> = {
  encode: (v) => v,
  decode: (b) => b,
};

export const utf8Codec: ValueCodec<string> = {
  encode: (v) => Buffer.from(v, 'utf8'),
  decode: (b) => b.toString('utf8'),
};

/** JSON values (no bigint, no Map: use a dedicated codec for those). */
export function jsonCodec<T>(): ValueCodec<T> {
  return {
    encode: (v) => Buffer.from(JSON.stringify(v), 'utf8'),
    decode: (b) => JSON.parse(b.toString('utf8')) as T,
  };
}
