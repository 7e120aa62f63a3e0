/**
 * Acceptance tests of the FUSE mount (DESIGN §10) with the tools users run: one 3-member cluster
 * whose member 0 mounts the file system, shared by these serial tests (each under its own
 * directory). Every tool is a real process with a timeout; what each test checks is what a user
 * would: the bytes, the names, the modes and times, the error messages, and that the blob API of
 * the other members sees the same files.
 */
import test from 'ava';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rmdir, stat, statfs, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { blobPath, seededSha256, sha256, sleep } from './helpers/http-blob.js';
import { ERRNO_TEXT, KiB, MiB, chunkSize, httpGet, httpPut, listKeys, makeTree, metricValue, sharedMountedCluster, ok, okBytes, run, scrape, seeded, until, within, type TreeEntry } from './helpers/fs-run.js';
import { Rng } from './sim/rng.js';

const { mnt, local, cluster } = sharedMountedCluster(test);
const blobUrl = (i: number, key: string): string => cluster().c.url(i) + blobPath(key);

/** The status and bytes of `key` from member i over HTTP. */
async function httpBytes(i: number, key: string): Promise<{ status: number; body: Buffer }> {
  const r = await httpGet(blobUrl(i, key));
  return { status: r.status, body: r.body };
}

async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  await within(
    new Promise<void>((resolve, reject) => {
      createReadStream(p)
        .on('data', (b) => h.update(b))
        .on('end', resolve)
        .on('error', reject);
    }),
    120_000,
    `reading ${p}`,
  );
  return h.digest('hex');
}

const errCode = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
};

// ---- cp, cat, visibility after close ---------------------------------------------------------------

test.serial('cp into the mount, cat back: the same bytes; once cp returns, members 1 and 2 serve it over HTTP', async (t) => {
  await mkdir(mnt('tools/cp'), { recursive: true });
  const files: [string, number][] = [
    ['small.txt', 13],
    ['chunky.bin', 2 * MiB + 4321],
    ['empty', 0],
  ];
  for (const [name, size] of files) {
    const src = local(`cp-${name}`);
    const body = seeded(`cp/${name}`, size);
    await writeFile(src, body);
    await ok('cp', [src, mnt('tools/cp', name)]);
    // Visibility after close: cp has closed the file; no waiting before these reads.
    for (const i of [1, 2]) {
      const r = await httpBytes(i, `tools/cp/${name}`);
      t.is(r.status, 200, `${name} from member ${i} right after cp`);
      t.is(r.body.length, size, `${name} from member ${i}`);
      t.is(sha256(r.body), sha256(body), `${name} from member ${i}`);
    }
    const back = await okBytes('cat', [mnt('tools/cp', name)]);
    t.is(sha256(back), sha256(body), `cat ${name}`);
    t.is((await stat(mnt('tools/cp', name))).size, size, `stat size of ${name}`);
  }
  // cp -r of a directory, then cat of a file in it.
  await mkdir(local('cp-dir/sub'), { recursive: true });
  await writeFile(local('cp-dir/sub/x.txt'), 'x in a sub directory\n');
  await ok('cp', ['-r', local('cp-dir'), mnt('tools/cp/dir')]);
  t.is(await ok('cat', [mnt('tools/cp/dir/sub/x.txt')]), 'x in a sub directory\n');
  t.is((await httpBytes(2, 'tools/cp/dir/sub/x.txt')).body.toString(), 'x in a sub directory\n');
  t.deepEqual((await ok('ls', [mnt('tools/cp')])).split('\n').filter(Boolean), ['chunky.bin', 'dir', 'empty', 'small.txt']);
});

