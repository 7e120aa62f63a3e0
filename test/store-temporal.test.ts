/**
 * Temporal precision over 2 shards (DESIGN §9), over HTTP on 4 real members (2 shards × 2): one
 * writer updates 100 keys in a known causal order (each PUT after the previous one's 201); reads
 * at 500 random past times — half of them while the writes go on, at times just behind them —
 * each see a consistent cut (never update u+1 without update u), a per-key read at a time agrees
 * with the listing at it, and repeating a read gives the same bytes.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { Rng } from './sim/rng.js';
import { StoreCluster } from './helpers/store-cluster.js';

const KEYS = 100;
const ROUNDS = 4;
const READS = 500;
const TIMEOUT_MS = 30_000;

const keyOf = (i: number): string => `t/k${String(i).padStart(3, '0')}`;
/** Update u writes round floor(u / KEYS) of key u % KEYS. */
const bodyOf = (u: number): string => `update ${u}: round ${Math.floor(u / KEYS)} of ${keyOf(u % KEYS)}\n`;
const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

interface Entry {
  key: string;
  etag: string;
}

/** The whole listing under t/ at `at`, page by page. */
async function listAt(url: string, at: string): Promise<Entry[]> {
  const out: Entry[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < 20; pages++) {
    const q = new URLSearchParams({ prefix: 't/', at, limit: '40', ...(after === null ? {} : { after }) });
    const r = await fetch(`${url}/v1/blobs?${q}`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (r.status !== 200) throw new Error(`list at ${at}: ${r.status} ${await r.text()}`);
    const page = (await r.json()) as { entries: Entry[]; next_after: string | null };
    out.push(...page.entries);
    after = page.next_after;
    if (after === null) return out;
  }
  throw new Error('more than 20 pages');
}

/** ISO 8601 with microseconds for an epoch time in µs. */
function isoUs(us: number): string {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, 19)}.${String(us % 1_000_000).padStart(6, '0')}Z`;
}

test('reads at 500 random past times over 2 shards see consistent cuts, and the same bytes when repeated', async (t) => {
  t.timeout(10 * 60_000);
  const c = await StoreCluster.create(4, { shards: 2, members_per_shard: 2 });
  t.teardown(() => c.stop());
  await c.startAll();
  const cluster = (await (await fetch(`${c.url(0)}/v1/cluster`)).json()) as { layout: { shards: number[][] }[] };
  t.is(cluster.layout[0]!.shards.length, 2, 'two shards of the store');

  const updateOfEtag = new Map<string, number>();
  for (let u = 0; u < KEYS * ROUNDS; u++) updateOfEtag.set(sha(bodyOf(u)), u);
  const rng = new Rng(20261202);

  /** Checks the cut a listing at `at` shows; returns the number of updates it holds. */
  const checkCut = (entries: Entry[], at: string): number => {
    const seen = new Set<number>();
    for (const e of entries) {
      const u = updateOfEtag.get(e.etag);
      if (u === undefined) throw new Error(`at ${at}: ${e.key} has an etag no update wrote`);
      if (keyOf(u % KEYS) !== e.key) throw new Error(`at ${at}: ${e.key} shows update ${u} of another key`);
      seen.add(u);
    }
    // Key k's version at the cut is its latest update ≤ the cut's last update n: exactly the
    // updates n-99..n are the current ones (or 0..n while n < 100).
    const n = seen.size === 0 ? -1 : Math.max(...seen);
    const expected = new Set<number>();
    for (let u = Math.max(0, n - KEYS + 1); u <= n; u++) expected.add(u);
    if (seen.size !== expected.size || [...seen].some((u) => !expected.has(u))) {
      const missing = [...expected].filter((u) => !seen.has(u));
      throw new Error(`at ${at}: not a consistent cut: latest update ${n} seen, but not ${missing.slice(0, 10).join(', ')}`);
    }
    return n + 1;
  };

  // The writer: one client, each PUT after the previous one's 201, through a member of its choice.
  const t_start_us = Date.now() * 1000;
  const stamps: number[] = [];
  let written = 0;
  const writer = (async () => {
    for (let u = 0; u < KEYS * ROUNDS; u++) {
      const r = await fetch(`${c.url(u % 4)}/v1/blobs/${keyOf(u % KEYS)}`, { method: 'PUT', body: bodyOf(u), signal: AbortSignal.timeout(TIMEOUT_MS) });
      if (r.status !== 201) throw new Error(`update ${u}: ${r.status} ${await r.text()}`);
      const created = (await r.json()) as { timestamp: string };
      stamps.push(Date.parse(created.timestamp));
      written = u + 1;
    }
  })();

  // Half the reads while the writer runs, at times a little behind it (stable soon, or waited for).
  const reads: { at: string; count: number }[] = [];
  const during: Promise<void> = (async () => {
    while (reads.length < READS / 2 && written < KEYS * ROUNDS) {
      const now_us = Date.now() * 1000;
      const at = isoUs(Math.max(t_start_us, now_us - rng.int(0, 50_000)));
      reads.push({ at, count: checkCut(await listAt(c.url(rng.int(0, 3)), at), at) });
    }
  })();
  await Promise.all([writer, during]);
  const t_end_us = Date.now() * 1000;
  t.is(written, KEYS * ROUNDS);
  for (let i = 1; i < stamps.length; i++) t.true(stamps[i]! >= stamps[i - 1]!, `update ${i} is not stamped before update ${i - 1}`);
  const readsDuring = reads.length;

  // The rest after the writes: one before the first update, one after the last, and random times
  // over the whole run.
  const before = isoUs(t_start_us - 1_000_000);
  const after = isoUs(t_end_us);
  reads.push({ at: before, count: checkCut(await listAt(c.url(1), before), before) }, { at: after, count: checkCut(await listAt(c.url(2), after), after) });
  t.is(reads.at(-2)!.count, 0, 'nothing before the first update');
  t.is(reads.at(-1)!.count, KEYS * ROUNDS, 'every update after the last one');
  while (reads.length < READS) {
    const at = isoUs(rng.int(t_start_us - 1_000_000, t_end_us));
    reads.push({ at, count: checkCut(await listAt(c.url(rng.int(0, 3)), at), at) });
  }
  const counts = reads.map((r) => r.count);
  t.log(`${readsDuring} reads during the writes, ${READS - readsDuring} after; cuts held 0..${KEYS * ROUNDS} updates, ${new Set(counts).size} distinct cuts`);
  t.true(new Set(counts).size > 50, 'the reads saw many different cuts, not one');

  // Repeated reads: the same cut from any member, and per-key reads at the time agree with it.
  for (let i = 0; i < 60; i++) {
    const r = reads[rng.int(0, reads.length - 1)]!;
    const again = await listAt(c.url(rng.int(0, 3)), r.at);
    t.is(checkCut(again, r.at), r.count, `a listing at ${r.at} repeated shows the same cut`);
    if (i % 6 === 0) {
      for (const k of [0, 37, 99]) {
        const resp = await fetch(`${c.url(rng.int(0, 3))}/v1/blobs/${keyOf(k)}?at=${r.at}`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
        const listed = again.find((e) => e.key === keyOf(k));
        if (listed === undefined) {
          t.is(resp.status, 404, `${keyOf(k)} at ${r.at}: not listed, not found`);
          await resp.arrayBuffer();
        } else {
          t.is(resp.status, 200);
          t.is(sha(Buffer.from(await resp.arrayBuffer())), listed.etag, `${keyOf(k)} at ${r.at}: the bytes the listing names`);
        }
      }
    }
  }
});
