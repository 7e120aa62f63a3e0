/**
 * One shard's multicast (DESIGN §5): the ordering core wired to SMC for small messages, RDMC for
 * large ones, and the shared state table for received/delivered counters and RDMC readiness.
 *
 * Every message of a sender takes the next record in its SMC ring; a large message's record is
 * a descriptor (its size) and its bytes come by RDMC into a buffer the layer above supplies. A
 * message is wholly here when its record has landed and, if large, every block has; the core
 * learns of messages in FIFO order per sender, decides when they are stable, and they are
 * delivered in the core's order with a view of the bytes where they landed (no copy).
 *
 * All work happens in one pump, run once per batch of events (a microtask), so a burst of
 * completions costs one pass and one table push.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { ColumnLayout, ColumnSpec } from '../sst/layout.js';
import type { PredicateHandle } from '../sst/predicates.js';
import type { SharedStateTable } from '../sst/table.js';
import type { Fabric, MemoryRegion } from '../transport/fabric.js';
import type { MeshView } from '../transport/peer-mesh.js';
import { Service } from '../transport/services.js';
import { type RdmcBuffer, type RdmcBufferSupplier, SlabBufferPool } from './buffer-pool.js';
import { type DeliveryMode, OrderingCore } from './ordering.js';
import { RdmcChannel } from './rdmc.js';
import { RDMC_ALGORITHMS, type RdmcAlgorithm } from './rdmc-schedule.js';
import { SmcChannel } from './smc.js';
import { RDMC_DESCRIPTOR_BYTES, RecordKind, RingLayout } from './smc-ring.js';
import { copyPieces, piecesLength } from '../util/pieces.js';

export interface MulticastSettings {
  /** Names this group's table columns and memory region (unique per member). */
  name: string;
  /** Member ids that send, a subset of the members. */
  senders: readonly number[];
  mode: DeliveryMode;
  max_payload_size: number;
  max_smc_payload_size: number;
  block_size: number;
  window_size: number;
  rdmc_send_algorithm: string;
}

/** What a group runs on: a Member, or one shard of a view (membership/view-instance.ts). */
export interface MulticastHost {
  fabric: Fabric;
  mesh: MeshView;
  sst: SharedStateTable;
  regions: Record<string, MemoryRegion>;
}

export interface MulticastOptions extends MulticastSettings {
  member: MulticastHost;
  /** Longest a send waits for room in the window before failing, ms. */
  send_timeout_ms: number;
  /** Queued sends allowed before send() fails fast. */
  max_queued_sends?: number;
  /** Registered buffers for large messages; default: a slab with two max-size buffers per sender. */
  buffers?: RdmcBufferSupplier;
  /** Remote-write service ids of this group's SMC and RDMC traffic. */
  services?: { smc: number; rdmc: number };
  /** Writes to member `id` failed (small messages: for longer than the grace): its connection is gone. */
  onPeerError?: (id: number, message: string) => void;
  peer_error_grace_ms?: number;
  log: Logger;
}

/** Called in delivery order; `payload` is a view valid until the call returns. */
export type DeliveryHandler = (senderId: number, index: number, payload: Buffer) => void;

/** The table columns and the memory region a group needs, declared before the member connects. */
export interface MulticastPlan {
  columns: ColumnSpec[];
  regionSizes: Record<string, number>;
}

const MAX_BLOCKS = 65536;
/** Longest a change in our delivered counters waits to ride along with another push. */
const DELIVERED_PUSH_DELAY_MS = 1;

function columnNames(name: string) {
  return {
    received: `${name}.received`,
    delivered: `${name}.delivered`,
    progressGroup: `${name}.progress`,
    rdmc: { ready: `${name}.rdmc_ready`, base: `${name}.rdmc_base`, key: `${name}.rdmc_key`, group: `${name}.rdmc` },
    region: `${name}.smc`,
    settings: `${name}.settings`,
  };
}

/** Settings every member of a group must share, in the order of the settings column. */
const SHARED_SETTINGS = ['mode', 'senders', 'max_payload_size', 'max_smc_payload_size', 'block_size', 'window_size', 'rdmc_send_algorithm'] as const;

