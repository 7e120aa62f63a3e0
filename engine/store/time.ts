/**
 * Times as users write them (`?at=` in the HTTP API, `.snapshot/<time>` and `path@<time>` in the
 * mount) and as Tempest shows them (`x-tempest-timestamp`, JSON `timestamp`).
 *
 * Accepted, and nothing else:
 * - ISO 8601 UTC: `2026-11-23T10:15:00Z`, with an optional fraction of 1..9 digits
 *   (`10:15:00.250Z`, `10:15:00.250400Z`); digits past the microsecond are dropped (HLC timestamps
 *   count microseconds).
 * - the same with dots instead of colons (`2026-11-23T10.15.00.250Z`), for file names, which
 *   never carry colons in the mount;
 * - epoch milliseconds, digits only (`1795428900250`).
 *
 * A time names the end of its microsecond: the point's HLC is `(µs << 10) | 1023`, so every update
 * stamped within that microsecond is included. formatHlc prints a timestamp's microsecond, so a
 * version's own printed timestamp, parsed back, reads that version.
 */
import { HLC_LOGICAL_BITS, HLC_LOGICAL_MASK, type Hlc } from '../persistence/hlc.js';
import { StoreError, STORE_ERRORS } from './errors.js';
import type { TimePoint } from './types.js';

/** Milliseconds since the epoch (with microsecond fractions) of an HLC timestamp; for Last-Modified and mtimes. */
export { hlcToMs } from '../persistence/hlc.js';

const US_PER_MS = 1000n;
const US_PER_S = 1_000_000n;
const FRACTION_DIGITS_KEPT = 6;
const EPOCH_YEAR = 1970;
/** Longest digits-only string read as epoch ms (beyond it the number is far in the future anyway). */
const MAX_EPOCH_MS_DIGITS = 16;

// The separator between hour, minute and second is captured once and required again (\5), so
// `10:15.00` (mixed) is refused. Only upper-case T and Z, as Tempest prints them.
const ISO_UTC = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})([:.])(\d{2})\5(\d{2})(?:\.(\d{1,9}))?Z$/;
const EPOCH_MS = /^\d+$/;

/**
 * Parses a time in one of the accepted forms. Throws ERR_STORE_BAD_TIME for anything else (an
 * impossible date included), ERR_STORE_FUTURE_TIME for a time later than `now_ms`.
 *
 * The default `now_ms` is one millisecond past Date.now(): the wall clock only counts whole
 * milliseconds, so the present instant can be up to 1 ms past it, and a version written this
 * instant must not be refused as "in the future".
 */
export function parseTime(s: string, now_ms: number = Date.now() + 1): TimePoint {
  const us = parseMicroseconds(s);
  if (Number(us) > now_ms * 1000) {
    throw new StoreError(STORE_ERRORS.FUTURE_TIME, `time ${quote(s)} is later than now (${new Date(Math.floor(now_ms)).toISOString()}): the past can be read, not the future`);
  }
  return { hlc: (us << HLC_LOGICAL_BITS) | HLC_LOGICAL_MASK, ms: Number(us) / 1000 };
}

/** ISO 8601 UTC with 6 fraction digits: `2026-11-23T10:15:00.250400Z` (the logical counter is dropped). */
export function formatHlc(hlc: Hlc): string {
  const us = hlc >> HLC_LOGICAL_BITS;
  const seconds = us / US_PER_S;
  const fraction = (us % US_PER_S).toString().padStart(FRACTION_DIGITS_KEPT, '0');
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

function parseMicroseconds(s: string): bigint {
  if (typeof s !== 'string') throw bad(String(s), 'a time is a string');
  if (EPOCH_MS.test(s)) {
    if (s.length > MAX_EPOCH_MS_DIGITS) throw bad(s, `more than ${MAX_EPOCH_MS_DIGITS} digits of epoch milliseconds`);
    return BigInt(s) * US_PER_MS;
  }
  const m = ISO_UTC.exec(s);
  if (!m) throw bad(s, 'expected ISO 8601 UTC like 2026-11-23T10:15:00Z or 2026-11-23T10:15:00.250Z (dots may replace the colons), or epoch milliseconds');
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[6], m[7]].map(Number) as [number, number, number, number, number, number];
  if (year < EPOCH_YEAR) throw bad(s, `year ${year} is before ${EPOCH_YEAR}`);
  if (month < 1 || month > 12) throw bad(s, `month ${month} does not exist`);
  if (day < 1 || day > daysInMonth(year, month)) throw bad(s, `day ${day} does not exist in ${year}-${m[2]}`);
  if (hour > 23) throw bad(s, `hour ${hour} does not exist (00..23)`);
  if (minute > 59) throw bad(s, `minute ${minute} does not exist (00..59)`);
  // JavaScript time (and so the HLC) has no leap seconds.
  if (second > 59) throw bad(s, `second ${second} does not exist (00..59)`);
  const fractionUs = BigInt((m[8] ?? '').slice(0, FRACTION_DIGITS_KEPT).padEnd(FRACTION_DIGITS_KEPT, '0'));
  return BigInt(Date.UTC(year, month - 1, day, hour, minute, second)) * US_PER_MS + fractionUs;
}

function daysInMonth(year: number, month: number): number {
  // Day 0 of the next month is the last day of this one (Gregorian leap years included).
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

function bad(s: string, why: string): StoreError {
  return new StoreError(STORE_ERRORS.BAD_TIME, `bad time ${quote(s)}: ${why}`);
}
