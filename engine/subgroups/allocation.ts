/**
 * Subgroup and shard allocation: which members of a view host which shard of which replicated-object type.
 *
 * Every member computes the layout on its own from the same (types, members, previous), and they must all get
 * the same answer, so this is a pure, deterministic function over arrays iterated in index order.
 *
 * Rules (after Derecho's default subgroup allocator):
 * 1. Each type allocates independently from the whole view, so different types may share members. Within a
 *    subgroup the shards are disjoint; the subgroups of an identical_subgroups type draw from one pool, in order,
 *    so they are disjoint too.
 * 2. Stability: a shard keeps its surviving members from `previous` (matched by type name, subgroup index and
 *    shard index) in their old order, because moving a member costs a state transfer and changes its rank.
 * 3. Shards below full size are topped up from the spares (view members in no shard of the type) in rank order,
 *    shard 0 first. When spares are scarce every shard is first promised its minimum, so an early shard never
 *    starves a later one into failure; with enough spares this is plain "fill shard 0, then shard 1, ...".
 *    On a first view nothing survives, so shards fill contiguously in rank order.
 * 4. A shard left below its minimum makes the view inadequately provisioned: {ok:false, reason}, never a throw,
 *    since the membership layer just waits for more members. Nonsense policies are configuration errors: throw.
 * 5. custom allocators are trusted for nothing: their output is checked and any problem (or throw) is ok:false.
 * 6. Results are fresh arrays, never aliasing `members` or `previous`.
 */
import { TempestError } from '../util/errors.js';
import { assert } from '../util/assert.js';

export type AllocationPolicy =
  | { kind: 'one_subgroup'; min_members?: number; max_members?: number }
  | { kind: 'even_sharding'; shards: number; members_per_shard: number; min_members_per_shard?: number }
  | { kind: 'identical_subgroups'; count: number; shards: number; members_per_shard: number; min_members_per_shard?: number }
  | { kind: 'custom'; allocate: (input: CustomAllocationInput) => number[][][] };

export interface CustomAllocationInput { members: readonly number[]; previous: readonly (readonly (readonly number[])[])[] | null }
export interface SubgroupTypeSpec { type: string; policy: AllocationPolicy }
export interface ShardLayout { members: number[] }
export interface SubgroupLayout { type: string; index: number; shards: ShardLayout[] }
/** Subgroups in spec order, then subgroup index order. */
export interface Layout { subgroups: SubgroupLayout[] }
export type AllocationResult = { ok: true; layout: Layout } | { ok: false; reason: string };

/** Shard member ranks travel as one byte on the wire, so a shard holds at most 255 members. */
export const MAX_SHARD_MEMBERS = 255;

type Size = { min: number; full: number };
type TypeResult = { ok: true; subgroups: number[][][] } | { ok: false; reason: string };

export function validatePolicies(types: readonly SubgroupTypeSpec[]): void {
  const names = new Set<string>();
  for (const spec of types) {
    if (typeof spec.type !== 'string' || spec.type === '') {
      throw new TempestError('ERR_SUBGROUP_POLICY', 'subgroup type name must be a non-empty string');
    }
    const bad = (msg: string): never => {
      throw new TempestError('ERR_SUBGROUP_POLICY', `subgroup type "${spec.type}": ${msg}`);
    };
    const count = (name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): void => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(`${name} must be an integer >= 1 (got ${String(v)})`);
      if ((v as number) > max) bad(`${name} must be at most ${max} (got ${String(v)})`);
    };
    if (names.has(spec.type)) bad('duplicate type name');
    names.add(spec.type);
    const p = spec.policy;
    switch (p?.kind) {
      case 'one_subgroup':
        if (p.min_members !== undefined) count('min_members', p.min_members, MAX_SHARD_MEMBERS);
        if (p.max_members !== undefined) count('max_members', p.max_members, MAX_SHARD_MEMBERS);
        if ((p.min_members ?? 1) > (p.max_members ?? MAX_SHARD_MEMBERS)) bad('min_members exceeds max_members');
        break;
      case 'identical_subgroups':
      case 'even_sharding':
        if (p.kind === 'identical_subgroups') count('count', p.count);
        count('shards', p.shards);
        count('members_per_shard', p.members_per_shard, MAX_SHARD_MEMBERS);
        if (p.min_members_per_shard !== undefined) count('min_members_per_shard', p.min_members_per_shard);
        if ((p.min_members_per_shard ?? 0) > p.members_per_shard) bad('min_members_per_shard exceeds members_per_shard');
        break;
      case 'custom':
        if (typeof p.allocate !== 'function') bad('custom policy needs an allocate function');
        break;
      default:
        bad(`unknown policy kind ${JSON.stringify((p as { kind?: unknown } | undefined)?.kind)}`);
    }
  }
}

