/**
 * Deterministic simulator for one shard's ordering core (engine/multicast/ordering.ts).
 *
 * Every member runs a real OrderingCore, driven exactly the way the transport drives it: sends
 * only when canSend(), app data before nulls, received() on FIFO arrival, the delivery loop, and
 * rows published through a shared-state-table model (one push in flight per (from,to) pair, a
 * push requested meanwhile goes out with the latest row when the first lands). Everything —
 * shard shape, workload, link and push delays, stalls, large (RDMC) messages with head-of-line
 * blocking — comes from the seed, and events run in (time, insertion sequence) order, so a seed
 * replays bit for bit: `node dist/test/sim/replay.js <seed> --trace`.
 *
 * The checks compare the cores' behaviour with the simulator's own ground truth (what has really
 * arrived and been delivered where), never with the cores' views of each other.
 */
import { OrderingCore, type DeliveryMode, type OrderingOptions } from '../../engine/multicast/ordering.js';
import { EventQueue } from './event-queue.js';
import { Rng } from './rng.js';
import { CheckFailure, firstDifference, runSeed, type SeedResult } from './run-seed.js';

/** A run that is still busy after this many events has a livelock. */
export const MAX_EVENTS = 2_000_000;
/** Per step: rounds of (deliver, send) before we call a member unsettled. */
const STEP_ROUNDS_MAX = 100_000;
/** Per call: deliveries or sends before we call the loop runaway. */
const LOOP_MAX = 1_000_000;

/** The checks, named in failure messages (tests match on these words). */
export type SimCheck = 'same-order' | 'fifo' | 'stability' | 'window' | 'liveness' | 'core-assertion' | 'crash';

export interface SimOptions {
  trace?: boolean;
  coreFactory?: (o: OrderingOptions) => OrderingCore;
}

export interface SimStats {
  seed: number;
  /** Members in the shard. */
  nodes: number;
  /** Senders (members with a sender index). */
  senders: number;
  /** Senders given no app messages at all. */
  idleSenders: number;
  window: number;
  mode: DeliveryMode;
  /** App messages sent (all senders). */
  messages: number;
  /** App messages sent with the large (RDMC) flag. */
  largeMessages: number;
  /** Nulls sent (all senders). */
  nulls: number;
  /** Events processed. */
  events: number;
  /** App deliveries, summed over members. */
  deliveries: number;
  /** Simulated time at which the event queue ran dry. */
  end_ticks: number;
}

export type SimResult = SeedResult<SimStats>;

export function replayCommand(seed: number): string {
  return `node dist/test/sim/replay.js ${seed}`;
}

// ---- the seed's scenario -----------------------------------------------------------------------

interface Burst {
  at_ticks: number;
  /** Sender index. */
  sender: number;
  count: number;
}

interface SimConfig {
  members: number;
  /** Ranks in sender-index order (shuffled, so index and rank differ). */
  senders: number[];
  window: number;
  mode: DeliveryMode;
  /** Per sender index: the large flag of each app message, in send order. */
  largeFlags: boolean[][];
  bursts: Burst[];
  /** [from * members + to]: base one-way delay of the data link. */
  linkBase_ticks: number[];
  linkJitter_ticks: number;
  /** [from * members + to]: base delay of an SST push. */
  pushBase_ticks: number[];
  pushJitter_ticks: number;
  /** Chance that one message or push stalls for a long while. */
  stallChance: number;
}

function pickSenders(rng: Rng, members: number): number[] {
  const ranks = Array.from({ length: members }, (_, r) => r);
  const roll = rng.int(0, 9);
  if (roll < 2) return [rng.int(0, members - 1)]; // one sender
  if (roll < 5) return rng.shuffle(ranks); // all members send
  const some = ranks.filter(() => rng.chance(0.5));
  if (some.length === 0) some.push(rng.int(0, members - 1));
  return rng.shuffle(some);
}

