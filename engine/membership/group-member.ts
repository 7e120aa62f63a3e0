/**
 * A member of a Tempest group across views (DESIGN §6–7): starts a group or joins one through any
 * member (redirected to the leader), installs each view the core decides, delivers the ragged trim,
 * moves shard state to members new to a shard, resends what the old view did not deliver, and,
 * when it finds itself on a minority side or excluded, refuses updates and keeps asking to rejoin.
 *
 * Sends go through a per-shard outbox (outbox.ts) that outlives views: an update is acknowledged
 * when it is delivered here, which in an ordered shard means every member received it; whatever a
 * view did not deliver is sent again, in order, in the next one.
 */
import { allocateLayout, type Layout, type SubgroupTypeSpec, validatePolicies } from '../subgroups/allocation.js';
import type { Hello } from '../transport/bootstrap.js';
import { Fabric, type MemoryRegion, type PeerAddress } from '../transport/fabric.js';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { ControlServer, controlRequest } from './control.js';
import type { Decision } from './gms-core.js';
import { type Contact, requestAdmission } from './join-client.js';
import { BATCH_OVERHEAD_BYTES, forEachInBatch, Outbox, type Settle } from './outbox.js';
import { RememberedView, type StoredView } from './remembered-view.js';
import { planRestart, type RestartReport, restartQuorum, restartSuccession, shardName, viewIdentity } from './restart-plan.js';
import { fetchState, StateTransferServer } from './state-transfer.js';
import { decodeMember, encodeMember, isMemberInfo, type MemberInfo, summarize, type View, type ViewSummary } from './view.js';
import { allShards, EPOCHS, type SharedMulticastSettings, type ShardRef, ViewInstance } from './view-instance.js';

/** One update delivered in order: `index` counts deliveries in view `vid` (version = vid << 32 | index). */
export interface Delivery {
  /** Index into the view's layout. */
  subgroup: number;
  /** The subgroup's index among the subgroups of its type (what getState and setState take). */
  subgroupIndex: number;
  shard: number;
  sender: number;
  vid: number;
  index: number;
  /** The shard's members in view `vid` (shared: read it, do not change it). */
  members: readonly number[];
  /** Valid during the call only. */
  payload: Buffer;
}

/**
 * A shard's state captured at the end of a view, produced for a member new to the shard as a
 * stream of records (each 1 byte or more; their meaning is the handler's), so that a state may
 * be larger than memory. `since` is the last version that member already holds in its own log
 * (-1n when none), so a persistent shard sends only the log suffix it lacks.
 */
export type StateSource = (since: bigint) => AsyncIterable<Buffer>;

/** What the layer above provides per subgroup type. */
export interface SubgroupHandlers {
  /** An update delivered in order (payload valid during the call). */
  deliver(m: Delivery): void;
  /** The shard's state now (end of a view), for a member new to the shard; captured synchronously. */
  getState(subgroupIndex: number, shard: number): StateSource;
  /**
   * Replaces the shard's state with the records a member of the shard streams (this member is
   * new to the shard); deliveries wait until it resolves. On a failure (the stream breaks) the
   * handler leaves a state it can resume from, as its localVersion says: the fetch is retried.
   */
  setState(subgroupIndex: number, shard: number, records: AsyncIterable<Buffer>): Promise<void>;
  /** Makes the shard ready for deliveries here (opens its logs); awaited before a view that gives it to us starts. */
  prepare?(subgroupIndex: number, shard: number): Promise<void>;
  /** The last version this member holds of the shard (for state transfer); -1n when none. */
  localVersion?(subgroupIndex: number, shard: number): bigint;
  /**
   * Durable subgroup: a send is acknowledged only once every member of the shard has persisted
   * it (reportPersisted), and ragged trims are logged before they are accepted.
   */
  durable?: boolean;
}

/** Where an acknowledged update was delivered. */
export interface Delivered {
  vid: number;
  index: number;
}

export interface GroupMemberOptions {
  self: MemberInfo;
  /** Where to ask to join; when it is ourselves we start the group. */
  leader: Contact;
  provider: string;
  domain: string;
  tx_depth: number;
  rx_depth: number;
  types: SubgroupTypeSpec[];
  handlers: Record<string, SubgroupHandlers>;
  multicast: SharedMulticastSettings;
  heartbeat_ms: number;
  timeout_ms: number;
  /** Longest an update waits (view changes, inadequate views) before failing. */
  send_timeout_ms?: number;
  /** Longest start() waits to be admitted. */
  join_timeout_ms?: number;
  /** Updates queued per shard before send() fails fast. */
  max_pending_sends?: number;
  require_majority?: boolean;
  /**
   * Where the last installed view is remembered (data_dir). A configured leader that restarts
   * while the group runs on asks the members it remembers before it starts a group of its own.
   */
  data_dir?: string;
  log: Logger;
}

export type MemberState = 'joining' | 'restarting' | 'member' | 'rejoining' | 'closed';

const MAX_JOINS_PER_VIEW = 8;
const VIEW_TIMES_KEPT = 100;
/** Pause between rejoin attempts of a member that lost its majority. */
const REJOIN_RETRY_MS = 200;
const HELLO_RETRY_MS = 20;
/** A restart candidate leads after its place in the succession times this many timeout_ms of nobody ahead answering. */
const RESTART_GRACE_TIMEOUTS = 3;
/** How often restarting members look for a candidate ahead of them (or a running group). */
const RESTART_PROBE_MS = 500;

/** vid << 32 | index as a safe integer (the tables hold i64 cells as JS numbers). */
function versionNumber(vid: number, index: number): number {
  assert(vid < 2 ** 21 && index < 2 ** 32, 'versions fit in 53 bits');
  return vid * 2 ** 32 + index;
}

function shardKey(subgroup: number, shard: number): string {
  return `${subgroup}/${shard}`;
}

