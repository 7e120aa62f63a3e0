/** Subgroup/shard allocation: first views, stability across views, provisioning, custom allocators. */
import test from 'ava';
import {
  allocateLayout, validatePolicies, shardsOf, describeLayout, layoutsEqual,
  type AllocationPolicy, type AllocationResult, type Layout, type SubgroupTypeSpec,
} from '../engine/subgroups/allocation.js';
import { prng } from '../scripts/lib/prng.js';

const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);
const shardsOfType = (l: Layout): number[][][] => l.subgroups.map((sg) => sg.shards.map((s) => s.members));
function ok(r: AllocationResult): Layout {
  if (!r.ok) throw new Error(`expected ok, got: ${r.reason}`);
  return r.layout;
}
const store = (policy: AllocationPolicy): SubgroupTypeSpec[] => [{ type: 'store', policy }];

test('even sharding 2x3 over 7: contiguous shards, 6 spare; member 4 dies -> {3,5,6}, shard 0 untouched', (t) => {
  const types = store({ kind: 'even_sharding', shards: 2, members_per_shard: 3 });
  const first = ok(allocateLayout(types, range(7), null));
  t.deepEqual(shardsOfType(first), [[[0, 1, 2], [3, 4, 5]]]);
  t.is(describeLayout(first), 'store[0]: shard 0 = {0,1,2}, shard 1 = {3,4,5}');
  t.deepEqual(shardsOf(first, 6), []);
  t.deepEqual(shardsOf(first, 4), [{ subgroup: 0, shard: 1 }]);
  const second = ok(allocateLayout(types, [0, 1, 2, 3, 5, 6], first));
  t.deepEqual(shardsOfType(second), [[[0, 1, 2], [3, 5, 6]]]);
  t.deepEqual(first.subgroups[0]!.shards[1]!.members, [3, 4, 5], 'previous layout not mutated');
});

test('survivors keep their roles when a lower-ranked member dies', (t) => {
  const types = store({ kind: 'even_sharding', shards: 2, members_per_shard: 2 });
  const first = ok(allocateLayout(types, range(6), null)); // {0,1},{2,3}; 4,5 spare
  const second = ok(allocateLayout(types, [1, 2, 3, 4, 5], first));
  t.deepEqual(shardsOfType(second), [[[1, 4], [2, 3]]], 'shard 1 unchanged, 1 stays first in shard 0');
  const third = ok(allocateLayout(types, [2, 3, 4, 5, 6], second));
  t.deepEqual(shardsOfType(third), [[[4, 5], [2, 3]]]);
});

test('too few members is ok:false naming the shard; enough members is ok again', (t) => {
  const types = store({ kind: 'even_sharding', shards: 2, members_per_shard: 3 });
  const short = allocateLayout(types, range(4), null);
  t.false(short.ok);
  if (!short.ok) t.regex(short.reason, /"store" subgroup 0 shard 1 has 1 member\(s\) but needs at least 3/);
  t.deepEqual(shardsOfType(ok(allocateLayout(types, range(6), null))), [[[0, 1, 2], [3, 4, 5]]]);
});

test('min_members_per_shard lets shards run short, each keeping its minimum', (t) => {
  const types = store({ kind: 'even_sharding', shards: 2, members_per_shard: 3, min_members_per_shard: 2 });
  t.deepEqual(shardsOfType(ok(allocateLayout(types, range(5), null))), [[[0, 1, 2], [3, 4]]]);
  t.deepEqual(shardsOfType(ok(allocateLayout(types, range(4), null))), [[[0, 1], [2, 3]]]);
  t.false(allocateLayout(types, range(3), null).ok);
  const full = ok(allocateLayout(types, range(6), null));
  t.deepEqual(shardsOfType(ok(allocateLayout(types, [0, 2, 3, 4, 5], full))), [[[0, 2], [3, 4, 5]]]);
});

test('one_subgroup takes everyone, appends newcomers, respects max_members and min_members', (t) => {
  const all = store({ kind: 'one_subgroup' });
  const first = ok(allocateLayout(all, [5, 2, 9], null));
  t.deepEqual(shardsOfType(first), [[[5, 2, 9]]]);
  t.deepEqual(shardsOfType(ok(allocateLayout(all, [2, 9, 5, 11, 12], first))), [[[5, 2, 9, 11, 12]]]);
  t.false(allocateLayout(all, [], null).ok);
  const capped = store({ kind: 'one_subgroup', max_members: 3 });
  const c1 = ok(allocateLayout(capped, range(5), null));
  t.deepEqual(shardsOfType(c1), [[[0, 1, 2]]]);
  t.deepEqual(shardsOfType(ok(allocateLayout(capped, [0, 2, 3, 4], c1))), [[[0, 2, 3]]]);
  t.false(allocateLayout(store({ kind: 'one_subgroup', min_members: 3 }), range(2), null).ok);
});

