/**
 * Helpers for the file-system acceptance tests (test/fs-*.test.ts): real tools run as child
 * processes with timeouts (cp, dd, rsync, tar, git, ...), a cluster whose member 0 mounts the file
 * system, Prometheus text parsing, generated trees of seeded files, and bounded waits.
 */
import type { TestFn } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync, chmodSync, lutimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededBytes, sleep } from './http-blob.js';
import { forceUnmount, isFuseMounted, waitMounted } from './mount.js';
import { StoreCluster } from './store-cluster.js';
import { Rng } from '../sim/rng.js';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
/** The compiled writer fixture (test/fixtures/fs-writer.ts). */
export const FS_WRITER = path.join(ROOT, 'dist', 'test', 'fixtures', 'fs-writer.js');

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Messages of errno values as the coreutils print them (strerror, glibc). */
export const ERRNO_TEXT = {
  EROFS: 'Read-only file system',
  ENOENT: 'No such file or directory',
  ENOTEMPTY: 'Directory not empty',
  EAGAIN: 'Resource temporarily unavailable',
} as const;

export interface RunResult {
  /** Exit code; null when killed (signal set). */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  cwd?: string;
  timeout_ms?: number;
  env?: Record<string, string>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_BUFFER = 512 * MiB;

function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // C locale: stable messages (strerror texts above), byte-order sorting in ls.
  return { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC', ...extra };
}

/** Runs `cmd args` (no shell), bounded by a timeout; never throws for a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: baseEnv(opts.env), timeout: opts.timeout_ms ?? DEFAULT_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: MAX_BUFFER, encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
      resolve({
        code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
        signal: e?.signal ?? null,
        stdout,
        stderr: e !== null && typeof e.code === 'string' ? `${stderr}${e.message}` : stderr,
        ms: Date.now() - t0,
      });
    });
  });
}

/** Runs `cmd args` and returns stdout; throws (with stderr) unless it exits 0. */
export async function ok(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}, signal ${r.signal}) after ${r.ms} ms: ${r.stderr.slice(0, 2000)}`);
  return r.stdout;
}

/** Runs `cmd args` and returns its stdout as bytes (cat of binary files); throws unless exit 0. */
export function okBytes(cmd: string, args: string[], opts: RunOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: baseEnv(opts.env), timeout: opts.timeout_ms ?? DEFAULT_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: MAX_BUFFER, encoding: 'buffer' }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message} ${stderr.toString().slice(0, 2000)}`));
      else resolve(stdout);
    });
  });
}

/** Rejects with `what` if `p` is not settled within `ms` (so a hung call fails the test, not the run). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every `every_ms` until it returns a non-undefined value or `timeout_ms` pass (then undefined). */
export async function until<T>(timeout_ms: number, check: () => Promise<T | undefined>, every_ms = 200): Promise<T | undefined> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) return undefined;
    await sleep(every_ms);
  }
}

// ---- a cluster with the mount in member 0 --------------------------------------------------------

export interface MountedCluster {
  c: StoreCluster;
  /** The mountpoint (absolute). */
  mnt: string;
  /** A scratch directory on local disk for sources and copies (not under the mount). */
  scratch: string;
  stop(): Promise<void>;
}

/** A cluster of `n` members whose member `mounter` mounts the file system; waits for the mount. */
export async function mountedCluster(n = 3, mounter = 0, overrides: string[] = []): Promise<MountedCluster> {
  const base = mkdtempSync(path.join(tmpdir(), 'tempest-fs-'));
  const mnt = path.join(base, 'mnt');
  const scratch = path.join(base, 'scratch');
  mkdirSync(mnt);
  mkdirSync(scratch);
  const c = await StoreCluster.create(n, { mounts: { [mounter]: mnt }, overrides });
  const stop = async (): Promise<void> => {
    await c.stop();
    forceUnmount(mnt);
    // Never remove through a mount still there (it would delete the store's files, or hang).
    if (!isFuseMounted(mnt)) rmSync(base, { recursive: true, force: true });
  };
  try {
    await c.startAll();
    await waitMounted(mnt, 60_000);
  } catch (err) {
    const tail = c.nodes[mounter]!.stderr.slice(-3000);
    await stop();
    throw new Error(`${String(err)}\nmember ${mounter} stderr tail:\n${tail}`);
  }
  return { c, mnt, scratch, stop };
}

