/**
 * A directory of 10,000 files (DESIGN §10: "`ls -l` of a directory with 10,000 entries is one
 * listing from the index, not 10,000 lookups; attributes come with the listing"). The files are
 * made by whichever of two ways is faster here (measured on the first 600: node fs through the
 * mount, or HTTP PUTs with 16 in flight); then `ls -l` through the mount must list all of them
 * with their sizes, costing at most 20 store list calls and 50 head calls (the mount's own
 * counters on member 0's /metrics), timed beside `ls -l` of the same tree on local disk.
 */
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { blobPath, sleep } from './helpers/http-blob.js';
import { httpPut, metricValue, mountedCluster, run, scrape, until, type MountedCluster } from './helpers/fs-run.js';

const FILES = 10_000;
const SAMPLE = 300;
const CONCURRENCY = 16;
const DIR = 'list/d';

const nameOf = (i: number): string => `f${String(i).padStart(5, '0')}`;
const sizeOf = (i: number): number => (i * 7919) % 2000;
const bodyOf = (i: number): Buffer => Buffer.alloc(sizeOf(i), i % 251);

/** Runs fn(i) for i in [from, to) with `concurrency` in flight; rejects on the first failure. */
async function pool(from: number, to: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) {
        const i = next++;
        await fn(i);
      }
    }),
  );
}

let m: MountedCluster;

test.before(async () => {
  m = await mountedCluster(3, 0);
});

test.after.always(async () => {
  await m?.stop();
});

interface LsEntry {
  mode: string;
  size: number;
  name: string;
}

function parseLsL(out: string): LsEntry[] {
  const lines = out.split('\n').filter(Boolean);
  const entries: LsEntry[] = [];
  for (const line of lines) {
    if (line.startsWith('total ')) continue;
    // mode links owner group size time(+%s) name
    const f = /^(\S+)\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\d+\s+(.+)$/.exec(line);
    if (f === null) throw new Error(`unexpected ls -l line: ${JSON.stringify(line)}`);
    entries.push({ mode: f[1]!, size: Number(f[2]), name: f[3]! });
  }
  return entries;
}

const storeCalls = (text: string, call: string): number => metricValue(text, 'tempest_fs_store_calls_total', { call }) ?? 0;

test('ls -l of a 10,000-file directory through the mount: every entry with its size, at most 20 list and 50 head store calls', async (t) => {
  t.timeout(6 * 60_000);
  const dir = path.join(m.mnt, DIR);
  await mkdir(dir, { recursive: true });

  // Which way of making the files is faster here: measured, then used for the rest.
  const viaMount = (i: number): Promise<void> => writeFile(path.join(dir, nameOf(i)), bodyOf(i));
  const viaHttp = async (i: number): Promise<void> => {
    const r = await httpPut(m.c.url(i % 3) + blobPath(`${DIR}/${nameOf(i)}`), bodyOf(i), 60_000);
    if (r.status !== 201) throw new Error(`PUT ${nameOf(i)}: ${r.status} ${JSON.stringify(r.json)}`);
  };
  let t0 = Date.now();
  await pool(0, SAMPLE, CONCURRENCY, viaMount);
  const mountRate = SAMPLE / ((Date.now() - t0) / 1000);
  t0 = Date.now();
  await pool(SAMPLE, 2 * SAMPLE, CONCURRENCY, viaHttp);
  const httpRate = SAMPLE / ((Date.now() - t0) / 1000);
  const faster = httpRate > mountRate ? 'HTTP' : 'mount';
  t0 = Date.now();
  await pool(2 * SAMPLE, FILES, CONCURRENCY, faster === 'HTTP' ? viaHttp : viaMount);
  const restMs = Date.now() - t0;
  t.log(`creating files: ${mountRate.toFixed(0)}/s through the mount, ${httpRate.toFixed(0)}/s over HTTP (${CONCURRENCY} in flight); the other ${FILES - 2 * SAMPLE} ${faster === 'HTTP' ? 'over HTTP' : 'through the mount'} in ${restMs} ms`);

  // Everything made over HTTP is listed by the mount (bounded wait for the last PUTs to show).
  const all = await until(20_000, async () => ((await readdir(dir)).length === FILES ? true : undefined), 500);
  t.true(all, `the mount lists all ${FILES} names`);
  // Past the kernel's attribute and entry caches (1 s by default) so ls -l asks the mount.
  await sleep(2000);

  const before = await scrape(m.c.url(0));
  t.regex(before, /^# TYPE tempest_fs_store_calls_total counter$/m, 'the mount counts its store calls');
  const ls = await run('ls', ['-l', '--time-style=+%s', dir], { timeout_ms: 150_000 });
  const after = await scrape(m.c.url(0));
  t.is(ls.code, 0, ls.stderr.slice(0, 2000));
  const entries = parseLsL(ls.stdout);
  t.is(entries.length, FILES, 'ls -l shows 10,000 entries');
  const wrong = entries.filter((e) => {
    const i = Number(e.name.slice(1));
    return e.name !== nameOf(i) || e.size !== sizeOf(i) || !e.mode.startsWith('-');
  });
  t.deepEqual(wrong.slice(0, 10), [], `${wrong.length} entries with a wrong name, size or type`);
  t.deepEqual(
    entries.map((e) => e.name),
    Array.from({ length: FILES }, (_, i) => nameOf(i)),
    'each name once, in order',
  );
  const lists = storeCalls(after, 'list') - storeCalls(before, 'list');
  const heads = storeCalls(after, 'head') - storeCalls(before, 'head');
  t.log(`ls -l through the mount: ${ls.ms} ms; store calls: ${lists} list, ${heads} head, ${storeCalls(after, 'read') - storeCalls(before, 'read')} read`);
  t.true(lists <= 20, `${lists} list calls for one ls -l (at most 20)`);
  t.true(heads <= 50, `${heads} head calls for one ls -l (at most 50)`);

  // Again, warm; and the same tree on local disk for scale.
  const warm = await run('ls', ['-l', '--time-style=+%s', dir], { timeout_ms: 150_000 });
  t.is(warm.code, 0);
  t.is(parseLsL(warm.stdout).length, FILES);
  const localDir = path.join(m.scratch, 'list-local');
  mkdirSync(localDir);
  for (let i = 0; i < FILES; i++) writeFileSync(path.join(localDir, nameOf(i)), bodyOf(i));
  const loc = await run('ls', ['-l', '--time-style=+%s', localDir], { timeout_ms: 60_000 });
  t.is(loc.code, 0);
  t.is(parseLsL(loc.stdout).length, FILES);
  t.log(`ls -l of ${FILES} files: mount ${ls.ms} ms cold, ${warm.ms} ms warm; local disk ${loc.ms} ms`);
});
