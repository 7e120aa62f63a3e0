/**
 * Deterministic simulator for the view-change core (engine/membership/gms-core.ts) together with
 * the multicast ordering core (engine/multicast/ordering.ts), checking virtual synchrony.
 *
 * The simulator plays the runtime: every process in a view holds a copy of that view's shared
 * state table (failure-detector, multicast-counter and membership columns), a real GmsCore and a
 * real OrderingCore (one shard of every member, every member a sender), and carries out what they
 * ask for: pushes of its own row to every peer it has not frozen, wedging, ragged-trim delivery,
 * resending its own trimmed-off messages first in the next view, installing the next view, join
 * requests routed to the leader, state transfer to joiners, rejoining after exclusion.
 *
 * The network is FIFO per (sender, receiver, lane) with random per-message delays (some seeds
 * reorder heavily across links). A partition drops what crosses the cut; a dropped row or data
 * record breaks that connection for the rest of the view (later ones are dropped too, so FIFO
 * streams never have gaps, as with a reset connection). A crash cuts each outgoing link at a
 * random point: what was in flight may land at some peers and not at others.
 *
 * Faults come from the seed at random times: crashes (any process, the leader, or a process
 * right after it wedges or decides), joiners, graceful leaves, partitions (a minority side, or an
 * even split where no side has a majority). After the last fault and heal the run continues
 * until the group settles, then every member sends a few more messages, and the checks run.
 *
 * Events run in (time, insertion sequence) order, so a seed replays bit for bit:
 * `node dist/test/sim/membership-replay.js <seed> --trace`.
 */
import { Col, GmsCore, gmsColumns, type Decision, type GmsCoreOptions, type GmsOutcome, type GmsTable } from '../../engine/membership/gms-core.js';
import { decodeMember, encodeMember } from '../../engine/membership/view.js';
import { OrderingCore, type OrderingOptions } from '../../engine/multicast/ordering.js';
import { AssertionFailed } from '../../engine/util/assert.js';
import { EventQueue } from './event-queue.js';
import { Rng } from './rng.js';
import { CheckFailure, firstDifference, runSeed, type SeedResult } from './run-seed.js';

/** The checks, named in failure messages (tests match on these words). */
export type MembershipCheck =
  | 'same-views'
  | 'unique-view'
  | 'same-messages'
  | 'failed-prefix'
  | 'minority-progress'
  | 'state-transfer'
  | 'resend'
  | 'liveness'
  | 'core-assertion'
  | 'crash';

/**
 * Deliberate runtime bugs, for mutation tests of the checks: skip the ragged-trim delivery; drop
 * trimmed-off own messages instead of resending them; hand joiners the state as it was before the
 * ragged trim.
 */
export type RuntimeMutation = 'skip-trim' | 'no-resend' | 'early-transfer';

export interface MembershipSimOptions {
  trace?: boolean;
  coreFactory?: (o: GmsCoreOptions) => GmsCore;
  orderingFactory?: (o: OrderingOptions) => OrderingCore;
  mutation?: RuntimeMutation;
}

export interface MembershipSimStats {
  seed: number;
  /** Members of view 0. */
  initialMembers: number;
  /** Process ids created (initial members and joiners). */
  processes: number;
  /** Faults the seed planned, and those that applied (a fault that would cost the group its majority is skipped). */
  faultsPlanned: number;
  faultsApplied: number;
  crashes: number;
  leaderCrashes: number;
  midChangeCrashes: number;
  /** Joiner processes created, and joins completed (installs through state transfer, rejoins included). */
  joiners: number;
  joinsInstalled: number;
  /** Rejoins of processes that were excluded or stranded in a minority. */
  rejoins: number;
  leaves: number;
  /** Leavers that left through a decision after requesting it. */
  cleanLeaves: number;
  partitions: number;
  minorityPartitions: number;
  /** Messages that stalled on their link for a long while. */
  stalls: number;
  /** Processes paused past the failure-detector timeout (suspected, excluded, then rejoining). */
  pauses: number;
  evenSplits: number;
  /** Suspicions raised by the failure detector (timeouts, adopted ones excluded). */
  suspicions: number;
  /**
   * Exits through a decision leaving the process out or a live member's suspicion of it. Rare: a
   * suspected member is frozen out, so it usually finds out through its own detector (stranded).
   */
  exclusions: number;
  /** Processes that found themselves in a minority of their view. */
  minorityEpisodes: number;
  /** Views installed (distinct view ids beyond 0) and installs summed over processes. */
  viewsInstalled: number;
  installs: number;
  /** Decisions that removed and/or added two or more members at once. */
  multiFaultChanges: number;
  /** Decisions taken with a ballot above round 0 rank 0 (a new leader redid phase 1). */
  higherBallotDecisions: number;
  /** App messages sent (first sends), resends, nulls. */
  messages: number;
  resent: number;
  nulls: number;
  /** App deliveries summed over processes, and those in ragged trims. */
  deliveries: number;
  trimDeliveries: number;
  /** Sends refused because the process was in a minority. */
  refusedSends: number;
  joinRequests: number;
  events: number;
  end_ticks: number;
  /** The group settled after the faults (false: it lost its majority for good, e.g. an even split). */
  converged: boolean;
  deadGroup: boolean;
  finalView: number;
  finalMembers: number;
}

export type MembershipSimResult = SeedResult<MembershipSimStats>;

export function membershipReplayCommand(seed: number): string {
  return `node dist/test/sim/membership-replay.js ${seed}`;
}

// ---- parameters -------------------------------------------------------------------------------

/** Process ids are below this (initial members plus joiners). */
const MAX_PROCS = 12;
const MAX_JOINS = 4;
/** Failure detector: heartbeat period and silence before suspicion. */
const HEARTBEAT_TICKS = 10;
const TIMEOUT_TICKS = 50;
/** A joiner that has not been let in after this long asks again (another process). */
const JOIN_RETRY_TICKS = 90;
/** A process stranded in a minority asks to rejoin this often. */
const REJOIN_PERIOD_TICKS = 40;
/** Join requests are redirected to the leader at most this many times. */
const JOIN_HOPS = 3;
/** After the last fault: time allowed to settle (twice: before and after the final messages). */
const SETTLE_TICKS = 2500;
/** A live, connected majority whose view change has not completed after this long is stuck. */
const STUCK_TICKS = 1000;
/** A group without a live majority for this long is dead: end the run early. */
const DEAD_TICKS = 200;
const MAX_EVENTS = 400_000;
/** Core steps per table change before we stop looping (a step that keeps changing the row). */
const STEP_LOOPS = 16;
const LOOP_MAX = 100_000;

const LANE_ROW = 0;
const LANE_DATA = 1;
const LANE_CTRL = 2;

// ---- the seed's scenario ----------------------------------------------------------------------

type FaultKind = 'crash' | 'crash-leader' | 'crash-mid-change' | 'join' | 'leave' | 'partition' | 'pause';

interface FaultPlan {
  at: number;
  kind: FaultKind;
  /** Partitions and pauses: how long until the heal; whether to split evenly when the view allows it. */
  duration: number;
  even: boolean;
}

interface Release {
  at: number;
  id: number;
  count: number;
}

interface SimConfig {
  n: number;
  window: number;
  heavyReorder: boolean;
  /** [from * MAX_PROCS + to]: base one-way delay. */
  linkBase: number[];
  jitter: number;
  /** Chance that one message stalls for a long while (the rest of its link waits behind it). */
  stallChance: number;
  faults: FaultPlan[];
  releases: Release[];
  /** Time after which no planned fault or heal remains. */
  faultsEnd: number;
}

const FAULT_WEIGHTS: [FaultKind, number][] = [
  ['crash', 16],
  ['crash-leader', 16],
  ['crash-mid-change', 18],
  ['join', 22],
  ['leave', 10],
  ['partition', 18],
  ['pause', 10],
];

function pickFault(rng: Rng): FaultKind {
  const total = FAULT_WEIGHTS.reduce((n, [, w]) => n + w, 0);
  let x = rng.int(0, total - 1);
  for (const [k, w] of FAULT_WEIGHTS) {
    if (x < w) return k;
    x -= w;
  }
  return 'crash';
}

