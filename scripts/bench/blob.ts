/**
 * npm run bench:blob — the HTTP blob API of a real 3-member Tempest cluster (1 shard, 3 replicas;
 * an upload is acknowledged once every chunk is durable on every replica) beside baselines from the
 * same run, on the same disk, with the same source files:
 *   a. `cp` of the file to another file in the same temp root (page cache only);
 *   b. `cp` followed by `sync FILE` (an fsync of the copy): a durable copy, what an acknowledged
 *      upload costs at least (Tempest writes the bytes on 3 replicas, all on this one disk);
 *   c. a bare express 5 app in its own process on 127.0.0.1: PUT streams the body into a file
 *      (pipeline(req, createWriteStream), no fsync), GET streams the file back
 *      (pipeline(createReadStream, res)).
 * Blobs are random bytes, 1 MiB and BENCH_BLOB_LARGE_MIB (256) MiB, generated as files first in a
 * temp root that also holds the cluster's data dirs; every run uploads a different file (the store
 * keeps chunks by content hash, so the same bytes twice would only touch the chunks). Uploads
 * (node:http, fs.createReadStream piped into the request, with Content-Length) are timed until the
 * 201 response has ended; downloads until the body has ended, the body hashed as it arrives (the
 * same client for Tempest and bare express) and checked against the source: a mismatch, a wrong
 * status or a short body fails the run (exit code 1). Nothing is ever held whole in memory.
 *
 * 1 MiB figures are size / median time of BENCH_BLOB_SMALL_RUNS (20) sequential operations after 2
 * warm-ups; large figures are size / median time of BENCH_BLOB_RUNS (3) runs. MB/s is 10^6 bytes/s.
 * Peak RSS of each member (VmRSS every 200 ms) is taken over the large transfers, with the CPU the
 * members used. Progress goes to stderr, a table to stdout, and the last stdout line is one JSON
 * object. Exit code 0 when goals are missed (they are reported), non-zero on errors.
 *
 * Env: BENCH_BLOB_LARGE_MIB (default 256), BENCH_BLOB_RUNS (large runs, default 3),
 *      BENCH_BLOB_SMALL_RUNS (1 MiB runs, default 20).
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { StoreCluster } from '../../test/helpers/store-cluster.js';
import { cleanUpOnExit, cpuSeconds, statusKib, envInt as benchEnvInt, mbps, median } from './bench-stats.js';

const MiB = 1024 * 1024;
const progress = (s: string) => process.stderr.write(`bench:blob  ${s}\n`);
const round = (x: number, d = 1) => Number(x.toFixed(d));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A wrong answer from a store under test (not a slow one): exit code 1 and a clear message. */
class CorrectnessError extends Error {}

// ---- bare express server (this file run with --bare-server DIR, in its own process) -------------

async function bareServer(dir: string): Promise<void> {
  const NAME = /^[A-Za-z0-9._-]{1,100}$/;
  const fileOf = (name: string): string => {
    if (!NAME.test(name)) throw Object.assign(new Error(`bad name ${JSON.stringify(name)}`), { status: 400 });
    return join(dir, name);
  };
  const app = express();
  app.put('/blob/:name', async (req, res) => {
    const file = fileOf(req.params.name);
    await pipeline(req, createWriteStream(file));
    res.status(201).json({ size: (await stat(file)).size });
  });
  app.get('/blob/:name', async (req, res) => {
    const file = fileOf(req.params.name);
    const st = await stat(file);
    res.status(200).setHeader('content-type', 'application/octet-stream');
    res.setHeader('content-length', st.size);
    await pipeline(createReadStream(file), res);
  });
  const server = http.createServer({ requestTimeout: 0 }, app);
  server.setTimeout(120_000);
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    process.send?.({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
  });
  process.on('disconnect', () => process.exit(0)); // the bench went away
}

if (process.argv[2] === '--bare-server') {
  await bareServer(process.argv[3]!);
} else {
  await benchMain();
  process.exit(process.exitCode ?? 0);
}

