/**
 * Persistent<T> / Volatile<T> in value mode and delta mode (PersistentMap), across reopen, and
 * MemoryLogStore's own semantics (reads, truncation, retention by count, base).
 */
import test from 'ava';
import { LogStore } from '../engine/persistence/log-store.js';
import { MemoryLogStore } from '../engine/persistence/memory-log-store.js';
import { Persistent, Volatile } from '../engine/persistence/persistent.js';
import { mapCodec, PersistentMap, TrackedMap, VolatileMap, mapDelta } from '../engine/persistence/persistent-map.js';
import { jsonCodec, utf8Codec } from '../engine/persistence/codecs.js';
import { makeVersion, NO_VERSION } from '../engine/persistence/version.js';
import { recordingLogger, tempDir } from './fixtures/persistence-helpers.js';

const { log } = recordingLogger();
const V = (i: number): bigint => makeVersion(7, i);
const TS = (i: number): bigint => 10_000n + 100n * BigInt(i);

test('Persistent value mode: one entry per commit, history by version, index and time, reopen', async (t) => {
  const dir = await tempDir(t);
  const s = await LogStore.open({ dir, durable: true, log });
  const f = new Persistent<{ n: number; name: string }>(() => ({ n: 0, name: '' }), jsonCodec());
  await f.attach(s);
  t.deepEqual(f.value, { n: 0, name: '' });
  for (let i = 0; i < 10; i++) {
    if (i % 3 !== 2) f.value = { n: i, name: `v${i}` }; // every third update leaves the field alone
    f.commit(V(i), TS(i)); // ...but every update is a version of every field
  }
  t.is(f.latestVersion, V(9));
  t.is(await f.flush(), V(9));
  t.is(f.persistedVersion, V(9));
  t.is(s.length, 10);
  t.deepEqual(await f.getAtVersion(V(4)), { n: 4, name: 'v4' });
  t.deepEqual(await f.getAtVersion(V(5)), { n: 4, name: 'v4' }, 'unchanged at 5');
  t.deepEqual(await f.getByIndex(7), { n: 7, name: 'v7' });
  t.deepEqual(await f.getByTime(TS(3) + 50n), { n: 3, name: 'v3' });
  t.is(await f.getByTime(TS(0) - 1n), undefined);
  t.is(await f.getAtVersion(V(0) - 1n), undefined);
  await t.throwsAsync(f.getDeltaAtVersion(V(1)), { code: 'ERR_PERSIST_NOT_DELTA' });
  await s.close();

  const r = await LogStore.open({ dir, durable: true, log });
  const g = new Persistent<{ n: number; name: string }>(() => ({ n: 0, name: '' }), jsonCodec());
  await g.attach(r);
  t.deepEqual(g.value, { n: 9, name: 'v9' });
  t.deepEqual(await g.getAtVersion(V(8)), { n: 7, name: 'v7' }, 'unchanged at 8');
  await r.close();
});

test('PersistentMap delta mode: puts and deletes per version, empty deltas, reconstruction, reopen', async (t) => {
  const dir = await tempDir(t);
  const s = await LogStore.open({ dir, durable: true, log });
  const m = new PersistentMap<string>(utf8Codec);
  await m.attach(s);
  const snapshots: Map<string, string>[] = [];
  const step = (i: number, fn: (x: TrackedMap<string>) => void): void => {
    fn(m.value);
    m.commit(V(i), TS(i));
    snapshots.push(new Map(m.value));
  };
  step(0, (x) => x.set('a', '1').set('b', '2'));
  step(1, (x) => x.set('a', 'one'));
  step(2, () => {}); // nothing changed
  step(3, (x) => x.delete('b'));
  step(4, (x) => {
    x.set('c', '3');
    x.delete('c'); // last write wins within a version
    x.set('d', '4');
  });
  step(5, (x) => {
    x.clear();
    x.set('z', 'zz');
  });
  step(6, (x) => x.set('e', '5'));
  t.is((await m.getDeltaAtVersion(V(2)))?.length, 0, 'an unchanged version logs an empty delta');
  t.true((await m.getDeltaAtVersion(V(1)))!.length > 0);
  t.true((await m.getDeltaAtVersion(V(1)))!.length < 40, 'a delta holds only the change');
  for (let i = 0; i < 7; i++) t.deepEqual(new Map((await m.getAtVersion(V(i)))!), snapshots[i], `value at version ${i}`);
  t.deepEqual(new Map((await m.getByTime(TS(3) + 1n))!), snapshots[3]);
  t.deepEqual(new Map((await m.getByIndex(4))!), snapshots[4]);
  t.is(await m.getAtVersion(V(0) - 1n), undefined);
  t.throws(() => {
    m.value = new TrackedMap();
  }, { code: 'ERR_PERSIST_DELTA_ASSIGN' });
  await m.flush();
  await s.setBase(V(3), mapCodec(utf8Codec).encode((await m.getAtVersion(V(3)))!));
  t.deepEqual(new Map((await m.getAtVersion(V(5)))!), snapshots[5], 'from the base');
  t.deepEqual(new Map((await m.getAtVersion(V(1)))!), snapshots[1], 'older than the base: replayed from the start');
  await s.close();

  const r = await LogStore.open({ dir, durable: true, log });
  const m2 = new PersistentMap<string>(utf8Codec);
  await m2.attach(r);
  t.deepEqual(new Map(m2.value), snapshots[6]);
  // The reloaded value is not "changed": the next version logs only its own change.
  m2.value.set('f', '6');
  m2.commit(V(7), TS(7));
  const d = await m2.getDeltaAtVersion(V(7));
  const replay = mapDelta(utf8Codec).applyDelta(new TrackedMap<string>(), d!);
  t.deepEqual([...replay], [['f', '6']]);
  await r.close();
});

