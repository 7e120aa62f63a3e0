/**
 * bench:persist — durable 1 KiB updates on 3 members: Tempest's ordered puts on the example Cache
 * (a Persistent field, every update fsynced by every member before it is acknowledged) beside the
 * same closed-loop workload on a 3-member etcd on 127.0.0.1 (etcd fsyncs its WAL on a majority
 * before it acknowledges), measured one after the other in the same run, on the same disk.
 *
 * For each concurrency (updates outstanding at all times, spread over the 3 members as senders;
 * etcd: over connections to its 3 members) it reports the rate and the p50/p99 latency of an update
 * from the call until it is acknowledged: Tempest: every member replied, each after its log was on
 * disk, and every member reported it persisted; etcd: the put returned.
 *
 * How Tempest batches: each member appends every delivered update to its log in memory and
 * flushes once per event-loop turn (group commit: one write and one fdatasync for everything
 * delivered since the last flush); replies and the persisted version go out after that flush.
 *
 *   npm run bench:persist [-- --concurrency=1,256 --warmup-ms=2000 --duration-ms=5000 --set=SECTION/key=value ...]
 *
 * Both systems run the same closed loop per concurrency: warmup_ms of load that is not measured
 * (JIT compilation, caches, file growth), then duration_ms measured with the load still running.
 * --set passes Tempest configuration to the members (e.g. --set=DERECHO/max_smc_payload_size=65536);
 * --members=1 runs one Tempest member alone (no replication, no network): the ceiling of one
 * member's event loop on this machine, beside the same 3-member etcd.
 *
 * Ratios (last line, JSON) are at the highest concurrency: rate_vs_etcd (ours / etcd's) and
 * p50_vs_etcd (ours / etcd's); p50_c1_vs_etcd compares one update at a time. Each point also has
 * cpu_us_per_update (user + system CPU of the processes doing the work, from /proc, over the
 * measured window, per acknowledged update) and machine_busy_cores: on a CPU-bound machine the
 * rate ratio is the inverse of the CPU-per-update ratio.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { MemberInfo } from '../../engine/membership/view.js';
import type { CacheProcessArgs } from '../lib/cache-process.js';
import { Child, freePorts, killAll, type Msg } from '../lib/child.js';
import { percentile } from '../lib/latency.js';
import { ensureEtcd, machineCpu, procCpuSeconds, runEtcdPutLoad, startEtcdCluster, type EtcdCluster } from './etcd-baseline.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '../lib/cache-process.js');
const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,256' },
    'warmup-ms': { type: 'string', default: '2000' },
    'duration-ms': { type: 'string', default: '5000' },
    /** Tempest configuration for the members, as SECTION/key=value (repeatable). */
    set: { type: 'string', multiple: true, default: [] },
    /** Tempest members (3; 1 gives the ceiling of one member with no replication at all). */
    members: { type: 'string', default: '3' },
  },
});
const concurrencies = values.concurrency!.split(',').map(Number);
const WARMUP_MS = Number(values['warmup-ms']);
const DURATION_MS = Number(values['duration-ms']);
const OVERRIDES = values.set!.map((kv) => `--${kv}`);
const MEMBERS = Number(values.members);
if (MEMBERS !== 1 && MEMBERS !== 3) {
  process.stderr.write('bench:persist: --members is 3 (the comparison) or 1 (one member alone, no replication)\n');
  process.exit(2);
}
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1) || !Number.isInteger(WARMUP_MS) || WARMUP_MS < 0 || !Number.isInteger(DURATION_MS) || DURATION_MS < 500) {
  process.stderr.write('usage: npm run bench:persist [-- --concurrency=1,256 --warmup-ms=MS (>=0) --duration-ms=MS (>=500) --set=SECTION/key=value ...]\n');
  process.exit(2);
}
const VALUE_BYTES = 1024;
/** A cap on one sender's puts in a timed run (far above what the machine does in duration_ms). */
const MAX_PUTS_PER_SENDER = 1_000_000;
const progress = (s: string) => process.stderr.write(`bench:persist  ${s}\n`);
const round = (x: number, d = 2) => Number(x.toFixed(d));

interface Point {
  concurrency: number;
  ops: number;
  rate_per_s: number;
  p50_ms: number;
  p99_ms: number;
  /** CPU (user + system) of every process doing the work, per acknowledged update, in the measured window: Tempest's members (their senders included); etcd's members and the load's client. */
  cpu_us_per_update: number;
  /** The whole machine's busy cores in the measured window (of machine_cores). */
  machine_busy_cores: number;
}

/** CPU of `pids` and of the machine now, to difference over a window. */
function cpuMark(pids: readonly number[]): { procs_s: number; busy: number; total: number; cpus: number } {
  const m = machineCpu();
  return { procs_s: pids.reduce((a, p) => a + procCpuSeconds(p), 0), busy: m.total - m.idle, total: m.total, cpus: m.cpus };
}

