/**
 * Views (DESIGN §6): a view id, the members in rank order with their addresses, and the layout of
 * subgroups and shards. Every member of a view holds the same View value; joiners receive it over
 * TCP, so it is plain data (JSON-safe).
 */
import type { Layout } from '../subgroups/allocation.js';
import { describeLayout } from '../subgroups/allocation.js';
import { TempestError } from '../util/errors.js';

/** Where a member listens; what a joiner announces and what a view carries for each member. */
export interface MemberInfo {
  id: number;
  ip: string;
  /** TCP: joins, redirects and per-view hellos. */
  gms_port: number;
  /** libfabric endpoint (sst_port). */
  fabric_port: number;
  /** TCP: state transfer to joiners. */
  state_transfer_port: number;
  /** TCP: external clients (later layers). */
  external_port: number;
}

export interface View {
  vid: number;
  /** Rank order; the leader is the lowest-ranked member that is not suspected. */
  members: MemberInfo[];
  /** No subgroups when the view is inadequately provisioned. */
  layout: Layout;
  /**
   * In an inadequate view, the last adequate layout: the next layout is allocated from it, so
   * survivors keep their places. It travels with the view so a joiner allocates as the others do.
   */
  basis?: Layout | null;
}

/** What `tempest status` and `GET /v1/cluster` show. */
export interface ViewSummary {
  vid: number;
  members: { id: number; ip: string; gms_port: number; rank: number }[];
  leader: number;
  layout: { type: string; index: number; shards: number[][] }[];
  /** One line, e.g. "store[0]: shard 0 = {0,1,2}". */
  layout_text: string;
}

export function summarize(view: View, leaderId = view.members[0]?.id ?? -1): ViewSummary {
  return {
    vid: view.vid,
    members: view.members.map((m, rank) => ({ id: m.id, ip: m.ip, gms_port: m.gms_port, rank })),
    leader: leaderId,
    layout: view.layout.subgroups.map((s) => ({ type: s.type, index: s.index, shards: s.shards.map((sh) => [...sh.members]) })),
    layout_text: describeLayout(view.layout),
  };
}

/** Number of i64 cells a member record takes in the table (see encodeMember). */
export const MEMBER_CELLS = 6;

function ipToNumber(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new TempestError('ERR_MEMBERSHIP_ADDRESS', `member address "${ip}" is not an IPv4 address`);
  }
  return ((parts[0]! * 256 + parts[1]!) * 256 + parts[2]!) * 256 + parts[3]!;
}

function numberToIp(n: number): string {
  return [Math.floor(n / 2 ** 24) % 256, Math.floor(n / 2 ** 16) % 256, Math.floor(n / 256) % 256, n % 256].join('.');
}

/** A member record as table cells (joiners travel through the table in proposals). */
export function encodeMember(m: MemberInfo): number[] {
  return [m.id, ipToNumber(m.ip), m.gms_port, m.fabric_port, m.state_transfer_port, m.external_port];
}

export function decodeMember(cells: readonly number[]): MemberInfo {
  const [id, ip, gms_port, fabric_port, state_transfer_port, external_port] = cells as [number, number, number, number, number, number];
  return { id, ip: numberToIp(ip), gms_port, fabric_port, state_transfer_port, external_port };
}

export function isMemberInfo(v: unknown): v is MemberInfo {
  const m = v as MemberInfo;
  const port = (p: unknown) => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536;
  return (
    typeof m === 'object' && m !== null && Number.isInteger(m.id) && m.id >= 0 && m.id < 2 ** 31 && typeof m.ip === 'string' &&
    /^\d{1,3}(\.\d{1,3}){3}$/.test(m.ip) && m.ip.split('.').every((o) => Number(o) <= 255) &&
    port(m.gms_port) && port(m.fabric_port) && port(m.state_transfer_port) && port(m.external_port)
  );
}