function makeConfig(seed: number): SimConfig {
  const rng = new Rng(seed ^ 0x6d5eed17);
  const n = rng.int(1, 7);
  const window = rng.int(1, 6);
  const heavyReorder = rng.chance(0.25);
  const linkBase = Array.from({ length: MAX_PROCS * MAX_PROCS }, () => (heavyReorder ? rng.int(0, 14) : rng.int(1, 6)));
  const jitter = heavyReorder ? rng.int(8, 18) : rng.int(0, 5);
  const stallChance = rng.chance(0.25) ? 0.0015 : 0;
  const faultCount = rng.int(1, 6);
  const faults: FaultPlan[] = [];
  // Faults cluster: several land close together (so one view change sees several) or spread out.
  const clustered = rng.chance(0.4);
  const base = rng.int(20, 200);
  for (let i = 0; i < faultCount; i++) {
    const at = clustered ? base + rng.int(0, 40) : rng.int(20, 400);
    const kind = pickFault(rng);
    faults.push({ at, kind, duration: kind === 'pause' ? rng.int(60, 140) : rng.int(30, 160), even: rng.chance(0.4) });
  }
  faults.sort((a, b) => a.at - b.at);
  let faultsEnd = 0;
  for (const f of faults) faultsEnd = Math.max(faultsEnd, f.at + (f.kind === 'partition' || f.kind === 'pause' ? f.duration : f.kind === 'crash-mid-change' ? 120 : 0));
  const joinCount = faults.filter((f) => f.kind === 'join').length;
  const releases: Release[] = [];
  for (let id = 0; id < Math.min(MAX_PROCS, n + joinCount); id++) {
    const bursts = rng.int(0, 4);
    for (let b = 0; b < bursts; b++) releases.push({ at: rng.int(0, faultsEnd + 50), id, count: rng.int(1, 4) });
  }
  return { n, window, heavyReorder, linkBase, jitter, stallChance, faults, releases, faultsEnd };
}

function describeConfig(cfg: SimConfig): string {
  const faults = cfg.faults.map((f) => `${f.kind}@${f.at}${f.kind === 'partition' ? `+${f.duration}${f.even ? 'e' : ''}` : ''}`).join(' ');
  return `${cfg.n} members, window ${cfg.window}${cfg.heavyReorder ? ', heavy reordering' : ''}${cfg.stallChance > 0 ? ', stalls' : ''}, faults [${faults}]`;
}

// ---- the table ----------------------------------------------------------------------------------

interface Layout {
  rowLen: number;
  /** By column number (columnNumber()): offset in the row and element count. */
  offs: Int32Array;
  counts: Int32Array;
  hb: number;
  susp: number;
  recv: number;
  deliv: number;
}

const layouts = new Map<number, Layout>();

/** Every column a row holds, in row order. */
const COLUMNS: readonly string[] = ['heartbeat', Col.suspected, 'mc.received', 'mc.delivered', ...gmsColumns(1, 1, 1).map((c) => c.name)];

/** A column's number in COLUMNS, or -1 (a switch on interned names beats a dictionary lookup here). */
function columnNumber(name: string): number {
  switch (name) {
    case Col.acc:
      return COL_ACC;
    case Col.suspected:
      return 1;
    case Col.decided:
      return COL_DECIDED;
    case Col.wedged:
      return COL_WEDGED;
    case Col.leaving:
      return COL_LEAVING;
    case Col.change:
      return COL_CHANGE;
    case Col.prepare:
      return COL_PREPARE;
    case Col.prop:
      return COL_PROP;
    case Col.promised:
      return COL_PROMISED;
    case Col.fr:
      return COL_FR;
    case Col.accKeep:
      return COL_ACC_KEEP;
    case Col.accTrim:
      return COL_ACC_TRIM;
    default:
      return COLUMNS.indexOf(name);
  }
}
const COL_ACC = COLUMNS.indexOf(Col.acc);
const COL_DECIDED = COLUMNS.indexOf(Col.decided);
const COL_WEDGED = COLUMNS.indexOf(Col.wedged);
const COL_LEAVING = COLUMNS.indexOf(Col.leaving);
const COL_CHANGE = COLUMNS.indexOf(Col.change);
const COL_PREPARE = COLUMNS.indexOf(Col.prepare);
const COL_PROP = COLUMNS.indexOf(Col.prop);
const COL_PROMISED = COLUMNS.indexOf(Col.promised);
const COL_FR = COLUMNS.indexOf(Col.fr);
const COL_ACC_KEEP = COLUMNS.indexOf(Col.accKeep);
const COL_ACC_TRIM = COLUMNS.indexOf(Col.accTrim);

function layoutFor(n: number): Layout {
  const cached = layouts.get(n);
  if (cached) return cached;
  const specs: { name: string; count: number }[] = [
    { name: 'heartbeat', count: 1 },
    { name: Col.suspected, count: n },
    { name: 'mc.received', count: n },
    { name: 'mc.delivered', count: n },
    ...gmsColumns(n, n, MAX_JOINS).map((c) => ({ name: c.name, count: c.count ?? 1 })),
  ];
  const offs = new Int32Array(COLUMNS.length);
  const counts = new Int32Array(COLUMNS.length);
  let off = 0;
  for (const s of specs) {
    const c = COLUMNS.indexOf(s.name);
    if (c < 0) throw new Error(`simulator bug: column ${s.name} missing from COLUMNS`);
    offs[c] = off;
    counts[c] = s.count;
    off += s.count;
  }
  const at = (name: string) => offs[COLUMNS.indexOf(name)]!;
  const layout: Layout = { rowLen: off, offs, counts, hb: at('heartbeat'), susp: at(Col.suspected), recv: at('mc.received'), deliv: at('mc.delivered') };
  layouts.set(n, layout);
  return layout;
}

/** A check failed. */
class SimFailure extends CheckFailure<MembershipCheck> {}

/** One process's copy of one view's table, as the GmsCore sees it. */
class SimTable implements GmsTable {
  /** Bumped by every change to our own row through set(). */
  version = 0;
  constructor(
    private readonly sim: Simulation,
    private readonly view: ViewState,
    readonly size: number,
    readonly myRank: number,
  ) {}

  private at(column: string, index: number): number {
    const c = columnNumber(column);
    const L = this.view.layout;
    if (c < 0 || index >>> 0 !== index || index >= L.counts[c]!) {
      throw new SimFailure(this.view.owner, 'core-assertion', `table access out of range: column ${column}[${index}]`);
    }
    return L.offs[c]! + index;
  }

  get(rank: number, column: string, index = 0): number {
    if (rank >>> 0 !== rank || rank >= this.size) throw new SimFailure(this.view.owner, 'core-assertion', `table access to rank ${rank} of ${this.size}`);
    return this.view.rows[rank]![this.at(column, index)]!;
  }

  set(column: string, value: number, index = 0): void {
    const row = this.view.rows[this.myRank]!;
    const at = this.at(column, index);
    if (row[at] === value) return;
    row[at] = value;
    this.version++;
    if (column === Col.acc && value !== 0) this.sim.recordAccept(this.view, value);
  }

  push(): void {
    this.view.dirty = true;
  }
}

/** What a process holds while in one view. */
class ViewState {
  readonly n: number;
  readonly myRank: number;
  readonly layout: Layout;
  readonly rows: Float64Array[];
  table!: SimTable;
  core!: GmsCore;
  ord!: OrderingCore;
  readonly frozen: Uint8Array;
  readonly fdSusp: Uint8Array;
  readonly lastBeat: number[];
  readonly lastProgress: number[];
  /** Per sender index: label of message k (null for a null message), as far as received here. */
  readonly labels: (string | null)[][];
  /** App labels delivered in this view, in order. */
  readonly delivered: string[] = [];
  wedged = false;
  minority = false;
  done = false;
  dirty = false;
  /** The join cells last handed to the core (ids, comma-joined). */
  joinKey = '';
  /** Per rank: the view id in which that member (last) joined the group; 0 for the first members. */
  since: number[] = [];

  constructor(
    readonly owner: number,
    readonly vid: number,
    readonly members: readonly number[],
    now: number,
  ) {
    this.n = members.length;
    this.myRank = members.indexOf(owner);
    this.layout = layoutFor(this.n);
    this.rows = Array.from({ length: this.n }, () => new Float64Array(this.layout.rowLen));
    this.frozen = new Uint8Array(this.n);
    this.fdSusp = new Uint8Array(this.n);
    this.lastBeat = new Array<number>(this.n).fill(-1);
    this.lastProgress = new Array<number>(this.n).fill(now);
    this.labels = Array.from({ length: this.n }, () => []);
  }

  get myRow(): Float64Array {
    return this.rows[this.myRank]!;
  }
}

// ---- processes and messages ---------------------------------------------------------------------

type Status = 'member' | 'joining' | 'crashed' | 'left';