test.serial('a blob PUT over HTTP (to member 2) appears in the mount as a file with those bytes', async (t) => {
  const body = seeded('http-put', 300 * KiB + 7);
  const r = await httpPut(blobUrl(2, 'tools/http/put.bin'), body);
  t.is(r.status, 201, JSON.stringify(r.json));
  // A new name (never looked up through the mount before): bounded wait for it to show.
  const t0 = Date.now();
  const seen = await until(10_000, async () => ((await readdir(mnt('tools/http'))).includes('put.bin') ? true : undefined));
  t.true(seen, 'put.bin listed in the mount within 10 s');
  t.log(`listed in the mount ${Date.now() - t0} ms after the 201`);
  t.is(sha256(await readFile(mnt('tools/http/put.bin'))), sha256(body));
  t.is((await stat(mnt('tools/http/put.bin'))).size, body.length);
  t.is(sha256(await okBytes('cat', [mnt('tools/http/put.bin')])), sha256(body));

  // A new version over HTTP of a file the mount has read: the mount shows it (bounded wait).
  const v2 = Buffer.from('version two, shorter\n');
  t.is((await httpPut(blobUrl(1, 'tools/http/put.bin'), v2)).status, 201);
  const fresh = await until(10_000, async () => ((await readFile(mnt('tools/http/put.bin'))).equals(v2) ? true : undefined));
  t.true(fresh, 'the new HTTP version is what the mount reads within 10 s');
});

// ---- dd at an offset -------------------------------------------------------------------------------

