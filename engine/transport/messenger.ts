/**
 * Reliable, flow-controlled point-to-point messages between mesh members, up to slot_size_bytes.
 *
 * Memory is registered once: a receive pool of (peers x slots_per_peer) slots, posted from any
 * source, and per-peer send staging slots. Each peer may have at most slots_per_peer messages
 * unconsumed at a receiver (credits), so a receive is always posted before a message arrives.
 * Receivers return credits by a tiny RMA write whose immediate data carries the cumulative count
 * consumed (mod 2^16), batched: at once when half a window is owed, else after
 * credit_delay_ms, so request/response traffic does not pay a credit write per message.
 *
 * Receive is zero-copy: the handler gets a view of the registered slot, valid until it returns.
 *
 * Order: libfabric matches messages in send order, but completions may come out of order (ofi_rxm
 * completes a large rendezvous message after small eager ones sent behind it). Each message
 * carries a 16-bit per-sender sequence number in its immediate data; early arrivals wait in a
 * reorder window of slots_per_peer entries (credits bound how far ahead a sender can be).
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import { type CompletionHandler, CompletionKind, immediate, type MemoryRegion } from './fabric.js';
import type { Peer, PeerMesh } from './peer-mesh.js';
import { Service } from './services.js';

export interface MessengerOptions {
  mesh: PeerMesh;
  /** Largest message, bytes. */
  slot_size_bytes: number;
  /** Messages in flight to one peer (its credit window). */
  slots_per_peer: number;
  /** Longest a send() waits for credit before failing, ms. */
  send_timeout_ms: number;
  /** Waiting senders allowed per peer before send() fails fast. */
  max_waiting_sends?: number;
  /** Longest a credit under half a window is held back before it is returned, ms. */
  credit_delay_ms?: number;
}

export type MessageHandler = (fromId: number, payload: Buffer) => void;

const SEQ_MASK = 0xffff;

interface PeerState {
  peer: Peer;
  credits: number;
  sent16: number;
  consumedFrom: number;
  returnedTo: number;
  freeStaging: number[];
  /** Staged sends refused by the provider for now (EAGAIN), retried in order. */
  retry: { slot: number; len: number; seq16: number }[];
  waiters: { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[];
  failed: Error | null;
  creditWriteBusy: boolean;
  /** Next sequence number (mod 2^16) to deliver from this peer. */
  expect16: number;
  /** Early arrivals by sequence number mod window: receive slot (-1 when empty) and length. */
  earlySlot: Int32Array;
  earlyLen: Float64Array;
}

export class Messenger {
  private readonly mesh: PeerMesh;
  private readonly slotSize: number;
  private readonly window: number;
  private readonly rx: MemoryRegion;
  private readonly tx: MemoryRegion;
  private readonly handlerId: number;
  private readonly byRank: (PeerState | undefined)[] = [];
  /** Peer states by staging block (staging slot / window). */
  private readonly byStagingBlock: PeerState[] = [];
  private readonly byId = new Map<number, PeerState>();
  private readonly sendTimeout_ms: number;
  private readonly maxWaiting: number;
  private onMessage: MessageHandler = () => {};
  private creditTimer: NodeJS.Timeout | undefined;
  private readonly creditDelay_ms: number;
  private closed = false;
  /** Messages delivered to the handler so far. */
  delivered = 0;