export function allocateLayout(types: readonly SubgroupTypeSpec[], members: readonly number[], previous: Layout | null): AllocationResult {
  validatePolicies(types);
  assert(new Set(members).size === members.length, 'view members are unique');
  const subgroups: SubgroupLayout[] = [];
  for (const { type, policy } of types) {
    const r = policy.kind === 'custom'
      ? runCustom(type, policy.allocate, members, previous)
      : allocateStandard(type, sizesOf(policy), members, previous);
    if (!r.ok) return r;
    r.subgroups.forEach((shards, index) => subgroups.push({ type, index, shards: shards.map((m) => ({ members: m })) }));
  }
  return { ok: true, layout: { subgroups } };
}

/** Minimum and full size of every shard of every subgroup of a built-in policy. */
function sizesOf(p: Exclude<AllocationPolicy, { kind: 'custom' }>): Size[][] {
  if (p.kind === 'one_subgroup') return [[{ min: p.min_members ?? 1, full: p.max_members ?? MAX_SHARD_MEMBERS }]];
  const shard = { min: p.min_members_per_shard ?? p.members_per_shard, full: p.members_per_shard };
  const subgroup = Array.from({ length: p.shards }, () => shard);
  return Array.from({ length: p.kind === 'identical_subgroups' ? p.count : 1 }, () => subgroup);
}

function previousShards(previous: Layout | null, type: string, index: number): number[][] | undefined {
  return previous?.subgroups.find((s) => s.type === type && s.index === index)?.shards.map((s) => s.members);
}

function allocateStandard(type: string, sizes: Size[][], members: readonly number[], previous: Layout | null): TypeResult {
  const inView = new Set(members);
  const claimed = new Set<number>();
  // Survivors are claimed for every shard of the type before any top-up, so no spare is someone staying put.
  const shards = sizes.map((subgroup, sg) => {
    const prev = previousShards(previous, type, sg);
    return subgroup.map((size, sh) => {
      const kept: number[] = [];
      for (const id of prev?.[sh] ?? []) {
        if (kept.length < size.full && inView.has(id) && !claimed.has(id)) { kept.push(id); claimed.add(id); }
      }
      return kept;
    });
  });
  const spares = members.filter((id) => !claimed.has(id));
  const flat = sizes.flatMap((subgroup, sg) => subgroup.map((size, sh) => ({ sg, sh, size, shard: shards[sg]![sh]! })));
  // Plan how many spares each shard takes: every shard's minimum first, then up to full size, shard 0 first.
  const take = flat.map(() => 0);
  let left = spares.length;
  for (const bound of ['min', 'full'] as const) {
    flat.forEach((f, i) => {
      const n = Math.min(left, Math.max(0, f.size[bound] - f.shard.length - take[i]!));
      take[i] = take[i]! + n;
      left -= n;
    });
  }
  let next = 0;
  for (const [i, f] of flat.entries()) {
    f.shard.push(...spares.slice(next, next + take[i]!));
    next += take[i]!;
    if (f.shard.length < f.size.min) {
      return { ok: false, reason: `type "${type}" subgroup ${f.sg} shard ${f.sh} has ${f.shard.length} member(s) `
        + `but needs at least ${f.size.min} (view has ${members.length} member(s))` };
    }
  }
  return { ok: true, subgroups: shards };
}

