/**
 * The ordering core of one shard's multicast (DESIGN §5): a pure state machine with no I/O, fed
 * local events (a message arrived, we sent one, we delivered one) and peers' progress as read
 * from the shared state table, and asked what to do next (deliver, send nulls, may we send).
 * The transport around it (group.ts) and the deterministic simulator (test/sim) drive the same
 * code, the way etcd's raft core is driven by its node and by its tests.
 *
 * Order: senders take turns round robin. Message k of the sender with sender index s (0..S-1)
 * has global index k*S + s. Every member counts, per sender, the messages it has received
 * (transport is FIFO per sender, so these counts describe contiguous prefixes). The number of
 * global indices a member has received without a gap is min over s of (received[s]*S + s); the
 * minimum of that over every member is the stable prefix, and messages are delivered in global
 * order up to it. A sender with nothing to send while others are ahead of its turn sends nulls,
 * which take a turn and are skipped at delivery, so an idle sender never holds others back.
 *
 * Raw mode: no global order; a message is delivered as soon as it arrives (FIFO per sender).
 *
 * Window: sender s may have message k in flight only once every member has delivered message
 * k - window of s, because delivery frees the ring slot (and buffer) the message occupies.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';

export type DeliveryMode = 'ordered' | 'raw';

export interface OrderingOptions {
  /** Members of the shard (ranks 0..members-1); every member receives every message. */
  members: number;
  /** Ranks of the members that send, in sender-index order. */
  senders: readonly number[];
  myRank: number;
  /** Messages a sender may have undelivered at some member. */
  window: number;
  mode: DeliveryMode;
}

export class OrderingCore {
  readonly members: number;
  readonly senders: readonly number[];
  /** S: the number of senders. */
  readonly senderCount: number;
  readonly myRank: number;
  /** Our sender index, or -1 when we only receive. */
  readonly mySender: number;
  readonly window: number;
  readonly mode: DeliveryMode;
  /** received[r * S + s]: messages of sender s that member r has received (our row is live). */
  private readonly receivedBy: Float64Array;
  /** delivered[r * S + s]: messages of sender s that member r has delivered. */
  private readonly deliveredBy: Float64Array;
  /** Messages we have sent (data and nulls). */
  private sentCount = 0;
  /** Ordered mode: global indices delivered here (data and nulls). */
  private deliveredGlobal = 0;
  /** Raw mode: senders with messages received but not yet delivered. */
  private rawPending = 0;
  private rawCursor = 0;
  /** Cached stablePrefix(); -1 when a received count changed since it was computed. */
  private stableCache = -1;

  constructor(opts: OrderingOptions) {
    const S = opts.senders.length;
    if (opts.members < 1 || opts.members > 256) throw new TempestError('ERR_MULTICAST_CONFIG', `a shard has 1..256 members, not ${opts.members}`);
    if (S < 1) throw new TempestError('ERR_MULTICAST_CONFIG', 'a shard needs at least one sender');
    if (new Set(opts.senders).size !== S || opts.senders.some((r) => !Number.isInteger(r) || r < 0 || r >= opts.members)) {
      throw new TempestError('ERR_MULTICAST_CONFIG', `senders ${JSON.stringify(opts.senders)} must be distinct ranks below ${opts.members}`);
    }
    if (!Number.isInteger(opts.window) || opts.window < 1 || opts.window > 32768) {
      throw new TempestError('ERR_MULTICAST_CONFIG', `window_size must be 1..32768, not ${opts.window}`);
    }
    assert(opts.myRank >= 0 && opts.myRank < opts.members, 'our rank is in the shard');
    this.members = opts.members;
    this.senders = [...opts.senders];
    this.senderCount = S;
    this.myRank = opts.myRank;
    this.mySender = this.senders.indexOf(opts.myRank);
    this.window = opts.window;
    this.mode = opts.mode;
    this.receivedBy = new Float64Array(opts.members * S);
    this.deliveredBy = new Float64Array(opts.members * S);
  }