test.serial('dd conv=notrunc at an offset rewrites those bytes only (size kept); past the end it grows the file with zeros', async (t) => {
  await mkdir(mnt('tools/dd'), { recursive: true });
  const size = 3 * MiB + 100;
  const orig = seeded('dd/orig', size);
  await writeFile(local('dd-orig'), orig);
  await ok('cp', [local('dd-orig'), mnt('tools/dd/file.bin')]);
  const patch = seeded('dd/patch', 5000);
  await writeFile(local('dd-patch'), patch);
  // Across the chunk boundary at 1 MiB, not block-aligned.
  const at = MiB - 1234;
  await ok('dd', [`if=${local('dd-patch')}`, `of=${mnt('tools/dd/file.bin')}`, 'bs=5000', 'count=1', `seek=${at}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  const want = Buffer.from(orig);
  patch.copy(want, at);
  const got = await readFile(mnt('tools/dd/file.bin'));
  t.is(got.length, size, 'size unchanged by a notrunc write inside the file');
  t.is(sha256(got), sha256(want), 'exactly the patched bytes changed');
  t.true(got.subarray(at, at + 5000).equals(patch));
  t.true(got.subarray(0, at).equals(orig.subarray(0, at)));
  t.true(got.subarray(at + 5000).equals(orig.subarray(at + 5000)));
  t.is(sha256((await httpBytes(1, 'tools/dd/file.bin')).body), sha256(want), 'member 1 serves the patched file');

  // Past the end: a hole of zeros, then the bytes.
  const past = size + 10_000;
  await ok('dd', [`if=${local('dd-patch')}`, `of=${mnt('tools/dd/file.bin')}`, 'bs=100', 'count=1', `seek=${past}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  const grown = Buffer.concat([want, Buffer.alloc(10_000), patch.subarray(0, 100)]);
  const got2 = await readFile(mnt('tools/dd/file.bin'));
  t.is(got2.length, past + 100);
  t.is(sha256(got2), sha256(grown));
  t.is(sha256((await httpBytes(2, 'tools/dd/file.bin')).body), sha256(grown), 'member 2 serves the grown file');
});

// ---- mv ---------------------------------------------------------------------------------------------

test.serial('mv of a file and of a directory: the new names have the bytes, the old names are gone (mount and HTTP)', async (t) => {
  await mkdir(mnt('tools/mv/dir/deeper'), { recursive: true });
  await writeFile(mnt('tools/mv/a.txt'), 'file a\n');
  const big = seeded('mv/big', 1.5 * MiB);
  await writeFile(mnt('tools/mv/dir/big.bin'), big);
  await writeFile(mnt('tools/mv/dir/deeper/c.txt'), 'file c\n');

  await ok('mv', [mnt('tools/mv/a.txt'), mnt('tools/mv/b.txt')]);
  t.is(await ok('cat', [mnt('tools/mv/b.txt')]), 'file a\n');
  t.is(await errCode(stat(mnt('tools/mv/a.txt'))), 'ENOENT');
  t.is((await httpBytes(1, 'tools/mv/a.txt')).status, 404);
  t.is((await httpBytes(1, 'tools/mv/b.txt')).body.toString(), 'file a\n');

  // mv onto an existing file replaces it.
  await writeFile(mnt('tools/mv/other.txt'), 'other\n');
  await ok('mv', [mnt('tools/mv/other.txt'), mnt('tools/mv/b.txt')]);
  t.is(await ok('cat', [mnt('tools/mv/b.txt')]), 'other\n');
  t.is(await errCode(stat(mnt('tools/mv/other.txt'))), 'ENOENT');

  await ok('mv', [mnt('tools/mv/dir'), mnt('tools/mv/moved')]);
  t.is(await errCode(stat(mnt('tools/mv/dir'))), 'ENOENT');
  t.deepEqual((await readdir(mnt('tools/mv'))).sort(), ['b.txt', 'moved']);
  t.deepEqual((await readdir(mnt('tools/mv/moved'))).sort(), ['big.bin', 'deeper']);
  t.is(sha256(await readFile(mnt('tools/mv/moved/big.bin'))), sha256(big));
  t.is(await ok('cat', [mnt('tools/mv/moved/deeper/c.txt')]), 'file c\n');
  for (const i of [1, 2]) {
    t.is((await httpBytes(i, 'tools/mv/dir/big.bin')).status, 404, `old key from member ${i}`);
    t.is((await httpBytes(i, 'tools/mv/dir/deeper/c.txt')).status, 404, `old key from member ${i}`);
    t.is(sha256((await httpBytes(i, 'tools/mv/moved/big.bin')).body), sha256(big), `new key from member ${i}`);
    t.is((await httpBytes(i, 'tools/mv/moved/deeper/c.txt')).body.toString(), 'file c\n', `new key from member ${i}`);
  }
  t.deepEqual((await listKeys(cluster().c.url(2), 'tools/mv/dir/')), [], 'nothing left under the old directory');
});

// ---- rm, rm -r, mkdir, rmdir ---------------------------------------------------------------------

test.serial('rm of a file and rm -r of a tree: gone from the mount and from HTTP', async (t) => {
  await mkdir(mnt('tools/rm/tree/a/b'), { recursive: true });
  await writeFile(mnt('tools/rm/one.txt'), 'one\n');
  for (const p of ['tree/x', 'tree/a/y', 'tree/a/b/z', 'tree/a/b/w']) await writeFile(mnt('tools/rm', p), `${p}\n`);
  t.is((await httpBytes(1, 'tools/rm/tree/a/b/z')).status, 200);

  await ok('rm', [mnt('tools/rm/one.txt')]);
  t.is(await errCode(stat(mnt('tools/rm/one.txt'))), 'ENOENT');
  t.is((await httpBytes(2, 'tools/rm/one.txt')).status, 404);
  const again = await run('rm', [mnt('tools/rm/one.txt')]);
  t.not(again.code, 0);
  t.regex(again.stderr, new RegExp(ERRNO_TEXT.ENOENT));

  await ok('rm', ['-r', mnt('tools/rm/tree')]);
  t.is(await errCode(stat(mnt('tools/rm/tree'))), 'ENOENT');
  t.deepEqual(await readdir(mnt('tools/rm')), []);
  t.deepEqual(await listKeys(cluster().c.url(1), 'tools/rm/tree/'), []);
  t.is((await httpBytes(1, 'tools/rm/tree/a/b/z')).status, 404);
});

test.serial('mkdir -p and rmdir: empty directories exist and list; rmdir of a non-empty one fails "Directory not empty" and keeps it', async (t) => {
  await ok('mkdir', ['-p', mnt('tools/dirs/a/b/c')]);
  t.true((await stat(mnt('tools/dirs/a/b/c'))).isDirectory());
  t.deepEqual(await readdir(mnt('tools/dirs/a/b')), ['c']);
  t.deepEqual(await readdir(mnt('tools/dirs/a/b/c')), []);
  await ok('mkdir', [mnt('tools/dirs/empty')]);
  t.deepEqual((await readdir(mnt('tools/dirs'))).sort(), ['a', 'empty']);
  const exists = await run('mkdir', [mnt('tools/dirs/empty')]);
  t.not(exists.code, 0, 'mkdir of an existing directory fails');
  t.regex(exists.stderr, /File exists/);

  await ok('rmdir', [mnt('tools/dirs/a/b/c')]);
  t.is(await errCode(stat(mnt('tools/dirs/a/b/c'))), 'ENOENT');
  t.deepEqual(await readdir(mnt('tools/dirs/a/b')), []);

  await writeFile(mnt('tools/dirs/a/b/keep.txt'), 'keep\n');
  const r = await run('rmdir', [mnt('tools/dirs/a/b')]);
  t.not(r.code, 0, 'rmdir of a non-empty directory fails');
  t.regex(r.stderr, /rmdir: failed to remove .*: Directory not empty/);
  t.is(await ok('cat', [mnt('tools/dirs/a/b/keep.txt')]), 'keep\n');
  t.is(await errCode(rmdir(mnt('tools/dirs/a'))), 'ENOTEMPTY');

  await ok('rm', [mnt('tools/dirs/a/b/keep.txt')]);
  await ok('rmdir', [mnt('tools/dirs/a/b'), mnt('tools/dirs/a'), mnt('tools/dirs/empty')]);
  t.deepEqual(await readdir(mnt('tools/dirs')), []);
});

// ---- ln -s, touch, truncate, chmod, statfs ----------------------------------------------------------

test.serial('ln -s and readlink: the link reads its target; ls -l shows it; a hard link fails', async (t) => {
  await mkdir(mnt('tools/ln/sub'), { recursive: true });
  await writeFile(mnt('tools/ln/sub/target.txt'), 'the target\n');
  await ok('ln', ['-s', 'sub/target.txt', mnt('tools/ln/rel-link')]);
  await ok('ln', ['-s', '/nonexistent/absolute', mnt('tools/ln/dangling')]);
  t.is((await ok('readlink', [mnt('tools/ln/rel-link')])).trim(), 'sub/target.txt');
  t.is(await readlink(mnt('tools/ln/dangling')), '/nonexistent/absolute');
  t.true((await lstat(mnt('tools/ln/rel-link'))).isSymbolicLink());
  t.is(await ok('cat', [mnt('tools/ln/rel-link')]), 'the target\n');
  t.regex(await ok('ls', ['-l', mnt('tools/ln')]), /^l[rwx-]{9}.* rel-link -> sub\/target\.txt$/m);
  t.is(await errCode(stat(mnt('tools/ln/dangling'))), 'ENOENT', 'a dangling link does not resolve');
  // A symlink to a directory: ls through it.
  await ok('ln', ['-s', 'sub', mnt('tools/ln/dirlink')]);
  t.deepEqual((await ok('ls', [`${mnt('tools/ln/dirlink')}/`])).split('\n').filter(Boolean), ['target.txt']);

  const hard = await run('ln', [mnt('tools/ln/sub/target.txt'), mnt('tools/ln/hard')]);
  t.not(hard.code, 0, 'no hard links');
  t.is(await errCode(stat(mnt('tools/ln/hard'))), 'ENOENT');
});

test.serial('touch creates an empty file; touch -d sets the mtime exactly; plain touch sets it to now; content unchanged', async (t) => {
  await mkdir(mnt('tools/touch'), { recursive: true });
  const before = Date.now();
  await ok('touch', [mnt('tools/touch/new')]);
  const s = await stat(mnt('tools/touch/new'));
  t.true(s.isFile());
  t.is(s.size, 0);
  t.true(Math.abs(s.mtimeMs - before) < 5_000, `mtime of a new file is now (${s.mtime.toISOString()})`);
  const h = await httpBytes(1, 'tools/touch/new');
  t.is(h.status, 200, 'the empty file is a 0-byte blob');
  t.is(h.body.length, 0);

  await writeFile(mnt('tools/touch/old'), 'content\n');
  await ok('touch', ['-d', '2021-02-03 04:05:06 UTC', mnt('tools/touch/old')]);
  t.is((await stat(mnt('tools/touch/old'))).mtimeMs, Date.UTC(2021, 1, 3, 4, 5, 6));
  t.is((await ok('stat', ['-c', '%Y', mnt('tools/touch/old')])).trim(), String(Date.UTC(2021, 1, 3, 4, 5, 6) / 1000));
  t.regex(await ok('ls', ['-l', '--time-style=+%Y-%m-%dT%H:%M:%S', mnt('tools/touch/old')]), / 2021-02-03T04:05:06 /);
  t.is(await ok('cat', [mnt('tools/touch/old')]), 'content\n');
  t.is((await httpBytes(2, 'tools/touch/old')).body.toString(), 'content\n');

  await ok('touch', ['-d', '2019-12-31 23:59:59.250 UTC', mnt('tools/touch/old')]);
  t.is((await stat(mnt('tools/touch/old'))).mtimeMs, Date.UTC(2019, 11, 31, 23, 59, 59, 250), 'sub-second mtimes are kept');

  const t0 = Date.now();
  await ok('touch', [mnt('tools/touch/old')]);
  const now = (await stat(mnt('tools/touch/old'))).mtimeMs;
  t.true(now >= t0 - 1000 && now <= Date.now() + 1000, `touch moves the mtime to now (${new Date(now).toISOString()})`);
  t.is(await ok('cat', [mnt('tools/touch/old')]), 'content\n');
});

test.serial('truncate grows with zeros and shrinks to a prefix (mount and HTTP)', async (t) => {
  await mkdir(mnt('tools/truncate'), { recursive: true });
  const body = seeded('truncate', 1000);
  await writeFile(mnt('tools/truncate/f'), body);
  await ok('truncate', ['-s', String(MiB + 5000), mnt('tools/truncate/f')]);
  const grown = await readFile(mnt('tools/truncate/f'));
  t.is(grown.length, MiB + 5000);
  t.true(grown.subarray(0, 1000).equals(body));
  t.true(grown.subarray(1000).equals(Buffer.alloc(MiB + 4000)), 'zeros after the old end');
  t.is(sha256((await httpBytes(1, 'tools/truncate/f')).body), sha256(grown));

  await ok('truncate', ['-s', '10', mnt('tools/truncate/f')]);
  t.is((await stat(mnt('tools/truncate/f'))).size, 10);
  t.true((await readFile(mnt('tools/truncate/f'))).equals(body.subarray(0, 10)));
  t.true((await httpBytes(2, 'tools/truncate/f')).body.equals(body.subarray(0, 10)));

  await ok('truncate', ['-s', '0', mnt('tools/truncate/f')]);
  t.is((await stat(mnt('tools/truncate/f'))).size, 0);
  t.is((await httpBytes(1, 'tools/truncate/f')).body.length, 0);
  // truncate -s of a new name creates it.
  await ok('truncate', ['-s', '4096', mnt('tools/truncate/new')]);
  t.true((await readFile(mnt('tools/truncate/new'))).equals(Buffer.alloc(4096)));
});

test.serial('chmod: the mode shows in stat and ls -l, survives a write, and applies to directories', async (t) => {
  await mkdir(mnt('tools/chmod/d'), { recursive: true });
  await writeFile(mnt('tools/chmod/f'), 'mode test\n');
  await ok('chmod', ['0640', mnt('tools/chmod/f')]);
  t.is((await stat(mnt('tools/chmod/f'))).mode & 0o7777, 0o640);
  t.is((await ok('stat', ['-c', '%a', mnt('tools/chmod/f')])).trim(), '640');
  await ok('chmod', ['u+x,o+r', mnt('tools/chmod/f')]);
  t.is((await stat(mnt('tools/chmod/f'))).mode & 0o7777, 0o744);
  t.regex(await ok('ls', ['-l', mnt('tools/chmod/f')]), /^-rwxr--r-- /);
  await writeFile(mnt('tools/chmod/f'), 'more\n', { flag: 'a' });
  t.is((await stat(mnt('tools/chmod/f'))).mode & 0o7777, 0o744, 'a write keeps the mode');
  t.is(await ok('cat', [mnt('tools/chmod/f')]), 'mode test\nmore\n');

  await ok('chmod', ['0700', mnt('tools/chmod/d')]);
  t.is((await stat(mnt('tools/chmod/d'))).mode & 0o7777, 0o700);
  t.true((await stat(mnt('tools/chmod/d'))).isDirectory());
});

test.serial('statfs: df on the mount works and names the mountpoint; statfs reports blocks', async (t) => {
  const out = await ok('df', ['-P', cluster().mnt]);
  const lines = out.trim().split('\n');
  t.is(lines.length, 2, out);
  const fields = lines[1]!.split(/\s+/);
  t.is(fields.at(-1), cluster().mnt, out);
  t.regex(fields[1]!, /^\d+$/, 'total blocks');
  t.true(Number(fields[1]) > 0, `df reports a size: ${out}`);
  const s = await statfs(cluster().mnt);
  t.true(s.bsize > 0 && s.blocks > 0, JSON.stringify(s));
  t.true(s.bavail <= s.blocks && s.bfree <= s.blocks);
  const st = await ok('stat', ['-f', '-c', '%T', cluster().mnt]);
  t.regex(st, /fuse/, 'the file system type is fuse');
});

// ---- rsync of a 1,000-file tree -----------------------------------------------------------------

/** `find -printf` of a tree: path, type, size of files, mode, file mtime (s), link target; sorted. */
async function treeListing(root: string): Promise<string[]> {
  const out = await ok('find', ['.', '-mindepth', '1', '-printf', '%P|%y|%s|%m|%T@|%l\n'], { cwd: root, timeout_ms: 120_000 });
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [p, y, s, mode, mtime, l] = line.split('|') as [string, string, string, string, string, string];
      // Directory sizes are the file system's own business; directory mtimes change as rsync
      // writes into them; symlinks have no mode or settable mtime of interest here.
      if (y === 'd') return `${p}|d|${mode}`;
      if (y === 'l') return `${p}|l|${l}`;
      return `${p}|${y}|${s}|${mode}|${Math.floor(Number(mtime))}`;
    })
    .sort();
}

