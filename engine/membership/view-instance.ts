/**
 * One installed view at this member: the view's membership table (heartbeats, suspicion and the
 * view-change columns of gms-core.ts), and for each shard this member belongs to, a table and an
 * ordered multicast over that shard's members. Everything here is registered for this view only:
 * a write from a member still living in an older view lands in that view's memory, never in this
 * one's. The tables of view v+1 are prepared (and their hellos exchanged) while view v still runs;
 * the service ids and registrations of a view are retired as described at EPOCHS below.
 */
import { MulticastGroup, multicastPlan, type MulticastSettings } from '../multicast/group.js';
import { FailureDetector, failureDetectorColumns } from '../sst/failure-detector.js';
import { SharedStateTable } from '../sst/table.js';
import type { Layout } from '../subgroups/allocation.js';
import type { Hello } from '../transport/bootstrap.js';
import { type Fabric, type MemoryRegion } from '../transport/fabric.js';
import { StaticMesh } from '../transport/peer-mesh.js';
import { Service } from '../transport/services.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { type Decision, GmsCore, gmsColumns } from './gms-core.js';
import type { MemberInfo, View } from './view.js';

/**
 * Service ids rotate over EPOCHS consecutive views: 8..11 for the membership table, then 3 per
 * shard per epoch up to 127 (128 and up belong to applications). A view's registrations outlive
 * it until its epoch comes round again (see close()), so a late write from a peer still in that
 * view lands in memory nobody reads instead of hitting a closed key, which ofi_rxm answers by
 * tearing down the whole connection.
 */
export const EPOCHS = 4;
const GMS_SERVICE_BASE = Service.FirstViewTable;
const SHARD_SERVICE_BASE = Service.FirstViewShard;
export const MAX_SHARDS = Math.floor((Service.FirstApplication - SHARD_SERVICE_BASE) / (3 * EPOCHS));

/**
 * Shard table column: 1 + the last version (vid << 32 | index) this member persisted of the shard;
 * 0 = nothing yet (version 0 is a real version: the first delivery of view 0).
 */
const PERSISTED_COLUMN = 'persisted';

export type SharedMulticastSettings = Omit<MulticastSettings, 'name' | 'senders' | 'mode'>;

export interface ShardRef {
  /** Index into view.layout.subgroups. */
  subgroup: number;
  shard: number;
  /** Index over all shards of the layout (service ids and trim slots follow it). */
  global: number;
  members: number[];
}

export interface ViewInstanceOptions {
  fabric: Fabric;
  view: View;
  self: MemberInfo;
  multicast: SharedMulticastSettings;
  heartbeat_ms: number;
  timeout_ms: number;
  send_timeout_ms: number;
  maxJoins: number;
  requireMajority: boolean;
  /** A table changed or a tick passed: the manager steps the core. */
  onChange: () => void;
  onDeliver: (shard: ShardRef, senderId: number, index: number, payload: Buffer) => void;
  /** A shard's persistence frontier may have moved (a member reported a higher persisted version). */
  onPersisted: (shard: ShardRef) => void;
  /** Durable subgroups: log an accepted value's ragged trim before it is published. */
  logAccepted: ((d: Decision) => void) | null;
  log: Logger;
}

/** Every shard of a layout, numbered globally. */
export function allShards(layout: Layout | null): ShardRef[] {
  const out: ShardRef[] = [];
  if (layout === null) return out;
  layout.subgroups.forEach((sg, subgroup) => sg.shards.forEach((sh, shard) => out.push({ subgroup, shard, global: out.length, members: [...sh.members] })));
  return out;
}

interface ShardRuntime {
  ref: ShardRef;
  sst: SharedStateTable;
  smcRegion: MemoryRegion;
  group: MulticastGroup | null;
  /** Resolves once the shard's members agreed on settings; sends wait for it. */
  ready: Promise<MulticastGroup> | null;
  agreed: boolean;
}