async function tempest(root: string): Promise<{ points: (Point & { p50_delivered_ms: number; p50_acknowledged_ms: number })[] }> {
  const ports = await freePorts(12);
  const ids = Array.from({ length: MEMBERS }, (_, i) => i);
  const members: MemberInfo[] = ids.map((i) => ({ id: i, ip: '127.0.0.1', gms_port: ports[4 * i]!, fabric_port: ports[4 * i + 1]!, state_transfer_port: ports[4 * i + 2]!, external_port: ports[4 * i + 3]! }));
  const procs = members.map((m) => Child.start(FIXTURE, { self: m, leader: members[0]!, data_dir: join(root, `node${m.id}`), overrides: OVERRIDES } satisfies CacheProcessArgs, { TEMPEST_LOG_LEVEL: 'warn' }));
  const ask = (i: number, cmd: object, type: string, timeout_ms: number): Promise<Msg> => {
    const c = procs[i]!;
    const seen = c.inbox.length;
    c.send(cmd);
    return c.waitFor((m) => (m.type === type || m.type === 'cmd-failed') && c.inbox.indexOf(m) >= seen, timeout_ms, type).then((m) => {
      if (m.type === 'cmd-failed') throw new Error(`member ${i}: ${String(m.message)}`);
      return m;
    });
  };
  try {
    await Promise.all(procs.map((c) => c.waitType('ready', 60_000)));
    await Promise.all(procs.map((c) => c.waitFor((m) => (m.type === 'view' || m.type === 'ready') && (m.view as { members: unknown[] } | null)?.members.length === MEMBERS, 60_000, `a view of ${MEMBERS}`)));
    progress(`tempest: ${MEMBERS} member(s) up; warming up`);
    await Promise.all(ids.map((i) => ask(i, { cmd: 'puts', count: 600, prefix: `w${i}-`, concurrency: 16, value_bytes: VALUE_BYTES }, 'puts-done', 120_000)));
    const points = [];
    for (const c of concurrencies) {
      // Spread over the 3 senders; one update at a time uses one sender.
      const per = ids.map((i) => Math.floor(c / MEMBERS) + (i < c % MEMBERS ? 1 : 0)).filter((x) => x > 0);
      // CPU over the measured window (the members measure the same window from their own clocks).
      const marks: ReturnType<typeof cpuMark>[] = [];
      const timers = [setTimeout(() => marks.push(cpuMark(procs.map((p) => p.pid))), WARMUP_MS), setTimeout(() => marks.push(cpuMark(procs.map((p) => p.pid))), WARMUP_MS + DURATION_MS)];
      const done = await Promise.all(
        per.map((cc, i) =>
          ask(i, { cmd: 'puts', count: MAX_PUTS_PER_SENDER, prefix: `c${c}-${i}-`, concurrency: cc, value_bytes: VALUE_BYTES, return_latencies: true, warmup_ms: WARMUP_MS, duration_ms: DURATION_MS }, 'puts-done', WARMUP_MS + DURATION_MS + 120_000),
        ),
      );
      const seconds = DURATION_MS / 1000;
      for (const t of timers) clearTimeout(t);
      if (marks.length < 2) marks.push(cpuMark(procs.map((p) => p.pid)));
      const lat = new Float64Array(done.flatMap((d) => d.latencies_ms as number[])).sort();
      const ops = done.reduce((a, d) => a + (d.acked as number), 0);
      const failed = done.reduce((a, d) => a + (d.failed as number), 0);
      if (failed > 0) throw new Error(`${failed} updates failed: ${JSON.stringify(done.map((d) => d.failures))}`);
      const [m0, m1] = [marks[0]!, marks[1]!];
      const cpu = { cpu_us_per_update: ((m1.procs_s - m0.procs_s) * 1e6) / ops, machine_busy_cores: (m1.cpus * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total) };
      const p = { concurrency: c, ops, rate_per_s: ops / seconds, p50_ms: percentile(lat, 0.5), p99_ms: percentile(lat, 0.99), ...cpu, p50_delivered_ms: Math.max(...done.map((d) => d.p50_delivered_ms as number)), p50_acknowledged_ms: Math.max(...done.map((d) => d.p50_acknowledged_ms as number)) };
      progress(`tempest: concurrency ${c}: ${Math.round(p.rate_per_s)} updates/s, p50 ${p.p50_ms.toFixed(2)} ms, p99 ${p.p99_ms.toFixed(2)} ms (delivered p50 ${p.p50_delivered_ms.toFixed(2)}, persisted everywhere p50 ${p.p50_acknowledged_ms.toFixed(2)}; ${Math.round(p.cpu_us_per_update)} µs CPU per update in all members, machine ${p.machine_busy_cores.toFixed(2)} cores busy)`);
      points.push(p);
    }
    return { points };
  } finally {
    await killAll(procs);
  }
}

