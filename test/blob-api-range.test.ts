/**
 * The Range header of the blob API: one byte range (clipped), unsatisfiable ones (416), and
 * everything ignored (200): absent, malformed, another unit, several ranges.
 */
import test from 'ava';
import { contentRange, parseRange } from '../blob-api/range.js';

const SIZE = 1000;

test('single ranges: a-b, a-, -n, clipped to the blob', (t) => {
  t.deepEqual(parseRange('bytes=0-99', SIZE), { kind: 'range', range: { start: 0, end: 99 } });
  t.deepEqual(parseRange('bytes=100-', SIZE), { kind: 'range', range: { start: 100, end: 999 } });
  t.deepEqual(parseRange('bytes=-100', SIZE), { kind: 'range', range: { start: 900, end: 999 } });
  t.deepEqual(parseRange('bytes=990-5000', SIZE), { kind: 'range', range: { start: 990, end: 999 } });
  t.deepEqual(parseRange('bytes=-5000', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
  t.deepEqual(parseRange('bytes=999-999', SIZE), { kind: 'range', range: { start: 999, end: 999 } });
  t.deepEqual(parseRange('bytes=0-0', 1), { kind: 'range', range: { start: 0, end: 0 } });
  t.deepEqual(parseRange('bytes=0-99999999999999999999', SIZE), { kind: 'range', range: { start: 0, end: 999 } });
});

test('the unit is case-insensitive; spaces and empty list elements around the one range are allowed', (t) => {
  t.deepEqual(parseRange('Bytes=0-9', SIZE), { kind: 'range', range: { start: 0, end: 9 } });
  t.deepEqual(parseRange('bytes= 0-9 ', SIZE), { kind: 'range', range: { start: 0, end: 9 } });
  t.deepEqual(parseRange('bytes=,0-9,', SIZE), { kind: 'range', range: { start: 0, end: 9 } });
});

test('unsatisfiable: starting at or past the end, -0, any range of an empty blob', (t) => {
  for (const [h, size] of [['bytes=1000-', SIZE], ['bytes=1000-2000', SIZE], ['bytes=99999999999999999999-', SIZE], ['bytes=-0', SIZE], ['bytes=0-', 0], ['bytes=-5', 0], ['bytes=0-0', 0]] as [string, number][]) {
    t.deepEqual(parseRange(h, size), { kind: 'unsatisfiable' }, `${h} of ${size}`);
  }
});

test('ignored (whole blob): absent, malformed, other units, several ranges', (t) => {
  const ignored = [
    undefined, '', 'bytes', 'bytes=', 'bytes=-', 'bytes=abc', 'bytes=5-1', 'bytes=1-2-3', 'bytes=+1-2', 'bytes=1 -2', 'bytes=0x1-2',
    'items=0-9', '0-9', 'bytes 0-9',
    'bytes=0-9,20-29', 'bytes=0-1,-1', 'bytes=5000-6000,7000-8000', 'bytes=0-9,abc',
  ];
  for (const h of ignored) t.deepEqual(parseRange(h, SIZE), { kind: 'none' }, String(h));
});

test('Content-Range for a 206 and a 416', (t) => {
  t.is(contentRange({ start: 0, end: 99 }, SIZE), 'bytes 0-99/1000');
  t.is(contentRange(null, SIZE), 'bytes */1000');
  t.is(contentRange(null, 0), 'bytes */0');
});