test('identical_subgroups are disjoint across subgroups; types overlap each other', (t) => {
  const types: SubgroupTypeSpec[] = [
    { type: 'kv', policy: { kind: 'identical_subgroups', count: 2, shards: 2, members_per_shard: 2 } },
    { type: 'meta', policy: { kind: 'one_subgroup', max_members: 3 } },
  ];
  const l = ok(allocateLayout(types, range(9), null));
  t.is(describeLayout(l), 'kv[0]: shard 0 = {0,1}, shard 1 = {2,3}; kv[1]: shard 0 = {4,5}, shard 1 = {6,7}; meta[0]: shard 0 = {0,1,2}');
  t.deepEqual(shardsOf(l, 0), [{ subgroup: 0, shard: 0 }, { subgroup: 2, shard: 0 }]);
  const next = ok(allocateLayout(types, [0, 1, 3, 4, 5, 6, 7, 8], l));
  t.deepEqual(shardsOfType(next).slice(0, 2), [[[0, 1], [3, 8]], [[4, 5], [6, 7]]]);
  t.false(allocateLayout(types, range(7), null).ok);
});

test('custom allocator: valid output is used, sees previous; invalid output or a throw is ok:false', (t) => {
  const custom = (allocate: (i: { members: readonly number[]; previous: unknown }) => number[][][]) =>
    store({ kind: 'custom', allocate });
  const seen: unknown[] = [];
  const evens = custom(({ members, previous }) => {
    seen.push(previous);
    return [[members.filter((m) => m % 2 === 0), members.filter((m) => m % 2 === 1)]];
  });
  const l = ok(allocateLayout(evens, range(4), null));
  t.deepEqual(shardsOfType(l), [[[0, 2], [1, 3]]]);
  ok(allocateLayout(evens, range(5), l));
  t.deepEqual(seen, [null, [[[0, 2], [1, 3]]]]);
  const bad: [string, () => number[][][], RegExp][] = [
    ['non-member', () => [[[0, 99]]], /names 99, which is not a member/],
    ['overlap', () => [[[0, 1], [1, 2]]], /member 1 is in both shard 0 and shard 1/],
    ['duplicate', () => [[[0, 0]]], /lists member 0 twice/],
    ['empty shard', () => [[[0], []]], /shard 1 is empty/],
    ['empty subgroup', () => [[]], /subgroup 0 is not a non-empty array/],
    ['throws', () => { throw new Error('no can do'); }, /threw: no can do/],
  ];
  for (const [name, fn, re] of bad) {
    const r = allocateLayout(custom(fn), range(4), null);
    t.false(r.ok, name);
    if (!r.ok) t.regex(r.reason, re, name);
  }
});

test('validatePolicies rejects nonsense with ERR_SUBGROUP_POLICY', (t) => {
  const es = (o: Partial<{ shards: number; members_per_shard: number; min_members_per_shard: number }>) =>
    store({ kind: 'even_sharding', shards: 2, members_per_shard: 3, ...o });
  const bad: SubgroupTypeSpec[][] = [
    es({ shards: 0 }), es({ shards: 1.5 }), es({ members_per_shard: -1 }), es({ members_per_shard: 256 }),
    es({ min_members_per_shard: 4 }), es({ min_members_per_shard: 0 }),
    store({ kind: 'one_subgroup', min_members: 3, max_members: 2 }),
    store({ kind: 'identical_subgroups', count: 0, shards: 1, members_per_shard: 1 }),
    [{ type: '', policy: { kind: 'one_subgroup' } }],
    [{ type: 'a', policy: { kind: 'one_subgroup' } }, { type: 'a', policy: { kind: 'one_subgroup' } }],
  ];
  for (const types of bad) {
    const err = t.throws(() => validatePolicies(types), undefined, JSON.stringify(types));
    t.is((err as { code?: string }).code, 'ERR_SUBGROUP_POLICY');
    t.throws(() => allocateLayout(types, range(8), null));
  }
  t.notThrows(() => validatePolicies([...es({ min_members_per_shard: 1 }), { type: 'b', policy: { kind: 'one_subgroup' } }]));
});

