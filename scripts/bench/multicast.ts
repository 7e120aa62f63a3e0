/**
 * npm run bench:multicast — ordered multicast (engine/multicast/group.ts) across 3 real member
 * processes on 127.0.0.1 (libfabric tcp), with a Node `net` baseline from the same run:
 *   1. 1 KiB ordered message rate, all 3 sending and one sending, each sender keeping its window
 *      full for --seconds after a 1 s warm-up (delivered msg/s, the minimum over members), with
 *      delivery latency p50/p99 at that saturation; then latency at a paced offered load (all 3
 *      sending, 30,000 msg/s in total). Bonus: one of a 3-sender group sending (the others send
 *      nulls).
 *   2. RDMC bandwidth of 1 MiB, 16 MiB and 256 MiB messages from member 0, one at a time: time
 *      from just before reserve() to the last receiver's delivery; size / median time.
 *   3. Node `net` single-stream loopback bandwidth (scripts/bench/net-peer.ts), 1 MiB writes.
 *   4. Peak RSS (VmRSS sampled every 500 ms) and CPU seconds per member per phase.
 *   5. --soak-seconds=N: 3 members sending 1 KiB at a paced 20,000 msg/s in total for N s,
 *      RSS sampled every 10 s after a 30 s warm-up.
 * Group settings are config/tempest.ini's defaults unless a phase needs otherwise (RDMC phase:
 * max_payload_size 256 MiB). Progress goes to stderr, a table to stdout, and the last stdout line
 * is one JSON object. Exit code 0 when goals are missed (they are reported), non-zero on errors.
 *
 * Options: --seconds=N (default 5)  --soak-seconds=N (default 0: skip)  --quick (smoke run)
 * TEMPEST_BENCH_PROF=1 makes each member write a CPU profile of every load phase (see multicast-peer.ts).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/load.js';
import type { MulticastSettings } from '../../engine/multicast/group.js';
import { Child, freePorts, killAll, type Msg } from '../lib/child.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '../../..');
const PEER = join(here, 'multicast-peer.js');
const NET_PEER = join(here, 'net-peer.js');

function usage(problem: string): never {
  process.stderr.write(`bench:multicast: ${problem}\nusage: npm run bench:multicast -- [--seconds=N] [--soak-seconds=N] [--quick]\n`);
  process.exit(2);
}
let parsed;
try {
  parsed = parseArgs({
    options: {
      seconds: { type: 'string' },
      'soak-seconds': { type: 'string', default: '0' },
      quick: { type: 'boolean', default: false },
      sweep: { type: 'boolean', default: false },
    },
  });
} catch (err) {
  usage((err as Error).message);
}
const opts = parsed.values;
const quick = opts.quick!;
const seconds = Number(opts.seconds ?? (quick ? '1' : '5'));
const soakSeconds = Number(opts['soak-seconds']);
if (!Number.isFinite(seconds) || seconds <= 0) usage('--seconds takes a positive number of seconds');
if (!Number.isFinite(soakSeconds) || soakSeconds < 0) usage('--soak-seconds takes a number of seconds (0 skips the soak)');

const KiB = 1024;
const MiB = 1024 * KiB;
const WARMUP_MS = quick ? 500 : 1000;
const WAIT_MS = 120_000;
const SAMPLE_EVERY = 16;
const PACED_TOTAL = 30_000;
const SOAK_TOTAL = 20_000;
const RDMC_RUNS = quick
  ? [{ label: '1MiB', size: MiB, n: 8 }, { label: '16MiB', size: 16 * MiB, n: 4 }, { label: '256MiB', size: 256 * MiB, n: 2 }]
  : [{ label: '1MiB', size: MiB, n: 64 }, { label: '16MiB', size: 16 * MiB, n: 16 }, { label: '256MiB', size: 256 * MiB, n: 4 }];
const NET_BYTES = quick ? 256 * MiB : 1024 * MiB;

const progress = (s: string) => process.stderr.write(`bench:multicast  ${s}\n`);
const round = (x: number, digits = 3) => Number(x.toFixed(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- configuration --------------------------------------------------------------------------------

const cfg = loadConfig({ file: join(ROOT, 'config/tempest.ini') });
const D = cfg.DERECHO;
const baseSettings: MulticastSettings = {
  name: 'bench',
  senders: [0, 1, 2],
  mode: 'ordered',
  max_payload_size: D.max_payload_size,
  max_smc_payload_size: D.max_smc_payload_size,
  block_size: D.block_size,
  window_size: D.window_size,
  rdmc_send_algorithm: D.rdmc_send_algorithm,
};
const memberOptions = {
  provider: cfg.RDMA.provider,
  domain: cfg.RDMA.domain,
  tx_depth: cfg.RDMA.tx_depth,
  rx_depth: cfg.RDMA.rx_depth,
  heartbeat_ms: D.heartbeat_ms,
  // Larger than the config's 1 s: 3 busy members on a small machine must not suspect each other.
  timeout_ms: Math.max(D.timeout_ms, 10_000),
  // The point-to-point messenger as a real member sizes it (its buffers count towards RSS).
  messenger: { slot_size_bytes: D.max_p2p_request_payload_size, slots_per_peer: D.p2p_window_size, send_timeout_ms: 30_000 },
};

// ---- helpers ----------------------------------------------------------------------------------

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

/** Resident set size in MB (1e6 bytes) from /proc/<pid>/status VmRSS, NaN when gone. */
function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / 1e6 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const rssPeak: Record<string, number[]> = {};
const cpuUsed: Record<string, number[]> = {};

