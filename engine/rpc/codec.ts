/**
 * The binary codec for the arguments and results of replicated-object method calls: compact,
 * typed (bigint, Map, Set, Date and bytes survive, unlike JSON), and safe on untrusted input.
 *
 * Every value starts with a one-byte tag:
 *
 *   0x00 undefined   0x01 null   0x02 false   0x03 true
 *   0x04 int         zigzag varint (integers with |n| < 2^52; larger ones are floats)
 *   0x05 float       float64 LE (-0, NaN, Infinity round-trip)
 *   0x06 / 0x07      bigint >= 0 / < 0: varint n, then n bytes of magnitude, big-endian
 *   0x08 string      varint n, n bytes UTF-8
 *   0x09 bytes       varint n, n bytes (decoded as a Buffer view of the input)
 *   0x0a array       varint n, n values
 *   0x0b object      varint n, n x (key: varint len + UTF-8, value)
 *   0x0c Map         varint n, n x (key value, value)
 *   0x0d Set         varint n, n values
 *   0x0e Date        float64 LE ms since the epoch
 *   0x0f Error       name (key string), message (key string), code (string or undefined value);
 *                    any Error encodes so, and decodes as a plain Error with that name, message
 *                    and code (no stack, no subclass)
 *   0x20..0x3f       string of 0..31 UTF-8 bytes, the bytes follow
 *   0x40..0x4f       array of 0..15 values       0x50..0x5f  object of 0..15 entries
 *   0x80..0xff       the integer 0..127
 *
 * Other tags are malformed. Varints are LEB128, at most 8 bytes, at most 2^53 - 1. Objects are
 * plain ones (prototype Object.prototype or null) with their own enumerable string keys; symbol
 * keys are left out. Functions, symbols, other class instances (typed arrays other than
 * Uint8Array included) and cycles are ERR_CODEC_UNSUPPORTED, naming the path (`args[1].user.cb`).
 *
 * Decoding never trusts a length: every count is checked against the bytes left before anything
 * is built (each element takes at least one byte), nesting is bounded (64), and so are the total
 * elements and bigint size; any violation is ERR_CODEC_MALFORMED, never a RangeError or a hang.
 * Strings decode with WHATWG replacement of invalid UTF-8 (the same bytes give the same string on
 * every replica); lone surrogates in encoded strings become U+FFFD.
 */
import { TempestError } from '../util/errors.js';

/** Deepest nesting of arrays, objects, maps, sets and errors, encoding and decoding. */
export const MAX_DEPTH = 64;
/** Default limit of elements (array items, object/map entries, set members) in one decoded value. */
export const DEFAULT_MAX_ELEMENTS = 4 * 1024 * 1024;
/** Default limit of a decoded bigint's magnitude, bytes. */
export const DEFAULT_MAX_BIGINT_BYTES = 1024 * 1024;
/** Default smallest Buffer that encodeChunks() passes by reference instead of copying, bytes. */
export const DEFAULT_ZERO_COPY_MIN_BYTES = 4096;

const T_UNDEFINED = 0x00;
const T_NULL = 0x01;
const T_FALSE = 0x02;
const T_TRUE = 0x03;
const T_INT = 0x04;
const T_FLOAT = 0x05;
const T_BIGINT_POS = 0x06;
const T_BIGINT_NEG = 0x07;
const T_STRING = 0x08;
const T_BYTES = 0x09;
const T_ARRAY = 0x0a;
const T_OBJECT = 0x0b;
const T_MAP = 0x0c;
const T_SET = 0x0d;
const T_DATE = 0x0e;
const T_ERROR = 0x0f;
const T_FIXSTR = 0x20; // .. 0x3f
const T_FIXARRAY = 0x40; // .. 0x4f
const T_FIXOBJECT = 0x50; // .. 0x5f
const T_FIXINT = 0x80; // .. 0xff

const FIXSTR_MAX = 31;
const FIXCONTAINER_MAX = 15;
const FIXINT_MAX = 127;
/** Integers in [-2^52, 2^52) are varints: their zigzag form stays within 2^53 - 1. */
const INT_LIMIT = 2 ** 52;
const VARINT_MAX_BYTES = 8;
/** Strings of at most this many UTF-16 units fit a fixstr (3 UTF-8 bytes per unit at most). */
const FIXSTR_MAX_UNITS = Math.floor(FIXSTR_MAX / 3);
/** Strings of at most this many UTF-16 units have a UTF-8 length below 128 (a 1-byte varint). */
const SHORT_STR_MAX_UNITS = Math.floor(127 / 3);
/** Short ASCII strings are decoded in JS; longer ones by Buffer#toString. */
const DECODE_ASCII_MAX = 24;

