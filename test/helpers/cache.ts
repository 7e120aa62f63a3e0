/** Real Cache member processes (scripts/lib/cache-process.ts) on 127.0.0.1 with fresh ports and data dirs. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MemberInfo } from '../../engine/membership/view.js';
import type { CacheProcessArgs } from '../../scripts/lib/cache-process.js';
import { Child, killAll, type Msg } from '../../scripts/lib/child.js';
import { listenablePorts } from './group.js';

export const CACHE_FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/cache-process.js');

export class CacheCluster {
  readonly procs: (Child | null)[];
  readonly root: string;

  private constructor(
    readonly members: MemberInfo[],
    private readonly rdmcPorts: number[],
    public opts: Partial<CacheProcessArgs>,
  ) {
    this.root = mkdtempSync(join(tmpdir(), 'tempest-cache-'));
    this.procs = members.map(() => null);
  }

  static async create(n: number, opts: Partial<CacheProcessArgs> = {}): Promise<CacheCluster> {
    // Five ports per member from one call, so none is handed out twice (rdmc_port included).
    const p = await listenablePorts(5 * n, '127.0.0.1');
    const members = Array.from({ length: n }, (_, i) => ({ id: i, ip: '127.0.0.1', gms_port: p[5 * i]!, fabric_port: p[5 * i + 1]!, state_transfer_port: p[5 * i + 2]!, external_port: p[5 * i + 3]! }));
    return new CacheCluster(members, members.map((_, i) => p[5 * i + 4]!), opts);
  }

  dataDir(i: number): string {
    return join(this.root, `node${this.members[i]!.id}`);
  }

  /** Starts member i, configured with member `leader` as the group's leader (default the first). */
  start(i: number, leader = 0): Child {
    const args: CacheProcessArgs = { self: this.members[i]!, leader: this.members[leader]!, data_dir: this.dataDir(i), rdmc_port: this.rdmcPorts[i]!, ...this.opts };
    const c = Child.start(CACHE_FIXTURE, args);
    this.procs[i] = c;
    return c;
  }

  /** Starts every member (leader first) and waits until each is ready in a view of all of them. */
  async startAll(timeout_ms = 60_000): Promise<Child[]> {
    const all = this.members.map((_, i) => this.start(i));
    await Promise.all(all.map((c) => c.waitType('ready', timeout_ms)));
    await this.waitView(this.members.length, timeout_ms);
    return all;
  }

  /** Waits until every running member reports a view with `size` members. */
  async waitView(size: number, timeout_ms: number): Promise<void> {
    await Promise.all(
      this.procs.filter((c): c is Child => c !== null && c.exited === null).map((c) => c.waitFor((m) => (m.type === 'view' || m.type === 'ready') && (m.view as { members?: unknown[] } | null)?.members?.length === size, timeout_ms, `a view of ${size}`)),
    );
  }

  /** Sends a command and waits for the reply of `type` that arrives after it. */
  async ask(i: number, cmd: object, type: string, timeout_ms = 60_000, match: (m: Msg) => boolean = () => true): Promise<Msg> {
    const c = this.procs[i]!;
    const seen = c.inbox.length;
    c.send(cmd);
    return c.waitFor((m) => ((m.type === type && match(m)) || m.type === 'cmd-failed') && c.inbox.indexOf(m) >= seen, timeout_ms, `"${type}" reply`).then((m) => {
      if (m.type === 'cmd-failed') throw Object.assign(new Error(`member ${i}: ${String(m.code)} ${String(m.message)}`), { code: m.code, remoteCode: m.remoteCode });
      return m;
    });
  }

  kill(i: number): void {
    this.procs[i]?.kill('SIGKILL');
  }

  async killAll(): Promise<void> {
    await killAll(this.procs.filter((c): c is Child => c !== null));
  }

  async cleanup(): Promise<void> {
    await this.killAll();
    rmSync(this.root, { recursive: true, force: true });
  }
}