/** Splits a sender's app messages into bursts released at random times. */
function pickBursts(rng: Rng, sender: number, count: number, out: Burst[]): void {
  const burstMax = rng.int(1, 20);
  let left = count;
  for (let guard = 0; left > 0 && guard < 1000; guard++) {
    const n = Math.min(left, rng.int(1, burstMax));
    out.push({ at_ticks: rng.int(0, 3000), sender, count: n });
    left -= n;
  }
}

function pickDelays(rng: Rng, members: number, zero: boolean, base_max: number): number[] {
  return Array.from({ length: members * members }, () => (zero ? 0 : rng.int(0, base_max)));
}

function makeConfig(seed: number): SimConfig {
  const rng = new Rng(seed ^ 0x5eed5eed);
  const members = rng.int(1, 7);
  const senders = pickSenders(rng, members);
  const window = rng.chance(0.2) ? 1 : rng.int(1, 10);
  const mode: DeliveryMode = rng.chance(0.85) ? 'ordered' : 'raw';
  const largeFlags: boolean[][] = [];
  const bursts: Burst[] = [];
  for (let s = 0; s < senders.length; s++) {
    const count = rng.chance(0.25) ? 0 : rng.int(0, 60); // some senders are idle
    largeFlags.push(Array.from({ length: count }, () => rng.chance(0.1)));
    pickBursts(rng, s, count, bursts);
  }
  const zeroLinks = rng.chance(0.1); // all ties: same-time events in insertion order
  const zeroPushes = rng.chance(0.1);
  return {
    members,
    senders,
    window,
    mode,
    largeFlags,
    bursts,
    linkBase_ticks: pickDelays(rng, members, zeroLinks, 20),
    linkJitter_ticks: zeroLinks ? 0 : rng.int(0, 10),
    pushBase_ticks: pickDelays(rng, members, zeroPushes, 20),
    pushJitter_ticks: zeroPushes ? 0 : rng.int(0, 10),
    stallChance: rng.chance(0.5) ? 0.01 : 0,
  };
}

// ---- events ------------------------------------------------------------------------------------

type SimEvent =
  | { kind: 'release'; time: number; seq: number; member: number; count: number }
  | { kind: 'arrive'; time: number; seq: number; member: number; sender: number; k: number; isNull: boolean; large: boolean }
  | { kind: 'push'; time: number; seq: number; from: number; to: number; row: Float64Array };

// ---- the simulation ----------------------------------------------------------------------------

/** A check failed. */
class SimFailure extends CheckFailure<SimCheck> {}

class Simulation {
  private readonly N: number;
  private readonly S: number;
  private readonly cores: OrderingCore[];
  private readonly queue = new EventQueue<SimEvent>();
  private readonly rng: Rng;
  private now_ticks = 0;
  /** The member whose event is being handled (all core calls meanwhile are on its core). */
  current: number | 'all' = 'all';
  /** Sender index of each rank, or -1. */
  private readonly senderOf: number[];
  /** Per rank: app messages released but not yet sent. */
  private readonly appQueued: number[];
  /** Per sender index: app messages sent so far (indexes largeFlags). */
  private readonly appSent: number[];
  /** Per sender index: isNull of every message sent, by k. */
  private readonly sentLog: boolean[][];
  /** Ground truth [r * S + s]: messages of sender s wholly arrived at member r. */
  private readonly arrived: Int32Array;
  /** Ground truth [r * S + s]: messages of sender s delivered at member r. */
  private readonly delivered: Int32Array;
  /** Ground truth per member: global indices delivered (ordered mode). */
  private readonly deliveredGlobal: Int32Array;
  /** Ordered mode: position g as first delivered anywhere, encoded by encodeMsg. */
  private readonly reference: number[] = [];
  /** Per member: app deliveries in order, encoded by encodeMsg. */
  private readonly appDeliveries: number[][];
  /** Per member: the row last handed to the SST, [s] received then [S + s] delivered. */
  private readonly published: Float64Array[];
  /** [from * N + to]: a push is in flight / another was requested meanwhile. */
  private readonly pushInFlight: Uint8Array;
  private readonly pushPending: Uint8Array;
  /** [from * N + to]: arrival time of the last data message on the link (FIFO). */
  private readonly linkLast_ticks: Float64Array;
  readonly stats: SimStats;
  readonly trace: string[] | undefined;

