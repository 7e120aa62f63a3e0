/**
 * Real `tempest node` processes (bin/tempest.mjs, as a user runs them) on 127.0.0.1, each with
 * fresh ports and its own data dir, started from config/local/node0.ini with overrides. Tests
 * talk to them over HTTP only, kill them by PID (SIGKILL for crash tests) and clean up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listenablePorts } from './group.js';
import { forceUnmount } from './mount.js';
import { killBounded } from './processes.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
const CONFIG = path.join(ROOT, 'config', 'local', 'node0.ini');
/** Ports per member: gms, state transfer, sst, rdmc, external, http. */
const PORTS_PER_MEMBER = 6;

export interface StoreNode {
  id: number;
  http: number;
  gms: number;
  external: number;
  dataDir: string;
  proc: ChildProcess | null;
  stderr: string;
}

export interface StoreClusterOptions {
  /** [STORE] shards and members_per_shard. */
  shards?: number;
  members_per_shard?: number;
  /** Extra --SECTION/key=value overrides for every member. */
  overrides?: string[];
  /** Members that mount the file system in their process: member id -> absolute mountpoint. */
  mounts?: Record<number, string>;
}

export class StoreCluster {
  private constructor(
    readonly root: string,
    readonly nodes: StoreNode[],
    private readonly ports: number[],
    private readonly opts: StoreClusterOptions,
  ) {}

  static async create(n: number, opts: StoreClusterOptions = {}): Promise<StoreCluster> {
    const ports = await listenablePorts(PORTS_PER_MEMBER * n, '127.0.0.1');
    const root = mkdtempSync(path.join(tmpdir(), 'tempest-store-'));
    const nodes = Array.from({ length: n }, (_, i): StoreNode => {
      const p = ports.slice(i * PORTS_PER_MEMBER, (i + 1) * PORTS_PER_MEMBER);
      return { id: i, gms: p[0]!, http: p[5]!, external: p[4]!, dataDir: path.join(root, `node${i}`), proc: null, stderr: '' };
    });
    return new StoreCluster(root, nodes, ports, opts);
  }

  url(i = 0): string {
    return `http://127.0.0.1:${this.nodes[i]!.http}`;
  }

  argsOf(i: number): string[] {
    const p = this.ports.slice(i * PORTS_PER_MEMBER, (i + 1) * PORTS_PER_MEMBER);
    const leader = this.nodes[0]!;
    const o = this.opts;
    return [
      'node',
      '--config',
      CONFIG,
      `--DERECHO/local_id=${i}`,
      `--DERECHO/leader_gms_port=${leader.gms}`,
      `--DERECHO/leader_external_port=${leader.external}`,
      `--DERECHO/gms_port=${p[0]}`,
      `--DERECHO/state_transfer_port=${p[1]}`,
      `--DERECHO/sst_port=${p[2]}`,
      `--DERECHO/rdmc_port=${p[3]}`,
      `--DERECHO/external_port=${p[4]}`,
      `--DERECHO/data_dir=${this.nodes[i]!.dataDir}`,
      `--PERS/ramdisk_path=${path.join(this.nodes[i]!.dataDir, 'shm')}`,
      `--HTTP/port=${p[5]}`,
      '--FUSE/enabled=false',
      // Failure detection after 3 s instead of 1: these members share 2 cores with another test
      // file's processes in CI, and what the store tests check is what survives a failure, not
      // how fast it is noticed (bench:membership measures that).
      '--DERECHO/timeout_ms=3000',
      `--STORE/shards=${o.shards ?? 1}`,
      `--STORE/members_per_shard=${o.members_per_shard ?? this.nodes.length}`,
      ...(o.overrides ?? []),
      ...(o.mounts?.[i] !== undefined ? ['--FUSE/enabled=true', `--FUSE/mountpoint=${o.mounts[i]}`] : []),
    ];
  }

  /** Starts member i (not waiting). */
  start(i: number): StoreNode {
    const node = this.nodes[i]!;
    node.stderr = '';
    const proc = spawn(process.execPath, [BIN, ...this.argsOf(i)], {
      cwd: this.root,
      env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: process.env.TEMPEST_LOG_LEVEL ?? 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    proc.stderr!.on('data', (b: Buffer) => {
      node.stderr = (node.stderr + b.toString()).slice(-20_000);
    });
    node.proc = proc;
    proc.once('exit', () => {
      if (node.proc === proc) node.proc = null;
    });
    return node;
  }

  /**
   * Starts every member (the leader first, once it takes joins) and waits until each serves HTTP
   * in a view of all. The leader alone may not serve yet: with more shards than members its view
   * is inadequate until the others join.
   */
  async startAll(timeout_ms = 60_000): Promise<void> {
    this.start(0);
    await this.waitListening(0, this.nodes[0]!.gms, timeout_ms);
    for (let i = 1; i < this.nodes.length; i++) this.start(i);
    await this.waitHealthy(this.nodes.map((_, i) => i), this.nodes.length, timeout_ms);
  }

  /** Waits until members `which` answer /v1/cluster with a view of `size` members. */
  async waitHealthy(which: number[], size: number, timeout_ms = 60_000): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    for (const i of which) {
      for (;;) {
        const node = this.nodes[i]!;
        try {
          const r = await fetch(`${this.url(i)}/v1/cluster`, { signal: AbortSignal.timeout(2_000) });
          if (r.ok) {
            const c = (await r.json()) as { members: unknown[] };
            if (c.members.length === size) break;
          }
        } catch {
          // not up yet
        }
        if (Date.now() > deadline) throw new Error(`member ${i} did not serve a view of ${size} within ${timeout_ms} ms; exited=${node.proc === null}; stderr tail:\n${node.stderr.slice(-3000)}`);
        if (node.proc === null) throw new Error(`member ${i} exited; stderr tail:\n${node.stderr.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Waits until member i accepts TCP connections on `port`. */
  async waitListening(i: number, port: number, timeout_ms: number): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port }, () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      const node = this.nodes[i]!;
      if (node.proc === null) throw new Error(`member ${i} exited; stderr tail:\n${node.stderr.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`member ${i} did not listen on port ${port} within ${timeout_ms} ms; stderr tail:\n${node.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILLs member i and waits for its exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.nodes[i]!.proc;
    if (p !== null) await killBounded(p, signal, 15_000);
  }

  /** Lines at warn level or above (or not JSON) that the members wrote to stderr, tagged by member. */
  warningLines(): string[] {
    return this.nodes.flatMap((n) =>
      n.stderr
        .split('\n')
        .filter((line) => {
          try {
            return (JSON.parse(line) as { level?: number }).level! >= 40;
          } catch {
            return line.trim() !== '';
          }
        })
        .map((line) => `member ${n.id}: ${line.slice(0, 500)}`),
    );
  }

  /** Stops every member after checking none exited on its own (throws if one did); returns
   * warningLines() from before the stop. */
  async stopChecked(): Promise<string[]> {
    const warnings = this.warningLines();
    const exited = this.nodes.filter((n) => n.proc === null).map((n) => n.id);
    if (exited.length > 0) throw new Error(`member(s) ${exited.join(', ')} exited during the run`);
    await this.stop();
    return warnings;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
    // A killed member leaves its mount dead (ENOTCONN); unmount it before removing anything.
    for (const dir of Object.values(this.opts.mounts ?? {})) forceUnmount(dir);
    rmSync(this.root, { recursive: true, force: true });
  }
}
