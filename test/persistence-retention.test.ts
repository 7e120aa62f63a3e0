/**
 * Retention of LogStore: by count and by age it trims whole old segments in the background,
 * never the segment being written or the newest entry; trimmed entries read as undefined and
 * indices are not reused; delta logs only trim what their base covers (PersistentMap keeps
 * writing newer bases so trimming proceeds and the value stays reconstructible).
 */
import test from 'ava';
import { LogStore } from '../engine/persistence/log-store.js';
import { makeVersion, NO_VERSION } from '../engine/persistence/version.js';
import { hlcFromMs } from '../engine/persistence/hlc.js';
import { PersistentMap } from '../engine/persistence/persistent-map.js';
import { utf8Codec } from '../engine/persistence/codecs.js';
import { payloadFor, recordingLogger, segmentFiles, tempDir, waitUntil } from './fixtures/persistence-helpers.js';

const { log } = recordingLogger();
const V = (i: number): bigint => makeVersion(4, i);

test('retention by count trims whole old segments; trimmed entries read as undefined; latest readable; survives reopen', async (t) => {
  const dir = await tempDir(t);
  const TS = (i: number): bigint => 1000n + BigInt(i);
  const s = await LogStore.open({ dir, durable: true, segment_size_bytes: 4096, retain_entries: 50, log });
  for (let i = 0; i < 400; i += 20) {
    for (let k = i; k < i + 20; k++) s.append(V(k), TS(k), payloadFor(V(k)));
    await s.flush();
  }
  // ~19 segments were written; retention ran after the flushes that rolled a segment.
  await s.runRetention();
  const after = segmentFiles(dir);
  t.true(after.length <= 6, `segments left: ${after.length}`);
  t.true(s.length >= 50, `kept ${s.length}`);
  t.true(s.length < 50 + 40, 'trimmed down to about the limit (whole segments)');
  t.is(after[0], `seg-${s.firstIndex.toString(16).padStart(16, '0')}.log`, 'firstIndex is a segment boundary');
  t.is(s.latestIndex, 399);
  t.is(await s.getByIndex(0), undefined);
  t.is(await s.getByIndex(s.firstIndex - 1), undefined);
  t.is(await s.getByVersion(V(s.firstIndex - 1)), undefined);
  t.is(await s.getAtVersion(V(s.firstIndex) - 1n), undefined);
  t.is(await s.getByTime(TS(s.firstIndex - 1)), undefined, 'the newest entry <= t was trimmed');
  t.is(s.trimmedVersion, V(s.firstIndex - 1));
  t.is((await s.getByIndex(s.firstIndex))?.version, V(s.firstIndex));
  t.true((await s.latest())!.payload.equals(payloadFor(V(399))));
  await t.throwsAsync(async () => {
    for await (const e of s.entries(NO_VERSION)) void e;
  }, { code: 'ERR_PERSIST_TRIMMED' });
  const rest: number[] = [];
  for await (const e of s.entries(s.trimmedVersion)) rest.push(e.index);
  t.is(rest.length, s.length);
  const first = s.firstIndex;
  // Indices are never reused.
  t.is(s.append(V(400), TS(400), Buffer.from('next')), 400);
  await s.close();

  const r = await LogStore.open({ dir, durable: true, segment_size_bytes: 4096, retain_entries: 50, log });
  t.is(r.firstIndex, first);
  t.is(r.latestIndex, 400);
  t.is(await r.getByIndex(first - 1), undefined);
  t.is(await r.getByVersion(V(first - 1)), undefined, 'index keys of trimmed entries are gone');
  for (let i = first; i <= 399; i += 7) t.true((await r.getByIndex(i))!.payload.equals(payloadFor(V(i))));
  await r.close();
});

