/**
 * npm run bench:transport — Tempest's libfabric transport beside Node `net` on loopback, measured
 * in the same run between two real processes:
 *   - one-way bandwidth of 1 MiB messages (and of 1 MiB RMA writes, ours only),
 *   - rate of 64 B messages one way,
 *   - round-trip time of 64 B messages (ping-pong),
 * then the CPU an idle member of a 3-member group uses over --idle-seconds (default 30).
 * The last line is one JSON object with the figures and the ratios (ours / net).
 *
 * Options: --provider=tcp|sockets  --idle-seconds=N  --quick (smaller counts, for a smoke run)
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Child, freePorts, killAll } from '../lib/child.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values: opts } = parseArgs({
  options: {
    provider: { type: 'string', default: 'tcp' },
    'idle-seconds': { type: 'string', default: '30' },
    quick: { type: 'boolean', default: false },
  },
});
const provider = opts.provider!;
const idleSeconds = Number(opts['idle-seconds']);
if (!Number.isFinite(idleSeconds) || idleSeconds < 0) throw new Error('--idle-seconds takes a number of seconds');

const MiB = 1024 * 1024;
const counts = opts.quick
  ? { bw: 256, rate: 20_000, rtt: 1_000, rma: 256 }
  : { bw: 2_048, rate: 200_000, rtt: 10_000, rma: 2_048 };
const WAIT_MS = 180_000;

const progress = (s: string) => process.stderr.write(`bench:transport  ${s}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}
const round = (x: number, digits = 3) => Number(x.toFixed(digits));

async function result(c: Child): Promise<Record<string, unknown>> {
  const m = await c.waitFor((x) => x.type === 'result' || x.type === 'error', WAIT_MS, 'result');
  if (m.type === 'error') throw new Error(String(m.message));
  c.inbox.splice(c.inbox.indexOf(m), 1);
  return m;
}

async function fabricPair(slot_size_bytes: number, slots_per_peer: number): Promise<Child[]> {
  const ports = await freePorts(4);
  const members = [0, 1].map((id) => ({ id, ip: '127.0.0.1', port: ports[2 * id]!, fabric_port: ports[2 * id + 1]! }));
  const procs = members.map((self) =>
    Child.start(join(here, 'fabric-peer.js'), { self, members, provider, slot_size_bytes, slots_per_peer, rma_bytes: MiB }),
  );
  await Promise.all(procs.map((p) => p.waitType('ready', 30_000)));
  return procs;
}

async function netPair(): Promise<Child[]> {
  const procs = [0, 1].map(() => Child.start(join(here, 'net-peer.js'), {}));
  await Promise.all(procs.map((p) => p.waitType('ready', 10_000)));
  const [sender, receiver] = procs as [Child, Child];
  receiver.send({ cmd: 'listen' });
  const { port } = await receiver.waitType('listening', 10_000);
  sender.send({ cmd: 'connect', port });
  await sender.waitType('connected', 10_000);
  return procs;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function main(): Promise<void> {
  const all: Child[] = [];
  const cleanup = () => killAll(all);
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    // ---- ours: 1 MiB stream, RMA stream ---------------------------------------------------------
    progress(`libfabric (${provider}): ${counts.bw} x 1 MiB messages one way`);
    let pair = await fabricPair(MiB, 8);
    all.push(...pair);
    let [s, r] = pair as [Child, Child];
    const stackName = String(s.inbox.find((m) => m.type === 'ready')!.provider);
    r.send({ cmd: 'expect', count: counts.bw });
    s.send({ cmd: 'stream', to: 1, count: counts.bw, size: MiB });
    const oursBw = (counts.bw * MiB) / (Number((await result(s)).seconds) * 1e9);
    progress(`libfabric (${provider}): ${counts.rma} x 1 MiB RMA writes`);
    r.send({ cmd: 'expect-rma', count: counts.rma, from: 0 });
    s.send({ cmd: 'rma', to: 1, count: counts.rma, size: MiB });
    const oursRmaBw = (counts.rma * MiB) / (Number((await result(s)).seconds) * 1e9);
    await killAll(pair);

    // ---- ours: 64 B rate and round trip -----------------------------------------------------------
    progress(`libfabric (${provider}): ${counts.rate} x 64 B messages one way, ${counts.rtt} round trips`);
    pair = await fabricPair(64, 512);
    all.push(...pair);
    [s, r] = pair as [Child, Child];
    r.send({ cmd: 'expect', count: counts.rate });
    s.send({ cmd: 'stream', to: 1, count: counts.rate, size: 64 });
    const oursRate = counts.rate / Number((await result(s)).seconds);
    r.send({ cmd: 'echo' });
    s.send({ cmd: 'pingpong', to: 1, count: counts.rtt, size: 64 });
    const oursRtts = (await result(s)).rtts_us as number[];
    await killAll(pair);

    // ---- Node net baseline ------------------------------------------------------------------------
    progress(`node net: ${counts.bw} x 1 MiB one way, ${counts.rate} x 64 B one way, ${counts.rtt} round trips`);
    let net = await netPair();
    all.push(...net);
    let [ns, nr] = net as [Child, Child];
    nr.send({ cmd: 'expect', bytes: counts.bw * MiB });
    ns.send({ cmd: 'stream', count: counts.bw, size: MiB });
    const netBw = (counts.bw * MiB) / (Number((await result(ns)).seconds) * 1e9);
    nr.send({ cmd: 'expect', bytes: counts.rate * 64 });
    ns.send({ cmd: 'stream', count: counts.rate, size: 64 });
    const netRate = counts.rate / Number((await result(ns)).seconds);
    await killAll(net);
    net = await netPair();
    all.push(...net);
    [ns, nr] = net as [Child, Child];
    nr.send({ cmd: 'echo', size: 64 });
    ns.send({ cmd: 'pingpong', count: counts.rtt, size: 64 });
    const netRtts = (await result(ns)).rtts_us as number[];
    await killAll(net);

    // ---- idle CPU of a 3-member group ---------------------------------------------------------------
    let idlePct: number[] = [];
    if (idleSeconds > 0) {
      progress(`idle: 3 members, heartbeats every 100 ms, CPU measured over ${idleSeconds} s`);
      const ports = await freePorts(6);
      const members = [0, 1, 2].map((id) => ({ id, ip: '127.0.0.1', port: ports[2 * id]!, fabric_port: ports[2 * id + 1]! }));
      const group = members.map((self) =>
        Child.start(join(here, 'fabric-peer.js'), { self, members, provider, slot_size_bytes: 4096, slots_per_peer: 16, rma_bytes: 4096 }),
      );
      all.push(...group);
      await Promise.all(group.map((p) => p.waitType('ready', 30_000)));
      await new Promise((res) => setTimeout(res, 1_000));
      const before = group.map((p) => cpuSeconds(p.pid));
      const t0 = performance.now();
      await new Promise((res) => setTimeout(res, idleSeconds * 1000));
      const wall = (performance.now() - t0) / 1000;
      idlePct = group.map((p, i) => (100 * (cpuSeconds(p.pid) - before[i]!)) / wall);
      await killAll(group);
    }

    const oursRtt = median(oursRtts);
    const netRtt = median(netRtts);
    const summary = {
      bench: 'transport',
      provider: stackName,
      bandwidth_GBps: { fabric_send_1MiB: round(oursBw), fabric_rma_write_1MiB: round(oursRmaBw), net_1MiB: round(netBw) },
      rates_msgs_per_s: { fabric_64B: Math.round(oursRate), net_64B: Math.round(netRate) },
      rtt_64B_us: {
        fabric_p50: round(oursRtt, 1),
        fabric_p99: round(percentile(oursRtts, 0.99), 1),
        net_p50: round(netRtt, 1),
        net_p99: round(percentile(netRtts, 0.99), 1),
      },
      idle_cpu_pct_per_member: idlePct.map((x) => round(x, 2)),
      idle_seconds: idleSeconds,
      ratios: {
        bw_1MiB_vs_net: round(oursBw / netBw),
        rtt_64B_vs_net: round(oursRtt / netRtt),
        rate_64B_vs_net: round(oursRate / netRate),
        rma_bw_1MiB_vs_net: round(oursRmaBw / netBw),
      },
      goals: { bw_1MiB_vs_net: '>= 0.8', rtt_64B_vs_net: '<= 2', idle_cpu_pct_per_member: '< 5' },
      counts,
    };
    process.stdout.write(
      [
        `provider ${stackName}`,
        `1 MiB one way:   libfabric ${summary.bandwidth_GBps.fabric_send_1MiB} GB/s (RMA write ${summary.bandwidth_GBps.fabric_rma_write_1MiB} GB/s), node net ${summary.bandwidth_GBps.net_1MiB} GB/s`,
        `64 B one way:    libfabric ${summary.rates_msgs_per_s.fabric_64B} msg/s, node net ${summary.rates_msgs_per_s.net_64B} msg/s`,
        `64 B round trip: libfabric p50 ${summary.rtt_64B_us.fabric_p50} us p99 ${summary.rtt_64B_us.fabric_p99} us, node net p50 ${summary.rtt_64B_us.net_p50} us p99 ${summary.rtt_64B_us.net_p99} us`,
        idleSeconds > 0 ? `idle member CPU: ${summary.idle_cpu_pct_per_member.join('%, ')}% of one core over ${idleSeconds} s` : 'idle CPU: skipped',
        JSON.stringify(summary),
        '',
      ].join('\n'),
    );
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  process.stderr.write(`bench:transport failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