export class GroupMember {
  readonly self: MemberInfo;
  private readonly opts: GroupMemberOptions;
  private readonly log: Logger;
  readonly fabric: Fabric;
  private control: ControlServer | null = null;
  private transfer: StateTransferServer | null = null;
  private current: ViewInstance | null = null;
  /** The last layout that could be allocated (inadequate views keep it for stability). */
  private lastLayout: Layout | null = null;
  private lastView: View | null = null;
  /** Our hello for the view being installed (answered to peers asking for that view id). */
  private hello: (Hello & { vid: number }) | null = null;
  /** viewIdentity() of the view `hello` is for (hellos are answered only for the same view). */
  private helloIdentity: string | null = null;
  private readonly pendingJoins = new Map<number, { member: MemberInfo; reply: (a: unknown) => void }>();
  private readonly outboxes = new Map<string, Outbox>();
  /** Durable sends delivered here, waiting for the shard's persistence frontier (in version order). */
  private readonly awaitingPersist = new Map<string, { version: number; vid: number; index: number; settle: Settle }[]>();
  /** What this member reported persisted per shard (carried into each new view's table). */
  private readonly persistedHere = new Map<string, number>();
  private readonly viewListeners: ((v: ViewSummary) => void)[] = [];
  private readonly lostMajorityListeners: ((reason: string) => void)[] = [];
  /** Shards whose state is still arriving here: deliveries wait. */
  private readonly awaitingState = new Set<string>();
  private changing = false;
  /** Registrations of ended views, kept until their service ids come round again. */
  private retired: { vid: number; regions: MemoryRegion[]; members: number[] }[] = [];
  /** Each peer's libfabric address, from the latest hello (forgotten some views after it leaves). */
  private readonly peerAddress = new Map<number, PeerAddress>();
  /** State transfers of the current view still running. */
  private stateFetches: Promise<void> | null = null;
  state: MemberState = 'joining';
  private sendTimer: NodeJS.Timeout | undefined;
  private rejoinTimer: NodeJS.Timeout | undefined;
  /** The latest view changes installed here (at most VIEW_TIMES_KEPT), each from the first wedge, ms. */
  readonly viewChangeTimes_ms: number[] = [];
  private wedgedAt_ms = 0;
  private readonly remembered: RememberedView | null;

  private constructor(opts: GroupMemberOptions, fabric: Fabric) {
    this.opts = opts;
    this.remembered = opts.data_dir === undefined ? null : new RememberedView(opts.data_dir, opts.log);
    this.self = opts.self;
    this.log = opts.log;
    this.fabric = fabric;
  }

  static async start(opts: GroupMemberOptions): Promise<GroupMember> {
    validatePolicies(opts.types);
    for (const t of opts.types) if (opts.handlers[t.type] === undefined) throw new TempestError('ERR_SUBGROUP_POLICY', `no handlers for subgroup type "${t.type}"`);
    const fabric = Fabric.open({
      provider: opts.provider,
      domain: opts.domain,
      ip: opts.self.ip,
      port: opts.self.fabric_port,
      tx_depth: opts.tx_depth,
      rx_depth: opts.rx_depth,
      log: opts.log.child({ layer: 'transport' }),
    });
    const gm = new GroupMember(opts, fabric);
    try {
      gm.control = await ControlServer.listen(opts.self.ip, opts.self.gms_port, 'gms_port', (req, reply, closed) => gm.onControl(req, reply, closed), opts.log);
      gm.transfer = await StateTransferServer.listen(opts.self.ip, opts.self.state_transfer_port, opts.log);
      gm.sendTimer = setInterval(() => gm.expireSends(), Math.max(10, Math.min(1000, opts.heartbeat_ms))).unref();
      const isLeader = opts.leader.ip === opts.self.ip && opts.leader.gms_port === opts.self.gms_port;
      const last = gm.remembered ? await gm.remembered.read() : null;
      if (isLeader) {
        const contacts = (last?.members ?? []).filter((m) => m.id !== opts.self.id).map((m) => ({ ip: m.ip, gms_port: m.gms_port }));
        if (contacts.length > 0 && (await gm.rejoinRemembered(contacts))) {
          // joined the group that still runs
        } else if (last !== null) await gm.restartAsMember(last);
        else await gm.install({ vid: 0, members: [opts.self], layout: gm.allocate([opts.self.id]) ?? { subgroups: [] } }, null, []);
      } else if (last !== null) await gm.restartAsMember(last);
      else await gm.joinLoop(Date.now() + (opts.join_timeout_ms ?? 60_000), [opts.leader]);
      return gm;
    } catch (err) {
      await gm.close();
      throw err;
    }
  }

  // ---- what the layers above use ------------------------------------------------------------

  get view(): View | null {
    return this.current?.view ?? null;
  }

  summary(): ViewSummary | null {
    const v = this.current;
    if (v === null) return null;
    const leaderRank = v.core?.leaderRank() ?? 0;
    return summarize(v.view, v.view.members[leaderRank]?.id);
  }

  /** Called after every view installed here (and once now if a view is installed). */
  onView(fn: (v: ViewSummary) => void): void {
    this.viewListeners.push(fn);
    const s = this.summary();
    if (s !== null) fn(s);
  }

  /**
   * Called when this member finds itself outside a majority view (a minority side, or excluded),
   * after it stopped taking updates; it then keeps asking to rejoin unless its owner closes it.
   */
  onLostMajority(fn: (reason: string) => void): void {
    this.lostMajorityListeners.push(fn);
  }

  /** My shard of subgroup `subgroupIndex` of `type` in the current view, if any. */
  myShard(type: string, subgroupIndex = 0): ShardRef | undefined {
    const v = this.current?.view;
    if (!v) return undefined;
    return allShards(v.layout).find((r) => v.layout.subgroups[r.subgroup]!.type === type && v.layout.subgroups[r.subgroup]!.index === subgroupIndex && r.members.includes(this.self.id));
  }

  /**
   * Sends an ordered update to this member's shard of a subgroup; resolves with where it was
   * delivered once it is delivered here (every member of the shard received it) and, in a durable
   * subgroup, once every member of the shard has persisted it. Waits through view changes and inadequate
   * views, at most `timeout_ms` (default send_timeout_ms) before it is handed to a multicast;
   * refuses at once when this member is not with a majority.
   */
  send(type: string, subgroupIndex: number, payload: Buffer, opts: { timeout_ms?: number } = {}): Promise<Delivered> {
    return new Promise<Delivered>((resolve, reject) => this.sendSettled(type, subgroupIndex, payload, { resolve, reject }, opts));
  }

  /**
   * send(), answering through `settle` instead of a promise (for callers that make one object per
   * update anyway, such as rpc/group.ts). A refusal calls settle.reject synchronously.
   */
  sendSettled(type: string, subgroupIndex: number, payload: Buffer, settle: Settle, opts: { timeout_ms?: number } = {}): void {
    if (this.state === 'closed') return settle.reject(new TempestError('ERR_MEMBERSHIP_CLOSED', 'this member has left the group'));
    if (this.state !== 'member') return settle.reject(this.noQuorumError());
    if (payload.length + BATCH_OVERHEAD_BYTES > this.opts.multicast.max_payload_size) {
      return settle.reject(
        new TempestError('ERR_MULTICAST_TOO_LARGE', `an update of ${payload.length} bytes exceeds max_payload_size (${this.opts.multicast.max_payload_size} bytes, of which ${BATCH_OVERHEAD_BYTES} are framing)`),
      );
    }
    const mine = this.myShardCached(type, subgroupIndex);
    if (mine === null && this.current !== null && this.current.view.layout.subgroups.length > 0) {
      return settle.reject(new TempestError('ERR_NOT_SHARD_MEMBER', `member ${this.self.id} is not in a shard of ${type}[${subgroupIndex}]`));
    }
    // No shard yet (an inadequate view): the update waits under the subgroup's name.
    const key = mine !== null ? mine.key : `${type}#${subgroupIndex}`;
    const box = this.outbox(key);
    box.addSettled(payload, Date.now() + (opts.timeout_ms ?? this.opts.send_timeout_ms ?? 30_000), settle);
    // Nothing in flight: send now (latency). Otherwise wait for the end of this event-loop turn,
    // so that the updates asked for meanwhile go out together in one batch (throughput).
    if (box.inFlight === 0) this.pumpOutbox(key);
    else this.schedulePump(key);
  }

