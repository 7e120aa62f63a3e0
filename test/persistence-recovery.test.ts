/**
 * LogStore recovery: torn and corrupt tails are cut (exactly the bad entry and everything after
 * it), damaged segment headers end the log, and the LevelDB index is rebuilt when it lags, is
 * lost, or claims entries the segments do not hold.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Level } from 'level';
import { LogStore } from '../engine/persistence/log-store.js';
import { makeVersion } from '../engine/persistence/version.js';
import { checkEntry as parseEntry, EntryCheck, ENTRY_HEADER_BYTES, newEntryHeader, SEGMENT_HEADER_BYTES } from '../engine/persistence/entry-format.js';
import { payloadFor, recordingLogger, segmentFiles, tempDir, type Recorded } from './fixtures/persistence-helpers.js';

const V = (i: number): bigint => makeVersion(2, 10 + 2 * i);
const TS = (i: number): bigint => 5_000_000n + 7n * BigInt(i);
const SEG = 4096;
const N = 100;

interface Placed {
  index: number;
  file: string;
  offset: number;
  size: number;
}

/** Every entry of every segment file, by parsing the files. */
function placeEntries(dir: string): Placed[] {
  const out: Placed[] = [];
  const h = newEntryHeader();
  for (const name of segmentFiles(dir)) {
    const file = path.join(dir, name);
    const buf = fs.readFileSync(file);
    let at = SEGMENT_HEADER_BYTES;
    while (at < buf.length && parseEntry(buf, at, h) === EntryCheck.Ok) {
      out.push({ index: h.index, file, offset: at, size: ENTRY_HEADER_BYTES + h.payload_bytes });
      at += ENTRY_HEADER_BYTES + h.payload_bytes;
    }
  }
  return out;
}

async function writeLog(t: ExecutionContext): Promise<{ dir: string; placed: Placed[] }> {
  const dir = await tempDir(t);
  const { log } = recordingLogger();
  const s = await LogStore.open({ dir, durable: true, segment_size_bytes: SEG, log, index_stride: 4 });
  for (let i = 0; i < N; i += 10) {
    for (let k = i; k < i + 10; k++) s.append(V(k), TS(k), payloadFor(V(k)));
    await s.flush();
  }
  await s.close();
  const placed = placeEntries(dir);
  t.is(placed.length, N);
  t.true(segmentFiles(dir).length >= 4);
  return { dir, placed };
}

async function reopen(dir: string): Promise<{ s: LogStore; records: Recorded[] }> {
  const { log, records } = recordingLogger();
  const s = await LogStore.open({ dir, durable: true, segment_size_bytes: SEG, log, index_stride: 4 });
  return { s, records };
}

async function expectEntries(t: ExecutionContext, s: LogStore, count: number): Promise<void> {
  t.is(s.latestIndex, count - 1);
  t.is(s.latestVersion, V(count - 1));
  for (let i = 0; i < count; i++) {
    const e = await s.getByIndex(i);
    t.truthy(e, `entry ${i}`);
    t.is(e!.version, V(i));
    t.true(e!.payload.equals(payloadFor(V(i))), `payload ${i}`);
  }
  t.is(await s.getByIndex(count), undefined);
  t.is(await s.getByVersion(V(count)), undefined);
  t.is((await s.getByTime(TS(N + 5)))?.index, count - 1);
  const seen: number[] = [];
  for await (const e of s.entries(-1n)) seen.push(e.index);
  t.deepEqual(seen, Array.from({ length: count }, (_, i) => i), 'indices are contiguous');
}

function cutRecord(records: Recorded[]): Recorded | undefined {
  return records.find((r) => r.level === 40 && typeof r.cut_bytes === 'number');
}

/** Appends after recovery continue at the right index, and survive another reopen. */
async function appendAfter(t: ExecutionContext, dir: string, s: LogStore, count: number): Promise<void> {
  t.is(s.append(V(count), TS(count), payloadFor(V(count))), count);
  await s.flush();
  await s.close();
  const { s: r, records } = await reopen(dir);
  t.is(cutRecord(records), undefined, 'a clean log is not cut again');
  await expectEntries(t, r, count + 1);
  await r.close();
}

test('torn tail: the last segment truncated mid-entry -> exactly that entry is cut', async (t) => {
  const { dir, placed } = await writeLog(t);
  const last = placed[N - 1]!;
  fs.truncateSync(last.file, last.offset + last.size - 10);
  const { s, records } = await reopen(dir);
  t.is(cutRecord(records)?.cut_bytes, last.size - 10);
  await expectEntries(t, s, N - 1);
  t.is(fs.statSync(last.file).size, last.offset);
  await appendAfter(t, dir, s, N - 1);
});

test('corrupt tail: a flipped byte in the last entry payload -> exactly that entry is cut', async (t) => {
  const { dir, placed } = await writeLog(t);
  const last = placed[N - 1]!;
  const fd = fs.openSync(last.file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, last.offset + last.size - 1);
  b[0] = b[0]! ^ 0x40;
  fs.writeSync(fd, b, 0, 1, last.offset + last.size - 1);
  fs.closeSync(fd);
  const { s, records } = await reopen(dir);
  t.is(cutRecord(records)?.cut_bytes, last.size);
  await expectEntries(t, s, N - 1);
  await appendAfter(t, dir, s, N - 1);
});