test.serial('rsync -a of a 1,000-file tree into the mount: diff -r finds no difference; modes and mtimes kept; members 1 and 2 serve the bytes', async (t) => {
  t.timeout(8 * 60_000);
  const src = local('rsync-src');
  const tree = makeTree(src, { seed: 1000, files: 1000, big: 6, fanout: 3, levels: 3, mtimes: true });
  const files = tree.filter((e) => e.kind === 'file');
  const bytes = files.reduce((n, e) => n + e.size, 0);
  t.log(`tree: ${files.length} files, ${tree.filter((e) => e.kind === 'dir').length} dirs, ${tree.filter((e) => e.kind === 'symlink').length} symlinks, ${(bytes / MiB).toFixed(1)} MiB`);
  t.true(files.some((e) => e.size === 0) && files.some((e) => e.size > 0 && e.size < 100) && files.filter((e) => e.size >= MiB).length === 6);

  const r = await run('rsync', ['-a', `${src}/`, `${mnt('rsync')}/`], { timeout_ms: 6 * 60_000 });
  t.is(r.code, 0, `rsync: ${r.stderr.slice(0, 2000)}`);
  t.log(`rsync -a took ${r.ms} ms (${(bytes / MiB / (r.ms / 1000)).toFixed(1)} MiB/s, ${(files.length / (r.ms / 1000)).toFixed(0)} files/s)`);

  const d = await run('diff', ['-r', '--no-dereference', src, mnt('rsync')], { timeout_ms: 180_000 });
  t.is(d.code, 0, `diff -r: ${d.stdout.slice(0, 2000)} ${d.stderr.slice(0, 1000)}`);
  t.log(`diff -r took ${d.ms} ms`);
  const want = await treeListing(src);
  const got = await treeListing(mnt('rsync'));
  const wantSet = new Set(want);
  const gotSet = new Set(got);
  const missing = want.filter((l) => !gotSet.has(l));
  const extra = got.filter((l) => !wantSet.has(l));
  t.is(got.length, want.length, 'as many entries as the source');
  t.deepEqual(
    { missing: missing.slice(0, 20), extra: extra.slice(0, 20), counts: [missing.length, extra.length] },
    { missing: [], extra: [], counts: [0, 0] },
    'names, types, sizes, modes, mtimes and link targets as in the source (path|type|size|mode|mtime s)',
  );

  // Over HTTP from the other members: all the big files and a sample of 60 others.
  const rng = new Rng(77);
  const big = files.filter((e) => e.size >= MiB);
  const sample: TreeEntry[] = [...big, ...rng.shuffle(files.filter((e) => e.size < MiB)).slice(0, 60)];
  for (const e of sample) {
    const want = seededSha256(e.seed, e.size);
    for (const i of [1, 2]) {
      const g = await httpBytes(i, `rsync/${e.rel}`);
      t.is(g.status, 200, `${e.rel} from member ${i}`);
      t.is(g.body.length, e.size, `${e.rel} from member ${i}`);
      t.is(sha256(g.body), want, `${e.rel} from member ${i}`);
    }
  }
  t.is((await listKeys(cluster().c.url(1), 'rsync/')).filter((k) => !k.endsWith('/')).length >= files.length, true, 'every file is a key');

  // A second rsync finds nothing to do (sizes and mtimes match), and -c (checksums) agrees.
  const again = await run('rsync', ['-a', '--itemize-changes', `${src}/`, `${mnt('rsync')}/`], { timeout_ms: 120_000 });
  t.is(again.code, 0, again.stderr);
  t.deepEqual(
    again.stdout.split('\n').filter((l) => l !== '' && !/^\.d/.test(l)),
    [],
    'no file re-sent by a second rsync -a',
  );
});