  constructor(
    readonly seed: number,
    private readonly cfg: SimConfig,
    opts: SimOptions,
  ) {
    this.N = cfg.members;
    this.S = cfg.senders.length;
    this.rng = new Rng(seed ^ 0x0de1a7);
    this.trace = opts.trace ? [] : undefined;
    const factory = opts.coreFactory ?? ((o: OrderingOptions) => new OrderingCore(o));
    this.cores = Array.from({ length: this.N }, (_, r) =>
      factory({ members: this.N, senders: cfg.senders, myRank: r, window: cfg.window, mode: cfg.mode }),
    );
    this.senderOf = Array.from({ length: this.N }, (_, r) => cfg.senders.indexOf(r));
    this.appQueued = new Array<number>(this.N).fill(0);
    this.appSent = new Array<number>(this.S).fill(0);
    this.sentLog = Array.from({ length: this.S }, () => []);
    this.arrived = new Int32Array(this.N * this.S);
    this.delivered = new Int32Array(this.N * this.S);
    this.deliveredGlobal = new Int32Array(this.N);
    this.appDeliveries = Array.from({ length: this.N }, () => []);
    this.published = Array.from({ length: this.N }, () => new Float64Array(2 * this.S));
    this.pushInFlight = new Uint8Array(this.N * this.N);
    this.pushPending = new Uint8Array(this.N * this.N);
    this.linkLast_ticks = new Float64Array(this.N * this.N);
    this.stats = emptyStats(seed, cfg);
  }

  run(): void {
    this.log(() => `config ${describeConfig(this.cfg)}, ${this.cfg.bursts.length} bursts`);
    for (const b of this.cfg.bursts) {
      const member = this.cfg.senders[b.sender]!;
      this.queue.push({ kind: 'release', time: b.at_ticks, seq: this.queue.nextSeq(), member, count: b.count });
    }
    for (let events = 0; this.queue.size > 0; events++) {
      if (events >= MAX_EVENTS) {
        throw new SimFailure('all', 'liveness', `event queue still busy after ${MAX_EVENTS} events (livelock)`);
      }
      const ev = this.queue.pop()!;
      this.now_ticks = ev.time;
      this.stats.events++;
      this.handle(ev);
    }
    this.stats.end_ticks = this.now_ticks;
    this.checkEnd();
  }

  private handle(ev: SimEvent): void {
    this.current = ev.kind === 'push' ? ev.to : ev.member;
    switch (ev.kind) {
      case 'release':
        this.log(() => `m${ev.member} release ${ev.count} app`);
        this.appQueued[ev.member]! += ev.count;
        this.step(ev.member);
        return;
      case 'arrive':
        this.onArrive(ev.member, ev.sender, ev.k, ev.isNull, ev.large);
        return;
      case 'push':
        this.onPush(ev.from, ev.to, ev.row);
        return;
    }
  }

  // ---- data path ----

  private onArrive(r: number, s: number, k: number, isNull: boolean, large: boolean): void {
    const at = r * this.S + s;
    // The simulator's own link must be FIFO; if not, the harness is broken, not the core.
    if (k !== this.arrived[at]) throw new Error(`simulator bug: link to m${r} from sender ${s} delivered k=${k}, expected ${this.arrived[at]}`);
    this.log(() => `m${r} arrive s${s} k${k}${isNull ? ' null' : ''}${large ? ' large' : ''}`);
    this.arrived[at]!++;
    this.cores[r]!.received(s);
    this.step(r);
  }

