/**
 * SMC, the small-message multicast (DESIGN §5): every member keeps one ring per sender in a
 * registered region; a sender writes its records into its own ring and RMA-writes the same bytes
 * into the same place in every receiver's ring. A run of consecutive records goes as one write
 * whose immediate data names the sender and the last record's number (mod 2^16), which wakes the
 * receiver. The endpoint orders writes after writes (FI_ORDER_WAW), so when a write's completion
 * arrives every earlier record of that sender has landed too, whatever order completions come in.
 *
 * This file moves bytes only; which k a record gets, when a sender may write and when a record
 * may be overwritten are decided by the ordering core (window) and the group.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { type CompletionHandler, type Fabric, immediate, type MemoryRegion } from '../transport/fabric.js';
import type { MeshView, Peer } from '../transport/peer-mesh.js';
import { RECORD_HEADER_BYTES, type RecordKind, type RingLayout, RingSpace } from './smc-ring.js';

/** Writes in flight to one receiver; more records wait and go together in the next write. */
const MAX_WRITES_IN_FLIGHT = 2;
/** Delay before writing again to a member whose write failed (its connection is being re-made). */
const WRITE_RETRY_MS = 50;
/** Largest single write, so one receiver is not starved while a long run goes to another. */
const MAX_BATCH_BYTES = 256 * 1024;
const SEQ_MASK = 0xffff;
/**
 * A receiver whose table row has not counted our records for this long, though every write to it
 * completed, may have missed a wake-up (a write that landed before it listened on this view's
 * channel): its live records are written again. Repeats are harmless (the receiver skips what it
 * parsed), so a record that did land but waits for its RDMC body costs one small write.
 */
const RESEND_UNACKNOWLEDGED_MS = 500;

export interface SmcOptions {
  fabric: Fabric;
  mesh: MeshView;
  /** Our registered copy of every sender's ring (S rings of layout.ringBytes). */
  region: MemoryRegion;
  /** Name of the region in peers' hellos. */
  regionName: string;
  layout: RingLayout;
  senderCount: number;
  /** Our sender index, or -1. */
  mySender: number;
  /** Member ranks that receive (every member but us). */
  targets: readonly number[];
  /** Remote-write service id of this channel. */
  service: number;
  /** More records of some sender are readable here (see landedCount). */
  onLanded: () => void;
  /** Writes to the member at `rank` have failed for `peer_error_grace_ms`: its connection is gone. */
  onPeerError?: (rank: number, message: string) => void;
  peer_error_grace_ms?: number;
  log: Logger;
}

interface Target {
  peer: Peer;
  /** Next record number to write to this target. */
  postedK: number;
  inFlight: number;
  /** A write failed: writes resume (from the oldest live record) when `retry` fires. */
  failed: boolean;
  retry: NodeJS.Timeout | undefined;
  /** When writes to this member began failing (0: the last one succeeded). */
  failingSince_ms: number;
  /** Our records its table row last counted, and since when (resendUnacknowledged). */
  acknowledged: number;
  acknowledgedSince_ms: number;
}

export class SmcChannel {
  readonly layout: RingLayout;
  private readonly fabric: Fabric;
  private readonly region: MemoryRegion;
  private readonly regionName: string;
  private readonly S: number;
  private readonly mySender: number;
  private readonly service: number;
  private readonly window: number;
  private readonly handlerId: number;
  private readonly targets: Target[] = [];
  private readonly targetByRank: (Target | undefined)[] = [];
  private readonly onLanded: SmcOptions['onLanded'];
  private readonly peerErrorGrace_ms: number;
  private readonly log: Logger;
  /** Our own ring's live records (sender side). */
  private readonly space: RingSpace;
  /** Records we have committed. */
  private committed = 0;
  /** Offset reserve() handed out and commit() will use; -1 when none. */
  private reservedAt = -1;
  /** Per sender s, for records landed here and not yet released: offset, payload length, kind. */
  private readonly recOffset: Float64Array;
  private readonly recLength: Float64Array;
  private readonly recKind: Uint8Array;
  /** Per sender: records parsed so far and where the next one starts. */
  private readonly landed: Float64Array;
  private readonly readOffset: Float64Array;
  private pumpScheduled = false;
  private sendingStopped = false;
  private closed = false;

