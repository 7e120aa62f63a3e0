/**
 * The mount without quorum (DESIGN §10: EAGAIN while the group has no quorum): with 2 of 3
 * members SIGKILLed, a write through member 0's mount fails with "Resource temporarily
 * unavailable" (not a hang, not EIO, not a silent success); once the two are back, writes succeed
 * again and every file written before is intact, through the mount and from each member.
 */
import test from 'ava';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { blobPath, sha256 } from './helpers/http-blob.js';
import { ERRNO_TEXT, KiB, httpGet, mountedCluster, ok, run, seeded, until, within, type RunResult } from './helpers/fs-run.js';

test('with 2 of 3 members killed a write through the mount fails EAGAIN; after they restart writes succeed and earlier files are intact', async (t) => {
  t.timeout(6 * 60_000);
  const m = await mountedCluster(3, 0);
  t.teardown(() => m.stop());
  const mnt = (...p: string[]): string => path.join(m.mnt, ...p);
  const files = new Map<string, Buffer>();
  const src = path.join(m.scratch, 'src.bin');
  await writeFile(src, seeded('quorum/src', 64 * KiB));
  await mkdir(mnt('q'));
  for (let i = 0; i < 5; i++) {
    const body = seeded(`quorum/before-${i}`, 1000 + i * 50 * KiB);
    await writeFile(mnt(`q/before-${i}`), body);
    files.set(`q/before-${i}`, body);
  }
  await ok('cp', [src, mnt('q/before-cp')]);
  files.set('q/before-cp', await readFile(src));

  await m.c.kill(1);
  await m.c.kill(2);
  const t_kill = Date.now();
  // Until the survivor knows it is alone a write may wait; it must then fail EAGAIN. Bounded.
  const attempts: RunResult[] = [];
  const refused = await until(
    120_000,
    async () => {
      const r = await run('cp', [src, mnt(`q/during-${attempts.length}`)], { timeout_ms: 60_000 });
      attempts.push(r);
      return r.code !== 0 && r.stderr.includes(ERRNO_TEXT.EAGAIN) ? r : undefined;
    },
    500,
  );
  t.log(`without quorum: ${attempts.length} cp attempts; ${attempts.map((a) => `exit ${a.code}${a.signal ? ` ${a.signal}` : ''} after ${a.ms} ms: ${a.stderr.trim().slice(0, 120)}`).join(' | ')}`);
  t.truthy(refused, `cp fails with "${ERRNO_TEXT.EAGAIN}" within 120 s of losing quorum`);
  t.log(`first EAGAIN ${Date.now() - t_kill} ms after the kills`);
  t.false(
    attempts.some((a) => a.code === 0),
    'no write succeeded without quorum',
  );
  // The errno as a program sees it, once the member knows: EAGAIN at once, not after a hang.
  const t0 = Date.now();
  const code = await within(
    writeFile(mnt('q/during-node'), 'no quorum').then(
      () => 'ok',
      (err: NodeJS.ErrnoException) => err.code,
    ),
    60_000,
    'a node write without quorum',
  );
  t.is(code, 'EAGAIN', 'node sees EAGAIN');
  t.log(`node write refused ${code} in ${Date.now() - t0} ms`);
  const dd = await run('dd', ['if=/dev/zero', `of=${mnt('q/during-dd')}`, 'bs=4096', 'count=4', 'conv=fsync', 'status=none'], { timeout_ms: 60_000 });
  t.not(dd.code, 0, 'dd conv=fsync fails without quorum');
  t.regex(dd.stderr, new RegExp(ERRNO_TEXT.EAGAIN), dd.stderr);

  m.c.start(1);
  m.c.start(2);
  await m.c.waitHealthy([0, 1, 2], 3, 120_000);
  const back = await until(
    60_000,
    async () => {
      const r = await run('cp', [src, mnt('q/after-first')], { timeout_ms: 60_000 });
      return r.code === 0 ? r : undefined;
    },
    500,
  );
  t.truthy(back, 'writes through the mount succeed again once quorum is back');
  files.set('q/after-first', await readFile(src));
  for (let i = 0; i < 5; i++) {
    const body = seeded(`quorum/after-${i}`, 2000 + i * 30 * KiB);
    await within(writeFile(mnt(`q/after-${i}`), body), 60_000, `write q/after-${i}`);
    files.set(`q/after-${i}`, body);
  }

  for (const [p, body] of files) {
    t.is(sha256(await readFile(mnt(p))), sha256(body), `${p} through the mount`);
    for (const i of [0, 1, 2]) {
      const g = await httpGet(m.c.url(i) + blobPath(p));
      t.is(g.status, 200, `${p} from member ${i}`);
      t.is(sha256(g.body), sha256(body), `${p} from member ${i}`);
    }
  }
});