/** A standalone `tempest mount <dir> --connect 127.0.0.1:<port>` process. */
export interface ClientMount {
  proc: ChildProcess;
  dir: string;
  stderr(): string;
  /**
   * SIGTERM, then SIGKILL after 15 s; then unmounts whatever is left. The exit code (null if
   * killed), and whether the directory was still mounted once the process had exited.
   */
  stop(): Promise<{ code: number | null; signal: string | null; mountedAfterExit: boolean }>;
}

export async function clientMount(dir: string, external_port: number, timeout_ms = 60_000): Promise<ClientMount> {
  const proc = spawn(process.execPath, [BIN, 'mount', dir, '--connect', `127.0.0.1:${external_port}`], {
    env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: process.env.TEMPEST_LOG_LEVEL ?? 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => {
    err = (err + b.toString()).slice(-20_000);
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const m: ClientMount = {
    proc,
    dir,
    stderr: () => err,
    stop: async () => {
      if (!done) proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const first = await Promise.race([exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), 15_000)))]);
      clearTimeout(timer);
      if (first === null) {
        proc.kill('SIGKILL');
        await within(exited, 10_000, 'tempest mount exit after SIGKILL').catch(() => {});
      }
      const mountedAfterExit = isFuseMounted(dir);
      forceUnmount(dir);
      return { ...(first ?? { code: null, signal: 'SIGKILL' }), mountedAfterExit };
    },
  };
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    if (isFuseMounted(dir)) {
      await waitMounted(dir, Math.max(1000, deadline - Date.now()));
      return m;
    }
    if (done || Date.now() > deadline) {
      await m.stop();
      throw new Error(`tempest mount ${dir} ${done ? "exited before mounting" : `did not mount within ${timeout_ms} ms`}; stderr tail:\n${err.slice(-3000)}`);
    }
    await sleep(100);
  }
}

// ---- HTTP and metrics ---------------------------------------------------------------------------

export const HTTP_TIMEOUT_MS = 30_000;

/** GET of a whole body as bytes (status and the body, which is empty for errors not read). */
export async function httpGet(url: string, timeout_ms = HTTP_TIMEOUT_MS): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeout_ms) });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

export async function httpPut(url: string, body: Uint8Array | string, timeout_ms = HTTP_TIMEOUT_MS): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url, { method: 'PUT', body, signal: AbortSignal.timeout(timeout_ms) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { text };
  }
  return { status: r.status, json };
}

