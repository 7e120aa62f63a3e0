/**
 * RDMC, the large-message multicast (DESIGN §5): a message is cut into blocks that travel along a
 * schedule (binomial pipeline by default, see rdmc-schedule.ts) so that each receiver gets each
 * block once and, in the binomial pipeline, every member sends and receives at once. Blocks are
 * RMA writes straight into the receiver's buffer (supplied by the layer above), with immediate
 * data naming the sender and the block, so nothing is copied after arrival.
 *
 * A receiver announces, in its shared-state-table row, that its buffer for message k of sender s
 * is ready (and where it is); nobody writes to it before that. Per sender, a member takes part in
 * one transfer at a time: it announces the next buffer only when the previous transfer is done
 * here (all blocks in, all its forwarding done), which is what lets block numbers alone identify
 * the message.
 */
import { assert } from '../util/assert.js';
import type { Logger } from '../util/log.js';
import { type CompletionHandler, type Fabric, immediate, type RemoteRegion } from '../transport/fabric.js';
import type { MeshView, Peer } from '../transport/peer-mesh.js';
import type { ColumnLayout } from '../sst/layout.js';
import type { SharedStateTable } from '../sst/table.js';
import type { RdmcBuffer } from './buffer-pool.js';
import { type NodeSchedule, type RdmcAlgorithm, rdmcSchedule } from './rdmc-schedule.js';

/** Block writes one member keeps in flight per transfer. */
const MAX_BLOCKS_IN_FLIGHT = 4;

export interface RdmcColumns {
  /** i64 x S: k + 1 of the message of sender s whose buffer is ready here (0: none). */
  ready: string;
  /** i64 x S: remote base and key of that buffer. */
  base: string;
  key: string;
  /** SST push group holding the three. */
  group: string;
}

export interface RdmcOptions {
  fabric: Fabric;
  mesh: MeshView;
  sst: SharedStateTable;
  columns: RdmcColumns;
  /** Members of the shard (ranks 0..members-1) and the ranks of its senders. */
  members: number;
  senders: readonly number[];
  myRank: number;
  algorithm: RdmcAlgorithm;
  block_size: number;
  /** Largest number of blocks one message may have. */
  max_blocks: number;
  service: number;
  /** Every block of message k of sender s is here. */
  onBody: (s: number, k: number) => void;
  /** This member can start a new transfer for sender s. */
  onIdle: (s: number) => void;
  /** A block write failed: its target's connection is gone (the membership layer suspects it). */
  onPeerError?: (rank: number, message: string) => void;
  log: Logger;
}

interface Transfer {
  /** The message, or -1 when idle. */
  k: number;
  buffer: RdmcBuffer | null;
  size_bytes: number;
  blocks: number;
  schedule: NodeSchedule | null;
  isSender: boolean;
  have: Uint8Array;
  haveCount: number;
  bodyReported: boolean;
  cursor: number;
  inFlight: number;
}

export class RdmcChannel {
  private readonly fabric: Fabric;
  private readonly sst: SharedStateTable;
  private readonly cols: RdmcColumns;
  private readonly readyColumn: ColumnLayout;
  private readonly baseColumn: ColumnLayout;
  private readonly keyColumn: ColumnLayout;
  private readonly S: number;
  private readonly myRank: number;
  private readonly mySender: number;
  private readonly algorithm: RdmcAlgorithm;
  private readonly blockSize: number;
  private readonly service: number;
  private readonly handlerId: number;
  private readonly transfers: Transfer[] = [];
  /** Per sender: the member rank at each position of its transfers (position 0 is the sender). */
  private readonly rankAt: number[][] = [];
  private readonly myPosition: number[] = [];
  private readonly peersByRank: (Peer | undefined)[] = [];
  /** One remote-region descriptor per (target rank, sender), rewritten in place. */
  private readonly remotes: RemoteRegion[] = [];
  /** Our own large messages waiting for our previous transfer to finish. */
  private readonly outbox: { k: number; buffer: RdmcBuffer; size_bytes: number }[] = [];
  private readonly onBody: RdmcOptions['onBody'];
  private readonly onIdle: RdmcOptions['onIdle'];
  private readonly log: Logger;
  private closed = false;

