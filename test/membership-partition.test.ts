/**
 * A real network partition (test/helpers/netns.ts): five member processes (test/fixtures/
 * group-process.ts), each in its own network namespace on a veth pair, all on one bridge. Under
 * continuous 1 KiB traffic, members 3 and 4 are moved to a second bridge: members 0, 1 and 2
 * install a view of {0,1,2} and keep delivering; 3 and 4 refuse updates (not in a majority view)
 * and never install a view without the majority. After healing, 3 and 4 rejoin by state transfer
 * and all five end with the same state (a running hash of every update delivered, in order).
 *
 * Needs Linux, root and iproute2; skipped (with the reason in its title) otherwise. With
 * TEMPEST_TEST_LOG_DIR set, each member's log (level TEMPEST_TEST_LOG_LEVEL, default debug) is
 * written there whole, as member-<i>.log.
 */
import test from 'ava';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Child, killAll, type Msg } from '../scripts/lib/child.js';
import type { MemberInfo } from '../engine/membership/view.js';
import type { GroupProcessArgs } from '../scripts/lib/group-process.js';
import { GROUP_FIXTURE } from './helpers/group.js';
import { cleanupStale, createTopology, netnsAvailable, type Topology } from './helpers/netns.js';

const N = 5;
const MINORITY = [3, 4];
const MAJORITY = [0, 1, 2];
const TIMEOUT_MS = 1000;
const MiB = 1024 * 1024;
/** Every member uses the same ports on its own address, as a real deployment would. */
const PORTS = { gms_port: 7100, fabric_port: 7101, state_transfer_port: 7102, external_port: 7103 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ViewMsg {
  vid: number;
  members: { id: number }[];
  leader: number;
}

interface StateMsg extends Msg {
  member: number;
  state: string;
  view: ViewMsg | null;
  shards: Record<string, { count: number; chain: string }>;
  anomalies: number;
  anomalyText: string[];
  counters: { acked: number; refused: number; unknown: number; timeouts: number };
}

const ids = (v: ViewMsg) => v.members.map((m) => m.id).sort((a, b) => a - b);
const viewOf = (m: Msg) => m.view as ViewMsg;
const isView = (m: Msg) => m.type === 'view';

const avail = await netnsAvailable();
const TITLE = 'partition 5 members into 3 + 2 with ip netns: the 3 continue, the 2 refuse updates, after healing all 5 agree';

if (!avail.ok) {
  test.serial.skip(`${TITLE} — SKIPPED: ${avail.reason}`, () => {});
} else {
  test.serial(TITLE, async (t) => {
    t.timeout(240_000);
    const removed = await cleanupStale();
    if (removed.length > 0) t.log(`removed leftovers of earlier runs: ${removed.join(' ')}`);

    const procs: Child[] = [];
    let topo: Topology | null = null;
    t.teardown(async () => {
      await killAll(procs);
      await topo?.destroy();
    });
    topo = await createTopology(N);
    const tp = topo;
    t.log(`topology ${tp.prefix}: ${N} namespaces on ${tp.subnet}, bridges ${tp.bridgeA}/${tp.bridgeB}`);

    // When each IPC message arrived (recorded before Child's own waiters see it).
    const arrived = new Map<Msg, number>();
    const at = (m: Msg) => arrived.get(m) ?? performance.now();
    const infos: MemberInfo[] = Array.from({ length: N }, (_, i) => ({ id: i, ip: tp.addr(i), ...PORTS }));
    const start = (i: number): Child => {
      const args: GroupProcessArgs = {
        self: infos[i]!,
        leader: { ip: infos[0]!.ip, gms_port: infos[0]!.gms_port },
        types: [{ type: 'kv', policy: { kind: 'one_subgroup' } }],
        timeout_ms: TIMEOUT_MS,
        heartbeat_ms: 100,
        max_payload_size: 8 * MiB,
        domain: tp.device,
      };
      const logDir = process.env.TEMPEST_TEST_LOG_DIR;
      const c = tp.spawnIn(i, GROUP_FIXTURE, args, logDir ? { TEMPEST_LOG_LEVEL: process.env.TEMPEST_TEST_LOG_LEVEL ?? 'debug', FI_LOG_LEVEL: process.env.FI_LOG_LEVEL ?? 'warn' } : {});
      if (logDir) {
        mkdirSync(logDir, { recursive: true });
        c.child.stderr?.on('data', (d: Buffer) => appendFileSync(join(logDir, `member-${i}.log`), d));
      }
      c.child.prependListener('message', (m: Msg) => arrived.set(m, performance.now()));
      procs[i] = c;
      return c;
    };
    /** Waits for a message of member i that arrived after `since` (performance.now()). */
    const waitAfter = (i: number, since: number, pred: (m: Msg) => boolean, timeout_ms: number, what: string) =>
      procs[i]!.waitFor((m) => at(m) > since && pred(m), timeout_ms, `member ${i}: ${what}`);
    const states = async (who: number[]): Promise<StateMsg[]> => {
      const t0 = performance.now();
      for (const i of who) procs[i]!.send({ cmd: 'state' });
      return Promise.all(who.map((i) => waitAfter(i, t0, (m) => m.type === 'state', 10_000, 'state') as Promise<StateMsg>));
    };
    const sendFailures = (i: number) => procs[i]!.inbox.filter((m) => m.type === 'send-failed').map((m) => `${String(m.code)}: ${String(m.message)}`);
    const viewsOf = (i: number) => procs[i]!.inbox.filter(isView).map((m) => ({ at: at(m), view: viewOf(m) }));

    // 1. The group of five, each member in its own namespace.
    start(0);
    await procs[0]!.waitType('ready', 30_000);
    for (let i = 1; i < N; i++) start(i);
    await Promise.all(procs.map((p) => p.waitType('ready', 60_000)));
    const all5 = await Promise.all(procs.map((p, i) => p.waitFor((m) => isView(m) && viewOf(m).members.length === N, 60_000, `member ${i}: view of ${N}`)));
    const sharedVid = Math.max(...all5.map((m) => viewOf(m).vid));
    await Promise.all(procs.map((p, i) => p.waitFor((m) => isView(m) && viewOf(m).vid === sharedVid, 30_000, `member ${i}: view ${sharedVid}`)));
    t.log(`group of ${N} in view ${sharedVid}`);

    // 2. Traffic everywhere.
    for (const p of procs) p.send({ cmd: 'traffic', on: true, large_every: 0, concurrency: 4 });
    await sleep(2000);
    const before = await states([...MAJORITY, ...MINORITY].sort((a, b) => a - b));
    for (const s of before) t.true(s.counters.acked > 0, `member ${s.member} delivered its own updates before the partition (acked ${s.counters.acked})`);
    t.log(`before the partition (2 s of traffic): ${before.map((s) => `member ${s.member} acked ${s.counters.acked}`).join(', ')}`);

    // 3. Partition {3,4} away from {0,1,2}.
    const tPartition = performance.now();
    await tp.partition(MINORITY);
    t.log(`partitioned {${MINORITY.join(',')}} onto ${tp.bridgeB} (connectivity checked in ${Math.round(performance.now() - tPartition)} ms)`);
    const [majorityViews, failures] = await Promise.all([
      Promise.all(MAJORITY.map((i) => waitAfter(i, tPartition, (m) => isView(m) && viewOf(m).vid > sharedVid && ids(viewOf(m)).join() === MAJORITY.join(), 10_000, `view of {${MAJORITY.join(',')}}`))),
      Promise.all(MINORITY.map((i) => waitAfter(i, tPartition, (m) => m.type === 'send-failed', 10_000, 'send-failed'))),
    ]);
    const majorityVid = viewOf(majorityViews[0]!).vid;
    for (const m of majorityViews) t.is(viewOf(m).vid, majorityVid, 'the majority members install the same view');
    t.log(`partition → view {${MAJORITY.join(',')}} (vid ${majorityVid}): ${majorityViews.map((m, k) => `member ${MAJORITY[k]} ${Math.round(at(m) - tPartition)} ms`).join(', ')}`);
    t.log(`partition → minority traffic refused: ${failures.map((m, k) => `member ${MINORITY[k]} ${Math.round(at(m) - tPartition)} ms (${String(m.code)})`).join(', ')}`);
    // Every update of theirs failed because they are not with a majority: refused outright
    // (ERR_NO_QUORUM) or, if it was already in flight, with an unknown outcome (ERR_MEMBERSHIP_OUTCOME_UNKNOWN).
    await sleep(500);
    for (const i of MINORITY) {
      for (const f of procs[i]!.inbox.filter((m) => m.type === 'send-failed' && at(m) > tPartition)) {
        t.true(f.code === 'ERR_NO_QUORUM' || f.code === 'ERR_MEMBERSHIP_OUTCOME_UNKNOWN', `member ${i}: send failed with ${String(f.code)}: ${String(f.message)}`);
        t.regex(String(f.message), /not in a view with a majority/, `member ${i}: the failure is the lost majority`);
      }
      t.true(procs[i]!.inbox.some((m) => m.type === 'traffic-stopped' && at(m) > tPartition), `member ${i}: its traffic stopped`);
    }
    for (const i of MAJORITY) t.deepEqual(sendFailures(i), [], `member ${i} (majority): no send failed`);

    // The majority keeps delivering; the minority refuses and delivers nothing.
    const during1 = await states([...MAJORITY, ...MINORITY]);
    await sleep(1000);
    const during2 = await states([...MAJORITY, ...MINORITY]);
    for (let k = 0; k < MAJORITY.length; k++) {
      const [a, b] = [during1[k]!, during2[k]!];
      t.is(b.state, 'member', `member ${a.member} is a member during the partition`);
      t.true(b.counters.acked > a.counters.acked, `member ${a.member}: acked ${a.counters.acked} → ${b.counters.acked} during the partition`);
      t.true(b.shards['0/0']!.count > a.shards['0/0']!.count, `member ${a.member}: delivered ${a.shards['0/0']!.count} → ${b.shards['0/0']!.count} during the partition`);
    }
    for (let k = MAJORITY.length; k < N; k++) {
      const [a, b] = [during1[k]!, during2[k]!];
      t.not(a.state, 'member', `member ${a.member} is not a member on the minority side (${a.state})`);
      t.not(b.state, 'member', `member ${b.member} is not a member on the minority side (${b.state})`);
      t.is(b.counters.acked, a.counters.acked, `member ${a.member}: no update acknowledged on the minority side`);
      t.is(b.shards['0/0']?.count, a.shards['0/0']?.count, `member ${a.member}: nothing delivered on the minority side`);
    }
    // A new update on the minority side is refused at once, with the quorum error.
    for (const i of MINORITY) procs[i]!.send({ cmd: 'send-one' });
    for (const i of MINORITY) {
      const r = await procs[i]!.waitFor((m) => m.type === 'sent-one', 5_000, 'the answer to one update');
      t.false(r.ok as boolean, `member ${i}: an update on the minority side is refused`);
      t.is(r.code, 'ERR_NO_QUORUM', `member ${i}: refused with ERR_NO_QUORUM (${String(r.message)})`);
      t.true((r.ms as number) < 100, `member ${i}: refused at once (${Math.round(r.ms as number)} ms)`);
    }
    t.log(`during the partition (1 s): ${during2.map((s, k) => `member ${s.member} ${s.state} acked +${s.counters.acked - during1[k]!.counters.acked}`).join(', ')}`);

    // 4. Heal: 3 and 4 rejoin.
    const tHeal = performance.now();
    await tp.heal();
    t.log(`healed (connectivity checked in ${Math.round(performance.now() - tHeal)} ms)`);
    const full = await waitAfter(0, tHeal, (m) => isView(m) && viewOf(m).vid > majorityVid && viewOf(m).members.length === N, 30_000, `view of ${N} after healing`);
    const rejoined = await Promise.all(procs.map((_, i) => waitAfter(i, tHeal, (m) => isView(m) && viewOf(m).vid >= viewOf(full).vid && viewOf(m).members.length === N, 30_000, `view of ${N} after healing`)));
    t.log(`heal → all ${N} in one view (vid ${viewOf(full).vid}): ${rejoined.map((m, i) => `member ${i} ${Math.round(at(m) - tHeal)} ms`).join(', ')}`);
    t.log(`views after the partition: ${procs.map((_, i) => `member ${i}: ${viewsOf(i).filter((v) => v.at > tPartition).map((v) => `${v.view.vid}{${ids(v.view).join(',')}}`).join(' ')}`).join('; ')}`);

    // The minority never installed a view without the majority: none during the partition, and
    // every view after the last one of all five includes the majority.
    for (const i of MINORITY) {
      for (const { at: when, view } of viewsOf(i).filter((v) => v.view.vid > sharedVid)) {
        const m = ids(view);
        t.true(MAJORITY.every((j) => m.includes(j)), `member ${i}: view ${view.vid} {${m.join(',')}} includes the majority`);
        if (when > tPartition && when < tHeal) t.fail(`member ${i} installed view ${view.vid} {${m.join(',')}} during the partition`);
      }
    }

    // 5. Stop traffic, let deliveries settle, compare.
    const tStop = performance.now();
    for (const p of procs) p.send({ cmd: 'traffic', on: false });
    await Promise.all(MAJORITY.map((i) => waitAfter(i, tStop, (m) => m.type === 'traffic-stopped', 30_000, 'traffic-stopped')));
    await sleep(2000);
    const end = await states([...MAJORITY, ...MINORITY].sort((a, b) => a - b));
    for (const s of end) t.log(`member ${s.member}: ${s.state}, vid ${s.view?.vid}, delivered ${s.shards['0/0']?.count}, chain ${s.shards['0/0']?.chain.slice(0, 12)}, acked ${s.counters.acked}, refused ${s.counters.refused}, unknown ${s.counters.unknown}`);
    for (const s of end) {
      t.is(s.state, 'member', `member ${s.member} is a member at the end`);
      t.is(s.view?.vid, end[0]!.view?.vid, `member ${s.member} is in the same view`);
      t.is(s.view?.members.length, N, `member ${s.member}: view of ${N}`);
      t.is(s.anomalies, 0, `member ${s.member}: anomalies ${s.anomalyText.join('; ')}`);
      t.is(s.shards['0/0']?.count, end[0]!.shards['0/0']?.count, `member ${s.member}: same number of updates delivered`);
      t.is(s.shards['0/0']?.chain, end[0]!.shards['0/0']?.chain, `member ${s.member}: same updates in the same order`);
    }
    for (const i of MAJORITY) t.deepEqual(sendFailures(i), [], `member ${i} (majority): no send failed during the whole run`);
  });
}
