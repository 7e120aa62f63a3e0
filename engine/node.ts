/**
 * One Tempest member process, wired from a loaded configuration. The CLI (`tempest node`) calls
 * startNode() and close() on SIGINT/SIGTERM. A member starts the group when the configured leader
 * address is its own, and otherwise joins through it (redirected to the current leader); from then
 * on it follows the group's views, restarts from its logs after a total shutdown, and answers
 * external clients on external_port. It hosts the store's shards (engine/store) and, when [HTTP]
 * is enabled, serves the blob API on [HTTP] host:port for every key, forwarding to the key's shard.
 */
import type { TempestConfig } from '../config/index.js';
import { startBlobServer, type BlobServer } from '../blob-api/index.js';
import { Group, type HostedType } from './rpc/group.js';
import { startStoreMember, storeHostedType, type StoreMember } from './store/store-member.js';
import type { Logger } from './util/log.js';

export interface NodeHandle {
  /** One human sentence on what this member is running and where. */
  describe(): string;
  /** Stops every layer and releases ports, memory registrations and threads. Idempotent. */
  close(): Promise<void>;
}

/** Runs a member hosting the store (and `types`, for tools and tests that add their own). */
export async function startNode(cfg: TempestConfig, log: Logger, types: HostedType[] = []): Promise<NodeHandle> {
  const d = cfg.DERECHO;
  const group = await Group.start({ config: cfg, types: [storeHostedType(cfg), ...types], log: log.child({ member: d.local_id }) });
  const member = group.member;
  const memberLog = log.child({ member: d.local_id });
  let store: StoreMember;
  try {
    store = await startStoreMember(cfg, group, memberLog);
  } catch (err) {
    await group.close();
    throw err;
  }
  let http: BlobServer | null = null;
  if (cfg.HTTP.enabled) {
    try {
      http = await startBlobServer({ store: store.client, log: memberLog, max_blob_size_bytes: cfg.HTTP.max_blob_size, host: cfg.HTTP.host, port: cfg.HTTP.port });
    } catch (err) {
      await store.close().catch(() => {});
      await group.close();
      throw err;
    }
  }
  member.onView((v) => log.info({ vid: v.vid, members: v.members.map((m) => m.id), leader: v.leader }, 'view'));
  log.info({ local_id: d.local_id, provider: member.fabric.provider, domain: member.fabric.domain }, 'member started');
  let closing: Promise<void> | undefined;
  return {
    describe: () => {
      const v = member.summary();
      const view = v === null ? 'not in a view yet' : `in view ${v.vid} with members ${v.members.map((m) => m.id).join(', ')} (leader ${v.leader})`;
      return (
        `Tempest member ${d.local_id}: libfabric ${member.fabric.provider} on ${member.fabric.domain} at ${d.local_ip}:${d.sst_port}, ` +
        `group membership on ${d.local_ip}:${d.gms_port}, external clients on ${d.local_ip}:${d.external_port}, ${view}; ` +
        (http === null ? 'HTTP blob API off.' : `HTTP blob API on http://${cfg.HTTP.host}:${http.port}/v1/.`)
      );
    },
    close: () =>
      (closing ??= (async () => {
        // Stop taking requests first, so none is cut by the store closing under it.
        if (http !== null) await http.close().catch(() => {});
        await store.close().catch(() => {});
        await group.close();
      })()),
  };
}