test('layoutsEqual compares structure and order', (t) => {
  const a = ok(allocateLayout(store({ kind: 'one_subgroup' }), [1, 2], null));
  t.true(layoutsEqual(a, ok(allocateLayout(store({ kind: 'one_subgroup' }), [1, 2], null))));
  t.false(layoutsEqual(a, ok(allocateLayout(store({ kind: 'one_subgroup' }), [2, 1], null))));
  t.false(layoutsEqual(a, { subgroups: [] }));
});

/** Per type: [min, full] of every shard, flattened across subgroups (identical_subgroups share one pool). */
function bounds(p: AllocationPolicy): { min: number; full: number }[] {
  if (p.kind === 'one_subgroup') return [{ min: p.min_members ?? 1, full: p.max_members ?? 255 }];
  if (p.kind === 'custom') throw new Error('not generated');
  const n = p.shards * (p.kind === 'identical_subgroups' ? p.count : 1);
  return range(n).map(() => ({ min: p.min_members_per_shard ?? p.members_per_shard, full: p.members_per_shard }));
}

function randomTypes(rand: () => number): SubgroupTypeSpec[] {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  return range(int(1, 3)).map((i): SubgroupTypeSpec => {
    const k = int(1, 4);
    const min = rand() < 0.5 ? undefined : int(1, k);
    const which = int(0, 3);
    const policy: AllocationPolicy = which === 0 ? { kind: 'one_subgroup', ...(rand() < 0.5 ? {} : { max_members: k }) }
      : which === 1 ? { kind: 'identical_subgroups', count: int(1, 3), shards: int(1, 2), members_per_shard: k, min_members_per_shard: min }
      : { kind: 'even_sharding', shards: int(1, 3), members_per_shard: k, min_members_per_shard: min };
    return { type: `t${i}`, policy };
  });
}

test('property: 300 seeds x 30 views keep shards disjoint, stable, sized and deterministic', (t) => {
  let successes = 0;
  let failures = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const rand = prng(seed);
    const types = randomTypes(rand);
    let members = range(Math.floor(rand() * 12));
    let nextId = members.length;
    let previous: Layout | null = null;
    for (let step = 0; step < 30; step++) {
      const ctx = `seed ${seed} step ${step} types ${JSON.stringify(types)} members [${members.join(',')}]`;
      const r = allocateLayout(types, members, previous);
      const again = allocateLayout(types, members, previous);
      const same = r.ok && again.ok ? layoutsEqual(r.layout, again.layout) : !r.ok && !again.ok && r.reason === again.reason;
      if (!same) t.fail(`determinism: ${ctx}`);
      if (!r.ok) {
        failures++;
        // Failing is only allowed when the view cannot fill some type completely.
        if (!types.some(({ policy }) => members.length < bounds(policy).reduce((s, b) => s + b.full, 0))) t.fail(`needless failure: ${ctx}: ${r.reason}`);
      } else {
        successes++;
        for (const { type, policy } of types) {
          const sgs = r.layout.subgroups.filter((s) => s.type === type);
          const shards = sgs.flatMap((s) => s.shards.map((sh) => sh.members));
          const b = bounds(policy);
          if (shards.length !== b.length) t.fail(`shard count: ${ctx}`);
          const all = shards.flat();
          if (new Set(all).size !== all.length) t.fail(`disjoint: ${ctx}`);
          if (!all.every((id) => members.includes(id))) t.fail(`membership: ${ctx}`);
          shards.forEach((s, i) => {
            if (s.length < b[i]!.min || s.length > b[i]!.full) t.fail(`size: ${ctx}`);
            // Maximal: a shard below full size means there was no spare left for it.
            if (s.length < b[i]!.full && all.length < members.length) t.fail(`unfilled: ${ctx}`);
          });
          for (const p of previous?.subgroups.filter((s) => s.type === type) ?? []) {
            p.shards.forEach((ps, i) => {
              const survivors = ps.members.filter((id) => members.includes(id));
              const now = sgs.find((s) => s.index === p.index)!.shards[i]!.members;
              if (survivors.some((id, k) => now[k] !== id)) t.fail(`stability: ${ctx}`);
            });
          }
        }
        previous = r.layout;
      }
      members = members.filter(() => rand() >= 0.15);
      for (let n = Math.floor(rand() * 4); n > 0; n--) members.push(nextId++);
    }
  }
  t.true(successes > 1000 && failures > 100, `both outcomes exercised (${successes} ok, ${failures} not)`);
});
