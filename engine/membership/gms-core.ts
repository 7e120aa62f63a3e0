/**
 * The view-change core (DESIGN §6): a pure state machine over the membership columns of one
 * view's shared state table. No I/O, no timers, no clock: the runtime (view-manager.ts) and the
 * simulator (test/sim) call step() after every table change and tick, and carry out its effects.
 *
 * The protocol, per view of n members:
 *  1. Trigger: a member is suspected (the failure detector raises and spreads flags), a member
 *     asks to leave, or the leader holds join requests (it raises `change`). Every member that
 *     sees a trigger wedges: its multicast stops sending and stops counting arrivals, and the
 *     final received counts per sender (`fr`) go into its row with `wedged`, in one push.
 *  2. Agreement on the next view is single-decree Paxos with the members as acceptors and the
 *     lowest-ranked unsuspected member as proposer. The value is (who stays, who joins, and the
 *     ragged trim: per sender, the minimum `fr` over the staying members of its shard). Ballot
 *     (round 0, rank 0) skips phase 1 (no lower ballot exists); any other proposer first collects
 *     promises from every member it keeps (a majority) and re-proposes the highest value any of
 *     them accepted. A value is decided once a majority of the view accepted it; the decider and
 *     every member that sees a decided row copy it, so it survives the decider's crash.
 *  3. Members that stay deliver exactly up to the trim and install the next view; others are out
 *     and must rejoin.
 *
 * Why this is safe: a message delivered anywhere was stable, so every member had received it,
 * so every trim (a minimum over frozen received counts) covers it; Paxos makes every member that
 * installs view vid+1 install the same members and the same trim. A side without a majority of
 * the view can never decide, so it never installs a view of its own.
 */
import { assert } from '../util/assert.js';
import { MEMBER_CELLS } from './view.js';

/** The membership columns (one push group) and the column names the failure detector owns. */
export const GMS_GROUP = 'gms';
export const Col = {
  suspected: 'suspected',
  leaving: 'gms.leaving',
  change: 'gms.change',
  wedged: 'gms.wedged',
  fr: 'gms.fr',
  promised: 'gms.promised',
  prepare: 'gms.prepare',
  prop: 'gms.prop',
  acc: 'gms.acc',
  accKeep: 'gms.acc_keep',
  accJoinCount: 'gms.acc_join_count',
  accJoins: 'gms.acc_joins',
  accTrim: 'gms.acc_trim',
  decided: 'gms.decided',
} as const;
export type GmsColumn = (typeof Col)[keyof typeof Col];

export function gmsColumns(members: number, trimSlots: number, maxJoins: number) {
  const g = GMS_GROUP;
  return [
    { name: Col.leaving, type: 'u8' as const, group: g },
    { name: Col.change, type: 'u8' as const, group: g },
    { name: Col.wedged, type: 'u8' as const, group: g },
    { name: Col.fr, type: 'i64' as const, count: Math.max(1, trimSlots), group: g },
    { name: Col.promised, type: 'i64' as const, group: g },
    { name: Col.prepare, type: 'i64' as const, group: g },
    { name: Col.prop, type: 'i64' as const, group: g },
    { name: Col.acc, type: 'i64' as const, group: g },
    { name: Col.accKeep, type: 'u8' as const, count: members, group: g },
    { name: Col.accJoinCount, type: 'i64' as const, group: g },
    { name: Col.accJoins, type: 'i64' as const, count: maxJoins * MEMBER_CELLS, group: g },
    { name: Col.accTrim, type: 'i64' as const, count: Math.max(1, trimSlots), group: g },
    { name: Col.decided, type: 'i64' as const, group: g },
  ];
}

/** The slice of the shared state table the core reads and writes (SharedStateTable fits it). */
export interface GmsTable {
  readonly size: number;
  readonly myRank: number;
  get(rank: number, column: string, index?: number): number;
  set(column: string, value: number, index?: number): void;
  push(group?: string): void;
}

export interface GmsEffects {
  /** Stop sending and counting arrivals in every multicast of this view; the final received count per trim slot. */
  wedge(): number[];
  /**
   * Called with a value (members kept, joins, ragged trim) just before this member accepts it,
   * that is before the value is published from its row. Durable subgroups write the trim to
   * stable storage here (DESIGN §6: a ragged trim is logged before it is published), so a total
   * crash in the middle of a view change never loses or invents a delivery.
   */
  logAccepted?(value: Decision): void;
}