// ---- a 4 KiB write into a 64 MiB file -------------------------------------------------------------

interface StoreGauges {
  versions: number;
  chunks: number;
  chunk_bytes: number;
}

async function gauges(): Promise<StoreGauges> {
  const text = await scrape(cluster().c.url(0));
  const v = (name: string): number => {
    const x = metricValue(text, name);
    if (x === undefined) throw new Error(`${name} missing from /metrics`);
    return x;
  };
  return { versions: v('tempest_store_versions'), chunks: v('tempest_store_chunks'), chunk_bytes: v('tempest_store_chunk_bytes') };
}

/** Gauges once two scrapes 1.2 s apart agree (store stats are reused for 1 s between scrapes). */
async function settledGauges(): Promise<StoreGauges> {
  let last = await gauges();
  for (let i = 0; i < 30; i++) {
    await sleep(1200);
    const g = await gauges();
    if (g.versions === last.versions && g.chunks === last.chunks && g.chunk_bytes === last.chunk_bytes) return g;
    last = g;
  }
  throw new Error(`store gauges did not settle: ${JSON.stringify(last)}`);
}

test.serial('a 4 KiB dd into the middle of a 64 MiB file stores one new chunk (at most chunk_size_bytes) and one version; the bytes are right', async (t) => {
  t.timeout(5 * 60_000);
  const block = await chunkSize(cluster().c.url(0));
  t.true(block > 0);
  await mkdir(mnt('tools/big'), { recursive: true });
  const size = 64 * MiB;
  const orig = seeded('big/64', size);
  await writeFile(local('big-64'), orig);
  const cp = await run('cp', [local('big-64'), mnt('tools/big/64.bin')], { timeout_ms: 180_000 });
  t.is(cp.code, 0, cp.stderr);
  t.log(`cp of 64 MiB into the mount: ${cp.ms} ms`);

  const before = await settledGauges();
  const patch = seeded('big/patch', 4 * KiB);
  await writeFile(local('big-patch'), patch);
  const at = 30 * MiB + 12_345;
  const dd = await run('dd', [`if=${local('big-patch')}`, `of=${mnt('tools/big/64.bin')}`, 'bs=4096', 'count=1', `seek=${at}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none']);
  t.is(dd.code, 0, dd.stderr);
  t.log(`dd of 4 KiB at ${at}: ${dd.ms} ms`);
  const after = await settledGauges();
  t.log(`store gauges before ${JSON.stringify(before)}, after ${JSON.stringify(after)} (chunk size ${block})`);
  t.is(after.versions - before.versions, 1, 'one new version (manifest)');
  t.true(after.chunks - before.chunks <= 1, `at most one new chunk (${after.chunks - before.chunks})`);
  t.true(after.chunk_bytes - before.chunk_bytes <= block, `chunk bytes grew by ${after.chunk_bytes - before.chunk_bytes}, at most one block of ${block}`);
  t.true(after.chunk_bytes - before.chunk_bytes > 0, 'the changed block was stored');

  const want = Buffer.from(orig);
  patch.copy(want, at);
  const wantSha = sha256(want);
  t.is(await hashFile(mnt('tools/big/64.bin')), wantSha, 'through the mount');
  t.is((await stat(mnt('tools/big/64.bin'))).size, size);
  for (const i of [1, 2]) {
    const g = await fetch(blobUrl(i, 'tools/big/64.bin'), { headers: { range: `bytes=${at - 10}-${at + 4096 + 9}` }, signal: AbortSignal.timeout(30_000) });
    t.is(g.status, 206);
    t.true(Buffer.from(await g.arrayBuffer()).equals(want.subarray(at - 10, at + 4096 + 10)), `the patched range from member ${i}`);
  }
  const whole = await httpGet(blobUrl(2, 'tools/big/64.bin'), 120_000);
  t.is(sha256(whole.body), wantSha, 'the whole file from member 2');
});