  constructor(opts: RdmcOptions) {
    this.fabric = opts.fabric;
    this.sst = opts.sst;
    this.cols = opts.columns;
    this.readyColumn = opts.sst.column(opts.columns.ready);
    this.baseColumn = opts.sst.column(opts.columns.base);
    this.keyColumn = opts.sst.column(opts.columns.key);
    this.S = opts.senders.length;
    this.myRank = opts.myRank;
    this.mySender = opts.senders.indexOf(opts.myRank);
    this.algorithm = opts.algorithm;
    this.blockSize = opts.block_size;
    this.service = opts.service;
    this.onBody = opts.onBody;
    this.onIdle = opts.onIdle;
    this.log = opts.log;
    for (let s = 0; s < this.S; s++) {
      const order = [opts.senders[s]!];
      for (let r = 0; r < opts.members; r++) if (r !== opts.senders[s]) order.push(r);
      this.rankAt.push(order);
      this.myPosition.push(order.indexOf(this.myRank));
      this.transfers.push({
        k: -1,
        buffer: null,
        size_bytes: 0,
        blocks: 0,
        schedule: null,
        isSender: s === this.mySender,
        have: new Uint8Array(opts.max_blocks),
        haveCount: 0,
        bodyReported: false,
        cursor: 0,
        inFlight: 0,
      });
    }
    for (let r = 0; r < opts.members; r++) {
      this.peersByRank[r] = r === this.myRank ? undefined : opts.mesh.peerByRank(r);
      for (let s = 0; s < this.S; s++) this.remotes[r * this.S + s] = { base: 0, key: 0, length: 0 };
    }
    const handler: CompletionHandler = {
      onCompletion: (_kind, tag) => this.blockWritten(tag & 0xff),
      onError: (_kind, tag, err, message) => {
        // The block is lost with its connection; the transfer cannot finish in this view. Derecho
        // treats a failed RDMA write as a failure of the peer: so do we, and the next view resends.
        this.log.warn({ sender: tag & 0xff, target: tag >>> 8, err, message }, 'RDMC block write failed');
        opts.onPeerError?.(tag >>> 8, message);
        this.blockWritten(tag & 0xff);
      },
    };
    this.handlerId = this.fabric.addHandler(handler);
    this.fabric.onRemoteWrite(this.service, (value) => this.blockArrived(value >>> 16, value & 0xffff));
  }

  blockCount(size_bytes: number): number {
    return Math.max(1, Math.ceil(size_bytes / this.blockSize));
  }

  /** True when this member takes part in no transfer of sender s. */
  idle(s: number): boolean {
    return this.transfers[s]!.k < 0;
  }

  /** Sends our message k (its bytes in `buffer`) once our previous transfer is done. */
  send(k: number, buffer: RdmcBuffer, size_bytes: number): void {
    assert(this.mySender >= 0, 'only senders send');
    this.outbox.push({ k, buffer, size_bytes });
    if (this.idle(this.mySender)) this.startNextSend();
  }

  private startNextSend(): void {
    const next = this.outbox.shift();
    if (next === undefined) return;
    const t = this.transfers[this.mySender]!;
    this.begin(t, this.mySender, next.k, next.buffer, next.size_bytes);
    t.haveCount = t.blocks;
    t.bodyReported = true;
    this.pump(this.mySender);
    this.maybeIdle(this.mySender);
  }

  /** Receives message k of sender s into `buffer`: announces it ready, then blocks arrive. */
  receive(s: number, k: number, buffer: RdmcBuffer, size_bytes: number): void {
    assert(s !== this.mySender, 'a sender does not receive its own message');
    assert(this.idle(s), 'one transfer per sender at a time');
    assert(buffer.size_bytes >= size_bytes, 'the buffer holds the message');
    const t = this.transfers[s]!;
    this.begin(t, s, k, buffer, size_bytes);
    this.sst.set(this.baseColumn, buffer.region.remoteBase + buffer.offset, s);
    this.sst.set(this.keyColumn, buffer.region.key, s);
    this.sst.set(this.readyColumn, k + 1, s);
    this.sst.push(this.cols.group);
  }

