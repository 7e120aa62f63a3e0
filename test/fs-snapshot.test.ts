/**
 * Time travel through the mount (DESIGN §10): `/.snapshot/<time>/...`, `path@<time>`, named
 * snapshots, and the same past over HTTP (`?at=`). One writer changes a small tree through the
 * mount (create, overwrite, append, patch, truncate, delete, rename of files and of a directory)
 * and records, for every operation, the wall-clock instants just before it started and just
 * after it returned; a model holds what existed between operations. Reads at 200 random past
 * times inside those gaps (never inside an operation, where either answer would be right) must
 * show exactly the model's tree, in each of the accepted time formats.
 */
import test from 'ava';
import { appendFile, mkdir, open, readdir, readFile, rename, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { blobPath, sha256, sleep } from './helpers/http-blob.js';
import { ERRNO_TEXT, KiB, MiB, httpGet, httpPut, sharedMountedCluster, ok, okBytes, run, seeded, until } from './helpers/fs-run.js';
import { Rng } from './sim/rng.js';

const { mnt, cluster } = sharedMountedCluster(test);

// ---- the model -------------------------------------------------------------------------------------

interface State {
  /** Files by path relative to the mount root. */
  files: Map<string, Buffer>;
  /** Directories (made with mkdir) by path. */
  dirs: Set<string>;
}

interface Gap {
  /** Safe instants (epoch ms, inclusive): no operation ran at any of them. */
  from: number;
  to: number;
  state: State;
}

const clone = (s: State): State => ({ files: new Map(s.files), dirs: new Set(s.dirs) });

/** The names directly in directory `dir` of `s`, sorted; null when the directory does not exist. */
function listingOf(s: State, dir: string): string[] | null {
  if (!s.dirs.has(dir)) return null;
  const names = new Set<string>();
  for (const p of [...s.files.keys(), ...s.dirs]) {
    if (p.startsWith(`${dir}/`)) names.add(p.slice(dir.length + 1).split('/')[0]!);
  }
  return [...names].sort();
}

/**
 * A read at an instant taken from Date.now() (whole ms) names the end of that ms's first µs, so an
 * update during ms `end` may be after it and one during ms `start` is not before `start - 1`:
 * 2 ms either side keeps every sampled time strictly between operations.
 */
const MARGIN_MS = 2;
const PAUSE_MS = 30;

type Fmt = 'iso' | 'dots' | 'ms' | 'seconds';
function formatTime(ms: number, fmt: Fmt): string {
  const iso = new Date(ms).toISOString();
  if (fmt === 'iso') return iso;
  if (fmt === 'dots') return iso.replace(/:/g, '.');
  if (fmt === 'seconds') return `${iso.slice(0, 19)}Z`;
  return String(ms);
}

async function readOrCode(p: string): Promise<Buffer | string> {
  try {
    return await readFile(p);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

async function readdirOrCode(p: string): Promise<string[] | string> {
  try {
    return (await readdir(p)).sort();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

const show = (x: Buffer | string | string[] | null): string => (x === null ? 'absent' : Buffer.isBuffer(x) ? `${x.length} bytes ${sha256(x).slice(0, 12)} ${JSON.stringify(x.subarray(0, 40).toString('latin1'))}` : JSON.stringify(x));

let finalState: State | undefined;
let finalGap: Gap | undefined;

test.serial('.snapshot/<t>/, path@<t> and ?at=<t> at 200 random past times show exactly what existed then, in every time format', async (t) => {
  t.timeout(8 * 60_000);
  const gaps: Gap[] = [];
  let state: State = { files: new Map(), dirs: new Set() };
  const t_begin = Date.now();
  gaps.push({ from: t_begin, to: t_begin, state });
  await sleep(PAUSE_MS);

  /** Runs one operation through the mount, closing the previous gap and opening the next. */
  const op = async (what: string, run_: () => Promise<void>, change: (s: State) => void): Promise<void> => {
    const start = Date.now();
    gaps.at(-1)!.to = start - MARGIN_MS;
    try {
      await run_();
    } catch (err) {
      throw new Error(`${what}: ${String(err)}`);
    }
    const end = Date.now();
    state = clone(state);
    change(state);
    gaps.push({ from: end + MARGIN_MS, to: end + MARGIN_MS, state });
    await sleep(PAUSE_MS);
  };
  const create = (p: string, body: Buffer | string): Promise<void> =>
    op(`write ${p}`, () => writeFile(mnt(p), body), (s) => s.files.set(p, Buffer.from(body)));
  const append = (p: string, more: string): Promise<void> =>
    op(`append ${p}`, () => appendFile(mnt(p), more), (s) => s.files.set(p, Buffer.concat([s.files.get(p)!, Buffer.from(more)])));
  const remove = (p: string): Promise<void> => op(`unlink ${p}`, () => unlink(mnt(p)), (s) => s.files.delete(p));
  const move = (from: string, to: string): Promise<void> =>
    op(`rename ${from} ${to}`, () => rename(mnt(from), mnt(to)), (s) => {
      for (const [p, b] of [...s.files]) {
        if (p === from || p.startsWith(`${from}/`)) {
          s.files.delete(p);
          s.files.set(to + p.slice(from.length), b);
        }
      }
      for (const d of [...s.dirs]) {
        if (d === from || d.startsWith(`${from}/`)) {
          s.dirs.delete(d);
          s.dirs.add(to + d.slice(from.length));
        }
      }
    });

  // A scripted start covering every kind of change, then random ones.
  await op('mkdir tt', () => mkdir(mnt('tt')), (s) => s.dirs.add('tt'));
  await op('mkdir tt/sub', () => mkdir(mnt('tt/sub')), (s) => s.dirs.add('tt/sub'));
  await create('tt/a', 'a v1\n');
  await create('tt/b', 'b v1\n');
  await create('tt/sub/c', 'c v1\n');
  await create('tt/a', 'a v2, longer than the first\n');
  await append('tt/b', 'b appended\n');
  const big = seeded('snap/big', 1.5 * MiB);
  await create('tt/big', big);
  await move('tt/b', 'tt/b2');
  await remove('tt/a');
  await create('tt/a', 'a v3, after its delete\n');
  const patch = seeded('snap/patch', 200);
  await op(
    'patch tt/big',
    async () => {
      const fh = await open(mnt('tt/big'), 'r+');
      try {
        await fh.write(patch, 0, patch.length, MiB - 100);
      } finally {
        await fh.close();
      }
    },
    (s) => {
      const b = Buffer.from(s.files.get('tt/big')!);
      patch.copy(b, MiB - 100);
      s.files.set('tt/big', b);
    },
  );
  await move('tt/sub/c', 'tt/c');
  await create('tt/sub/d', 'd v1\n');
  await move('tt/sub', 'tt/sub2');
  await append('tt/a', 'a appended\n');
  await remove('tt/b2');
  await op('truncate tt/big', () => truncate(mnt('tt/big'), 1000), (s) => s.files.set('tt/big', s.files.get('tt/big')!.subarray(0, 1000)));
  // A pause of over a second, so whole-second times fall between operations too.
  await sleep(1100);
  const rng = new Rng(20261123);
  const pool = ['a', 'c', 'big', 'r0', 'r1', 'r2', 'r3'].map((n) => `tt/${n}`);
  for (let i = 0; i < 24; i++) {
    const p = rng.pick(pool);
    if (!state.files.has(p)) {
      await create(p, i % 5 === 0 ? seeded(`snap/r${i}`, rng.int(10 * KiB, 300 * KiB)) : `created by op ${i}\n`);
      continue;
    }
    const r = rng.int(0, 9);
    if (r < 4) await create(p, `overwritten by op ${i}\n`.repeat(rng.int(1, 5)));
    else if (r < 6) await append(p, `appended by op ${i}\n`);
    else if (r < 8) await remove(p);
    else {
      const free = pool.filter((q) => !state.files.has(q));
      if (free.length === 0) await create(p, `overwritten by op ${i}, no free name\n`);
      else await move(p, rng.pick(free));
    }
  }
  await sleep(50);
  gaps.at(-1)!.to = Date.now() - MARGIN_MS;
  const t_end = Date.now();
  finalState = state;
  finalGap = gaps.at(-1)!;
  const usable = gaps.filter((g) => g.to >= g.from);
  t.log(`${gaps.length - 1} operations over ${t_end - t_begin} ms; ${usable.length} gaps usable`);
  t.true(usable.length >= gaps.length - 3, 'almost every gap is wide enough to sample');

  // Every path that ever existed, and one that never did.
  const universe = [...new Set(gaps.flatMap((g) => [...g.state.files.keys()]))].concat(['tt/never']).sort();
  // path@t is looked up in a directory that exists now.
  const atUniverse = universe.filter((p) => state.dirs.has(path.dirname(p)));
  const fmts: Fmt[] = ['iso', 'dots', 'ms'];
  const seen: { at: string; p: string; got: Buffer | string }[] = [];
  let checks = 0;

  const checkAt = async (ms: number, fmt: Fmt, g: Gap, i: number): Promise<void> => {
    const at = formatTime(ms, fmt);
    const where = `at ${at} (gap ${gaps.indexOf(g)}, ${fmt})`;
    for (const dir of ['tt', 'tt/sub', 'tt/sub2']) {
      const want = listingOf(g.state, dir);
      const got = await readdirOrCode(mnt('.snapshot', at, dir));
      t.deepEqual(got, want ?? 'ENOENT', `ls .snapshot/${at}/${dir}: ${where}`);
      checks++;
    }
    const paths = [rng.pick(universe), rng.pick(universe), rng.pick(universe)];
    for (const p of paths) {
      const want = g.state.files.get(p);
      const got = await readOrCode(mnt('.snapshot', at, p));
      if (want === undefined) t.is(got, 'ENOENT', `.snapshot/${at}/${p} should not exist: ${where}: got ${show(got)}`);
      else t.true(Buffer.isBuffer(got) && got.equals(want), `.snapshot/${at}/${p}: ${where}: want ${show(want)} got ${show(got)}`);
      if (i < 20) seen.push({ at, p, got });
      const h = await httpGet(`${cluster().c.url(1 + (i % 2))}${blobPath(p)}?at=${encodeURIComponent(at)}`);
      if (want === undefined) t.is(h.status, 404, `GET ${p}?at=${at}: ${where}`);
      else t.true(h.status === 200 && h.body.equals(want), `GET ${p}?at=${at}: ${where}: status ${h.status}, want ${show(want)} got ${show(h.body)}`);
      checks += 2;
    }
    const q = rng.pick(atUniverse);
    const want = g.state.files.get(q);
    const got = await readOrCode(mnt(`${q}@${at}`));
    if (want === undefined) t.is(got, 'ENOENT', `${q}@${at} should not exist: ${where}: got ${show(got)}`);
    else t.true(Buffer.isBuffer(got) && got.equals(want), `${q}@${at}: ${where}: want ${show(want)} got ${show(got)}`);
    checks++;
  };

  const t0 = Date.now();
  for (let i = 0; i < 200; i++) {
    const g = rng.pick(usable);
    const ms = rng.int(g.from, g.to);
    await checkAt(ms, fmts[i % 3]!, g, i);
  }
  // Whole seconds that fall in a gap: the ISO form without a fraction.
  let wholeSeconds = 0;
  for (const g of usable) {
    for (let s = Math.ceil(g.from / 1000) * 1000; s <= g.to && wholeSeconds < 5; s += 1000) {
      await checkAt(s, 'seconds', g, 1000);
      wholeSeconds++;
    }
  }
  t.true(wholeSeconds >= 1, 'at least one whole second fell between operations');
  t.log(`${checks} checks at ${200 + wholeSeconds} times (${wholeSeconds} whole seconds) in ${Date.now() - t0} ms`);

  // A few with the real tools: ls and cat.
  for (let i = 0; i < 6; i++) {
    const g = usable[Math.floor(((i + 1) * usable.length) / 7)]!;
    const at = formatTime(rng.int(g.from, g.to), fmts[i % 3]!);
    const want = listingOf(g.state, 'tt');
    const ls = await run('ls', ['-1', '-A', mnt('.snapshot', at, 'tt')]);
    if (want === null) {
      t.not(ls.code, 0);
      t.regex(ls.stderr, new RegExp(ERRNO_TEXT.ENOENT));
    } else {
      t.is(ls.code, 0, ls.stderr);
      t.deepEqual(ls.stdout.split('\n').filter(Boolean), want, `ls .snapshot/${at}/tt`);
      for (const name of want.filter((n) => g.state.files.has(`tt/${n}`))) {
        const cat = await okBytes('cat', [mnt('.snapshot', at, 'tt', name)]);
        t.true(cat.equals(g.state.files.get(`tt/${name}`)!), `cat .snapshot/${at}/tt/${name}`);
        const catAt = await okBytes('cat', [mnt('tt', `${name}@${at}`)]);
        t.true(catAt.equals(g.state.files.get(`tt/${name}`)!), `cat tt/${name}@${at}`);
      }
    }
  }

  // Reading the same past twice gives the same bytes.
  for (const s of seen) {
    const again = await readOrCode(mnt('.snapshot', s.at, s.p));
    t.deepEqual(again, s.got, `.snapshot/${s.at}/${s.p} read again`);
  }
  // And the present is the model's final state.
  t.deepEqual((await readdir(mnt('tt'))).sort(), listingOf(state, 'tt'));
  for (const [p, b] of state.files) t.true((await readFile(mnt(p))).equals(b), `${p} now`);
});

test.serial('.snapshot is hidden from ls -a and find, but resolves when named', async (t) => {
  const la = await ok('ls', ['-a', '-1', cluster().mnt]);
  t.false(la.split('\n').includes('.snapshot'), `ls -a lists no .snapshot:\n${la}`);
  t.true(la.split('\n').includes('tt'), 'ls -a lists the tree');
  const f = await ok('find', [cluster().mnt], { timeout_ms: 60_000 });
  t.true(f.split('\n').length > 5, 'find walked the tree');
  t.false(f.includes('.snapshot'), 'find never wanders into .snapshot');
  t.false((await readdir(cluster().mnt)).includes('.snapshot'));
  t.true((await stat(mnt('.snapshot'))).isDirectory(), '.snapshot resolves when named');
  const ls = await run('ls', [mnt('.snapshot')]);
  t.is(ls.code, 0, ls.stderr);
  const r = await run('rm', ['-r', '-f', mnt('.snapshot')]);
  t.not(r.code, 0, 'rm -r of .snapshot is refused');
  t.true((await stat(mnt('.snapshot'))).isDirectory());
});

test.serial('writes under .snapshot/<t>/ and to path@<t> fail "Read-only file system"; the past is unchanged', async (t) => {
  t.truthy(finalState, 'the time-travel test ran first');
  const g = finalGap!;
  const at = formatTime(g.from, 'dots');
  const a = finalState!.files.get('tt/c') !== undefined ? 'tt/c' : [...finalState!.files.keys()][0]!;
  const before = await readFile(mnt('.snapshot', at, a));
  const attempts: [string, string[]][] = [
    ['touch', [mnt('.snapshot', at, 'tt', 'new-file')]],
    ['sh', ['-c', 'echo x > "$1"', 'sh', mnt('.snapshot', at, a)]],
    ['sh', ['-c', 'echo x >> "$1"', 'sh', mnt('.snapshot', at, a)]],
    ['mkdir', [mnt('.snapshot', at, 'tt', 'new-dir')]],
    ['rm', ['-f', mnt('.snapshot', at, a)]],
    ['truncate', ['-s', '0', mnt('.snapshot', at, a)]],
    ['chmod', ['000', mnt('.snapshot', at, a)]],
    ['ln', ['-s', 'x', mnt('.snapshot', at, 'tt', 'new-link')]],
    ['mv', [mnt('.snapshot', at, a), mnt('.snapshot', at, 'tt', 'moved')]],
    ['touch', [mnt('.snapshot', 'new-name-by-touch')]],
    ['sh', ['-c', 'echo x > "$1"', 'sh', mnt(`${a}@${at}`)]],
    ['touch', [mnt(`${a}@${formatTime(g.from, 'iso')}`)]],
  ];
  for (const [cmd, args] of attempts) {
    const r = await run(cmd, args);
    t.not(r.code, 0, `${cmd} ${args.join(' ')} must fail`);
    t.regex(r.stderr, new RegExp(ERRNO_TEXT.EROFS), `${cmd} ${args.slice(-1)[0]}: ${r.stderr.trim()}`);
  }
  const e = await writeFile(mnt('.snapshot', at, 'tt', 'node-write'), 'x').catch((err: NodeJS.ErrnoException) => err.code);
  t.is(e, 'EROFS');
  t.true((await readFile(mnt('.snapshot', at, a))).equals(before), 'the past is unchanged');
  t.deepEqual((await readdir(mnt('.snapshot', at, 'tt'))).sort(), listingOf(finalState!, 'tt'));
});

test.serial('a time in the future is ENOENT, for .snapshot/<t> and path@<t>; a malformed time is not a snapshot', async (t) => {
  const future = Date.now() + 3_600_000;
  for (const fmt of ['iso', 'dots', 'ms'] as const) {
    const at = formatTime(future, fmt);
    const ls = await run('ls', [mnt('.snapshot', at)]);
    t.not(ls.code, 0);
    t.regex(ls.stderr, new RegExp(ERRNO_TEXT.ENOENT), `ls .snapshot/${at}`);
    t.is(await stat(mnt('.snapshot', at)).then(() => 'exists', (err: NodeJS.ErrnoException) => err.code), 'ENOENT');
    const cat = await run('cat', [mnt(`tt/c@${at}`)]);
    t.not(cat.code, 0);
    t.regex(cat.stderr, new RegExp(ERRNO_TEXT.ENOENT), `cat tt/c@${at}`);
  }
  for (const bad of ['yesterday', '2026-13-01T00:00:00Z', '2026-01-01T10:15.00Z']) {
    t.is(await stat(mnt('.snapshot', bad)).then(() => 'exists', (err: NodeJS.ErrnoException) => err.code), 'ENOENT', `.snapshot/${bad}`);
  }
});

test.serial('mkdir .snapshot/before-change pins the moment: listed with that mtime, no colons in names; its files keep the old content', async (t) => {
  await mkdir(mnt('named'), { recursive: true });
  await writeFile(mnt('named/f.txt'), 'old content\n');
  await writeFile(mnt('named/gone.txt'), 'will be deleted\n');
  // Over a second either side, so even a moment kept to the second separates the versions.
  await sleep(1100);
  const tB = Date.now();
  await ok('mkdir', [mnt('.snapshot/before-change')]);
  const tA = Date.now();
  await sleep(1100);
  await writeFile(mnt('named/f.txt'), 'new content after the snapshot\n');
  await unlink(mnt('named/gone.txt'));
  await writeFile(mnt('named/added.txt'), 'added later\n');

  const names = (await ok('ls', ['-1', mnt('.snapshot')])).split('\n').filter(Boolean);
  t.true(names.includes('before-change'), `ls .snapshot: ${JSON.stringify(names)}`);
  t.false(names.some((n) => n.includes(':')), 'listed names never contain a colon');
  const st = await stat(mnt('.snapshot/before-change'));
  t.true(st.isDirectory());
  t.true(st.mtimeMs >= tB - 1000 && st.mtimeMs <= tA + 1000, `mtime ${st.mtime.toISOString()} is the moment it was made (${new Date(tB).toISOString()}..${new Date(tA).toISOString()})`);
  const line = (await ok('ls', ['-l', '--time-style=+%s', mnt('.snapshot')])).split('\n').find((l) => l.endsWith(' before-change'));
  t.truthy(line, 'ls -l lists it');
  const secs = Number(line!.split(/\s+/).at(-2));
  t.true(secs >= Math.floor(tB / 1000) - 1 && secs <= Math.ceil(tA / 1000) + 1, `ls -l time ${secs}`);

  t.is(await ok('cat', [mnt('.snapshot/before-change/named/f.txt')]), 'old content\n');
  t.is(await ok('cat', [mnt('.snapshot/before-change/named/gone.txt')]), 'will be deleted\n');
  t.deepEqual((await readdir(mnt('.snapshot/before-change/named'))).sort(), ['f.txt', 'gone.txt']);
  t.is(await ok('cat', [mnt('named/f.txt')]), 'new content after the snapshot\n');
  t.deepEqual((await readdir(mnt('named'))).sort(), ['added.txt', 'f.txt']);
  // Twice the same, and read-only.
  const again = await okBytes('cat', [mnt('.snapshot/before-change/named/f.txt')]);
  t.is(again.toString(), 'old content\n');
  const w = await run('touch', [mnt('.snapshot/before-change/named/x')]);
  t.not(w.code, 0);
  t.regex(w.stderr, new RegExp(ERRNO_TEXT.EROFS));
  // The named moment agrees with a read of the same past over HTTP.
  const h = await httpGet(`${cluster().c.url(2)}${blobPath('named/f.txt')}?at=${encodeURIComponent(new Date(Math.round(st.mtimeMs)).toISOString())}`);
  t.is(h.status, 200);
  t.is(h.body.toString(), 'old content\n', 'HTTP at the snapshot moment');
});

test.serial('path@<t>: a real file whose name contains @ wins over the past of path', async (t) => {
  await mkdir(mnt('at'), { recursive: true });
  await writeFile(mnt('at/x'), 'x v1\n');
  await sleep(20);
  const t1 = Date.now();
  await sleep(20);
  await writeFile(mnt('at/x'), 'x v2\n');
  const iso = formatTime(t1, 'iso');
  t.is(await ok('cat', [mnt(`at/x@${iso}`)]), 'x v1\n', 'x@t is the past of x');
  // Through the mount that name is x's past (read-only), so the real file comes over HTTP.
  const put = await httpPut(cluster().c.url(2) + blobPath(`at/x@${iso}`), 'a real file named with an @\n');
  t.is(put.status, 201);
  const wins = await until(10_000, async () => ((await readFile(mnt(`at/x@${iso}`), 'utf8')) === 'a real file named with an @\n' ? true : undefined));
  t.true(wins, 'the real file wins (within 10 s of its PUT)');
  t.is(await ok('cat', [mnt(`at/x@${iso}`)]), 'a real file named with an @\n');
  t.is(await ok('cat', [mnt(`at/x@${formatTime(t1, 'dots')}`)]), 'x v1\n', 'another spelling of t still reads the past');
  t.is(await ok('cat', [mnt('at/x')]), 'x v2\n');
  t.deepEqual((await readdir(mnt('at'))).sort(), ['x', `x@${iso}`], 'path@t names are not listed, real ones are');
  const h = await httpGet(cluster().c.url(1) + blobPath(`at/x@${iso}`));
  t.is(h.status, 200);
  t.is(h.body.toString(), 'a real file named with an @\n');
});
