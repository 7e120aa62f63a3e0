/**
 * The store inside a member process: the BlobStore subgroup's layout from [STORE], a StoreClient
 * that reads this member's own replicas without a round trip (and reaches the others through the
 * external-client protocol), and the collector that drops chunks no version refers to.
 *
 * Collection runs on the lowest-ranked member of each shard only (so a shard gets one collect call
 * per interval, not one per member), and only when its replica has unreferenced chunks old enough.
 */
import type { TempestConfig } from '../../config/index.js';
import { HLC_LOGICAL_BITS } from '../persistence/hlc.js';
import type { Group, HostedType } from '../rpc/group.js';
import type { OrderedOutcome } from '../rpc/query-results.js';
import type { ReplicatedType } from '../rpc/replicated-type.js';
import type { Logger } from '../util/log.js';
import { RemoteStoreClient } from './store-client.js';
import { type BlobStore, BlobStoreType, STORE_TYPE_NAME } from './store-object.js';

/** Room for framing around a chunk in a request. */
const REQUEST_MARGIN_BYTES = 64 * 1024;

export function storeHostedType(cfg: TempestConfig): HostedType {
  const s = cfg.STORE;
  // A shard keeps serving with any survivors while the group has a majority (the group's own
  // quorum rule guards against split brain); spares top it up again as they join.
  return { type: BlobStoreType, policy: { kind: 'even_sharding', shards: s.shards, members_per_shard: s.members_per_shard, min_members_per_shard: 1 } };
}

export interface StoreMember {
  client: RemoteStoreClient;
  close(): Promise<void>;
}

export async function startStoreMember(cfg: TempestConfig, group: Group, log: Logger): Promise<StoreMember> {
  const d = cfg.DERECHO;
  const slog = log.child({ layer: 'store' });
  const replica = (shard: number): BlobStore | undefined => {
    const ref = group.member.myShard(STORE_TYPE_NAME, 0);
    if (ref === undefined || ref.shard !== shard) return undefined;
    return group.localReplica(BlobStoreType, 0);
  };
  const ordered = (shard: number, method: 'putChunk', args: unknown[], hlc: bigint): Promise<OrderedOutcome<unknown>> | undefined =>
    replica(shard) === undefined ? undefined : group.orderedOutcome(BlobStoreType as ReplicatedType, 0, method, args, hlc);
  const client = await RemoteStoreClient.connect({
    contacts: [{ host: d.local_ip, port: d.external_port }, { host: d.leader_ip, port: d.leader_external_port }],
    log: slog,
    chunk_size_bytes: d.block_size,
    max_reply_bytes: d.max_p2p_reply_payload_size,
    max_request_bytes: Math.max(d.max_p2p_request_payload_size, d.block_size + REQUEST_MARGIN_BYTES),
    upload_window: cfg.STORE.upload_window,
    stable_wait_ms: cfg.STORE.stable_wait_ms,
    local: { replica, ordered },
  });
  let collecting = false;
  const collect = async (): Promise<void> => {
    const ref = group.member.myShard(STORE_TYPE_NAME, 0);
    const members = ref === undefined ? [] : (group.getSubgroupMembers(BlobStoreType, 0)[ref.shard] ?? []);
    if (ref === undefined || members[0] !== group.myId) return;
    const r = replica(ref.shard);
    if (r === undefined) return;
    const before = (BigInt(Date.now() - cfg.STORE.chunk_grace_ms) * 1000n) << HLC_LOGICAL_BITS;
    let due = false;
    for (const c of r.state.value.chunks.values()) {
      if (c.refs === 0 && c.touched < before) {
        due = true;
        break;
      }
    }
    if (!due) return;
    const replies = await group.getSubgroup(BlobStoreType, 0).orderedSend('collect', before).all();
    slog.info({ shard: ref.shard, chunks: replies.get(group.myId) }, 'collected unreferenced chunks');
  };
  const timer = setInterval(() => {
    if (collecting) return;
    collecting = true;
    collect()
      .catch((err: Error) => slog.warn({ err: err.message }, 'chunk collection failed; it is tried again next interval'))
      .finally(() => (collecting = false));
  }, cfg.STORE.collect_interval_ms);
  timer.unref();
  return {
    client,
    close: async () => {
      clearInterval(timer);
      await client.close();
    },
  };
}