interface Proc {
  id: number;
  status: Status;
  view: ViewState | null;
  /** The application state: labels delivered over all views, in order (from the state transfer on, after a rejoin). */
  history: string[];
  histSet: Set<string>;
  /** Bumped whenever the process loses its state (exclusion, stranded rejoin): its unsent resends are orphaned. */
  incarnation: number;
  /** Own app messages to send first in the next view (trimmed off), and fresh ones waiting. */
  resend: string[];
  fresh: number;
  msgSeq: number;
  joinWanted: boolean;
  joinAttempt: number;
  nextJoinAt: number;
  leaveWanted: boolean;
  leaveRequested: boolean;
  leftCleanly: boolean;
  /** Rows and data records for views not installed here yet. */
  future: NetMsg[];
  /** Join requests held as leader. */
  pendingJoins: { joiner: number; attempt: number; lastInstalled: number }[];
  /** Paused (a long GC pause, a stalled host) until this time: events for it wait. */
  pausedUntil: number;
  /** After a crash: per (to * 3 + lane), the time after which nothing more from us lands. */
  crashCutoff: Map<number, number> | null;
  /** View ids installed, in order, since the process last (re)joined. */
  installed: number[];
  /** The last view id this process installed (-1: never a member). Join requests carry it. */
  lastInstalled: number;
}

type NetMsg =
  | { kind: 'row'; from: number; to: number; vid: number; rank: number; row: Float64Array }
  | { kind: 'data'; from: number; to: number; vid: number; s: number; k: number; label: string | null }
  | { kind: 'join'; from: number; to: number; joiner: number; attempt: number; lastInstalled: number; hops: number }
  | { kind: 'welcome'; from: number; to: number; vid: number; members: readonly number[]; since: readonly number[]; donor: number; donorHist: string[]; donorLen: number };

type SimEvent =
  | { kind: 'tick'; time: number; seq: number }
  | { kind: 'net'; time: number; seq: number; msg: NetMsg; lane: number }
  | { kind: 'fault'; time: number; seq: number; plan: FaultPlan }
  | { kind: 'heal'; time: number; seq: number }
  | { kind: 'release'; time: number; seq: number; id: number; count: number };

/** How a process's time in a view ended. */
type ViewEnd = 'survived' | 'crashed' | 'excluded' | 'left' | 'stranded' | 'current';

interface ViewRecord {
  members: readonly number[];
  key: string;
  /** The first process to install it, and its history then. */
  firstId: number;
  firstHist: readonly string[];
  /** The decision that led here from vid - 1 (absent for view 0). */
  decision?: { keep: string; joins: string; trim: string; by: number };
  /** The first survivor of this view (installed vid + 1 from it) and what it delivered here. */
  survivorRef?: { id: number; delivered: readonly string[] };
}

interface Partition {
  sideA: Set<number>;
  start: number;
  even: boolean;
}

// ---- the simulation -----------------------------------------------------------------------------

class Simulation {
  private readonly rng: Rng;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly procs: Proc[] = [];
  private readonly factory: (o: GmsCoreOptions) => GmsCore;
  private readonly orderingFactory: (o: OrderingOptions) => OrderingCore;
  now = 0;
  /** The process whose event is being handled (core calls meanwhile are on its cores). */
  current: number | 'all' = 'all';
  private readonly linkLast = new Map<number, number>();
  private readonly broken = new Set<number>();
  private partition: Partition | null = null;
  private readonly views = new Map<number, ViewRecord>();
  private readonly ends: { vid: number; id: number; how: ViewEnd; delivered: readonly string[] }[] = [];
  /** `${vid}:${ballot}` -> process id -> time of its first acceptance. */
  private readonly accepts = new Map<string, Map<number, number>>();
  private readonly messages = new Map<string, { owner: number; inc: number }>();
  private midChangeArmed = false;
  private readonly pendingCrashes: number[] = [];
  private phase: 'faults' | 'final' | 'done' = 'faults';
  private deadSince = -1;
  /** Last time a view was installed anywhere, or the group had no live majority or no change under way. */
  private lastProgressAt = 0;
  private ticks = 0;
  readonly stats: MembershipSimStats;
  readonly trace: string[] | undefined;

  constructor(
    readonly seed: number,
    private readonly cfg: SimConfig,
    private readonly opts: MembershipSimOptions,
  ) {
    this.rng = new Rng(seed ^ 0x3e3b3e75);
    this.trace = opts.trace ? [] : undefined;
    this.factory = opts.coreFactory ?? ((o) => new GmsCore(o));
    this.orderingFactory = opts.orderingFactory ?? ((o) => new OrderingCore(o));
    this.stats = emptyStats(seed, cfg);
  }

  // ---- the run ----

  run(): void {
    this.log(() => `config ${describeConfig(this.cfg)}`);
    const initial = Array.from({ length: this.cfg.n }, (_, i) => i);
    for (const id of initial) {
      const p = this.newProc(id);
      this.installView(p, 0, initial, initial.map(() => 0));
    }
    this.push({ kind: 'tick', time: 0, seq: 0 });
    for (const plan of this.cfg.faults) this.push({ kind: 'fault', time: plan.at, seq: 0, plan });
    for (const r of this.cfg.releases) this.push({ kind: 'release', time: r.at, seq: 0, id: r.id, count: r.count });
    const deadline = this.cfg.faultsEnd + 2 * SETTLE_TICKS;
    for (;;) {
      const ev = this.queue.pop();
      if (ev === undefined || this.phase === 'done') break;
      if (ev.time > deadline) break;
      if (this.stats.events >= MAX_EVENTS) throw new SimFailure('all', 'liveness', `still busy after ${MAX_EVENTS} events`);
      this.now = ev.time;
      this.stats.events++;
      this.handle(ev);
      while (this.pendingCrashes.length > 0) this.crash(this.pendingCrashes.shift()!, 'mid-change');
    }
    this.stats.end_ticks = this.now;
    this.finish();
  }

  private push(ev: SimEvent): void {
    ev.seq = this.queue.nextSeq();
    this.queue.push(ev);
  }

  private newProc(id: number): Proc {
    const p: Proc = {
      id,
      status: 'joining',
      view: null,
      history: [],
      histSet: new Set(),
      incarnation: 0,
      resend: [],
      fresh: 0,
      msgSeq: 0,
      joinWanted: false,
      joinAttempt: 0,
      nextJoinAt: 0,
      leaveWanted: false,
      leaveRequested: false,
      leftCleanly: false,
      future: [],
      pendingJoins: [],
      pausedUntil: -1,
      lastInstalled: -1,
      crashCutoff: null,
      installed: [],
    };
    this.procs[id] = p;
    this.stats.processes = Math.max(this.stats.processes, id + 1);
    return p;
  }

  private alive(p: Proc | undefined): p is Proc {
    return p !== undefined && p.status !== 'crashed' && p.status !== 'left';
  }

  private handle(ev: SimEvent): void {
    switch (ev.kind) {
      case 'tick':
        this.current = 'all';
        this.onTick();
        return;
      case 'net': {
        this.current = ev.msg.to;
        const to = this.procs[ev.msg.to];
        if (to !== undefined && this.now <= to.pausedUntil) {
          // Waits for the pause to end; re-queued in arrival order, so links stay FIFO.
          this.push({ kind: 'net', time: to.pausedUntil + 0.5, seq: 0, msg: ev.msg, lane: ev.lane });
          return;
        }
        this.onNet(ev.msg, ev.lane);
        return;
      }
      case 'fault':
        this.current = 'all';
        this.onFault(ev.plan);
        return;
      case 'heal':
        this.current = 'all';
        this.log(() => `heal partition`);
        this.partition = null;
        return;
      case 'release': {
        const p = this.procs[ev.id];
        this.current = ev.id;
        if (!this.alive(p) || p.leaveWanted) return;
        if (this.now <= p.pausedUntil) {
          this.push({ kind: 'release', time: p.pausedUntil + 0.5, seq: 0, id: ev.id, count: ev.count });
          return;
        }
        p.fresh += ev.count;
        this.log(() => `p${p.id} release ${ev.count} app`);
        if (p.view?.minority) this.stats.refusedSends += ev.count;
        if (p.status === 'member') this.runProcess(p);
        return;
      }
    }
  }

  // ---- ticks: failure detector, join retries, settling ----

  private onTick(): void {
    this.ticks++;
    const n = this.procs.length;
    const start = this.ticks % n;
    for (let i = 0; i < n; i++) {
      const p = this.procs[(start + i) % n];
      if (!this.alive(p) || this.now <= p.pausedUntil) continue;
      this.current = p.id;
      this.tickProc(p);
    }
    this.current = 'all';
    this.watchdog();
    if (this.now >= this.cfg.faultsEnd && this.partition === null) this.checkSettled();
    if (this.phase !== 'done') this.push({ kind: 'tick', time: this.now + HEARTBEAT_TICKS, seq: 0 });
  }

