/**
 * The shared state table (DESIGN §4): one row per member, each member writes only its own row and
 * pushes it (a column group or the whole row) into every peer's copy by one-sided RMA write with
 * immediate data, which wakes the peer. Readers never see a half-written group: each group is
 * framed by a sequence number at its head and tail, a push writes head..tail in ascending order,
 * and a reader copies tail, body, then head, keeping the copy only if both match and are newer
 * (a seqlock). Predicates run over the validated copies whenever a row changes.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { type CompletionHandler, type Fabric, immediate, type MemoryRegion } from '../transport/fabric.js';
import type { MeshView } from '../transport/peer-mesh.js';
import { Service } from '../transport/services.js';
import { type ColumnLayout, type ColumnSpec, RowLayout } from './layout.js';
import { type PredicateHandle, PredicateSet, type PredicateSpec } from './predicates.js';

const WHOLE_ROW = 0xff;
/** A push not completed after this long is taken as lost (its connection was torn down). */
const PUSH_LOST_MS = 500;

export interface SstOptions {
  fabric: Fabric;
  /** Member ids in rank order; the row of member at rank r is row r. */
  members: number[];
  myId: number;
  columns: ColumnSpec[];
  log: Logger;
  /** Remote-write service id of this table's pushes (each live table needs its own). */
  service?: number;
  /** Name under which peers advertise this table's region (default "sst"). */
  regionName?: string;
  /**
   * Pushes to the member at `rank` have failed for `peer_error_grace_ms`: its connection is gone
   * (the membership layer suspects it). A connection that libfabric re-makes within the grace
   * (after a partition heals, say) costs nothing: pushes are retried and converge.
   */
  onPeerError?: (rank: number, message: string) => void;
  peer_error_grace_ms?: number;
}

export class SharedStateTable {
  readonly layout: RowLayout;
  readonly members: number[];
  readonly myRank: number;
  /**
   * Registered: rows 0..n-1 are where peers' pushes land; rows n..2n-1 are per-peer staging copies
   * of our own row that pushes are sent from, refreshed only while no push to that peer is in
   * flight, so the provider never reads a row we are changing.
   */
  readonly region: MemoryRegion;
  readonly predicates = new PredicateSet<SharedStateTable>();
  private readonly fabric: Fabric;
  private readonly log: Logger;
  private readonly service: number;
  private readonly onPeerError: SstOptions['onPeerError'];
  private readonly peerErrorGrace_ms: number;
  /** Per rank: when pushes to it began failing (0: the last one succeeded). */
  private readonly failingSince_ms: Float64Array;
  readonly regionName: string;
  /** Validated copy of every row (our own row is authoritative here); predicates read only this. */
  private readonly stable: Buffer;
  /** Receive scratch for one group's body (no allocation per push). */
  private readonly scratch: Buffer;
  /** Last accepted sequence number per [rank][group]. */
  private readonly stableSeq: Float64Array;
  /** Our own push sequence per group. */
  private readonly ownSeq: Float64Array;
  private mesh: MeshView | null = null;
  private handlerId = 0;
  /** Pushes in flight per [rank][group] (at most one) and whether another is owed after it. */
  private readonly pushBusy: Uint8Array;
  private readonly pushDirty: Uint8Array;
  private readonly pushPostedAt_ms: Float64Array;
  /** Peers we no longer push to (suspected failed). */
  private readonly frozen: Uint8Array;
  private evalScheduled = false;
  private closed = false;
  /** Row changes accepted from peers (for tests and metrics). */
  rowUpdates = 0;
  /** Pushes refused as torn or stale and left to a newer push. */
  pushesSkipped = 0;