/** The shared settings as table values (never 0, so 0 means "not published yet"). */
function settingsValues(s: MulticastSettings): number[] {
  let senders = 1;
  for (const id of s.senders) senders = (senders * 1031 + id + 1) % 2 ** 48;
  return [
    s.mode === 'ordered' ? 1 : 2,
    senders + 1,
    s.max_payload_size,
    s.max_smc_payload_size,
    s.block_size,
    s.window_size,
    RDMC_ALGORITHMS.indexOf(s.rdmc_send_algorithm as RdmcAlgorithm) + 1,
  ];
}

/** Checks the settings and says what the group needs from its member. */
export function multicastPlan(s: MulticastSettings): MulticastPlan {
  const S = s.senders.length;
  if (S < 1 || S > 255) throw new TempestError('ERR_MULTICAST_CONFIG', `a group has 1..255 senders, not ${S}`);
  if (!RDMC_ALGORITHMS.includes(s.rdmc_send_algorithm as RdmcAlgorithm)) {
    throw new TempestError('ERR_MULTICAST_CONFIG', `rdmc_send_algorithm must be one of ${RDMC_ALGORITHMS.join(', ')}, not "${s.rdmc_send_algorithm}"`);
  }
  if (s.max_smc_payload_size < RDMC_DESCRIPTOR_BYTES || s.max_smc_payload_size > s.max_payload_size) {
    throw new TempestError('ERR_MULTICAST_CONFIG', `max_smc_payload_size must be ${RDMC_DESCRIPTOR_BYTES}..max_payload_size, not ${s.max_smc_payload_size}`);
  }
  if (Math.ceil(s.max_payload_size / s.block_size) > MAX_BLOCKS) {
    throw new TempestError(
      'ERR_MULTICAST_CONFIG',
      `max_payload_size / block_size is ${Math.ceil(s.max_payload_size / s.block_size)} blocks; RDMC allows ${MAX_BLOCKS}: raise block_size`,
    );
  }
  if (s.window_size < 1 || s.window_size > 32768) throw new TempestError('ERR_MULTICAST_CONFIG', `window_size must be 1..32768 for multicast, not ${s.window_size}`);
  const names = columnNames(s.name);
  const layout = new RingLayout(s.max_smc_payload_size, s.window_size);
  return {
    columns: [
      { name: names.received, type: 'i64', count: S, group: names.progressGroup },
      { name: names.delivered, type: 'i64', count: S, group: names.progressGroup },
      { name: names.rdmc.ready, type: 'i64', count: S, group: names.rdmc.group },
      { name: names.rdmc.base, type: 'i64', count: S, group: names.rdmc.group },
      { name: names.rdmc.key, type: 'i64', count: S, group: names.rdmc.group },
      { name: names.settings, type: 'i64', count: SHARED_SETTINGS.length, group: names.settings },
    ],
    regionSizes: { [names.region]: S * layout.ringBytes },
  };
}