  constructor(opts: SmcOptions) {
    this.fabric = opts.fabric;
    this.region = opts.region;
    this.regionName = opts.regionName;
    this.layout = opts.layout;
    this.S = opts.senderCount;
    this.mySender = opts.mySender;
    this.service = opts.service;
    this.window = opts.layout.window;
    this.onLanded = opts.onLanded;
    this.peerErrorGrace_ms = opts.peer_error_grace_ms ?? 0;
    this.log = opts.log;
    assert(this.region.length >= this.S * this.layout.ringBytes, 'the region holds every ring');
    this.space = new RingSpace(this.layout, this.window);
    this.recOffset = new Float64Array(this.S * this.window);
    this.recLength = new Float64Array(this.S * this.window);
    this.recKind = new Uint8Array(this.S * this.window);
    this.landed = new Float64Array(this.S);
    this.readOffset = new Float64Array(this.S);
    for (const rank of opts.targets) {
      const peer = opts.mesh.peerByRank(rank);
      // A member that never answered the view's hello: it will be suspected; nothing goes to it.
      if (peer === undefined) continue;
      const remote = peer.regions[this.regionName];
      if (remote === undefined || remote.length !== this.region.length) {
        throw new TempestError(
          'ERR_MULTICAST_CONFIG_MISMATCH',
          `member ${peer.id} has ${remote === undefined ? 'no' : `a ${remote.length}-byte`} SMC region "${this.regionName}", this member ${this.region.length} bytes: window_size, max_smc_payload_size or the senders differ`,
        );
      }
      const t: Target = { peer, postedK: 0, inFlight: 0, failed: false, retry: undefined, failingSince_ms: 0, acknowledged: 0, acknowledgedSince_ms: 0 };
      this.targets.push(t);
      this.targetByRank[rank] = t;
    }
    const handler: CompletionHandler = {
      onCompletion: (_kind, tag) => this.written(tag),
      onError: (_kind, tag, err, message) => {
        const t = this.targetByRank[tag];
        if (t === undefined) return;
        t.inFlight--;
        // Which records of the batch landed is unknown: once the connection is back, every live
        // record is written again. Only live records: their place in the ring is not reused
        // before every member has delivered them, so a repeat lands the same bytes where they
        // were. Failing for longer than the grace, the member is reported (and suspected).
        t.postedK = Math.min(t.postedK, this.space.oldestLive);
        const now = performance.now();
        if (t.failingSince_ms === 0) {
          t.failingSince_ms = now;
          this.log.warn({ member: t.peer.id, err, message }, 'SMC write failed; writing the live records again shortly');
        }
        if (now - t.failingSince_ms >= this.peerErrorGrace_ms) opts.onPeerError?.(tag, message);
        if (t.retry === undefined && !this.closed) {
          t.failed = true;
          t.retry = setTimeout(() => {
            t.retry = undefined;
            t.failed = false;
            this.postTo(t);
          }, WRITE_RETRY_MS);
        }
      },
    };
    this.handlerId = this.fabric.addHandler(handler);
    this.fabric.onRemoteWrite(this.service, (value) => this.arrived(value));
  }

  private ringBase(s: number): number {
    return s * this.layout.ringBytes;
  }

  // ---- sender side ---------------------------------------------------------------------------

  /**
   * A view of the next record's payload area in our ring, to fill in place; null when the ring
   * has no room yet (records not yet delivered everywhere).
   */
  reserve(payloadBytes: number): Buffer | null {
    assert(this.mySender >= 0, 'only senders reserve');
    assert(this.reservedAt < 0, 'one reservation at a time');
    assert(payloadBytes <= this.layout.maxPayloadBytes, 'payload within the SMC limit');
    const at = this.space.fit(this.layout.recordBytes(payloadBytes));
    if (at < 0) return null;
    this.reservedAt = at;
    const start = this.ringBase(this.mySender) + at + RECORD_HEADER_BYTES;
    return this.region.buffer.subarray(start, start + payloadBytes);
  }

  /** Seals the reserved record as message k and sends it to every target. */
  commit(k: number, kind: RecordKind, payloadBytes: number): void {
    assert(this.reservedAt >= 0, 'commit follows reserve');
    assert(k === this.committed, 'records are committed in order');
    const at = this.reservedAt;
    this.reservedAt = -1;
    const buf = this.region.buffer;
    const h = this.ringBase(this.mySender) + at;
    buf.writeUInt32LE(payloadBytes, h);
    buf[h + 4] = kind;
    buf.writeDoubleLE(k, h + 8);
    this.space.append(k, at, this.layout.recordBytes(payloadBytes));
    const slot = this.mySender * this.window + (k % this.window);
    this.recOffset[slot] = at;
    this.recLength[slot] = payloadBytes;
    this.recKind[slot] = kind;
    this.committed++;
    this.schedulePump();
  }

  /** Abandons an open reservation (nothing was sent). */
  cancelReservation(): void {
    this.reservedAt = -1;
  }