  private begin(t: Transfer, s: number, k: number, buffer: RdmcBuffer, size_bytes: number): void {
    const blocks = this.blockCount(size_bytes);
    assert(blocks <= t.have.length, 'message within max_payload_size');
    t.k = k;
    t.buffer = buffer;
    t.size_bytes = size_bytes;
    t.blocks = blocks;
    t.schedule = rdmcSchedule(this.algorithm, this.rankAt[s]!.length, blocks).node(this.myPosition[s]!);
    t.have.fill(0, 0, blocks);
    t.haveCount = 0;
    t.bodyReported = false;
    t.cursor = 0;
    t.inFlight = 0;
  }

  /** Posts every block write of sender s's transfer that can go now. */
  pump(s: number): void {
    const t = this.transfers[s]!;
    if (t.k < 0 || this.closed) return;
    const sch = t.schedule!;
    const n = sch.sendBlock.length;
    const buffer = t.buffer!;
    while (t.cursor < n && t.inFlight < MAX_BLOCKS_IN_FLIGHT) {
      const b = sch.sendBlock[t.cursor]!;
      if (!t.isSender && t.have[b] === 0) return;
      const rank = this.rankAt[s]![sch.sendTarget[t.cursor]!]!;
      if (this.sst.get(rank, this.readyColumn, s) !== t.k + 1) return;
      const remote = this.remotes[rank * this.S + s]!;
      remote.base = this.sst.get(rank, this.baseColumn, s);
      remote.key = this.sst.get(rank, this.keyColumn, s);
      remote.length = t.size_bytes;
      const off = b * this.blockSize;
      const len = Math.min(this.blockSize, t.size_bytes - off);
      const peer = this.peersByRank[rank]!;
      const imm = immediate(this.service, (s << 16) | b);
      if (!this.fabric.write(peer.address, buffer.region, buffer.offset + off, len, remote, off, this.handlerId, (rank << 8) | s, imm)) {
        this.fabric.whenCapacity(() => this.pump(s));
        return;
      }
      t.cursor++;
      t.inFlight++;
    }
  }

  /** Every transfer may proceed (a peer's readiness may have changed). */
  pumpAll(): void {
    for (let s = 0; s < this.S; s++) this.pump(s);
  }

  private blockArrived(s: number, b: number): void {
    const t = this.transfers[s];
    if (t === undefined || this.closed) return;
    assert(t.k >= 0 && !t.isSender, `a block of sender ${s} arrives only for an announced buffer`);
    assert(b < t.blocks && t.have[b] === 0, `block ${b} of sender ${s} arrives once`);
    t.have[b] = 1;
    t.haveCount++;
    this.pump(s);
    if (t.haveCount === t.blocks && !t.bodyReported) {
      t.bodyReported = true;
      this.onBody(s, t.k);
    }
    this.maybeIdle(s);
  }

  private blockWritten(s: number): void {
    const t = this.transfers[s];
    if (t === undefined || t.k < 0) return;
    t.inFlight--;
    this.pump(s);
    this.maybeIdle(s);
  }

  private maybeIdle(s: number): void {
    const t = this.transfers[s]!;
    if (t.k < 0 || t.haveCount < t.blocks || t.cursor < t.schedule!.sendBlock.length || t.inFlight > 0) return;
    t.k = -1;
    t.buffer = null;
    t.schedule = null;
    if (s === this.mySender) this.startNextSend();
    else this.onIdle(s);
  }

  /** Stops; frees the service id and the completion handler for the next view's channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fabric.offRemoteWrite(this.service);
    this.fabric.removeHandler(this.handlerId);
  }
}