/** The agreed next view, relative to the current one. */
export interface Decision {
  ballot: number;
  /** Ranks (in the current view) that stay, ascending. */
  keep: number[];
  /** Joiners' member records as table cells (MEMBER_CELLS each), in the order they join. */
  joins: number[][];
  /** Per trim slot: messages of that sender to deliver before the next view. */
  trim: number[];
}

export type GmsOutcome =
  | { kind: 'decided'; decision: Decision }
  /** Fewer than a majority of the view is unsuspected here: no view can be installed from this side. */
  | { kind: 'minority'; live: number }
  /** A live member suspects us: we will not be in the next view. */
  | { kind: 'excluded'; by: number };

export interface GmsCoreOptions {
  table: GmsTable;
  effects: GmsEffects;
  /** For each trim slot (one per sender of each shard), the ranks of that shard's members. */
  slotRanks: readonly (readonly number[])[];
  maxJoins: number;
  /**
   * Partition safety (default on): a view change needs a majority of the view. Off
   * (disable_partitioning_safety), a minority may install its own view, which risks split brain.
   */
  requireMajority?: boolean;
}

const BALLOT_RANKS = 256;

function roundOf(ballot: number): number {
  return ballot === 0 ? -1 : Math.floor((ballot - 1) / BALLOT_RANKS);
}

export class GmsCore {
  private readonly t: GmsTable;
  private readonly effects: GmsEffects;
  private readonly slotRanks: readonly (readonly number[])[];
  private readonly n: number;
  private readonly me: number;
  private readonly maxJoins: number;
  private readonly majority: boolean;
  private pendingJoins: number[][] = [];
  /** Our ballot as proposer (0: none), whether its phase 1 is done, and the live set it began with. */
  private ballot = 0;
  private phase2 = false;
  private ballotLive = '';
  private outcome: GmsOutcome | null = null;
  private minorityReported = false;

  constructor(opts: GmsCoreOptions) {
    this.t = opts.table;
    this.effects = opts.effects;
    this.slotRanks = opts.slotRanks;
    this.n = opts.table.size;
    this.me = opts.table.myRank;
    this.maxJoins = opts.maxJoins;
    this.majority = opts.requireMajority ?? true;
    assert(this.n >= 1 && this.n < BALLOT_RANKS, 'a view has 1..255 members');
  }

  // ---- inputs from the runtime -------------------------------------------------------------

  /** Joiners waiting at this member (meaningful when it leads); each MEMBER_CELLS cells. */
  setPendingJoins(joins: number[][]): void {
    assert(joins.every((j) => j.length === MEMBER_CELLS), 'join records are member cells');
    this.pendingJoins = joins.slice(0, this.maxJoins).map((j) => [...j]);
    if (joins.length > 0 && this.t.get(this.me, Col.change) === 0) {
      this.t.set(Col.change, 1);
      this.t.push(GMS_GROUP);
    }
  }

  /** This member asks to leave (its own sends should be delivered first). */
  requestLeave(): void {
    if (this.t.get(this.me, Col.leaving) === 1) return;
    this.t.set(Col.leaving, 1);
    this.t.push(GMS_GROUP);
  }

  // ---- queries -------------------------------------------------------------------------------

  suspects(rank: number): boolean {
    return rank !== this.me && this.t.get(this.me, Col.suspected, rank) === 1;
  }

  /** Ranks not suspected here (ourselves included). */
  liveRanks(): number[] {
    const live: number[] = [];
    for (let r = 0; r < this.n; r++) if (!this.suspects(r)) live.push(r);
    return live;
  }

  leaderRank(): number {
    for (let r = 0; r < this.n; r++) if (!this.suspects(r)) return r;
    return this.me;
  }

  /** A majority of the view is unsuspected here. */
  hasQuorum(): boolean {
    return !this.majority || this.liveRanks().length * 2 > this.n;
  }

  get wedged(): boolean {
    return this.t.get(this.me, Col.wedged) === 1;
  }

  /** The view is changing (wedged or a change is pending): new sends should wait for the next view. */
  get changing(): boolean {
    return this.wedged || this.outcome !== null;
  }

  get done(): GmsOutcome | null {
    return this.outcome;
  }

  // ---- the step ------------------------------------------------------------------------------

