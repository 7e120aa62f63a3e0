/**
 * One real member hosting the example Cache (examples/cache), for the replicated-object tests and
 * bench:persist. argv[2] is a JSON CacheProcessArgs. IPC commands:
 *   puts      {count, prefix, concurrency, value_bytes}: ordered puts from this member; reports
 *             acknowledged count, reply counts per call, latencies and the rate. Timed instead
 *             with {warmup_ms, duration_ms} (count is then a cap): a closed loop for warmup_ms +
 *             duration_ms, measuring only puts acknowledged in the last duration_ms (steady state)
 *   traffic   {on, concurrency, value_bytes}: endless unique puts; acknowledged keys are reported
 *             in batches (`acks`) so a crash test knows what must survive
 *   put-one   {key, value, method?}: one ordered put (or append); reports its version and the wall clock around it
 *   get       {key, node}: p2p get on member `node`
 *   at        {key, at, node}: p2p getAt (history by version, index or time)
 *   digest    : this replica's map hash, size, versions and per-field log digests
 *   close     : leaves the process cleanly
 */
import { createHash } from 'node:crypto';
import { loadConfig } from '../../config/index.js';
import type { MemberInfo } from '../../engine/membership/view.js';
import { Group } from '../../engine/rpc/group.js';
import { layerLogger } from '../../engine/util/log.js';
import { Cache, CacheType, type HistoryPoint } from '../../examples/cache/cache.js';
import { closeAndExit, report, reportFailure } from './ipc-child.js';

export interface CacheProcessArgs {
  self: MemberInfo;
  leader: MemberInfo;
  data_dir: string;
  /** [DERECHO] rdmc_port; sst_port + 1 when not given. */
  rdmc_port?: number;
  timeout_ms?: number;
  heartbeat_ms?: number;
  window_size?: number;
  /** More `--SECTION/key=value` overrides. */
  overrides?: string[];
}

const args = JSON.parse(process.argv[2]!) as CacheProcessArgs;
const log = layerLogger('cache-process', { member: args.self.id });
const s = args.self;
const cfg = loadConfig({
  overrides: [
    `--DERECHO/local_id=${s.id}`,
    `--DERECHO/local_ip=${s.ip}`,
    `--DERECHO/gms_port=${s.gms_port}`,
    `--DERECHO/sst_port=${s.fabric_port}`,
    `--DERECHO/state_transfer_port=${s.state_transfer_port}`,
    `--DERECHO/external_port=${s.external_port}`,
    `--DERECHO/rdmc_port=${args.rdmc_port ?? s.fabric_port + 1}`,
    `--DERECHO/leader_ip=${args.leader.ip}`,
    `--DERECHO/leader_gms_port=${args.leader.gms_port}`,
    `--DERECHO/leader_external_port=${args.leader.external_port}`,
    `--DERECHO/data_dir=${args.data_dir}`,
    `--DERECHO/timeout_ms=${args.timeout_ms ?? 1000}`,
    `--DERECHO/heartbeat_ms=${args.heartbeat_ms ?? 100}`,
    `--DERECHO/window_size=${args.window_size ?? 64}`,
    '--HTTP/enabled=false',
    '--FUSE/enabled=false',
    ...(args.overrides ?? []),
  ],
});

let group: Group;
try {
  group = await Group.start({ config: cfg, types: [{ type: CacheType, policy: { kind: 'one_subgroup' } }], log, join_timeout_ms: 120_000 });
} catch (err) {
  reportFailure(err);
  process.exit(1);
}
const cache = group.getSubgroup(CacheType);
group.member.onView((v) => report({ type: 'view', view: v }));

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Puts whose delivery and acknowledgement times are sampled (1 in SAMPLE_EVERY): each costs promises. */
const SAMPLE_EVERY = 8;

