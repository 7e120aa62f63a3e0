/**
 * Request kinds on external_port (wire.ts frames): what members ask each other (p2p calls, replies
 * to ordered calls) and what external clients ask members. Bodies are codec values (codec.ts).
 */

/** [type, subgroupIndex, method, args] -> result. A p2p (read-only) call on the replica held here. */
export const KIND_P2P_CALL = 1;
/** Binary reply batch (see encodeReplies in group.ts: per reply a 24-byte header, then the codec outcome) -> nothing. Replies of members to an ordered call's origin. */
export const KIND_ORDERED_REPLIES = 2;
/**
 * [type, subgroupIndex, shard, method, args, client, seq, hlc?] -> {version, replies}. An external client's ordered call,
 * relayed. `hlc`, when present, is the newest timestamp the client has seen: the relaying member's clock observes it
 * before stamping the call, so a client's later update gets a later timestamp in every shard (causal time order).
 */
export const KIND_EXTERNAL_ORDERED = 3;
/** nothing -> ClusterInfo. The current view, with the members' external ports. */
export const KIND_CLUSTER = 4;
/** [type, subgroupIndex, shard, method, args] -> result. An external p2p call, answered here or refused. */
export const KIND_EXTERNAL_P2P = 5;

/** Push: ClusterInfo, after each view change, to every connected client. */
export const PUSH_VIEW = 100;

/** What clients learn of the group: enough to fail over and to pick a shard member. */
export interface ClusterInfo {
  vid: number;
  leader: number;
  members: { id: number; ip: string; external_port: number }[];
  /** Per subgroup of the layout: type, index, shard member ids. */
  layout: { type: string; index: number; shards: number[][] }[];
}