test('retention by age trims in the background, never the segment being written', async (t) => {
  const dir = await tempDir(t);
  const t0 = Date.UTC(2026, 0, 1);
  let now = t0;
  const s = await LogStore.open({ dir, durable: false, segment_size_bytes: 4096, retain_ms: 60_000, retention_interval_ms: 20, now_ms: () => now, log });
  // One entry per second of (log) time, for 200 s.
  for (let i = 0; i < 200; i += 10) {
    for (let k = i; k < i + 10; k++) s.append(V(k), hlcFromMs(t0 + k * 1000), payloadFor(V(k)));
    await s.flush();
  }
  now = t0 + 100_000; // entries older than t0 + 40 s may go
  await waitUntil(() => s.firstIndex > 0, 5000, 'background trimming');
  await new Promise((r) => setTimeout(r, 100));
  const first = s.firstIndex;
  t.true(first <= 40 && first > 10, `first retained index ${first}`);
  // The segment holding the oldest retained entry straddles the cutoff: entries from 40 s on are all kept.
  t.truthy(await s.getByIndex(40));
  now = t0 + 10_000_000; // everything is old: only the segment being written stays
  await s.runRetention();
  t.is(segmentFiles(dir).length, 1);
  t.is(s.latestIndex, 199);
  t.truthy(await s.latest());
  t.true(s.length >= 1);
  await s.close();
});

test('trimBefore(version) drops whole segments older than the version', async (t) => {
  const dir = await tempDir(t);
  const s = await LogStore.open({ dir, durable: true, segment_size_bytes: 4096, log });
  for (let i = 0; i < 200; i++) s.append(V(i), BigInt(i + 1), payloadFor(V(i)));
  await s.flush();
  await s.trimBefore(V(100));
  t.true(s.firstIndex <= 100 && s.firstIndex > 50, `first ${s.firstIndex}`);
  t.truthy(await s.getByVersion(V(100)));
  await s.trimBefore(V(10_000));
  t.is(segmentFiles(dir).length, 1, 'never the segment being written');
  t.truthy(await s.latest());
  await s.close();
});

test('delta logs: retention waits for a base; PersistentMap writes one and the value stays reconstructible', async (t) => {
  const dir = await tempDir(t);
  const open = (): Promise<LogStore> => LogStore.open({ dir, durable: true, segment_size_bytes: 4096, retain_entries: 40, log });
  const s = await open();
  const m = new PersistentMap<string>(utf8Codec);
  await m.attach(s);
  t.true(s.requireBase, 'attaching a delta field protects the log');
  const expect = new Map<string, string>();
  const history: Map<string, string>[] = [];
  for (let i = 0; i < 400; i++) {
    const key = `k${i % 37}`;
    if (i % 5 === 4) {
      m.value.delete(key);
      expect.delete(key);
    } else {
      m.value.set(key, `v${i}`);
      expect.set(key, `v${i}`);
    }
    m.commit(V(i), BigInt(i + 1));
    history.push(new Map(expect));
    if (i % 20 === 19) {
      await m.flush();
      await s.runRetention();
      await m.settled();
    }
  }
  await m.flush();
  await s.runRetention();
  await m.settled();
  await s.runRetention();
  t.true(s.firstIndex > 0, `trimmed (first index ${s.firstIndex})`);
  t.true(s.baseVersion !== null && s.baseVersion >= s.trimmedVersion, 'only entries the base covers were trimmed');
  t.deepEqual(new Map(m.value), expect);
  // History after the base is readable; before it (trimmed) is not.
  const base = Number(s.baseVersion! & 0xffffffffn);
  for (const i of [base, base + 1, 399]) t.deepEqual(new Map((await m.getAtVersion(V(i)))!), history[i], `value at ${i}`);
  t.is(await m.getAtVersion(V(s.firstIndex - 2)), undefined);
  await s.close();

  const r = await open();
  const m2 = new PersistentMap<string>(utf8Codec);
  await m2.attach(r);
  t.deepEqual(new Map(m2.value), expect, 'reopened: base + deltas');
  t.deepEqual(new Map((await m2.getByIndex(399))!), history[399]);
  t.deepEqual(new Map((await m2.getByTime(BigInt(base + 2)))!), history[base + 1]);
  await r.close();
});