  constructor(opts: SstOptions) {
    this.layout = new RowLayout(opts.columns);
    this.members = [...opts.members];
    this.myRank = this.members.indexOf(opts.myId);
    if (this.myRank < 0) throw new TempestError('ERR_SST_NOT_MEMBER', `member ${opts.myId} has no row in this table`);
    this.fabric = opts.fabric;
    this.log = opts.log;
    this.service = opts.service ?? Service.Sst;
    this.onPeerError = opts.onPeerError;
    this.peerErrorGrace_ms = opts.peer_error_grace_ms ?? 0;
    this.regionName = opts.regionName ?? 'sst';
    const n = this.members.length;
    const g = this.layout.groups.length;
    this.region = this.fabric.register(Buffer.alloc(2 * n * this.layout.rowBytes));
    this.stable = Buffer.alloc(n * this.layout.rowBytes);
    this.scratch = Buffer.alloc(this.layout.rowBytes);
    this.stableSeq = new Float64Array(n * g);
    this.ownSeq = new Float64Array(g);
    this.pushBusy = new Uint8Array(n * g);
    this.pushDirty = new Uint8Array(n * g);
    this.pushPostedAt_ms = new Float64Array(n * g);
    this.failingSince_ms = new Float64Array(n);
    this.frozen = new Uint8Array(n);
    // Peers may push before we attach (they finished connecting first): accept from the start.
    this.fabric.onRemoteWrite(this.service, (value) => this.received(value >>> 8, value & 0xff));
  }

  get size(): number {
    return this.members.length;
  }

  /** Starts exchanging rows over a connected mesh (its peers must be this table's members). */
  attach(mesh: MeshView): void {
    assert(this.mesh === null, 'the table is attached once');
    for (const [id, peer] of mesh.peers) {
      assert(this.members[peer.rank] === id, 'mesh ranks match table ranks');
      const remote = peer.regions[this.regionName];
      if (remote === undefined) throw new TempestError('ERR_SST_PEER', `member ${id} advertised no "${this.regionName}" table region`);
      if (remote.length !== this.region.length) {
        throw new TempestError('ERR_SST_PEER', `member ${id} has a ${remote.length}-byte table, ours is ${this.region.length} bytes: the column layouts differ`);
      }
    }
    this.mesh = mesh;
    const handler: CompletionHandler = {
      onCompletion: (_kind, tag) => {
        this.failingSince_ms[Math.floor(tag / 256)] = 0;
        this.pushDone(tag);
      },
      onError: (_kind, tag, err, message) => {
        // A connection being re-established refuses writes for a while. Nothing is queued: the
        // owner pushes the whole row every heartbeat, which repairs the table once it is back.
        this.log.debug({ peer: this.members[Math.floor(tag / 256)], err, message }, 'SST push failed');
        this.pushDone(tag);
        const rank = Math.floor(tag / 256);
        if (!this.closed && !this.frozen[rank]) {
          const now = performance.now();
          if (this.failingSince_ms[rank] === 0) this.failingSince_ms[rank] = now;
          if (now - this.failingSince_ms[rank]! >= this.peerErrorGrace_ms) this.onPeerError?.(rank, message);
        }
      },
    };
    this.handlerId = this.fabric.addHandler(handler);
  }

  // ---- reading -----------------------------------------------------------------------------

  private cell(rank: number, c: ColumnLayout, index: number): number {
    assert(rank >= 0 && rank < this.members.length, 'rank in range');
    assert(index >= 0 && index < c.count, `index ${index} within column ${c.name}`);
    return rank * this.layout.rowBytes + c.offset + index * (c.type === 'i64' ? 8 : 1);
  }

  private read(buf: Buffer, at: number, c: ColumnLayout): number {
    if (c.type === 'u8') return buf[at]!;
    return buf.readUInt32LE(at) + buf.readInt32LE(at + 4) * 2 ** 32;
  }

  /** A column's layout, to pass to get/set instead of its name on hot paths (no lookup). */
  column(name: string): ColumnLayout {
    return this.layout.column(name);
  }

  /** The value of `column[index]` in the row of the member at `rank` (validated copy). */
  get(rank: number, column: string | ColumnLayout, index = 0): number {
    const c = typeof column === 'string' ? this.layout.column(column) : column;
    return this.read(this.stable, this.cell(rank, c, index), c);
  }

  /** Minimum of `column[index]` over the given ranks (all rows by default). */
  min(column: string, index = 0, ranks?: readonly number[]): number {
    const c = this.layout.column(column);
    let m = Infinity;
    const n = ranks === undefined ? this.members.length : ranks.length;
    for (let i = 0; i < n; i++) {
      const r = ranks === undefined ? i : ranks[i]!;
      m = Math.min(m, this.read(this.stable, this.cell(r, c, index), c));
    }
    return m;
  }

