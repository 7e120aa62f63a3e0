/**
 * LogStore: append / flush / reads by version, index and time (buffered, written, after reopen,
 * cold through the LevelDB index), group commit, segment roll-over, truncation, reset,
 * iteration, backpressure and I/O failures.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { LogStore, type LogStoreOptions } from '../engine/persistence/log-store.js';
import { MemoryLogStore } from '../engine/persistence/memory-log-store.js';
import { makeVersion, NO_VERSION } from '../engine/persistence/version.js';
import { SEGMENT_HEADER_BYTES, readSegmentHeader } from '../engine/persistence/entry-format.js';
import { payloadFor, recordingLogger, segmentFiles, tempDir, waitUntil } from './fixtures/persistence-helpers.js';

const { log } = recordingLogger();
const V = (i: number): bigint => makeVersion(1, 100 + 3 * i); // gaps: versions 3 apart
const TS = (i: number): bigint => 1_000_000n + 10n * BigInt(i); // gaps: timestamps 10 apart

function open(dir: string, extra: Partial<LogStoreOptions> = {}): Promise<LogStore> {
  return LogStore.open({ dir, durable: true, log, ...extra });
}

function appendRange(s: LogStore, from: number, to: number, max_bytes = 300): void {
  for (let i = from; i < to; i++) t_is(s.append(V(i), TS(i), payloadFor(V(i), max_bytes)), i);
}
function t_is(a: number, b: number): void {
  if (a !== b) throw new Error(`append returned index ${a}, expected ${b}`);
}

/** Checks every read path for entry i (or that it is absent). */
async function checkEntry(t: import('ava').ExecutionContext, s: LogStore, i: number, max_bytes = 300): Promise<void> {
  const want = payloadFor(V(i), max_bytes);
  const byIndex = await s.getByIndex(i);
  t.truthy(byIndex, `entry ${i} by index`);
  t.is(byIndex!.version, V(i));
  t.is(byIndex!.timestamp, TS(i));
  t.is(byIndex!.index, i);
  t.true(byIndex!.payload.equals(want), `payload of entry ${i}`);
  t.is((await s.getByVersion(V(i)))?.index, i);
  t.is((await s.getByVersion(V(i) + 1n))?.index, undefined, 'no entry between versions');
  t.is((await s.getAtVersion(V(i) + 2n))?.index, i, 'floor by version');
  t.is((await s.getByTime(TS(i)))?.index, i, 'by time, exact');
  t.is((await s.getByTime(TS(i) + 9n))?.index, i, 'by time: latest <= t');
}

test('append, read before and after flush and after reopen; appends continue with the next index', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir);
  t.is(s.latestVersion, NO_VERSION);
  t.is(s.latestIndex, -1);
  t.is(s.length, 0);
  t.is(await s.latest(), undefined);
  appendRange(s, 0, 10);
  t.is(s.persistedVersion, NO_VERSION, 'nothing flushed yet');
  for (let i = 0; i < 10; i++) await checkEntry(t, s, i); // from the write buffer
  t.is(await s.flush(), V(9));
  t.is(s.persistedVersion, V(9));
  for (let i = 0; i < 10; i++) await checkEntry(t, s, i); // from the file
  t.is(s.latestIndex, 9);
  t.is(s.length, 10);
  t.is(s.firstIndex, 0);
  await s.close();

  const r = await open(dir);
  t.is(r.latestVersion, V(9));
  t.is(r.latestTimestamp, TS(9));
  t.is(r.persistedVersion, V(9));
  for (let i = 0; i < 10; i++) await checkEntry(t, r, i); // cold: LevelDB + positioned read
  t.is(r.append(V(10), TS(10), payloadFor(V(10))), 10);
  await checkEntry(t, r, 10);
  await r.close();
});

test('a payload appended in pieces is stored as their concatenation, copied at append (LogStore and MemoryLogStore)', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir);
  const mem = new MemoryLogStore({});
  for (const log of [s, mem] as const) {
    // A reused buffer, as a delivery buffer is: its contents change right after append.
    const scratch = Buffer.alloc(200_000, 0x11);
    const head = Buffer.from('header+id:');
    log.append(V(0), TS(0), [head, scratch.subarray(0, 150_000), Buffer.alloc(0), Buffer.from('!')]);
    scratch.fill(0x22);
    head.fill(0);
    const want = Buffer.concat([Buffer.from('header+id:'), Buffer.alloc(150_000, 0x11), Buffer.from('!')]);
    t.true((await log.getByVersion(V(0)))!.payload.equals(want), 'from the write buffer / memory');
    await log.flush();
    t.true((await log.getByVersion(V(0)))!.payload.equals(want), 'after flush');
  }
  await s.close();
  const r = await open(dir);
  t.true((await r.getByVersion(V(0)))!.payload.equals(Buffer.concat([Buffer.from('header+id:'), Buffer.alloc(150_000, 0x11), Buffer.from('!')])), 'cold, after reopen (checksum over the pieces)');
  await r.close();
});

