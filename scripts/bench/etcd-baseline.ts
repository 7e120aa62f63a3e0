/**
 * etcd as a baseline for Tempest's durable-update benchmarks: find (or install) the etcd binary,
 * run a static 3-member etcd cluster on 127.0.0.1 with etcd's default durability (every entry is
 * in an fsynced WAL on a quorum before a put is acknowledged), and drive a closed-loop 1 KiB put
 * load, recording the latency of every put. The load's client is by default a minimal gRPC KV.Put
 * over node:http2 (RawPutConnection): the client shares the 2 cores with the 3 members, and the
 * etcd3 package (@grpc/grpc-js) costs twice the CPU per put; etcd3 does the status calls, and can
 * drive the load too (client: 'etcd3').
 *
 *   ensureEtcd()            -> path of the etcd binary (Debian bookworm: etcd-server 3.4)
 *   startEtcdCluster(opts)  -> { endpoints, pids, stop() }
 *   runEtcdPutLoad(opts)    -> { ops, rate_per_s, p50_ms, p99_ms, mean_ms, ... }
 *
 * The cluster never uses etcd's well-known ports 2379/2380 nor Debian's /var/lib/etcd: ports come
 * from base_port and data dirs from opts.dir, and ETCD_* variables are scrubbed from the members'
 * environment so that nothing from /etc/default/etcd or the caller's shell changes the flags.
 * See scripts/bench/etcd-run.ts for a standalone runner.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Etcd3, IOptions } from 'etcd3';
import { TempestError } from '../../engine/util/errors.js';
import { LatencyRecorder } from '../lib/latency.js';
import { prng } from '../lib/prng.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const DEBIAN_ETCD = '/usr/bin/etcd';
/** etcd's well-known client and peer ports, which a system etcd (Debian's service) would use. */
const RESERVED_PORTS = new Set([2379, 2380]);

// ---- the binary -------------------------------------------------------------------------------------

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The etcd binary: /usr/bin/etcd (Debian's etcd-server), else the first `etcd` on PATH; null if none. */
export function findEtcd(): string | null {
  if (isExecutable(DEBIAN_ETCD)) return DEBIAN_ETCD;
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d === '') continue;
    const f = join(d, 'etcd');
    if (isExecutable(f)) return f;
  }
  return null;
}