function runCustom(type: string, allocate: (input: CustomAllocationInput) => number[][][],
  members: readonly number[], previous: Layout | null): TypeResult {
  const mine = previous?.subgroups.filter((s) => s.type === type) ?? [];
  const prev: number[][][] | null = mine.length === 0 ? null : [];
  for (const s of mine) prev![s.index] = s.shards.map((sh) => sh.members.slice());
  if (prev) for (let i = 0; i < prev.length; i++) prev[i] ??= []; // no holes: absent subgroups had no shards
  let out: unknown;
  try {
    out = allocate({ members: members.slice(), previous: prev });
  } catch (err) {
    return { ok: false, reason: `custom allocator for type "${type}" threw: ${err instanceof Error ? err.message : String(err)}` };
  }
  const problem = checkCustom(out, new Set(members));
  if (problem !== null) return { ok: false, reason: `custom allocator for type "${type}": ${problem}` };
  return { ok: true, subgroups: (out as number[][][]).map((sg) => sg.map((shard) => shard.slice())) };
}

function checkCustom(out: unknown, inView: Set<number>): string | null {
  if (!Array.isArray(out)) return 'did not return an array of subgroups';
  for (let sg = 0; sg < out.length; sg++) {
    const shards: unknown = out[sg];
    if (!Array.isArray(shards) || shards.length === 0) return `subgroup ${sg} is not a non-empty array of shards`;
    const owner = new Map<number, number>(); // member id -> shard index, to tell duplicates from overlaps
    for (let sh = 0; sh < shards.length; sh++) {
      const shard: unknown = shards[sh];
      const where = `subgroup ${sg} shard ${sh}`;
      if (!Array.isArray(shard)) return `${where} is not an array of member ids`;
      if (shard.length === 0) return `${where} is empty`;
      if (shard.length > MAX_SHARD_MEMBERS) return `${where} has ${shard.length} members (max ${MAX_SHARD_MEMBERS})`;
      for (const id of shard as unknown[]) {
        if (typeof id !== 'number' || !inView.has(id)) return `${where} names ${String(id)}, which is not a member of the view`;
        const other = owner.get(id);
        if (other === sh) return `${where} lists member ${id} twice`;
        if (other !== undefined) return `member ${id} is in both shard ${other} and shard ${sh} of subgroup ${sg}`;
        owner.set(id, sh);
      }
    }
  }
  return null;
}

/** Every (subgroup, shard) the member belongs to, in layout order. */
export function shardsOf(layout: Layout, memberId: number): { subgroup: number; shard: number }[] {
  const found: { subgroup: number; shard: number }[] = [];
  layout.subgroups.forEach((sg, subgroup) => sg.shards.forEach((s, shard) => {
    if (s.members.includes(memberId)) found.push({ subgroup, shard });
  }));
  return found;
}

/** One line, e.g. `store[0]: shard 0 = {0,1,2}, shard 1 = {3,4,5}; meta[0]: shard 0 = {0,1}`. */
export function describeLayout(layout: Layout): string {
  if (layout.subgroups.length === 0) return '(no subgroups)';
  return layout.subgroups
    .map((sg) => `${sg.type}[${sg.index}]: ` + sg.shards.map((s, i) => `shard ${i} = {${s.members.join(',')}}`).join(', '))
    .join('; ');
}

export function layoutsEqual(a: Layout, b: Layout): boolean {
  return a.subgroups.length === b.subgroups.length && a.subgroups.every((x, i) => {
    const y = b.subgroups[i]!;
    return x.type === y.type && x.index === y.index && x.shards.length === y.shards.length
      && x.shards.every((s, j) => {
        const t = y.shards[j]!.members;
        return s.members.length === t.length && s.members.every((id, k) => id === t[k]);
      });
  });
}