test('getByTime: latest entry with timestamp <= t; before the first entry -> undefined', async (t) => {
  const dir = await tempDir(t);
  for (const reopen of [false, true]) {
    const d = `${dir}-${reopen}`;
    let s = await open(d);
    appendRange(s, 0, 5);
    if (reopen) {
      await s.close();
      s = await open(d);
    }
    t.is(await s.getByTime(TS(0) - 1n), undefined);
    t.is(await s.getByTime(0n), undefined);
    t.is((await s.getByTime(TS(0)))?.index, 0);
    t.is((await s.getByTime(TS(2) + 5n))?.index, 2);
    t.is((await s.getByTime(TS(3) - 1n))?.index, 2);
    t.is((await s.getByTime(TS(4)))?.index, 4);
    t.is((await s.getByTime(1n << 62n))?.index, 4);
    t.is(await s.getAtVersion(V(0) - 1n), undefined);
    t.is((await s.getAtVersion(1n << 62n))?.index, 4);
    t.is(await s.getByIndex(5), undefined);
    t.is(await s.getByIndex(-1), undefined);
    await s.close();
  }
});

test('cold reads through the block index match every entry (small tail, many segments, dense and sparse index)', async (t) => {
  for (const index_stride of [1, 7, 64]) {
    const dir = `${await tempDir(t)}-${index_stride}`;
    const s = await open(dir, { segment_size_bytes: 8192, index_stride, tail_entries_max: 64 });
    const N = 600;
    for (let i = 0; i < N; i += 50) {
      appendRange(s, i, i + 50);
      await s.flush();
    }
    // Only the newest 64 entries are in memory: the rest go through LevelDB + a scan.
    for (let i = 0; i < N; i += 13) await checkEntry(t, s, i);
    await s.close();
    const r = await open(dir, { segment_size_bytes: 8192, index_stride });
    for (let i = 1; i < N; i += 17) await checkEntry(t, r, i);
    t.is(await r.getByVersion(V(N)), undefined);
    await r.close();
  }
});

test('group commit: many concurrent flush() calls share few write + fsync rounds', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir);
  const flushes: Promise<bigint>[] = [];
  for (let i = 0; i < 1000; i++) {
    s.append(V(i), TS(i), payloadFor(V(i)));
    flushes.push(s.flush());
  }
  const done = await Promise.all(flushes);
  // The first call starts a batch of 1 entry; the other 999 coalesce into the next one.
  t.true(s.fsyncCount <= 3, `fsyncs: ${s.fsyncCount}`);
  t.true(s.batchCount <= 3, `batches: ${s.batchCount}`);
  t.is(done[999], V(999));
  t.true(s.indexLag > 0, 'the flush resolved before the LevelDB index was updated');
  await waitUntil(() => s.indexLag === 0, 5000, 'the background indexer');
  for (const [i, v] of done.entries()) t.true(v >= V(i), 'each caller resolves once its entry is persisted');
  t.is(s.persistedVersion, V(999));

  // Entries appended while a flush runs go into the next write + fsync.
  const before = s.fsyncCount;
  s.append(V(1000), TS(1000), payloadFor(V(1000)));
  const p1 = s.flush();
  s.append(V(1001), TS(1001), payloadFor(V(1001)));
  const p2 = s.flush();
  const p3 = s.flush();
  t.is(p2, p3, 'calls during a flush share the next batch');
  t.is(await p1, V(1000));
  t.is(await p2, V(1001));
  t.is(s.fsyncCount - before, 2);
  t.is(await s.flush(), V(1001), 'nothing new: resolves at once');
  t.is(s.fsyncCount - before, 2);
  await s.close();
});