  private tickProc(p: Proc): void {
    const v = p.view;
    if (p.status === 'member' && v !== null) {
      v.myRow[v.layout.hb]! += 1;
      v.dirty = true;
      for (let r = 0; r < v.n; r++) {
        if (r === v.myRank || v.fdSusp[r]) continue;
        const beat = v.rows[r]![v.layout.hb]!;
        if (beat !== v.lastBeat[r]) {
          v.lastBeat[r] = beat;
          v.lastProgress[r] = this.now;
        } else if (this.now - v.lastProgress[r]! > TIMEOUT_TICKS) {
          this.stats.suspicions++;
          this.suspect(p, v, r, `no heartbeat for ${this.now - v.lastProgress[r]!} ticks`);
        }
      }
      for (let q = 0; q < v.n; q++) this.adoptFrom(p, v, q);
      if (v.minority && p.fresh + p.resend.length > 0) this.stats.refusedSends++;
      if (p.joinWanted && this.now >= p.nextJoinAt) this.askToJoin(p);
      this.runProcess(p);
    } else if (p.status === 'joining' && p.joinWanted && this.now >= p.nextJoinAt) {
      this.askToJoin(p);
    }
  }

  private suspect(p: Proc, v: ViewState, r: number, why: string): void {
    if (r === v.myRank || v.fdSusp[r]) return;
    v.fdSusp[r] = 1;
    v.myRow[v.layout.susp + r] = 1;
    v.frozen[r] = 1;
    v.dirty = true;
    this.log(() => `p${p.id} v${v.vid} suspects p${v.members[r]} (${why})`);
  }

  /** Adopts the suspicions in row q if we do not suspect q ourselves. */
  private adoptFrom(p: Proc, v: ViewState, q: number): void {
    if (q === v.myRank || v.fdSusp[q]) return;
    const row = v.rows[q]!;
    const base = v.layout.susp;
    for (let r = 0; r < v.n; r++) {
      if (r !== v.myRank && !v.fdSusp[r] && row[base + r] === 1) this.suspect(p, v, r, `adopted from p${v.members[q]}`);
    }
  }

  // ---- a process's reaction to any change ----

  private runProcess(p: Proc): void {
    for (let round = 0; round < 8; round++) {
      const v = p.view;
      if (v === null || p.status !== 'member') return;
      if (p.pendingJoins.length > 0) this.refreshJoins(p, v);
      this.stepCore(p, v);
      if (p.view !== v) continue;
      this.multicast(p, v);
      if (this.maybeLeave(p, v)) {
        this.stepCore(p, v);
        if (p.view !== v) continue;
      }
      this.flush(p, v);
      return;
    }
  }

  private stepCore(p: Proc, v: ViewState): void {
    for (let i = 0; i < STEP_LOOPS; i++) {
      const before = v.table.version;
      const out = this.coreCall(p, () => v.core.step());
      if (out !== null) {
        this.onOutcome(p, v, out);
        if (p.view !== v) return;
      }
      if (v.table.version === before) return;
    }
  }

