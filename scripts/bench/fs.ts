/**
 * npm run bench:fs — sequential write and read of one large file through the Tempest FUSE mount
 * (member 0 of a fresh 3-member cluster: 1 shard x 3 replicas, mounted in the member's process)
 * beside two baselines from the same run, on the same disk, with the same source bytes:
 *   a. disk: a directory on the file system that holds everything else (no FUSE);
 *   b. passthrough: scripts/bench/passthrough-fs.ts in its own process, a bare fuse-native
 *      passthrough of another directory on that disk (node:fs on real fds), mounted with the
 *      options Tempest mounts with for throughput (fs/mount.ts: timeout 30 s, max_read=131072,
 *      big_writes, max_write=131072, max_readahead=1048576; kernel attr/entry caching 1 s, the default).
 *   c. tempest: `StoreCluster.create(3, { mounts: { 0: dir } })`, the file written and read
 *      through member 0's mount; the members' data dirs are on the same disk.
 *
 * Method, the same for all three targets:
 *   write: `dd if=SOURCE of=TARGET bs=1M conv=fsync` — write(2) of 1 MiB pieces, fsync, close,
 *     timed from spawn to exit (so the fsync and the close are in: Tempest commits a file's new
 *     version on fsync and on close, and fsync returns once the data is stable on the replicas).
 *     dd rather than a Node loop: a plain C writer puts no JavaScript of this process in the
 *     measured path (the FUSE daemons are Node; the writer need not be), and it is what users
 *     run. SOURCE is a file of random bytes generated first (Tempest keeps chunks by content
 *     hash, so zeros would only touch one chunk; /dev/urandom would time the generator), read
 *     once before each write so the write reads it from the page cache.
 *   read: after `sync -f ROOT` and dropping caches, `dd if=TARGET of=/dev/null bs=1M`, timed the
 *     same way; FUSE targets read through the mount. Then, untimed, `cmp SOURCE TARGET` (through
 *     the mount): a wrong byte, a short file or a failed command fails the run (exit code 1).
 *   caches: `echo 3 > /proc/sys/vm/drop_caches` when it is writable (root, /proc/sys not
 *     read-only); always, also posix_fadvise(POSIX_FADV_DONTNEED) over every file the read can
 *     touch (the target, through the mount too; the passthrough's backing file; every file in the
 *     three members' data dirs), which is what remains when drop_caches is not writable (in a
 *     container): clean pages of those files go, the kernel's metadata caches and anything a
 *     member holds in its own memory stay. The report says which were used.
 * Before its runs each target writes and reads a 64 MiB warm-up file of other random bytes,
 * untimed (a fresh Node daemon is several times slower on its first requests than once warm).
 * One run per target by default (TEMPEST_BENCH_FS_RUNS for more; every run writes a different
 * source file); a figure is size / median time. MB/s is 10^6 bytes/s. CPU seconds and peak RSS
 * (VmRSS every 200 ms) of the FUSE daemons are taken over each transfer.
 *
 * Progress goes to stderr, a table to stdout, and the last stdout line is one JSON object
 * {"bench":"fs", ..., "ratios": {"read_vs_passthrough", "write_vs_passthrough", ...}, "goals"}.
 * Goals: read_vs_passthrough >= 0.5, write_vs_passthrough >= 0.3. Exit code 0 when goals are
 * missed (they are reported), non-zero on errors. Everything (mounts, processes, temp dirs) is
 * cleaned up on failure and on SIGINT/SIGTERM too; every wait is bounded.
 *
 * Env: TEMPEST_BENCH_FS_MIB (file size, default 1024), TEMPEST_BENCH_FS_RUNS (default 1).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, constants as fsConstants, existsSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';
import { StoreCluster } from '../../test/helpers/store-cluster.js';
import { forceUnmount, isFuseMounted, waitMounted } from '../../test/helpers/mount.js';
import { cleanUpOnExit, cpuSeconds, statusKib, envInt as benchEnvInt, mbps, median } from './bench-stats.js';

const MiB = 1024 * 1024;
const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..', '..');
const PASSTHROUGH = join(HERE, 'passthrough-fs.js');
const progress = (s: string) => process.stderr.write(`bench:fs  ${s}\n`);
const round = (x: number, d = 1) => Number(x.toFixed(d));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A wrong answer from a file system under test (not a slow one): exit code 1 and a clear message. */
class CorrectnessError extends Error {}

