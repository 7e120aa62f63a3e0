/** The decision part of a total restart (engine/membership/restart-plan.ts), without processes. */
import test from 'ava';
import { planRestart, restartQuorum, restartSuccession, viewIdentity, type RestartReport } from '../engine/membership/restart-plan.js';
import type { StoredView } from '../engine/membership/remembered-view.js';
import type { MemberInfo } from '../engine/membership/view.js';
import type { SubgroupTypeSpec } from '../engine/subgroups/allocation.js';

const member = (id: number): MemberInfo => ({ id, ip: '127.0.0.1', gms_port: 20000 + id, fabric_port: 21000 + id, state_transfer_port: 22000 + id, external_port: 23000 + id });
const types: SubgroupTypeSpec[] = [{ type: 'kv', policy: { kind: 'even_sharding', shards: 2, members_per_shard: 2 } }];
// View 7: shard 0 = {0,1}, shard 1 = {2,3}; member 4 is a spare.
const last: StoredView = {
  vid: 7,
  members: [0, 1, 2, 3, 4].map(member),
  layout: { subgroups: [{ type: 'kv', index: 0, shards: [{ members: [0, 1] }, { members: [2, 3] }] }] },
};
const report = (id: number, versions: Record<string, bigint>, vid = 7): RestartReport => ({ member: member(id), vid, versions: Object.fromEntries(Object.entries(versions).map(([k, v]) => [k, v.toString()])) });

test('a restart needs a majority of the last view and a member of every shard', (t) => {
  t.true(restartQuorum(last, new Set([0, 2, 4])).ok);
  const noMajority = restartQuorum(last, new Set([0, 2]));
  t.false(noMajority.ok);
  t.regex((noMajority as { reason: string }).reason, /2 of the 5 members of view 7/);
  const shardMissing = restartQuorum(last, new Set([0, 1, 4]));
  t.false(shardMissing.ok);
  t.regex((shardMissing as { reason: string }).reason, /kv#0\/1/);
});

test('per shard the longest log is the source; shorter logs fetch from it; equal ones do not', (t) => {
  const v = (vid: number, seq: number) => (BigInt(vid) << 32n) | BigInt(seq);
  const reports = [report(0, { 'kv#0/0': v(7, 10) }), report(1, { 'kv#0/0': v(7, 12) }), report(2, { 'kv#0/1': v(6, 3) }), report(3, { 'kv#0/1': v(6, 3) }), report(4, {}, 5)];
  const plan = planRestart(last, member(0), reports, types);
  t.is(plan.view.vid, 8, 'above every remembered view');
  t.deepEqual(plan.view.members.map((m) => m.id), [0, 1, 2, 3, 4], 'the old rank order');
  t.deepEqual(plan.view.layout.subgroups[0]!.shards.map((s) => s.members), [[0, 1], [2, 3]], 'members keep their shards');
  t.deepEqual(plan.sources['kv#0/0'], { source: 1, version: v(7, 12).toString() });
  t.deepEqual(plan.fetches.get(0), [{ subgroup: 0, shard: 0, source: 1 }], 'the shorter log fetches the rest');
  t.deepEqual(plan.offers.get(1), [{ subgroup: 0, shard: 0 }]);
  t.is(plan.fetches.get(2), undefined, 'equal logs fetch nothing');
  t.is(plan.fetches.get(3), undefined);
  t.is(plan.offers.get(2), undefined);
});

test('a spare placed in a shard whose member is down fetches its whole log; too few members give an inadequate view', (t) => {
  const v = (seq: number) => (7n << 32n) | BigInt(seq);
  // Member 1 stays down: 4 takes its place in shard 0 and fetches everything from 0.
  const plan = planRestart(last, member(0), [report(0, { 'kv#0/0': v(5) }), report(2, { 'kv#0/1': v(9) }), report(3, { 'kv#0/1': v(8) }), report(4, {})], types);
  t.deepEqual(plan.view.layout.subgroups[0]!.shards.map((s) => s.members), [[0, 4], [2, 3]]);
  t.deepEqual(plan.fetches.get(4), [{ subgroup: 0, shard: 0, source: 0 }]);
  t.deepEqual(plan.fetches.get(3), [{ subgroup: 0, shard: 1, source: 2 }]);
  // Members 1 and 3 down: 3 members cannot make 2 shards of 2.
  const thin = planRestart(last, member(0), [report(0, {}), report(2, {}), report(4, {})], types);
  t.deepEqual(thin.view.layout.subgroups, []);
  t.deepEqual(thin.view.basis, last.layout, 'the last layout travels as the basis for the next allocation');
});

test('restart candidates: the configured leader first, then the last view in its order, each once', (t) => {
  const c = restartSuccession({ ip: '127.0.0.1', gms_port: 20002 }, last);
  t.deepEqual(
    c.map((x) => x.id),
    [2, 0, 1, 3, 4],
  );
  // A configured leader that is not in the last view (moved, or a new address) still comes first.
  const d = restartSuccession({ ip: '10.0.0.9', gms_port: 1 }, last);
  t.deepEqual(d[0], { ip: '10.0.0.9', gms_port: 1, id: null });
  t.is(d.length, 6);
  // Two restart views with the same vid and other members are told apart.
  t.not(viewIdentity({ vid: 9, members: [member(0), member(2)] }), viewIdentity({ vid: 9, members: [member(1), member(2)] }));
  t.is(viewIdentity({ vid: 9, members: [member(0), member(2)] }), viewIdentity({ vid: 9, members: [member(0), member(2)] }));
});
