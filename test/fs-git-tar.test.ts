/**
 * Real programs that lean on POSIX semantics, run inside the mount (member 0 of 3): git (lock
 * files, renames, mmap of objects, a failed hard link falling back to rename) and tar (modes,
 * mtimes of files, directories and links, symlinks). What is checked is what a user would: git's
 * own view of the repository, and tar listings and bytes in and out of the mount.
 */
import test from 'ava';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { blobPath, sha256 } from './helpers/http-blob.js';
import { KiB, MiB, httpGet, makeTree, sharedMountedCluster, ok, run, seeded } from './helpers/fs-run.js';

const { mnt, local, cluster } = sharedMountedCluster(test);

/** git with no user or system configuration but the identity; any repository owner accepted. */
function git(cwd: string, args: string[], timeout_ms = 60_000): ReturnType<typeof run> {
  return run('git', ['-c', 'user.name=Tempest Test', '-c', 'user.email=test@tempest.invalid', '-c', 'init.defaultBranch=main', ...args], {
    cwd,
    timeout_ms,
    env: {
      HOME: cluster().scratch,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      // The mount's files may not be owned by the test's user; git's ownership check is not the subject.
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'safe.directory',
      GIT_CONFIG_VALUE_0: '*',
      GIT_AUTHOR_DATE: '2024-05-06T07:08:09Z',
      GIT_COMMITTER_DATE: '2024-05-06T07:08:09Z',
    },
  });
}

async function gitOk(cwd: string, args: string[], timeout_ms = 60_000): Promise<string> {
  const r = await git(cwd, args, timeout_ms);
  if (r.code !== 0) throw new Error(`git ${args.join(' ')} in ${cwd}: exit ${r.code} ${r.signal ?? ''}\n${r.stderr.slice(0, 3000)}`);
  return r.stdout;
}