test('segments roll over at segment_size_bytes and are named by their first index', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir, { segment_size_bytes: 4096 });
  appendRange(s, 0, 200);
  await s.flush();
  const names = segmentFiles(dir);
  t.true(names.length >= 5, `segments: ${names.length}`);
  let expectFirst = 0;
  for (const [k, n] of names.entries()) {
    const buf = fs.readFileSync(path.join(dir, n));
    const h = readSegmentHeader(buf);
    t.truthy(h);
    t.is(n, `seg-${h!.first_index.toString(16).padStart(16, '0')}.log`);
    if (k > 0) t.true(h!.first_index > expectFirst);
    t.is(h!.prev_version, h!.first_index === 0 ? NO_VERSION : V(h!.first_index - 1));
    expectFirst = h!.first_index;
    if (k < names.length - 1) t.true(buf.length <= 4096 + 400, 'rolled before exceeding the size (by at most one entry)');
    t.true(buf.length > SEGMENT_HEADER_BYTES);
  }
  await s.close();
  const r = await open(dir, { segment_size_bytes: 4096 });
  for (let i = 0; i < 200; i += 7) await checkEntry(t, r, i);
  await r.close();
});

test('entries(after, upto) iterates in order across segments, written and buffered entries', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir, { segment_size_bytes: 4096, tail_entries_max: 32 });
  for (let i = 0; i < 150; i += 25) {
    appendRange(s, i, i + 25);
    await s.flush();
  }
  appendRange(s, 150, 170); // not flushed
  const all: number[] = [];
  for await (const e of s.entries(NO_VERSION)) {
    t.true(e.payload.equals(payloadFor(e.version)));
    all.push(e.index);
  }
  t.deepEqual(all, Array.from({ length: 170 }, (_, i) => i));
  const some: number[] = [];
  for await (const e of s.entries(V(20), V(60) + 1n)) some.push(e.index);
  t.deepEqual(some, Array.from({ length: 40 }, (_, i) => 21 + i));
  const none: number[] = [];
  for await (const e of s.entries(V(169))) none.push(e.index);
  t.deepEqual(none, []);
  const tailOnly: number[] = [];
  for await (const e of s.entries(V(160) - 1n)) tailOnly.push(e.index);
  t.deepEqual(tailOnly, Array.from({ length: 10 }, (_, i) => 160 + i));
  await s.close();
});

test('truncateAfter removes later entries durably, across segments, including unflushed ones', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir, { segment_size_bytes: 4096 });
  appendRange(s, 0, 100);
  await s.flush();
  appendRange(s, 100, 110); // unflushed: flushed, then cut
  await s.truncateAfter(V(40) + 1n); // between versions: keeps <= V(40)
  t.is(s.latestVersion, V(40));
  t.is(s.latestIndex, 40);
  t.is(s.persistedVersion, V(40));
  t.is(await s.getByVersion(V(41)), undefined);
  t.is(await s.getByIndex(41), undefined);
  t.is((await s.getByTime(TS(90)))?.index, 40);
  await checkEntry(t, s, 40);
  // New entries reuse the cut positions (the log is as if they never were).
  t.is(s.append(V(41), TS(41), payloadFor(V(41))), 41);
  await s.flush();
  await s.close();
  const r = await open(dir, { segment_size_bytes: 4096 });
  t.is(r.latestIndex, 41);
  for (let i = 0; i <= 41; i += 3) await checkEntry(t, r, i);
  t.is(await r.getByVersion(V(60)), undefined);
  const idx: number[] = [];
  for await (const e of r.entries(NO_VERSION)) idx.push(e.index);
  t.deepEqual(idx, Array.from({ length: 42 }, (_, i) => i));
  // Truncating to before the first entry empties the log.
  await r.truncateAfter(V(0) - 1n);
  t.is(r.length, 0);
  t.is(r.latestVersion, NO_VERSION);
  t.is(r.append(V(0), TS(0), payloadFor(V(0))), 0);
  await r.close();
  const r2 = await open(dir);
  t.is(r2.latestIndex, 0);
  await checkEntry(t, r2, 0);
  t.is(segmentFiles(dir).length, 1);
  await r2.close();
});

test('reset deletes the log', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir);
  appendRange(s, 0, 5);
  await s.close();
  await LogStore.reset(dir);
  t.false(fs.existsSync(dir));
  const r = await open(dir);
  t.is(r.length, 0);
  t.is(r.latestVersion, NO_VERSION);
  t.is(r.append(V(0), TS(0), payloadFor(V(0))), 0);
  await r.close();
});