  /** Runs every rule once against the table; returns a final outcome when one is reached. */
  step(): GmsOutcome | null {
    if (this.outcome?.kind === 'decided' || this.outcome?.kind === 'excluded') return null;
    const t = this.t;
    let dirty = false;

    // A decision seen in any row is final: copy it (so it survives the decider) and install.
    for (let r = 0; r < this.n; r++) {
      const b = t.get(r, Col.decided);
      if (b === 0) continue;
      assert(t.get(r, Col.acc) === b, 'a decided row holds the decided value');
      if (!this.wedged) this.wedgeNow();
      if (r !== this.me) {
        if (t.get(this.me, Col.acc) !== b) {
          this.copyValue(r);
          this.effects.logAccepted?.(this.readValue(this.me, b));
        }
        t.set(Col.acc, b);
        t.set(Col.decided, b);
        t.push(GMS_GROUP);
      }
      return this.finish({ kind: 'decided', decision: this.readValue(this.me) });
    }

    const live = this.liveRanks();
    for (const r of live) {
      if (r !== this.me && t.get(r, Col.suspected, this.me) === 1) return this.finish({ kind: 'excluded', by: r });
    }

    if (!this.wedged && this.triggered(live)) {
      this.wedgeNow();
      dirty = true;
    }

    // Acceptor: answer the member we take for leader.
    const leader = live[0]!;
    const promised = t.get(this.me, Col.promised);
    const prepare = t.get(leader, Col.prepare);
    if (prepare > promised) {
      t.set(Col.promised, prepare);
      dirty = true;
    }
    const prop = t.get(leader, Col.prop);
    if (leader !== this.me && prop !== 0 && this.wedged && prop >= t.get(this.me, Col.promised) && t.get(leader, Col.acc) === prop && t.get(this.me, Col.acc) !== prop) {
      this.copyValue(leader);
      this.effects.logAccepted?.(this.readValue(this.me, prop));
      t.set(Col.acc, prop);
      t.set(Col.promised, prop);
      dirty = true;
    }

    let outcome: GmsOutcome | null = null;
    if (this.majority && live.length * 2 <= this.n) {
      if (!this.minorityReported) {
        this.minorityReported = true;
        outcome = { kind: 'minority', live: live.length };
      }
    } else {
      this.minorityReported = false;
      if (leader === this.me && this.wedged) dirty = this.propose(live) || dirty;
    }
    if (dirty) t.push(GMS_GROUP);
    const b = t.get(this.me, Col.decided);
    if (b !== 0) return this.finish({ kind: 'decided', decision: this.readValue(this.me) });
    return outcome;
  }

  private finish(o: GmsOutcome): GmsOutcome {
    this.outcome = o;
    return o;
  }

  private triggered(live: readonly number[]): boolean {
    const t = this.t;
    if (live.length < this.n || this.pendingJoins.length > 0) return true;
    // A leave alone changes the view only if the others would still be a majority: otherwise the
    // leaver would be kept, and asking again in every view would change views forever.
    const staying = live.filter((r) => t.get(r, Col.leaving) === 0).length;
    const leaveGrantable = !this.majority || staying * 2 > this.n;
    for (const r of live) {
      if ((leaveGrantable && t.get(r, Col.leaving)) || t.get(r, Col.change) || t.get(r, Col.wedged) || t.get(r, Col.prepare) || t.get(r, Col.prop)) return true;
    }
    return false;
  }

  private wedgeNow(): void {
    const fr = this.effects.wedge();
    assert(fr.length === this.slotRanks.length, 'one final received count per trim slot');
    fr.forEach((v, i) => this.t.set(Col.fr, v, i));
    this.t.set(Col.wedged, 1);
    this.t.push(GMS_GROUP);
  }

