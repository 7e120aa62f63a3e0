/**
 * One Tempest member process, wired from a loaded configuration. The CLI (`tempest node`) calls
 * startNode() and close() on SIGINT/SIGTERM. So far a member runs the foundation: its libfabric
 * endpoint, the TCP bootstrap on gms_port, and the shared state table with heartbeats.
 */
import type { TempestConfig } from '../config/index.js';
import { Member } from './member.js';
import type { Logger } from './util/log.js';

export interface NodeHandle {
  /** One human sentence on what this member is running and where. */
  describe(): string;
  /** Stops every layer and releases ports, memory registrations and threads. Idempotent. */
  close(): Promise<void>;
}

export async function startNode(cfg: TempestConfig, log: Logger): Promise<NodeHandle> {
  const d = cfg.DERECHO;
  const self = { id: d.local_id, ip: d.local_ip, port: d.gms_port, fabric_port: d.sst_port };
  // Membership (joins through the leader, views) is not built yet: a member forms a group of one.
  const member = await Member.start({
    self,
    members: [self],
    provider: cfg.RDMA.provider,
    domain: cfg.RDMA.domain,
    tx_depth: cfg.RDMA.tx_depth,
    rx_depth: cfg.RDMA.rx_depth,
    heartbeat_ms: d.heartbeat_ms,
    timeout_ms: d.timeout_ms,
    connect_timeout_ms: d.timeout_ms * 10,
    messenger: { slot_size_bytes: d.max_p2p_request_payload_size, slots_per_peer: d.p2p_window_size, send_timeout_ms: d.timeout_ms * 30 },
  });
  log.info({ local_id: d.local_id, provider: member.fabric.provider, domain: member.fabric.domain }, 'member started');
  let closing: Promise<void> | undefined;
  return {
    describe: () =>
      `Tempest member ${d.local_id}: libfabric ${member.fabric.provider} on ${member.fabric.domain} at ${d.local_ip}:${d.sst_port}, ` +
      `bootstrap on ${d.local_ip}:${d.gms_port}, shared state table with a ${d.heartbeat_ms} ms heartbeat. ` +
      `Ordered multicast (engine/multicast) is built but needs membership to join the other replicas; membership, storage, HTTP and FUSE come next.`,
    close: () => (closing ??= member.close()),
  };
}
