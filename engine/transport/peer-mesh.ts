/**
 * Connects a fixed set of members pairwise: hellos over the TCP bootstrap, peers into the address
 * vector, then one warm-up RMA write each way so that every libfabric connection is up (and known
 * to work) before any protocol uses it.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { BootstrapServer, exchangeHello, type BootstrapMember, type Hello } from './bootstrap.js';
import { type CompletionHandler, CompletionKind, type Fabric, immediate, type MemoryRegion, type PeerAddress, type RemoteRegion } from './fabric.js';
import { Service } from './services.js';

export interface Peer {
  id: number;
  /** Position in the member list (0-based), the same at every member. */
  rank: number;
  address: PeerAddress;
  regions: Record<string, RemoteRegion>;
}

/** The peers of one table or multicast group, by rank: what the SST, SMC and RDMC need. */
export interface MeshView {
  readonly self: BootstrapMember;
  /** Every member in rank order, self included. */
  readonly members: readonly BootstrapMember[];
  readonly myRank: number;
  /** Peers by member id (self excluded). */
  readonly peers: ReadonlyMap<number, Peer>;
  peerByRank(rank: number): Peer | undefined;
}

/** A MeshView over peers already known (a view's members, or a shard of them). */
export class StaticMesh implements MeshView {
  readonly myRank: number;
  readonly peers = new Map<number, Peer>();

  constructor(
    readonly self: BootstrapMember,
    readonly members: readonly BootstrapMember[],
    peers: readonly Omit<Peer, 'rank'>[],
  ) {
    this.myRank = members.findIndex((m) => m.id === self.id);
    assert(this.myRank >= 0, 'we are a member of our own mesh');
    for (const p of peers) {
      const rank = members.findIndex((m) => m.id === p.id);
      assert(rank >= 0 && p.id !== self.id, 'mesh peers are other members');
      this.peers.set(p.id, { ...p, rank });
    }
  }

  peerByRank(rank: number): Peer | undefined {
    const m = this.members[rank];
    return m === undefined ? undefined : this.peers.get(m.id);
  }
}

export interface MeshOptions {
  fabric: Fabric;
  self: BootstrapMember;
  /** Every member, self included, in rank order; at most 256. */
  members: BootstrapMember[];
  /** Regions of ours that peers may write, by name. */
  regions: Record<string, MemoryRegion>;
  timeout_ms: number;
  log: Logger;
}

/** Ranks whose warm-up write arrived, and who to tell about later ones. */
class WarmUpArrivals {
  readonly ranks = new Set<number>();
  listener: ((rank: number) => void) | null = null;

  note(rank: number): void {
    this.ranks.add(rank);
    this.listener?.(rank);
  }
}

/** Bytes each member reserves for peers' warm-up and credit-return writes (content unused). */
export const SCRATCH_BYTES = 64;

export class PeerMesh implements MeshView {
  /** Peers by member id (self excluded). */
  readonly peers = new Map<number, Peer>();
  readonly myRank: number;
  /** Region peers may write for notifications whose content does not matter. */
  readonly scratch: MemoryRegion;

  private constructor(
    readonly fabric: Fabric,
    readonly self: BootstrapMember,
    readonly members: BootstrapMember[],
    private readonly server: BootstrapServer,
    scratch: MemoryRegion,
  ) {
    this.scratch = scratch;
    this.myRank = members.findIndex((m) => m.id === self.id);
  }

  peerByRank(rank: number): Peer | undefined {
    const m = this.members[rank];
    return m === undefined ? undefined : this.peers.get(m.id);
  }

