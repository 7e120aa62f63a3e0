/** Versions ((vid << 32) | seq) and the hybrid logical clock. */
import test from 'ava';
import { formatVersion, makeVersion, NO_VERSION, versionSeq, versionVid } from '../engine/persistence/version.js';
import { HLC_LOGICAL_MASK, HybridClock, hlcFromMs, hlcPhysicalUs, hlcToIso, hlcToMs } from '../engine/persistence/hlc.js';

test('versions pack view id and sequence and order across views', (t) => {
  const v = makeVersion(3, 7);
  t.is(v, (3n << 32n) | 7n);
  t.is(versionVid(v), 3);
  t.is(versionSeq(v), 7);
  t.true(makeVersion(2, 0xffff_ffff) < makeVersion(3, 0));
  t.true(NO_VERSION < makeVersion(0, 0));
  t.is(formatVersion(v), '3:7');
  t.throws(() => makeVersion(0, 2 ** 32), { code: 'ERR_ASSERTION' });
  t.throws(() => makeVersion(-1, 0), { code: 'ERR_ASSERTION' });
  t.throws(() => makeVersion(0, -1), { code: 'ERR_ASSERTION' });
});

test('HLC now() is strictly monotonic, >= physical time, and above every observed value', (t) => {
  let us = 1_000_000n;
  const clock = new HybridClock(() => us);
  const a = clock.now();
  t.is(a, us << 10n);
  const b = clock.now(); // same microsecond: logical counter
  t.is(b, a + 1n);
  us += 5n;
  const c = clock.now();
  t.is(c, us << 10n);
  clock.observe(c + 5000n); // a message from a node whose clock runs ahead
  const d = clock.now();
  t.is(d, c + 5001n);
  t.true(d > c + 5000n);
  us -= 100n; // the physical clock steps back: HLC does not
  t.true(clock.now() > d);
});

test('HLC logical overflow carries into the microseconds and stays monotonic', (t) => {
  const clock = new HybridClock(() => 42n);
  let prev = clock.now();
  for (let i = 0; i < 3000; i++) {
    const n = clock.now();
    t.is(n, prev + 1n);
    prev = n;
  }
  t.is(hlcPhysicalUs(prev), 42n + 2n); // 3001 ticks in one us = 2 carries of 1024
  t.is(prev & HLC_LOGICAL_MASK, 3000n - 2048n);
});

test('HLC conversions to and from milliseconds and ISO text', (t) => {
  const ms = Date.UTC(2026, 10, 23, 10, 15, 0, 250);
  const h = hlcFromMs(ms + 0.123);
  t.is(hlcPhysicalUs(h), BigInt(ms) * 1000n + 123n);
  t.is(h & HLC_LOGICAL_MASK, 0n);
  t.is(hlcToMs(h), ms + 0.123);
  t.is(hlcToIso(h), '2026-11-23T10:15:00.250123Z');
  t.is(hlcToIso(h | 5n), '2026-11-23T10:15:00.250123Z');
  const real = new HybridClock().now();
  t.true(Math.abs(hlcToMs(real) - Date.now()) < 2000);
});
