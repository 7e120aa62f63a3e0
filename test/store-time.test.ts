/**
 * Times: ISO 8601 UTC with 0..9 fraction digits (kept to microseconds), the same with dots for
 * colons, epoch milliseconds; nothing else (impossible dates included) -> ERR_STORE_BAD_TIME; a
 * time past now -> ERR_STORE_FUTURE_TIME. A point includes its whole microsecond, and a
 * version's formatted timestamp parses back to a point that includes it.
 */
import test from 'ava';
import { isStoreError, STORE_ERRORS } from '../engine/store/errors.js';
import { formatHlc, hlcToMs, parseTime } from '../engine/store/time.js';

const NOW_MS = Date.UTC(2030, 0, 1);
const T = Date.UTC(2026, 10, 23, 10, 15, 0); // 2026-11-23T10:15:00Z

function us(ms: number, extra_us = 0): bigint {
  return BigInt(ms) * 1000n + BigInt(extra_us);
}

/** The point's HLC: the last logical value of microsecond `u`. */
function endOf(u: bigint): bigint {
  return (u << 10n) | 1023n;
}

test('ISO 8601 UTC with 0..9 fraction digits, kept to the microsecond', (t) => {
  const cases: [string, bigint][] = [
    ['2026-11-23T10:15:00Z', us(T)],
    ['2026-11-23T10:15:00.2Z', us(T, 200_000)],
    ['2026-11-23T10:15:00.250Z', us(T, 250_000)],
    ['2026-11-23T10:15:00.250400Z', us(T, 250_400)],
    ['2026-11-23T10:15:00.250400999Z', us(T, 250_400)],
    ['2026-11-23T10:15:00.000001Z', us(T, 1)],
    ['2026-11-23T10:15:00.0000009Z', us(T)],
  ];
  for (const [s, u] of cases) {
    const p = parseTime(s, NOW_MS);
    t.is(p.hlc, endOf(u), s);
    t.is(p.ms, Number(u) / 1000, `${s} in ms`);
  }
});

test('dots may replace the colons (file names), the fraction keeps its dot', (t) => {
  t.is(parseTime('2026-11-23T10.15.00Z', NOW_MS).hlc, endOf(us(T)));
  t.is(parseTime('2026-11-23T10.15.00.250Z', NOW_MS).hlc, endOf(us(T, 250_000)));
  t.is(parseTime('2026-11-23T10.15.00.250400Z', NOW_MS).ms, T + 250.4);
});

test('epoch milliseconds, digits only', (t) => {
  t.deepEqual(parseTime(String(T), NOW_MS), { hlc: endOf(us(T)), ms: T });
  t.deepEqual(parseTime('0', NOW_MS), { hlc: 1023n, ms: 0 });
});

test('leap days exist only in leap years', (t) => {
  t.notThrows(() => parseTime('2028-02-29T00:00:00Z', NOW_MS));
  t.notThrows(() => parseTime('2000-02-29T00:00:00Z', NOW_MS));
  t.true(isStoreError(t.throws(() => parseTime('2027-02-29T00:00:00Z', NOW_MS)), STORE_ERRORS.BAD_TIME));
  t.true(isStoreError(t.throws(() => parseTime('2100-02-29T00:00:00Z', NOW_MS)), STORE_ERRORS.BAD_TIME), 'not the future: no such day');
});

test('anything else is ERR_STORE_BAD_TIME', (t) => {
  const bad = [
    '', ' ', 'now', 'yesterday', '-1', '1.5', '+123', '12e3', ' 123', '123 ', '0x10',
    '2026-11-23', '2026-11-23T10:15Z', '2026-11-23T10:15:00', '2026-11-23 10:15:00Z', '2026-11-23t10:15:00z',
    '2026-11-23T10:15:00+00:00', '2026-11-23T10:15:00.Z', '2026-11-23T10:15:00.1234567890Z', '2026-11-23T10:15:00,250Z',
    '2026-11-23T10:15.00Z', '2026-11-23T10.15:00Z', '26-11-23T10:15:00Z', '2026-1-23T10:15:00Z', '+02026-11-23T10:15:00Z',
    '2026-02-30T00:00:00Z', '2026-04-31T00:00:00Z', '2026-13-01T00:00:00Z', '2026-00-10T00:00:00Z', '2026-11-00T00:00:00Z',
    '2026-11-23T24:00:00Z', '2026-11-23T10:60:00Z', '2026-11-23T10:15:60Z', '1969-12-31T23:59:59Z',
    '12345678901234567',
  ];
  for (const s of bad) {
    const err = t.throws(() => parseTime(s, NOW_MS), undefined, JSON.stringify(s));
    t.true(isStoreError(err, STORE_ERRORS.BAD_TIME), `${JSON.stringify(s)}: ${err?.message}`);
  }
});

test('a time later than now is ERR_STORE_FUTURE_TIME; now itself is fine', (t) => {
  t.notThrows(() => parseTime(String(NOW_MS), NOW_MS));
  t.true(isStoreError(t.throws(() => parseTime(String(NOW_MS + 1), NOW_MS)), STORE_ERRORS.FUTURE_TIME));
  t.true(isStoreError(t.throws(() => parseTime('2030-01-01T00:00:00.000001Z', NOW_MS)), STORE_ERRORS.FUTURE_TIME));
  t.true(isStoreError(t.throws(() => parseTime('2999-01-01T00:00:00Z')), STORE_ERRORS.FUTURE_TIME), 'against the wall clock');
  t.notThrows(() => parseTime(String(Date.now())), 'the present millisecond is not the future');
});

test('formatHlc prints ISO 8601 UTC with microseconds', (t) => {
  t.is(formatHlc(us(T, 250_400) << 10n), '2026-11-23T10:15:00.250400Z');
  t.is(formatHlc((us(T) << 10n) | 1023n), '2026-11-23T10:15:00.000000Z');
  t.is(formatHlc(0n), '1970-01-01T00:00:00.000000Z');
  t.is(hlcToMs(us(T, 250_400) << 10n), T + 250.4);
});

test('a formatted timestamp parses back to a point that includes that version, and not the next microsecond', (t) => {
  for (const [u, logical] of [[us(T, 250_400), 0n], [us(T, 999_999), 1023n], [us(T, 1), 517n], [us(T), 0n]] as [bigint, bigint][]) {
    const version_hlc = (u << 10n) | logical;
    const p = parseTime(formatHlc(version_hlc), NOW_MS);
    t.true(p.hlc >= version_hlc, 'the version is included');
    t.true(p.hlc < (u + 1n) << 10n, 'a version of the next microsecond is not');
    t.is(parseTime(formatHlc(version_hlc).replace(/:/g, '.'), NOW_MS).hlc, p.hlc, 'the dotted form is the same point');
  }
});