/** `etcd --version` of `bin`, e.g. "3.4.23" (null when it cannot be read). */
export function etcdVersion(bin: string): string | null {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000, env: scrubbedEnv() });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** PIDs of running processes whose executable is called etcd (from /proc). */
function etcdPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const comm = readFileSync(`/proc/${name}/comm`, 'utf8').trim();
      let exe = '';
      try {
        exe = readlinkSync(`/proc/${name}/exe`);
      } catch {
        // not ours to read, or gone
      }
      if (comm === 'etcd' || exe.endsWith('/etcd')) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function aptGet(args: string[]): { ok: boolean; output: string } {
  try {
    const out = execFileSync('apt-get', args, {
      encoding: 'utf8',
      timeout: 600_000,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    return { ok: true, output: out };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
  }
}

/**
 * Path of the etcd binary. When there is none and we are root, installs Debian's etcd-server
 * (apt-get install -y; apt-get update first only when the install fails for lack of package lists)
 * and makes sure the package left no etcd daemon running (systemd unit disabled and stopped where
 * systemd runs; any etcd process that appeared during the install is terminated). Not root: throws
 * ETCD_NOT_INSTALLED naming the command to run.
 */
export function ensureEtcd(log: (line: string) => void = (l) => process.stderr.write(`etcd-baseline  ${l}\n`)): string {
  const found = findEtcd();
  if (found) return found;
  const install = 'sudo DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new TempestError(
      'ETCD_NOT_INSTALLED',
      `etcd is not installed (no ${DEBIAN_ETCD}, no etcd on PATH). Install it with:\n  ${install}\n` +
        '(Debian bookworm ships etcd 3.4 in the etcd-server package; run "sudo apt-get update" first if apt cannot find it.)',
    );
  }
  const before = new Set(etcdPids());
  log('etcd not found; installing Debian package etcd-server (apt-get install -y etcd-server)');
  let r = aptGet(['install', '-y', 'etcd-server']);
  if (!r.ok && /Unable to locate package|has no installation candidate|Failed to fetch|404\s+Not Found/i.test(r.output)) {
    log('apt-get install failed for lack of package lists; running apt-get update and retrying');
    const u = aptGet(['update']);
    if (!u.ok) throw new TempestError('ETCD_INSTALL_FAILED', `apt-get update failed:\n${u.output.slice(-3000)}`);
    r = aptGet(['install', '-y', 'etcd-server']);
  }
  if (!r.ok) throw new TempestError('ETCD_INSTALL_FAILED', `apt-get install -y etcd-server failed:\n${r.output.slice(-3000)}`);

  // The package ships etcd.service; under systemd its postinst may have started it on 2379/2380.
  if (existsSync('/run/systemd/system')) {
    try {
      execFileSync('systemctl', ['disable', '--now', 'etcd.service'], { stdio: 'ignore', timeout: 60_000 });
      log('disabled and stopped the package\'s etcd.service');
    } catch {
      // no such unit, or systemctl unavailable: the process check below still applies
    }
  }
  const started = etcdPids().filter((p) => !before.has(p));
  for (const p of started) {
    log(`stopping etcd pid ${p}, started by the package install`);
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      // gone
    }
  }
  const until = Date.now() + 5_000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (started.some(alive) && Date.now() < until) Atomics.wait(nap, 0, 0, 100);
  for (const p of started.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }

  const bin = findEtcd();
  if (!bin) throw new TempestError('ETCD_INSTALL_FAILED', `apt-get install -y etcd-server succeeded but there is no ${DEBIAN_ETCD}`);
  log(`installed ${bin} (etcd ${etcdVersion(bin) ?? '?'})`);
  return bin;
}

// ---- the cluster ------------------------------------------------------------------------------------

/** The caller's environment without ETCD_* variables (etcd reads every flag from ETCD_<FLAG> too). */
function scrubbedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD_')) env[k] = v;
  return env;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function tail(file: string, chars = 3000): string {
  try {
    const t = readFileSync(file, 'utf8');
    return t.slice(-chars);
  } catch {
    return '(no log)';
  }
}

export interface EtcdClusterOptions {
  /** Directory for the members' data dirs (<dir>/m<i>.etcd, which must not exist yet) and logs (<dir>/m<i>.log). */
  dir: string;
  /** Member i listens for clients on base_port + 2i and for peers on base_port + 2i + 1. */
  base_port: number;
  /** Default 3. */
  members?: number;
  log?: (line: string) => void;
  /** The etcd binary; default ensureEtcd(). */
  bin?: string;
  /** Bound on waiting for a leader and a first successful put; default 30 s. */
  ready_timeout_ms?: number;
  /** Default 8 GiB (etcd's default 2 GiB fills in ~10 min of un-compacted 1 KiB puts at a few thousand/s). */
  quota_backend_bytes?: number;
  /** Default: etcd's own (100,000 in 3.4). */
  snapshot_count?: number;
  /** How long stop() waits after SIGTERM before SIGKILL; default 2 s. */
  stop_grace_ms?: number;
  /** More etcd flags, appended to every member's command line. */
  extra_args?: string[];
  /** More environment variables for the members (e.g. GOMAXPROCS); ETCD_* from our own environment are never passed. */
  env?: Record<string, string>;
}

export interface EtcdCluster {
  /** Client URLs, http://127.0.0.1:<port>. */
  endpoints: string[];
  pids: number[];
  bin: string;
  version: string | null;
  /** Each member's full command line (argv without the binary). */
  args: string[][];
  logs: string[];
  /** SIGTERM to every member (SIGKILL after stop_grace_ms), then removes the data dirs. Idempotent. */
  stop(): Promise<void>;
}