/** Samples VmRSS every 500 ms and CPU at start and end of a phase. */
class PhaseMonitor {
  private readonly peak: number[];
  private readonly cpu0: number[];
  private readonly timer: NodeJS.Timeout;
  constructor(
    readonly name: string,
    readonly procs: Child[],
  ) {
    this.peak = procs.map(() => 0);
    this.cpu0 = procs.map((p) => cpuSeconds(p.pid));
    this.sample();
    this.timer = setInterval(() => this.sample(), 500);
    this.timer.unref();
  }
  private sample(): void {
    this.procs.forEach((p, i) => {
      const r = rssMB(p.pid);
      if (r > this.peak[i]!) this.peak[i] = r;
    });
  }
  stop(): void {
    clearInterval(this.timer);
    this.sample();
    rssPeak[this.name] = this.peak.map((x) => round(x, 1));
    cpuUsed[this.name] = this.procs.map((p, i) => round(cpuSeconds(p.pid) - this.cpu0[i]!, 2));
  }
}

const all: Child[] = [];
const warnings: string[] = [];

/** The next message from `c` matching `pred` (removed from its inbox); fails on an error message, exit or timeout. */
function take(c: Child, what: string, pred: (m: Msg) => boolean, timeout_ms = WAIT_MS): Promise<Msg> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) =>
      reject(new Error(`pid ${c.pid} exited (code ${code}, signal ${signal}) while the benchmark waited for ${what}; stderr tail:\n${c.stderr.slice(-3000)}`));
    if (c.exited) {
      onExit(c.exited.code, c.exited.signal);
      return;
    }
    c.child.once('exit', onExit);
    c.waitFor((m) => m.type === 'error' || pred(m), timeout_ms, what).then(
      (m) => {
        c.child.off('exit', onExit);
        if (m.type === 'error') {
          reject(new Error(`pid ${c.pid} failed: ${String(m.message)}`));
          return;
        }
        c.inbox.splice(c.inbox.indexOf(m), 1);
        resolve(m);
      },
      (err: unknown) => {
        c.child.off('exit', onExit);
        reject(err as Error);
      },
    );
  });
}
const takeType = (c: Child, type: string, timeout_ms = WAIT_MS) => take(c, `"${type}" message`, (m) => m.type === type, timeout_ms);

