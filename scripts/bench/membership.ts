/**
 * bench:membership — how long a view change takes, for groups of 3 and 5 real member processes
 * on 127.0.0.1 under continuous 1 KiB traffic. Each run SIGKILLs one member (alternately the
 * leader and another), measures until every survivor has installed the view without it, then
 * restarts the member (it joins again, with state transfer) for the next run.
 *
 * The member with the highest id is never killed: its RSS before the first and after the last
 * view change shows whether views leak.
 *
 * Two figures per run: failure-to-view (kill until the last survivor installs: detection by
 * timeout_ms dominates it), and wedge-to-install (what the protocol itself costs: agreement,
 * ragged trim, tables and multicast of the next view), as measured inside the members.
 * Baseline: timeout_ms itself, the silence after which any failure detector must act.
 *
 *   npm run bench:membership [-- --runs=20 --timeout-ms=1000]
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Child, freePorts, killAll, type Msg } from '../lib/child.js';
import type { GroupProcessArgs } from '../lib/group-process.js';
import type { MemberInfo } from '../../engine/membership/view.js';

const PEER = join(dirname(fileURLToPath(import.meta.url)), '../lib/group-process.js');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' }, 'timeout-ms': { type: 'string', default: '1000' } } });
const RUNS = Number(values.runs);
const TIMEOUT_MS = Number(values['timeout-ms']);
if (!Number.isInteger(RUNS) || RUNS < 1 || !Number.isInteger(TIMEOUT_MS) || TIMEOUT_MS < 10) {
  process.stderr.write('usage: npm run bench:membership [-- --runs=N --timeout-ms=MS]\n');
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))]!;

async function infos(n: number): Promise<MemberInfo[]> {
  const ports = await freePorts(4 * n);
  return Array.from({ length: n }, (_, i) => ({ id: i, ip: '127.0.0.1', gms_port: ports[4 * i]!, fabric_port: ports[4 * i + 1]!, state_transfer_port: ports[4 * i + 2]!, external_port: ports[4 * i + 3]! }));
}

function start(self: MemberInfo, leader: MemberInfo): Child {
  const args: GroupProcessArgs = {
    self,
    leader: { ip: leader.ip, gms_port: leader.gms_port },
    types: [{ type: 'kv', policy: { kind: 'one_subgroup' } }],
    timeout_ms: TIMEOUT_MS,
    heartbeat_ms: Math.max(1, Math.floor(TIMEOUT_MS / 10)),
    max_payload_size: 1024 * 1024,
  };
  return Child.start(PEER, args, { TEMPEST_LOG_LEVEL: 'info' });
}

type ViewMsg = { vid: number; members: { id: number }[]; leader: number };
const viewOf = (m: Msg) => m.view as ViewMsg;

interface Figures {
  failure_to_view_ms: number[];
  wedge_to_install_ms: number[];
  /** From spawning the restarted member until every member's view has it again (process start included). */
  restart_to_view_ms: number[];
  /** RSS of the one member never killed, before the first and after the last view change. */
  steady_rss_bytes: [number, number];
}