export class ViewInstance {
  readonly view: View;
  readonly sst: SharedStateTable;
  readonly shards: ShardRuntime[] = [];
  /** For each trim slot (sender of a shard), the view ranks of that shard's members. */
  readonly slotRanks: number[][] = [];
  private readonly slotBase = new Map<number, number>();
  private readonly opts: ViewInstanceOptions;
  private readonly log: Logger;
  core: GmsCore | null = null;
  detector: FailureDetector | null = null;
  private ticker: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: ViewInstanceOptions) {
    this.opts = opts;
    this.view = opts.view;
    this.log = opts.log;
    const { fabric, view, self } = opts;
    const ids = view.members.map((m) => m.id);
    const epoch = view.vid % EPOCHS;
    const shards = allShards(view.layout);
    if (shards.length > MAX_SHARDS) throw new TempestError('ERR_SUBGROUP_POLICY', `a layout has at most ${MAX_SHARDS} shards, not ${shards.length}`);
    for (const ref of shards) {
      this.slotBase.set(ref.global, this.slotRanks.length);
      const ranks = ref.members.map((id) => ids.indexOf(id));
      for (let s = 0; s < ref.members.length; s++) this.slotRanks.push(ranks);
    }
    this.sst = new SharedStateTable({
      fabric,
      members: ids,
      myId: self.id,
      columns: [...failureDetectorColumns(ids.length), ...gmsColumns(ids.length, this.slotRanks.length, opts.maxJoins)],
      service: GMS_SERVICE_BASE + epoch,
      regionName: 'gms.sst',
      onPeerError: (rank, message) => this.peerFailed(ids[rank]!, message),
      peer_error_grace_ms: opts.timeout_ms,
      log: opts.log.child({ table: 'gms', vid: view.vid }),
    });
    try {
      for (const ref of shards) {
        if (!ref.members.includes(self.id)) continue;
        const plan = multicastPlan(this.settingsFor(ref));
        const sst = new SharedStateTable({
          fabric,
          members: ref.members,
          myId: self.id,
          columns: [...plan.columns, { name: PERSISTED_COLUMN, type: 'i64', group: PERSISTED_COLUMN }],
          service: this.serviceOf(ref, 0),
          regionName: `s${ref.global}.sst`,
          onPeerError: (rank, message) => this.peerFailed(ref.members[rank]!, message),
          peer_error_grace_ms: opts.timeout_ms,
          log: opts.log.child({ table: `shard ${ref.global}`, vid: view.vid }),
        });
        const smcRegion = fabric.register(Buffer.alloc(Object.values(plan.regionSizes)[0]!));
        this.shards.push({ ref, sst, smcRegion, group: null, ready: null, agreed: false });
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private serviceOf(ref: ShardRef, which: 0 | 1 | 2): number {
    return SHARD_SERVICE_BASE + ((this.view.vid % EPOCHS) * MAX_SHARDS + ref.global) * 3 + which;
  }

  private settingsFor(ref: ShardRef): MulticastSettings {
    return { ...this.opts.multicast, name: `s${ref.global}`, senders: ref.members, mode: 'ordered' };
  }

  /** The regions peers need for this view (sent in the view's hello). */
  helloRegions(): Hello['regions'] {
    const regions: Hello['regions'] = { 'gms.sst': this.sst.region.descriptor() };
    for (const sh of this.shards) {
      regions[`s${sh.ref.global}.sst`] = sh.sst.region.descriptor();
      regions[`s${sh.ref.global}.smc`] = sh.smcRegion.descriptor();
    }
    return regions;
  }

  /** Wires the view to its peers (hellos by member id; a member without one is suspected at once). */
  connect(hellos: Map<number, Hello & { address_fi: number }>): void {
    const { fabric, view, self } = this.opts;
    const boot = view.members.map((m) => ({ id: m.id, ip: m.ip, port: m.gms_port }));
    const selfBoot = { id: self.id, ip: self.ip, port: self.gms_port };
    const peersFor = (ids: readonly number[]) =>
      ids.filter((id) => id !== self.id && hellos.has(id)).map((id) => {
        const h = hellos.get(id)!;
        return { id, address: h.address_fi as never, regions: h.regions };
      });
    this.sst.attach(new StaticMesh(selfBoot, boot, peersFor(boot.map((b) => b.id))));
    const detector = new FailureDetector({
      sst: this.sst,
      heartbeat_ms: this.opts.heartbeat_ms,
      timeout_ms: this.opts.timeout_ms,
      log: this.log,
      onSuspect: () => this.opts.onChange(),
    });
    this.detector = detector;
    this.core = new GmsCore({
      table: this.sst,
      effects: this.opts.logAccepted === null ? { wedge: () => this.wedge() } : { wedge: () => this.wedge(), logAccepted: this.opts.logAccepted },
      slotRanks: this.slotRanks,
      maxJoins: this.opts.maxJoins,
      requireMajority: this.opts.requireMajority,
    });
    this.sst.predicate({ name: `view ${view.vid}: membership`, kind: 'recurrent', test: () => true, trigger: () => this.opts.onChange() });
    for (const sh of this.shards) {
      const shardBoot = sh.ref.members.map((id) => boot.find((b) => b.id === id)!);
      const peers = peersFor(sh.ref.members).map((p) => {
        const regions = { ...p.regions, sst: p.regions[`s${sh.ref.global}.sst`]!, [`s${sh.ref.global}.smc`]: p.regions[`s${sh.ref.global}.smc`]! };
        return { ...p, regions };
      });
      const mesh = new StaticMesh(selfBoot, shardBoot, peers);
      sh.sst.attach(mesh);
      {
        const r = sh.ref;
        let last = -1;
        sh.sst.predicate({
          name: `view ${view.vid}: shard ${r.global} persistence frontier`,
          kind: 'recurrent',
          test: () => sh.sst.min(PERSISTED_COLUMN) > last,
          trigger: () => {
            last = sh.sst.min(PERSISTED_COLUMN);
            this.opts.onPersisted(r);
          },
        });
      }
      const host = { fabric, mesh, sst: sh.sst, regions: { [`s${sh.ref.global}.smc`]: sh.smcRegion } };
      const ref = sh.ref;
      const group = new MulticastGroup({
        ...this.settingsFor(ref),
        member: host,
        send_timeout_ms: this.opts.send_timeout_ms,
        services: { smc: this.serviceOf(ref, 1), rdmc: this.serviceOf(ref, 2) },
        onPeerError: (id, message) => this.peerFailed(id, message),
        peer_error_grace_ms: this.opts.timeout_ms,
        log: this.log.child({ shard: ref.global }),
      });
      group.handle((sender, index, payload) => this.opts.onDeliver(ref, sender, index, payload));
      sh.group = group;
      sh.ready = group.agreeOnSettings(this.opts.send_timeout_ms).then(() => {
        if (this.closed) throw new TempestError('ERR_MULTICAST_CLOSED', 'the view ended');
        sh.agreed = true;
        return group;
      });
      sh.ready.catch((err: Error) => {
        if (!this.closed) this.log.error({ err: err.message, shard: ref.global }, 'shard members disagree on multicast settings, or one never started');
      });
    }
    for (const m of view.members) {
      if (m.id !== self.id && !hellos.has(m.id)) detector.suspectNow(view.members.indexOf(m), 'did not answer the view hello');
    }
    this.sst.push();
    detector.start();
    // The core also runs on a tick: a suspicion or a peer's silence changes nothing in the table.
    this.ticker = setInterval(() => {
      // Shard rows are pushed on every change; once per heartbeat as well, so a push lost with a
      // torn-down connection is repaired.
      for (const sh of this.shards) sh.sst.push();
      this.opts.onChange();
    }, this.opts.heartbeat_ms);
  }

  /**
   * A write to a member failed: its connection is gone. As in Derecho, that member is suspected
   * (a lost write cannot be repaired within the view); the next view resends what it lacked.
   */
  private peerFailed(id: number, message: string): void {
    if (this.closed) return;
    const rank = this.view.members.findIndex((m) => m.id === id);
    if (rank < 0 || this.detector === null) return;
    this.detector.suspectNow(rank, `a write to it failed: ${message}`);
    this.opts.onChange();
  }

  /** Publishes that this member persisted shard `global` up to `version` (vid << 32 | index). */
  setPersisted(global: number, version: number): void {
    const sh = this.shardGroup(global);
    if (sh === undefined || this.closed) return;
    if (version + 1 <= sh.sst.get(sh.sst.myRank, PERSISTED_COLUMN)) return;
    sh.sst.set(PERSISTED_COLUMN, version + 1);
    sh.sst.push(PERSISTED_COLUMN);
  }

  /** The highest version every member of shard `global` persisted, as seen in this view (-1: none; null: not our shard). */
  persistedFrontier(global: number): number | null {
    const sh = this.shardGroup(global);
    if (sh === undefined) return null;
    return sh.sst.min(PERSISTED_COLUMN) - 1;
  }

  /** The multicast of our shard `ref`, once its members agreed on settings. */
  shardGroup(global: number): ShardRuntime | undefined {
    return this.shards.find((s) => s.ref.global === global);
  }

  /** Freezes every shard's multicast; the final received count per trim slot (ours filled in). */
  private wedge(): number[] {
    const fr = new Array<number>(this.slotRanks.length).fill(0);
    for (const sh of this.shards) {
      const base = this.slotBase.get(sh.ref.global)!;
      if (sh.group === null) continue; // never started: nothing sent or received
      sh.group.wedge().forEach((v, s) => (fr[base + s] = v));
    }
    return fr;
  }

  /** Delivers exactly up to the agreed trim in every shard of ours. */
  deliverTrim(decision: Decision): void {
    for (const sh of this.shards) {
      if (sh.group === null) continue;
      const base = this.slotBase.get(sh.ref.global)!;
      sh.group.deliverTrim(decision.trim.slice(base, base + sh.ref.members.length));
    }
  }

  /**
   * Stops the view's tables, detector and multicasts and frees their service ids. Returns the
   * memory registered for the view: the caller deregisters it EPOCHS - 1 views later.
   */
  close(): MemoryRegion[] {
    if (this.closed) return [];
    this.closed = true;
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.detector?.stop();
    const regions: MemoryRegion[] = [this.sst.region];
    for (const sh of this.shards) {
      if (sh.group) regions.push(...sh.group.registeredRegions());
      sh.group?.close();
      sh.sst.close(true);
      regions.push(sh.sst.region, sh.smcRegion);
    }
    this.sst.close(true);
    return regions;
  }
}
