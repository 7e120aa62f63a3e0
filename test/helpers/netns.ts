/**
 * Network namespaces for partition tests (Linux, root, iproute2): one namespace per member with
 * a veth pair whose outside end hangs on one of two bridges in the root namespace. All members
 * start on bridge a; partition() moves some outside ends to bridge b, so the two sides cannot
 * reach each other while each side stays connected; heal() moves them back.
 *
 *   <prefix>n<i>   namespace of member i; inside it `eth0` = 10.<x>.<y>.<i+1>/24 and `lo`, both up
 *   <prefix>v<i>   outside end of member i's veth pair (root namespace)
 *   <prefix>a/b    the two bridges (root namespace)
 *
 * The default prefix is `tp<pid>` so names stay within 15 characters and cleanupStale() can tell
 * the leftovers of a crashed run (its pid is gone) from those of a run still going.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { Child } from '../../scripts/lib/child.js';

const run = promisify(execFile);

/** The iproute2 binary (PATH may lack /usr/sbin when not started from a login shell). */
export const IP = ['/usr/sbin/ip', '/sbin/ip', '/bin/ip', '/usr/bin/ip'].find((p) => existsSync(p)) ?? 'ip';

const IFNAMSIZ = 15;

async function ip(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(IP, args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${IP} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

/** Like ip(), for removals: "does not exist" is success (idempotent teardown). */
async function ipQuiet(...args: string[]): Promise<void> {
  try {
    await ip(...args);
  } catch (err) {
    if (!/Cannot find|does not exist|No such file|No such device|not found/i.test((err as Error).message)) throw err;
  }
}

export async function netnsList(): Promise<string[]> {
  const out = (await ip('-j', 'netns', 'list')).trim();
  if (out === '') return [];
  return (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

export async function linkList(): Promise<string[]> {
  return (JSON.parse(await ip('-j', 'link', 'show')) as { ifname: string }[]).map((l) => l.ifname);
}

async function addressesInUse(): Promise<string[]> {
  const out: string[] = [];
  for (const l of JSON.parse(await ip('-j', '-4', 'addr', 'show')) as { addr_info?: { local: string }[] }[]) for (const a of l.addr_info ?? []) out.push(a.local);
  for (const r of JSON.parse(await ip('-j', '-4', 'route', 'show', 'table', 'all')) as { dst: string }[]) out.push(r.dst);
  return out;
}

/**
 * Whether this machine lets us build a topology (root, iproute2, netns, bridges, veth); the
 * reason when not, for a test that skips with it.
 */
export async function netnsAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: `network namespaces need root (uid ${process.getuid?.()})` };
  if (IP === 'ip' && !(await run('ip', ['-V']).then(() => true, () => false))) return { ok: false, reason: 'iproute2 (`ip`) is not installed' };
  const p = `tp${process.pid}x`;
  try {
    await ip('netns', 'add', `${p}n`);
    await ip('link', 'add', `${p}b`, 'type', 'bridge');
    await ip('link', 'add', `${p}v`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `${p}n`);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `cannot create network namespaces, bridges or veth pairs: ${(err as Error).message}` };
  } finally {
    await ipQuiet('link', 'del', `${p}v`).catch(() => {});
    await ipQuiet('link', 'del', `${p}b`).catch(() => {});
    await ipQuiet('netns', 'del', `${p}n`).catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Names made by createTopology/netnsAvailable with the default prefix; group 1 is the pid. */
export const STALE_PATTERN = /^tp(\d+)x?(?:a|b|n\d*|v\d*)$/;

/**
 * Removes namespaces and links left by earlier runs that crashed: only names matching `pattern`
 * whose pid (capture group 1) is no longer running. Returns what it removed.
 */
export async function cleanupStale(pattern: RegExp = STALE_PATTERN): Promise<string[]> {
  const stale = (name: string) => {
    const m = pattern.exec(name);
    if (m === null) return false;
    const pid = Number(m[1]);
    return !(Number.isInteger(pid) && pid > 0 && (pid === process.pid || pidAlive(pid)));
  };
  const removed: string[] = [];
  for (const ns of (await netnsList()).filter(stale)) {
    await ipQuiet('netns', 'del', ns);
    removed.push(ns);
  }
  // Veths first (deleting a namespace removes its pair asynchronously), then bridges.
  const links = (await linkList()).map((l) => l.split('@')[0]!).filter(stale);
  for (const l of links.sort((a, b) => Number(/[ab]$/.test(a)) - Number(/[ab]$/.test(b)))) {
    await ipQuiet('link', 'del', l);
    removed.push(l);
  }
  return removed;
}

export interface ProbeResult {
  [ip: string]: 'refused' | 'connected' | 'timeout' | string;
}

/** Port nobody listens on: a reachable host answers a connect with RST (ECONNREFUSED). */
const PROBE_PORT = 9;

export interface Topology {
  readonly prefix: string;
  readonly n: number;
  readonly subnet: string;
  readonly bridgeA: string;
  readonly bridgeB: string;
  /** Namespace of member i. */
  ns(i: number): string;
  /** Address of member i (inside its namespace, on eth0). */
  addr(i: number): string;
  /** Outside veth end of member i. */
  veth(i: number): string;
  /** Interface member i uses inside its namespace (the libfabric domain). */
  readonly device: string;
  /** Members currently on bridge b. */
  readonly sideB: ReadonlySet<number>;
  /** Moves the outside veths of `ids` to bridge b; checks the sides are cut and each side connected. */
  partition(ids: number[]): Promise<void>;
  /** Moves every member back to bridge a; checks all reach each other. */
  heal(): Promise<void>;
  /** From member i's namespace, TCP-connects to each address (closed port): refused = reachable. */
  probe(from: number, to: number[], timeout_ms: number): Promise<ProbeResult>;
  /**
   * Gives this (the root) namespace an address on bridge a, so processes here (load drivers, a
   * mount) reach the members on side a, as clients on that side of a partition would.
   */
  attachHost(): Promise<string>;
  /** Starts `node script JSON(args)` inside member i's namespace with an IPC channel. */
  spawnIn(i: number, script: string, args: object, env?: Record<string, string>): Child;
  /** Deletes namespaces, veths and bridges; idempotent. Kill the processes inside first. */
  destroy(): Promise<void>;
}

/** Starts `node script JSON(args)` inside namespace `ns` with an IPC channel (`ip netns exec` execs node, so the pid is node's). */
export function spawnIn(ns: string, script: string, args: object, env: Record<string, string> = {}): Child {
  const child = spawn(IP, ['netns', 'exec', ns, process.execPath, script, JSON.stringify(args)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', ...env },
  });
  return new Child(child);
}

function ipToInt(a: string): number {
  return a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** Whether the /24 starting at `base` overlaps `cidr` ("a.b.c.d" or "a.b.c.d/len"; others ignored). */
function overlaps(base: number, cidr: string): boolean {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(cidr);
  if (m === null) return false;
  const len = Math.min(Number(m[2] ?? 32), 24);
  const size = 2 ** (32 - len);
  return Math.floor(ipToInt(m[1]!) / size) === Math.floor(base / size);
}

/** A /24 in 10.100.0.0–10.255.255.0 derived from the pid and not already on the machine. */
async function pickSubnet(): Promise<string> {
  const used = await addressesInUse();
  for (let k = 0; k < 256; k++) {
    const h = (process.pid + k * 7919) % (156 * 256);
    const x = 100 + Math.floor(h / 256);
    const y = h % 256;
    if (!used.some((a) => overlaps(ipToInt(`10.${x}.${y}.0`), a))) return `10.${x}.${y}.`;
  }
  throw new Error('no free /24 in 10.100.0.0–10.255.255.0 for the test topology');
}

/**
 * Builds `n` namespaces on bridge a and checks that member 0 reaches every other member.
 * On failure whatever was built is removed again.
 */
export async function createTopology(n: number, prefix = `tp${process.pid}`): Promise<Topology> {
  if (n < 1 || n > 99) throw new Error(`createTopology: n must be 1..99 (got ${n})`);
  const bridgeA = `${prefix}a`;
  const bridgeB = `${prefix}b`;
  const ns = (i: number) => `${prefix}n${i}`;
  const veth = (i: number) => `${prefix}v${i}`;
  for (const name of [bridgeA, bridgeB, ns(n - 1), veth(n - 1)]) {
    if (name.length > IFNAMSIZ) throw new Error(`createTopology: interface name "${name}" is longer than ${IFNAMSIZ} characters; use a shorter prefix`);
  }
  const subnet = await pickSubnet();
  const addr = (i: number) => `${subnet}${i + 1}`;
  const sideB = new Set<number>();
  let destroyed = false;

  const probe = (from: number, to: number[], timeout_ms: number): Promise<ProbeResult> => {
    const code = `
      const net = require('node:net');
      const targets = ${JSON.stringify(to.map(addr))};
      Promise.all(targets.map((host) => new Promise((resolve) => {
        const s = net.connect({ host, port: ${PROBE_PORT} });
        const done = (r) => { clearTimeout(t); s.destroy(); resolve([host, r]); };
        const t = setTimeout(() => done('timeout'), ${timeout_ms});
        s.on('connect', () => done('connected'));
        s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code || e.message));
      }))).then((r) => { process.stdout.write(JSON.stringify(Object.fromEntries(r))); });
    `;
    return run(IP, ['netns', 'exec', ns(from), process.execPath, '-e', code], { timeout: timeout_ms + 10_000 }).then(({ stdout }) => JSON.parse(stdout) as ProbeResult);
  };

  const reachable = (r: string | undefined) => r === 'refused' || r === 'connected';

  /** Every pair within a side reaches each other, and (if `cut`) no pair across sides does. */
  const checkConnectivity = async (what: string): Promise<void> => {
    const all = Array.from({ length: n }, (_, i) => i);
    const results = await Promise.all(all.map((i) => probe(i, all.filter((j) => j !== i), sideB.size > 0 ? 500 : 3000)));
    const wrong: string[] = [];
    for (const i of all) {
      for (const j of all) {
        if (i === j) continue;
        const r = results[i]![addr(j)];
        const same = sideB.has(i) === sideB.has(j);
        if (same && !reachable(r)) wrong.push(`${i}→${j} unreachable (${r})`);
        if (!same && reachable(r)) wrong.push(`${i}→${j} reachable across the partition (${r})`);
      }
    }
    if (wrong.length > 0) {
      throw new Error(
        `${what}: the topology does not behave as expected: ${wrong.join('; ')}. ` +
          `If the bridges do not forward, br_netfilter may filter bridged traffic (sysctl net.bridge.bridge-nf-call-iptables=0) or a firewall drops it.`,
      );
    }
  };

  const destroy = async (): Promise<void> => {
    destroyed = true;
    for (let i = 0; i < n; i++) await ipQuiet('netns', 'del', ns(i));
    for (let i = 0; i < n; i++) await ipQuiet('link', 'del', veth(i));
    await ipQuiet('link', 'del', bridgeA);
    await ipQuiet('link', 'del', bridgeB);
    // Veths of deleted namespaces disappear asynchronously; make sure none is left.
    for (let k = 0; k < 50; k++) {
      const left = (await linkList()).map((l) => l.split('@')[0]!).filter((l) => l.startsWith(prefix) && l !== prefix && /^(?:a|b|v\d+)$/.test(l.slice(prefix.length)));
      const nsLeft = (await netnsList()).filter((x) => x.startsWith(`${prefix}n`));
      if (left.length === 0 && nsLeft.length === 0) return;
      for (const l of left) await ipQuiet('link', 'del', l);
      for (const x of nsLeft) await ipQuiet('netns', 'del', x);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`destroy: ${prefix} links or namespaces are still present`);
  };

  const topo: Topology = {
    prefix,
    n,
    subnet: `${subnet}0/24`,
    bridgeA,
    bridgeB,
    ns,
    addr,
    veth,
    device: 'eth0',
    sideB,
    probe,
    async partition(ids: number[]) {
      for (const i of ids) {
        if (!(i >= 0 && i < n)) throw new Error(`partition: no member ${i}`);
        await ip('link', 'set', veth(i), 'master', bridgeB);
        sideB.add(i);
      }
      await checkConnectivity(`partition {${ids.join(',')}}`);
    },
    async heal() {
      for (const i of [...sideB]) {
        await ip('link', 'set', veth(i), 'master', bridgeA);
        sideB.delete(i);
      }
      await checkConnectivity('heal');
    },
    async attachHost() {
      const host = `${subnet}254`;
      await ip('addr', 'add', `${host}/24`, 'dev', bridgeA);
      return host;
    },
    spawnIn: (i, script, args, env = {}) => spawnIn(ns(i), script, args, env),
    destroy,
  };

  try {
    for (const b of [bridgeA, bridgeB]) {
      await ip('link', 'add', b, 'type', 'bridge');
      // No STP, no forwarding delay: a port moved between bridges forwards at once.
      await ip('link', 'set', b, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
      await ip('link', 'set', b, 'up');
    }
    for (let i = 0; i < n; i++) {
      await ip('netns', 'add', ns(i));
      await ip('link', 'add', veth(i), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(i));
      await ip('-n', ns(i), 'addr', 'add', `${addr(i)}/24`, 'dev', 'eth0');
      await ip('-n', ns(i), 'link', 'set', 'lo', 'up');
      await ip('-n', ns(i), 'link', 'set', 'eth0', 'up');
      await ip('link', 'set', veth(i), 'master', bridgeA);
      await ip('link', 'set', veth(i), 'up');
    }
    await checkConnectivity('create');
  } catch (err) {
    if (!destroyed) await destroy().catch(() => {});
    throw err;
  }
  return topo;
}