  // ---- writing our own row -----------------------------------------------------------------

  /** Sets `column[index]` in our own row; it reaches peers with the next push. */
  set(column: string | ColumnLayout, value: number, index = 0): void {
    const c = typeof column === 'string' ? this.layout.column(column) : column;
    const at = this.cell(this.myRank, c, index);
    if (c.type === 'u8') {
      assert(Number.isInteger(value) && value >= 0 && value < 256, `u8 column ${c.name} takes 0..255`);
      this.stable[at] = value;
    } else {
      assert(Number.isSafeInteger(value), `i64 column ${column} takes safe integers`);
      this.stable.writeUInt32LE(value >>> 0, at);
      this.stable.writeInt32LE(Math.floor(value / 2 ** 32), at + 4);
    }
    this.scheduleEvaluation();
  }

  /** Increments a counter in our own row and returns the new value. */
  increment(column: string, index = 0, by = 1): number {
    const v = this.get(this.myRank, column, index) + by;
    this.set(column, v, index);
    return v;
  }

  /**
   * Pushes a column group (or, with no argument, the whole row) to every peer. At most one push
   * per peer and group is in flight; a push asked for meanwhile is sent when it completes, with
   * the latest values, so the queue is bounded and no update is lost.
   */
  push(group?: string): void {
    if (this.closed || this.mesh === null) return;
    const ng = this.layout.groups.length;
    const only = group === undefined ? -1 : this.layout.group(group).index;
    if (only >= 0) this.stamp(only);
    else for (let gi = 0; gi < ng; gi++) this.stamp(gi);
    for (const peer of this.mesh.peers.values()) {
      if (this.frozen[peer.rank]) continue;
      if (only >= 0) this.sendGroup(peer.rank, only);
      else if (ng > 1) this.sendWhole(peer.rank);
      else this.sendGroup(peer.rank, 0);
    }
  }

  /** Stops pushing to a member (it was suspected failed); its last row stays readable. */
  freeze(rank: number): void {
    this.frozen[rank] = 1;
  }

  private stamp(gi: number): void {
    const g = this.layout.groups[gi]!;
    const seq = ++this.ownSeq[gi]!;
    const row = this.myRank * this.layout.rowBytes;
    this.stable.writeDoubleLE(seq, row + g.offset);
    this.stable.writeDoubleLE(seq, row + g.offset + g.length - 8);
    this.stableSeq[this.myRank * this.layout.groups.length + gi] = seq;
  }

  private sendWhole(rank: number): void {
    const ng = this.layout.groups.length;
    let busy = false;
    for (let gi = 0; gi < ng; gi++) busy ||= this.pushBusy[rank * ng + gi] === 1;
    if (busy) {
      for (let gi = 0; gi < ng; gi++) this.sendGroup(rank, gi);
      return;
    }
    const now = performance.now();
    for (let gi = 0; gi < ng; gi++) {
      this.pushBusy[rank * ng + gi] = 1;
      this.pushPostedAt_ms[rank * ng + gi] = now;
    }
    this.post(rank, WHOLE_ROW, 0, this.layout.rowBytes);
  }

  private sendGroup(rank: number, gi: number): void {
    const slot = rank * this.layout.groups.length + gi;
    if (this.pushBusy[slot]) {
      // A push whose completion never came (its connection was torn down) is given up on, so
      // one lost completion never silences a group for good; the seqlock makes a late one harmless.
      if (performance.now() - this.pushPostedAt_ms[slot]! > PUSH_LOST_MS) {
        this.pushBusy[slot] = 0;
      } else {
        this.pushDirty[slot] = 1;
        return;
      }
    }
    this.pushBusy[slot] = 1;
    this.pushPostedAt_ms[slot] = performance.now();
    const g = this.layout.groups[gi]!;
    this.post(rank, gi, g.offset, g.length);
  }