interface QueuedSend {
  size_bytes: number;
  /** Bytes to copy in (whole or in pieces, kept unchanged until sent), or null for a reservation the caller fills. */
  payload: Buffer | readonly Buffer[] | null;
  resolve: (v: { index: number; view: Buffer | null }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

interface OpenReservation {
  size_bytes: number;
  rdmc: RdmcBuffer | null;
}

export class MulticastGroup {
  readonly name: string;
  readonly core: OrderingCore;
  readonly senderIds: readonly number[];
  readonly memberIds: readonly number[];
  private readonly member: MulticastHost;
  private readonly smc: SmcChannel;
  private readonly rdmc: RdmcChannel;
  private readonly buffers: RdmcBufferSupplier;
  private readonly ownsBuffers: boolean;
  private readonly names: ReturnType<typeof columnNames>;
  private readonly receivedColumn: ColumnLayout;
  private readonly deliveredColumn: ColumnLayout;
  private readonly S: number;
  private readonly W: number;
  private readonly mySender: number;
  private readonly maxSmc: number;
  private readonly maxPayload: number;
  private readonly sendTimeout_ms: number;
  private readonly maxQueued: number;
  private readonly log: Logger;
  /** Per other sender: messages wholly here, in order (the core has been told of each). */
  private readonly complete: Float64Array;
  /** Per (sender, k mod window): the RDMC buffer of a large message, and whether its body is here. */
  private readonly rdmcBuf: (RdmcBuffer | null)[];
  private readonly bodyHere: Uint8Array;
  /** Per sender: a buffer is being waited for (pool exhausted). */
  private readonly awaitingBuffer: Uint8Array;
  /** Values of our row last written to the table: received, then delivered, per sender. */
  private readonly published: Float64Array;
  /** Delivered counts as of our last push, the timer of a deferred push, and when not to defer. */
  private readonly deliveredPushed: Float64Array;
  private deliveredTimer: NodeJS.Timeout | undefined;
  private readonly urgentDelivered: number;
  /**
   * Our own large messages delivered here whose buffers are still being read by our RDMC sends
   * (raw mode delivers our own message at once): released once every member has received them.
   */
  private readonly ownDelivered: { k: number; buffer: RdmcBuffer }[] = [];
  private readonly queue: QueuedSend[] = [];
  private reservation: OpenReservation | null = null;
  private onDeliver: DeliveryHandler = () => {};
  private pumpScheduled = false;
  private pumping = false;
  private tableChanged = true;
  private readonly predicate: PredicateHandle;
  private readonly settingsValues: number[];
  private closed = false;
  /** The view is ending: no sends go out, arrivals are no longer counted, delivery waits for the trim. */
  private wedged = false;
  /** A joiner holds deliveries until the shard's state has arrived. */
  private held = false;
  /** Nulls sent by us (the price of idle turns; tests check idle senders send them). */
  nullsSent = 0;

  constructor(opts: MulticastOptions) {
    multicastPlan(opts); // validates the settings (the member was started with its plan)
    const member = opts.member;
    this.member = member;
    this.log = opts.log;
    this.name = opts.name;
    this.names = columnNames(opts.name);
    this.receivedColumn = member.sst.column(this.names.received);
    this.deliveredColumn = member.sst.column(this.names.delivered);
    this.memberIds = member.mesh.members.map((m) => m.id);
    this.senderIds = [...opts.senders];
    const senderRanks = opts.senders.map((id) => {
      const r = this.memberIds.indexOf(id);
      if (r < 0) throw new TempestError('ERR_MULTICAST_CONFIG', `sender ${id} is not a member of the group`);
      return r;
    });
    const n = this.memberIds.length;
    this.S = senderRanks.length;
    this.W = opts.window_size;
    this.maxSmc = opts.max_smc_payload_size;
    this.maxPayload = opts.max_payload_size;
    this.sendTimeout_ms = opts.send_timeout_ms;
    this.maxQueued = opts.max_queued_sends ?? 4 * this.W;
    this.core = new OrderingCore({ members: n, senders: senderRanks, myRank: member.mesh.myRank, window: this.W, mode: opts.mode });
    this.mySender = this.core.mySender;
    this.complete = new Float64Array(this.S);
    this.rdmcBuf = new Array(this.S * this.W).fill(null);
    this.bodyHere = new Uint8Array(this.S * this.W);
    this.awaitingBuffer = new Uint8Array(this.S);
    this.published = new Float64Array(2 * this.S).fill(-1);
    this.deliveredPushed = new Float64Array(this.S);
    this.urgentDelivered = Math.max(1, Math.floor(this.W / 4));
    this.ownsBuffers = opts.buffers === undefined;
    this.buffers = opts.buffers ?? new SlabBufferPool(member.fabric, this.senderIds, 2, opts.max_payload_size);
    const services = opts.services ?? { smc: Service.Smc, rdmc: Service.Rdmc };
    const region = member.regions[this.names.region];
    if (region === undefined) throw new TempestError('ERR_MULTICAST_CONFIG', `the member has no "${this.names.region}" region: start it with multicastPlan()`);
    const targets: number[] = [];
    for (let r = 0; r < n; r++) if (r !== member.mesh.myRank) targets.push(r);
    this.smc = new SmcChannel({
      fabric: member.fabric,
      mesh: member.mesh,
      region,
      regionName: this.names.region,
      layout: new RingLayout(opts.max_smc_payload_size, this.W),
      senderCount: this.S,
      mySender: this.mySender,
      targets,
      service: services.smc,
      onLanded: () => this.schedule(),
      onPeerError: (rank, message) => opts.onPeerError?.(this.memberIds[rank]!, message),
      peer_error_grace_ms: opts.peer_error_grace_ms,
      log: opts.log,
    });
    this.rdmc = new RdmcChannel({
      fabric: member.fabric,
      mesh: member.mesh,
      sst: member.sst,
      columns: this.names.rdmc,
      members: n,
      senders: senderRanks,
      myRank: member.mesh.myRank,
      algorithm: opts.rdmc_send_algorithm as RdmcAlgorithm,
      block_size: opts.block_size,
      max_blocks: Math.ceil(opts.max_payload_size / opts.block_size),
      service: services.rdmc,
      onBody: (s, k) => {
        this.bodyHere[s * this.W + (k % this.W)] = 1;
        this.schedule();
      },
      onIdle: () => this.schedule(),
      onPeerError: (rank, message) => opts.onPeerError?.(this.memberIds[rank]!, message),
      log: opts.log,
    });
    // Peers' rows changed (or ours): absorb their counters and move on. Runs once per burst.
    this.predicate = member.sst.predicate({
      name: `${opts.name}: multicast progress`,
      kind: 'recurrent',
      test: () => true,
      trigger: () => {
        this.tableChanged = true;
        this.rdmc.pumpAll();
        this.schedule();
      },
    });
    const values = settingsValues(opts);
    this.settingsValues = values;
    values.forEach((v, i) => member.sst.set(this.names.settings, v, i));
    member.sst.push(this.names.settings);
    this.schedule();
  }

  /**
   * Creates the group and waits (bounded) until every member has published the same shared
   * settings: a member started with, say, another block_size would misread every RDMC message.
   */
  static async start(opts: MulticastOptions & { start_timeout_ms?: number }): Promise<MulticastGroup> {
    const group = new MulticastGroup(opts);
    try {
      await group.agreeOnSettings(opts.start_timeout_ms ?? 30_000);
      return group;
    } catch (err) {
      group.close();
      throw err;
    }
  }

  /**
   * Resolves once every member published the same shared settings (start() waits for it; a view
   * creates its groups at once, so that no delivery or wedge finds a group missing, and waits for
   * this before sending).
   */
  agreeOnSettings(timeout_ms: number): Promise<void> {
    const sst = this.member.sst;
    const column = sst.column(this.names.settings);
    const me = this.core.myRank;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        handle.remove();
        const missing = this.memberIds.filter((_, r) => sst.get(r, column, 0) === 0);
        reject(new TempestError('ERR_MULTICAST_START_TIMEOUT', `member(s) ${missing.join(', ')} did not start group "${this.name}" within ${timeout_ms} ms`));
      }, timeout_ms);
      const handle = sst.predicate({
        name: 'multicast settings published',
        kind: 'once',
        test: (t) => this.memberIds.every((_, r) => t.get(r, column, 0) !== 0),
        trigger: (t) => {
          clearTimeout(timer);
          for (let r = 0; r < this.memberIds.length; r++) {
            if (r === me) continue;
            for (let i = 0; i < SHARED_SETTINGS.length; i++) {
              if (t.get(r, column, i) !== this.settingsValues[i]) {
                reject(
                  new TempestError(
                    'ERR_MULTICAST_CONFIG_MISMATCH',
                    `member ${this.memberIds[r]} runs this group with a different ${SHARED_SETTINGS[i]} than member ${this.memberIds[me]}: every member must use the same settings`,
                  ),
                );
                return;
              }
            }
          }
          resolve();
        },
      });
    });
  }

  /** Sets the delivery upcall (one per group). */
  handle(onDeliver: DeliveryHandler): void {
    this.onDeliver = onDeliver;
  }

  get isSender(): boolean {
    return this.mySender >= 0;
  }

  // ---- sending -------------------------------------------------------------------------------

  private checkSend(size_bytes: number): void {
    if (this.closed) throw new TempestError('ERR_MULTICAST_CLOSED', 'the multicast group is closed');
    if (this.wedged) throw new TempestError('ERR_MULTICAST_WEDGED', 'the view is changing; send again in the next view');
    if (this.mySender < 0) throw new TempestError('ERR_MULTICAST_NOT_SENDER', `member ${this.member.mesh.self.id} is not a sender of this group`);
    if (!Number.isInteger(size_bytes) || size_bytes < 0 || size_bytes > this.maxPayload) {
      throw new TempestError('ERR_MULTICAST_TOO_LARGE', `a message of ${size_bytes} bytes exceeds max_payload_size (${this.maxPayload} bytes)`);
    }
  }

  /**
   * Sends a copy of `payload` if there is room now; returns its index (global in ordered mode,
   * the sender's k in raw mode) or -1 when the window, the ring or the buffers are full.
   */
  trySend(payload: Buffer): number {
    this.checkSend(payload.length);
    if (this.queue.length > 0 || this.reservation !== null) return -1;
    const view = this.reserveNow(payload.length);
    if (view === null) return -1;
    payload.copy(view);
    return this.commit();
  }

  /**
   * Sends a copy of `payload`, waiting (bounded) for room; resolves with its index once in flight.
   * Given in pieces, the message is their concatenation, copied straight into the ring or the
   * registered buffer; the pieces must stay unchanged until this resolves.
   */
  async send(payload: Buffer | readonly Buffer[]): Promise<number> {
    const size_bytes = piecesLength(payload);
    this.checkSend(size_bytes);
    const r = await this.enqueue(size_bytes, payload);
    return r.index;
  }

  /**
   * Zero-copy send: resolves with a view of `size_bytes` to fill in place (in the SMC ring or a
   * registered RDMC buffer); commit() then sends it. One reservation is open at a time; sends
   * queue behind it.
   */
  async reserve(size_bytes: number): Promise<Buffer> {
    this.checkSend(size_bytes);
    const r = await this.enqueue(size_bytes, null);
    return r.view!;
  }

  private enqueue(size_bytes: number, payload: Buffer | readonly Buffer[] | null): Promise<{ index: number; view: Buffer | null }> {
    if (this.queue.length >= this.maxQueued) {
      return Promise.reject(new TempestError('ERR_MULTICAST_BACKPRESSURE', `${this.queue.length} sends already wait for room in the window`));
    }
    return new Promise((resolve, reject) => {
      const q: QueuedSend = { size_bytes, payload, resolve, reject, timer: undefined };
      q.timer = setTimeout(() => {
        const i = this.queue.indexOf(q);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new TempestError('ERR_MULTICAST_TIMEOUT', `no room in the window within ${this.sendTimeout_ms} ms (are all members alive?)`));
      }, this.sendTimeout_ms);
      this.queue.push(q);
      this.schedule();
    });
  }

  /**
   * Zero-copy send without waiting: a view of `size_bytes` to fill in place, then commit(); null
   * when there is no room now (or sends are queued, which go first).
   */
  tryReserve(size_bytes: number): Buffer | null {
    this.checkSend(size_bytes);
    if (this.queue.length > 0 || this.reservation !== null) return null;
    return this.reserveNow(size_bytes);
  }

  /** Room for one message of `size_bytes` now: a view to fill, with the reservation open. */
  private reserveNow(size_bytes: number): Buffer | null {
    if (!this.core.canSend()) return null;
    const large = size_bytes > this.maxSmc;
    const view = this.smc.reserve(large ? RDMC_DESCRIPTOR_BYTES : size_bytes);
    if (view === null) return null;
    if (!large) {
      this.reservation = { size_bytes, rdmc: null };
      return view;
    }
    const buffer = this.buffers.acquire(size_bytes, this.member.mesh.self.id);
    if (buffer === null) {
      this.smc.cancelReservation();
      this.buffers.whenReleased(() => this.schedule());
      return null;
    }
    view.writeDoubleLE(size_bytes, 0);
    this.reservation = { size_bytes, rdmc: buffer };
    return buffer.region.buffer.subarray(buffer.offset, buffer.offset + size_bytes);
  }

  /** Sends the open reservation; returns its index. */
  commit(): number {
    const r = this.reservation;
    if (r === null) throw new TempestError('ERR_MULTICAST_NO_RESERVATION', 'commit() needs an open reservation');
    this.reservation = null;
    const k = this.core.sent();
    const slot = this.mySender * this.W + (k % this.W);
    if (r.rdmc === null) {
      this.smc.commit(k, RecordKind.Data, r.size_bytes);
    } else {
      this.smc.commit(k, RecordKind.Rdmc, RDMC_DESCRIPTOR_BYTES);
      this.rdmcBuf[slot] = r.rdmc;
      this.bodyHere[slot] = 1;
      // Committed after the wedge (an open reservation): kept for the resend in the next view.
      if (!this.wedged) this.rdmc.send(k, r.rdmc, r.size_bytes);
    }
    this.schedule();
    return this.core.mode === 'raw' ? k : k * this.S + this.mySender;
  }

  // ---- the pump ------------------------------------------------------------------------------

  private schedule(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.closed || this.pumping) return;
    this.pumping = true;
    try {
      if (this.wedged) return;
      if (this.tableChanged) this.absorbTable();
      this.advanceArrivals();
      if (!this.held) this.deliver();
      if (this.mySender >= 0) {
        this.smc.freeBelow(this.core.minDelivered(this.mySender));
        this.releaseOwnBuffers();
        this.serveQueue();
        this.sendNulls();
        const now_ms = performance.now();
        for (let r = 0; r < this.core.members; r++) if (r !== this.core.myRank) this.smc.resendUnacknowledged(r, this.core.receivedAt(r, this.mySender), now_ms);
      }
      this.publish();
    } finally {
      this.pumping = false;
    }
  }

  private absorbTable(): void {
    this.tableChanged = false;
    const sst = this.member.sst;
    const me = this.core.myRank;
    for (let r = 0; r < this.core.members; r++) {
      if (r === me) continue;
      for (let s = 0; s < this.S; s++) {
        this.core.peerReceived(r, s, sst.get(r, this.receivedColumn, s));
        this.core.peerDelivered(r, s, sst.get(r, this.deliveredColumn, s));
      }
    }
  }

  /** Tells the core of every message now wholly here, in order per sender. */
  private advanceArrivals(): void {
    for (let s = 0; s < this.S; s++) {
      if (s === this.mySender) continue;
      const landed = this.smc.landedCount(s);
      while (this.complete[s]! < landed) {
        const k = this.complete[s]!;
        if (this.smc.kind(s, k) === RecordKind.Rdmc && this.bodyHere[s * this.W + (k % this.W)] === 0) {
          this.startReceive(s, k);
          break;
        }
        this.complete[s] = k + 1;
        this.core.received(s);
      }
    }
  }

  private startReceive(s: number, k: number): void {
    const slot = s * this.W + (k % this.W);
    if (this.rdmcBuf[slot] !== null || !this.rdmc.idle(s) || this.awaitingBuffer[s]) return;
    const size_bytes = this.smc.rdmcSize(s, k);
    const buffer = this.buffers.acquire(size_bytes, this.senderIds[s]!);
    if (buffer === null) {
      this.awaitingBuffer[s] = 1;
      this.buffers.whenReleased(() => {
        this.awaitingBuffer[s] = 0;
        this.schedule();
      });
      return;
    }
    this.rdmcBuf[slot] = buffer;
    this.rdmc.receive(s, k, buffer, size_bytes);
  }

  private deliver(): void {
    const core = this.core;
    for (let s = core.nextDeliverable(); s >= 0; s = core.nextDeliverable()) {
      this.deliverOne(s);
      core.delivered(s);
    }
  }

  /** Runs the upcall for the next message of sender s (none for a null) and frees its buffer. */
  private deliverOne(s: number): void {
    const core = this.core;
    {
      const k = core.nextK(s);
      const index = core.mode === 'raw' ? k : core.deliveredCount;
      const kind = this.smc.kind(s, k);
      if (kind === RecordKind.Data) {
        this.onDeliver(this.senderIds[s]!, index, this.smc.payload(s, k));
      } else if (kind === RecordKind.Rdmc) {
        const slot = s * this.W + (k % this.W);
        const buffer = this.rdmcBuf[slot];
        assert(buffer != null && this.bodyHere[slot] === 1, 'a large message is delivered after its body arrived');
        this.rdmcBuf[slot] = null;
        this.bodyHere[slot] = 0;
        try {
          this.onDeliver(this.senderIds[s]!, index, buffer.region.buffer.subarray(buffer.offset, buffer.offset + this.smc.rdmcSize(s, k)));
        } finally {
          if (s === this.mySender) this.ownDelivered.push({ k, buffer });
          else buffer.release();
        }
      } else {
        assert(kind === RecordKind.Null, `record ${k} of sender ${s} has a known kind`);
      }
    }
  }

  // ---- the end of a view (membership/view-instance.ts) -----------------------------------------

  /**
   * Wedges the group: nothing more is sent, arrivals are no longer counted, and normal delivery
   * stops. Queued sends fail with ERR_MULTICAST_WEDGED (the caller sends them in the next view).
   * Returns the final received count per sender: what this member reports for the ragged trim.
   */
  wedge(): number[] {
    if (!this.wedged) {
      if (!this.closed) this.pump(); // count what has already landed and deliver what is stable
      this.wedged = true;
      this.smc.stopSending();
      for (const q of this.queue.splice(0)) {
        clearTimeout(q.timer);
        q.reject(new TempestError('ERR_MULTICAST_WEDGED', 'the view is changing; send again in the next view'));
      }
    }
    const me = this.core.myRank;
    const fr: number[] = [];
    for (let s = 0; s < this.S; s++) fr.push(this.core.receivedAt(me, s));
    return fr;
  }

  /** Delivers exactly the messages below the ragged trim (per sender), in order; then nothing more. */
  deliverTrim(trim: readonly number[]): void {
    assert(this.wedged, 'the trim is delivered by a wedged group');
    const core = this.core;
    for (let s = core.nextTrimmed(trim); s >= 0; s = core.nextTrimmed(trim)) {
      this.deliverOne(s);
      core.trimmedDelivered(s);
    }
  }

  /** Memory this group registered itself (its default buffer pool), for the owner to retire. */
  registeredRegions(): MemoryRegion[] {
    return this.ownsBuffers && this.buffers instanceof SlabBufferPool ? [this.buffers.region] : [];
  }

  /** A joiner holds deliveries until it has the shard's state. */
  holdDeliveries(): void {
    this.held = true;
  }

  releaseDeliveries(): void {
    this.held = false;
    this.schedule();
  }

  private releaseOwnBuffers(): void {
    const everywhere = this.core.minReceived(this.mySender);
    while (this.ownDelivered.length > 0 && this.ownDelivered[0]!.k < everywhere) this.ownDelivered.shift()!.buffer.release();
  }

  private serveQueue(): void {
    while (this.queue.length > 0 && this.reservation === null) {
      const q = this.queue[0]!;
      const view = this.reserveNow(q.size_bytes);
      if (view === null) return;
      this.queue.shift();
      clearTimeout(q.timer);
      if (q.payload === null) {
        q.resolve({ index: -1, view });
        return;
      }
      copyPieces(view, 0, q.payload);
      q.resolve({ index: this.commit(), view: null });
    }
  }

  private sendNulls(): void {
    if (this.queue.length > 0 || this.reservation !== null) return;
    for (let n = this.core.nullsWanted(); n > 0 && this.core.canSend(); n--) {
      if (this.smc.reserve(0) === null) return;
      const k = this.core.sent();
      this.smc.commit(k, RecordKind.Null, 0);
      this.nullsSent++;
    }
  }

  /**
   * Writes our counters into our row and pushes it. A change in what we received is pushed at
   * once (stability, hence every member's delivery, waits on it). A change in what we delivered
   * only frees senders' window slots, so it rides along with the next push, or goes on its own
   * after DELIVERED_PUSH_DELAY_MS or once a quarter window has been delivered: at light load
   * that halves the table pushes without holding back a sender whose window is filling.
   */
  private publish(): void {
    const sst = this.member.sst;
    const me = this.core.myRank;
    let received = false;
    let deliveredUrgent = false;
    let delivered = false;
    for (let s = 0; s < this.S; s++) {
      const rcv = this.core.receivedAt(me, s);
      const dlv = this.core.deliveredAt(me, s);
      if (this.published[s] !== rcv) {
        this.published[s] = rcv;
        sst.set(this.receivedColumn, rcv, s);
        received = true;
      }
      if (this.published[this.S + s] !== dlv) {
        this.published[this.S + s] = dlv;
        sst.set(this.deliveredColumn, dlv, s);
        delivered = true;
      }
      if (dlv - this.deliveredPushed[s]! >= this.urgentDelivered) deliveredUrgent = true;
    }
    if (received || deliveredUrgent) this.pushProgress();
    else if (delivered && this.deliveredTimer === undefined) {
      this.deliveredTimer = setTimeout(() => {
        this.deliveredTimer = undefined;
        if (!this.closed) this.pushProgress();
      }, DELIVERED_PUSH_DELAY_MS);
    }
  }

  private pushProgress(): void {
    if (this.deliveredTimer !== undefined) {
      clearTimeout(this.deliveredTimer);
      this.deliveredTimer = undefined;
    }
    for (let s = 0; s < this.S; s++) this.deliveredPushed[s] = this.published[this.S + s]!;
    this.member.sst.push(this.names.progressGroup);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.predicate.remove();
    if (this.ownsBuffers) this.buffers.close?.();
    if (this.deliveredTimer !== undefined) clearTimeout(this.deliveredTimer);
    this.smc.close();
    this.rdmc.close();
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      q.reject(new TempestError('ERR_MULTICAST_CLOSED', 'the multicast group is closed'));
    }
  }
}