  private coreCall<T>(p: Proc, f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (err instanceof AssertionFailed) throw new SimFailure(p.id, 'core-assertion', err.message);
      throw err;
    }
  }

  private onWedge(p: Proc, v: ViewState): number[] {
    v.wedged = true;
    const fr: number[] = [];
    for (let s = 0; s < v.n; s++) fr.push(v.ord.receivedAt(v.myRank, s));
    this.log(() => `p${p.id} v${v.vid} wedge fr=[${fr.join(',')}]`);
    this.maybeCrashMidChange(p, v);
    return fr;
  }

  private onOutcome(p: Proc, v: ViewState, out: GmsOutcome): void {
    switch (out.kind) {
      case 'minority':
        this.log(() => `p${p.id} v${v.vid} minority (${out.live} live of ${v.n})`);
        v.minority = true;
        this.stats.minorityEpisodes++;
        if (p.leaveWanted) {
          this.exitGroup(p, v, 'left');
          return;
        }
        if (!p.joinWanted) {
          p.joinWanted = true;
          p.nextJoinAt = this.now;
        }
        return;
      case 'excluded':
        this.log(() => `p${p.id} v${v.vid} excluded (suspected by p${v.members[out.by]})`);
        this.exitGroup(p, v, p.leaveRequested ? 'left' : 'excluded');
        return;
      case 'decided':
        this.onDecision(p, v, out.decision);
        return;
    }
  }

  // ---- multicast ----

  private multicast(p: Proc, v: ViewState): void {
    for (let round = 0; round < LOOP_MAX; round++) {
      if (v.wedged || v.done) break;
      const progress = this.deliverAll(p, v) + this.sendAll(p, v);
      if (progress === 0) break;
    }
    this.publishCounts(v);
  }

  private deliverAll(p: Proc, v: ViewState): number {
    const ord = v.ord;
    for (let n = 0; n < LOOP_MAX; n++) {
      const s = this.coreCall(p, () => ord.nextDeliverable());
      if (s < 0) return n;
      const k = ord.nextK(s);
      const label = v.labels[s]![k];
      if (label === undefined) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: delivers sender ${s} k=${k}, which has not arrived here`);
      this.coreCall(p, () => ord.delivered(s));
      if (label !== null) this.deliver(p, v, label, false);
    }
    throw new SimFailure(p.id, 'liveness', 'delivery loop does not stop');
  }

  private sendAll(p: Proc, v: ViewState): number {
    if (v.core.changing || v.minority) return 0;
    const ord = v.ord;
    const s = v.myRank;
    let n = 0;
    for (; n < LOOP_MAX; n++) {
      if (!ord.canSend()) return n;
      let label: string | null = null;
      if (p.resend.length > 0) {
        label = p.resend.shift()!;
        this.stats.resent++;
      } else if (p.fresh > 0) {
        p.fresh--;
        label = `p${p.id}-v${v.vid}-${p.msgSeq++}`;
        this.messages.set(label, { owner: p.id, inc: p.incarnation });
        this.stats.messages++;
      } else if (ord.nullsWanted() <= 0) {
        return n;
      } else {
        this.stats.nulls++;
      }
      if (label !== null && !v.core.hasQuorum()) throw new SimFailure(p.id, 'minority-progress', `v${v.vid}: sends ${label} without a majority`);
      const k = this.coreCall(p, () => ord.sent());
      if (k !== v.labels[s]!.length) throw new Error(`simulator bug: p${p.id} numbered k=${k}, has sent ${v.labels[s]!.length}`);
      v.labels[s]!.push(label);
      const l = label;
      this.log(() => `p${p.id} v${v.vid} send k${k} ${l ?? 'null'}`);
      for (let r = 0; r < v.n; r++) {
        if (r === v.myRank) continue;
        this.send({ kind: 'data', from: p.id, to: v.members[r]!, vid: v.vid, s, k, label }, LANE_DATA);
      }
    }
    return n;
  }

  private deliver(p: Proc, v: ViewState, label: string, trimmed: boolean): void {
    if (p.histSet.has(label)) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: delivers ${label} a second time`);
    p.history.push(label);
    p.histSet.add(label);
    v.delivered.push(label);
    this.stats.deliveries++;
    if (trimmed) this.stats.trimDeliveries++;
    this.log(() => `p${p.id} v${v.vid} deliver ${label}${trimmed ? ' (trim)' : ''}`);
  }

  private publishCounts(v: ViewState): void {
    const row = v.myRow;
    const L = v.layout;
    for (let s = 0; s < v.n; s++) {
      const rec = v.ord.receivedAt(v.myRank, s);
      const del = v.ord.deliveredAt(v.myRank, s);
      if (row[L.recv + s] !== rec || row[L.deliv + s] !== del) {
        row[L.recv + s] = rec;
        row[L.deliv + s] = del;
        v.dirty = true;
      }
    }
  }

  /** A leaver asks to leave once its own messages are all delivered and no change is under way. */
  private maybeLeave(p: Proc, v: ViewState): boolean {
    if (!p.leaveWanted || p.leaveRequested || v.core.changing) return false;
    if (p.fresh > 0 || p.resend.length > 0) return false;
    if (v.ord.deliveredAt(v.myRank, v.myRank) < v.ord.receivedAt(v.myRank, v.myRank)) return false;
    p.leaveRequested = true;
    this.log(() => `p${p.id} v${v.vid} requests to leave`);
    this.coreCall(p, () => v.core.requestLeave());
    return true;
  }

  // ---- decisions and views ----

  recordAccept(v: ViewState, ballot: number): void {
    const key = `${v.vid}:${ballot}`;
    let m = this.accepts.get(key);
    if (m === undefined) this.accepts.set(key, (m = new Map()));
    if (!m.has(v.owner)) m.set(v.owner, this.now);
  }

  private onDecision(p: Proc, v: ViewState, d: Decision): void {
    this.log(() => `p${p.id} v${v.vid} decided b${d.ballot} keep [${d.keep.map((r) => v.members[r]).join(',')}] joins [${d.joins.map((c) => decodeMember(c).id).join(',')}] trim [${d.trim.join(',')}]`);
    const summary = this.checkDecision(p, v, d);
    if (!d.keep.includes(v.myRank)) {
      this.exitGroup(p, v, p.leaveRequested ? 'left' : 'excluded');
      return;
    }
    // The trim must cover what was delivered here and ask only for what arrived here.
    for (let s = 0; s < v.n; s++) {
      const done = v.ord.deliveredAt(v.myRank, s);
      const here = v.ord.receivedAt(v.myRank, s);
      const t = d.trim[s]!;
      if (t < done) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: delivered ${done} messages of sender ${s}, but the agreed trim stops at ${t}: the other survivors will lack some`);
      if (t > here) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: the agreed trim asks for ${t} messages of sender ${s}, but only ${here} arrived here`);
    }
    const beforeTrim = p.history.length;
    if (this.opts.mutation !== 'skip-trim') {
      const ord = v.ord;
      for (let n = 0; n < LOOP_MAX; n++) {
        const s = this.coreCall(p, () => ord.nextTrimmed(d.trim));
        if (s < 0) break;
        const k = ord.nextK(s);
        const label = v.labels[s]![k];
        if (label === undefined) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: the trim delivers sender ${s} k=${k}, which has not arrived here`);
        this.coreCall(p, () => ord.trimmedDelivered(s));
        if (label !== null) this.deliver(p, v, label, true);
      }
    }
    const own = v.labels[v.myRank]!;
    const again: string[] = [];
    for (let k = d.trim[v.myRank]!; k < own.length; k++) {
      const l = own[k];
      if (l !== null && l !== undefined) again.push(l);
    }
    p.resend = this.opts.mutation === 'no-resend' ? p.resend : again.concat(p.resend);
    this.maybeCrashMidChange(p, v);
    const joiners = d.joins.map((c) => decodeMember(c).id);
    const members = d.keep.map((r) => v.members[r]!).concat(joiners);
    const since = d.keep.map((r) => v.since[r]!).concat(joiners.map(() => v.vid + 1));
    this.endView(p, v, 'survived');
    this.installView(p, v.vid + 1, members, since);
    this.recordDecisionOnView(v.vid + 1, { ...summary, by: p.id });
    p.pendingJoins = p.pendingJoins.filter((j) => !joiners.includes(j.joiner));
    for (const j of joiners) {
      const donorLen = this.opts.mutation === 'early-transfer' ? beforeTrim : p.history.length;
      this.send({ kind: 'welcome', from: p.id, to: j, vid: v.vid + 1, members, since, donor: p.id, donorHist: p.history, donorLen }, LANE_CTRL);
    }
  }

  private checkDecision(p: Proc, v: ViewState, d: Decision): { keep: string; joins: string; trim: string } {
    const n = v.n;
    if (d.keep.length * 2 <= n) throw new SimFailure(p.id, 'minority-progress', `v${v.vid}: decision keeps ${d.keep.length} of ${n} members`);
    if (d.keep.some((r) => !Number.isInteger(r) || r < 0 || r >= n)) throw new SimFailure(p.id, 'unique-view', `v${v.vid}: decision keeps ranks [${d.keep.join(',')}] of ${n}`);
    // Ground truth: a majority of the view accepted this ballot; across an active partition only
    // acceptances from before it began can have counted on this side.
    const acc = this.accepts.get(`${v.vid}:${d.ballot}`);
    const part = this.partition;
    let count = 0;
    let reachable = 0;
    for (const [id, t] of acc ?? []) {
      if (!v.members.includes(id)) continue;
      count++;
      if (part === null || !this.isCut(id, p.id) || t < part.start) reachable++;
    }
    if (count * 2 <= n) throw new SimFailure(p.id, 'minority-progress', `v${v.vid}: decided ballot ${d.ballot}, which only ${count} of ${n} members ever accepted`);
    if (reachable * 2 <= n) {
      throw new SimFailure(p.id, 'minority-progress', `v${v.vid}: decided ballot ${d.ballot} on a side of a partition that only ${reachable} of ${n} acceptances could have reached`);
    }
    const rec = this.views.get(v.vid + 1);
    const mine = {
      keep: d.keep.map((r) => v.members[r]).join(','),
      joins: d.joins.map((c) => decodeMember(c).id).join(','),
      trim: d.trim.join(','),
    };
    if (rec?.decision) {
      if (rec.decision.keep !== mine.keep || rec.decision.joins !== mine.joins) {
        throw new SimFailure(p.id, 'unique-view', `v${v.vid}: decided keep [${mine.keep}] joins [${mine.joins}], p${rec.decision.by} decided keep [${rec.decision.keep}] joins [${rec.decision.joins}]`);
      }
      if (rec.decision.trim !== mine.trim) throw new SimFailure(p.id, 'same-messages', `v${v.vid}: decided trim [${mine.trim}], p${rec.decision.by} decided trim [${rec.decision.trim}]`);
    } else if (rec === undefined) {
      // The first to decide: note what kind of change this was.
      const removed = n - d.keep.length;
      if (removed + d.joins.length >= 2) this.stats.multiFaultChanges++;
      if (d.ballot !== 1) this.stats.higherBallotDecisions++;
    }
    return mine;
  }

  private endView(p: Proc, v: ViewState, how: ViewEnd): void {
    this.flush(p, v);
    v.done = true;
    this.ends.push({ vid: v.vid, id: p.id, how, delivered: v.delivered });
    if (how === 'survived') {
      const rec = this.views.get(v.vid)!;
      if (rec.survivorRef === undefined) {
        rec.survivorRef = { id: p.id, delivered: v.delivered };
      } else {
        const ref = rec.survivorRef.delivered;
        const at = firstDifference(ref, v.delivered);
        if (at >= 0) {
          throw new SimFailure(p.id, 'same-messages', `v${v.vid}: delivered ${describeAt(v.delivered, at)} at position ${at} (${v.delivered.length} in all), survivor p${rec.survivorRef.id} delivered ${describeAt(ref, at)} (${ref.length} in all)`);
        }
      }
    }
  }

  private exitGroup(p: Proc, v: ViewState, how: 'excluded' | 'left'): void {
    this.endView(p, v, how);
    p.view = null;
    p.incarnation++;
    p.resend = [];
    p.pendingJoins = [];
    if (p.leaveWanted) {
      p.status = 'left';
      // Its own messages were all delivered (stable) before it asked to leave.
      p.leftCleanly = p.leaveRequested;
      if (p.leftCleanly) this.stats.cleanLeaves++;
      this.log(() => `p${p.id} v${v.vid} leaves the group${p.leftCleanly ? '' : ' (not cleanly)'}`);
      return;
    }
    this.stats.exclusions++;
    p.status = 'joining';
    p.joinWanted = true;
    p.nextJoinAt = this.now;
  }

  private installView(p: Proc, vid: number, members: readonly number[], since: readonly number[]): void {
    const v = new ViewState(p.id, vid, members, this.now);
    v.since = [...since];
    p.lastInstalled = vid;
    v.table = new SimTable(this, v, v.n, v.myRank);
    const slotRanks = Array.from({ length: v.n }, () => Array.from({ length: v.n }, (_, r) => r));
    v.core = this.coreCall(p, () => this.factory({ table: v.table, effects: { wedge: () => this.onWedge(p, v) }, slotRanks, maxJoins: MAX_JOINS }));
    v.ord = this.orderingFactory({ members: v.n, senders: slotRanks[0]!, myRank: v.myRank, window: this.cfg.window, mode: 'ordered' });
    p.view = v;
    p.status = 'member';
    p.joinWanted = false;
    p.leaveRequested = false;
    p.installed.push(vid);
    const key = members.join(',');
    const rec = this.views.get(vid);
    if (rec === undefined) {
      this.views.set(vid, { members: [...members], key, firstId: p.id, firstHist: p.history.slice() });
      if (vid > 0) this.stats.viewsInstalled++;
    } else {
      if (rec.key !== key) throw new SimFailure(p.id, 'unique-view', `v${vid} installed with members [${key}], p${rec.firstId} installed it with [${rec.key}]`);
      const at = firstDifference(rec.firstHist, p.history);
      if (at >= 0) {
        throw new SimFailure(p.id, 'same-messages', `installs v${vid} with ${p.history.length} messages delivered, differing at ${at} (${describeAt(p.history, at)}) from p${rec.firstId}'s ${rec.firstHist.length} (${describeAt(rec.firstHist, at)})`);
      }
    }
    if (vid > 0) this.stats.installs++;
    this.lastProgressAt = this.now;
    this.log(() => `p${p.id} installs v${vid} [${key}] (rank ${v.myRank})`);
    // Rows and records that came early for this view; drop those of views we skipped.
    const early = p.future;
    p.future = [];
    for (const m of early) {
      if (m.kind !== 'row' && m.kind !== 'data') continue;
      if (m.vid > vid) p.future.push(m);
      else if (m.vid === vid) this.apply(p, v, m);
    }
  }

  private recordDecisionOnView(vid: number, d: { keep: string; joins: string; trim: string; by: number }): void {
    const rec = this.views.get(vid);
    if (rec !== undefined && rec.decision === undefined) rec.decision = d;
  }

  // ---- the network ----

  private isCut(a: number, b: number): boolean {
    const part = this.partition;
    return part !== null && part.sideA.has(a) !== part.sideA.has(b);
  }

  private send(msg: NetMsg, lane: number): void {
    const link = (msg.from * MAX_PROCS + msg.to) * 3 + lane;
    let delay = this.cfg.linkBase[msg.from * MAX_PROCS + msg.to]! + this.rng.int(0, this.cfg.jitter);
    // Stalls (up to 160 ticks, past the detector's timeout) are faults too: they end with the
    // fault window, or false suspicions would go on forever and no group could ever settle.
    if (this.cfg.stallChance > 0 && this.now <= this.cfg.faultsEnd && this.rng.chance(this.cfg.stallChance)) {
      delay += this.rng.int(30, 160);
      this.stats.stalls++;
    }
    const time = Math.max(this.now + delay, this.linkLast.get(link) ?? 0);
    this.linkLast.set(link, time);
    this.push({ kind: 'net', time, seq: 0, msg, lane });
  }

  private onNet(msg: NetMsg, lane: number): void {
    const to = this.procs[msg.to];
    if (!this.alive(to)) return;
    const from = this.procs[msg.from]!;
    const stream = lane !== LANE_CTRL && (msg.kind === 'row' || msg.kind === 'data');
    const conn = stream ? (msg.vid * MAX_PROCS + msg.from) * MAX_PROCS + msg.to : -1;
    if (stream && this.broken.has(conn)) return;
    const cutoff = from.crashCutoff?.get(msg.to * 3 + lane);
    if ((cutoff !== undefined && this.now > cutoff) || this.isCut(msg.from, msg.to)) {
      if (stream) this.broken.add(conn);
      return;
    }
    switch (msg.kind) {
      case 'row':
      case 'data': {
        const v = to.view;
        if (v === null || v.vid < msg.vid) {
          to.future.push(msg);
          return;
        }
        if (v.vid > msg.vid || v.done) return;
        this.apply(to, v, msg);
        this.runProcess(to);
        return;
      }
      case 'join':
        this.onJoinRequest(to, msg);
        return;
      case 'welcome':
        this.onWelcome(to, msg);
        return;
    }
  }

  /** A row or data record of our current view. */
  private apply(p: Proc, v: ViewState, msg: NetMsg): void {
    if (msg.kind === 'row') {
      if (v.members[msg.rank] !== msg.from) throw new SimFailure(p.id, 'unique-view', `v${v.vid}: row of rank ${msg.rank} came from p${msg.from}, but our v${v.vid} has p${v.members[msg.rank]} there`);
      v.rows[msg.rank]!.set(msg.row);
      const L = v.layout;
      const ord = v.ord;
      const row = msg.row;
      this.coreCall(p, () => {
        for (let s = 0; s < v.n; s++) {
          ord.peerReceived(msg.rank, s, row[L.recv + s]!);
          ord.peerDelivered(msg.rank, s, row[L.deliv + s]!);
        }
      });
      this.adoptFrom(p, v, msg.rank);
      return;
    }
    if (msg.kind !== 'data') return;
    if (v.members[msg.s] !== msg.from) throw new SimFailure(p.id, 'unique-view', `v${v.vid}: message of sender ${msg.s} came from p${msg.from}`);
    if (v.wedged) return; // wedged: arrivals are no longer counted
    const got = v.labels[msg.s]!;
    if (msg.k !== got.length) throw new Error(`simulator bug: p${p.id} v${v.vid} got sender ${msg.s} k=${msg.k}, expected ${got.length}`);
    got.push(msg.label);
    this.coreCall(p, () => v.ord.received(msg.s));
  }

  private flush(p: Proc, v: ViewState): void {
    if (!v.dirty || p.status === 'crashed') return;
    v.dirty = false;
    const row = v.myRow.slice();
    for (let r = 0; r < v.n; r++) {
      if (r === v.myRank || v.frozen[r]) continue;
      this.send({ kind: 'row', from: p.id, to: v.members[r]!, vid: v.vid, rank: v.myRank, row }, LANE_ROW);
    }
  }

  // ---- joins ----

  private askToJoin(p: Proc): void {
    const v = p.view;
    // A stranded process asks someone on the other side; a joiner anyone it knows.
    const others = this.procs.filter((q) => {
      if (!this.alive(q) || q.id === p.id) return false;
      if (v === null) return true;
      const r = v.members.indexOf(q.id);
      return r < 0 || v.fdSusp[r] === 1;
    });
    p.nextJoinAt = this.now + (v !== null ? REJOIN_PERIOD_TICKS : JOIN_RETRY_TICKS);
    if (others.length === 0) return;
    const target = this.rng.pick(others);
    p.joinAttempt++;
    this.stats.joinRequests++;
    this.log(() => `p${p.id} asks p${target.id} to join (attempt ${p.joinAttempt})`);
    this.send({ kind: 'join', from: p.id, to: target.id, joiner: p.id, attempt: p.joinAttempt, lastInstalled: p.lastInstalled, hops: 0 }, LANE_CTRL);
  }

  private onJoinRequest(q: Proc, msg: Extract<NetMsg, { kind: 'join' }>): void {
    const v = q.view;
    if (q.status !== 'member' || v === null || v.done || msg.joiner === q.id) return;
    const leader = v.members[v.core.leaderRank()]!;
    if (leader !== q.id) {
      if (msg.hops >= JOIN_HOPS) return;
      this.log(() => `p${q.id} redirects p${msg.joiner}'s join to p${leader}`);
      this.send({ ...msg, from: msg.joiner, to: leader, hops: msg.hops + 1 }, LANE_CTRL);
      return;
    }
    q.pendingJoins = q.pendingJoins.filter((j) => j.joiner !== msg.joiner);
    q.pendingJoins.push({ joiner: msg.joiner, attempt: msg.attempt, lastInstalled: msg.lastInstalled });
    this.log(() => `p${q.id} v${v.vid} holds p${msg.joiner}'s join`);
    this.runProcess(q);
  }

  /** As leader: drop dead requests, suspect joiners still in the view, hand the rest to the core. */
  private refreshJoins(q: Proc, v: ViewState): void {
    if (v.done || v.core.done !== null) return;
    if (v.core.leaderRank() !== v.myRank) {
      q.pendingJoins = [];
    } else {
      q.pendingJoins = q.pendingJoins.filter((j) => {
        const J = this.procs[j.joiner];
        return this.alive(J) && J.joinWanted && J.joinAttempt === j.attempt && !this.isCut(J.id, q.id);
      });
    }
    // A joiner already in the view: if it has not installed the view that let it in, this is a
    // retry that crossed its welcome (drop it); otherwise it lost its place and rejoins, so it
    // must be excluded first.
    q.pendingJoins = q.pendingJoins.filter((j) => {
      const r = v.members.indexOf(j.joiner);
      return r < 0 || j.lastInstalled >= v.since[r]!;
    });
    const cells: number[][] = [];
    const ids: number[] = [];
    for (const j of q.pendingJoins) {
      const r = v.members.indexOf(j.joiner);
      if (r >= 0) {
        if (r !== v.myRank && !v.fdSusp[r]) this.suspect(q, v, r, `it asks to rejoin`);
        continue;
      }
      if (cells.length >= MAX_JOINS) continue;
      ids.push(j.joiner);
      cells.push(encodeMember({ id: j.joiner, ip: '127.0.0.1', gms_port: 23000 + j.joiner, fabric_port: 24000 + j.joiner, state_transfer_port: 25000 + j.joiner, external_port: 26000 + j.joiner }));
    }
    const key = ids.join(',');
    if (key !== v.joinKey) {
      v.joinKey = key;
      this.coreCall(q, () => v.core.setPendingJoins(cells));
    }
  }

  private onWelcome(j: Proc, msg: Extract<NetMsg, { kind: 'welcome' }>): void {
    if (!j.joinWanted || !msg.members.includes(j.id)) return;
    const old = j.view;
    if (old !== null && old.vid >= msg.vid) return;
    if (old !== null) {
      this.endView(j, old, 'stranded');
      j.incarnation++;
      j.resend = [];
      j.pendingJoins = [];
    }
    const wasMember = j.installed.length > 0 || old !== null;
    if (wasMember) this.stats.rejoins++;
    this.stats.joinsInstalled++;
    j.history = msg.donorHist.slice(0, msg.donorLen);
    j.histSet = new Set(j.history);
    j.installed = [];
    this.log(() => `p${j.id} joins v${msg.vid} with p${msg.donor}'s state (${msg.donorLen} messages)`);
    const rec = this.views.get(msg.vid);
    if (rec !== undefined) {
      const at = firstDifference(rec.firstHist, j.history);
      if (at >= 0) {
        throw new SimFailure(j.id, 'state-transfer', `joins v${msg.vid} with p${msg.donor}'s state, which differs at ${at} (${describeAt(j.history, at)}) from what p${rec.firstId} had then (${describeAt(rec.firstHist, at)})`);
      }
    }
    this.installView(j, msg.vid, msg.members, msg.since);
    this.runProcess(j);
  }

  // ---- faults ----

  /** The latest view any process installed, and the one before it. */
  private latestViews(): ViewRecord[] {
    let max = -1;
    for (const vid of this.views.keys()) max = Math.max(max, vid);
    const out: ViewRecord[] = [];
    for (const vid of [max, max - 1]) {
      const rec = this.views.get(vid);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** Whether the group keeps a connected live majority of its recent views if these processes go. */
  private canLose(ids: readonly number[]): boolean {
    for (const rec of this.latestViews()) {
      const sides: number[] = [0, 0];
      for (const id of rec.members) {
        const q = this.procs[id];
        if (!this.alive(q) || q.leaveWanted || q.pausedUntil >= this.now || ids.includes(id)) continue;
        sides[this.partition !== null && this.partition.sideA.has(id) ? 1 : 0]!++;
      }
      if (Math.max(sides[0]!, sides[1]!) * 2 <= rec.members.length) return false;
    }
    return true;
  }

  private onFault(plan: FaultPlan): void {
    const latest = this.latestViews()[0]!;
    const members = latest.members.filter((id) => this.alive(this.procs[id]));
    switch (plan.kind) {
      case 'crash':
      case 'crash-leader': {
        const victim = plan.kind === 'crash' ? (members.length > 0 ? this.rng.pick(members) : undefined) : this.leaderOf(latest);
        if (victim === undefined || !this.canLose([victim])) return this.skip(plan);
        this.stats.faultsApplied++;
        this.crash(victim, plan.kind === 'crash' ? 'crash' : 'leader');
        return;
      }
      case 'pause': {
        const candidates = members.filter((id) => this.procs[id]!.pausedUntil < this.now && this.canLose([id]));
        if (candidates.length === 0) return this.skip(plan);
        const q = this.procs[this.rng.chance(0.4) ? (this.leaderOf(latest) ?? this.rng.pick(candidates)) : this.rng.pick(candidates)]!;
        if (!candidates.includes(q.id)) return this.skip(plan);
        this.stats.faultsApplied++;
        this.stats.pauses++;
        q.pausedUntil = this.now + plan.duration;
        this.log(() => `fault: p${q.id} pauses until ${q.pausedUntil}`);
        return;
      }
      case 'crash-mid-change': {
        this.midChangeArmed = true;
        this.log(() => `fault: crash armed for the next wedge or decision`);
        // Make sure a change comes: if none is under way, a joiner starts one.
        const changing = this.procs.some((q) => this.alive(q) && q.view !== null && q.view.core.changing);
        if (!changing && this.procs.length < MAX_PROCS) this.onFault({ ...plan, kind: 'join' });
        return;
      }
      case 'join': {
        if (this.procs.length >= MAX_PROCS) return this.skip(plan);
        this.stats.faultsApplied++;
        this.stats.joiners++;
        const p = this.newProc(this.procs.length);
        p.joinWanted = true;
        p.nextJoinAt = this.now;
        this.log(() => `fault: joiner p${p.id} starts`);
        this.askToJoin(p);
        return;
      }
      case 'leave': {
        const candidates = members.filter((id) => {
          const q = this.procs[id]!;
          return q.status === 'member' && !q.leaveWanted && this.canLose([id]);
        });
        if (candidates.length === 0) return this.skip(plan);
        const q = this.procs[this.rng.pick(candidates)]!;
        this.stats.faultsApplied++;
        this.stats.leaves++;
        q.leaveWanted = true;
        this.log(() => `fault: p${q.id} wants to leave`);
        this.runProcess(q);
        return;
      }
      case 'partition': {
        if (this.partition !== null) return this.skip(plan);
        const size = latest.members.length;
        const sideA = new Set<number>();
        let even = false;
        if (plan.even && size % 2 === 0 && size >= 2) {
          even = true;
          const shuffled = this.rng.shuffle([...latest.members]);
          for (const id of shuffled.slice(0, size / 2)) sideA.add(id);
        } else {
          const need = Math.floor(size / 2) + 1;
          const live = this.rng.shuffle([...members]);
          if (live.length - need < 1) return this.skip(plan);
          // Side A is the minority: one or more live members, leaving a majority behind.
          const minority = this.rng.int(1, live.length - need);
          for (const id of live.slice(0, minority)) sideA.add(id);
        }
        for (const q of this.procs) if (this.alive(q) && !latest.members.includes(q.id) && this.rng.chance(0.5)) sideA.add(q.id);
        this.stats.faultsApplied++;
        this.stats.partitions++;
        if (even) this.stats.evenSplits++;
        else this.stats.minorityPartitions++;
        this.partition = { sideA, start: this.now, even };
        this.log(() => `fault: partition [${[...sideA].sort((a, b) => a - b).join(',')}] | rest${even ? ' (even split)' : ''} for ${plan.duration}`);
        this.push({ kind: 'heal', time: this.now + plan.duration, seq: 0 });
        return;
      }
    }
  }

  /** A fault that would cost the group its majority (or finds nothing to act on) becomes a joiner, which is always safe. */
  private skip(plan: FaultPlan): void {
    this.log(() => `fault ${plan.kind} skipped (it would cost the group its majority, or nothing to do)`);
    if (plan.kind !== 'join' && this.procs.length < MAX_PROCS) this.onFault({ ...plan, kind: 'join' });
  }

  private leaderOf(rec: ViewRecord): number | undefined {
    for (const id of rec.members) {
      const q = this.procs[id];
      if (this.alive(q) && q.view?.vid === this.maxVid()) return id;
    }
    return undefined;
  }

  private maxVid(): number {
    let max = -1;
    for (const vid of this.views.keys()) max = Math.max(max, vid);
    return max;
  }

  private maybeCrashMidChange(p: Proc, v: ViewState): void {
    if (!this.midChangeArmed || this.now >= this.cfg.faultsEnd) return;
    if (!this.rng.chance(0.5)) return;
    const others = v.members.filter((id) => id !== p.id && this.alive(this.procs[id]));
    const victim = others.length > 0 && this.rng.chance(0.3) ? this.rng.pick(others) : p.id;
    if (this.pendingCrashes.includes(victim) || !this.canLose([victim, ...this.pendingCrashes])) return;
    this.midChangeArmed = false;
    this.stats.faultsApplied++;
    this.pendingCrashes.push(victim);
  }

  private crash(id: number, why: 'crash' | 'leader' | 'mid-change'): void {
    const p = this.procs[id];
    if (!this.alive(p)) return;
    this.stats.crashes++;
    if (why === 'leader') this.stats.leaderCrashes++;
    if (why === 'mid-change') this.stats.midChangeCrashes++;
    this.log(() => `fault: p${id} crashes (${why})${p.view ? ` in v${p.view.vid}` : ''}`);
    if (p.view !== null && !p.view.done) {
      p.view.dirty = false; // what it had not pushed yet is lost
      this.endView(p, p.view, 'crashed');
    }
    p.status = 'crashed';
    // Each outgoing link stops at a random point: in-flight messages land at some peers only.
    const cut = new Map<number, number>();
    for (let to = 0; to < MAX_PROCS; to++) {
      for (let lane = 0; lane < 3; lane++) cut.set(to * 3 + lane, this.rng.chance(0.4) ? this.now : this.now + this.rng.int(0, 12));
    }
    p.crashCutoff = cut;
  }

  // ---- settling and the end ----

  private settled(): boolean {
    let vid = -1;
    for (const p of this.procs) {
      if (!this.alive(p)) continue;
      const v = p.view;
      if (p.status !== 'member' || v === null || v.minority || v.core.changing || p.joinWanted || p.leaveWanted) return false;
      if (p.fresh > 0 || p.resend.length > 0) return false;
      if (vid < 0) vid = v.vid;
      else if (v.vid !== vid) return false;
      if (v.members.some((id) => !this.alive(this.procs[id]))) return false;
    }
    // Every message sent in the view is delivered everywhere.
    for (const p of this.procs) {
      if (!this.alive(p)) continue;
      const v = p.view!;
      for (let s = 0; s < v.n; s++) {
        const sender = this.procs[v.members[s]!]!;
        const sent = sender.view!.ord.receivedAt(s, s);
        if (v.ord.deliveredAt(v.myRank, s) < sent) return false;
      }
    }
    return true;
  }

  private checkSettled(): void {
    if (this.phase === 'done') return;
    if (this.settled()) {
      this.deadSince = -1;
      if (this.phase === 'faults') {
        this.phase = 'final';
        this.log(() => `settled; final messages`);
        for (const p of this.procs) {
          if (!this.alive(p)) continue;
          p.fresh += this.rng.int(1, 2);
          this.current = p.id;
          this.runProcess(p);
        }
        this.current = 'all';
      } else {
        this.phase = 'done';
        this.stats.converged = true;
        this.log(() => `settled after the final messages`);
      }
      return;
    }
    if (this.liveMajority() === null) {
      if (this.deadSince < 0) this.deadSince = this.now;
      else if (this.now - this.deadSince > DEAD_TICKS) {
        this.stats.deadGroup = true;
        this.phase = 'done';
        this.log(() => `the group has no live majority: it is dead`);
      }
    } else {
      this.deadSince = -1;
    }
  }

  /** A view change that a live, connected majority cannot finish, whatever the faults do later, is a liveness failure. */
  private watchdog(): void {
    const live = this.partition === null ? this.liveMajority() : null;
    const changing = live !== null && live.ids.some((id) => this.procs[id]!.view!.core.changing);
    if (!changing) {
      this.lastProgressAt = this.now;
      return;
    }
    if (this.now - this.lastProgressAt > STUCK_TICKS) {
      throw new SimFailure('all', 'liveness', `v${live.vid}: the view change is stuck for ${this.now - this.lastProgressAt} ticks although [${live.ids.join(',')}] are a live, connected majority: ${this.describeProcs()}`);
    }
  }

  private describeProcs(): string {
    return this.procs
      .filter((p) => this.alive(p))
      .map((p) => {
        const v = p.view;
        const what = v === null ? p.status : `v${v.vid}${v.wedged ? ' wedged' : ''}${v.minority ? ' minority' : ''}${v.core.changing ? ' changing' : ''} live [${v.core.liveRanks().map((r) => v.members[r]).join(',')}]`;
        return `p${p.id}: ${what}${p.joinWanted ? ' joining' : ''}${p.leaveWanted ? ` leaving${p.leaveRequested ? ' (requested)' : ''}` : ''}${p.fresh + p.resend.length > 0 ? ` ${p.fresh + p.resend.length} unsent` : ''}`;
      })
      .join('; ');
  }

  /**
   * The processes that should be able to make progress: those in the newest view any live
   * process holds, not stranded in a minority, when they are a majority of it. Null when none.
   */
  private liveMajority(): { vid: number; ids: number[]; size: number } | null {
    let newest: ViewState | null = null;
    for (const p of this.procs) if (this.alive(p) && p.view !== null && (newest === null || p.view.vid > newest.vid)) newest = p.view;
    if (newest === null) return null;
    const ids = this.procs.filter((p) => this.alive(p) && p.view?.vid === newest.vid && !p.view.minority).map((p) => p.id);
    return ids.length * 2 > newest.n ? { vid: newest.vid, ids, size: newest.n } : null;
  }

  private finish(): void {
    if (!this.stats.converged && !this.stats.deadGroup) {
      const live = this.liveMajority();
      if (live !== null && this.partition === null) {
        throw new SimFailure('all', 'liveness', `no settled view ${SETTLE_TICKS} ticks after the faults although [${live.ids.join(',')}] are a live majority of v${live.vid}: ${this.describeProcs()}`);
      }
      this.stats.deadGroup = true;
    }
    for (const p of this.procs) if (this.alive(p) && p.view !== null) this.ends.push({ vid: p.view.vid, id: p.id, how: 'current', delivered: p.view.delivered });
    this.checkPrefixes();
    this.checkViewSequences();
    if (this.stats.converged) this.checkFinal();
  }

  /** Whoever did not survive a view delivered a prefix of what its survivors delivered there. */
  private checkPrefixes(): void {
    const byView = new Map<number, typeof this.ends>();
    for (const e of this.ends) {
      let l = byView.get(e.vid);
      if (l === undefined) byView.set(e.vid, (l = []));
      l.push(e);
    }
    for (const [vid, list] of byView) {
      const ref = this.views.get(vid)?.survivorRef;
      let longest = ref?.delivered ?? [];
      if (ref === undefined) for (const e of list) if (e.delivered.length > longest.length) longest = e.delivered;
      for (const e of list) {
        if (e.how === 'survived') continue;
        const at = firstDifference(longest, e.delivered);
        if (at >= 0 && at < e.delivered.length) {
          const whose = ref ? `survivor p${ref.id}` : 'the longest sequence in this view';
          throw new SimFailure(e.id, 'failed-prefix', `v${vid} (${e.how}): delivered ${describeAt(e.delivered, at)} at position ${at}, ${whose} has ${describeAt(longest, at)}`);
        }
      }
    }
  }

  /** Every process installed consecutive views since it last joined, all with the agreed members. */
  private checkViewSequences(): void {
    for (const p of this.procs) {
      for (let i = 1; i < p.installed.length; i++) {
        if (p.installed[i] !== p.installed[i - 1]! + 1) throw new SimFailure(p.id, 'same-views', `installed v${p.installed[i - 1]} then v${p.installed[i]}`);
      }
    }
  }

  private checkFinal(): void {
    const finals = this.procs.filter((p) => this.alive(p));
    if (finals.length === 0) return;
    const first = finals[0]!;
    const v = first.view!;
    this.stats.finalView = v.vid;
    this.stats.finalMembers = v.n;
    for (const p of finals) {
      if (p.view!.vid !== v.vid) throw new SimFailure(p.id, 'same-views', `ends in v${p.view!.vid}, p${first.id} in v${v.vid}`);
      const at = firstDifference(first.history, p.history);
      if (at >= 0) {
        throw new SimFailure(p.id, 'state-transfer', `final state differs from p${first.id}'s at ${at}: ${describeAt(p.history, at)} vs ${describeAt(first.history, at)} (${p.history.length} and ${first.history.length} messages)`);
      }
    }
    if (v.n !== finals.length) throw new SimFailure('all', 'same-views', `final view v${v.vid} has ${v.n} members but ${finals.length} processes are alive`);
    for (const [label, m] of this.messages) {
      const holders = finals.filter((p) => p.histSet.has(label)).length;
      const owner = this.procs[m.owner]!;
      const guaranteed = owner.incarnation === m.inc && (owner.status === 'member' || (owner.status === 'left' && owner.leftCleanly));
      if (guaranteed && holders !== finals.length) {
        throw new SimFailure(m.owner, 'resend', `${label} (sender ${owner.status === 'left' ? 'left cleanly' : 'survived'}) is delivered by ${holders} of the ${finals.length} final members`);
      }
      if (!guaranteed && holders !== 0 && holders !== finals.length) {
        throw new SimFailure(m.owner, 'resend', `${label} (sender ${owner.status}, lost its state) is delivered by ${holders} of the ${finals.length} final members: all or none`);
      }
    }
  }

  private log(line: () => string): void {
    if (this.trace) this.trace.push(`${this.now} ${line()}`);
  }
}

function describeAt(xs: readonly string[], i: number): string {
  return i < xs.length ? xs[i]! : 'nothing';
}

function emptyStats(seed: number, cfg: SimConfig): MembershipSimStats {
  return {
    seed,
    initialMembers: cfg.n,
    processes: 0,
    faultsPlanned: cfg.faults.length,
    faultsApplied: 0,
    crashes: 0,
    leaderCrashes: 0,
    midChangeCrashes: 0,
    joiners: 0,
    joinsInstalled: 0,
    rejoins: 0,
    leaves: 0,
    cleanLeaves: 0,
    partitions: 0,
    minorityPartitions: 0,
    pauses: 0,
    stalls: 0,
    evenSplits: 0,
    suspicions: 0,
    exclusions: 0,
    minorityEpisodes: 0,
    viewsInstalled: 0,
    installs: 0,
    multiFaultChanges: 0,
    higherBallotDecisions: 0,
    messages: 0,
    resent: 0,
    nulls: 0,
    deliveries: 0,
    trimDeliveries: 0,
    refusedSends: 0,
    joinRequests: 0,
    events: 0,
    end_ticks: 0,
    converged: false,
    deadGroup: false,
    finalView: -1,
    finalMembers: 0,
  };
}

export function runMembershipSimulation(seed: number, opts: MembershipSimOptions = {}): MembershipSimResult {
  const cfg = makeConfig(seed);
  return runSeed(seed, {
    one: 'process',
    all: 'all processes',
    describe: () => describeConfig(cfg),
    replay: membershipReplayCommand(seed),
    create: () => new Simulation(seed, cfg, opts),
    emptyStats: () => emptyStats(seed, cfg),
  });
}