type EtcdModule = typeof import('etcd3');
let etcd3Module: Promise<EtcdModule> | null = null;
function loadEtcd3(): Promise<EtcdModule> {
  etcd3Module ??= import('etcd3').catch((err: unknown) => {
    etcd3Module = null;
    throw new TempestError('ETCD_CLIENT_MISSING', `cannot load the npm package etcd3 (a devDependency; run npm install): ${(err as Error).message}`, { cause: err });
  });
  return etcd3Module;
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
/** A policy that runs the call once: no retries, no circuit breaker (errors are counted, not hidden). */
const ONCE = { execute: <T>(fn: (ctx: { signal: AbortSignal; attempt: number }) => T) => Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 0 })) } as unknown as Policy;

/** A client of one endpoint on its own TCP connection (grpc-js shares subchannels across clients unless told not to). */
async function newClient(endpoint: string): Promise<Etcd3> {
  const { Etcd3 } = await loadEtcd3();
  return new Etcd3({
    hosts: [endpoint],
    dialTimeout: 5_000,
    grpcOptions: { 'grpc.use_local_subchannel_pool': 1 },
    faultHandling: { host: () => ONCE, global: ONCE },
  });
}

/**
 * Starts a static-bootstrap etcd cluster on 127.0.0.1 and waits (bounded) until every member
 * reports the same leader and a put through member 0 succeeds.
 */