  constructor(opts: MessengerOptions) {
    assert(opts.slots_per_peer >= 1 && opts.slots_per_peer <= 0x7fff, 'credit window fits the 16-bit counters');
    this.mesh = opts.mesh;
    this.slotSize = opts.slot_size_bytes;
    this.window = opts.slots_per_peer;
    this.sendTimeout_ms = opts.send_timeout_ms;
    this.maxWaiting = opts.max_waiting_sends ?? 4096;
    this.creditDelay_ms = opts.credit_delay_ms ?? 1;
    const fabric = this.mesh.fabric;
    const npeers = this.mesh.peers.size;
    this.rx = fabric.register(Buffer.alloc(Math.max(1, npeers * this.window) * this.slotSize));
    this.tx = fabric.register(Buffer.alloc(Math.max(1, npeers * this.window) * this.slotSize));
    const handler: CompletionHandler = {
      onCompletion: (kind, tag, len, data) => this.completed(kind, tag, len, data),
      onError: (kind, tag, err, message) => this.failed(kind, tag, err, message),
    };
    this.handlerId = fabric.addHandler(handler);
    let i = 0;
    for (const peer of this.mesh.peers.values()) {
      const freeStaging: number[] = [];
      for (let s = this.window - 1; s >= 0; s--) freeStaging.push(i * this.window + s);
      const st: PeerState = {
        peer,
        credits: this.window,
        sent16: 0,
        consumedFrom: 0,
        returnedTo: 0,
        freeStaging,
        retry: [],
        waiters: [],
        failed: null,
        creditWriteBusy: false,
        expect16: 0,
        earlySlot: new Int32Array(this.window).fill(-1),
        earlyLen: new Float64Array(this.window),
      };
      this.byRank[peer.rank] = st;
      this.byId.set(peer.id, st);
      this.byStagingBlock[i] = st;
      i++;
    }
    fabric.onRemoteWrite(Service.MessengerCredit, (value) => this.creditReturned(value));
    const slots = npeers * this.window;
    for (let s = 0; s < slots; s++) this.repost(s);
  }

  /** Sets the receive handler. The payload view is valid only until the handler returns. */
  handle(onMessage: MessageHandler): void {
    this.onMessage = onMessage;
  }

  private state(id: number): PeerState {
    const st = this.byId.get(id);
    if (st === undefined) throw new TempestError('ERR_TRANSPORT_NO_PEER', `member ${id} is not a peer of this mesh`);
    return st;
  }

  /**
   * Reserves a staging slot for a message of `len` bytes to `id` and returns a view to fill in
   * place (zero copy); commit() sends it. Null when there is no credit now.
   */
  reserve(id: number, len: number): Buffer | null {
    const st = this.state(id);
    this.checkSendable(st, len);
    if (st.credits === 0 || st.freeStaging.length === 0) return null;
    const slot = st.freeStaging[st.freeStaging.length - 1]!;
    return this.tx.buffer.subarray(slot * this.slotSize, slot * this.slotSize + len);
  }

  /** Sends the slot reserve() returned, with its first `len` bytes. */
  commit(id: number, len: number): void {
    const st = this.state(id);
    assert(st.credits > 0 && st.freeStaging.length > 0, 'commit follows a successful reserve');
    const slot = st.freeStaging.pop()!;
    st.credits--;
    const seq16 = st.sent16;
    st.sent16 = (st.sent16 + 1) & SEQ_MASK;
    this.post(st, slot, len, seq16);
  }

  /** Copies `payload` into a staging slot and sends it; false when there is no credit now. */
  trySend(id: number, payload: Buffer): boolean {
    const view = this.reserve(id, payload.length);
    if (view === null) return false;
    payload.copy(view);
    this.commit(id, payload.length);
    return true;
  }

  /** Resolves when a message to `id` would be accepted (bounded by send_timeout_ms). */
  whenWritable(id: number): Promise<void> {
    const st = this.state(id);
    if (st.failed) return Promise.reject(st.failed);
    if (st.credits > 0 && st.freeStaging.length > 0) return Promise.resolve();
    return this.waitWritable(st);
  }

  /** Sends `payload`, waiting (bounded by send_timeout_ms) for credit. */
  async send(id: number, payload: Buffer): Promise<void> {
    const st = this.state(id);
    this.checkSendable(st, payload.length);
    while (!this.trySend(id, payload)) await this.waitWritable(st);
  }

  private checkSendable(st: PeerState, len: number): void {
    if (this.closed) throw new TempestError('ERR_TRANSPORT_CLOSED', 'the messenger is closed');
    if (st.failed) throw st.failed;
    if (len > this.slotSize) {
      throw new TempestError('ERR_TRANSPORT_MESSAGE_TOO_LARGE', `a message of ${len} bytes exceeds the ${this.slotSize}-byte limit`);
    }
  }