test.serial('git init, add, commit twice, log, status --porcelain clean, fsck, and a clone out of the mount matches', async (t) => {
  t.timeout(4 * 60_000);
  const repo = mnt('repo');
  await mkdir(repo);
  await gitOk(repo, ['init', '-q']);
  await writeFile(path.join(repo, 'README.md'), '# A repository inside Tempest\n');
  await mkdir(path.join(repo, 'src/deep'), { recursive: true });
  await writeFile(path.join(repo, 'src/a.txt'), 'a first\n');
  await writeFile(path.join(repo, 'src/deep/blob.bin'), seeded('git/blob', 300 * KiB));
  await writeFile(path.join(repo, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(path.join(repo, 'run.sh'), 0o755);
  await gitOk(repo, ['add', '-A']);
  await gitOk(repo, ['commit', '-q', '-m', 'first commit']);

  await writeFile(path.join(repo, 'src/a.txt'), 'a second, changed\n');
  await rm(path.join(repo, 'README.md'));
  await writeFile(path.join(repo, 'new.txt'), 'new in the second commit\n');
  await gitOk(repo, ['add', '-A']);
  await gitOk(repo, ['commit', '-q', '-m', 'second commit']);

  t.deepEqual((await gitOk(repo, ['log', '--format=%s'])).trim().split('\n'), ['second commit', 'first commit']);
  t.is(await gitOk(repo, ['status', '--porcelain']), '', 'the work tree is clean');
  t.is(await gitOk(repo, ['show', 'HEAD~1:README.md']), '# A repository inside Tempest\n');
  t.is(await gitOk(repo, ['show', 'HEAD:src/a.txt']), 'a second, changed\n');
  t.regex(await gitOk(repo, ['ls-files', '-s', 'run.sh']), /^100755 /, 'the executable bit was recorded');
  t.deepEqual((await gitOk(repo, ['diff', '--name-status', 'HEAD~1', 'HEAD'])).trim().split('\n').sort(), ['A\tnew.txt', 'D\tREADME.md', 'M\tsrc/a.txt']);
  const fsck = await git(repo, ['fsck', '--full', '--strict']);
  t.is(fsck.code, 0, `git fsck: ${fsck.stderr}`);

  // Changes are seen: status notices a modified file, and checkout restores it.
  await writeFile(path.join(repo, 'src/a.txt'), 'dirty\n');
  t.is(await gitOk(repo, ['status', '--porcelain']), ' M src/a.txt\n');
  await gitOk(repo, ['checkout', '--', 'src/a.txt']);
  t.is(await readFile(path.join(repo, 'src/a.txt'), 'utf8'), 'a second, changed\n');
  t.is(await gitOk(repo, ['status', '--porcelain']), '');

  // The repository's objects are blobs over HTTP too: HEAD's ref file from member 2.
  const head = (await gitOk(repo, ['rev-parse', 'HEAD'])).trim();
  const ref = await httpGet(cluster().c.url(2) + blobPath('repo/.git/refs/heads/main'));
  t.is(ref.status, 200, 'the loose ref is a blob');
  t.is(ref.body.toString().trim(), head, 'refs/heads/main over HTTP names HEAD');

  // Clone out to local disk: same history, same files.
  const clone = local('clone');
  await gitOk(cluster().scratch, ['clone', '-q', '--no-local', repo, clone], 120_000);
  t.is((await gitOk(clone, ['rev-parse', 'HEAD'])).trim(), head);
  const d = await run('diff', ['-r', '--exclude=.git', clone, repo]);
  t.is(d.code, 0, `diff -r clone vs mount: ${d.stdout.slice(0, 2000)}`);
});

test.serial('tar x of a generated tree into the mount, tar c back: tar tvf listings identical (modes, sizes, mtimes, names, links) and diff -r identical', async (t) => {
  t.timeout(4 * 60_000);
  const tree = local('tar-src');
  const entries = makeTree(tree, { seed: 2024, files: 120, big: 2, fanout: 2, levels: 3, mtimes: true });
  await mkdir(path.join(tree, 'empty-dir'));
  const inTar = local('in.tar');
  const outTar = local('out.tar');
  // The same creation options both ways: names sorted, owners fixed (the mount has no chown).
  const create = (archive: string, dir: string): Promise<string> => ok('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-cf', archive, '-C', dir, '.'], { timeout_ms: 120_000 });
  await create(inTar, tree);

  await mkdir(mnt('tarx'));
  const x = await run('tar', ['--no-same-owner', '-xf', inTar, '-C', mnt('tarx')], { timeout_ms: 120_000 });
  t.is(x.code, 0, `tar x into the mount: ${x.stderr.slice(0, 3000)}`);
  t.log(`tar x of ${entries.length} entries: ${x.ms} ms`);
  const c = await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-cf', outTar, '-C', mnt('tarx'), '.'], { timeout_ms: 120_000 });
  t.is(c.code, 0, `tar c from the mount: ${c.stderr.slice(0, 3000)}`);

  const listing = async (archive: string): Promise<string[]> => (await ok('tar', ['--full-time', '--numeric-owner', '-tvf', archive])).trim().split('\n');
  const a = await listing(inTar);
  const b = await listing(outTar);
  t.true(a.length > 120, `the source listing has every entry (${a.length})`);
  t.true(a.some((l) => l.startsWith('l') && l.includes(' -> ')), 'with symlinks');
  t.deepEqual(b, a, 'tar tvf of the tree read back from the mount is that of the source');

  const back = local('tar-back');
  await mkdir(back);
  await ok('tar', ['--no-same-owner', '-xf', outTar, '-C', back]);
  const d1 = await run('diff', ['-r', '--no-dereference', tree, back]);
  t.is(d1.code, 0, `diff -r source vs the round trip: ${d1.stdout.slice(0, 2000)}`);
  const d2 = await run('diff', ['-r', '--no-dereference', tree, mnt('tarx')]);
  t.is(d2.code, 0, `diff -r source vs the mount: ${d2.stdout.slice(0, 2000)}`);

  // One of the big files over HTTP from member 1 is the source's bytes.
  const big = entries.find((e) => e.kind === 'file' && e.size >= MiB)!;
  const g = await httpGet(cluster().c.url(1) + blobPath(`tarx/${big.rel}`), 60_000);
  t.is(g.status, 200);
  t.is(sha256(g.body), sha256(await readFile(path.join(tree, big.rel))));
});