  // ---- local events ---------------------------------------------------------------------------

  /** The next message of sender `s` is wholly here (FIFO per sender); for our own, see sent(). */
  received(s: number): void {
    assert(s >= 0 && s < this.senderCount, 'sender index in range');
    assert(s !== this.mySender, 'our own messages are counted by sent()');
    this.receivedBy[this.myRank * this.senderCount + s]!++;
    this.stableCache = -1;
    if (this.mode === 'raw') this.rawPending++;
  }

  /** True when we may put our next message (data or null) in flight. */
  canSend(): boolean {
    assert(this.mySender >= 0, 'only senders send');
    return this.sentCount < this.minDelivered(this.mySender) + this.window;
  }

  /** We sent our next message; it counts as received here at once. Returns its k. */
  sent(): number {
    assert(this.canSend(), 'a sender stays within its window');
    const k = this.sentCount++;
    this.receivedBy[this.myRank * this.senderCount + this.mySender] = this.sentCount;
    this.stableCache = -1;
    if (this.mode === 'raw') this.rawPending++;
    return k;
  }

  /**
   * How many nulls we should send now if we have no data waiting: enough that our next turn
   * comes after the highest global index received here. Zero in raw mode and with one sender.
   */
  nullsWanted(): number {
    if (this.mode === 'raw' || this.mySender < 0 || this.senderCount === 1) return 0;
    const S = this.senderCount;
    const row = this.myRank * S;
    let highest = -1;
    for (let s = 0; s < S; s++) {
      const n = this.receivedBy[row + s]!;
      if (n > 0) highest = Math.max(highest, (n - 1) * S + s);
    }
    const myNext = this.sentCount * S + this.mySender;
    return highest > myNext ? Math.floor((highest - myNext) / S) + 1 : 0;
  }

  // ---- peers' progress (from the shared state table) ------------------------------------------

  /** Member `rank` has received `count` messages of sender `s`. Stale (lower) reports are ignored. */
  peerReceived(rank: number, s: number, count: number): void {
    assert(rank >= 0 && rank < this.members && s >= 0 && s < this.senderCount, 'peer rank and sender index in range');
    if (rank === this.myRank) return;
    const at = rank * this.senderCount + s;
    if (count > this.receivedBy[at]!) {
      this.receivedBy[at] = count;
      this.stableCache = -1;
    }
  }

  /** Member `rank` has delivered `count` messages of sender `s`. Stale reports are ignored. */
  peerDelivered(rank: number, s: number, count: number): void {
    assert(rank >= 0 && rank < this.members && s >= 0 && s < this.senderCount, 'peer rank and sender index in range');
    if (rank === this.myRank) return;
    const at = rank * this.senderCount + s;
    if (count > this.deliveredBy[at]!) {
      assert(s !== this.mySender || count <= this.sentCount, 'nobody delivers what we have not sent');
      this.deliveredBy[at] = count;
    }
  }

  /** Messages of sender `s` that member `rank` has received, as far as we know. */
  receivedAt(rank: number, s: number): number {
    return this.receivedBy[rank * this.senderCount + s]!;
  }

  /** Messages of sender `s` that member `rank` has delivered, as far as we know. */
  deliveredAt(rank: number, s: number): number {
    return this.deliveredBy[rank * this.senderCount + s]!;
  }

  /** The fewest messages of sender `s` received at any member. */
  minReceived(s: number): number {
    let m = Infinity;
    for (let r = 0; r < this.members; r++) m = Math.min(m, this.receivedBy[r * this.senderCount + s]!);
    return m;
  }

  /** The fewest messages of sender `s` delivered at any member. */
  minDelivered(s: number): number {
    let m = Infinity;
    for (let r = 0; r < this.members; r++) m = Math.min(m, this.deliveredBy[r * this.senderCount + s]!);
    return m;
  }

  // ---- order and delivery ---------------------------------------------------------------------