/** Every key under `prefix` as of now (all pages). */
export async function listKeys(url: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const q = new URLSearchParams({ prefix, limit: '1000', ...(after === null ? {} : { after }) });
    const r = await fetch(`${url}/v1/blobs?${q}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (r.status !== 200) throw new Error(`list ${prefix}: ${r.status} ${await r.text()}`);
    const page = (await r.json()) as { entries: { key: string }[]; next_after: string | null };
    out.push(...page.entries.map((e) => e.key));
    after = page.next_after;
    if (after === null) return out;
  }
  throw new Error(`list ${prefix}: more than 100 pages`);
}

export async function scrape(url: string): Promise<string> {
  const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`/metrics: ${r.status} ${text.slice(0, 500)}`);
  return text;
}

/**
 * The value of metric `name` with exactly these labels (order-free) in Prometheus text, or
 * undefined when absent.
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = (m[2] ?? '')
      .split(/,(?=[a-zA-Z_][a-zA-Z0-9_]*=")/)
      .filter((s) => s !== '')
      .sort()
      .join(',');
    if (got === want) return Number(m[3]);
  }
  return undefined;
}

/** The store's chunk size (GET /v1/cluster). */
export async function chunkSize(url: string): Promise<number> {
  const r = await fetch(`${url}/v1/cluster`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  const j = (await r.json()) as { store: { chunk_size_bytes: number } };
  return j.store.chunk_size_bytes;
}

// ---- generated trees ----------------------------------------------------------------------------

export interface TreeEntry {
  /** Path relative to the tree root. */
  rel: string;
  kind: 'file' | 'dir' | 'symlink';
  size: number;
  mode: number;
  seed: string;
  /** For symlinks. */
  target?: string;
}

/** The bytes of seededBytes(seed, size) as one buffer. */
export function seeded(seed: string, size: number): Buffer {
  return size === 0 ? Buffer.alloc(0) : Buffer.concat([...seededBytes(seed, size)]);
}

export interface TreeSpec {
  seed: number;
  files: number;
  /** Files of 1..3 MiB among them. */
  big: number;
  /** Directory fan-out per level and levels below the root. */
  fanout: number;
  levels: number;
  /** Set fixed past mtimes (files, dirs, links) when true. */
  mtimes?: boolean;
}

/**
 * Writes a deterministic tree under `root` (which must not exist): `spec.files` files of mixed
 * sizes (0 bytes, a few bytes, ~100 KiB, `big` of 1-3 MiB) over several directory levels, with
 * modes 0644/0755/0600, and two symlinks (to a file and to a directory). Returns what it wrote.
 */
export function makeTree(root: string, spec: TreeSpec): TreeEntry[] {
  const rng = new Rng(spec.seed);
  const entries: TreeEntry[] = [];
  const dirs: string[] = [''];
  const grow = (prefix: string, level: number): void => {
    if (level === spec.levels) return;
    for (let i = 0; i < spec.fanout; i++) {
      const rel = path.join(prefix, `d${level}-${i}`);
      dirs.push(rel);
      grow(rel, level + 1);
    }
  };
  grow('', 0);
  mkdirSync(root, { recursive: true });
  for (const d of dirs.slice(1)) {
    mkdirSync(path.join(root, d), { recursive: true });
    entries.push({ rel: d, kind: 'dir', size: 0, mode: 0o755, seed: '' });
  }
  const bigAt = new Set<number>();
  while (bigAt.size < Math.min(spec.big, spec.files)) bigAt.add(rng.int(0, spec.files - 1));
  const modes = [0o644, 0o644, 0o644, 0o755, 0o600];
  for (let i = 0; i < spec.files; i++) {
    const dir = dirs[rng.int(0, dirs.length - 1)]!;
    const rel = path.join(dir, `f${String(i).padStart(4, '0')}${rng.pick(['', '.txt', '.bin', '.tar.gz', ' with space'])}`);
    const kind = i % 10;
    const size = bigAt.has(i) ? rng.int(MiB, 3 * MiB) : kind === 0 ? 0 : kind <= 5 ? rng.int(1, 64) : rng.int(80 * KiB, 120 * KiB);
    const seed = `${spec.seed}/${rel}`;
    const mode = rng.pick(modes);
    writeFileSync(path.join(root, rel), seeded(seed, size));
    chmodSync(path.join(root, rel), mode);
    entries.push({ rel, kind: 'file', size, mode, seed });
  }
  const firstFile = entries.find((e) => e.kind === 'file' && e.rel.includes(path.sep))!;
  const links: [string, string][] = [
    ['link-to-file', firstFile.rel],
    [path.join(dirs[1]!, 'link-to-dir'), path.relative(dirs[1]!, dirs[dirs.length - 1]!)],
  ];
  for (const [rel, target] of links) {
    symlinkSync(target, path.join(root, rel));
    entries.push({ rel, kind: 'symlink', size: 0, mode: 0o777, seed: '', target });
  }
  if (spec.mtimes === true) {
    // Distinct whole-second past times; directories last (writing into them changes theirs).
    const base = Date.UTC(2021, 0, 2, 3, 4, 5) / 1000;
    entries.forEach((e, i) => {
      const at = base + i * 61;
      if (e.kind === 'symlink') lutimesSync(path.join(root, e.rel), at, at);
      else if (e.kind === 'file') utimesSync(path.join(root, e.rel), at, at);
    });
    const ds = entries.filter((e) => e.kind === 'dir').reverse();
    ds.forEach((e, i) => utimesSync(path.join(root, e.rel), base - i * 3600, base - i * 3600));
    utimesSync(root, base - 10 * 86_400, base - 10 * 86_400);
  }
  return entries;
}

/** One mounted cluster shared by a file's serial tests: started before them, stopped after. */
export interface SharedMount {
  /** The cluster (after test.before has run). */
  cluster(): MountedCluster;
  /** A path in the mount. */
  mnt(...p: string[]): string;
  /** A path in the scratch directory on local disk. */
  local(...p: string[]): string;
}

export function sharedMountedCluster(test: TestFn, n = 3, mounter = 0): SharedMount {
  let m: MountedCluster | undefined;
  test.before(async () => {
    m = await mountedCluster(n, mounter);
  });
  test.after.always(async () => {
    await m?.stop();
  });
  const cluster = (): MountedCluster => {
    if (m === undefined) throw new Error('the shared cluster is not started (test.before failed?)');
    return m;
  };
  return {
    cluster,
    mnt: (...p) => path.join(cluster().mnt, ...p),
    local: (...p) => path.join(cluster().scratch, ...p),
  };
}