  static async connect(opts: MeshOptions): Promise<PeerMesh> {
    const { fabric, self, members, log } = opts;
    assert(members.length <= 256, 'a mesh has at most 256 members');
    assert(new Set(members.map((m) => m.id)).size === members.length, 'member ids are unique');
    const myRank = members.findIndex((m) => m.id === self.id);
    if (myRank < 0) throw new TempestError('ERR_TRANSPORT_NOT_MEMBER', `member ${self.id} is not in the member list`);

    const scratch = fabric.register(Buffer.alloc(SCRATCH_BYTES));
    // A faster peer may warm up its side before we finish the bootstrap: listen from the start.
    const warmedBy = new WarmUpArrivals();
    fabric.onRemoteWrite(Service.Mesh, (value) => warmedBy.note(value & 0xff));
    const regions: Hello['regions'] = { scratch: scratch.descriptor() };
    for (const [name, r] of Object.entries(opts.regions)) regions[name] = r.descriptor();
    const hello: Hello = { id: self.id, provider: fabric.provider, address: fabric.address().toString('base64'), regions };

    const server = await BootstrapServer.listen(self, hello, log);
    const mesh = new PeerMesh(fabric, self, members, server, scratch);
    try {
      const deadline = Date.now() + opts.timeout_ms;
      const others = members.filter((m) => m.id !== self.id);
      const hellos = await Promise.all(others.map((m) => exchangeHello(m, hello, deadline)));
      for (const h of hellos) {
        if (h.provider !== fabric.provider) {
          throw new TempestError(
            'ERR_TRANSPORT_PROVIDER_MISMATCH',
            `member ${h.id} runs libfabric provider "${h.provider}" but this member runs "${fabric.provider}"`,
          );
        }
        const rank = members.findIndex((m) => m.id === h.id);
        const address = fabric.addPeer(Buffer.from(h.address, 'base64'));
        mesh.peers.set(h.id, { id: h.id, rank, address, regions: h.regions });
      }
      await mesh.warmUp(deadline, warmedBy);
      log.info({ members: members.map((m) => m.id), provider: fabric.provider }, 'mesh connected');
      return mesh;
    } catch (err) {
      await mesh.close();
      throw err;
    }
  }

  /** One RMA write with immediate data to each peer; waits until ours completed and theirs arrived. */
  private warmUp(deadline: number, warmedBy: WarmUpArrivals): Promise<void> {
    const fabric = this.fabric;
    const pendingOut = new Set(this.peers.keys());
    const pendingIn = new Set([...this.peers.values()].filter((p) => !warmedBy.ranks.has(p.rank)).map((p) => p.id));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        const missing = [...new Set([...pendingOut, ...pendingIn])];
        finish(
          new TempestError(
            'ERR_TRANSPORT_PEER_UNREACHABLE',
            `libfabric (${fabric.provider}) could not reach member(s) ${missing.join(', ')} within the start-up timeout`,
          ),
        );
      }, Math.max(1, deadline - Date.now()));
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (pendingOut.size === 0 && pendingIn.size === 0) finish();
      };
      const handler: CompletionHandler = {
        onCompletion: (kind, tag) => {
          if (kind === CompletionKind.Write) pendingOut.delete(tag);
          check();
        },
        onError: (_kind, tag, _err, message) => {
          // A peer still starting may refuse the first connection: try again until the deadline.
          if (!settled) setTimeout(() => post(tag), 20);
          this.fabric.log.debug({ peer: tag, message }, 'warm-up write failed, retrying');
        },
      };
      const handlerId = fabric.addHandler(handler);
      warmedBy.listener = (rank) => {
        const peer = this.peerByRank(rank);
        if (peer) pendingIn.delete(peer.id);
        check();
      };
      const post = (id: number) => {
        if (settled || fabric.closed) return;
        const peer = this.peers.get(id);
        assert(peer !== undefined, 'warm-up target is a peer');
        const scratchRegion = peer.regions.scratch;
        assert(scratchRegion !== undefined, 'peer advertised its scratch region');
        const ok = fabric.write(peer.address, this.scratch, 0, 8, scratchRegion, 0, handlerId, id, immediate(Service.Mesh, this.myRank));
        if (!ok) fabric.whenCapacity(() => post(id));
      };
      for (const id of this.peers.keys()) post(id);
      check();
    });
  }

  async close(): Promise<void> {
    await this.server.close();
  }
}
