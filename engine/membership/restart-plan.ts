/**
 * Total restart (DESIGN §6), the decision part: pure functions over what the restarting members
 * report, so they can be tested without processes.
 *
 * After every member stopped, each restarts from its data dir: the view it last installed and,
 * per shard it held, the last version in its log. The restart leader (the configured leader)
 * gathers those reports and starts the next view once a majority of the last view is back with at
 * least one member of every shard. Per shard the longest log wins: its holder is the source, and
 * every other member of the shard fetches what it lacks from it (state transfer with `since`, which
 * also trims an entry the source does not hold). Nothing acknowledged is lost: a durable update
 * is acknowledged only once every member of its shard persisted it, so any member has it.
 */
import { allocateLayout, type Layout, type SubgroupTypeSpec } from '../subgroups/allocation.js';
import type { StoredView } from './remembered-view.js';
import type { MemberInfo, View } from './view.js';
import { allShards } from './view-instance.js';

/** What one restarting member reports (in its join request). */
export interface RestartReport {
  member: MemberInfo;
  /** The view it last installed (-1 when it remembers none). */
  vid: number;
  /** Per shard it holds a log of ("type#index/shard"): the last version in that log, decimal. */
  versions: Record<string, string>;
}

export function shardName(layout: Layout, subgroup: number, shard: number): string {
  const sg = layout.subgroups[subgroup]!;
  return `${sg.type}#${sg.index}/${shard}`;
}

/** Whether the members back are enough to restart from `last`: a majority, and someone of every shard. */
export function restartQuorum(last: StoredView, back: ReadonlySet<number>): { ok: true } | { ok: false; reason: string } {
  const ids = last.members.map((m) => m.id);
  const present = ids.filter((id) => back.has(id));
  if (present.length * 2 <= ids.length) {
    return { ok: false, reason: `${present.length} of the ${ids.length} members of view ${last.vid} are back (members ${present.join(', ') || 'none'}); a majority is needed` };
  }
  const layout = last.layout ?? { subgroups: [] };
  for (const ref of allShards(layout)) {
    if (!ref.members.some((id) => back.has(id))) {
      return { ok: false, reason: `no member of shard ${shardName(layout, ref.subgroup, ref.shard)} (members ${ref.members.join(', ')}) is back` };
    }
  }
  return { ok: true };
}

export interface RestartPlan {
  view: View;
  /** Per member id: the shards (of view.layout) it fetches, and from whom. */
  fetches: Map<number, { subgroup: number; shard: number; source: number }[]>;
  /** Per member id: the shards (of view.layout) whose state it offers to the others. */
  offers: Map<number, { subgroup: number; shard: number }[]>;
  /** Per shard name: the source and the length of its log, for the log line. */
  sources: Record<string, { source: number; version: string }>;
}

/**
 * The first view after a total restart: every member back (the leader first if it is back), the
 * layout allocated from the last one (survivors keep their shards), vid above any remembered one.
 */
export function planRestart(last: StoredView, leader: MemberInfo, reports: readonly RestartReport[], types: SubgroupTypeSpec[]): RestartPlan {
  const byId = new Map<number, RestartReport>();
  for (const r of reports) byId.set(r.member.id, r);
  // Rank order: members of the last view in their old order, then the others in id order.
  const order: MemberInfo[] = [];
  for (const m of last.members) {
    const r = byId.get(m.id);
    if (r !== undefined) order.push(r.member);
  }
  for (const r of [...byId.values()].sort((a, b) => a.member.id - b.member.id)) if (!order.some((m) => m.id === r.member.id)) order.push(r.member);
  if (!order.some((m) => m.id === leader.id)) order.unshift(leader);
  const vid = Math.max(last.vid, ...reports.map((r) => r.vid)) + 1;
  const lastLayout = last.layout && last.layout.subgroups.length > 0 ? last.layout : null;
  const alloc = allocateLayout(types, order.map((m) => m.id), lastLayout);
  const view: View = alloc.ok ? { vid, members: order, layout: alloc.layout } : { vid, members: order, layout: { subgroups: [] }, basis: lastLayout };
  const fetches = new Map<number, { subgroup: number; shard: number; source: number }[]>();
  const offers = new Map<number, { subgroup: number; shard: number }[]>();
  const sources: RestartPlan['sources'] = {};
  for (const ref of allShards(view.layout)) {
    const name = shardName(view.layout, ref.subgroup, ref.shard);
    const versionOf = (id: number): bigint => {
      const v = byId.get(id)?.versions[name];
      return v === undefined ? -1n : BigInt(v);
    };
    // The longest log of this shard among the members back (old holders or not: a log is a log).
    let source = -1;
    let best = -1n;
    for (const m of order) {
      const v = versionOf(m.id);
      if (v > best) {
        best = v;
        source = m.id;
      }
    }
    if (source < 0) continue; // nobody holds anything of it: it starts empty
    sources[name] = { source, version: best.toString() };
    let offered = false;
    for (const id of ref.members) {
      if (id === source || versionOf(id) === best) continue;
      let f = fetches.get(id);
      if (f === undefined) fetches.set(id, (f = []));
      f.push({ subgroup: ref.subgroup, shard: ref.shard, source });
      offered = true;
    }
    if (offered) {
      let o = offers.get(source);
      if (o === undefined) offers.set(source, (o = []));
      o.push({ subgroup: ref.subgroup, shard: ref.shard });
    }
  }
  return { view, fetches, offers, sources };
}

/** A member that may lead a total restart, in the order they are tried. */
export interface RestartCandidate {
  ip: string;
  gms_port: number;
  /** Its id when it is a member of the last view (the configured leader may not be). */
  id: number | null;
}

/**
 * Who leads a total restart, in priority order: the configured leader, then the members of the
 * last view in their order there (each once). A member leads only when every candidate ahead of
 * it is unreachable, and gives way as soon as one of them answers.
 */
export function restartSuccession(leader: { ip: string; gms_port: number }, last: StoredView): RestartCandidate[] {
  const out: RestartCandidate[] = [];
  const seen = new Set<string>();
  const add = (ip: string, gms_port: number, id: number | null) => {
    const k = `${ip}:${gms_port}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push({ ip, gms_port, id });
  };
  add(leader.ip, leader.gms_port, last.members.find((m) => m.ip === leader.ip && m.gms_port === leader.gms_port)?.id ?? null);
  for (const m of last.members) add(m.ip, m.gms_port, m.id);
  return out;
}

/**
 * A restart view's identity beyond its vid: two candidates that both lead a restart may pick the
 * same vid, never the same members (each member joins one of them). Hellos for a restart view are
 * answered only for the same identity, so a member never completes a restart view it is not in.
 */
export function viewIdentity(view: { vid: number; members: readonly { id: number }[] }): string {
  return `${view.vid}:${view.members.map((m) => m.id).join(',')}`;
}