async function etcd(root: string): Promise<{ points: Point[]; version: string | null }> {
  const bin = ensureEtcd(progress);
  let cluster: EtcdCluster | null = null;
  for (let attempt = 0; cluster === null; attempt++) {
    const base = 20_000 + 2 * Math.floor(Math.random() * 10_000);
    try {
      cluster = await startEtcdCluster({ dir: join(root, 'etcd'), base_port: base, bin, log: () => {} });
    } catch (err) {
      if (attempt >= 5 || (err as { code?: string }).code !== 'ETCD_PORT_IN_USE') throw err;
    }
  }
  try {
    const points: Point[] = [];
    for (const c of concurrencies) {
      const r = await runEtcdPutLoad({ endpoints: cluster.endpoints, value_bytes: VALUE_BYTES, concurrency: c, warmup_ms: WARMUP_MS, duration_ms: DURATION_MS, pids: cluster.pids });
      if (r.errors > 0) progress(`etcd: ${r.errors} puts failed (${r.first_error})`);
      progress(`etcd:    concurrency ${c}: ${Math.round(r.rate_per_s)} puts/s, p50 ${r.p50_ms.toFixed(2)} ms, p99 ${r.p99_ms.toFixed(2)} ms (other load on the machine: ${r.cpu_cores.other.toFixed(2)} cores)`);
      const etcdCores = r.cpu_cores.client + (r.cpu_cores.etcd ?? []).reduce((a, b) => a + b, 0);
      points.push({ concurrency: c, ops: r.ops, rate_per_s: r.rate_per_s, p50_ms: r.p50_ms, p99_ms: r.p99_ms, cpu_us_per_update: (etcdCores * r.measured_s * 1e6) / r.ops, machine_busy_cores: r.cpu_cores.machine_busy });
      progress(`etcd:    concurrency ${c}: ${Math.round(points.at(-1)!.cpu_us_per_update)} µs CPU per put in etcd and its client`);
    }
    return { points, version: cluster.version };
  } finally {
    await cluster.stop();
  }
}

const root = mkdtempSync(join(tmpdir(), 'tempest-bench-persist-'));
try {
  ensureEtcd(progress); // first: it may install the package
  const ours = await tempest(join(root, 'tempest'));
  const theirs = await etcd(root);
  const hi = concurrencies.reduce((a, b) => Math.max(a, b));
  const o = ours.points.find((p) => p.concurrency === hi)!;
  const e = theirs.points.find((p) => p.concurrency === hi)!;
  const o1 = ours.points.find((p) => p.concurrency === 1);
  const e1 = theirs.points.find((p) => p.concurrency === 1);
  process.stderr.write(`\n${'concurrency'.padEnd(12)}${'tempest/s'.padStart(11)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'etcd/s'.padStart(10)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}\n`);
  for (const c of concurrencies) {
    const a = ours.points.find((p) => p.concurrency === c)!;
    const b = theirs.points.find((p) => p.concurrency === c)!;
    process.stderr.write(`${String(c).padEnd(12)}${String(Math.round(a.rate_per_s)).padStart(11)}${a.p50_ms.toFixed(2).padStart(9)}${a.p99_ms.toFixed(2).padStart(9)}${String(Math.round(b.rate_per_s)).padStart(10)}${b.p50_ms.toFixed(2).padStart(9)}${b.p99_ms.toFixed(2).padStart(9)}\n`);
  }
  const summary = {
    bench: 'persist',
    members: MEMBERS,
    value_bytes: VALUE_BYTES,
    durability: 'tempest: fdatasync on every member before acknowledging (group commit per event-loop turn); etcd: WAL fsync on a majority',
    etcd_version: theirs.version,
    tempest_config: OVERRIDES.map((o) => o.slice(2)),
    tempest: ours.points.map((p) => ({ ...p, rate_per_s: round(p.rate_per_s, 0), p50_ms: round(p.p50_ms), p99_ms: round(p.p99_ms), p50_delivered_ms: round(p.p50_delivered_ms), p50_acknowledged_ms: round(p.p50_acknowledged_ms), cpu_us_per_update: round(p.cpu_us_per_update, 1), machine_busy_cores: round(p.machine_busy_cores) })),
    etcd: theirs.points.map((p) => ({ ...p, rate_per_s: round(p.rate_per_s, 0), p50_ms: round(p.p50_ms), p99_ms: round(p.p99_ms), cpu_us_per_update: round(p.cpu_us_per_update, 1), machine_busy_cores: round(p.machine_busy_cores) })),
    ratios_at_concurrency: hi,
    ratios: {
      rate_vs_etcd: round(o.rate_per_s / e.rate_per_s, 3),
      p50_vs_etcd: round(o.p50_ms / e.p50_ms, 3),
      ...(o1 && e1 ? { p50_c1_vs_etcd: round(o1.p50_ms / e1.p50_ms, 3) } : {}),
    },
    goals: { rate_vs_etcd: '>= 10', p50_vs_etcd: '<= 0.5' },
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