test('corruption in the middle (index lost): that entry and everything after it are cut, later segments deleted', async (t) => {
  const { dir, placed } = await writeLog(t);
  const bad = placed[25]!;
  fs.rmSync(path.join(dir, 'index'), { recursive: true });
  const fd = fs.openSync(bad.file, 'r+');
  fs.writeSync(fd, Buffer.from([0xff, 0xee]), 0, 2, bad.offset + ENTRY_HEADER_BYTES);
  fs.closeSync(fd);
  const later = placed.filter((p) => p.index > 25);
  const expectCut = later.reduce((a, p) => a + p.size, bad.size) + (new Set(later.map((p) => p.file)).size - (later.some((p) => p.file === bad.file) ? 1 : 0)) * SEGMENT_HEADER_BYTES;
  const { s, records } = await reopen(dir);
  t.is(cutRecord(records)?.cut_bytes, expectCut);
  await expectEntries(t, s, 25);
  t.is(segmentFiles(dir).at(-1), path.basename(bad.file), 'segments after the damaged one are gone');
  await appendAfter(t, dir, s, 25);
});

test('a torn segment header ends the log at the previous segment', async (t) => {
  const { dir, placed } = await writeLog(t);
  const lastFile = placed[N - 1]!.file;
  const firstInLast = placed.find((p) => p.file === lastFile)!.index;
  fs.truncateSync(lastFile, 20);
  const { s, records } = await reopen(dir);
  t.truthy(records.find((r) => r.level === 40));
  t.false(fs.existsSync(lastFile));
  await expectEntries(t, s, firstInLast);
  await appendAfter(t, dir, s, firstInLast);
});

async function indexKeys(dir: string): Promise<{ prefix: string; keys: bigint[] }[]> {
  const db = new Level<Buffer, Buffer>(path.join(dir, 'index'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const out: { prefix: string; keys: bigint[] }[] = [];
  for (const p of ['I', 'V', 'T']) {
    const keys = (await db.keys({ gte: Buffer.from(p), lt: Buffer.from(String.fromCharCode(p.charCodeAt(0) + 1)) }).all()).map((k) => k.readBigUInt64BE(1));
    out.push({ prefix: p, keys });
  }
  await db.close();
  return out;
}

/** The index covers the whole log: its last block (by index key) ends at the log's end. */
async function indexComplete(t: ExecutionContext, dir: string, count: number): Promise<void> {
  const db = new Level<Buffer, Buffer>(path.join(dir, 'index'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const rows = await db.iterator({ gte: Buffer.from('I'), lt: Buffer.from('J'), reverse: true, limit: 1 }).all();
  await db.close();
  const v = rows[0]![1];
  t.is(Number(v.readBigUInt64LE(0)) + v.readUInt32LE(44), count, 'the last index block ends at the last entry');
}

test('index lost: rebuilt from the segments', async (t) => {
  const { dir } = await writeLog(t);
  fs.rmSync(path.join(dir, 'index'), { recursive: true });
  const { s, records } = await reopen(dir);
  t.is(cutRecord(records), undefined);
  await expectEntries(t, s, N);
  await s.close();
  await indexComplete(t, dir, N);
  const keys = await indexKeys(dir);
  t.is(keys[0]!.keys.length, keys[1]!.keys.length);
  t.is(keys[0]!.keys[0], 0n);
  // Cold reads after the rebuild (the tail index starts empty after a clean open).
  const { s: r } = await reopen(dir);
  await expectEntries(t, r, N);
  await r.close();
});

test('index lagging (its newest keys deleted): the missing part is re-indexed', async (t) => {
  const { dir } = await writeLog(t);
  const db = new Level<Buffer, Buffer>(path.join(dir, 'index'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  for (const p of ['I', 'V', 'T']) {
    const keys = await db.keys({ gte: Buffer.from(p), lt: Buffer.from(String.fromCharCode(p.charCodeAt(0) + 1)), reverse: true, limit: 5 }).all();
    t.is(keys.length, 5);
    await db.batch(keys.map((key) => ({ type: 'del' as const, key })));
  }
  await db.close();
  const before = await indexKeys(dir);
  const { s } = await reopen(dir);
  await expectEntries(t, s, N);
  await s.close();
  await indexComplete(t, dir, N);
  const after = await indexKeys(dir);
  t.true(after[0]!.keys.length > before[0]!.keys.length);
  t.deepEqual(after[0]!.keys.length, after[2]!.keys.length);
});

test('index ahead of the segments (entries gone from the file): stale keys are deleted', async (t) => {
  const { dir, placed } = await writeLog(t);
  const keep = N - 3;
  const firstGone = placed[keep]!;
  // Cut at an entry boundary (no torn entry: a lost page cache of a non-durable log looks like this).
  fs.truncateSync(firstGone.file, firstGone.offset);
  for (const p of placed) if (p.file > firstGone.file && fs.existsSync(p.file)) fs.rmSync(p.file);
  const { s } = await reopen(dir);
  await expectEntries(t, s, keep);
  t.is(await s.getByVersion(V(N - 1)), undefined);
  await s.close();
  await indexComplete(t, dir, keep);
  const keys = await indexKeys(dir);
  t.true(keys[1]!.keys.every((v) => v <= V(keep - 1)), 'no version key beyond the log');
  t.true(keys[2]!.keys.every((ts) => ts <= TS(keep - 1)), 'no time key beyond the log');
});