// ---- encoding ------------------------------------------------------------------------------------

/** Raised inside the encoder and given path segments on its way out; never escapes encode(). */
class PathFault {
  readonly segments: string[] = [];
  constructor(readonly reason: string) {}
}

function withSegment(err: unknown, segment: string): unknown {
  if (err instanceof PathFault) err.segments.push(segment);
  return err;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function keySegment(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function describeKey(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key);
  if (typeof key === 'number' || typeof key === 'boolean' || typeof key === 'bigint') return String(key);
  return typeof key;
}

function describeUnsupported(v: unknown): string {
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return 'a symbol';
  const ctor = (Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null)?.constructor?.name;
  return `an instance of ${ctor || 'an unnamed class'}`;
}

export interface EncoderOptions {
  /** First size of the scratch buffer, bytes. */
  initial_bytes?: number;
  /** reset() drops a scratch buffer grown beyond this, so one huge message does not pin memory. */
  max_retained_bytes?: number;
  /**
   * Buffers of at least this many bytes are not copied but referenced by finishChunks()
   * (default: never, everything is copied).
   */
  zeroCopyMin_bytes?: number;
}

/**
 * Encodes values into one reusable, growing scratch buffer: after warm-up, encoding allocates
 * nothing but what the caller keeps. Several values may be written one after another and read
 * back with a Decoder. finish() and finishChunks() return views of the scratch buffer, valid until
 * the next reset().
 */
export class Encoder {
  private buf: Buffer;
  private pos = 0;
  private readonly initial_bytes: number;
  private readonly maxRetained_bytes: number;
  /** Buffers of at least this size are referenced, not copied (Infinity: never); may change between values. */
  zeroCopyMin_bytes: number;
  /** Finished pieces when Buffers were passed by reference: scratch views and caller Buffers. */
  private chunks: Buffer[] = [];
  /** chunks[i] is a view of the scratch buffer (true) or the caller's memory (false). */
  private chunkIsOwn: boolean[] = [];
  /** Start in `buf` of the scratch bytes not yet in `chunks`. */
  private segStart = 0;
  /** Containers being encoded, outermost first, for cycle detection. */
  private readonly ancestors: object[] = [];
  private depth = 0;

  constructor(opts: EncoderOptions = {}) {
    this.initial_bytes = Math.max(64, opts.initial_bytes ?? 1024);
    this.maxRetained_bytes = Math.max(this.initial_bytes, opts.max_retained_bytes ?? 1024 * 1024);
    this.zeroCopyMin_bytes = opts.zeroCopyMin_bytes ?? Infinity;
    this.buf = Buffer.allocUnsafe(this.initial_bytes);
  }

  /** Bytes encoded since the last reset() (references included). */
  get length_bytes(): number {
    let n = this.pos - this.segStart;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  /** Starts over; views returned earlier are overwritten by later writes. */
  reset(): void {
    if (this.buf.length > this.maxRetained_bytes) this.buf = Buffer.allocUnsafe(this.initial_bytes);
    this.pos = 0;
    this.segStart = 0;
    if (this.chunks.length > 0) {
      this.chunks = [];
      this.chunkIsOwn = [];
    }
  }

  /**
   * Appends one value. `root` names it in errors (`args[1].user.cb`). On ERR_CODEC_UNSUPPORTED
   * nothing of the value stays written and the encoder remains usable.
   */
  write(value: unknown, root = 'value'): this {
    const pos = this.pos;
    const segStart = this.segStart;
    const nChunks = this.chunks.length;
    this.depth = 0;
    try {
      this.writeAny(value);
    } catch (err) {
      this.pos = pos;
      this.segStart = segStart;
      this.chunks.length = nChunks;
      this.chunkIsOwn.length = nChunks;
      this.ancestors.length = 0;
      this.depth = 0;
      if (err instanceof PathFault) {
        const path = root + err.segments.reverse().join('');
        throw new TempestError('ERR_CODEC_UNSUPPORTED', `cannot encode ${path}: ${err.reason}`);
      }
      throw err;
    }
    return this;
  }

  /** Everything written since reset() as one Buffer: a view, unless Buffers were referenced. */
  finish(): Buffer {
    if (this.chunks.length === 0) return this.buf.subarray(0, this.pos);
    return Buffer.concat(this.finishChunks());
  }

  /**
   * Everything written since reset() as pieces for writev: views of the scratch buffer and, for
   * Buffers of at least zeroCopyMin_bytes, the caller's own Buffers (which must not change until
   * the pieces are sent).
   */
  finishChunks(): Buffer[] {
    const out = this.chunks.slice();
    if (this.pos > this.segStart) out.push(this.buf.subarray(this.segStart, this.pos));
    return out;
  }

  /** Like finishChunks(), but the scratch parts are copied into one new Buffer the caller owns. */
  detachChunks(): Buffer[] {
    const pieces = this.finishChunks();
    const own = this.chunkIsOwn.slice();
    if (this.pos > this.segStart) own.push(true);
    let ownBytes = 0;
    for (let i = 0; i < pieces.length; i++) if (own[i]) ownBytes += pieces[i]!.length;
    const copy = Buffer.allocUnsafe(ownBytes);
    let at = 0;
    for (let i = 0; i < pieces.length; i++) {
      if (!own[i]) continue;
      const p = pieces[i]!;
      copy.set(p, at);
      pieces[i] = copy.subarray(at, at + p.length);
      at += p.length;
    }
    return pieces;
  }

  // -- internals --

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const size = Math.max(this.buf.length * 2, this.pos + n);
    const next = Buffer.allocUnsafe(size);
    // Earlier chunks stay views of the old buffer, whose bytes do not change.
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private writeVarint(v: number): void {
    this.ensure(VARINT_MAX_BYTES);
    const buf = this.buf;
    let pos = this.pos;
    if (v < 0x80000000) {
      while (v >= 0x80) {
        buf[pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
    } else {
      while (v >= 0x80) {
        buf[pos++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  private writeTag(tag: number): void {
    this.ensure(1);
    this.buf[this.pos++] = tag;
  }

  private writeFloat(tag: number, v: number): void {
    this.ensure(9);
    this.buf[this.pos] = tag;
    this.buf.writeDoubleLE(v, this.pos + 1);
    this.pos += 9;
  }

  private writeNumber(v: number): void {
    if (Number.isInteger(v) && v >= -INT_LIMIT && v < INT_LIMIT && !(v === 0 && 1 / v < 0)) {
      if (v >= 0 && v <= FIXINT_MAX) {
        this.writeTag(T_FIXINT + v);
        return;
      }
      this.writeTag(T_INT);
      this.writeVarint(v >= 0 ? v * 2 : -v * 2 - 1);
      return;
    }
    this.writeFloat(T_FLOAT, v);
  }

  private writeBigInt(v: bigint): void {
    const negative = v < 0n;
    const magnitude = negative ? -v : v;
    this.writeTag(negative ? T_BIGINT_NEG : T_BIGINT_POS);
    if (magnitude === 0n) {
      this.writeVarint(0);
      return;
    }
    let hex = magnitude.toString(16);
    if (hex.length & 1) hex = '0' + hex;
    const n = hex.length >>> 1;
    this.writeVarint(n);
    this.ensure(n);
    this.buf.write(hex, this.pos, n, 'hex');
    this.pos += n;
  }

  /** Writes short ASCII in JS; returns false (writing nothing) at the first non-ASCII unit. */
  private writeAsciiAt(s: string, at: number): boolean {
    const buf = this.buf;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return false;
      buf[at + i] = c;
    }
    return true;
  }

  private writeString(s: string): void {
    const units = s.length;
    if (units <= FIXSTR_MAX_UNITS) {
      this.ensure(1 + FIXSTR_MAX);
      const n = this.writeAsciiAt(s, this.pos + 1) ? units : this.buf.write(s, this.pos + 1, 'utf8');
      this.buf[this.pos] = T_FIXSTR + n;
      this.pos += 1 + n;
      return;
    }
    this.writeTag(T_STRING);
    this.writeStringBody(s);
  }

  /** varint length + UTF-8, as object keys and error fields are written. */
  private writeStringBody(s: string): void {
    const units = s.length;
    if (units <= SHORT_STR_MAX_UNITS) {
      this.ensure(1 + 3 * units);
      const n = this.writeAsciiAt(s, this.pos + 1) ? units : this.buf.write(s, this.pos + 1, 'utf8');
      this.buf[this.pos] = n;
      this.pos += 1 + n;
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.writeVarint(n);
    this.ensure(n);
    // As many bytes as units: all ASCII, which latin1 writes as a plain copy (UTF-8's same bytes, faster).
    this.buf.write(s, this.pos, n, n === units ? 'latin1' : 'utf8');
    this.pos += n;
  }

  private writeBytes(v: Uint8Array): void {
    const n = v.byteLength;
    this.writeTag(T_BYTES);
    this.writeVarint(n);
    if (n >= this.zeroCopyMin_bytes) {
      if (this.pos > this.segStart) {
        this.chunks.push(this.buf.subarray(this.segStart, this.pos));
        this.chunkIsOwn.push(true);
      }
      this.chunks.push(Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, n));
      this.chunkIsOwn.push(false);
      this.segStart = this.pos;
      return;
    }
    this.ensure(n);
    this.buf.set(v, this.pos);
    this.pos += n;
  }

  private enter(container: object): void {
    if (this.depth >= MAX_DEPTH) throw new PathFault(`nesting deeper than ${MAX_DEPTH}`);
    for (let i = 0; i < this.depth; i++) {
      if (this.ancestors[i] === container) throw new PathFault('cyclic structure (refers to an enclosing value)');
    }
    this.ancestors[this.depth++] = container;
  }

  private leave(): void {
    this.ancestors[--this.depth] = undefined as unknown as object;
  }

  private writeAny(v: unknown): void {
    switch (typeof v) {
      case 'number':
        return this.writeNumber(v);
      case 'string':
        return this.writeString(v);
      case 'boolean':
        return this.writeTag(v ? T_TRUE : T_FALSE);
      case 'undefined':
        return this.writeTag(T_UNDEFINED);
      case 'bigint':
        return this.writeBigInt(v);
      case 'object':
        return this.writeObjectLike(v);
      default:
        throw new PathFault(`${describeUnsupported(v)} is not supported`);
    }
  }

  private writeObjectLike(v: object | null): void {
    if (v === null) return this.writeTag(T_NULL);
    if (Array.isArray(v)) return this.writeArray(v);
    if (v instanceof Uint8Array) return this.writeBytes(v);
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) return this.writePlainObject(v as Record<string, unknown>);
    if (v instanceof Map) return this.writeMap(v);
    if (v instanceof Set) return this.writeSet(v);
    if (v instanceof Date) return this.writeFloat(T_DATE, v.getTime());
    if (v instanceof Error) return this.writeError(v);
    throw new PathFault(`${describeUnsupported(v)} is not supported`);
  }

  private writeArray(v: readonly unknown[]): void {
    this.enter(v);
    const n = v.length;
    if (n <= FIXCONTAINER_MAX) this.writeTag(T_FIXARRAY + n);
    else {
      this.writeTag(T_ARRAY);
      this.writeVarint(n);
    }
    let i = 0;
    try {
      for (; i < n; i++) this.writeAny(v[i]);
    } catch (err) {
      throw withSegment(err, `[${i}]`);
    }
    this.leave();
  }

  private writePlainObject(v: Record<string, unknown>): void {
    this.enter(v);
    const keys = Object.keys(v);
    const n = keys.length;
    if (n <= FIXCONTAINER_MAX) this.writeTag(T_FIXOBJECT + n);
    else {
      this.writeTag(T_OBJECT);
      this.writeVarint(n);
    }
    let key = '';
    try {
      for (let i = 0; i < n; i++) {
        key = keys[i]!;
        this.writeStringBody(key);
        this.writeAny(v[key]);
      }
    } catch (err) {
      throw withSegment(err, keySegment(key));
    }
    this.leave();
  }

  private writeMap(v: Map<unknown, unknown>): void {
    this.enter(v);
    this.writeTag(T_MAP);
    this.writeVarint(v.size);
    let i = 0;
    let segment = '';
    try {
      for (const [key, value] of v) {
        segment = `.keys[${i}]`;
        this.writeAny(key);
        segment = `.get(${describeKey(key)})`;
        this.writeAny(value);
        i++;
      }
    } catch (err) {
      throw withSegment(err, segment);
    }
    this.leave();
  }

  private writeSet(v: Set<unknown>): void {
    this.enter(v);
    this.writeTag(T_SET);
    this.writeVarint(v.size);
    let i = 0;
    try {
      for (const member of v) {
        this.writeAny(member);
        i++;
      }
    } catch (err) {
      throw withSegment(err, `.values[${i}]`);
    }
    this.leave();
  }

  private writeError(v: Error): void {
    this.enter(v);
    this.writeTag(T_ERROR);
    this.writeStringBody(String(v.name));
    this.writeStringBody(String(v.message));
    const code = (v as { code?: unknown }).code;
    if (typeof code === 'string') this.writeString(code);
    else this.writeTag(T_UNDEFINED);
    this.leave();
  }
}

// One scratch encoder for encode()/encodeChunks(); a nested call (from a getter) gets its own.
let shared: Encoder | undefined;
let sharedBusy = false;

function withEncoder<T>(zeroCopyMin_bytes: number, fn: (enc: Encoder) => T): T {
  if (sharedBusy) return fn(new Encoder({ zeroCopyMin_bytes }));
  shared ??= new Encoder();
  sharedBusy = true;
  try {
    shared.reset();
    shared.zeroCopyMin_bytes = zeroCopyMin_bytes;
    return fn(shared);
  } finally {
    sharedBusy = false;
  }
}

/** Encodes one value into a new Buffer of exactly its size. */
export function encode(value: unknown, root?: string): Buffer {
  // Inlined withEncoder: this runs several times per replicated update.
  if (sharedBusy) return Buffer.from(new Encoder().write(value, root).finish());
  shared ??= new Encoder();
  sharedBusy = true;
  try {
    shared.reset();
    shared.zeroCopyMin_bytes = Infinity;
    // Buffer.from copies (from Node's pool when small); faster than allocUnsafe + copy().
    return Buffer.from(shared.write(value, root).finish());
  } finally {
    sharedBusy = false;
  }
}

/**
 * Encodes one value into a new Buffer after `prefix_bytes` bytes left for the caller to fill (a
 * header): one allocation and one copy, where encode() and a concatenation take two of each.
 */
export function encodeAfter(prefix_bytes: number, value: unknown, root?: string): Buffer {
  return withEncoder(Infinity, (enc) => {
    const body = enc.write(value, root).finish();
    const out = Buffer.allocUnsafe(prefix_bytes + body.length);
    out.set(body, prefix_bytes);
    return out;
  });
}

/**
 * Encodes one value as pieces for socket writev: Buffers of at least zeroCopyMin_bytes (default
 * 4096) appear as references to the caller's memory (the very Buffer object when one was given;
 * it must not change until sent); the rest is copied into one new Buffer. Concatenated, the pieces
 * are exactly encode(value).
 */
export function encodeChunks(value: unknown, opts: { zeroCopyMin_bytes?: number; root?: string } = {}): Buffer[] {
  const zeroCopyMin_bytes = opts.zeroCopyMin_bytes ?? DEFAULT_ZERO_COPY_MIN_BYTES;
  return withEncoder(zeroCopyMin_bytes, (enc) => enc.write(value, opts.root).detachChunks());
}

// ---- decoding ------------------------------------------------------------------------------------

export interface DecodeLimits {
  /** Deepest nesting accepted (at most MAX_DEPTH). */
  max_depth?: number;
  /** Most elements (array items, entries, members, all levels together) in one value. */
  max_elements?: number;
  /** Largest bigint magnitude, bytes. */
  max_bigint_bytes?: number;
}

function malformed(message: string): TempestError {
  return new TempestError('ERR_CODEC_MALFORMED', `malformed encoding: ${message}`);
}

/**
 * Decodes values one after another from one Buffer. Decoded Buffers (bytes) are zero-copy views
 * of the input: valid as long as the input is, and they change if the input does (copy them to
 * keep them beyond the input's life). After an error the decoder is spent.
 */
export class Decoder {
  private readonly buf: Buffer;
  private pos: number;
  private readonly end: number;
  private readonly maxDepth: number;
  private readonly maxElements: number;
  private readonly maxBigint_bytes: number;
  private elements = 0;
  private failed = false;
  private views = false;

  constructor(buf: Buffer | Uint8Array, limits: DecodeLimits = {}) {
    this.buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = 0;
    this.end = this.buf.length;
    this.maxDepth = Math.min(MAX_DEPTH, limits.max_depth ?? MAX_DEPTH);
    this.maxElements = limits.max_elements ?? DEFAULT_MAX_ELEMENTS;
    this.maxBigint_bytes = limits.max_bigint_bytes ?? DEFAULT_MAX_BIGINT_BYTES;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.pos;
  }

  /** True when every byte has been consumed. */
  get done(): boolean {
    return this.pos >= this.end;
  }

  /** True when a value read so far holds bytes: views of the input, valid only as long as it is. */
  get producedViews(): boolean {
    return this.views;
  }

  /** Reads the next value; ERR_CODEC_MALFORMED when the input is malformed, truncated or exhausted. */
  readValue(): unknown {
    if (this.failed) throw malformed('the decoder failed earlier');
    if (this.pos >= this.end) throw malformed(`no value at offset ${this.pos} (end of input)`);
    this.elements = 0;
    try {
      return this.readAny(0);
    } catch (err) {
      this.failed = true;
      if (err instanceof TempestError) throw err;
      // Defence in depth: nothing below should throw anything else.
      throw new TempestError('ERR_CODEC_MALFORMED', `malformed encoding: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  // -- internals --

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) {
      throw malformed(`${what} of ${n} bytes at offset ${this.pos} exceeds the ${this.end - this.pos} bytes left`);
    }
  }

  private readVarint(): number {
    const buf = this.buf;
    if (this.pos >= this.end) throw malformed(`truncated varint at offset ${this.pos}`);
    let b = buf[this.pos++]!;
    if (b < 0x80) return b;
    let result = b & 0x7f;
    let scale = 0x80;
    for (let i = 1; i < VARINT_MAX_BYTES; i++) {
      if (this.pos >= this.end) throw malformed(`truncated varint at offset ${this.pos}`);
      b = buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw malformed(`varint above 2^53 - 1 at offset ${this.pos}`);
        return result;
      }
      scale *= 0x80;
    }
    throw malformed(`varint longer than ${VARINT_MAX_BYTES} bytes at offset ${this.pos}`);
  }

  /** Reads a count of elements that take at least `minBytes` each, checked against the input and the limit. */
  private readCount(minBytes: number, what: string): number {
    const n = this.readVarint();
    return this.checkCount(n, minBytes, what);
  }

  private checkCount(n: number, minBytes: number, what: string): number {
    if (n * minBytes > this.end - this.pos) {
      throw malformed(`${what} of ${n} elements at offset ${this.pos} cannot fit the ${this.end - this.pos} bytes left`);
    }
    this.elements += n;
    if (this.elements > this.maxElements) throw malformed(`more than ${this.maxElements} elements`);
    return n;
  }

  private readFloat(): number {
    this.need(8, 'float64');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  private readStringOf(n: number): string {
    this.need(n, 'string');
    const buf = this.buf;
    const start = this.pos;
    const stop = start + n;
    this.pos = stop;
    if (n <= DECODE_ASCII_MAX) {
      let s = '';
      for (let i = start; i < stop; i++) {
        const c = buf[i]!;
        if (c >= 0x80) return buf.toString('utf8', start, stop);
        s += String.fromCharCode(c);
      }
      return s;
    }
    return buf.toString('utf8', start, stop);
  }

  private readStringBody(): string {
    return this.readStringOf(this.readVarint());
  }

  private readBigInt(negative: boolean): bigint {
    const n = this.readVarint();
    if (n > this.maxBigint_bytes) throw malformed(`bigint of ${n} bytes exceeds the limit of ${this.maxBigint_bytes}`);
    this.need(n, 'bigint');
    if (n === 0) return 0n;
    const magnitude = BigInt('0x' + this.buf.toString('hex', this.pos, this.pos + n));
    this.pos += n;
    return negative ? -magnitude : magnitude;
  }

  private readAny(depth: number): unknown {
    if (this.pos >= this.end) throw malformed(`truncated: value expected at offset ${this.pos}`);
    const tag = this.buf[this.pos++]!;
    if (tag >= T_FIXINT) return tag - T_FIXINT;
    if (tag >= T_FIXSTR && tag <= T_FIXSTR + FIXSTR_MAX) return this.readStringOf(tag - T_FIXSTR);
    if (tag >= T_FIXARRAY && tag <= T_FIXARRAY + FIXCONTAINER_MAX) {
      return this.readArray(this.checkCount(tag - T_FIXARRAY, 1, 'array'), depth);
    }
    if (tag >= T_FIXOBJECT && tag <= T_FIXOBJECT + FIXCONTAINER_MAX) {
      return this.readObject(this.checkCount(tag - T_FIXOBJECT, 2, 'object'), depth);
    }
    switch (tag) {
      case T_UNDEFINED:
        return undefined;
      case T_NULL:
        return null;
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_INT: {
        const z = this.readVarint();
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case T_FLOAT:
        return this.readFloat();
      case T_BIGINT_POS:
        return this.readBigInt(false);
      case T_BIGINT_NEG:
        return this.readBigInt(true);
      case T_STRING:
        return this.readStringBody();
      case T_BYTES: {
        const n = this.readVarint();
        this.need(n, 'bytes');
        const view = this.buf.subarray(this.pos, this.pos + n);
        this.pos += n;
        this.views = true;
        return view;
      }
      case T_ARRAY:
        return this.readArray(this.readCount(1, 'array'), depth);
      case T_OBJECT:
        return this.readObject(this.readCount(2, 'object'), depth);
      case T_MAP:
        return this.readMap(this.readCount(2, 'map'), depth);
      case T_SET:
        return this.readSet(this.readCount(1, 'set'), depth);
      case T_DATE:
        return new Date(this.readFloat());
      case T_ERROR:
        return this.readError(depth);
      default:
        throw malformed(`unknown tag 0x${tag.toString(16).padStart(2, '0')} at offset ${this.pos - 1}`);
    }
  }

  private deeper(depth: number): number {
    if (depth >= this.maxDepth) throw malformed(`nesting deeper than ${this.maxDepth} at offset ${this.pos}`);
    return depth + 1;
  }

  private readArray(n: number, depth: number): unknown[] {
    const inner = this.deeper(depth);
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(this.readAny(inner));
    return out;
  }

  private readObject(n: number, depth: number): Record<string, unknown> {
    const inner = this.deeper(depth);
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.readStringBody();
      const value = this.readAny(inner);
      // Plain assignment of "__proto__" would set the prototype instead of a property.
      if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      else out[key] = value;
    }
    return out;
  }

  private readMap(n: number, depth: number): Map<unknown, unknown> {
    const inner = this.deeper(depth);
    const out = new Map<unknown, unknown>();
    for (let i = 0; i < n; i++) {
      const key = this.readAny(inner);
      out.set(key, this.readAny(inner));
    }
    return out;
  }

  private readSet(n: number, depth: number): Set<unknown> {
    const inner = this.deeper(depth);
    const out = new Set<unknown>();
    for (let i = 0; i < n; i++) out.add(this.readAny(inner));
    return out;
  }

  private readError(depth: number): Error {
    const inner = this.deeper(depth);
    const name = this.readStringBody();
    const message = this.readStringBody();
    const code = this.readAny(inner);
    if (code !== undefined && typeof code !== 'string') throw malformed('error code is neither a string nor undefined');
    const err = new Error(message);
    err.name = name;
    // The stack of the decoder would mislead; the encoding carries none.
    err.stack = `${name}: ${message}`;
    if (code !== undefined) (err as Error & { code?: string }).code = code;
    return err;
  }
}

/** Decodes exactly one value filling all of `buf`; trailing bytes are malformed. */
export function decode(buf: Buffer | Uint8Array, limits?: DecodeLimits): unknown {
  const dec = new Decoder(buf, limits);
  const value = dec.readValue();
  if (!dec.done) throw malformed(`${buf.byteLength - dec.offset} trailing bytes after the value at offset ${dec.offset}`);
  return value;
}

/**
 * decode(), for input that changes or goes away after the call (a delivery's payload): the value
 * holds no views of `buf`. Bytes in it are views of a private copy, made only when there are
 * some (most values are strings and numbers, which never refer to the input).
 */
export function decodeDetached(buf: Buffer | Uint8Array, limits?: DecodeLimits): unknown {
  const dec = new Decoder(buf, limits);
  const value = dec.readValue();
  if (!dec.done) throw malformed(`${buf.byteLength - dec.offset} trailing bytes after the value at offset ${dec.offset}`);
  return dec.producedViews ? decode(Buffer.from(buf), limits) : value;
}
