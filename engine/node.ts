/**
 * One Tempest member process, wired from a loaded configuration. The CLI (`tempest node`) calls
 * startNode() and close() on SIGINT/SIGTERM. A member starts the group when the configured leader
 * address is its own, and otherwise joins through it (redirected to the current leader); from then
 * on it follows the group's views. The store, HTTP and FUSE layers that will host replicated state
 * come next; until then the group hosts no subgroup types.
 */
import type { TempestConfig } from '../config/index.js';
import { GroupMember } from './membership/group-member.js';
import type { Logger } from './util/log.js';

export interface NodeHandle {
  /** One human sentence on what this member is running and where. */
  describe(): string;
  /** Stops every layer and releases ports, memory registrations and threads. Idempotent. */
  close(): Promise<void>;
}

export async function startNode(cfg: TempestConfig, log: Logger): Promise<NodeHandle> {
  const d = cfg.DERECHO;
  const member = await GroupMember.start({
    self: { id: d.local_id, ip: d.local_ip, gms_port: d.gms_port, fabric_port: d.sst_port, state_transfer_port: d.state_transfer_port, external_port: d.external_port },
    leader: { ip: d.leader_ip, gms_port: d.leader_gms_port },
    provider: cfg.RDMA.provider,
    domain: cfg.RDMA.domain,
    tx_depth: cfg.RDMA.tx_depth,
    rx_depth: cfg.RDMA.rx_depth,
    types: [],
    handlers: {},
    multicast: {
      max_payload_size: d.max_payload_size,
      max_smc_payload_size: d.max_smc_payload_size,
      block_size: d.block_size,
      window_size: d.window_size,
      rdmc_send_algorithm: d.rdmc_send_algorithm,
    },
    heartbeat_ms: d.heartbeat_ms,
    timeout_ms: d.timeout_ms,
    require_majority: !d.disable_partitioning_safety,
    data_dir: d.data_dir,
    log: log.child({ member: d.local_id }),
  });
  member.onView((v) => log.info({ vid: v.vid, members: v.members.map((m) => m.id), leader: v.leader }, 'view'));
  log.info({ local_id: d.local_id, provider: member.fabric.provider, domain: member.fabric.domain }, 'member started');
  let closing: Promise<void> | undefined;
  return {
    describe: () => {
      const v = member.summary();
      const view = v === null ? 'not in a view yet' : `in view ${v.vid} with members ${v.members.map((m) => m.id).join(', ')} (leader ${v.leader})`;
      return (
        `Tempest member ${d.local_id}: libfabric ${member.fabric.provider} on ${member.fabric.domain} at ${d.local_ip}:${d.sst_port}, ` +
        `group membership on ${d.local_ip}:${d.gms_port}, ${view}. Storage, HTTP and FUSE come next.`
      );
    },
    close: () => (closing ??= member.close()),
  };
}