test('Volatile and VolatileMap keep versions in memory with the same API', async (t) => {
  const v = new Volatile<string>(() => 'init', utf8Codec);
  await v.attach();
  t.is(v.value, 'init');
  v.value = 'x';
  v.commit(V(0), TS(0));
  v.value = 'y';
  v.commit(V(1), TS(1));
  t.is(await v.flush(), V(1));
  t.is(v.persistedVersion, V(1));
  t.is(await v.getAtVersion(V(0)), 'x');
  t.is(await v.getByTime(TS(1)), 'y');
  t.true(v instanceof Volatile);
  t.false(v instanceof Persistent);

  const m = new VolatileMap<string>(utf8Codec);
  const mem = new MemoryLogStore({ retain_entries: 10 });
  await m.attach(mem);
  for (let i = 0; i < 300; i++) {
    m.value.set(`k${i % 7}`, `v${i}`);
    m.commit(V(i), TS(i));
    await Promise.resolve(); // let a base request run
    await m.settled();
  }
  t.true(mem.firstIndex > 0, 'trimmed by count');
  t.true(mem.length >= 10);
  t.true(mem.baseVersion !== null && mem.trimmedVersion <= mem.baseVersion);
  const again = new VolatileMap<string>(utf8Codec);
  await again.attach(mem);
  t.deepEqual(new Map(again.value), new Map(m.value));
});

test('MemoryLogStore: reads, entries, truncation and retention semantics match LogStore', async (t) => {
  const s = new MemoryLogStore({ retain_entries: 100 });
  t.is(s.latestVersion, NO_VERSION);
  t.is(s.latestIndex, -1);
  for (let i = 0; i < 500; i++) t.is(s.append(V(2 * i), TS(i), Buffer.from(`p${i}`)), i);
  t.is(await s.flush(), V(998));
  t.true(s.length >= 100 && s.length < 200, `length ${s.length}`);
  const first = s.firstIndex;
  t.is(await s.getByIndex(first - 1), undefined);
  t.is((await s.getByIndex(first))?.payload.toString(), `p${first}`);
  t.is((await s.getByVersion(V(2 * 450)))?.index, 450);
  t.is(await s.getByVersion(V(2 * 450 + 1)), undefined);
  t.is((await s.getAtVersion(V(2 * 450 + 1)))?.index, 450);
  t.is((await s.getByTime(TS(450) + 50n))?.index, 450);
  t.is(await s.getByTime(TS(first) - 1n), undefined);
  t.is(s.trimmedVersion, V(2 * (first - 1)));
  await t.throwsAsync(async () => {
    for await (const e of s.entries(NO_VERSION)) void e;
  }, { code: 'ERR_PERSIST_TRIMMED' });
  const got: number[] = [];
  for await (const e of s.entries(V(2 * 480), V(2 * 485))) got.push(e.index);
  t.deepEqual(got, [481, 482, 483, 484, 485]);
  await s.truncateAfter(V(2 * 490) + 1n);
  t.is(s.latestIndex, 490);
  t.is(s.append(V(2000), TS(1000), Buffer.from('n')), 491);
  await s.truncateAfter(V(0) - 1n); // below the trimmed history: empties the log
  t.is(s.length, 0);
  t.is(s.latestVersion, V(0) - 1n);
  const p = Buffer.from('copy');
  const i = s.append(V(3000), TS(2000), p);
  p.write('XXXX');
  t.is((await s.getByIndex(i))?.payload.toString(), 'copy', 'the log keeps its own copy');
});