test('appends must increase versions and timestamps; a second open of the same log is refused', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir);
  s.append(V(5), TS(5), Buffer.from('x'));
  t.throws(() => s.append(V(5), TS(6), Buffer.from('x')), { code: 'ERR_ASSERTION' });
  t.throws(() => s.append(V(6), TS(5), Buffer.from('x')), { code: 'ERR_ASSERTION' });
  await t.throwsAsync(open(dir), { code: 'ERR_PERSIST_LOCKED' });
  await s.close();
  t.throws(() => s.append(V(7), TS(7), Buffer.from('x')), { code: 'ERR_PERSIST_CLOSED' });
});

test('backpressure: append refuses past max_buffered_bytes until a flush', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir, { max_buffered_bytes: 64 * 1024 });
  const big = Buffer.alloc(1000, 7);
  let i = 0;
  const err = t.throws(() => {
    for (; i < 1000; i++) s.append(V(i), TS(i), big);
  });
  t.is((err as { code?: string }).code, 'ERR_PERSIST_BACKPRESSURE');
  t.true(i > 50 && i < 70, `refused at ${i}`);
  await s.flush();
  s.append(V(i), TS(i), big);
  await s.flush();
  t.is(s.latestIndex, i);
  await s.close();
});

test('a failed write (ENOSPC mid-write) rejects the flush with ERR_PERSIST_IO; the entries are written by the next flush', async (t) => {
  const dir = await tempDir(t);
  let fail = 0;
  const s = await open(dir, { faults: { write: () => (fail-- > 0 ? 'ENOSPC' : null) } });
  appendRange(s, 0, 10);
  await s.flush();
  appendRange(s, 10, 20);
  fail = 1;
  const err = await t.throwsAsync(s.flush());
  t.is((err as { code?: string }).code, 'ERR_PERSIST_IO');
  t.is(s.persistedVersion, V(9));
  for (let i = 10; i < 20; i++) await checkEntry(t, s, i); // still readable from the buffer
  appendRange(s, 20, 25);
  t.is(await s.flush(), V(24));
  await s.close();
  const r = await open(dir);
  t.is(r.latestIndex, 24);
  for (let i = 0; i < 25; i++) await checkEntry(t, r, i);
  await r.close();
});

test('a log whose writes keep failing reopens with exactly its persisted entries (no half entry)', async (t) => {
  const dir = await tempDir(t);
  const { log: rec, records } = recordingLogger();
  let failing = false;
  const s = await LogStore.open({ dir, durable: true, log: rec, faults: { write: () => (failing ? 'EIO' : null), fsync: () => null } });
  appendRange(s, 0, 10);
  await s.flush();
  failing = true;
  appendRange(s, 10, 30);
  await t.throwsAsync(s.flush(), { code: 'ERR_PERSIST_IO' });
  await t.throwsAsync(s.close(), { code: 'ERR_PERSIST_IO' });
  const r = await LogStore.open({ dir, durable: true, log: rec });
  t.is(r.latestIndex, 9);
  for (let i = 0; i < 10; i++) await checkEntry(t, r, i);
  t.false(records.some((x) => x.msg.includes('cut')), 'the failed batch was cut at once: nothing left to cut on reopen');
  await r.close();
});

test('a failed fsync is retried by rewriting the batch', async (t) => {
  const dir = await tempDir(t);
  let fail = 0;
  const s = await open(dir, { faults: { fsync: () => (fail-- > 0 ? 'EIO' : null) } });
  appendRange(s, 0, 5);
  fail = 1;
  await t.throwsAsync(s.flush(), { code: 'ERR_PERSIST_IO' });
  const writes = s.writeCount;
  t.is(await s.flush(), V(4));
  t.is(s.writeCount, writes + 1, 'the batch was written again before the fsync');
  await s.close();
  const r = await open(dir);
  for (let i = 0; i < 5; i++) await checkEntry(t, r, i);
  await r.close();
});

test('non-durable logs never fsync but persist to the OS', async (t) => {
  const dir = await tempDir(t);
  const s = await open(dir, { durable: false });
  appendRange(s, 0, 20);
  t.is(await s.flush(), V(19));
  t.is(s.fsyncCount, 0);
  await s.close();
  const r = await open(dir, { durable: false });
  for (let i = 0; i < 20; i += 3) await checkEntry(t, r, i);
  await r.close();
});
