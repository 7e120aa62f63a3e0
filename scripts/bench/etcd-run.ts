/**
 * Standalone etcd baseline: a 3-member etcd cluster on 127.0.0.1 (scripts/bench/etcd-baseline.ts)
 * under a closed-loop 1 KiB put load at several concurrencies, to find etcd's best durable update
 * rate on this machine and its latency at concurrency 1 and at that best point.
 *
 *   node dist/scripts/bench/etcd-run.js [--concurrency=1,16,64,256] [--duration-ms=5000]
 *        [--warmup-ms=1000] [--clients-per-endpoint=2] [--keys=100000] [--value-bytes=1024]
 *        [--client=http2|etcd3] [--endpoints=all|leader]
 *        [--base-port=P] [--dir=PARENT]
 *
 * Progress and a table go to stderr; stdout gets one JSON line. The cluster's data dirs are made
 * under --dir (default the OS temp dir) in a fresh directory, removed at the end (kept, with the
 * members' logs, when the run fails). Exit code 0 on success, 1 on errors, 2 on bad arguments.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isTempestError } from '../../engine/util/errors.js';
import { ensureEtcd, etcdLeaderEndpoint, runEtcdPutLoad, startEtcdCluster, type EtcdCluster, type EtcdPutLoadResult } from './etcd-baseline.js';

function usage(problem: string): never {
  process.stderr.write(
    `etcd-run: ${problem}\nusage: node dist/scripts/bench/etcd-run.js [--concurrency=N[,N...]] [--duration-ms=MS] [--warmup-ms=MS] ` +
      '[--clients-per-endpoint=N] [--client=http2|etcd3] [--endpoints=all|leader] [--keys=N] [--value-bytes=N] [--base-port=P] [--dir=PARENT]\n',
  );
  process.exit(2);
}
let parsed;
try {
  parsed = parseArgs({
    options: {
      concurrency: { type: 'string', default: '1,16,64,256' },
      'duration-ms': { type: 'string', default: '5000' },
      'warmup-ms': { type: 'string', default: '1000' },
      'clients-per-endpoint': { type: 'string', default: '2' },
      client: { type: 'string', default: 'http2' },
      endpoints: { type: 'string', default: 'all' },
      keys: { type: 'string', default: '100000' },
      'value-bytes': { type: 'string', default: '1024' },
      'base-port': { type: 'string' },
      dir: { type: 'string' },
    },
  });
} catch (err) {
  usage((err as Error).message);
}
const o = parsed.values;
const posInt = (name: string, s: string | undefined, min = 1): number => {
  const v = Number(s);
  if (!Number.isInteger(v) || v < min) usage(`--${name} takes an integer >= ${min}, got ${s}`);
  return v;
};
const concurrencies = (o.concurrency ?? '').split(',').map((c) => posInt('concurrency', c.trim()));
const durationMs = posInt('duration-ms', o['duration-ms']);
const warmupMs = posInt('warmup-ms', o['warmup-ms'], 0);
const perEndpoint = posInt('clients-per-endpoint', o['clients-per-endpoint']);
const keys = posInt('keys', o.keys);
const valueBytes = posInt('value-bytes', o['value-bytes'], 0);
const clientKind = o.client === 'http2' || o.client === 'etcd3' ? o.client : usage(`--client is http2 or etcd3, got ${o.client}`);
const endpointsMode = o.endpoints === 'all' || o.endpoints === 'leader' ? o.endpoints : usage(`--endpoints is all or leader, got ${o.endpoints}`);
const basePortArg = o['base-port'] === undefined ? undefined : posInt('base-port', o['base-port'], 1024);

const progress = (s: string) => process.stderr.write(`etcd-run  ${s}\n`);
const round = (x: number, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

function fsType(path: string): string {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '--target', path], { encoding: 'utf8' }).trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

let cluster: EtcdCluster | null = null;
let runDir: string | null = null;

async function startWithFreePorts(bin: string, dir: string): Promise<EtcdCluster> {
  for (let attempt = 0; ; attempt++) {
    // An even base in 20000..39998, well away from 2379/2380 and from the ephemeral range.
    const base = basePortArg ?? 20_000 + 2 * Math.floor(Math.random() * 10_000);
    try {
      return await startEtcdCluster({ dir, base_port: base, bin, log: progress });
    } catch (err) {
      if (basePortArg === undefined && attempt < 5 && isTempestError(err, 'ETCD_PORT_IN_USE')) {
        progress(`${(err as Error).message}; trying another`);
        continue;
      }
      throw err;
    }
  }
}

async function main(): Promise<void> {
  const wall0 = performance.now();
  const bin = ensureEtcd(progress);
  const parent = o.dir ?? tmpdir();
  runDir = mkdtempSync(join(parent, 'tempest-etcd-'));
  const fs = fsType(runDir);
  progress(`data dirs under ${runDir} (${fs})`);
  cluster = await startWithFreePorts(bin, runDir);
  progress(`command line of m0: ${bin} ${cluster.args[0]!.join(' ')}`);

  const results: EtcdPutLoadResult[] = [];
  for (const c of concurrencies) {
    // Puts sent to a follower are forwarded to the leader; --endpoints=leader sends them all there.
    const endpoints = endpointsMode === 'leader' ? [await etcdLeaderEndpoint(cluster.endpoints)] : cluster.endpoints;
    progress(`concurrency ${c}: ${warmupMs} ms warm-up + ${durationMs} ms, ${valueBytes} B values, ${keys} keys, ${clientKind} client, ${perEndpoint} connection(s) to each of ${endpoints.length} endpoint(s)`);
    const r = await runEtcdPutLoad({
      client: clientKind,
      endpoints,
      value_bytes: valueBytes,
      concurrency: c,
      warmup_ms: warmupMs,
      duration_ms: durationMs,
      keys,
      clients_per_endpoint: perEndpoint,
      pids: cluster.pids,
    });
    results.push(r);
    progress(
      `  ${Math.round(r.rate_per_s)} puts/s, p50 ${round(r.p50_ms)} ms, p99 ${round(r.p99_ms)} ms, errors ${r.errors}, ` +
        `CPU cores: client ${round(r.cpu_cores.client, 2)}, etcd ${(r.cpu_cores.etcd ?? []).map((x) => round(x, 2)).join('/')}, other ${round(r.cpu_cores.other, 2)}, machine ${round(r.cpu_cores.machine_busy, 2)} of ${r.cpu_cores.machine_cores} ` +
        `(user ${round(r.cpu_cores.machine.user, 2)}, sys ${round(r.cpu_cores.machine.system, 2)}, irq ${round(r.cpu_cores.machine.irq, 2)}, steal ${round(r.cpu_cores.machine.steal, 2)})` +
        (r.raft_term.after !== r.raft_term.before ? `, LEADER ELECTION (term ${r.raft_term.before} -> ${r.raft_term.after})` : ''),
    );
  }
  const commandLine = `${cluster.bin} ${cluster.args[0]!.join(' ')}`;
  const version = cluster.version;
  await cluster.stop();
  cluster = null;

  const best = results.reduce((a, b) => (b.rate_per_s > a.rate_per_s ? b : a));
  // The knee: the lowest concurrency within 5% of the best rate (past it, latency only grows).
  const knee = results.filter((r) => r.rate_per_s >= 0.95 * best.rate_per_s).reduce((a, b) => (b.concurrency < a.concurrency ? b : a));
  const noisy = results.filter((r) => r.cpu_cores.other > 0.3);
  const warnings = noisy.map(
    (r) => `concurrency ${r.concurrency}: ${round(r.cpu_cores.other, 2)} cores busy outside the client and etcd (other processes or kernel): the figures may be low`,
  );
  const c1 = results.find((r) => r.concurrency === 1) ?? null;
  const row = (r: EtcdPutLoadResult) => ({
    concurrency: r.concurrency,
    ops: r.ops,
    rate_per_s: Math.round(r.rate_per_s),
    p50_ms: round(r.p50_ms),
    p90_ms: round(r.p90_ms),
    p99_ms: round(r.p99_ms),
    p999_ms: round(r.p999_ms),
    max_ms: round(r.max_ms),
    mean_ms: round(r.mean_ms),
    errors: r.errors,
    first_error: r.first_error,
    clients: r.clients,
    client: r.client_kind,
    cpu_cores: {
      client: round(r.cpu_cores.client, 2),
      etcd: r.cpu_cores.etcd?.map((x) => round(x, 2)) ?? null,
      machine_busy: round(r.cpu_cores.machine_busy, 2),
      machine: Object.fromEntries(Object.entries(r.cpu_cores.machine).map(([k, v]) => [k, round(v, 2)])),
      machine_cores: r.cpu_cores.machine_cores,
      other: round(r.cpu_cores.other, 2),
    },
    leader_elections: r.raft_term.after - r.raft_term.before,
    acked_total: r.acked_total,
    revision_delta: r.revision_delta,
    db_size_MB: round(r.db_size_bytes / 1e6, 1),
  });

  const W = [12, 10, 9, 9, 9, 9, 8, 28];
  const fmt = (cells: (string | number)[]) => cells.map((c, i) => String(c).padStart(W[i]!)).join(' ');
  const lines = [
    '',
    `etcd ${version ?? '?'} x3 on 127.0.0.1 (${fs}), ${valueBytes} B puts, ${keys} keys, ${clientKind} client, ${perEndpoint} conn(s) per endpoint (${endpointsMode}), ${durationMs} ms per point`,
    fmt(['concurrency', 'puts/s', 'p50 ms', 'p99 ms', 'mean ms', 'max ms', 'errors', 'CPU client/etcd/other/all']),
    ...results.map((r) =>
      fmt([
        r.concurrency,
        Math.round(r.rate_per_s),
        round(r.p50_ms, 2),
        round(r.p99_ms, 2),
        round(r.mean_ms, 2),
        round(r.max_ms, 1),
        r.errors,
        `${round(r.cpu_cores.client, 2)}/${round((r.cpu_cores.etcd ?? []).reduce((a, b) => a + b, 0), 2)}/${round(r.cpu_cores.other, 2)}/${round(r.cpu_cores.machine_busy, 2)}`,
      ]),
    ),
    `best throughput: ${Math.round(best.rate_per_s)} puts/s at concurrency ${best.concurrency} (p50 ${round(best.p50_ms)} ms, p99 ${round(best.p99_ms)} ms)` +
      (c1 ? `; concurrency 1: ${Math.round(c1.rate_per_s)} puts/s, p50 ${round(c1.p50_ms)} ms` : ''),
    `knee (lowest concurrency within 5% of the best rate): ${knee.concurrency} (${Math.round(knee.rate_per_s)} puts/s, p50 ${round(knee.p50_ms)} ms, p99 ${round(knee.p99_ms)} ms)`,
    ...warnings.map((w) => `warning: ${w}`),
    '',
  ];
  process.stderr.write(lines.join('\n'));
  const summary = {
    bench: 'etcd-baseline',
    etcd_version: version,
    members: 3,
    value_bytes: valueBytes,
    keys,
    client: clientKind,
    endpoints: endpointsMode,
    clients_per_endpoint: perEndpoint,
    warmup_ms: warmupMs,
    duration_ms: durationMs,
    data_fs: fs,
    command_line_m0: commandLine,
    results: results.map(row),
    best: row(best),
    knee: row(knee),
    concurrency_1: c1 ? row(c1) : null,
    warnings,
    wall_s: round((performance.now() - wall0) / 1000, 1),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  rmSync(runDir, { recursive: true, force: true });
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  // startEtcdCluster's exit hook SIGKILLs the members.
  process.on(signal, () => {
    if (runDir) process.stderr.write(`etcd-run: interrupted; data and logs left in ${runDir}\n`);
    process.exit(130);
  });
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    process.stderr.write(`etcd-run failed: ${(err as Error).stack ?? String(err)}\n`);
    if (cluster) await cluster.stop().catch(() => {});
    if (runDir) process.stderr.write(`etcd-run: logs kept in ${runDir}\n`);
    process.exit(1);
  },
);