export async function startEtcdCluster(opts: EtcdClusterOptions): Promise<EtcdCluster> {
  const n = opts.members ?? 3;
  const log = opts.log ?? (() => {});
  const readyTimeout = opts.ready_timeout_ms ?? 30_000;
  const stopGraceMs = opts.stop_grace_ms ?? 2_000;
  if (!Number.isInteger(n) || n < 1) throw new TempestError('ETCD_BAD_OPTIONS', `members must be a positive integer, got ${n}`);
  if (!Number.isInteger(opts.base_port) || opts.base_port < 1024 || opts.base_port + 2 * n - 1 > 65535) {
    throw new TempestError('ETCD_BAD_OPTIONS', `base_port must be an integer with base_port..base_port+${2 * n - 1} in 1024..65535, got ${opts.base_port}`);
  }
  const bin = opts.bin ?? ensureEtcd(log);
  const version = etcdVersion(bin);

  const clientPort = (i: number) => opts.base_port + 2 * i;
  const peerPort = (i: number) => opts.base_port + 2 * i + 1;
  for (let i = 0; i < n; i++) {
    for (const [kind, p] of [['client', clientPort(i)], ['peer', peerPort(i)]] as const) {
      if (RESERVED_PORTS.has(p)) {
        throw new TempestError('ETCD_BAD_OPTIONS', `member m${i}'s ${kind} port would be ${p}, one of etcd's well-known ports 2379/2380 (a system etcd's); choose another base_port`);
      }
      if (!(await portFree(p))) {
        throw new TempestError('ETCD_PORT_IN_USE', `port ${p} on 127.0.0.1 (member m${i}'s ${kind} port: base_port ${opts.base_port} + ${p - opts.base_port}) is already in use; choose another base_port`);
      }
    }
  }

  mkdirSync(opts.dir, { recursive: true });
  const dataDirs = Array.from({ length: n }, (_, i) => join(opts.dir, `m${i}.etcd`));
  for (const d of dataDirs) {
    if (existsSync(d)) throw new TempestError('ETCD_DATA_DIR_EXISTS', `${d} already exists; startEtcdCluster wants a fresh data dir (remove it or use another dir)`);
  }
  const logs = Array.from({ length: n }, (_, i) => join(opts.dir, `m${i}.log`));
  const token = `tempest-bench-${opts.base_port}-${randomBytes(4).toString('hex')}`;
  const initialCluster = Array.from({ length: n }, (_, i) => `m${i}=http://127.0.0.1:${peerPort(i)}`).join(',');
  const args = Array.from({ length: n }, (_, i) => [
    `--name=m${i}`,
    `--data-dir=${dataDirs[i]!}`,
    `--listen-client-urls=http://127.0.0.1:${clientPort(i)}`,
    `--advertise-client-urls=http://127.0.0.1:${clientPort(i)}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort(i)}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort(i)}`,
    `--initial-cluster=${initialCluster}`,
    '--initial-cluster-state=new',
    `--initial-cluster-token=${token}`,
    `--quota-backend-bytes=${opts.quota_backend_bytes ?? 8 * 1024 ** 3}`,
    ...(opts.snapshot_count !== undefined ? [`--snapshot-count=${opts.snapshot_count}`] : []),
    '--logger=zap',
    '--log-outputs=stderr',
    ...(opts.extra_args ?? []),
  ]);

  const children: ChildProcess[] = [];
  const killNow = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  };
  process.on('exit', killNow);

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
      const exited = running.map((c) => new Promise<void>((r) => c.once('exit', () => r())));
      for (const c of running) {
        try {
          process.kill(c.pid!, 'SIGTERM');
        } catch {
          // gone
        }
      }
      const all = Promise.all(exited);
      // The leader spends up to 7 s trying to hand leadership to followers that are shutting down
      // too, so a short bound: nothing of a benchmark cluster needs a clean shutdown.
      const graceful = await Promise.race([all.then(() => true), sleep(stopGraceMs).then(() => false)]);
      if (!graceful) {
        log(`etcd members still running ${stopGraceMs} ms after SIGTERM (the leader's shutdown waits for a leadership transfer); SIGKILL`);
        killNow();
        await Promise.race([all, sleep(5_000)]);
      }
      process.off('exit', killNow);
      for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
    })();
    return stopped;
  };

  try {
    for (let i = 0; i < n; i++) {
      const fd = openSync(logs[i]!, 'a');
      try {
        const c = spawn(bin, args[i]!, { stdio: ['ignore', fd, fd], env: { ...scrubbedEnv(), ...opts.env } });
        c.on('error', () => {}); // reported through the exit check below
        children.push(c);
        if (c.pid === undefined) throw new TempestError('ETCD_START_FAILED', `could not start ${bin} for member m${i}`);
      } finally {
        closeSync(fd);
      }
    }
    const endpoints = Array.from({ length: n }, (_, i) => `http://127.0.0.1:${clientPort(i)}`);
    log(`started etcd ${version ?? '?'} x${n}: pids ${children.map((c) => c.pid).join(' ')}, clients ${endpoints.join(' ')}, logs in ${opts.dir}`);
    await waitReady(endpoints, children, logs, readyTimeout);
    log('etcd cluster has a leader and accepts puts');
    return { endpoints, pids: children.map((c) => c.pid!), bin, version, args, logs, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitReady(endpoints: string[], children: ChildProcess[], logs: string[], timeout_ms: number): Promise<void> {
  const clients = await Promise.all(endpoints.map((e) => newClient(e)));
  const deadline = Date.now() + timeout_ms;
  let last = 'no answer yet';
  try {
    for (;;) {
      children.forEach((c, i) => {
        if (c.exitCode !== null || c.signalCode !== null) {
          throw new TempestError('ETCD_START_FAILED', `etcd member m${i} (pid ${c.pid}) exited (code ${c.exitCode}, signal ${c.signalCode}) during startup; log ${logs[i]} ends:\n${tail(logs[i]!)}`);
        }
      });
      try {
        const callDeadline = () => ({ deadline: Date.now() + 1_000 });
        const st = await Promise.all(clients.map((c) => c.maintenance.status(callDeadline())));
        const leaders = new Set(st.map((s) => s.leader));
        if (leaders.size === 1 && !leaders.has('0')) {
          await clients[0]!.kv.put({ key: Buffer.from('__tempest_ready'), value: Buffer.from(String(Date.now())) }, { deadline: Date.now() + 2_000 });
          return;
        }
        last = `leaders reported: ${[...leaders].join(', ')}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new TempestError('ETCD_START_TIMEOUT', `etcd cluster not ready within ${timeout_ms} ms (last: ${last}); log ${logs[0]} ends:\n${tail(logs[0]!)}`);
      }
      await sleep(100);
    }
  } finally {
    for (const c of clients) c.close();
  }
}

/** The client URL of the current leader among `endpoints` (by Maintenance.Status). */
export async function etcdLeaderEndpoint(endpoints: string[]): Promise<string> {
  const clients = await Promise.all(endpoints.map((e) => newClient(e)));
  try {
    const st = await Promise.all(clients.map((c) => c.maintenance.status({ deadline: Date.now() + 5_000 })));
    const i = st.findIndex((x) => x.leader !== '0' && x.header.member_id === x.leader);
    if (i < 0) throw new TempestError('ETCD_NO_LEADER', `none of ${endpoints.join(' ')} is the leader`);
    return endpoints[i]!;
  } finally {
    for (const c of clients) c.close();
  }
}

// ---- a minimal gRPC KV.Put client on node:http2 ------------------------------------------------------

/** Appends the protobuf varint of n (< 2^31) at buf[o], returns the new offset. */
function putVarint(buf: Buffer, o: number, n: number): number {
  while (n > 127) {
    buf[o++] = (n & 127) | 128;
    n >>>= 7;
  }
  buf[o++] = n;
  return o;
}
const varintLen = (n: number) => (n < 1 << 7 ? 1 : n < 1 << 14 ? 2 : n < 1 << 21 ? 3 : n < 1 << 28 ? 4 : 5);

/** A gRPC length-prefixed etcdserverpb.PutRequest { key = 1; value = 2 } (nothing else set). */
export function encodePutRequest(key: Buffer, value: Buffer): Buffer {
  const len = 1 + varintLen(key.length) + key.length + 1 + varintLen(value.length) + value.length;
  const buf = Buffer.allocUnsafe(5 + len);
  buf[0] = 0; // not compressed
  buf.writeUInt32BE(len, 1);
  let o = 5;
  buf[o++] = 0x0a; // field 1, length-delimited
  o = putVarint(buf, o, key.length);
  o += key.copy(buf, o);
  buf[o++] = 0x12; // field 2, length-delimited
  o = putVarint(buf, o, value.length);
  value.copy(buf, o);
  return buf;
}

/**
 * etcd's KV.Put as a bare gRPC call on one HTTP/2 connection (node:http2): the request is encoded
 * by hand and the response is judged by grpc-status alone, so a put costs the client about half
 * the CPU of @grpc/grpc-js through etcd3 (measured on this 2-core machine: ~170 vs ~400 µs), CPU
 * the etcd members share. A broken session is replaced on the next put.
 */
export class RawPutConnection {
  private session: ClientHttp2Session | null = null;
  private readonly headers: Record<string, string>;

  constructor(
    readonly endpoint: string,
    timeout_ms = 10_000,
  ) {
    this.headers = {
      ':method': 'POST',
      ':path': '/etcdserverpb.KV/Put',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.ceil(timeout_ms))}m`,
    };
  }

  private connect(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = http2Connect(this.endpoint);
    s.on('error', () => {}); // the streams in flight fail with it
    s.on('close', () => {
      if (this.session === s) this.session = null;
    });
    this.session = s;
    return s;
  }

  /** Sends one put; `onStream` gets the stream (for the caller's watchdog). */
  put(frame: Buffer, onStream?: (s: ClientHttp2Stream) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      let req: ClientHttp2Stream;
      try {
        req = this.connect().request(this.headers);
      } catch (err) {
        reject(err as Error);
        return;
      }
      onStream?.(req);
      let status: string | undefined;
      let message: string | undefined;
      let failed: Error | null = null;
      const take = (h: Record<string, unknown>) => {
        if (h['grpc-status'] !== undefined) {
          status = String(h['grpc-status']);
          message = h['grpc-message'] === undefined ? undefined : decodeURIComponent(String(h['grpc-message']));
        }
      };
      req.on('response', take);
      req.on('trailers', take);
      req.on('error', (err) => (failed = err));
      req.on('close', () => {
        if (status === '0') resolve();
        else if (status !== undefined) reject(new TempestError('ETCD_PUT_FAILED', `etcd put: grpc-status ${status}${message ? ` (${message})` : ''}`));
        else reject(failed ?? new TempestError('ETCD_PUT_FAILED', `etcd put: stream closed without a gRPC status (HTTP/2 code ${req.rstCode})`));
      });
      req.resume();
      req.end(frame);
    });
  }

  close(): void {
    this.session?.close();
    this.session = null;
  }
}

// ---- the load ---------------------------------------------------------------------------------------

export interface EtcdPutLoadOptions {
  endpoints: string[];
  /** Value size in bytes (1024 for the 1 KiB benchmark). */
  value_bytes: number;
  /** Puts outstanding at all times (closed loop). */
  concurrency: number;
  warmup_ms: number;
  duration_ms: number;
  /** Keys are drawn uniformly from this many (default 100,000). */
  keys?: number;
  /** Connections (HTTP/2, each its own TCP connection) per endpoint; default 2. Puts take the connections in turn. */
  clients_per_endpoint?: number;
  /** PRNG seed for key choice (default 1). */
  seed?: number;
  /** etcd member PIDs, for CPU accounting during the measured interval. */
  pids?: number[];
  /** Deadline of one put; default 10 s. */
  put_timeout_ms?: number;
  /**
   * 'http2' (default): RawPutConnection, a minimal gRPC client on node:http2; 'etcd3': the etcd3
   * package (@grpc/grpc-js), about twice the client CPU per put.
   */
  client?: 'http2' | 'etcd3';
}

export interface EtcdPutLoadResult {
  /** Puts acknowledged during the measured interval (after the warm-up). */
  ops: number;
  rate_per_s: number;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  p90_ms: number;
  p999_ms: number;
  max_ms: number;
  /** Failed puts (whole run, warm-up included) and the first failure's message. */
  errors: number;
  first_error: string | null;
  concurrency: number;
  clients: number;
  client_kind: 'http2' | 'etcd3';
  measured_s: number;
  /**
   * CPU used during the measured interval, in cores (1 = one core busy all the time): this process
   * (the client), each etcd member, and the whole machine: busy = user + system + irq + steal,
   * where system and irq (softirq: loopback TCP) include kernel work no process is charged for.
   */
  cpu_cores: {
    client: number;
    etcd: number[] | null;
    machine_busy: number;
    machine: { user: number; system: number; irq: number; steal: number };
    machine_cores: number;
    /**
     * machine_busy - client - etcd: kernel work charged to no process, plus every other process on
     * the machine. More than a few tenths of a core means something else competed for the CPU.
     */
    other: number;
  };
  /** Raft term at member 0 before and after the run: a change means a leader election happened. */
  raft_term: { before: number; after: number };
  /**
   * Check that acknowledged puts were applied: puts acknowledged in the whole run (warm-up
   * included) and the growth of etcd's store revision over the run (each put adds one).
   */
  acked_total: number;
  revision_delta: number;
  /** Member 0's backend (bbolt) file size after the run, bytes: history is never compacted, so it only grows. */
  db_size_bytes: number;
}

/** CPU seconds (user + system) a process has used, from /proc (NaN when gone). */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in USER_HZ (100)
  } catch {
    return Number.NaN;
  }
}

