/**
 * The product under faults: five `tempest node` processes (bin/tempest.mjs, as a user runs them),
 * each in its own network namespace (test/helpers/netns.ts) with the ports of config/local's
 * node0 on its own address, data under one temporary root. This process gets an address on
 * bridge a and drives HTTP and a `tempest mount` from there. Members are killed by PID with
 * SIGKILL, restarted on the same data, partitioned with the bridges, and stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { forceUnmount } from './mount.js';
import { createTopology, IP, type Topology } from './netns.js';
import { killBounded } from './processes.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
export const CONFIG = path.join(ROOT, 'config', 'local', 'node0.ini');
export const HTTP_PORT = 8080;
export const EXTERNAL_PORT = 32645;
const STDERR_KEEP_CHARS = 40_000;
const STOP_WAIT_MS = 20_000;

export interface ClusterView {
  vid: number;
  leader: number;
  members: { id: number }[];
  layout: { type: string; shards: number[][] }[];
}

export interface FaultMember {
  id: number;
  addr: string;
  dataDir: string;
  proc: ChildProcess | null;
  stderr: string;
  starts: number;
}

export interface FaultClusterOptions {
  n: number;
  shards: number;
  members_per_shard: number;
  /** [DERECHO] timeout_ms of every member. */
  timeout_ms: number;
}

export class FaultCluster {
  private constructor(
    readonly topo: Topology,
    readonly host: string,
    readonly root: string,
    readonly members: FaultMember[],
    private readonly opts: FaultClusterOptions,
  ) {}

  static async create(opts: FaultClusterOptions): Promise<FaultCluster> {
    const topo = await createTopology(opts.n);
    try {
      const host = await topo.attachHost();
      const root = mkdtempSync(path.join(tmpdir(), 'tempest-faults-'));
      const members = Array.from({ length: opts.n }, (_, id): FaultMember => ({ id, addr: topo.addr(id), dataDir: path.join(root, `node${id}`), proc: null, stderr: '', starts: 0 }));
      return new FaultCluster(topo, host, root, members, opts);
    } catch (err) {
      await topo.destroy();
      throw err;
    }
  }

  url(i: number): string {
    return `http://${this.members[i]!.addr}:${HTTP_PORT}`;
  }

  /** Every member's external port, for `tempest mount --connect`. */
  contacts(): string {
    return this.members.map((m) => `${m.addr}:${EXTERNAL_PORT}`).join(',');
  }

  /** Members this process can reach now (those on bridge a). */
  reachable(): number[] {
    return this.members.map((m) => m.id).filter((i) => !this.topo.sideB.has(i));
  }

  start(i: number): void {
    const m = this.members[i]!;
    if (m.proc !== null) throw new Error(`member ${i} is running`);
    mkdirSync(m.dataDir, { recursive: true });
    const o = this.opts;
    const args = [
      'netns', 'exec', this.topo.ns(i), process.execPath, BIN, 'node', '--config', CONFIG,
      `--DERECHO/local_id=${i}`,
      `--DERECHO/local_ip=${m.addr}`,
      `--DERECHO/leader_ip=${this.members[0]!.addr}`,
      `--DERECHO/data_dir=${m.dataDir}`,
      `--DERECHO/timeout_ms=${o.timeout_ms}`,
      `--PERS/ramdisk_path=${path.join(m.dataDir, 'shm')}`,
      `--RDMA/domain=${this.topo.device}`,
      `--HTTP/host=${m.addr}`,
      `--HTTP/port=${HTTP_PORT}`,
      '--FUSE/enabled=false',
      `--STORE/shards=${o.shards}`,
      `--STORE/members_per_shard=${o.members_per_shard}`,
    ];
    // `ip netns exec` execs node, so the pid is the member's.
    const proc = spawn(IP, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: 'warn' } });
    proc.stderr!.on('data', (b: Buffer) => {
      m.stderr = (m.stderr + b.toString()).slice(-STDERR_KEEP_CHARS);
    });
    proc.once('exit', () => {
      if (m.proc === proc) m.proc = null;
    });
    m.proc = proc;
    m.starts += 1;
  }

  /** Sends `signal` and waits (bounded) for the exit; SIGKILL if SIGTERM was not enough. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.members[i]!.proc;
    if (p !== null) await killBounded(p, signal, STOP_WAIT_MS);
  }

  async killAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m.id, signal)));
  }

  /** /v1/cluster of member i, or null when it does not answer 200 within timeout_ms. */
  async view(i: number, timeout_ms = 2_000): Promise<ClusterView | null> {
    try {
      const r = await fetch(`${this.url(i)}/v1/cluster`, { signal: AbortSignal.timeout(timeout_ms) });
      return r.ok ? ((await r.json()) as ClusterView) : null;
    } catch {
      return null;
    }
  }

  /** Waits until every reachable member serves one view holding all n members. */
  async waitWhole(timeout_ms: number): Promise<ClusterView> {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const views = await Promise.all(this.members.map((m) => this.view(m.id)));
      const v = views[0];
      if (v !== null && v !== undefined && v.members.length === this.members.length && views.every((w) => w !== null && w.vid === v.vid)) return v;
      const dead = this.members.filter((m) => m.proc === null).map((m) => m.id);
      if (Date.now() > deadline) {
        const seen = views.map((w, i) => `member ${i}: ${w === null ? 'no answer' : `view ${w.vid} of ${w.members.map((x) => x.id).join(',')}`}`).join('; ');
        throw new Error(`no view of all ${this.members.length} members within ${timeout_ms} ms (${seen}; exited: ${dead.join(',') || 'none'})\n${this.stderrTails()}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  stderrTails(chars = 2_000): string {
    return this.members.map((m) => `--- member ${m.id} stderr tail:\n${m.stderr.slice(-chars)}`).join('\n');
  }

  /** Kills every member, removes the topology and the data. Idempotent. */
  async destroy(mounts: string[] = []): Promise<void> {
    await this.killAll('SIGKILL');
    for (const d of mounts) forceUnmount(d);
    await this.topo.destroy();
    rmSync(this.root, { recursive: true, force: true });
  }
}