  private waitWritable(st: PeerState): Promise<void> {
    if (st.waiters.length >= this.maxWaiting) {
      return Promise.reject(new TempestError('ERR_TRANSPORT_BACKPRESSURE', `${st.waiters.length} sends already wait for member ${st.peer.id}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = st.waiters.findIndex((w) => w.timer === timer);
        if (i >= 0) st.waiters.splice(i, 1);
        reject(new TempestError('ERR_TRANSPORT_TIMEOUT', `member ${st.peer.id} returned no credit within ${this.sendTimeout_ms} ms`));
      }, this.sendTimeout_ms);
      st.waiters.push({ resolve, reject, timer });
    });
  }

  /** Wakes as many waiting senders as messages can go now; each takes its slot when it runs. */
  private wakeWaiters(st: PeerState): void {
    let room = Math.min(st.credits, st.freeStaging.length);
    while (room-- > 0 && st.waiters.length > 0) {
      const w = st.waiters.shift()!;
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  private dataImmediate(seq16: number): number {
    return immediate(0, (this.mesh.myRank << 16) | seq16);
  }

  private post(st: PeerState, slot: number, len: number, seq16: number): void {
    if (st.retry.length > 0) {
      st.retry.push({ slot, len, seq16 });
      return;
    }
    const fabric = this.mesh.fabric;
    const ok = fabric.send(st.peer.address, this.tx, slot * this.slotSize, len, this.handlerId, slot, this.dataImmediate(seq16));
    if (!ok) {
      st.retry.push({ slot, len, seq16 });
      fabric.whenCapacity(() => this.flushRetries(st));
    }
  }

  private flushRetries(st: PeerState): void {
    const fabric = this.mesh.fabric;
    while (st.retry.length > 0 && !this.closed && st.failed === null) {
      const r = st.retry[0]!;
      if (!fabric.send(st.peer.address, this.tx, r.slot * this.slotSize, r.len, this.handlerId, r.slot, this.dataImmediate(r.seq16))) {
        fabric.whenCapacity(() => this.flushRetries(st));
        return;
      }
      st.retry.shift();
    }
  }

  private repost(slot: number): void {
    if (this.closed) return;
    const fabric = this.mesh.fabric;
    const tag = 0x80000000 | slot;
    if (!fabric.postRecv(this.rx, slot * this.slotSize, this.slotSize, this.handlerId, tag)) {
      fabric.whenCapacity(() => this.repost(slot));
    }
  }

  private completed(kind: CompletionKind, tag: number, len: number, data: number): void {
    if (kind === CompletionKind.Recv) {
      const slot = tag & 0x7fffffff;
      const st = this.byRank[(data >>> 16) & 0xff];
      if (st === undefined) {
        this.repost(slot);
        return;
      }
      const seq16 = data & SEQ_MASK;
      if (seq16 !== st.expect16) {
        const ahead = (seq16 - st.expect16) & SEQ_MASK;
        assert(ahead < this.window, `message ${seq16} from member ${st.peer.id} is within the credit window of ${st.expect16}`);
        const at = seq16 % this.window;
        assert(st.earlySlot[at] === -1, 'one early arrival per window position');
        st.earlySlot[at] = slot;
        st.earlyLen[at] = len;
        return;
      }
      this.deliver(st, slot, len);
      for (let at = st.expect16 % this.window; st.earlySlot[at] !== -1; at = st.expect16 % this.window) {
        const early = st.earlySlot[at]!;
        st.earlySlot[at] = -1;
        this.deliver(st, early, st.earlyLen[at]!);
      }
    } else if (kind === CompletionKind.Send) {
      const st = this.byStagingBlock[Math.floor(tag / this.window)];
      if (st !== undefined) {
        st.freeStaging.push(tag);
        this.wakeWaiters(st);
      }
    } else if (kind === CompletionKind.Write) {
      const st = this.byRank[tag];
      if (st !== undefined) {
        st.creditWriteBusy = false;
        this.maybeReturnCredit(st);
      }
    }
  }

  private deliver(st: PeerState, slot: number, len: number): void {
    st.expect16 = (st.expect16 + 1) & SEQ_MASK;
    const start = slot * this.slotSize;
    this.delivered++;
    try {
      this.onMessage(st.peer.id, this.rx.buffer.subarray(start, start + len));
    } finally {
      this.repost(slot);
      st.consumedFrom++;
      this.maybeReturnCredit(st);
    }
  }

  private failed(kind: CompletionKind, tag: number, err: number, message: string): void {
    if (this.closed) return;
    let st: PeerState | undefined;
    if (kind === CompletionKind.Send) {
      st = this.byStagingBlock[Math.floor(tag / this.window)];
      if (st !== undefined) st.freeStaging.push(tag);
    }
    else if (kind === CompletionKind.Write) st = this.byRank[tag];
    else if (kind === CompletionKind.Recv) {
      this.repost(tag & 0x7fffffff);
      return;
    }
    if (st === undefined || st.failed) return;
    this.markFailed(st, new TempestError('ERR_TRANSPORT_PEER_FAILED', `member ${st.peer.id} is unreachable: ${message} (${err})`));
  }

  /** Fails every pending and future send to `id` (the membership layer calls this on a view change). */
  failPeer(id: number, reason: string): void {
    const st = this.byId.get(id);
    if (st && !st.failed) this.markFailed(st, new TempestError('ERR_TRANSPORT_PEER_FAILED', `member ${id} failed: ${reason}`));
  }

  private markFailed(st: PeerState, err: Error): void {
    st.failed = err;
    st.retry.length = 0;
    for (const w of st.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private maybeReturnCredit(st: PeerState): void {
    const owed = (st.consumedFrom - st.returnedTo) & SEQ_MASK;
    if (owed === 0 || st.creditWriteBusy || st.failed) return;
    if (owed * 2 >= this.window) {
      this.writeCredit(st);
    } else if (this.creditTimer === undefined) {
      // Under half a window: the sender still has credit; return it a little later, in one write.
      this.creditTimer = setTimeout(() => {
        this.creditTimer = undefined;
        for (const s of this.byId.values()) if (!s.creditWriteBusy && !s.failed && s.consumedFrom !== s.returnedTo) this.writeCredit(s);
      }, this.creditDelay_ms);
    }
  }

  private writeCredit(st: PeerState): void {
    if (this.closed) return;
    const remote = st.peer.regions.scratch;
    assert(remote !== undefined, 'peer advertised its scratch region');
    const value = (this.mesh.myRank << 16) | (st.consumedFrom & SEQ_MASK);
    const fabric = this.mesh.fabric;
    if (fabric.write(st.peer.address, this.mesh.scratch, 8, 8, remote, 8, this.handlerId, st.peer.rank, immediate(Service.MessengerCredit, value))) {
      st.creditWriteBusy = true;
      st.returnedTo = st.consumedFrom & SEQ_MASK;
      st.consumedFrom &= SEQ_MASK;
    } else {
      fabric.whenCapacity(() => this.maybeReturnCredit(st));
    }
  }

  private creditReturned(value: number): void {
    const st = this.byRank[(value >>> 16) & 0xff];
    if (st === undefined) return;
    const consumed16 = value & SEQ_MASK;
    const inFlight = (st.sent16 - consumed16) & SEQ_MASK;
    // Credit writes may be overtaken by later ones only if the provider reorders writes, which the
    // endpoint's FI_ORDER_WAW rules out; never let credit go backwards regardless.
    const credits = this.window - inFlight;
    if (credits > st.credits) st.credits = credits;
    assert(st.credits <= this.window, 'credits never exceed the window');
    this.wakeWaiters(st);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.creditTimer !== undefined) clearTimeout(this.creditTimer);
    for (const st of this.byId.values()) {
      for (const w of st.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new TempestError('ERR_TRANSPORT_CLOSED', 'the messenger is closed'));
      }
    }
  }
}