  /** Global indices member `rank` has received without a gap (ordered mode). */
  receivedPrefix(rank: number): number {
    const S = this.senderCount;
    let p = Infinity;
    for (let s = 0; s < S; s++) p = Math.min(p, this.receivedBy[rank * S + s]! * S + s);
    return p;
  }

  /** Global indices received at every member: everything below is stable. */
  stablePrefix(): number {
    if (this.stableCache >= 0) return this.stableCache;
    let p = Infinity;
    for (let r = 0; r < this.members; r++) p = Math.min(p, this.receivedPrefix(r));
    this.stableCache = p;
    return p;
  }

  /**
   * The sender index of the next message to deliver, or -1 when none is deliverable. Its k is
   * nextK(s); call delivered(s) once the upcall has run (nulls are delivered without one).
   */
  nextDeliverable(): number {
    const S = this.senderCount;
    if (this.mode === 'raw') {
      if (this.rawPending === 0) return -1;
      const row = this.myRank * S;
      for (let i = 0; i < S; i++) {
        const s = (this.rawCursor + i) % S;
        if (this.receivedBy[row + s]! > this.deliveredBy[row + s]!) {
          this.rawCursor = s;
          return s;
        }
      }
      assert(false, 'raw pending count matches the rows');
      return -1;
    }
    if (this.deliveredGlobal >= this.stablePrefix()) return -1;
    return this.deliveredGlobal % S;
  }

  /** The k of the next message of sender `s` to deliver here. */
  nextK(s: number): number {
    return this.deliveredBy[this.myRank * this.senderCount + s]!;
  }

  /** The global index of the next delivery (ordered mode), or the raw count delivered. */
  get deliveredCount(): number {
    return this.deliveredGlobal;
  }

  /**
   * Ragged-trim delivery at the end of a view: the sender index of the next message to deliver
   * among those with k < trim[s], in the usual order (indices of senders past their trim are
   * skipped), or -1 when every sender has reached its trim. Call trimmedDelivered(s) after each.
   * The trim never asks for a message not received here: it is a minimum of received counts.
   */
  nextTrimmed(trim: readonly number[]): number {
    const S = this.senderCount;
    assert(trim.length === S, 'one trim per sender');
    const row = this.myRank * S;
    let owed = false;
    for (let s = 0; s < S; s++) {
      const d = this.deliveredBy[row + s]!;
      assert(trim[s]! >= d, 'the trim covers every message delivered here');
      assert(trim[s]! <= this.receivedBy[row + s]!, 'the trim asks only for messages received here');
      if (d < trim[s]!) owed = true;
    }
    if (!owed) return -1;
    if (this.mode === 'raw') {
      for (let s = 0; s < S; s++) if (this.deliveredBy[row + s]! < trim[s]!) return s;
    }
    for (;;) {
      const s = this.deliveredGlobal % S;
      if (Math.floor(this.deliveredGlobal / S) < trim[s]!) return s;
      this.deliveredGlobal++;
    }
  }

  /** The message nextTrimmed() named has been delivered. */
  trimmedDelivered(s: number): void {
    const at = this.myRank * this.senderCount + s;
    if (this.mode === 'raw') {
      this.rawPending--;
    } else {
      assert(s === this.deliveredGlobal % this.senderCount && Math.floor(this.deliveredGlobal / this.senderCount) === this.deliveredBy[at], 'trimmed delivery keeps the order');
    }
    this.deliveredBy[at]!++;
    this.deliveredGlobal++;
  }

  /** The message nextDeliverable() named has been delivered. */
  delivered(s: number): void {
    const S = this.senderCount;
    const at = this.myRank * S + s;
    if (this.mode === 'raw') {
      assert(this.receivedBy[at]! > this.deliveredBy[at]!, 'raw delivery follows arrival');
      this.rawPending--;
      this.rawCursor = (s + 1) % S;
    } else {
      assert(s === this.deliveredGlobal % S && this.deliveredGlobal < this.stablePrefix(), 'ordered delivery follows the stable prefix');
    }
    this.deliveredBy[at]!++;
    this.deliveredGlobal++;
  }
}