async function startSet(set: string, settings: MulticastSettings, n = 3): Promise<Child[]> {
  const ports = await freePorts(2 * n);
  const members = Array.from({ length: n }, (_, id) => id).map((id) => ({ id, ip: '127.0.0.1', port: ports[2 * id]!, fabric_port: ports[2 * id + 1]! }));
  const procs = members.map((self) => Child.start(PEER, { set, self, members, settings, member: memberOptions }));
  all.push(...procs);
  await Promise.all(procs.map((p) => takeType(p, 'ready', 60_000)));
  return procs;
}

async function stopSet(procs: Child[]): Promise<void> {
  for (const p of procs) {
    for (const m of p.inbox) if (m.type === 'suspect') warnings.push(`member pid ${p.pid} suspected member ${String(m.id)}: ${String(m.reason)}`);
  }
  for (const p of procs) if (!p.exited) p.send({ cmd: 'close' });
  await Promise.all(procs.map((p) => p.waitExit(20_000).catch(() => warnings.push(`pid ${p.pid} did not close within 20 s; killed`))));
  await killAll(procs);
}

interface LoadResult {
  /** Delivered msg/s over the measured interval, per member. */
  rates: number[];
  /** Latency samples of every member, sorted, ms. */
  latency: Float64Array;
  sent: number[];
  sentByMeasureEnd: number[];
  measureSeconds: number;
  nulls: number[];
  profiles: string[];
}

/**
 * One load phase on a set: members in `senders` send `size`-byte messages (window full, or paced at
 * rate_per_s each) from t0 for warmup_ms + measure_ms; then every message sent is drained.
 */
async function loadPhase(
  procs: Child[],
  phase: string,
  o: { senders: number[]; rate_per_s: number; size: number; warmup_ms: number; measure_ms: number; sample_every: number },
  during?: (t0: bigint) => Promise<void>,
): Promise<LoadResult> {
  const t0 = process.hrtime.bigint() + 500_000_000n;
  procs.forEach((p, i) =>
    p.send({
      cmd: 'load',
      phase,
      t0: String(t0),
      warmup_ms: o.warmup_ms,
      measure_ms: o.measure_ms,
      send: o.senders.includes(i),
      rate_per_s: o.rate_per_s,
      size: o.size,
      sample_every: o.sample_every,
    }),
  );
  const budget = 500 + o.warmup_ms + o.measure_ms + WAIT_MS;
  const [done] = await Promise.all([Promise.all(procs.map((p) => takeType(p, 'load-done', budget))), during ? during(t0) : Promise.resolve()]);
  const sent = done.map((d) => Number(d.sent));
  const total = sent.reduce((a, b) => a + b, 0);
  procs.forEach((p) => p.send({ cmd: 'drain', expected: total }));
  await Promise.all(procs.map((p) => takeType(p, 'drained')));
  const parts = done.map((d) => d.samples as number[]);
  const latency = new Float64Array(parts.reduce((a, s) => a + s.length, 0));
  let at = 0;
  for (const s of parts) {
    latency.set(s, at);
    at += s.length;
  }
  latency.sort();
  return {
    rates: done.map((d) => Number(d.delivered) / Number(d.seconds)),
    latency,
    sent,
    sentByMeasureEnd: done.map((d) => Number(d.sent_by_measure_end)),
    measureSeconds: Math.min(...done.map((d) => Number(d.seconds))),
    nulls: done.map((d) => Number(d.nulls)),
    profiles: done.map((d) => d.profile as string | null).filter((f): f is string => typeof f === 'string'),
  };
}

const lat = (r: LoadResult) => ({ p50: round(percentile(r.latency, 0.5), 3), p99: round(percentile(r.latency, 0.99), 3), samples: r.latency.length });

