/** Real group-member processes (test/fixtures/group-process.ts) on 127.0.0.1 with fresh ports. */
import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePorts, type Msg } from '../../scripts/lib/child.js';
import type { MemberInfo } from '../../engine/membership/view.js';
import type { SubgroupTypeSpec } from '../../engine/subgroups/allocation.js';
import type { GroupProcessArgs } from '../../scripts/lib/group-process.js';

export const GROUP_FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/group-process.js');

/** The range the OS takes the local port of an outgoing connection from (Linux: ip_local_port_range). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo!, hi!];
  } catch {
    // not Linux
  }
  return [32768, 60999];
}

/**
 * The ports of the ready local layout (config/local/*.ini): `tempest up` in the CLI tests binds
 * them while other test files run beside it, so they are never handed out here.
 */
function localLayoutPorts(): Set<number> {
  const ports = new Set<number>();
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../../../config/local');
  try {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ini'))) {
      for (const m of readFileSync(join(dir, f), 'utf8').matchAll(/^\s*\w*port\s*=\s*(\d+)/gm)) ports.add(Number(m[1]));
    }
  } catch {
    // no local layout: nothing to keep clear of
  }
  return ports;
}

function tryListen(ip: string, port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, ip, () => resolve(s));
  });
}

/**
 * `count` distinct ports that can be listened on at `ip` now, outside the ephemeral range.
 *
 * A port the OS hands out for listen(0) (freePorts) lies in the ephemeral range, so in the
 * moment between choosing it and a member process binding it, any outgoing connection on the
 * machine can take it as its local port: under load (many member processes connecting to each
 * other, another test file beside this one) a member then fails to start with EADDRINUSE. No
 * connection takes a local port outside that range; a port some listener holds is skipped, and
 * the random start keeps test files that run side by side apart.
 */
export async function listenablePorts(count: number, ip: string): Promise<number[]> {
  const [lo, hi] = ephemeralRange();
  const window: [number, number] | null = lo - 10_000 >= 4 * count ? [10_000, lo - 1] : 65_535 - hi >= 4 * count ? [hi + 1, 65_535] : null;
  if (window === null) return freePorts(count);
  const size = window[1] - window[0] + 1;
  const start = randomInt(size);
  const held: Server[] = [];
  const reserved = localLayoutPorts();
  try {
    for (let k = 0; k < size && held.length < count; k++) {
      const port = window[0] + ((start + k) % size);
      if (reserved.has(port)) continue;
      const s = await tryListen(ip, port);
      if (s !== null) held.push(s);
    }
    if (held.length < count) return await freePorts(count);
    return held.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function memberInfos(n: number, firstId = 0, ip = '127.0.0.1'): Promise<MemberInfo[]> {
  const ports = await listenablePorts(4 * n, ip);
  return Array.from({ length: n }, (_, i) => ({
    id: firstId + i,
    ip,
    gms_port: ports[4 * i]!,
    fabric_port: ports[4 * i + 1]!,
    state_transfer_port: ports[4 * i + 2]!,
    external_port: ports[4 * i + 3]!,
  }));
}

export interface GroupSpec {
  types: SubgroupTypeSpec[];
  timeout_ms: number;
  heartbeat_ms: number;
  max_payload_size: number;
}

export function startMember(self: MemberInfo, leader: MemberInfo, spec: GroupSpec, extra: Partial<GroupProcessArgs> = {}, env: Record<string, string> = {}): Child {
  const args: GroupProcessArgs = { self, leader: { ip: leader.ip, gms_port: leader.gms_port }, ...spec, ...extra };
  return Child.start(GROUP_FIXTURE, args, env);
}

/** A member's `ready` message; a member that failed to start rejects at once, with its error. */
export async function waitReady(p: Child, timeout_ms: number): Promise<Msg> {
  const m = await p.waitFor((x) => x.type === 'ready' || x.type === 'error', timeout_ms, '"ready" message');
  if (m.type === 'error') throw new Error(`pid ${p.pid}: failed to start: ${String(m.message)}\nstderr tail:\n${p.stderr.slice(-3000)}`);
  return m;
}
