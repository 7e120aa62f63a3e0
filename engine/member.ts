/**
 * The parts every member runs, assembled in order: the libfabric endpoint, the peer mesh
 * (bootstrap over TCP on gms_port), the shared state table with heartbeats and suspicion, and
 * the point-to-point messenger. Closing undoes it in reverse order.
 */
import { FailureDetector, failureDetectorColumns } from './sst/failure-detector.js';
import type { ColumnSpec } from './sst/layout.js';
import { SharedStateTable } from './sst/table.js';
import { Fabric, type MemoryRegion } from './transport/fabric.js';
import { Messenger } from './transport/messenger.js';
import { PeerMesh } from './transport/peer-mesh.js';
import type { BootstrapMember } from './transport/bootstrap.js';
import { layerLogger, type Logger } from './util/log.js';

export interface MemberAddress extends BootstrapMember {
  /** The member's libfabric endpoint port (sst_port). */
  fabric_port: number;
}

export interface MemberOptions {
  self: MemberAddress;
  /** All members in rank order, self included. */
  members: MemberAddress[];
  provider: string;
  domain: string;
  tx_depth: number;
  rx_depth: number;
  heartbeat_ms: number;
  timeout_ms: number;
  /** How long start-up waits for every member to be reachable. */
  connect_timeout_ms: number;
  /** Columns beyond the failure detector's. */
  columns?: ColumnSpec[];
  /** Extra memory regions (bytes, by name) registered once and advertised to peers. */
  regionSizes?: Record<string, number>;
  messenger: { slot_size_bytes: number; slots_per_peer: number; send_timeout_ms: number };
  onSuspect?: (id: number, reason: string) => void;
  /** Member-level logger; each layer gets its own child (`layer` binding). */
  log?: Logger;
}

export class Member {
  private constructor(
    readonly fabric: Fabric,
    readonly mesh: PeerMesh,
    readonly sst: SharedStateTable,
    readonly detector: FailureDetector,
    readonly messenger: Messenger,
    readonly regions: Record<string, MemoryRegion>,
  ) {}

  static async start(opts: MemberOptions): Promise<Member> {
    const { self } = opts;
    const layerLog = (layer: string) => (opts.log ? opts.log.child({ layer }) : layerLogger(layer, { member: self.id }));
    const fabric = Fabric.open({
      provider: opts.provider,
      domain: opts.domain,
      ip: self.ip,
      port: self.fabric_port,
      tx_depth: opts.tx_depth,
      rx_depth: opts.rx_depth,
      log: layerLog('transport'),
    });
    try {
      const ids = opts.members.map((m) => m.id);
      const sst = new SharedStateTable({
        fabric,
        members: ids,
        myId: self.id,
        columns: [...failureDetectorColumns(ids.length), ...(opts.columns ?? [])],
        log: layerLog('sst'),
      });
      const regions: Record<string, MemoryRegion> = {};
      for (const [name, size_bytes] of Object.entries(opts.regionSizes ?? {})) regions[name] = fabric.register(Buffer.alloc(size_bytes));
      const mesh = await PeerMesh.connect({
        fabric,
        self,
        members: opts.members,
        regions: { ...regions, sst: sst.region },
        timeout_ms: opts.connect_timeout_ms,
        log: layerLog('transport'),
      });
      sst.attach(mesh);
      const messenger = new Messenger({ mesh, ...opts.messenger });
      const detector = new FailureDetector({
        sst,
        heartbeat_ms: opts.heartbeat_ms,
        timeout_ms: opts.timeout_ms,
        log: layerLog('sst'),
        onSuspect: (id, reason) => {
          messenger.failPeer(id, reason);
          opts.onSuspect?.(id, reason);
        },
      });
      sst.push();
      detector.start();
      return new Member(fabric, mesh, sst, detector, messenger, regions);
    } catch (err) {
      fabric.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.detector.stop();
    this.messenger.close();
    this.sst.close();
    await this.mesh.close();
    this.fabric.close();
  }
}