async function measure(n: number): Promise<Figures> {
  const members = await infos(n);
  const procs: (Child | null)[] = [];
  const failureToView: number[] = [];
  const wedgeToInstall: number[] = [];
  const rejoin: number[] = [];
  let rssBefore = 0;
  let rssAfter = 0;
  try {
    procs.push(start(members[0]!, members[0]!));
    await procs[0]!.waitType('ready', 30_000);
    for (const m of members.slice(1)) procs.push(start(m, members[0]!));
    await Promise.all(procs.map((p) => p!.waitType('ready', 60_000)));
    await procs[0]!.waitFor((m) => m.type === 'view' && viewOf(m).members.length === n, 60_000, 'full view');
    for (const p of procs) p!.send({ cmd: 'traffic', on: true, large_every: 0, concurrency: 2 });
    const rssOf = async (p: Child): Promise<number> => {
      p.inbox.splice(0, p.inbox.length, ...p.inbox.filter((m) => m.type !== 'state'));
      p.send({ cmd: 'state' });
      return (await p.waitType('state', 10_000)).rss_bytes as number;
    };
    // The member never killed (the last in rank): its memory across every view change.
    const steady = procs[n - 1]!;
    rssBefore = await rssOf(steady);
    for (let run = 0; run < RUNS; run++) {
      const live = procs.filter((p): p is Child => p !== null && p.exited === null);
      const last = live.map((p) => p.inbox.filter((m) => m.type === 'view').at(-1)!);
      const view = viewOf(last[0]!);
      // Alternate: the leader, then another member.
      // Every other run kills the leader (unless it is the member kept for the memory figure).
      const leaderRun = run % 2 === 0 && view.leader !== n - 1;
      const victimId = leaderRun ? view.leader : view.members.find((m) => m.id !== view.leader && m.id !== n - 1)!.id;
      const victim = procs[victimId]!;
      const survivors = live.filter((p) => p !== victim);
      const t0 = performance.now();
      victim.kill('SIGKILL');
      const seen = await Promise.all(
        survivors.map(async (p) => {
          const m = await p.waitFor((x) => x.type === 'view' && viewOf(x).vid > view.vid && !viewOf(x).members.some((mm) => mm.id === victimId), 10 * TIMEOUT_MS, 'view without the victim');
          return { at: performance.now() - t0, times: m.times_ms as number[] };
        }),
      );
      failureToView.push(Math.max(...seen.map((s) => s.at)));
      wedgeToInstall.push(Math.max(...seen.map((s) => s.times.at(-1) ?? 0)));
      await victim.waitExit(5_000);
      // The victim comes back empty and joins through a survivor.
      const contact = members[survivors[0] === procs[0] ? 0 : procs.indexOf(survivors[0]!)]!;
      const tJoin = performance.now();
      procs[victimId] = start(members[victimId]!, contact);
      await procs[victimId]!.waitType('ready', 60_000);
      await Promise.all(procs.map((p) => p!.waitFor((x) => x.type === 'view' && viewOf(x).members.length === n && viewOf(x).members.some((mm) => mm.id === victimId) && viewOf(x).vid > view.vid, 30_000, 'view with the victim back')));
      rejoin.push(performance.now() - tJoin);
      procs[victimId]!.send({ cmd: 'traffic', on: true, large_every: 0, concurrency: 2 });
      process.stdout.write(`  ${n} members, run ${run + 1}/${RUNS}: killed ${victimId === view.leader ? 'the leader' : 'a member'}, view after ${failureToView.at(-1)!.toFixed(0)} ms (wedge to install ${wedgeToInstall.at(-1)!.toFixed(0)} ms); restarted, in the view again after ${rejoin.at(-1)!.toFixed(0)} ms\n`);
      await sleep(300);
    }
    rssAfter = await rssOf(steady);
  } finally {
    await killAll(procs.filter((p): p is Child => p !== null));
  }
  return { failure_to_view_ms: failureToView, wedge_to_install_ms: wedgeToInstall, restart_to_view_ms: rejoin, steady_rss_bytes: [rssBefore, rssAfter] };
}

const results: Record<string, Figures> = {};
for (const n of [3, 5]) {
  process.stdout.write(`view changes with ${n} members (timeout_ms ${TIMEOUT_MS}), ${RUNS} runs:\n`);
  results[n] = await measure(n);
  const r = results[n]!;
  process.stdout.write(
    `  ${n} members: failure to view median ${median(r.failure_to_view_ms).toFixed(0)} ms (p90 ${p90(r.failure_to_view_ms).toFixed(0)}), ` +
      `wedge to install median ${median(r.wedge_to_install_ms).toFixed(0)} ms (p90 ${p90(r.wedge_to_install_ms).toFixed(0)}), ` +
      `restart to view median ${median(r.restart_to_view_ms).toFixed(0)} ms (max ${Math.max(...r.restart_to_view_ms).toFixed(0)}); ` +
      `RSS of a member through all ${2 * RUNS} view changes ${(r.steady_rss_bytes[0] / 2 ** 20).toFixed(0)} -> ${(r.steady_rss_bytes[1] / 2 ** 20).toFixed(0)} MiB\n`,
  );
}
const figures: Record<string, number | number[]> = {};
const ratios: Record<string, number> = {};
for (const n of [3, 5]) {
  const r = results[n]!;
  figures[`failure_to_view_median_ms_${n}`] = Math.round(median(r.failure_to_view_ms));
  figures[`failure_to_view_p90_ms_${n}`] = Math.round(p90(r.failure_to_view_ms));
  figures[`wedge_to_install_median_ms_${n}`] = Math.round(median(r.wedge_to_install_ms));
  figures[`restart_to_view_median_ms_${n}`] = Math.round(median(r.restart_to_view_ms));
  figures[`steady_member_rss_mib_${n}`] = r.steady_rss_bytes.map((b) => Math.round(b / 2 ** 20));
  ratios[`failure_to_view_vs_timeout_${n}`] = Number((median(r.failure_to_view_ms) / TIMEOUT_MS).toFixed(3));
}
process.stdout.write(`${JSON.stringify({ bench: 'membership', runs: RUNS, timeout_ms: TIMEOUT_MS, ...figures, ratios })}\n`);