async function netBandwidth(): Promise<number> {
  const procs = [0, 1].map(() => Child.start(NET_PEER, {}));
  all.push(...procs);
  try {
    await Promise.all(procs.map((p) => takeType(p, 'ready', 10_000)));
    const [sender, receiver] = procs as [Child, Child];
    const mon = new PhaseMonitor('net (sender, receiver)', procs);
    receiver.send({ cmd: 'listen' });
    const { port } = await takeType(receiver, 'listening', 10_000);
    sender.send({ cmd: 'connect', port });
    await takeType(sender, 'connected', 10_000);
    receiver.send({ cmd: 'expect', bytes: NET_BYTES });
    sender.send({ cmd: 'stream', count: NET_BYTES / MiB, size: MiB });
    const r = await takeType(sender, 'result');
    mon.stop();
    return NET_BYTES / (Number(r.seconds) * 1e9);
  } finally {
    await killAll(procs);
  }
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wall0 = performance.now();
  const measure_ms = seconds * 1000;
  const full = { rate_per_s: 0, size: KiB, warmup_ms: WARMUP_MS, measure_ms, sample_every: SAMPLE_EVERY };
  const profiles: string[] = [];

  // ---- 1. ordered 1 KiB: all sending, paced latency, one of 3 sending ---------------------------------
  progress(`starting 3 members (senders 0,1,2; window ${baseSettings.window_size}, SMC <= ${baseSettings.max_smc_payload_size} B, provider ${memberOptions.provider})`);
  let set = await startSet('all', baseSettings);
  progress(`1 KiB ordered, all 3 sending, window full: ${WARMUP_MS / 1000} s warm-up + ${seconds} s`);
  let mon = new PhaseMonitor('ordered_1KiB_all', set);
  const fullAll = await loadPhase(set, 'full_all', { ...full, senders: [0, 1, 2] });
  mon.stop();
  profiles.push(...fullAll.profiles);
  progress(`1 KiB ordered, all 3 sending, paced at ${PACED_TOTAL} msg/s in total: ${WARMUP_MS / 1000} s warm-up + ${seconds} s`);
  mon = new PhaseMonitor('paced_30k_all', set);
  const paced = await loadPhase(set, 'paced_all', { ...full, senders: [0, 1, 2], rate_per_s: PACED_TOTAL / 3 });
  mon.stop();
  profiles.push(...paced.profiles);
  progress(`1 KiB ordered, 3 senders in the group, only member 0 sending (others send nulls): ${WARMUP_MS / 1000} s + ${seconds} s`);
  mon = new PhaseMonitor('ordered_1KiB_one_of_3_senders', set);
  const oneOf3 = await loadPhase(set, 'one_of_3', { ...full, senders: [0] });
  mon.stop();
  profiles.push(...oneOf3.profiles);
  await stopSet(set);

  progress('1 KiB ordered, a one-sender group (member 0), window full');
  set = await startSet('one', { ...baseSettings, senders: [0] });
  mon = new PhaseMonitor('ordered_1KiB_one', set);
  const fullOne = await loadPhase(set, 'full_one', { ...full, senders: [0] });
  mon.stop();
  profiles.push(...fullOne.profiles);
  await stopSet(set);

  // ---- 2. RDMC bandwidth ----------------------------------------------------------------------------
  const rdmcSettings = { ...baseSettings, senders: [0], max_payload_size: Math.max(baseSettings.max_payload_size, 256 * MiB) };
  progress(`RDMC: one sender, max_payload_size ${rdmcSettings.max_payload_size / MiB} MiB, ${RDMC_RUNS.map((r) => `${r.n} x ${r.label}`).join(', ')} (+1 warm-up each)`);
  set = await startSet('rdmc', rdmcSettings);
  mon = new PhaseMonitor('rdmc', set);
  const [sender] = set as [Child, Child, Child];
  let seq = 0;
  const rdmc: Record<string, { median_ms: number; min_ms: number; max_ms: number; GBps: number; n: number }> = {};
  for (const run of RDMC_RUNS) {
    const times: number[] = [];
    for (let j = -1; j < run.n; j++) {
      const s = seq++;
      sender.send({ cmd: 'rdmc-send', seq: s, size: run.size });
      const sent = await take(sender, `rdmc-sent ${s}`, (m) => m.type === 'rdmc-sent' && m.seq === s);
      const got = await Promise.all(set.map((p) => take(p, `rdmc-delivered ${s}`, (m) => m.type === 'rdmc-delivered' && m.seq === s)));
      for (const g of got) if (g.size !== run.size) throw new Error(`RDMC message ${s}: delivered ${String(g.size)} bytes, sent ${run.size}`);
      const last = got.slice(1).reduce((a, g) => (BigInt(g.t as string) > a ? BigInt(g.t as string) : a), 0n);
      if (j >= 0) times.push(Number(last - BigInt(sent.t0 as string)) / 1e9);
    }
    const med = median(times);
    rdmc[run.label] = {
      median_ms: round(med * 1e3, 2),
      min_ms: round(Math.min(...times) * 1e3, 2),
      max_ms: round(Math.max(...times) * 1e3, 2),
      GBps: round(run.size / (med * 1e9)),
      n: run.n,
    };
    progress(`  RDMC ${run.label}: median ${rdmc[run.label]!.median_ms} ms, ${rdmc[run.label]!.GBps} GB/s`);
  }
  mon.stop();
  await stopSet(set);

  // ---- 3. Node net ----------------------------------------------------------------------------------
  progress(`node net: ${NET_BYTES / MiB} MiB in 1 MiB writes, one stream on loopback`);
  const netGBps = await netBandwidth();

  // ---- 5. soak ---------------------------------------------------------------------------------------
  let soak: Record<string, unknown> | null = null;
  if (soakSeconds > 0) {
    const warm = soakSeconds > 40 ? 30 : Math.floor(soakSeconds / 3);
    progress(`soak: 3 members all sending 1 KiB, paced ${SOAK_TOTAL} msg/s in total, ${soakSeconds} s, RSS every 10 s after ${warm} s`);
    set = await startSet('soak', baseSettings);
    mon = new PhaseMonitor('soak', set);
    const series: number[][] = set.map(() => []);
    const heap: number[][] = set.map(() => []);
    const soakRun = await loadPhase(
      set,
      'soak',
      { senders: [0, 1, 2], rate_per_s: SOAK_TOTAL / 3, size: KiB, warmup_ms: warm * 1000, measure_ms: (soakSeconds - warm) * 1000, sample_every: 64 },
      async (t0) => {
        for (let t = warm; t <= soakSeconds; t += 10) {
          const at = t0 + BigInt(t) * 1_000_000_000n;
          await sleep(Math.max(0, Number(at - process.hrtime.bigint()) / 1e6));
          set.forEach((p, i) => series[i]!.push(round(rssMB(p.pid), 1)));
          // Live JS heap after a full GC: a leak of JS objects shows here before RSS moves.
          const used = await Promise.all(set.map((p) => {
            p.send({ cmd: 'heap' });
            return takeType(p, 'heap', 30_000);
          }));
          used.forEach((m, i) => heap[i]!.push(round(m.used_MB as number, 2)));
        }
      },
    );
    mon.stop();
    profiles.push(...soakRun.profiles);
    await stopSet(set);
    const first = series.map((s) => s[0] ?? Number.NaN);
    const last = series.map((s) => s[s.length - 1] ?? Number.NaN);
    soak = {
      seconds: soakSeconds,
      warmup_s: warm,
      offered_msgs_per_s: SOAK_TOTAL,
      delivered_msgs_per_s: Math.round(Math.min(...soakRun.rates)),
      latency_ms: lat(soakRun),
      rss_MB: {
        first,
        last,
        max: series.map((s) => Math.max(...s)),
        growth: first.map((f, i) => round(last[i]! / f - 1, 4)),
        samples: series,
      },
      heap_used_MB_after_gc: { first: heap.map((h) => h[0]), last: heap.map((h) => h[h.length - 1]), samples: heap },
      cpu_s: cpuUsed.soak,
    };
  }

  // ---- report ----------------------------------------------------------------------------------------
  const minRate = (r: LoadResult) => Math.round(Math.min(...r.rates));
  const rdmcGB = (label: string) => rdmc[label]!.GBps;
  const pacedOffered = Math.round(paced.sentByMeasureEnd.reduce((a, b) => a + b, 0) / (WARMUP_MS / 1000 + seconds));
  const summary = {
    bench: 'multicast',
    rates: {
      ordered_1KiB_all_msgs_per_s: minRate(fullAll),
      ordered_1KiB_one_msgs_per_s: minRate(fullOne),
      ordered_1KiB_one_of_3_senders_msgs_per_s: minRate(oneOf3),
      paced_all_offered_msgs_per_s: pacedOffered,
      paced_all_delivered_msgs_per_s: minRate(paced),
      per_member: {
        ordered_1KiB_all: fullAll.rates.map((x) => Math.round(x)),
        ordered_1KiB_one: fullOne.rates.map((x) => Math.round(x)),
        ordered_1KiB_one_of_3_senders: oneOf3.rates.map((x) => Math.round(x)),
        paced_30k_all: paced.rates.map((x) => Math.round(x)),
      },
    },
    latency_ms: {
      window_full_all: lat(fullAll),
      window_full_one: lat(fullOne),
      window_full_one_of_3_senders: lat(oneOf3),
      paced_30k_all: lat(paced),
    },
    bandwidth_GBps: { rdmc_1MiB: rdmcGB('1MiB'), rdmc_16MiB: rdmcGB('16MiB'), rdmc_256MiB: rdmcGB('256MiB'), net: round(netGBps) },
    ratios: {
      rdmc_256MiB_vs_net: round(rdmcGB('256MiB') / netGBps),
      rdmc_16MiB_vs_net: round(rdmcGB('16MiB') / netGBps),
      rdmc_1MiB_vs_net: round(rdmcGB('1MiB') / netGBps),
    },
    rdmc: rdmc,
    rss_MB: rssPeak,
    cpu_s: cpuUsed,
    soak,
    goals: {
      'rdmc_256MiB_vs_net>=0.4': rdmcGB('256MiB') / netGBps >= 0.4,
      'ordered_1KiB_all>=50000': minRate(fullAll) >= 50_000,
      'p50_latency_ms<2': percentile(paced.latency, 0.5) < 2,
    },
    goal_notes: { p50_latency_ms: 'paced_30k_all (all 3 sending, 30,000 msg/s offered in total)' },
    settings: {
      members: 3,
      provider: memberOptions.provider,
      domain: memberOptions.domain,
      window_size: baseSettings.window_size,
      max_smc_payload_size: baseSettings.max_smc_payload_size,
      max_payload_size: baseSettings.max_payload_size,
      rdmc_max_payload_size: rdmcSettings.max_payload_size,
      block_size: baseSettings.block_size,
      rdmc_send_algorithm: baseSettings.rdmc_send_algorithm,
      seconds,
      warmup_s: WARMUP_MS / 1000,
      latency_sample_every: SAMPLE_EVERY,
      net_bytes: NET_BYTES,
      quick,
    },
    nulls_sent: { ordered_1KiB_one_of_3_senders: oneOf3.nulls },
    warnings,
    wall_s: round((performance.now() - wall0) / 1000, 1),
  };

  const fmtRow = (cells: (string | number)[], widths: number[]) => cells.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd();
  const W = [44, 14, 12, 12];
  const L = summary.latency_ms;
  const out: string[] = [];
  out.push(`multicast benchmark: 3 members on 127.0.0.1, provider ${memberOptions.provider}, window ${baseSettings.window_size}, ${seconds} s per rate phase`);
  out.push('');
  out.push(fmtRow(['1 KiB ordered', 'msg/s (min)', 'p50 ms', 'p99 ms'], W));
  out.push(fmtRow(['all 3 sending, window full', summary.rates.ordered_1KiB_all_msgs_per_s, L.window_full_all.p50, L.window_full_all.p99], W));
  out.push(fmtRow(['one-sender group, window full', summary.rates.ordered_1KiB_one_msgs_per_s, L.window_full_one.p50, L.window_full_one.p99], W));
  out.push(fmtRow(['3-sender group, only member 0 sending', summary.rates.ordered_1KiB_one_of_3_senders_msgs_per_s, L.window_full_one_of_3_senders.p50, L.window_full_one_of_3_senders.p99], W));
  out.push(fmtRow([`all 3 sending, paced (offered ${pacedOffered}/s)`, summary.rates.paced_all_delivered_msgs_per_s, L.paced_30k_all.p50, L.paced_30k_all.p99], W));
  out.push('');
  out.push(fmtRow(['bandwidth (one sender, 2 receivers)', 'GB/s', 'median ms', 'vs net'], W));
  for (const run of RDMC_RUNS) {
    const r = rdmc[run.label]!;
    out.push(fmtRow([`RDMC ${run.label} x ${run.n}`, r.GBps, r.median_ms, round(r.GBps / netGBps)], W));
  }
  out.push(fmtRow([`node net, ${NET_BYTES / MiB} MiB in 1 MiB writes`, round(netGBps), '', 1], W));
  out.push('');
  out.push(fmtRow(['phase', 'peak RSS MB', 'CPU s'], [44, 26, 20]));
  for (const name of Object.keys(rssPeak)) out.push(fmtRow([name, rssPeak[name]!.join(' / '), cpuUsed[name]!.join(' / ')], [44, 26, 20]));
  if (soak) {
    const r = soak.rss_MB as { first: number[]; last: number[]; max: number[]; growth: number[] };
    out.push('');
    out.push(`soak ${soakSeconds} s at ${SOAK_TOTAL} msg/s: delivered ${String(soak.delivered_msgs_per_s)} msg/s, latency p50 ${(soak.latency_ms as { p50: number }).p50} ms p99 ${(soak.latency_ms as { p99: number }).p99} ms`);
    out.push(`  RSS MB first ${r.first.join(' / ')}, last ${r.last.join(' / ')}, max ${r.max.join(' / ')}, growth ${r.growth.map((g) => `${(g * 100).toFixed(1)}%`).join(' / ')}`);
  } else {
    out.push('soak: skipped (--soak-seconds=N to run it)');
  }
  out.push('');
  out.push(`goals: ${Object.entries(summary.goals).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join(', ')}`);
  for (const w of warnings) out.push(`warning: ${w}`);
  if (profiles.length > 0) progress(`CPU profiles written:\n  ${profiles.join('\n  ')}`);
  out.push(JSON.stringify(summary));
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---- --sweep: throughput against message size and against group size -------------------------------

/** SMC sizes (up to max_smc_payload_size) for the ordered sweep; RDMC sizes come from its own phase. */
const SWEEP_SIZES = [64, 256, KiB, 4 * KiB, 10 * KiB];
const SWEEP_MEMBERS = [3, 5, 7];

/**
 * Every member sending with its window full, for each SMC size at 3 members and for 1 KiB at 3, 5
 * and 7 members; then RDMC 1 and 16 MiB from one sender to the others at each group size; and
 * Node net in the same run as the baseline. Delivered bytes/s is the minimum over members.
 */
async function sweep(): Promise<void> {
  const measure_ms = seconds * 1000;
  const bySize: { size_bytes: number; members: number; msgs_per_s: number; MBps: number; p50_ms: number }[] = [];
  const byMembers: { members: number; size_bytes: number; msgs_per_s: number; MBps: number; rdmc_1MiB_MBps: number; rdmc_16MiB_MBps: number }[] = [];
  const point = async (n: number, size: number): Promise<{ msgs_per_s: number; MBps: number; p50_ms: number }> => {
    // Every member a sender: baseSettings names the 3 of the default layout.
    const set = await startSet(`sweep-${n}-${size}`, { ...baseSettings, senders: Array.from({ length: n }, (_, i) => i) }, n);
    try {
      const r = await loadPhase(set, `sweep_${n}_${size}`, { senders: set.map((_, i) => i), rate_per_s: 0, size, warmup_ms: WARMUP_MS, measure_ms, sample_every: SAMPLE_EVERY });
      const msgs = Math.min(...r.rates);
      return { msgs_per_s: Math.round(msgs), MBps: round((msgs * size) / 1e6, 1), p50_ms: round(percentile(r.latency, 0.5), 3) };
    } finally {
      await stopSet(set);
    }
  };
  const rdmcAt = async (n: number): Promise<{ rdmc_1MiB_MBps: number; rdmc_16MiB_MBps: number }> => {
    const set = await startSet(`sweep-rdmc-${n}`, { ...baseSettings, senders: [0] }, n);
    try {
      const out: number[] = [];
      let seq = 0;
      for (const size of [MiB, 16 * MiB]) {
        const times: number[] = [];
        for (let j = -1; j < (quick ? 2 : 5); j++) {
          const s = seq++;
          set[0]!.send({ cmd: 'rdmc-send', seq: s, size });
          const sent = await take(set[0]!, `rdmc-sent ${s}`, (m) => m.type === 'rdmc-sent' && m.seq === s);
          const got = await Promise.all(set.map((p) => take(p, `rdmc-delivered ${s}`, (m) => m.type === 'rdmc-delivered' && m.seq === s)));
          const last = got.slice(1).reduce((a, g) => (BigInt(g.t as string) > a ? BigInt(g.t as string) : a), 0n);
          if (j >= 0) times.push(Number(last - BigInt(sent.t0 as string)) / 1e9);
        }
        out.push(round(size / median(times) / 1e6, 1));
      }
      return { rdmc_1MiB_MBps: out[0]!, rdmc_16MiB_MBps: out[1]! };
    } finally {
      await stopSet(set);
    }
  };
  for (const size of SWEEP_SIZES) {
    progress(`sweep: 3 members all sending ${size} B, window full, ${seconds} s`);
    bySize.push({ size_bytes: size, members: 3, ...(await point(3, size)) });
  }
  for (const n of SWEEP_MEMBERS) {
    progress(`sweep: ${n} members all sending 1 KiB, window full, ${seconds} s; then RDMC 1 and 16 MiB from member 0`);
    const p = n === 3 ? bySize.find((b) => b.size_bytes === KiB)! : await point(n, KiB);
    byMembers.push({ members: n, size_bytes: KiB, msgs_per_s: p.msgs_per_s, MBps: p.MBps, ...(await rdmcAt(n)) });
  }
  progress(`node net: ${NET_BYTES / MiB} MiB in 1 MiB writes, one stream on loopback`);
  const netMBps = round((await netBandwidth()) * 1e3, 1);
  const at = (n: number) => byMembers.find((b) => b.members === n)!;
  const summary = {
    bench: 'multicast-sweep',
    seconds_per_point: seconds,
    by_size: bySize,
    by_members: byMembers,
    baseline: { net_MBps: netMBps },
    ratios: {
      ordered_1KiB_7_vs_3_members: round(at(7).msgs_per_s / at(3).msgs_per_s),
      rdmc_16MiB_7_vs_3_members: round(at(7).rdmc_16MiB_MBps / at(3).rdmc_16MiB_MBps),
      rdmc_16MiB_3_members_vs_net: round(at(3).rdmc_16MiB_MBps / netMBps),
    },
    warnings,
  };
  const out = ['multicast sweep (window full, every member sending; MB/s = 10^6 bytes/s delivered at the slowest member)'];
  for (const b of bySize) out.push(`  ${String(b.size_bytes).padStart(6)} B, 3 members: ${b.msgs_per_s} msg/s, ${b.MBps} MB/s, p50 ${b.p50_ms} ms`);
  for (const b of byMembers) out.push(`  ${b.members} members: 1 KiB ${b.msgs_per_s} msg/s; RDMC 1 MiB ${b.rdmc_1MiB_MBps} MB/s, 16 MiB ${b.rdmc_16MiB_MBps} MB/s`);
  out.push(`  node net, one stream: ${netMBps} MB/s`);
  out.push(JSON.stringify(summary));
  process.stdout.write(`${out.join('\n')}\n`);
}

function killEverything(): void {
  for (const p of all) p.kill('SIGKILL');
}
process.on('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killEverything();
    process.exit(130);
  });
}

(opts.sweep ? sweep() : main()).then(
  async () => {
    await killAll(all);
    process.exit(0);
  },
  async (err) => {
    process.stderr.write(`bench:multicast failed: ${(err as Error).stack ?? err}\n`);
    await killAll(all);
    process.exit(1);
  },
);