/** Machine-wide CPU jiffies from /proc/stat (user includes nice, idle includes iowait), and the number of CPUs. */
export function machineCpu(): { total: number; idle: number; user: number; system: number; irq: number; steal: number; cpus: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const f = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  const at = (i: number) => f[i] ?? 0;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return {
    total,
    idle: at(3) + at(4),
    user: at(0) + at(1),
    system: at(2),
    irq: at(5) + at(6),
    steal: at(7),
    cpus: lines.filter((l) => /^cpu\d+ /.test(l)).length,
  };
}

/**
 * A closed loop of `concurrency` puts of random `value_bytes`-byte values to keys drawn uniformly
 * from `keys`, spread over clients_per_endpoint gRPC connections to each endpoint (a put sent to a
 * follower is forwarded to the leader by etcd, as with etcd's own benchmark tool and clientv3's
 * round-robin balancer). Puts are not retried: a failure is counted and the worker goes on.
 * Latency is recorded for every put that completes within the measured interval.
 */
export async function runEtcdPutLoad(opts: EtcdPutLoadOptions): Promise<EtcdPutLoadResult> {
  const keys = opts.keys ?? 100_000;
  const perEndpoint = opts.clients_per_endpoint ?? 2;
  const timeout = opts.put_timeout_ms ?? 10_000;
  if (opts.endpoints.length === 0) throw new TempestError('ETCD_BAD_OPTIONS', 'runEtcdPutLoad needs at least one endpoint');
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new TempestError('ETCD_BAD_OPTIONS', `concurrency must be a positive integer, got ${opts.concurrency}`);
  if (!Number.isInteger(keys) || keys < 1) throw new TempestError('ETCD_BAD_OPTIONS', `keys must be a positive integer, got ${keys}`);
  if (!Number.isInteger(opts.value_bytes) || opts.value_bytes < 0) throw new TempestError('ETCD_BAD_OPTIONS', `value_bytes must be a non-negative integer, got ${opts.value_bytes}`);

  const kind = opts.client ?? 'http2';
  const nclients = perEndpoint * opts.endpoints.length;
  const endpointOf = (k: number) => opts.endpoints[k % opts.endpoints.length]!;
  const status = await newClient(opts.endpoints[0]!); // raft term before and after
  const etcd3s: Etcd3[] = [];
  const raws: RawPutConnection[] = [];
  if (kind === 'etcd3') for (let k = 0; k < nclients; k++) etcd3s.push(await newClient(endpointOf(k)));
  else for (let k = 0; k < nclients; k++) raws.push(new RawPutConnection(endpointOf(k), timeout));
  try {
    const st0 = await status.maintenance.status({ deadline: Date.now() + 10_000 });
    const termBefore = Number(st0.raftTerm);
    // Connect every client before the clock starts (a put of the warm-up key through each).
    const warmKey = Buffer.from('__tempest_warm');
    if (kind === 'etcd3') await Promise.all(etcd3s.map((c) => c.kv.put({ key: warmKey, value: Buffer.alloc(0) }, { deadline: Date.now() + 10_000 })));
    else await Promise.all(raws.map((c) => c.put(encodePutRequest(warmKey, Buffer.alloc(0)))));
    const revision0 = Number((await status.maintenance.status({ deadline: Date.now() + 10_000 })).header.revision);

    const keyBufs = Array.from({ length: keys }, (_, i) => Buffer.from(`k${i.toString().padStart(Math.max(8, String(keys - 1).length), '0')}`));
    // Values are slices of a random pool at random offsets: distinct enough (etcd does not
    // compress), and no per-put randomBytes on the client's CPU.
    const pool = randomFillSync(Buffer.alloc(opts.value_bytes + 64 * 1024));
    const rand = prng(opts.seed ?? 1);
    const rec = new LatencyRecorder(1 << 18);
    let ops = 0;
    let acked = 0;
    let errors = 0;
    let firstError: string | null = null;

    const t0 = performance.now();
    const measureStart = t0 + opts.warmup_ms;
    const end = measureStart + opts.duration_ms;
    const snap = () => ({ client: process.cpuUsage(), etcd: (opts.pids ?? []).map(procCpuSeconds), machine: machineCpu(), t: performance.now() });
    const marks: { a?: ReturnType<typeof snap>; b?: ReturnType<typeof snap> } = {};
    const startTimer = setTimeout(() => (marks.a = snap()), opts.warmup_ms);
    const endTimer = setTimeout(() => (marks.b = snap()), opts.warmup_ms + opts.duration_ms);

    // Watchdog for the raw client: a put whose server never answers (grpc-timeout is the server's
    // side of the deadline) is cancelled 1 s after its deadline.
    const inflight: ({ stream: ClientHttp2Stream; since: number } | null)[] = Array.from({ length: opts.concurrency }, () => null);
    const watchdog = setInterval(() => {
      const now = performance.now();
      for (const f of inflight) if (f && now - f.since > timeout + 1_000 && !f.stream.closed) f.stream.close();
    }, 1_000);
    watchdog.unref();
    // Each put goes to the next connection in turn, as clientv3's round-robin balancer does with
    // all endpoints configured: about 1 put in 3 lands on the leader, the others are forwarded.
    let next = 0;
    const worker = async (w: number) => {
      const track = (stream: ClientHttp2Stream) => (inflight[w] = { stream, since: performance.now() });
      for (;;) {
        const start = performance.now();
        if (start >= end) return;
        const off = Math.floor(rand() * 64 * 1024);
        const key = keyBufs[Math.floor(rand() * keys)]!;
        const value = pool.subarray(off, off + opts.value_bytes);
        const conn = next;
        next = next + 1 === nclients ? 0 : next + 1;
        try {
          if (kind === 'http2') await raws[conn]!.put(encodePutRequest(key, value), track);
          else await etcd3s[conn]!.kv.put({ key, value }, { deadline: Date.now() + timeout });
          inflight[w] = null;
        } catch (err) {
          inflight[w] = null;
          errors++;
          firstError ??= (err as Error).message;
          await sleep(10);
          continue;
        }
        acked++;
        const done = performance.now();
        if (done >= measureStart && done < end) {
          rec.record(done - start);
          ops++;
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    clearInterval(watchdog);
    marks.b ??= snap(); // the last put can complete before the timer fires
    const st1 = await status.maintenance.status({ deadline: Date.now() + 10_000 });
    const termAfter = Number(st1.raftTerm);
    // Status is served by member 0 from its own state: wait (bounded) until it has applied every acknowledged put.
    let revisionDelta = Number(st1.header.revision) - revision0;
    for (let i = 0; i < 50 && revisionDelta < acked; i++) {
      await sleep(100);
      revisionDelta = Number((await status.maintenance.status({ deadline: Date.now() + 10_000 })).header.revision) - revision0;
    }
    if (revisionDelta < acked) {
      throw new TempestError('ETCD_LOAD_FAILED', `${acked} puts were acknowledged but etcd's revision grew by only ${revisionDelta}: the client miscounts`);
    }

    if (ops === 0) throw new TempestError('ETCD_LOAD_FAILED', `no put succeeded in the measured interval (${errors} errors; first: ${firstError ?? 'none'})`);
    const { a, b } = marks;
    const nan = Number.NaN;
    let cpu: EtcdPutLoadResult['cpu_cores'] = { client: nan, etcd: null, machine_busy: nan, machine: { user: nan, system: nan, irq: nan, steal: nan }, machine_cores: machineCpu().cpus, other: nan };
    if (a && b) {
      const secs = (b.t - a.t) / 1000;
      const du = process.cpuUsage(a.client);
      const jiffies = Math.max(1, b.machine.total - a.machine.total);
      const share = (k: 'idle' | 'user' | 'system' | 'irq' | 'steal') => (b.machine.cpus * (b.machine[k] - a.machine[k])) / jiffies;
      const client = (du.user + du.system) / 1e6 / secs;
      const etcd = opts.pids ? b.etcd.map((x, i) => (x - a.etcd[i]!) / secs) : null;
      const busy = b.machine.cpus - share('idle');
      cpu = {
        client,
        etcd,
        machine_busy: busy,
        machine: { user: share('user'), system: share('system'), irq: share('irq'), steal: share('steal') },
        machine_cores: b.machine.cpus,
        other: busy - client - (etcd ?? []).reduce((x, y) => x + y, 0),
      };
    }
    const s = rec.summary();
    const measured_s = opts.duration_ms / 1000;
    return {
      ops,
      rate_per_s: ops / measured_s,
      p50_ms: s.p50_ms,
      p99_ms: s.p99_ms,
      mean_ms: s.mean_ms,
      p90_ms: s.p90_ms,
      p999_ms: s.p999_ms,
      max_ms: s.max_ms,
      errors,
      first_error: firstError,
      concurrency: opts.concurrency,
      clients: nclients,
      client_kind: kind,
      measured_s,
      cpu_cores: cpu,
      raft_term: { before: termBefore, after: termAfter },
      acked_total: acked,
      revision_delta: revisionDelta,
      db_size_bytes: Number(st1.dbSize),
    };
  } finally {
    status.close();
    for (const c of etcd3s) c.close();
    for (const c of raws) c.close();
  }
}