  private post(rank: number, gi: number, offsetInRow: number, len: number): void {
    const mesh = this.mesh;
    if (mesh === null || this.closed) return;
    const peer = mesh.peerByRank(rank);
    const remote = peer?.regions[this.regionName];
    assert(peer !== undefined && remote !== undefined, 'push target is a peer with a table');
    const at = this.myRank * this.layout.rowBytes + offsetInRow;
    const staged = (this.members.length + rank) * this.layout.rowBytes + offsetInRow;
    // Nothing is in flight to this peer for these bytes (pushBusy), so refreshing them is safe.
    this.stable.copy(this.region.buffer, staged, at, at + len);
    const tag = rank * 256 + gi;
    const ok = this.fabric.write(peer.address, this.region, staged, len, remote, at, this.handlerId, tag, immediate(this.service, (this.myRank << 8) | gi));
    if (!ok) this.fabric.whenCapacity(() => this.post(rank, gi, offsetInRow, len));
  }

  private pushDone(tag: number): void {
    const rank = Math.floor(tag / 256);
    const gi = tag % 256;
    const ng = this.layout.groups.length;
    const first = gi === WHOLE_ROW ? 0 : gi;
    const end = gi === WHOLE_ROW ? ng : gi + 1;
    for (let g = first; g < end; g++) this.pushBusy[rank * ng + g] = 0;
    if (this.closed || this.frozen[rank]) return;
    for (let g = first; g < end; g++) {
      if (this.pushDirty[rank * ng + g]) {
        this.pushDirty[rank * ng + g] = 0;
        this.sendGroup(rank, g);
      }
    }
  }

  // ---- receiving -----------------------------------------------------------------------------

  private received(rank: number, gi: number): void {
    if (rank === this.myRank || rank >= this.members.length) return;
    const ng = this.layout.groups.length;
    if (gi !== WHOLE_ROW && gi >= ng) return;
    const first = gi === WHOLE_ROW ? 0 : gi;
    const end = gi === WHOLE_ROW ? ng : gi + 1;
    let changed = false;
    for (let g = first; g < end; g++) if (this.acceptGroup(rank, g)) changed = true;
    if (changed) {
      this.rowUpdates++;
      this.scheduleEvaluation();
    }
  }

  /** Seqlock read of one group from the registered table into the validated copy. */
  private acceptGroup(rank: number, gi: number): boolean {
    const g = this.layout.groups[gi]!;
    const start = rank * this.layout.rowBytes + g.offset;
    const end = start + g.length;
    const src = this.region.buffer;
    const tail = src.readDoubleLE(end - 8);
    const seqIdx = rank * this.layout.groups.length + gi;
    if (tail <= this.stableSeq[seqIdx]!) {
      this.pushesSkipped++;
      return false;
    }
    // Tail, then body, then head: equal head and tail mean no push overlapped the body copy.
    const bodyBytes = g.length - 16;
    src.copy(this.scratch, 0, start + 8, end - 8);
    const head = src.readDoubleLE(start);
    if (head !== tail) {
      this.pushesSkipped++;
      return false;
    }
    this.scratch.copy(this.stable, start + 8, 0, bodyBytes);
    this.stable.writeDoubleLE(head, start);
    this.stable.writeDoubleLE(head, end - 8);
    this.stableSeq[seqIdx] = head;
    return true;
  }

  // ---- predicates ----------------------------------------------------------------------------

  /** Registers a predicate; it is evaluated after every change to any row. */
  predicate(spec: PredicateSpec<SharedStateTable>): PredicateHandle {
    const h = this.predicates.add(spec);
    this.scheduleEvaluation();
    return h;
  }

  private scheduleEvaluation(): void {
    if (this.evalScheduled || this.closed) return;
    this.evalScheduled = true;
    // One evaluation per burst of changes: after the current batch of completions is handled.
    setImmediate(() => {
      this.evalScheduled = false;
      if (!this.closed) this.predicates.evaluate(this);
    });
  }

  /**
   * Stops pushing and evaluating. With `release`, also frees the service id and the completion
   * handler (a view's table). The registration stays: the owner retires it later, because a peer
   * may still write into it (see membership/view-instance.ts).
   */
  close(release = false): void {
    this.closed = true;
    if (!release) return;
    this.fabric.offRemoteWrite(this.service);
    if (this.handlerId !== 0) this.fabric.removeHandler(this.handlerId);
  }
}