// ---- the bench ------------------------------------------------------------------------------------

async function benchMain(): Promise<void> {
  const envInt = (name: string, def: number, min: number): number => benchEnvInt('blob', name, def, min);
  const LARGE_MIB = envInt('BENCH_BLOB_LARGE_MIB', 256, 1);
  const LARGE_RUNS = envInt('BENCH_BLOB_RUNS', 3, 1);
  const SMALL_RUNS = envInt('BENCH_BLOB_SMALL_RUNS', 20, 1);
  const WARMUPS = 2;
  const SMALL = MiB;
  const LARGE = LARGE_MIB * MiB;
  const L = `${LARGE_MIB}MiB`;
  /** Deadlines: one whole request, and no traffic either way on its socket. */
  const SMALL_TIMEOUT_MS = 30_000;
  const LARGE_TIMEOUT_MS = 60_000 + LARGE_MIB * 1_000; // even 1 MB/s finishes
  const IDLE_MS = 60_000;
  const wall0 = performance.now();

  const root = mkdtempSync(join(tmpdir(), 'tempest-bench-blob-'));
  let cluster: StoreCluster | null = null;
  let bare: ChildProcess | null = null;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  const killChildren = () => {
    for (const n of cluster?.nodes ?? []) n.proc?.kill('SIGKILL');
    bare?.kill('SIGKILL');
  };
  cleanUpOnExit('blob', killChildren, () => rmSync(root, { recursive: true, force: true }));

  // ---- helpers ------------------------------------------------------------------------------------

  /** Runs a command to completion (bounded); rejects on a non-zero exit. */
  const run = (cmd: string, args: string[], timeout_ms = 120_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeout_ms, killSignal: 'SIGKILL' });
      let err = '';
      p.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
      p.once('error', reject);
      p.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${signal ? `killed by ${signal} (timeout ${timeout_ms} ms?)` : `exit ${code}`} ${err.trim()}`))));
    });
  /** Flushes whatever is dirty on the root's file system, untimed, so one measurement's writeback does not land in the next. */
  const settle = () => run('sync', ['-f', root]);

  /** A file of random bytes, written in 1 MiB pieces and fsynced; its sha256 (hex). */
  const makeFile = (file: string, size: number): string => {
    const buf = Buffer.allocUnsafe(Math.min(size, MiB));
    const h = createHash('sha256');
    const fd = openSync(file, 'w');
    try {
      for (let left = size; left > 0; ) {
        const piece = left >= buf.length ? buf : buf.subarray(0, left);
        randomFillSync(piece);
        h.update(piece);
        for (let at = 0; at < piece.length; ) at += writeSync(fd, piece, at, piece.length - at);
        left -= piece.length;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return h.digest('hex');
  };

  interface PutResult { status: number; body: string; etag: string | undefined; seconds: number }
  /** PUT `file` (streamed, with Content-Length) to `url`; timed from the request until the response has ended. */
  const put = (url: string, file: string, size: number, timeout_ms: number): Promise<PutResult> =>
    new Promise((resolve, reject) => {
      const ac = new AbortController();
      let done = false;
      let responded = false;
      const finish = (err: Error | null, r?: PutResult) => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        if (err) {
          ac.abort();
          reject(new Error(`PUT ${url}: ${err.message} after ${((performance.now() - t0) / 1000).toFixed(1)} s`));
        } else resolve(r!);
      };
      const deadline = setTimeout(() => finish(new Error(`no response within ${timeout_ms} ms`)), timeout_ms);
      const t0 = performance.now();
      const req = http.request(url, { method: 'PUT', agent, signal: ac.signal, headers: { 'content-type': 'application/octet-stream', 'content-length': size } });
      req.setTimeout(IDLE_MS, () => finish(new Error(`no traffic for ${IDLE_MS} ms`)));
      req.once('error', (err) => finish(err));
      req.once('response', (res) => {
        responded = true;
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.once('error', (err) => finish(err));
        res.once('end', () => finish(null, { status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8').slice(0, 4000), etag: res.headers.etag, seconds: (performance.now() - t0) / 1000 }));
      });
      // A server that answers early (an error) and closes the connection fails the pipe: the answer counts.
      pipeline(createReadStream(file, { highWaterMark: MiB }), req).catch((err: Error) => {
        if (!responded) finish(err);
      });
    });

  interface GetResult { status: number; bytes: number; sha256: string | null; body: string; etag: string | undefined; seconds: number }
  /** GET `url`, the body hashed (or only counted) as it arrives and discarded; timed until the body has ended. */
  const get = (url: string, timeout_ms: number, hash = true): Promise<GetResult> =>
    new Promise((resolve, reject) => {
      const ac = new AbortController();
      let done = false;
      const finish = (err: Error | null, r?: GetResult) => {
        if (done) return;
        done = true;
        clearTimeout(deadline);
        if (err) {
          ac.abort();
          reject(new Error(`GET ${url}: ${err.message} after ${((performance.now() - t0) / 1000).toFixed(1)} s`));
        } else resolve(r!);
      };
      const deadline = setTimeout(() => finish(new Error(`body not complete within ${timeout_ms} ms`)), timeout_ms);
      const t0 = performance.now();
      const req = http.request(url, { method: 'GET', agent, signal: ac.signal });
      req.setTimeout(IDLE_MS, () => finish(new Error(`no traffic for ${IDLE_MS} ms`)));
      req.once('error', (err) => finish(err));
      req.once('response', (res) => {
        const ok = res.statusCode === 200;
        const h = ok && hash ? createHash('sha256') : null;
        const errParts: Buffer[] = [];
        let bytes = 0;
        res.on('data', (b: Buffer) => {
          bytes += b.length;
          if (h) h.update(b);
          else if (!ok && bytes < 4000) errParts.push(b);
        });
        res.once('error', (err) => finish(err));
        res.once('aborted', () => finish(new Error(`the connection was cut after ${bytes} bytes of the body`)));
        res.once('end', () => {
          if (!res.complete) {
            finish(new Error(`the body ended short after ${bytes} bytes`));
            return;
          }
          finish(null, { status: res.statusCode ?? 0, bytes, sha256: h ? h.digest('hex') : null, body: Buffer.concat(errParts).toString('utf8'), etag: res.headers.etag, seconds: (performance.now() - t0) / 1000 });
        });
      });
      req.end();
    });

  const checkPut = (what: string, r: PutResult, sha: string, expectEtag: boolean) => {
    if (r.status !== 201) throw new CorrectnessError(`${what}: PUT answered ${r.status}, not 201: ${r.body}`);
    if (expectEtag) {
      const etag = (JSON.parse(r.body) as { etag?: string }).etag;
      if (etag !== sha || r.etag !== `"${sha}"`) throw new CorrectnessError(`${what}: the upload's etag ${etag} (header ${r.etag}) is not the source's sha256 ${sha}`);
    }
  };
  const checkGet = (what: string, r: GetResult, size: number, sha: string | null, expectEtag: boolean) => {
    if (r.status !== 200) throw new CorrectnessError(`${what}: GET answered ${r.status}, not 200: ${r.body}`);
    if (r.bytes !== size) throw new CorrectnessError(`${what}: GET returned ${r.bytes} bytes, not ${size}`);
    if (sha !== null && r.sha256 !== sha) throw new CorrectnessError(`${what}: the downloaded bytes' sha256 ${r.sha256} is not the source's ${sha}`);
    if (expectEtag && sha !== null && r.etag !== `"${sha}"`) throw new CorrectnessError(`${what}: GET's ETag ${r.etag} is not the source's sha256 ${sha}`);
  };

  const kib = statusKib;
  /** The machine's busy and total CPU time (all cores) from /proc/stat, in clock ticks. */
  const machine = (): { busy: number; total: number } => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - (f[4] ?? 0), total };
  };
  const cores = (() => {
    const m = /^cpu\d+/gm;
    return (readFileSync('/proc/stat', 'utf8').match(m) ?? []).length || 1;
  })();

  /** Peak VmRSS of `pids` (and of this process), every 200 ms, with CPU used over the window. */
  class Sampler {
    readonly peak_kib: number[];
    bench_peak_kib = 0;
    private readonly timer: NodeJS.Timeout;
    private readonly cpu0: number[];
    private readonly m0 = machine();
    private readonly t0 = performance.now();
    constructor(private readonly pids: number[]) {
      this.peak_kib = pids.map(() => 0);
      this.cpu0 = pids.map(cpuSeconds);
      this.sample();
      this.timer = setInterval(() => this.sample(), 200);
    }
    private sample(): void {
      this.pids.forEach((pid, i) => {
        const v = kib(pid, 'VmRSS');
        if (v > this.peak_kib[i]!) this.peak_kib[i] = v;
      });
      this.bench_peak_kib = Math.max(this.bench_peak_kib, process.memoryUsage.rss() / 1024);
    }
    stop(): { peak_mib: number[]; bench_peak_mib: number; cpu_s: number[]; machine_busy_cores: number; seconds: number } {
      clearInterval(this.timer);
      this.sample();
      const m1 = machine();
      return {
        peak_mib: this.peak_kib.map((k) => round(k / 1024)),
        bench_peak_mib: round(this.bench_peak_kib / 1024),
        cpu_s: this.pids.map((p, i) => round(cpuSeconds(p) - this.cpu0[i]!, 2)),
        machine_busy_cores: round((cores * (m1.busy - this.m0.busy)) / Math.max(1, m1.total - this.m0.total), 2),
        seconds: round((performance.now() - this.t0) / 1000, 2),
      };
    }
  }

  interface Timed { seconds: number[] }
  const figure = (bytes: number, t: Timed) => ({
    MBps: round(mbps(bytes, median(t.seconds))),
    median_ms: round(median(t.seconds) * 1e3, 2),
    min_ms: round(Math.min(...t.seconds) * 1e3, 2),
    max_ms: round(Math.max(...t.seconds) * 1e3, 2),
    total_MBps: round(mbps(bytes * t.seconds.length, t.seconds.reduce((a, b) => a + b, 0))),
    n: t.seconds.length,
  });

  try {
    // ---- files --------------------------------------------------------------------------------------
    const src = join(root, 'src');
    const scratch = join(root, 'scratch');
    const bareDir = join(root, 'bare');
    for (const d of [src, scratch, bareDir]) mkdirSync(d);
    const df = spawnSync('df', ['-P', root], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)?.split(/\s+/) ?? [];
    const device = df[0] ?? '?';
    progress(`root ${root} on ${device} (mounted on ${df[5] ?? '?'}); ${os()}`);
    progress(`writing ${WARMUPS + SMALL_RUNS} x 1 MiB and ${LARGE_RUNS} x ${LARGE_MIB} MiB of random bytes ...`);
    const smallFiles = Array.from({ length: WARMUPS + SMALL_RUNS }, (_, i) => {
      const file = join(src, `small-${i}.bin`);
      return { file, sha: makeFile(file, SMALL) };
    });
    const largeFiles = Array.from({ length: LARGE_RUNS }, (_, i) => {
      const file = join(src, `large-${i}.bin`);
      return { file, sha: makeFile(file, LARGE) };
    });
    const warmFiles = smallFiles.slice(0, WARMUPS);
    const timedSmall = smallFiles.slice(WARMUPS);

    // ---- a, b. cp and cp + fsync --------------------------------------------------------------------
    progress('baseline: cp, and cp + sync FILE (fsync of the copy) ...');
    const cpRuns = async (files: { file: string }[], durable: boolean, large: boolean): Promise<Timed> => {
      const seconds: number[] = [];
      for (const [i, f] of files.entries()) {
        const dst = join(scratch, `cp-${i}.bin`);
        if (large) await settle();
        const t0 = performance.now();
        await run('cp', [f.file, dst]);
        if (durable) await run('sync', [dst]);
        seconds.push((performance.now() - t0) / 1000);
        if (statSync(dst).size !== statSync(f.file).size) throw new CorrectnessError(`cp ${f.file}: the copy has the wrong size`);
        rmSync(dst);
      }
      return { seconds };
    };
    await cpRuns(warmFiles, true, false);
    const cp1 = await cpRuns(timedSmall, false, false);
    const cpSync1 = await cpRuns(timedSmall, true, false);
    const cpL = await cpRuns(largeFiles, false, true);
    const cpSyncL = await cpRuns(largeFiles, true, true);
    progress(`  cp ${L}: ${figure(LARGE, cpL).MBps} MB/s; cp + fsync ${L}: ${figure(LARGE, cpSyncL).MBps} MB/s; 1 MiB: ${figure(SMALL, cp1).MBps} / ${figure(SMALL, cpSync1).MBps} MB/s`);

    // ---- the same uploads and downloads against a base URL -----------------------------------------
    interface HttpFigures { up1: Timed; down1: Timed; upL: Timed; downL: Timed; downLNoHash: Timed; large: ReturnType<Sampler['stop']>[] }
    const transfers = async (name: string, urlOf: (key: string) => string, pids: number[], tempest: boolean): Promise<HttpFigures> => {
      const up1: Timed = { seconds: [] };
      const down1: Timed = { seconds: [] };
      for (const [i, f] of smallFiles.entries()) {
        const key = tempest ? `bench/small-${i}` : `small-${i}`;
        const warm = i < WARMUPS;
        const u = await put(urlOf(key), f.file, SMALL, SMALL_TIMEOUT_MS);
        checkPut(`${name} ${key}`, u, f.sha, tempest);
        const d = await get(urlOf(key), SMALL_TIMEOUT_MS);
        checkGet(`${name} ${key}`, d, SMALL, f.sha, tempest);
        if (!warm) {
          up1.seconds.push(u.seconds);
          down1.seconds.push(d.seconds);
        }
      }
      progress(`  ${name} 1 MiB x ${SMALL_RUNS}: upload ${figure(SMALL, up1).MBps} MB/s (median ${figure(SMALL, up1).median_ms} ms), download ${figure(SMALL, down1).MBps} MB/s (median ${figure(SMALL, down1).median_ms} ms)`);
      const upL: Timed = { seconds: [] };
      const downL: Timed = { seconds: [] };
      const downLNoHash: Timed = { seconds: [] };
      const large: ReturnType<Sampler['stop']>[] = [];
      for (const [i, f] of largeFiles.entries()) {
        const key = tempest ? `bench/large-${i}` : `large-${i}`;
        await settle();
        let s = new Sampler(pids);
        const u = await put(urlOf(key), f.file, LARGE, LARGE_TIMEOUT_MS);
        const su = s.stop();
        checkPut(`${name} ${key}`, u, f.sha, tempest);
        s = new Sampler(pids);
        const d = await get(urlOf(key), LARGE_TIMEOUT_MS);
        const sd = s.stop();
        checkGet(`${name} ${key}`, d, LARGE, f.sha, tempest);
        upL.seconds.push(u.seconds);
        downL.seconds.push(d.seconds);
        large.push(su, sd);
        let extra = '';
        if (!tempest) {
          const n = await get(urlOf(key), LARGE_TIMEOUT_MS, false);
          checkGet(`${name} ${key} (no hash)`, n, LARGE, null, false);
          downLNoHash.seconds.push(n.seconds);
          extra = `, without hashing ${round(mbps(LARGE, n.seconds))} MB/s`;
        }
        progress(`  ${name} ${L} run ${i + 1}/${LARGE_RUNS}: upload ${round(mbps(LARGE, u.seconds))} MB/s (${u.seconds.toFixed(2)} s), download ${round(mbps(LARGE, d.seconds))} MB/s (${d.seconds.toFixed(2)} s)${extra}; peak RSS MiB ${su.peak_mib.join(' / ')} up, ${sd.peak_mib.join(' / ')} down; CPU s ${su.cpu_s.join(' / ')} up, ${sd.cpu_s.join(' / ')} down; machine ${su.machine_busy_cores} / ${sd.machine_busy_cores} cores busy`);
      }
      return { up1, down1, upL, downL, downLNoHash, large };
    };

    // ---- c. bare express ---------------------------------------------------------------------------
    progress('baseline: bare express in its own process (PUT pipeline(req, createWriteStream), GET pipeline(createReadStream, res)) ...');
    const bareProc = fork(fileURLToPath(import.meta.url), ['--bare-server', bareDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    bare = bareProc;
    const barePort = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the bare express server did not listen within 15 s')), 15_000);
      bareProc.once('message', (m: { port?: number }) => {
        clearTimeout(t);
        if (m.port) resolve(m.port);
        else reject(new Error('the bare express server did not report a port'));
      });
      bareProc.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`the bare express server exited (${code}) before listening`));
      });
    });
    const bareFig = await transfers('bare express', (k) => `http://127.0.0.1:${barePort}/blob/${k}`, [bareProc.pid!], false);
    bareProc.kill('SIGTERM');
    await Promise.race([new Promise((r) => bareProc.once('exit', r)), sleep(5_000)]);
    bare = null;
    rmSync(bareDir, { recursive: true, force: true });

    // ---- Tempest ------------------------------------------------------------------------------------
    progress('tempest: starting 3 members (1 shard x 3 replicas) ...');
    const prevTmp = process.env.TMPDIR;
    process.env.TMPDIR = root; // the cluster's data dirs under the same root
    try {
      cluster = await StoreCluster.create(3);
    } finally {
      if (prevTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = prevTmp;
    }
    await cluster.startAll(90_000);
    const rootDev = statSync(root).dev;
    const devs = cluster.nodes.map((n) => statSync(n.dataDir).dev);
    const sameDisk = devs.every((d) => d === rootDev);
    if (!sameDisk) progress(`warning: the members' data dirs are not on the root's device (${devs.join(', ')} vs ${rootDev})`);
    const pids = cluster.nodes.map((n) => n.proc!.pid!);
    const c = cluster;
    progress(`tempest: up (pids ${pids.join(', ')}; data under ${c.root}); uploading to and downloading from member 0`);
    const ours = await transfers('tempest', (k) => `${c.url(0)}/v1/blobs/${k}`, pids, true);
    const hwm_mib = pids.map((p) => round(kib(p, 'VmHWM') / 1024));
    const memberWarnings = await cluster.stopChecked();
    cluster = null;

    // ---- report --------------------------------------------------------------------------------------
    const fig = {
      cp: { '1MiB': figure(SMALL, cp1), [L]: figure(LARGE, cpL) },
      cp_fsync: { '1MiB': figure(SMALL, cpSync1), [L]: figure(LARGE, cpSyncL) },
      bare_upload: { '1MiB': figure(SMALL, bareFig.up1), [L]: figure(LARGE, bareFig.upL) },
      bare_download: { '1MiB': figure(SMALL, bareFig.down1), [L]: figure(LARGE, bareFig.downL) },
      bare_download_nohash: { [L]: figure(LARGE, bareFig.downLNoHash) },
      tempest_upload: { '1MiB': figure(SMALL, ours.up1), [L]: figure(LARGE, ours.upL) },
      tempest_download: { '1MiB': figure(SMALL, ours.down1), [L]: figure(LARGE, ours.downL) },
    };
    const M = (x: { MBps: number }) => x.MBps;
    const figures: Record<string, number> = {};
    for (const [name, sizes] of Object.entries(fig)) for (const [size, f] of Object.entries(sizes)) figures[`${name}_${size}`] = M(f);
    const r3 = (x: number) => round(x, 3);
    const ratios: Record<string, number> = {
      [`upload_${L}_vs_cp`]: r3(M(fig.tempest_upload[L]!) / M(fig.cp[L]!)),
      [`download_${L}_vs_bare`]: r3(M(fig.tempest_download[L]!) / M(fig.bare_download[L]!)),
      [`upload_${L}_vs_cp_fsync`]: r3(M(fig.tempest_upload[L]!) / M(fig.cp_fsync[L]!)),
      [`upload_${L}_vs_bare`]: r3(M(fig.tempest_upload[L]!) / M(fig.bare_upload[L]!)),
      [`download_${L}_vs_bare_nohash`]: r3(M(fig.tempest_download[L]!) / M(fig.bare_download_nohash[L]!)),
      download_1MiB_vs_bare: r3(M(fig.tempest_download['1MiB']!) / M(fig.bare_download['1MiB']!)),
      upload_1MiB_vs_bare: r3(M(fig.tempest_upload['1MiB']!) / M(fig.bare_upload['1MiB']!)),
      upload_1MiB_vs_cp_fsync: r3(M(fig.tempest_upload['1MiB']!) / M(fig.cp_fsync['1MiB']!)),
    };
    const goal = (value: number, target: number) => ({ value, target: `>= ${target}`, met: value >= target });
    const goals = {
      [`upload_${L}_vs_cp`]: goal(ratios[`upload_${L}_vs_cp`]!, 0.3),
      [`download_${L}_vs_bare`]: goal(ratios[`download_${L}_vs_bare`]!, 0.5),
    };
    const ups = ours.large.filter((_, i) => i % 2 === 0);
    const downs = ours.large.filter((_, i) => i % 2 === 1);
    const peakOf = (xs: typeof ours.large) => pids.map((_, m) => Math.max(...xs.map((x) => x.peak_mib[m]!)));
    const sumCpu = (xs: typeof ours.large) => pids.map((_, m) => round(xs.reduce((a, x) => a + x.cpu_s[m]!, 0), 2));
    const rss_peak_mib = peakOf(ours.large);
    const summary = {
      bench: 'blob',
      figures,
      ratios,
      goals,
      rss_peak_mib,
      rss: {
        note: `VmRSS sampled every 200 ms during the ${L} transfers; vm_hwm is each member's lifetime peak at the end`,
        members_upload_peak_mib: peakOf(ups),
        members_download_peak_mib: peakOf(downs),
        members_vm_hwm_mib: hwm_mib,
        bare_server_peak_mib: Math.max(...bareFig.large.map((x) => x.peak_mib[0]!)),
        bench_peak_mib: Math.max(...ours.large.map((x) => x.bench_peak_mib), ...bareFig.large.map((x) => x.bench_peak_mib)),
      },
      cpu_s: {
        note: `user + system CPU over all ${LARGE_RUNS} ${L} runs`,
        members_upload: sumCpu(ups),
        members_download: sumCpu(downs),
        bare_server_upload: round(bareFig.large.filter((_, i) => i % 2 === 0).reduce((a, x) => a + x.cpu_s[0]!, 0), 2),
        bare_server_download: round(bareFig.large.filter((_, i) => i % 2 === 1).reduce((a, x) => a + x.cpu_s[0]!, 0), 2),
        machine_busy_cores_tempest_upload: ups.map((x) => x.machine_busy_cores),
        machine_busy_cores_tempest_download: downs.map((x) => x.machine_busy_cores),
        machine_cores: cores,
      },
      details: fig,
      settings: {
        unit: 'MB/s = 10^6 bytes/s; figure = size / median time',
        large_mib: LARGE_MIB,
        large_runs: LARGE_RUNS,
        small_runs: SMALL_RUNS,
        warmups_1MiB: WARMUPS,
        tempest: '3 members, 1 shard x 3 replicas, config/local/node0.ini (block_size 1 MiB chunks, upload_window 8); PUT/GET via member 0',
        client: 'node:http, keep-alive agent, createReadStream(highWaterMark 1 MiB) piped into the PUT; GET body sha256-hashed as it arrives and discarded',
        cp_fsync: 'cp SRC DST && sync DST (coreutils sync with a FILE: fsync of that file), both spawns timed',
        bare_express: 'express 5 in its own process; no fsync; GET without hashing in the client also measured (bare_download_nohash)',
        root,
        device,
        same_disk: sameDisk,
      },
      warnings: memberWarnings.slice(0, 20),
      member_warning_lines: memberWarnings.length,
      wall_s: round((performance.now() - wall0) / 1000, 1),
    };

    const row = (cells: (string | number)[], widths: number[]) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('  ');
    const W = [52, 13, 13, 13];
    const out: string[] = [];
    out.push(`blob benchmark: Tempest 3 members (1 shard x 3 replicas) on 127.0.0.1, all files under ${root} on ${device}`);
    out.push(`MB/s = 10^6 bytes/s = size / median time; 1 MiB x ${SMALL_RUNS} sequential (after ${WARMUPS} warm-ups), ${L} x ${LARGE_RUNS}`);
    out.push('');
    out.push(row(['', '1 MiB MB/s', '(median ms)', `${L} MB/s`], W));
    const line = (label: string, f: Record<string, ReturnType<typeof figure>>) =>
      out.push(row([label, f['1MiB'] ? f['1MiB'].MBps : '-', f['1MiB'] ? f['1MiB'].median_ms : '-', f[L]!.MBps], W));
    line('cp (page cache)', fig.cp);
    line('cp + fsync of the copy', fig.cp_fsync);
    line('bare express upload (no fsync)', fig.bare_upload);
    line('bare express download (sha256 in client)', fig.bare_download);
    line('bare express download (no hash in client)', fig.bare_download_nohash);
    line('tempest upload (member 0; durable on 3 replicas)', fig.tempest_upload);
    line('tempest download (member 0; sha256 in client)', fig.tempest_download);
    out.push('');
    out.push('ratios: ' + Object.entries(ratios).map(([k, v]) => `${k} ${v}`).join(', '));
    out.push('goals: ' + Object.entries(goals).map(([k, g]) => `${k} ${g.value} (${g.target}) ${g.met ? 'met' : 'MISSED'}`).join(', '));
    out.push(`peak RSS MiB during ${L} transfers (members 0 / 1 / 2): upload ${summary.rss.members_upload_peak_mib.join(' / ')}, download ${summary.rss.members_download_peak_mib.join(' / ')}; lifetime VmHWM ${hwm_mib.join(' / ')}; bare server ${summary.rss.bare_server_peak_mib}; this bench ${summary.rss.bench_peak_mib}`);
    out.push(`CPU s over the ${L} runs (members 0 / 1 / 2): upload ${summary.cpu_s.members_upload.join(' / ')}, download ${summary.cpu_s.members_download.join(' / ')}; bare server upload ${summary.cpu_s.bare_server_upload}, download ${summary.cpu_s.bare_server_download}`);
    out.push(`machine busy cores (of ${cores}) during tempest ${L} uploads ${summary.cpu_s.machine_busy_cores_tempest_upload.join(', ')}, downloads ${summary.cpu_s.machine_busy_cores_tempest_download.join(', ')}`);
    if (memberWarnings.length > 0) out.push(`members logged ${memberWarnings.length} warning/error line(s); first: ${memberWarnings[0]}`);
    out.push(JSON.stringify(summary));
    process.stdout.write(`${out.join('\n')}\n`);
  } catch (err) {
    const tail = cluster ? cluster.nodes.map((n) => `--- member ${n.id} (exited: ${n.proc === null}) stderr tail:\n${n.stderr.slice(-2000)}`).join('\n') : '';
    process.stderr.write(`bench:blob failed${err instanceof CorrectnessError ? ' (CORRECTNESS)' : ''}: ${(err as Error).stack ?? err}\n${tail}\n`);
    process.exitCode = 1;
  } finally {
    agent.destroy();
    if (bare) {
      bare.kill('SIGKILL');
      bare = null;
    }
    if (cluster) {
      await cluster.stop().catch(() => {});
      cluster = null;
    }
    rmSync(root, { recursive: true, force: true });
  }
}

function os(): string {
  try {
    const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
    return `node ${process.version}, ${model}`;
  } catch {
    return `node ${process.version}`;
  }
}