  /** Data and null sends, then deliveries, until neither makes progress; then publish the row. */
  private step(r: number): void {
    for (let round = 0; round < STEP_ROUNDS_MAX; round++) {
      const progress = this.deliverAll(r) + this.sendAll(r);
      if (progress === 0) {
        this.publishRow(r);
        return;
      }
    }
    throw new SimFailure(r, 'liveness', `member never settles after ${STEP_ROUNDS_MAX} deliver/send rounds`);
  }

  private sendAll(r: number): number {
    const s = this.senderOf[r]!;
    if (s < 0) return 0;
    const core = this.cores[r]!;
    for (let n = 0; n < LOOP_MAX; n++) {
      if (!core.canSend()) return n;
      if (this.appQueued[r]! > 0) {
        this.appQueued[r]!--;
        this.sendOne(r, s, false);
        continue;
      }
      // No data waiting: nulls keep our turn from holding others back. One at a time, since
      // each null lowers nullsWanted() by one and canSend() may close in between.
      if (core.nullsWanted() <= 0) return n;
      this.sendOne(r, s, true);
    }
    throw new SimFailure(r, 'liveness', `send loop did not stop after ${LOOP_MAX} sends`);
  }

  private sendOne(r: number, s: number, isNull: boolean): void {
    const k = this.cores[r]!.sent();
    const log = this.sentLog[s]!;
    if (k !== log.length) throw new SimFailure(r, 'fifo', `sender ${s} numbered its message k=${k}, but it has sent ${log.length} before`);
    this.checkWindow(r, s, k);
    const large = !isNull && this.cfg.largeFlags[s]![this.appSent[s]!] === true;
    if (!isNull) this.appSent[s]!++;
    log.push(isNull);
    if (isNull) this.stats.nulls++;
    else this.stats.messages++;
    if (large) this.stats.largeMessages++;
    this.arrived[r * this.S + s] = k + 1; // our own message is here at once
    this.log(() => `m${r} send s${s} k${k}${isNull ? ' null' : ''}${large ? ' large' : ''}`);
    for (let to = 0; to < this.N; to++) {
      if (to === r) continue;
      const time = this.linkArrival(r, to, large);
      this.queue.push({ kind: 'arrive', time, seq: this.queue.nextSeq(), member: to, sender: s, k, isNull, large });
    }
  }

  /** Arrival time on a FIFO link: never before the previous message (a large one blocks the rest). */
  private linkArrival(from: number, to: number, large: boolean): number {
    const link = from * this.N + to;
    let delay_ticks = this.cfg.linkBase_ticks[link]! + this.rng.int(0, this.cfg.linkJitter_ticks);
    if (large) delay_ticks += this.rng.int(30, 300); // RDMC: a large message takes longer
    if (this.cfg.stallChance > 0 && this.rng.chance(this.cfg.stallChance)) delay_ticks += this.rng.int(200, 3000);
    const time = Math.max(this.now_ticks + delay_ticks, this.linkLast_ticks[link]!);
    this.linkLast_ticks[link] = time;
    return time;
  }

  // ---- delivery and its checks ----

  private deliverAll(r: number): number {
    const core = this.cores[r]!;
    for (let n = 0; n < LOOP_MAX; n++) {
      const s = core.nextDeliverable();
      if (s < 0) return n;
      if (s >= this.S) throw new SimFailure(r, 'fifo', `nextDeliverable() named sender ${s}, but there are ${this.S}`);
      const k = core.nextK(s);
      this.checkFifo(r, s, k);
      const isNull = this.sentLog[s]![k]!;
      if (this.cfg.mode === 'ordered') this.checkOrdered(r, s, k, isNull);
      core.delivered(s);
      this.delivered[r * this.S + s]!++;
      this.deliveredGlobal[r]!++;
      this.log(() => `m${r} deliver s${s} k${k}${isNull ? ' null' : ''}`);
      if (!isNull) {
        this.appDeliveries[r]!.push(this.encodeMsg(s, k));
        this.stats.deliveries++;
      }
    }
    throw new SimFailure(r, 'liveness', `delivery loop did not stop after ${LOOP_MAX} deliveries`);
  }

