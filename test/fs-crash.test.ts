/**
 * Member failures while a program writes a 64 MiB file through the mount: a user program
 * (test/fixtures/fs-writer.ts: open, 1 MiB writes, fsync, close) is mid-way through the file when
 * a member is SIGKILLed. Once its close has returned success, the file is byte-exact (sha256) from
 * the survivors over HTTP and through the mount. First with the mount in member 0 and a
 * non-mounting member killed; then with a standalone `tempest mount --connect` client and the
 * leader (member 0) killed under it.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { getHashed, seededSha256 } from './helpers/http-blob.js';
import { FS_WRITER, MiB, clientMount, mountedCluster, within } from './helpers/fs-run.js';
import { forceUnmount, isFuseMounted } from './helpers/mount.js';
import { StoreCluster } from './helpers/store-cluster.js';

const SIZE = 64 * MiB;

interface WriterResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Bytes the writer had written when `onProgress` fired the kill. */
  killedAt: number | null;
}

/**
 * Runs the writer on `file`; once it has written `killAfter` bytes, awaits `kill()`. Bounded: the
 * writer is SIGKILLed after `timeout_ms`.
 */
function writeWhileKilling(file: string, seed: string, killAfter: number, kill: () => Promise<void>, timeout_ms: number): Promise<WriterResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FS_WRITER, file, seed, String(SIZE)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killedAt: number | null = null;
    let killing: Promise<void> = Promise.resolve();
    child.stdout.on('data', (b: Buffer) => {
      stdout = (stdout + b.toString()).slice(-4000);
      if (killedAt !== null) return;
      const last = /wrote (\d+)\n(?!.*wrote)/s.exec(stdout);
      if (last !== null && Number(last[1]) >= killAfter) {
        killedAt = Number(last[1]);
        killing = kill();
      }
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout_ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      void killing.then(() => resolve({ code, signal, stdout, stderr, killedAt }));
    });
  });
}

async function hashFile(p: string): Promise<{ size: number; sha256: string }> {
  const h = createHash('sha256');
  let size = 0;
  await within(
    new Promise<void>((resolve, reject) => {
      createReadStream(p)
        .on('data', (b) => {
          size += b.length;
          h.update(b);
        })
        .on('end', resolve)
        .on('error', reject);
    }),
    120_000,
    `reading ${p}`,
  );
  return { size, sha256: h.digest('hex') };
}

test.serial('SIGKILL of a non-mounting member while a 64 MiB file is written through the mount: after close succeeds, the file is byte-exact from the survivors and the mount', async (t) => {
  t.timeout(4 * 60_000);
  const m = await mountedCluster(3, 0);
  t.teardown(() => m.stop());
  await mkdir(path.join(m.mnt, 'crash'));
  const file = path.join(m.mnt, 'crash/big.bin');
  const seed = 'fs-crash/member';
  const t0 = Date.now();
  const r = await writeWhileKilling(file, seed, SIZE / 3, () => m.c.kill(1), 180_000);
  t.log(`writer: exit ${r.code} after ${Date.now() - t0} ms; member 1 killed at ${r.killedAt} bytes written`);
  t.not(r.killedAt, null, 'the member was killed while the file was being written');
  t.true(r.killedAt! < SIZE, 'killed before the last write');
  t.is(r.code, 0, `the writer succeeded: ${r.stderr}`);
  t.regex(r.stdout, /closed\n$/, 'close returned success');

  const want = seededSha256(seed, SIZE);
  for (const i of [0, 2]) {
    const g = await getHashed(`${m.c.url(i)}/v1/blobs/crash/big.bin`, 120_000);
    t.is(g.status, 200, `from member ${i}`);
    t.is(g.size_bytes, SIZE, `from member ${i}`);
    t.is(g.sha256, want, `byte-exact from surviving member ${i}`);
  }
  const viaMount = await hashFile(file);
  t.is(viaMount.size, SIZE);
  t.is(viaMount.sha256, want, 'byte-exact through the mount');
});

test.serial('a standalone `tempest mount --connect` client: SIGKILL of the leader while it writes 64 MiB; after close succeeds the file is byte-exact from the survivors; SIGTERM unmounts and exits 0', async (t) => {
  t.timeout(4 * 60_000);
  const c = await StoreCluster.create(3);
  const dirBase = mkdtempSync(path.join(tmpdir(), 'tempest-client-mnt-'));
  const dir = path.join(dirBase, 'mnt');
  let client: Awaited<ReturnType<typeof clientMount>> | undefined;
  t.teardown(async () => {
    await client?.stop();
    await c.stop();
    forceUnmount(dir);
    if (!isFuseMounted(dir)) rmSync(dirBase, { recursive: true, force: true });
  });
  await mkdir(dir);
  await c.startAll();
  client = await clientMount(dir, c.nodes[1]!.external);
  await mkdir(path.join(dir, 'crash'));
  const file = path.join(dir, 'crash/leader.bin');
  const seed = 'fs-crash/leader';
  const t0 = Date.now();
  const r = await writeWhileKilling(file, seed, SIZE / 3, () => c.kill(0), 180_000);
  t.log(`writer: exit ${r.code} after ${Date.now() - t0} ms; leader killed at ${r.killedAt} bytes written`);
  t.not(r.killedAt, null, 'the leader was killed while the file was being written');
  t.true(r.killedAt! < SIZE, 'killed before the last write');
  t.is(r.code, 0, `the writer succeeded: ${r.stderr}\nclient stderr: ${client.stderr().slice(-2000)}`);
  t.regex(r.stdout, /closed\n$/, 'close returned success');

  const want = seededSha256(seed, SIZE);
  for (const i of [1, 2]) {
    const g = await getHashed(`${c.url(i)}/v1/blobs/crash/leader.bin`, 120_000);
    t.is(g.status, 200, `from member ${i}`);
    t.is(g.size_bytes, SIZE, `from member ${i}`);
    t.is(g.sha256, want, `byte-exact from surviving member ${i}`);
  }
  const viaMount = await hashFile(file);
  t.is(viaMount.sha256, want, 'byte-exact through the client mount');

  const exit = await client.stop();
  t.is(exit.code, 0, `tempest mount exits 0 on SIGTERM (got ${JSON.stringify(exit)}): ${client.stderr().slice(-2000)}`);
  t.false(exit.mountedAfterExit, 'and it unmounted before exiting');
});