  /** myShard() of the current view, remembered per view (send() asks once per update), with its outbox key. */
  private myShardCached(type: string, subgroupIndex: number): { ref: ShardRef; key: string } | null {
    const v = this.current?.view;
    if (v === undefined) return null;
    let memo = this.shardMemo;
    if (memo === null || memo.view !== v) this.shardMemo = memo = { view: v, byType: new Map() };
    let perType = memo.byType.get(type);
    if (perType === undefined) memo.byType.set(type, (perType = []));
    let mine = perType[subgroupIndex];
    if (mine === undefined) {
      const ref = this.myShard(type, subgroupIndex);
      perType[subgroupIndex] = mine = ref === undefined ? null : { ref, key: shardKey(ref.subgroup, ref.shard) };
    }
    return mine;
  }

  private shardMemo: { view: View; byType: Map<string, ({ ref: ShardRef; key: string } | null)[]> } | null = null;

  private outbox(key: string): Outbox {
    let box = this.outboxes.get(key);
    if (box === undefined) this.outboxes.set(key, (box = new Outbox(this.opts.max_pending_sends ?? 4 * this.opts.multicast.window_size)));
    return box;
  }

  /** Leaves the group gracefully: waits (bounded) for our updates to be delivered, then asks to leave. */
  async leave(timeout_ms = 30_000): Promise<void> {
    const deadline = Date.now() + timeout_ms;
    while ([...this.outboxes.values()].some((b) => b.length > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const v = this.current;
    if (v?.core && this.state === 'member') {
      this.leaving = true;
      v.core.requestLeave();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.leaveResolver = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    await this.close();
  }

  private leaveResolver: (() => void) | null = null;
  /** leave() was called: every view we are still in is asked to let us go. */
  private leaving = false;

  // ---- the outbox ----------------------------------------------------------------------------

  private noQuorumError(): TempestError {
    return new TempestError('ERR_NO_QUORUM', `member ${this.self.id} is not in a view with a majority of the group (${this.state}); updates are refused until it rejoins`);
  }

  private readonly pumpsScheduled = new Set<string>();

  private schedulePump(key: string): void {
    if (this.pumpsScheduled.has(key)) return;
    this.pumpsScheduled.add(key);
    setImmediate(() => {
      this.pumpsScheduled.delete(key);
      this.pumpOutbox(key);
    });
  }

  private pumpOutbox(key: string): void {
    const box = this.outboxes.get(key);
    const v = this.current;
    if (!box || box.length === 0 || v === null || this.changing || this.state !== 'member' || v.core?.changing) return;
    const slash = key.indexOf('/');
    if (slash < 0 || key.includes('#')) return; // no shard yet (inadequate view): wait
    const sg = Number(key.slice(0, slash));
    const sh = Number(key.slice(slash + 1));
    // Our shards' runtimes (the view holds one per shard of ours; another shard has none).
    let rt: ViewInstance['shards'][number] | undefined;
    for (const r of v.shards) if (r.ref.subgroup === sg && r.ref.shard === sh) rt = r;
    if (!rt || this.awaitingState.has(key)) return;
    const group = rt.group;
    if (group === null || !rt.agreed) {
      void rt.ready?.then(() => this.pumpOutbox(key), () => {});
      return;
    }
    box.pump(group, v.view.vid, 4 * this.opts.multicast.window_size, this.opts.multicast.max_smc_payload_size);
  }

  /**
   * Our own update was delivered: the oldest outgoing one of that shard is acknowledged, at once
   * or, in a durable subgroup, once every member of the shard has persisted it.
   */
  private ownDelivered(key: string, box: Outbox, durable: boolean, vid: number, index: number): void {
    const settle = box.shiftDelivered();
    if (!durable) settle.resolve({ vid, index });
    else {
      let q = this.awaitingPersist.get(key);
      if (q === undefined) this.awaitingPersist.set(key, (q = []));
      q.push({ version: versionNumber(vid, index), vid, index, settle });
    }
    // Room for one more in flight: hand over the next waiting update, if any.
    if (box.moreWaiting) this.schedulePump(key);
  }

  /**
   * This member persisted the shard's log up to `version` (vid << 32 | index): published in the
   * shard's table, where senders read the shard's persistence frontier.
   */
  reportPersisted(type: string, subgroupIndex: number, shard: number, version: bigint): void {
    const key = `${type}#${subgroupIndex}/${shard}`;
    const n = Number(version);
    if (n <= (this.persistedHere.get(key) ?? -1)) return;
    this.persistedHere.set(key, n);
    const ref = this.shardRef(type, subgroupIndex, shard);
    if (ref !== undefined) this.current!.setPersisted(ref.global, n);
  }

  /** The shard's persistence frontier in the current view: every member persisted up to it (-1n when unknown). */
  persistedFrontier(type: string, subgroupIndex: number, shard: number): bigint {
    const ref = this.shardRef(type, subgroupIndex, shard);
    const f = ref === undefined ? null : this.current!.persistedFrontier(ref.global);
    return f === null ? -1n : BigInt(f);
  }

  private shardRef(type: string, subgroupIndex: number, shard: number): ShardRef | undefined {
    const v = this.current?.view;
    if (v === undefined) return undefined;
    return allShards(v.layout).find((r) => r.shard === shard && v.layout.subgroups[r.subgroup]!.type === type && v.layout.subgroups[r.subgroup]!.index === subgroupIndex);
  }

  /** The shard's frontier moved: acknowledge the durable sends it covers. */
  private persistedAdvanced(ref: ShardRef): void {
    const key = shardKey(ref.subgroup, ref.shard);
    const q = this.awaitingPersist.get(key);
    if (q === undefined || q.length === 0) return;
    const f = this.current?.persistedFrontier(ref.global);
    if (f === null || f === undefined) return;
    let n = 0;
    while (n < q.length && q[n]!.version <= f) n++;
    for (const w of q.splice(0, n)) w.settle.resolve({ vid: w.vid, index: w.index });
  }

  private expireSends(): void {
    const now = Date.now();
    const inadequate = this.current?.view.layout.subgroups.length === 0 ? ', inadequately provisioned' : '';
    for (const [key, box] of this.outboxes) {
      box.expire(now, () => new TempestError('ERR_MEMBERSHIP_TIMEOUT', `update not sent within its deadline (view ${this.current?.view.vid ?? 'none'}${inadequate})`));
      if (box.length > 0) this.pumpOutbox(key);
    }
    // Updates waiting for a shard (inadequate view) move to the shard this view gives us.
    for (const [key, box] of [...this.outboxes]) {
      if (!key.includes('#')) continue;
      const [type, idx] = key.split('#');
      const ref = this.myShard(type!, Number(idx));
      if (!ref) continue;
      this.outboxes.delete(key);
      const target = shardKey(ref.subgroup, ref.shard);
      this.outbox(target).absorb(box);
      this.pumpOutbox(target);
    }
  }

  private failOutboxes(err: () => TempestError): void {
    for (const box of this.outboxes.values()) box.failAll(err);
    // Delivered but not yet known to be persisted everywhere: the others may well persist them.
    for (const q of this.awaitingPersist.values()) {
      for (const w of q.splice(0)) w.settle.reject(new TempestError('ERR_MEMBERSHIP_OUTCOME_UNKNOWN', `${err().message}; this update was delivered but not yet persisted by every member of its shard`));
    }
  }

  // ---- control plane -------------------------------------------------------------------------

  private onControl(req: Record<string, unknown>, reply: (a: unknown) => void, closed: Promise<void>): void {
    if (req.type === 'hello') {
      const vid = Number(req.vid);
      if (this.hello !== null && this.hello.vid === vid && (req.identity === undefined || req.identity === this.helloIdentity)) reply({ type: 'hello', hello: this.hello });
      else reply({ type: 'not_ready', vid: this.hello?.vid ?? -1 });
      return;
    }
    if (req.type === 'status') {
      reply({ type: 'status', state: this.state, view: this.summary() });
      return;
    }
    if (req.type !== 'join' || !isMemberInfo(req.member)) {
      reply({ type: 'error', reason: `unknown or malformed request "${String(req.type)}"` });
      return;
    }
    const member = req.member;
    if (this.state === 'restarting') {
      this.holdRestartJoin(member, req.restart, reply, closed);
      return;
    }
    const v = this.current;
    const core = v?.core;
    if (v === null || !core || this.state !== 'member') {
      reply({ type: 'retry', reason: `member ${this.self.id} is ${this.state}`, in_view: false });
      return;
    }
    const leaderRank = core.leaderRank();
    if (leaderRank !== v.view.members.findIndex((m) => m.id === this.self.id)) {
      const leader = v.view.members[leaderRank]!;
      reply({ type: 'redirect', leader: { ip: leader.ip, gms_port: leader.gms_port } });
      return;
    }
    if (!core.hasQuorum()) {
      reply({ type: 'retry', reason: 'the leader has no majority' });
      return;
    }
    // An id that a live member of this view still holds: a second process configured with the
    // same local_id, or a restart faster than the failure detector. It may join once the holder
    // is suspected (then the same view change removes the old one and admits the new one).
    const holder = v.view.members.findIndex((m) => m.id === member.id);
    if (holder >= 0 && !core.suspects(holder)) {
      reply({ type: 'retry', reason: `member id ${member.id} is held by a live member of view ${v.view.vid}; it is admitted once that member is suspected (timeout_ms)` });
      return;
    }
    const old = this.pendingJoins.get(member.id);
    old?.reply({ type: 'retry', reason: 'superseded by a newer join request' });
    if (this.pendingJoins.size >= MAX_JOINS_PER_VIEW * 4 && old === undefined) {
      reply({ type: 'retry', reason: 'too many joins pending' });
      return;
    }
    this.pendingJoins.set(member.id, { member, reply });
    void closed.then(() => {
      if (this.pendingJoins.get(member.id)?.reply === reply) this.pendingJoins.delete(member.id);
    });
    this.log.info({ joiner: member.id }, 'join request');
    this.offerJoins();
    this.step();
  }

  private offerJoins(): void {
    const core = this.current?.core;
    if (!core || core.changing) return;
    const members = new Set(this.current!.view.members.map((m) => m.id));
    const joins = [...this.pendingJoins.values()].filter((j) => !members.has(j.member.id) || core.suspects(this.current!.view.members.findIndex((m) => m.id === j.member.id)));
    if (joins.length > 0) core.setPendingJoins(joins.slice(0, MAX_JOINS_PER_VIEW).map((j) => encodeMember(j.member)));
  }

  /** Asks to be admitted (join-client.ts) and installs the view that admits us. */
  private async joinLoop(deadline: number, contacts: Contact[], last: StoredView | null = null): Promise<void> {
    const welcome = await requestAdmission({
      self: this.self,
      contacts,
      deadline_ms: deadline,
      attempt_ms: 10 * this.opts.timeout_ms,
      stopped: () => this.state === 'closed',
      ...(last !== null ? { restart: { vid: last.vid, versions: this.localVersions(last) } } : {}),
    });
    this.offerState(welcome.view, welcome.offers);
    // Allocation goes on from the layout the others use (an inadequate view carries it).
    this.lastLayout = welcome.view.basis ?? null;
    this.lastView = null;
    await this.install(welcome.view, null, welcome.fetches, welcome.restart);
  }

  // ---- total restart (restart-plan.ts) -------------------------------------------------------

  private readonly restartJoins = new Map<number, { report: RestartReport; reply: (a: unknown) => void }>();
  private restartWake: (() => void) | null = null;

  /** Per shard of `last` (and of its basis), the last version this member holds in its log. */
  private localVersions(last: StoredView): Record<string, string> {
    const out: Record<string, string> = {};
    const layout = last.layout ?? { subgroups: [] };
    for (const ref of allShards(layout)) {
      const sg = layout.subgroups[ref.subgroup]!;
      const v = this.opts.handlers[sg.type]?.localVersion?.(sg.index, ref.shard);
      if (v !== undefined && v >= 0n) out[shardName(layout, ref.subgroup, ref.shard)] = v.toString();
    }
    return out;
  }

  private holdRestartJoin(member: MemberInfo, restart: unknown, reply: (a: unknown) => void, closed: Promise<void>): void {
    const r = restart as { vid?: unknown; versions?: unknown } | undefined;
    const versions: Record<string, string> = {};
    if (r && typeof r.versions === 'object' && r.versions !== null) {
      for (const [k, v] of Object.entries(r.versions)) if (typeof v === 'string' && /^\d{1,20}$/.test(v)) versions[k] = v;
    }
    const report: RestartReport = { member, vid: r && Number.isSafeInteger(r.vid) ? Number(r.vid) : -1, versions };
    this.restartJoins.get(member.id)?.reply({ type: 'retry', reason: 'superseded by a newer join request' });
    this.restartJoins.set(member.id, { report, reply });
    void closed.then(() => {
      if (this.restartJoins.get(member.id)?.reply === reply) this.restartJoins.delete(member.id);
    });
    this.log.info({ member: member.id, vid: report.vid, versions }, 'restart: member back');
    this.restartWake?.();
  }

  /**
   * Comes back from a total shutdown (or a restart of this member alone): through the first
   * restart candidate that answers (restartSuccession: the configured leader, then the members of
   * the last view), which leads the restart, redirects to the group that runs, or joins one
   * itself. When every candidate ahead of us is unreachable, we lead, after a grace that grows
   * with our place (so the configured leader, a moment slower to start, still leads as a rule).
   */
  private async restartAsMember(last: StoredView): Promise<void> {
    const succession = restartSuccession(this.opts.leader, last);
    const me = succession.findIndex((c) => c.ip === this.self.ip && c.gms_port === this.self.gms_port);
    const started = Date.now();
    const deadline = started + (this.opts.join_timeout_ms ?? 60_000);
    const grace_ms = RESTART_GRACE_TIMEOUTS * this.opts.timeout_ms;
    let lastError = 'no candidate answered';
    while (Date.now() < deadline && (this.state as MemberState) !== 'closed') {
      let target: Contact | null = null;
      for (let k = 0; k < succession.length && k !== me; k++) {
        if ((await this.probe(succession[k]!)) !== null) {
          target = succession[k]!;
          break;
        }
      }
      if (target === null && me >= 0 && Date.now() - started >= me * grace_ms) {
        if (me === 0) this.log.info('restart: leading');
        else this.log.warn({ candidates_ahead: me }, 'restart: no candidate ahead of this member answers: leading');
        target = await this.restartFrom(last, succession.slice(0, me), deadline);
        if (target === null) return;
      }
      if (target !== null) {
        try {
          await this.joinLoop(Math.min(deadline, Date.now() + 10 * this.opts.timeout_ms), [target], last);
          return;
        } catch (err) {
          const code = (err as TempestError).code;
          if (code !== 'ERR_MEMBERSHIP_JOIN' && code !== 'ERR_MEMBERSHIP_RESTART_INCOMPLETE') throw err;
          lastError = (err as Error).message;
          this.log.info({ err: lastError }, 'restart: trying the candidates again');
        }
      }
      await new Promise((r) => setTimeout(r, RESTART_PROBE_MS));
    }
    throw new TempestError('ERR_MEMBERSHIP_RESTART', `member ${this.self.id} could not come back into the group of view ${last.vid} within join_timeout_ms: ${lastError}`);
  }

  /** A candidate's state (`member`, `restarting`, ...), or null when it does not answer. */
  private async probe(c: Contact): Promise<string | null> {
    try {
      const a = await controlRequest(c.ip, c.gms_port, { type: 'status' }, 2 * this.opts.timeout_ms);
      return typeof a.state === 'string' ? a.state : 'unknown';
    } catch {
      return null;
    }
  }

  /**
   * Leads a restart after a total shutdown: waits, bounded by `deadline`, for a majority of the
   * last view with a member of every shard, then installs the next view with every member back;
   * per shard the longest log is the source the others fetch from. Gives way (returns whom to
   * join) when a candidate ahead of us answers, or when a member of the last view already runs a
   * group; returns null once the restart view is installed. A restart view that not every member
   * installed is gathered again.
   */
  private async restartFrom(last: StoredView, ahead: readonly Contact[], deadline: number): Promise<Contact | null> {
    for (;;) {
      const got = await this.gatherRestart(last, ahead, deadline);
      if (!Array.isArray(got)) return got;
      try {
        await this.installRestart(last, got);
        return null;
      } catch (err) {
        if ((err as TempestError).code !== 'ERR_MEMBERSHIP_RESTART_INCOMPLETE' || Date.now() >= deadline) throw err;
        this.log.warn({ err: (err as Error).message }, 'restart: the view was not installed by every member; gathering again');
      }
    }
  }

  private async gatherRestart(last: StoredView, ahead: readonly Contact[], deadline: number): Promise<{ report: RestartReport; reply: (a: unknown) => void }[] | Contact> {
    this.state = 'restarting';
    this.log.info({ vid: last.vid, members: last.members.map((m) => m.id) }, 'restart: waiting for a majority of the last view');
    const others = last.members.filter((m) => m.id !== this.self.id);
    let lastReason = '';
    let nextProbe = 0;
    for (;;) {
      if ((this.state as MemberState) === 'closed') throw new TempestError('ERR_MEMBERSHIP_CLOSED', 'closed while restarting');
      const q = restartQuorum(last, new Set([this.self.id, ...this.restartJoins.keys()]));
      // Before waiting longer, and once more before going ahead: someone with a better claim?
      if (q.ok || Date.now() >= nextProbe) {
        nextProbe = Date.now() + RESTART_PROBE_MS;
        const giveWay = await this.betterRestartLeader(ahead, others);
        if (giveWay !== null) {
          for (const j of this.restartJoins.values()) j.reply({ type: 'retry', reason: `member ${this.self.id} gives way to ${giveWay.ip}:${giveWay.gms_port}` });
          this.restartJoins.clear();
          this.state = 'joining';
          this.log.warn({ to: giveWay }, 'restart: giving way');
          return giveWay;
        }
      }
      if (q.ok) break;
      if (q.reason !== lastReason) this.log.info({ reason: q.reason }, 'restart: waiting');
      lastReason = q.reason;
      if (Date.now() >= deadline) throw new TempestError('ERR_MEMBERSHIP_RESTART', `cannot restart from view ${last.vid}: ${q.reason} (waited join_timeout_ms)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.restartWake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.restartWake = null;
    }
    const joins = [...this.restartJoins.values()];
    this.restartJoins.clear();
    return joins;
  }

  /** A candidate ahead of us that answers, or a member of the last view in a running group; null when neither. */
  private async betterRestartLeader(ahead: readonly Contact[], others: readonly MemberInfo[]): Promise<Contact | null> {
    for (const c of ahead) if ((await this.probe(c)) !== null) return c;
    for (const m of others) if ((await this.probe(m)) === 'member') return m;
    return null;
  }

  private async installRestart(last: StoredView, joins: { report: RestartReport; reply: (a: unknown) => void }[]): Promise<void> {
    const mine: RestartReport = { member: this.self, vid: last.vid, versions: this.localVersions(last) };
    const plan = planRestart(last, this.self, [mine, ...joins.map((j) => j.report)], this.opts.types);
    this.log.info({ vid: plan.view.vid, members: plan.view.members.map((m) => m.id), sources: plan.sources }, 'restart: the group resumes; the longest log of each shard is its source');
    if (last.layout && last.layout.subgroups.length > 0) this.lastLayout = last.layout;
    this.lastView = null;
    for (const j of joins) {
      const id = j.report.member.id;
      j.reply({ type: 'welcome', view: plan.view, fetches: plan.fetches.get(id) ?? [], offers: plan.offers.get(id) ?? [], restart: true });
    }
    this.offerState(plan.view, plan.offers.get(this.self.id) ?? []);
    this.state = 'joining';
    await this.install(plan.view, null, plan.fetches.get(this.self.id) ?? [], true);
  }

  /** Offers our log of each listed shard of `view` to the members that fetch it (restart sources). */
  private offerState(view: View, offers: readonly { subgroup: number; shard: number }[]): void {
    for (const o of offers) {
      const sg = view.layout.subgroups[o.subgroup];
      if (sg === undefined) continue;
      this.transfer!.offer(view.vid, o.subgroup, o.shard, this.opts.handlers[sg.type]!.getState(sg.index, o.shard));
    }
  }

  // ---- the remembered view (data_dir) --------------------------------------------------------

  /**
   * One pass over the remembered members: joins their group if one still runs. False when none
   * is in a view (all refused, or are themselves starting), so the leader may start the group.
   */
  private async rejoinRemembered(contacts: Contact[]): Promise<boolean> {
    let groupSeen = false;
    for (const c of contacts) if ((await this.probe(c)) === 'member') groupSeen = true;
    if (!groupSeen) return false;
    this.log.info({ contacts }, 'the group this member was in still runs: joining it instead of starting one');
    await this.joinLoop(Date.now() + (this.opts.join_timeout_ms ?? 60_000), contacts);
    return true;
  }

  // ---- view changes --------------------------------------------------------------------------

  private allocate(ids: number[]): Layout | null {
    const r = allocateLayout(this.opts.types, ids, this.lastLayout);
    if (!r.ok) {
      this.log.warn({ reason: r.reason }, 'view is inadequately provisioned: updates wait for more members');
      return null;
    }
    return r.layout;
  }

  private step(): void {
    const v = this.current;
    if (v === null || v.core === null || this.changing || this.state !== 'member') return;
    if (v.core.wedged && this.wedgedAt_ms === 0) this.wedgedAt_ms = performance.now();
    const out = v.core.step();
    if (v.core.wedged && this.wedgedAt_ms === 0) this.wedgedAt_ms = performance.now();
    if (out === null) {
      if (!v.core.changing) this.offerJoins();
      return;
    }
    if (out.kind === 'decided') void this.onDecided(v, out.decision);
    else if (out.kind === 'minority' || out.kind === 'excluded') this.lostMajority(out.kind === 'minority' ? `minority: ${out.live} of ${v.view.members.length} members reachable` : `excluded by member ${v.view.members[out.by]?.id}`);
  }

  private async onDecided(v: ViewInstance, d: Decision): Promise<void> {
    this.changing = true;
    const myRank = v.view.members.findIndex((m) => m.id === this.self.id);
    if (!d.keep.includes(myRank)) {
      this.changing = false;
      this.leaveResolver?.();
      if (this.leaveResolver) return;
      this.lostMajority(`the next view (${v.view.vid + 1}) does not include this member`);
      return;
    }
    // The view ended before our state arrived: the trim applies on top of it, so wait for it.
    if (this.stateFetches !== null) await this.stateFetches;
    if (this.awaitingState.size > 0 || this.state !== 'member') {
      this.changing = false;
      this.lostMajority(`view ${v.view.vid} ended without the state of shard(s) ${[...this.awaitingState].join(', ')}`);
      return;
    }
    v.deliverTrim(d);
    const joiners = d.joins.map(decodeMember);
    const members = [...d.keep.map((r) => v.view.members[r]!), ...joiners];
    const layout = this.allocate(members.map((m) => m.id));
    const next: View = layout !== null ? { vid: v.view.vid + 1, members, layout } : { vid: v.view.vid + 1, members, layout: { subgroups: [] }, basis: this.lastLayout };
    // Offer state for every shard that gains members, if we are its designated source.
    const newcomers = this.newcomerShards(v.view, next);
    for (const { ref, source } of newcomers) {
      if (source !== this.self.id) continue;
      const type = next.layout.subgroups[ref.subgroup]!.type;
      const prev = this.previousShardOf(v.view, next, ref)!;
      this.transfer!.offer(next.vid, ref.subgroup, ref.shard, this.opts.handlers[type]!.getState(next.layout.subgroups[ref.subgroup]!.index, prev.shard));
    }
    for (const j of joiners) {
      const p = this.pendingJoins.get(j.id);
      if (p) {
        this.pendingJoins.delete(j.id);
        const fetches = newcomers.filter((n) => n.newcomers.includes(j.id) && n.source !== null).map((n) => ({ subgroup: n.ref.subgroup, shard: n.ref.shard, source: n.source }));
        p.reply({ type: 'welcome', view: next, fetches });
      }
    }
    try {
      await this.install(next, v, null);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'installing the next view failed');
      this.lostMajority(`could not install view ${next.vid}: ${(err as Error).message}`);
    }
  }

  /**
   * The shard of the previous layout that `ref` (in next) continues: same type, subgroup index and
   * shard index. An inadequate previous view has no layout: the last adequate one counts.
   */
  private previousShardOf(prevView: View, next: View, ref: ShardRef): ShardRef | undefined {
    const base = prevView.layout.subgroups.length > 0 ? prevView.layout : this.lastLayout;
    if (base === null) return undefined;
    const sg = next.layout.subgroups[ref.subgroup]!;
    return allShards(base).find((p) => {
      const psg = base.subgroups[p.subgroup]!;
      return psg.type === sg.type && psg.index === sg.index && p.shard === ref.shard;
    });
  }

  /** Shards of `next` with members who did not hold them in `prev`, and who sends them the state. */
  private newcomerShards(prev: View, next: View): { ref: ShardRef; newcomers: number[]; source: number | null }[] {
    const out: { ref: ShardRef; newcomers: number[]; source: number | null }[] = [];
    for (const ref of allShards(next.layout)) {
      const before = this.previousShardOf(prev, next, ref);
      const had = new Set(before?.members ?? []);
      const newcomers = ref.members.filter((id) => !had.has(id));
      if (newcomers.length === 0) continue;
      const source = ref.members.find((id) => had.has(id)) ?? null;
      out.push({ ref, newcomers, source });
    }
    return out;
  }

  /**
   * Installs `view`: prepares its tables, swaps hellos with every member (bounded), closes the
   * previous view, fetches state for shards new to us, then resumes sending.
   */
  /**
   * Installs `view`. A restart view (the first after a total shutdown) is all or nothing: every
   * member must answer its hello, else ERR_MEMBERSHIP_RESTART_INCOMPLETE and the restart is
   * gathered again. Two candidates leading a restart at once could otherwise both go on (a member
   * counted by one that moved to the other would just be suspected).
   */
  private async install(view: View, prev: ViewInstance | null, joinerFetches: { subgroup: number; shard: number; source: number }[] | null, restart = false): Promise<void> {
    const t0 = performance.now();
    // Shards new to us wait for their state: a joiner is told its sources, a member works them out.
    const fetches: { ref: ShardRef; source: number }[] = [];
    const shards = allShards(view.layout);
    if (joinerFetches !== null) {
      for (const f of joinerFetches) {
        const ref = shards.find((r) => r.subgroup === f.subgroup && r.shard === f.shard);
        if (ref && ref.members.includes(this.self.id)) fetches.push({ ref, source: f.source });
      }
    } else if (this.lastView !== null) {
      for (const n of this.newcomerShards(this.lastView, view)) if (n.newcomers.includes(this.self.id) && n.source !== null) fetches.push({ ref: n.ref, source: n.source });
    }
    const inst = this.newViewInstance(view);
    try {
      await Promise.all(
        shards
          .filter((r) => r.members.includes(this.self.id))
          .map((r) => {
            const sg = view.layout.subgroups[r.subgroup]!;
            return this.opts.handlers[sg.type]?.prepare?.(sg.index, r.shard);
          }),
      );
    } catch (err) {
      this.retire(view, inst.close());
      throw err;
    }
    this.hello = { vid: view.vid, id: this.self.id, provider: this.fabric.provider, address: this.fabric.address().toString('base64'), regions: inst.helloRegions() };
    this.helloIdentity = viewIdentity(view);
    let hellos: Awaited<ReturnType<GroupMember['exchangeHellos']>>;
    try {
      // Members the old view already suspects (a value decided before they failed) are not
      // waited for: they are suspected at once in this view, which then changes again.
      const dead = new Set<number>();
      if (prev?.core) prev.view.members.forEach((m, r) => prev.core!.suspects(r) && dead.add(m.id));
      hellos = await this.exchangeHellos(view, 3 * this.opts.timeout_ms, dead);
      if (restart && hellos.size < view.members.length - 1) {
        const missing = view.members.filter((m) => m.id !== this.self.id && !hellos.has(m.id)).map((m) => m.id);
        throw new TempestError('ERR_MEMBERSHIP_RESTART_INCOMPLETE', `restart view ${view.vid}: members ${missing.join(', ')} did not install it`);
      }
    } catch (err) {
      // Not installed here: stop answering its hellos, so nobody completes it counting on us.
      this.hello = null;
      this.helloIdentity = null;
      this.retire(view, inst.close());
      throw err;
    }
    if (prev) this.retire(prev.view, prev.close());
    if ((this.state as MemberState) === 'closed') {
      inst.close();
      return;
    }
    this.releaseRetired(view);
    // Whatever is still in an outbox was not delivered in the old view (delivered updates were
    // acknowledged during the trim): all of it goes again, in order, in this one.
    for (const box of this.outboxes.values()) box.resubmitAll();
    this.current = inst;
    this.lastView = view;
    for (const k of this.updateSeq.keys()) if (Number(k.split('/')[0]) < view.vid) this.updateSeq.delete(k);
    if (view.layout.subgroups.length > 0) this.lastLayout = view.layout;
    this.state = 'member';
    for (const f of fetches) this.awaitingState.add(shardKey(f.ref.subgroup, f.ref.shard));
    inst.connect(hellos);
    for (const ref of allShards(view.layout)) {
      const sg = view.layout.subgroups[ref.subgroup]!;
      const p = this.persistedHere.get(`${sg.type}#${sg.index}/${ref.shard}`);
      if (p !== undefined && ref.members.includes(this.self.id)) inst.setPersisted(ref.global, p);
    }
    for (const f of fetches) inst.shardGroup(f.ref.global)?.group?.holdDeliveries();
    this.changing = false;
    const took = this.wedgedAt_ms === 0 ? 0 : performance.now() - this.wedgedAt_ms;
    if (prev !== null) {
      this.viewChangeTimes_ms.push(took);
      if (this.viewChangeTimes_ms.length > VIEW_TIMES_KEPT) this.viewChangeTimes_ms.shift();
    }
    this.wedgedAt_ms = 0;
    this.remembered?.remember(view);
    const summary = this.summary()!;
    this.log.info({ vid: view.vid, members: view.members.map((m) => m.id), layout: summary.layout_text, install_ms: Math.round(performance.now() - t0), change_ms: Math.round(took) }, 'view installed');
    for (const fn of this.viewListeners) fn(summary);
    const fetching = Promise.all(fetches.map((f) => this.fetchShardState(view, f.ref, f.source))).then(() => {});
    this.stateFetches = fetching;
    await fetching;
    if (this.stateFetches === fetching) this.stateFetches = null;
    this.expireSends(); // also moves updates waiting for a shard to the shard this view gives
    for (const key of this.outboxes.keys()) this.pumpOutbox(key);
    // Kept in this view although we asked to leave (the others needed us for a majority): ask again.
    if (this.leaving) inst.core?.requestLeave();
    this.step();
  }

  /**
   * Not inside install(): the callbacks made here live as long as the view, and closures made in
   * install() would keep its whole context alive, `prev` included, so every view would keep the
   * one before it (and its registered memory) reachable forever.
   */
  private newViewInstance(view: View): ViewInstance {
    return new ViewInstance({
      fabric: this.fabric,
      view,
      self: this.self,
      multicast: this.opts.multicast,
      heartbeat_ms: this.opts.heartbeat_ms,
      timeout_ms: this.opts.timeout_ms,
      send_timeout_ms: this.opts.send_timeout_ms ?? 30_000,
      maxJoins: MAX_JOINS_PER_VIEW,
      requireMajority: this.opts.require_majority ?? true,
      onChange: () => this.step(),
      onDeliver: (ref, sender, index, payload) => this.deliver(view.vid, ref, sender, index, payload),
      onPersisted: (ref) => this.persistedAdvanced(ref),
      logAccepted: this.anyDurable() ? (d) => this.logAcceptedTrim(view, d) : null,
      log: this.log.child({ layer: 'membership', vid: view.vid }),
    });
  }

  private async fetchShardState(view: View, ref: ShardRef, source: number): Promise<void> {
    const key = shardKey(ref.subgroup, ref.shard);
    const type = view.layout.subgroups[ref.subgroup]!.type;
    let lastError: Error | null = null;
    // The source may not have offered the state yet (it installs this view too): retry, bounded.
    const deadline = Date.now() + 10 * this.opts.timeout_ms;
    for (let attempt = 0; Date.now() < deadline && (this.state as MemberState) !== 'closed'; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50));
      const m = view.members.find((x) => x.id === source)!;
      try {
        const h = this.opts.handlers[type]!;
        const sgIndex = view.layout.subgroups[ref.subgroup]!.index;
        const since = h.localVersion?.(sgIndex, ref.shard) ?? -1n;
        let records = 0;
        let bytes = 0;
        const counted = async function* (src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
          for await (const r of src) {
            records++;
            bytes += r.length;
            yield r;
          }
        };
        await h.setState(sgIndex, ref.shard, counted(fetchState(m.ip, m.state_transfer_port, view.vid, ref.subgroup, ref.shard, since, 10 * this.opts.timeout_ms)));
        this.log.info({ vid: view.vid, subgroup: ref.subgroup, shard: ref.shard, from: source, since: String(since), records, size_bytes: bytes }, 'state received');
        lastError = null;
        break;
      } catch (err) {
        lastError = err as Error;
      }
    }
    this.awaitingState.delete(key);
    if (lastError !== null) {
      this.log.error({ err: lastError.message }, 'state transfer failed: rejoining');
      this.lostMajority(`state transfer failed: ${lastError.message}`);
      return;
    }
    this.current?.shardGroup(ref.global)?.group?.releaseDeliveries();
    this.pumpOutbox(key);
  }

  private async exchangeHellos(view: View, timeout_ms: number, dead: ReadonlySet<number>): Promise<Map<number, Hello & { address_fi: number }>> {
    const deadline = Date.now() + timeout_ms;
    const out = new Map<number, Hello & { address_fi: number }>();
    await Promise.all(
      view.members
        .filter((m) => m.id !== this.self.id && !dead.has(m.id))
        .map(async (m) => {
          while (Date.now() < deadline && this.state !== 'closed') {
            try {
              const a = await controlRequest(m.ip, m.gms_port, { type: 'hello', vid: view.vid, identity: viewIdentity(view) }, Math.max(50, Math.min(1000, deadline - Date.now())));
              if (a.type === 'hello') {
                const h = a.hello as Hello;
                if (h.provider !== this.fabric.provider) throw new TempestError('ERR_TRANSPORT_PROVIDER_MISMATCH', `member ${m.id} runs libfabric provider "${h.provider}", this member "${this.fabric.provider}"`);
                const address = this.fabric.addPeer(Buffer.from(h.address, 'base64'));
                this.peerAddress.set(m.id, address);
                out.set(m.id, { ...h, address_fi: address });
                return;
              }
            } catch (err) {
              if (err instanceof TempestError) throw err;
            }
            await new Promise((r) => setTimeout(r, HELLO_RETRY_MS));
          }
          this.log.warn({ member: m.id, vid: view.vid }, 'member did not answer the view hello; it will be suspected');
        }),
    );
    return out;
  }

  /**
   * A multicast message delivered: a batch of updates (outbox.ts). Each update gets the next
   * sequence number of its shard in this view, the same at every member (the delivery order is).
   */
  private deliver(vid: number, ref: ShardRef, sender: number, _index: number, batch: Buffer): void {
    const sg = this.current!.view.layout.subgroups[ref.subgroup]!;
    const h = this.opts.handlers[sg.type]!;
    const seqKey = `${vid}/${ref.global}`;
    let seq = this.updateSeq.get(seqKey) ?? 0;
    // Our own batch: its updates are the oldest of our outbox for the shard (looked up once).
    const ownKey = sender === this.self.id ? shardKey(ref.subgroup, ref.shard) : null;
    const box = ownKey === null ? undefined : this.outboxes.get(ownKey);
    assert(ownKey === null || box !== undefined, 'our deliveries come from our outbox');
    const durable = h.durable === true;
    forEachInBatch(batch, (payload) => {
      const index = seq++;
      h.deliver({ subgroup: ref.subgroup, subgroupIndex: sg.index, shard: ref.shard, sender, vid, index, members: ref.members, payload });
      if (box !== undefined) this.ownDelivered(ownKey!, box, durable, vid, index);
    });
    this.updateSeq.set(seqKey, seq);
  }

  /** Per view and shard ("vid/global"): updates delivered so far (their sequence numbers). */
  private readonly updateSeq = new Map<string, number>();

  private anyDurable(): boolean {
    return Object.values(this.opts.handlers).some((h) => h.durable === true);
  }

  /**
   * DESIGN §6: in a durable subgroup the ragged trim is on stable storage before this member
   * publishes it (accepts the value), so a total crash in the middle of a view change cannot lose
   * or invent a delivery: after a restart no log keeps entries of this view beyond its trim.
   */
  private logAcceptedTrim(view: View, d: Decision): void {
    if (this.remembered === null) return;
    const shards = allShards(view.layout);
    const perShard: Record<string, number[]> = {};
    let slot = 0;
    for (const ref of shards) {
      perShard[shardKey(ref.subgroup, ref.shard)] = d.trim.slice(slot, slot + ref.members.length);
      slot += ref.members.length;
    }
    this.remembered.logTrim({ vid: view.vid, ballot: d.ballot, keep: d.keep.map((r) => view.members[r]!.id), trim: perShard });
  }

  private retire(view: View, regions: MemoryRegion[]): void {
    this.retired.push({ vid: view.vid, regions, members: view.members.map((m) => m.id) });
  }

  /**
   * Views EPOCHS - 1 older than `current` can go: their service ids come next, and no peer writes
   * into them any more. Their registrations are released, and so are the connections to members
   * of theirs that are in no view since (the provider keeps a dead peer's connection otherwise).
   */
  private releaseRetired(current: View): void {
    const expired = this.retired.filter((x) => x.vid <= current.vid - (EPOCHS - 1));
    this.retired = this.retired.filter((x) => x.vid > current.vid - (EPOCHS - 1));
    const stillKnown = new Set([...current.members.map((m) => m.id), ...this.retired.flatMap((x) => x.members)]);
    for (const r of expired) {
      for (const m of r.regions) this.fabric.deregister(m);
      for (const id of r.members) {
        const address = this.peerAddress.get(id);
        if (id === this.self.id || stillKnown.has(id) || address === undefined) continue;
        this.peerAddress.delete(id);
        this.fabric.removePeer(address);
      }
    }
  }

  /** We are on a minority side or were excluded: refuse updates and keep asking to rejoin. */
  private lostMajority(reason: string): void {
    if (this.state !== 'member') return;
    this.log.warn({ reason }, 'not in a majority view: refusing updates and trying to rejoin');
    this.state = 'rejoining';
    this.changing = false;
    this.failOutboxes(() => this.noQuorumError());
    const last = this.current;
    if (last) this.retire(last.view, last.close());
    this.current = null;
    this.hello = null;
    for (const p of this.pendingJoins.values()) p.reply({ type: 'retry', reason: 'the leader lost its view' });
    this.pendingJoins.clear();
    const contacts = (last?.view.members ?? []).filter((m) => m.id !== this.self.id).map((m) => ({ ip: m.ip, gms_port: m.gms_port }));
    contacts.push(this.opts.leader);
    const attempt = () => {
      if (this.state !== 'rejoining') return;
      this.joinLoop(Date.now() + 10 * this.opts.timeout_ms, contacts).catch((err: Error) => {
        this.log.debug({ err: err.message }, 'rejoin attempt failed; trying again');
        this.rejoinTimer = setTimeout(attempt, REJOIN_RETRY_MS);
      });
    };
    attempt();
    for (const fn of this.lostMajorityListeners) fn(reason);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.remembered?.flushed();
    if (this.sendTimer !== undefined) clearInterval(this.sendTimer);
    if (this.rejoinTimer !== undefined) clearTimeout(this.rejoinTimer);
    this.failOutboxes(() => new TempestError('ERR_MEMBERSHIP_CLOSED', 'this member has left the group'));
    for (const p of this.pendingJoins.values()) p.reply({ type: 'retry', reason: 'member closing' });
    this.current?.close();
    this.current = null;
    await this.control?.close();
    await this.transfer?.close();
    this.fabric.close();
  }
}