  /** Each sender's messages are delivered k = 0, 1, 2, ... and only once they are here. */
  private checkFifo(r: number, s: number, k: number): void {
    const done = this.delivered[r * this.S + s]!;
    if (k !== done) throw new SimFailure(r, 'fifo', `delivers sender ${s} k=${k}, but ${done} of its messages were delivered here before`);
    const here = this.arrived[r * this.S + s]!;
    if (k >= here) throw new SimFailure(r, 'fifo', `delivers sender ${s} k=${k}, but only ${here} of its messages have arrived here`);
  }

  private checkOrdered(r: number, s: number, k: number, isNull: boolean): void {
    const g = this.deliveredGlobal[r]!;
    this.checkReference(r, g, s, k, isNull);
    if (s !== g % this.S || k !== Math.floor(g / this.S)) {
      throw new SimFailure(r, 'same-order', `global position ${g} should be sender ${g % this.S} k=${Math.floor(g / this.S)} (round robin), got sender ${s} k=${k}`);
    }
    this.checkStable(r, g, s, k);
  }

  /** Every member's delivery sequence is a prefix of one sequence: the first to deliver g fixes it. */
  private checkReference(r: number, g: number, s: number, k: number, isNull: boolean): void {
    const mine = this.encodeMsg(s, k) * 2 + (isNull ? 1 : 0);
    if (g === this.reference.length) {
      this.reference.push(mine);
      return;
    }
    const ref = this.reference[g]!;
    if (ref !== mine) {
      const refMsg = Math.floor(ref / 2);
      throw new SimFailure(r, 'same-order', `global position ${g}: delivers sender ${s} k=${k}, but another member delivered sender ${refMsg % this.S} k=${Math.floor(refMsg / this.S)} there`);
    }
  }

  /** Ground truth: when g is delivered anywhere, every member holds every global index <= g. */
  private checkStable(r: number, g: number, s: number, k: number): void {
    for (let m = 0; m < this.N; m++) {
      for (let s2 = 0; s2 < this.S; s2++) {
        const needed = g >= s2 ? Math.floor((g - s2) / this.S) + 1 : 0;
        const have = this.arrived[m * this.S + s2]!;
        if (have < needed) {
          throw new SimFailure(r, 'stability', `delivers global ${g} (sender ${s} k=${k}) before it is stable: member ${m} has received ${have} of sender ${s2}'s messages, needs ${needed}`);
        }
      }
    }
  }

  /** Ground truth: sending k reuses the slot of k - window, which every member must have delivered. */
  private checkWindow(r: number, s: number, k: number): void {
    const needed = k - this.cfg.window + 1;
    for (let m = 0; m < this.N; m++) {
      const have = this.delivered[m * this.S + s]!;
      if (have < needed) {
        throw new SimFailure(r, 'window', `sender ${s} puts k=${k} in flight with window ${this.cfg.window}, but member ${m} has delivered only ${have} of its messages (needs ${needed})`);
      }
    }
  }

  private encodeMsg(s: number, k: number): number {
    return k * this.S + s;
  }

  // ---- the shared state table ----

  /** Hands our row to the SST when it changed since we last did. */
  private publishRow(r: number): void {
    const core = this.cores[r]!;
    const row = this.published[r]!;
    let changed = false;
    for (let s = 0; s < this.S; s++) {
      const rec = core.receivedAt(r, s);
      const del = core.deliveredAt(r, s);
      if (row[s] !== rec || row[this.S + s] !== del) changed = true;
      row[s] = rec;
      row[this.S + s] = del;
    }
    if (!changed) return;
    for (let to = 0; to < this.N; to++) if (to !== r) this.requestPush(r, to);
  }

  private requestPush(from: number, to: number): void {
    const pair = from * this.N + to;
    if (this.pushInFlight[pair]) {
      this.pushPending[pair] = 1; // goes out with the latest row when this one lands
      return;
    }
    this.sendPush(from, to);
  }