  /** Our records below k are delivered everywhere: their bytes may be reused. */
  freeBelow(k: number): void {
    this.space.freeBelow(k);
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    // After the current batch of work: records committed meanwhile go in the same write.
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Posts no more writes (the view is wedged); committed records stay readable for resending. */
  stopSending(): void {
    this.sendingStopped = true;
  }

  private pump(): void {
    if (this.closed || this.sendingStopped) return;
    for (const t of this.targets) this.postTo(t);
  }

  private postTo(t: Target): void {
    const base = this.ringBase(this.mySender);
    if (t.postedK < this.space.oldestLive) t.postedK = this.space.oldestLive;
    while (!t.failed && !this.sendingStopped && t.inFlight < MAX_WRITES_IN_FLIGHT && t.postedK < this.committed) {
      const k0 = t.postedK;
      const start = this.space.offsetOf(k0);
      let end = start + this.space.sizeOf(k0);
      let k = k0 + 1;
      while (k < this.committed && this.space.offsetOf(k) === end && end - start + this.space.sizeOf(k) <= MAX_BATCH_BYTES) {
        end += this.space.sizeOf(k);
        k++;
      }
      const remote = t.peer.regions[this.regionName]!;
      const imm = immediate(this.service, (this.mySender << 16) | ((k - 1) & SEQ_MASK));
      if (!this.fabric.write(t.peer.address, this.region, base + start, end - start, remote, base + start, this.handlerId, t.peer.rank, imm)) {
        this.fabric.whenCapacity(() => this.postTo(t));
        return;
      }
      t.postedK = k;
      t.inFlight++;
    }
  }

  /**
   * The member at `rank` counts `received` of our records (its table row). When that has not
   * moved for RESEND_UNACKNOWLEDGED_MS while records we wrote to it are uncounted and no write
   * is in flight, its wake-up for them was lost: they are written again, from the first it lacks.
   */
  resendUnacknowledged(rank: number, received: number, now_ms: number): void {
    const t = this.targetByRank[rank];
    if (t === undefined || this.closed || this.sendingStopped) return;
    if (received !== t.acknowledged || t.acknowledgedSince_ms === 0) {
      t.acknowledged = received;
      t.acknowledgedSince_ms = now_ms;
      return;
    }
    if (received >= t.postedK || t.inFlight > 0 || t.failed || now_ms - t.acknowledgedSince_ms < RESEND_UNACKNOWLEDGED_MS) return;
    // Debug, not warn: a receiver also leaves a large message uncounted until its RDMC body is
    // in, so under load this repeats a record that did land (harmless, and rare).
    this.log.debug({ member: t.peer.id, received, written: t.postedK }, 'SMC records written but not counted by a member: writing them again');
    t.acknowledgedSince_ms = now_ms;
    t.postedK = Math.max(received, this.space.oldestLive);
    this.postTo(t);
  }

  private written(rank: number): void {
    const t = this.targetByRank[rank];
    if (t === undefined) return;
    t.inFlight--;
    t.failingSince_ms = 0;
    this.postTo(t);
  }

  // ---- receiver side -------------------------------------------------------------------------

  private arrived(value24: number): void {
    const s = (value24 >>> 16) & 0xff;
    if (s >= this.S || s === this.mySender || this.closed) return;
    const landed = this.landed[s]!;
    const ahead = ((value24 & SEQ_MASK) - landed) & SEQ_MASK;
    // A write whose records we already parsed (its completion overtaken by a later one's).
    if (ahead >= 0x8000) return;
    assert(ahead < this.window, `sender ${s} wrote record ${landed + ahead} beyond the window`);
    const buf = this.region.buffer;
    const base = this.ringBase(s);
    let off = this.readOffset[s]!;
    for (let k = landed; k <= landed + ahead; k++) {
      const at = this.layout.place(off);
      const h = base + at;
      const len = buf.readUInt32LE(h);
      const kind = buf[h + 4]!;
      assert(buf.readDoubleLE(h + 8) === k && len <= this.layout.maxPayloadBytes, `record ${k} of sender ${s} is where the ring says`);
      const slot = s * this.window + (k % this.window);
      this.recOffset[slot] = at;
      this.recLength[slot] = len;
      this.recKind[slot] = kind;
      off = at + this.layout.recordBytes(len);
    }
    this.readOffset[s] = off;
    this.landed[s] = landed + ahead + 1;
    this.onLanded();
  }

  /** Records of sender s readable here (for our own: committed). */
  landedCount(s: number): number {
    return s === this.mySender ? this.committed : this.landed[s]!;
  }

  kind(s: number, k: number): RecordKind {
    return this.recKind[s * this.window + (k % this.window)]! as RecordKind;
  }

  /** The payload of record k of sender s, as a view of the ring (valid until it is delivered). */
  payload(s: number, k: number): Buffer {
    const slot = s * this.window + (k % this.window);
    const start = this.ringBase(s) + this.recOffset[slot]! + RECORD_HEADER_BYTES;
    return this.region.buffer.subarray(start, start + this.recLength[slot]!);
  }

  /** The size an RDMC descriptor record announces. */
  rdmcSize(s: number, k: number): number {
    const slot = s * this.window + (k % this.window);
    return this.region.buffer.readDoubleLE(this.ringBase(s) + this.recOffset[slot]! + RECORD_HEADER_BYTES);
  }

  /** Stops; frees the service id and the completion handler for the next view's channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.targets) if (t.retry !== undefined) clearTimeout(t.retry);
    this.fabric.offRemoteWrite(this.service);
    this.fabric.removeHandler(this.handlerId);
  }
}