  /** Proposer rules; true when our row changed. */
  private propose(live: readonly number[]): boolean {
    const t = this.t;
    // Leavers go only if the members staying are still a majority of this view; otherwise they
    // stay for now (the next view must keep a majority of this one) and ask again there.
    let keep = live.filter((r) => t.get(r, Col.leaving) === 0);
    if (this.majority && keep.length * 2 <= this.n) keep = [...live];
    if (keep.length === 0 || (this.majority && keep.length * 2 <= this.n)) return false;
    const liveKey = live.join(',');
    // A member we counted on was suspected before the decision: begin a higher ballot.
    if (this.ballot !== 0 && liveKey !== this.ballotLive) {
      this.ballot = 0;
      this.phase2 = false;
    }
    if (this.ballot === 0) {
      let maxRound = -1;
      for (let r = 0; r < this.n; r++) {
        for (const c of [Col.promised, Col.prepare, Col.prop, Col.acc]) maxRound = Math.max(maxRound, roundOf(t.get(r, c)));
      }
      this.ballotLive = liveKey;
      if (maxRound < 0 && this.me === 0) {
        this.ballot = 1; // round 0, rank 0: no lower ballot exists, so phase 1 is moot
        this.phase2 = false;
      } else {
        this.ballot = (maxRound + 1) * BALLOT_RANKS + this.me + 1;
        t.set(Col.prepare, this.ballot);
        t.set(Col.promised, this.ballot);
        return true;
      }
    }
    const b = this.ballot;
    if (!this.phase2) {
      // Every member we keep must be wedged (its fr final) and, past ballot 1, have promised b.
      let highest = -1;
      for (const r of keep) {
        if (t.get(r, Col.wedged) !== 1) return false;
        if (b === 1) continue;
        const p = t.get(r, Col.promised);
        if (p > b) {
          this.ballot = 0; // outbid: try again with a higher round
          return false;
        }
        if (p < b) return false;
        const a = t.get(r, Col.acc);
        if (a !== 0 && (highest < 0 || a > t.get(highest, Col.acc))) highest = r;
      }
      if (t.get(this.me, Col.promised) > b) {
        this.ballot = 0;
        return false;
      }
      if (highest >= 0) {
        if (highest !== this.me) this.copyValue(highest);
      } else {
        this.writeFreshValue(keep);
      }
      this.effects.logAccepted?.(this.readValue(this.me, b));
      t.set(Col.acc, b);
      t.set(Col.prop, b);
      this.phase2 = true;
      return true;
    }
    let accepted = 0;
    for (let r = 0; r < this.n; r++) if (t.get(r, Col.acc) === b) accepted++;
    const needed = this.majority ? Math.floor(this.n / 2) + 1 : keep.length;
    if (accepted >= needed && t.get(this.me, Col.decided) === 0) {
      t.set(Col.decided, b);
      return true;
    }
    return false;
  }

  private writeFreshValue(keep: readonly number[]): void {
    const t = this.t;
    const kept = new Uint8Array(this.n);
    for (const r of keep) kept[r] = 1;
    for (let r = 0; r < this.n; r++) t.set(Col.accKeep, kept[r]!, r);
    const joins = this.pendingJoins;
    t.set(Col.accJoinCount, joins.length);
    joins.forEach((j, i) => j.forEach((v, c) => t.set(Col.accJoins, v, i * MEMBER_CELLS + c)));
    for (let slot = 0; slot < this.slotRanks.length; slot++) {
      let m = Infinity;
      for (const r of this.slotRanks[slot]!) if (kept[r]) m = Math.min(m, t.get(r, Col.fr, slot));
      t.set(Col.accTrim, m === Infinity ? 0 : m, slot);
    }
  }

  private copyValue(from: number): void {
    const t = this.t;
    for (let r = 0; r < this.n; r++) t.set(Col.accKeep, t.get(from, Col.accKeep, r), r);
    const count = t.get(from, Col.accJoinCount);
    t.set(Col.accJoinCount, count);
    for (let i = 0; i < count * MEMBER_CELLS; i++) t.set(Col.accJoins, t.get(from, Col.accJoins, i), i);
    for (let s = 0; s < this.slotRanks.length; s++) t.set(Col.accTrim, t.get(from, Col.accTrim, s), s);
  }

  private readValue(rank: number, ballot?: number): Decision {
    const t = this.t;
    const keep: number[] = [];
    for (let r = 0; r < this.n; r++) if (t.get(rank, Col.accKeep, r) === 1) keep.push(r);
    const joins: number[][] = [];
    const count = t.get(rank, Col.accJoinCount);
    for (let i = 0; i < count; i++) {
      const cells: number[] = [];
      for (let c = 0; c < MEMBER_CELLS; c++) cells.push(t.get(rank, Col.accJoins, i * MEMBER_CELLS + c));
      joins.push(cells);
    }
    const trim: number[] = [];
    for (let s = 0; s < this.slotRanks.length; s++) trim.push(t.get(rank, Col.accTrim, s));
    return { ballot: ballot ?? t.get(rank, Col.acc), keep, joins, trim };
  }
}