  private sendPush(from: number, to: number): void {
    const pair = from * this.N + to;
    this.pushInFlight[pair] = 1;
    let delay_ticks = this.cfg.pushBase_ticks[pair]! + this.rng.int(0, this.cfg.pushJitter_ticks);
    if (this.cfg.stallChance > 0 && this.rng.chance(this.cfg.stallChance)) delay_ticks += this.rng.int(200, 2000);
    const row = this.published[from]!.slice(); // the row as of sending
    this.queue.push({ kind: 'push', time: this.now_ticks + delay_ticks, seq: this.queue.nextSeq(), from, to, row });
  }

  private onPush(from: number, to: number, row: Float64Array): void {
    const core = this.cores[to]!;
    this.log(() => `m${to} push from m${from} received [${Array.from(row.subarray(0, this.S)).join(',')}] delivered [${Array.from(row.subarray(this.S)).join(',')}]`);
    for (let s = 0; s < this.S; s++) {
      core.peerReceived(from, s, row[s]!);
      core.peerDelivered(from, s, row[this.S + s]!);
    }
    const pair = from * this.N + to;
    this.pushInFlight[pair] = 0;
    if (this.pushPending[pair]) {
      this.pushPending[pair] = 0;
      this.sendPush(from, to);
    }
    this.step(to);
  }

  // ---- end of run ----

  /** The queue is empty: every app message was sent and every message delivered everywhere. */
  private checkEnd(): void {
    for (let s = 0; s < this.S; s++) {
      const rank = this.cfg.senders[s]!;
      const waiting = this.appQueued[rank]!;
      if (waiting > 0) {
        throw new SimFailure(rank, 'liveness', `run ended with ${waiting} app messages never sent (sent ${this.sentLog[s]!.length}, window ${this.cfg.window})`);
      }
    }
    for (let r = 0; r < this.N; r++) {
      for (let s = 0; s < this.S; s++) {
        const total = this.sentLog[s]!.length;
        const done = this.delivered[r * this.S + s]!;
        if (done < total) {
          const appLeft = this.sentLog[s]!.slice(done).filter((n) => !n).length;
          throw new SimFailure(r, 'liveness', `run ended with ${done} of sender ${s}'s ${total} messages delivered (${appLeft} app messages starved)`);
        }
      }
    }
    if (this.cfg.mode !== 'ordered') return;
    const first = this.appDeliveries[0]!;
    for (let r = 1; r < this.N; r++) {
      const mine = this.appDeliveries[r]!;
      const diff = firstDifference(first, mine);
      if (diff >= 0) {
        throw new SimFailure(r, 'same-order', `app delivery sequence differs from member 0 at position ${diff} (lengths ${mine.length} and ${first.length})`);
      }
    }
  }

  /** Takes a thunk so the line is only built when tracing. */
  private log(line: () => string): void {
    if (this.trace) this.trace.push(`${this.now_ticks} ${line()}`);
  }
}

function emptyStats(seed: number, cfg: SimConfig): SimStats {
  const idleSenders = cfg.largeFlags.filter((f) => f.length === 0).length;
  return { seed, nodes: cfg.members, senders: cfg.senders.length, idleSenders, window: cfg.window, mode: cfg.mode, messages: 0, largeMessages: 0, nulls: 0, events: 0, deliveries: 0, end_ticks: 0 };
}

function describeConfig(cfg: SimConfig): string {
  return `${cfg.members} members, senders [${cfg.senders.join(',')}], window ${cfg.window}, ${cfg.mode}`;
}

export function runSimulation(seed: number, opts: SimOptions = {}): SimResult {
  const cfg = makeConfig(seed);
  return runSeed(seed, {
    one: 'member',
    all: 'all members',
    describe: () => describeConfig(cfg),
    replay: replayCommand(seed),
    create: () => new Simulation(seed, cfg, opts),
    emptyStats: () => emptyStats(seed, cfg),
  });
}