async function puts(m: {
  count: number;
  prefix: string;
  concurrency: number;
  value_bytes: number;
  return_latencies?: boolean;
  acknowledged_only?: boolean;
  warmup_ms?: number;
  duration_ms?: number;
}): Promise<void> {
  const lat = new Float64Array(m.count);
  // Where the time goes, on a sample of the puts: own delivery (stable at every member),
  // acknowledgement (persisted by every member, in a durable subgroup), every reply in.
  const deliveredAt = new Float64Array(m.count);
  const ackedAt = new Float64Array(m.count);
  const replyCounts: Record<number, number> = {};
  let next = 0;
  let acked = 0;
  const failures: string[] = [];
  const t0 = performance.now();
  // Timed: the loop runs until `end`; what counts is acknowledged in [measureFrom, end].
  const timed = m.duration_ms !== undefined;
  const measureFrom = t0 + (m.warmup_ms ?? 0);
  const end = timed ? measureFrom + m.duration_ms! : Infinity;
  let measured = 0;
  const worker = async () => {
    while (next < m.count && performance.now() < end) {
      const i = next++;
      const key = m.prefix + i;
      const value = (key + ':').padEnd(m.value_bytes, 'x');
      const start = performance.now();
      try {
        const q = cache.orderedSend('put', key, value);
        if (i % SAMPLE_EVERY === 0) {
          void q.replies().then(() => (deliveredAt[i] = performance.now() - start), () => {});
          void q.delivered.then(() => (ackedAt[i] = performance.now() - start), () => {});
        }
        if (m.acknowledged_only) {
          await q.delivered;
          lat[i] = performance.now() - start;
        } else {
          const r = await q.all();
          lat[i] = performance.now() - start;
          replyCounts[r.size] = (replyCounts[r.size] ?? 0) + 1;
        }
        acked++;
        if (timed) {
          const now = performance.now();
          if (now < measureFrom || now > end) lat[i] = NaN; // outside the measured window
          else measured++;
        }
      } catch (err) {
        lat[i] = NaN;
        if (failures.length < 5) failures.push(`${(err as { code?: string }).code}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: m.concurrency }, worker));
  const seconds = timed ? m.duration_ms! / 1000 : (performance.now() - t0) / 1000;
  const ok = lat.subarray(0, next).filter((x) => !Number.isNaN(x)).sort();
  report({
    type: 'puts-done',
    acked: timed ? measured : acked,
    failed: next - acked,
    failures,
    replyCounts,
    seconds,
    rate_per_s: (timed ? measured : acked) / seconds,
    p50_ms: percentile(ok, 0.5),
    p99_ms: percentile(ok, 0.99),
    p50_delivered_ms: percentile(deliveredAt.filter((x) => x > 0).sort(), 0.5),
    p50_acknowledged_ms: percentile(ackedAt.filter((x) => x > 0).sort(), 0.5),
    ...(m.return_latencies ? { latencies_ms: [...ok] } : {}),
  });
}

let trafficOn = false;
async function traffic(m: { concurrency: number; value_bytes: number }): Promise<void> {
  let seq = 0;
  let batch: string[] = [];
  const flushAcks = setInterval(() => {
    if (batch.length > 0) report({ type: 'acks', keys: batch.splice(0) });
  }, 20);
  const worker = async () => {
    while (trafficOn) {
      const key = `${args.self.id}-${process.pid}-${seq++}`;
      try {
        await cache.orderedSend('put', key, key.padEnd(m.value_bytes, '.')).delivered;
        batch.push(key);
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  await Promise.all(Array.from({ length: m.concurrency }, worker));
  clearInterval(flushAcks);
  report({ type: 'acks', keys: batch.splice(0) });
  report({ type: 'traffic-stopped' });
}

async function digest(): Promise<object> {
  const local = group.localReplica(CacheType) as Cache | undefined;
  const map = local?.data.value ?? new Map<string, string>();
  const h = createHash('sha256');
  for (const k of [...map.keys()].sort()) h.update(k).update('\0').update(map.get(k)!).update('\n');
  const hosted = (group as unknown as { hosted: Map<string, { replica: { logDigest(): Promise<object[]>; localVersion: bigint; persistedVersion: bigint } }> }).hosted;
  const logs: object[] = [];
  for (const [k, h2] of hosted) logs.push({ replica: k, version: h2.replica.localVersion.toString(), persisted: h2.replica.persistedVersion.toString(), fields: await h2.replica.logDigest() });
  return { size: map.size, sha256: h.digest('hex'), logs, keys: map.size <= 200_000 ? [...map.keys()] : null, shards: group.getSubgroupMembers(CacheType) };
}

process.on('message', (m: { cmd: string; [k: string]: unknown }) => {
  const fail = (err: unknown) => report({ type: 'cmd-failed', cmd: m.cmd, code: (err as { code?: string }).code, remoteCode: (err as { remoteCode?: string }).remoteCode, message: (err as Error).message });
  if (m.cmd === 'puts') puts(m as never).catch(fail);
  else if (m.cmd === 'put-one') {
    const before_ms = Date.now();
    const r = m.method === 'append' ? cache.orderedSend('append', m.key as string, m.value as string) : cache.orderedSend('put', m.key as string, m.value as string);
    r.all().then(
      async (replies) => report({ type: 'put-one', key: m.key, version: (await r.delivered).version.toString(), replies: replies.size, before_ms, after_ms: Date.now() }),
      // A reply that failed (a method that threw, a reply over the limit) can come before the
      // others applied the call: report once it is applied (persisted) everywhere, or known not to be.
      (err: unknown) => r.delivered.then(
        () => fail(err),
        () => fail(err),
      ),
    );
  } else if (m.cmd === 'traffic') {
    if (m.on && !trafficOn) {
      trafficOn = true;
      traffic(m as never).catch(fail);
    } else if (!m.on) trafficOn = false;
  } else if (m.cmd === 'get') cache.p2pSend(m.node as number, 'get', m.key as string).then((value) => report({ type: 'got', key: m.key, node: m.node, value: value ?? null }), fail);
  else if (m.cmd === 'at') {
    const at = m.at as { version?: string; index?: number; time_ms?: number };
    const point: HistoryPoint = at.version !== undefined ? { version: BigInt(at.version) } : at.index !== undefined ? { index: at.index } : { time_ms: at.time_ms! };
    cache.p2pSend(m.node as number, 'getAt', m.key as string, point).then((value) => report({ type: 'at', key: m.key, at: m.at, node: m.node, value: value ?? null }), fail);
  } else if (m.cmd === 'digest') digest().then((d) => report({ type: 'digest', member: args.self.id, ...d }), fail);
  else if (m.cmd === 'close') closeAndExit(() => group.close());
});
report({ type: 'ready', view: group.member.summary() });
