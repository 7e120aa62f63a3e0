/**
 * The HTTP Range header (RFC 9110 §14), for one range of bytes.
 *
 * - `bytes=a-b`, `bytes=a-` and `bytes=-n` give one range, clipped to the blob; one that starts
 *   at or past the end (or `-0`, or any range of an empty blob) is unsatisfiable (416).
 * - Several ranges are ignored and the whole blob is sent with 200, as S3 does: RFC 9110 lets a
 *   server ignore Range, and multipart/byteranges replies are rarely wanted and easy to abuse
 *   (many small overlapping ranges of one large blob).
 * - A header that does not parse, or another unit than bytes, is ignored too (RFC 9110 §14.2).
 */
import type { ByteRange } from '../engine/store/types.js';

export type RangeRequest = { kind: 'none' } | { kind: 'range'; range: ByteRange } | { kind: 'unsatisfiable' };

const NONE: RangeRequest = { kind: 'none' };
const UNSATISFIABLE: RangeRequest = { kind: 'unsatisfiable' };
const INT_RANGE = /^(\d+)-(\d*)$/;
const SUFFIX_RANGE = /^-(\d+)$/;

/** The range `header` asks of a blob of `size_bytes` bytes. */
export function parseRange(header: string | undefined, size_bytes: number): RangeRequest {
  if (header === undefined) return NONE;
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return NONE;
  // A list may hold empty elements (RFC 9110 §5.6.1); they do not count.
  const specs = header
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length !== 1) return NONE;
  const spec = specs[0]!;
  const suffix = SUFFIX_RANGE.exec(spec);
  if (suffix) {
    const length = Number(suffix[1]);
    if (length === 0 || size_bytes === 0) return UNSATISFIABLE;
    return { kind: 'range', range: { start: Math.max(0, size_bytes - length), end: size_bytes - 1 } };
  }
  const m = INT_RANGE.exec(spec);
  if (!m) return NONE;
  const start = Number(m[1]);
  const last = m[2] === '' ? Infinity : Number(m[2]);
  if (last < start) return NONE;
  if (start >= size_bytes) return UNSATISFIABLE;
  return { kind: 'range', range: { start, end: Math.min(last, size_bytes - 1) } };
}

// `bytes a-b/size` for a range sent; `bytes */size` (range null) for a 416.
export function contentRange(range: ByteRange | null, size_bytes: number): string {
  return range === null ? `bytes */${size_bytes}` : `bytes ${range.start}-${range.end}/${size_bytes}`;
}