const envInt = (name: string, def: number, min: number): number => benchEnvInt('fs', name, def, min);
const SIZE_MIB = envInt('TEMPEST_BENCH_FS_MIB', 1024, 1);
const RUNS = envInt('TEMPEST_BENCH_FS_RUNS', 1, 1);
const SIZE = SIZE_MIB * MiB;
/** One dd, cmp or cache drop: a minute, plus 2 s a MiB (even 0.5 MB/s finishes). */
const TRANSFER_TIMEOUT_MS = 60_000 + SIZE_MIB * 2_000;
const MOUNT_TIMEOUT_MS = 60_000;
/** Each target first writes and reads a warm-up file of this size, untimed. */
const WARM_MIB = Math.min(64, SIZE_MIB);
const WARM_NAME = 'warm-up.bin';

await benchMain();
process.exit(process.exitCode ?? 0);

async function benchMain(): Promise<void> {
  const wall0 = performance.now();
  const root = mkdtempSync(join(tmpdir(), 'tempest-bench-fs-'));
  const srcDir = join(root, 'src');
  const diskDir = join(root, 'disk');
  const ptBacking = join(root, 'passthrough-backing');
  const ptMnt = join(root, 'passthrough-mnt');
  const tMnt = join(root, 'tempest-mnt');
  for (const d of [srcDir, diskDir, ptBacking, ptMnt, tMnt]) mkdirSync(d);
  let cluster: StoreCluster | null = null;
  let passthrough: ChildProcess | null = null;

  /** Synchronous, for signal and exit handlers too: nothing left running or mounted. */
  const killAndUnmount = () => {
    passthrough?.kill('SIGKILL');
    for (const n of cluster?.nodes ?? []) n.proc?.kill('SIGKILL');
    for (const m of [ptMnt, tMnt]) forceUnmount(m);
  };
  /** Removes the temp root unless a mount is still on it (rm -r would go into the mount, or hang on a dead one). */
  const removeRoot = () => {
    const left = [ptMnt, tMnt].filter((m) => isFuseMounted(m));
    if (left.length > 0) {
      process.stderr.write(`bench:fs: ${left.join(', ')} still mounted; not removing ${root} (fusermount -uz it, then rm -r)\n`);
      return;
    }
    rmSync(root, { recursive: true, force: true });
  };
  cleanUpOnExit('fs', killAndUnmount, removeRoot);

  // ---- helpers ------------------------------------------------------------------------------------

  interface Ran { seconds: number; stderr: string; stdout: string }
  /** Runs a command to completion (bounded, SIGKILL on the deadline); rejects on a non-zero exit. */
  const run = (cmd: string, args: string[], timeout_ms = TRANSFER_TIMEOUT_MS, what = `${cmd} ${args.join(' ')}`): Promise<Ran> =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeout_ms, killSignal: 'SIGKILL' });
      let err = '';
      let out = '';
      p.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2000)));
      p.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
      p.once('error', reject);
      p.once('close', (code, signal) => {
        const seconds = (performance.now() - t0) / 1000;
        if (code === 0) resolve({ seconds, stderr: err, stdout: out });
        else reject(Object.assign(new Error(`${what}: ${signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (deadline ${timeout_ms} ms?)` : ''}` : `exit ${code}`}: ${(err || out).trim()}`), { code, stdout: out, stderr: err }));
      });
    });
  /** Flushes whatever is dirty on the root's file system, untimed, so one measurement's writeback does not land in the next. */
  const settle = () => run('sync', ['-f', root], TRANSFER_TIMEOUT_MS);

  // posix_fadvise(2) through koffi (a dependency already): Node has no fadvise of its own.
  const POSIX_FADV_DONTNEED = 4;
  const fadvise = koffi.load('libc.so.6').func('int posix_fadvise(int fd, int64_t offset, int64_t len, int advice)') as (fd: number, off: number, len: number, advice: number) => number;
  /** Regular files at or below `p` (not following symlinks, not into other mounts). */
  const filesUnder = (p: string, out: string[] = []): string[] => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return out; // gone meanwhile
    }
    if (st.isFile()) out.push(p);
    else if (st.isDirectory() && !isFuseMounted(p)) {
      let names: string[] = [];
      try {
        names = readdirSync(p);
      } catch {
        return out;
      }
      for (const n of names) filesUnder(join(p, n), out);
    }
    return out;
  };
  const fadviseDontneed = (files: string[]): { files: number; failed: number } => {
    let failed = 0;
    for (const f of files) {
      let fd = -1;
      try {
        fd = openSync(f, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
        if (fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) !== 0) failed++;
      } catch {
        failed++;
      } finally {
        if (fd >= 0) closeSync(fd);
      }
    }
    return { files: files.length, failed };
  };
  const dropCachesWritable = (() => {
    try {
      writeFileSync('/proc/sys/vm/drop_caches', '3');
      return true;
    } catch {
      return false;
    }
  })();
  const cacheNotes: string[] = [];
  /** Before a timed read: sync, drop_caches if we can, and fadvise away the pages of `files`. */
  const dropCaches = async (label: string, files: string[]) => {
    await settle();
    if (dropCachesWritable) writeFileSync('/proc/sys/vm/drop_caches', '3');
    const r = fadviseDontneed(files);
    cacheNotes.push(`${label}: ${dropCachesWritable ? 'drop_caches 3 + ' : ''}fadvise DONTNEED of ${r.files} file(s)${r.failed ? ` (${r.failed} failed)` : ''}`);
  };

  /** A file of random bytes, written in 1 MiB pieces and fsynced. */
  const makeFile = (file: string, size: number) => {
    const buf = Buffer.allocUnsafe(Math.min(size, MiB));
    const fd = openSync(file, 'w');
    try {
      for (let left = size; left > 0; ) {
        const piece = left >= buf.length ? buf : buf.subarray(0, left);
        randomFillSync(piece);
        for (let at = 0; at < piece.length; ) at += writeSync(fd, piece, at, piece.length - at);
        left -= piece.length;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  };

  /** dd's own account: bytes copied and seconds (its clock runs from after the opens to after the close). */
  const ddReport = (stderr: string): { bytes: number; seconds: number } | null => {
    const m = /^(\d+) bytes .*copied, ([\d.e+-]+) s/m.exec(stderr);
    return m ? { bytes: Number(m[1]), seconds: Number(m[2]) } : null;
  };

  const rssKib = (pid: number): number => statusKib(pid, 'VmRSS');
  /** Peak VmRSS (every 200 ms) and CPU used by `pids` over a window. */
  const sampler = (pids: number[]) => {
    const cpu0 = pids.map(cpuSeconds);
    const peak = pids.map(rssKib);
    const timer = setInterval(() => pids.forEach((p, i) => (peak[i] = Math.max(peak[i]!, rssKib(p)))), 200);
    return () => {
      clearInterval(timer);
      pids.forEach((p, i) => (peak[i] = Math.max(peak[i]!, rssKib(p))));
      return { cpu_s: pids.map((p, i) => round(cpuSeconds(p) - cpu0[i]!, 2)), peak_rss_mib: peak.map((k) => round(k / 1024)) };
    };
  };

  interface Transfer { seconds: number; dd_seconds: number | null; cpu_s: number[]; peak_rss_mib: number[] }
  interface TargetFigures { write: Transfer[]; read: Transfer[] }

  /**
   * One run on one target: warm the source, timed dd write, size check, drop caches, timed dd
   * read, untimed cmp. `pids` are the daemon processes whose CPU and RSS are sampled.
   */
  const oneRun = async (label: string, source: string, target: string, evict: () => string[], pids: number[], fig: TargetFigures) => {
    await settle();
    await run('dd', [`if=${source}`, 'of=/dev/null', 'bs=1M', 'status=none'], TRANSFER_TIMEOUT_MS, `warming ${source}`);
    let stop = sampler(pids);
    const w = await run('dd', [`if=${source}`, `of=${target}`, 'bs=1M', 'conv=fsync'], TRANSFER_TIMEOUT_MS, `${label} write: dd of=${target}`);
    const ws = stop();
    const wdd = ddReport(w.stderr);
    if (wdd && wdd.bytes !== SIZE) throw new CorrectnessError(`${label} write: dd copied ${wdd.bytes} bytes, not ${SIZE}`);
    const size = statSync(target).size;
    if (size !== SIZE) throw new CorrectnessError(`${label}: ${target} is ${size} bytes after the write, not ${SIZE}`);
    fig.write.push({ seconds: w.seconds, dd_seconds: wdd?.seconds ?? null, ...ws });

    await dropCaches(label, evict());
    stop = sampler(pids);
    const r = await run('dd', [`if=${target}`, 'of=/dev/null', 'bs=1M'], TRANSFER_TIMEOUT_MS, `${label} read: dd if=${target}`);
    const rs = stop();
    const rdd = ddReport(r.stderr);
    if (!rdd) throw new Error(`${label} read: no byte count in dd's report: ${r.stderr.trim()}`);
    if (rdd.bytes !== SIZE) throw new CorrectnessError(`${label} read: dd read ${rdd.bytes} bytes, not ${SIZE}`);
    fig.read.push({ seconds: r.seconds, dd_seconds: rdd.seconds, ...rs });

    try {
      await run('cmp', [source, target], TRANSFER_TIMEOUT_MS, `${label}: cmp ${source} ${target}`);
    } catch (err) {
      const e = err as { code?: number; message: string };
      throw e.code === 1 ? new CorrectnessError(`${label}: what was read back is not what was written: ${e.message}`) : err;
    }
    const daemons = pids.length === 0 ? '' : `; daemon CPU s write ${ws.cpu_s.join(' / ')}, read ${rs.cpu_s.join(' / ')}; peak RSS MiB write ${ws.peak_rss_mib.join(' / ')}, read ${rs.peak_rss_mib.join(' / ')}`;
    progress(`  ${label} run: write ${round(mbps(SIZE, w.seconds))} MB/s (${w.seconds.toFixed(2)} s), read ${round(mbps(SIZE, r.seconds))} MB/s (${r.seconds.toFixed(2)} s)${daemons}`);
  };

  /**
   * Untimed: a write (dd conv=fsync) and a read of the warm-up file through the target, so a
   * fresh daemon's first requests (JIT, first lookups, connections) are not in the figures.
   */
  const warmUp = async (label: string, source: string, target: string) => {
    await run('dd', [`if=${source}`, `of=${target}`, 'bs=1M', 'conv=fsync', 'status=none'], TRANSFER_TIMEOUT_MS, `${label} warm-up write: dd of=${target}`);
    await run('dd', [`if=${target}`, 'of=/dev/null', 'bs=1M', 'status=none'], TRANSFER_TIMEOUT_MS, `${label} warm-up read: dd if=${target}`);
  };

  const figure = (ts: Transfer[]) => {
    const s = ts.map((t) => t.seconds);
    return {
      MBps: round(mbps(SIZE, median(s))),
      median_s: round(median(s), 3),
      min_s: round(Math.min(...s), 3),
      max_s: round(Math.max(...s), 3),
      dd_MBps: ts.every((t) => t.dd_seconds !== null) ? round(mbps(SIZE, median(ts.map((t) => t.dd_seconds!)))) : null,
      n: ts.length,
      daemon_cpu_s: ts.map((t) => t.cpu_s),
      daemon_peak_rss_mib: ts.map((t) => t.peak_rss_mib),
    };
  };

  try {
    // ---- set-up -------------------------------------------------------------------------------------
    const df = spawnSync('df', ['-PT', root], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)?.split(/\s+/) ?? [];
    const device = df[0] ?? '?';
    const fstype = df[1] ?? '?';
    const cores = (readFileSync('/proc/stat', 'utf8').match(/^cpu\d+/gm) ?? []).length || 1;
    progress(`root ${root} on ${device} (${fstype}, mounted on ${df[6] ?? '?'}); node ${process.version}, Linux ${release()}, ${cores} cores`);
    progress(`caches: /proc/sys/vm/drop_caches ${dropCachesWritable ? 'writable: dropped before every read, plus fadvise' : 'NOT writable: only fadvise(DONTNEED) of the files each read touches'}`);
    progress(`writing ${RUNS} source file(s) of ${SIZE_MIB} MiB and a ${WARM_MIB} MiB warm-up file of random bytes ...`);
    const sources = Array.from({ length: RUNS }, (_, i) => {
      const f = join(srcDir, `source-${i}.bin`);
      makeFile(f, SIZE);
      return f;
    });
    // Different random bytes from the measured sources: Tempest keeps chunks by content hash.
    const warmSource = join(srcDir, 'warm-up.bin');
    makeFile(warmSource, WARM_MIB * MiB);
    const name = (i: number) => `seq-${i}.bin`;

    // ---- a. disk --------------------------------------------------------------------------------------
    progress(`disk: dd into ${diskDir} ...`);
    const disk: TargetFigures = { write: [], read: [] };
    await warmUp('disk', warmSource, join(diskDir, WARM_NAME));
    for (const [i, src] of sources.entries()) {
      const t = join(diskDir, name(i));
      await oneRun('disk', src, t, () => [t], [], disk);
    }

    // ---- b. passthrough ------------------------------------------------------------------------------
    progress(`passthrough: node ${PASSTHROUGH} ${ptBacking} ${ptMnt} ...`);
    const pt = spawn(process.execPath, [PASSTHROUGH, ptBacking, ptMnt], { stdio: ['ignore', 'pipe', 'pipe'] });
    passthrough = pt;
    let ptErr = '';
    pt.stderr!.on('data', (b: Buffer) => (ptErr = (ptErr + b.toString()).slice(-4000)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the passthrough did not mount ${ptMnt} within ${MOUNT_TIMEOUT_MS} ms; its stderr: ${ptErr.trim()}`)), MOUNT_TIMEOUT_MS);
      let out = '';
      pt.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('mounted ')) {
          clearTimeout(timer);
          resolve();
        }
      });
      pt.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the passthrough exited (${signal ?? code}) before mounting; its stderr: ${ptErr.trim()}`));
      });
    });
    await waitMounted(ptMnt, MOUNT_TIMEOUT_MS);
    const passthroughFig: TargetFigures = { write: [], read: [] };
    await warmUp('passthrough', warmSource, join(ptMnt, WARM_NAME));
    for (const [i, src] of sources.entries()) {
      const t = join(ptMnt, name(i));
      await oneRun('passthrough', src, t, () => [t, join(ptBacking, name(i))], [pt.pid!], passthroughFig);
    }
    {
      const exited = new Promise<void>((r) => (pt.exitCode !== null || pt.signalCode !== null ? r() : pt.once('exit', () => r())));
      pt.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (pt.exitCode === null && pt.signalCode === null) {
        progress('warning: the passthrough did not exit within 15 s of SIGTERM; SIGKILL');
        pt.kill('SIGKILL');
      } else if (pt.exitCode !== 0) progress(`warning: the passthrough exited ${pt.exitCode ?? pt.signalCode} on SIGTERM: ${ptErr.trim()}`);
      forceUnmount(ptMnt);
      passthrough = null;
    }

    // ---- c. Tempest -----------------------------------------------------------------------------------
    progress(`tempest: starting 3 members (1 shard x 3 replicas), member 0 mounting at ${tMnt} ...`);
    const prevTmp = process.env.TMPDIR;
    process.env.TMPDIR = root; // the cluster's data dirs under the same root, on the same disk
    try {
      cluster = await StoreCluster.create(3, { mounts: { 0: tMnt } });
    } finally {
      if (prevTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = prevTmp;
    }
    const c = cluster;
    await c.startAll(90_000);
    try {
      await waitMounted(tMnt, MOUNT_TIMEOUT_MS);
    } catch {
      const m0 = c.nodes[0]!;
      const fsSource = existsSync(join(REPO, 'fs', 'index.ts'));
      const fsBuilt = existsSync(join(REPO, 'dist', 'fs', 'index.js'));
      const said = m0.stderr.split('\n').filter((l) => /mount/i.test(l)).slice(-3).join('\n');
      const why = !fsSource
        ? 'fs/index.ts does not exist yet: the FUSE mount (fs/) has not landed, so a member started with --FUSE/enabled=true does not mount'
        : !fsBuilt
          ? 'fs/ is not compiled (no dist/fs/index.js): run "npx tsc -p ." (npm run bench:fs compiles first)'
          : m0.proc === null
            ? 'member 0 exited'
            : `member 0 runs but did not mount${said ? `; it logged:\n${said}` : ' (its stderr tail is below)'}`;
      throw new Error(`the Tempest mount at ${tMnt} did not appear within ${MOUNT_TIMEOUT_MS} ms: ${why}. The disk and passthrough figures above are valid.\n--- member 0 stderr tail:\n${m0.stderr.slice(-3000)}`);
    }
    const rootDev = statSync(root).dev;
    const sameDisk = c.nodes.every((n) => statSync(n.dataDir).dev === rootDev);
    if (!sameDisk) progress('warning: the members\' data dirs are not on the root\'s device');
    const pids = c.nodes.map((n) => n.proc!.pid!);
    progress(`tempest: mounted (member pids ${pids.join(', ')}; data under ${c.root})`);
    const tempest: TargetFigures = { write: [], read: [] };
    await warmUp('tempest', warmSource, join(tMnt, WARM_NAME));
    for (const [i, src] of sources.entries()) {
      const t = join(tMnt, name(i));
      await oneRun('tempest', src, t, () => [t, ...filesUnder(c.root)], pids, tempest);
    }
    const memberWarnings = await c.stopChecked();
    cluster = null;

    // ---- report --------------------------------------------------------------------------------------
    const fig = {
      disk_write: figure(disk.write),
      disk_read: figure(disk.read),
      passthrough_write: figure(passthroughFig.write),
      passthrough_read: figure(passthroughFig.read),
      tempest_write: figure(tempest.write),
      tempest_read: figure(tempest.read),
    };
    const figures = Object.fromEntries(Object.entries(fig).map(([k, f]) => [`${k}_MBps`, f.MBps]));
    const r3 = (x: number) => round(x, 3);
    const ratios = {
      read_vs_passthrough: r3(fig.tempest_read.MBps / fig.passthrough_read.MBps),
      write_vs_passthrough: r3(fig.tempest_write.MBps / fig.passthrough_write.MBps),
      read_vs_disk: r3(fig.tempest_read.MBps / fig.disk_read.MBps),
      write_vs_disk: r3(fig.tempest_write.MBps / fig.disk_write.MBps),
      passthrough_read_vs_disk: r3(fig.passthrough_read.MBps / fig.disk_read.MBps),
      passthrough_write_vs_disk: r3(fig.passthrough_write.MBps / fig.disk_write.MBps),
    };
    const goal = (value: number, target: number) => ({ value, target: `>= ${target}`, met: value >= target });
    const goals = {
      read_vs_passthrough: goal(ratios.read_vs_passthrough, 0.5),
      write_vs_passthrough: goal(ratios.write_vs_passthrough, 0.3),
    };
    const summary = {
      bench: 'fs',
      size_mib: SIZE_MIB,
      runs: RUNS,
      figures,
      ratios,
      goals,
      details: fig,
      cache: {
        drop_caches: dropCachesWritable,
        method: dropCachesWritable
          ? 'sync -f ROOT; echo 3 > /proc/sys/vm/drop_caches; posix_fadvise DONTNEED of the files each read touches'
          : 'sync -f ROOT; /proc/sys/vm/drop_caches not writable, so only posix_fadvise DONTNEED of the files each read touches (the target, through the mount too; the passthrough backing file; every file in the members\' data dirs)',
        before_reads: cacheNotes,
      },
      settings: {
        unit: 'MB/s = 10^6 bytes/s; figure = size / median wall time of dd, spawn to exit',
        write: 'dd if=SOURCE of=TARGET bs=1M conv=fsync (SOURCE random bytes, read once before, from the page cache)',
        warm_up: `per target, untimed: dd write (conv=fsync) and read of a ${WARM_MIB} MiB file of other random bytes`,
        read: 'dd if=TARGET of=/dev/null bs=1M after sync + cache drop; then cmp SOURCE TARGET, untimed',
        passthrough: 'scripts/bench/passthrough-fs.ts: fuse-native, node:fs on real fds; timeout 30000 ms, max_read=131072, big_writes, max_write=131072, max_readahead=1048576 (as fs/mount.ts)',
        tempest: '3 members, 1 shard x 3 replicas, config/local/node0.ini; mount in member 0 (StoreCluster mounts {0: dir})',
        daemon_pids_sampled: 'passthrough: its process; tempest: members 0 / 1 / 2',
        root,
        device,
        fstype,
        same_disk: sameDisk,
        cores,
        kernel: release(),
        node: process.version,
      },
      warnings: memberWarnings.slice(0, 20),
      member_warning_lines: memberWarnings.length,
      wall_s: round((performance.now() - wall0) / 1000, 1),
    };

    const row = (cells: (string | number)[], widths: number[]) => cells.map((x, i) => (i === 0 ? String(x).padEnd(widths[i]!) : String(x).padStart(widths[i]!))).join('  ');
    const W = [52, 11, 11, 11, 11];
    const out: string[] = [];
    out.push(`fs benchmark: sequential ${SIZE_MIB} MiB file, dd bs=1M (write conv=fsync), all under ${root} on ${device} (${fstype})`);
    out.push(`MB/s = 10^6 bytes/s = size / median wall time of ${RUNS} run(s); reads after sync + ${dropCachesWritable ? 'drop_caches + ' : ''}fadvise DONTNEED${dropCachesWritable ? '' : ' (drop_caches not writable here)'}`);
    out.push('');
    out.push(row(['', 'write MB/s', '(s)', 'read MB/s', '(s)'], W));
    const line = (label: string, w: ReturnType<typeof figure>, r: ReturnType<typeof figure>) => out.push(row([label, w.MBps, w.median_s, r.MBps, r.median_s], W));
    line('disk (a directory on the same file system)', fig.disk_write, fig.disk_read);
    line('passthrough (fuse-native, node:fs, same options)', fig.passthrough_write, fig.passthrough_read);
    line('tempest (member 0 mount; 3 replicas)', fig.tempest_write, fig.tempest_read);
    out.push('');
    out.push('ratios: ' + Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join(', '));
    out.push('goals: ' + Object.entries(goals).map(([k, g]) => `${k} ${g.value} (${g.target}) ${g.met ? 'met' : 'MISSED'}`).join(', '));
    const cpu = (f: ReturnType<typeof figure>) => f.daemon_cpu_s.map((x) => x.join(' / ')).join('; ');
    const rss = (f: ReturnType<typeof figure>) => f.daemon_peak_rss_mib.map((x) => x.join(' / ')).join('; ');
    out.push(`daemon CPU s: passthrough write ${cpu(fig.passthrough_write)}, read ${cpu(fig.passthrough_read)}; tempest members 0 / 1 / 2 write ${cpu(fig.tempest_write)}, read ${cpu(fig.tempest_read)}`);
    out.push(`daemon peak RSS MiB: passthrough write ${rss(fig.passthrough_write)}, read ${rss(fig.passthrough_read)}; tempest members 0 / 1 / 2 write ${rss(fig.tempest_write)}, read ${rss(fig.tempest_read)}`);
    if (memberWarnings.length > 0) out.push(`members logged ${memberWarnings.length} warning/error line(s); first: ${memberWarnings[0]}`);
    out.push(JSON.stringify(summary));
    process.stdout.write(`${out.join('\n')}\n`);
  } catch (err) {
    const tail = cluster && !(err as Error).message.includes('member 0 stderr tail') ? cluster.nodes.map((n) => `--- member ${n.id} (exited: ${n.proc === null}) stderr tail:\n${n.stderr.slice(-2000)}`).join('\n') : '';
    process.stderr.write(`bench:fs failed${err instanceof CorrectnessError ? ' (CORRECTNESS)' : ''}: ${(err as Error).stack ?? err}\n${tail}\n`);
    process.exitCode = 1;
  } finally {
    if (passthrough) {
      const p = passthrough;
      const exited = new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      p.kill('SIGKILL');
      passthrough = null;
    }
    if (cluster) {
      await cluster.stop().catch((e: Error) => process.stderr.write(`bench:fs: stopping the cluster: ${e.message}\n`));
      cluster = null;
    }
    killAndUnmount();
    removeRoot();
  }
}
