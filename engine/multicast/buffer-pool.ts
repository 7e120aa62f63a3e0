/**
 * Registered buffers for large (RDMC) messages. The receive side of RDMC writes straight into a
 * buffer the upper layer supplies, so it never copies after arrival; RDMA needs that buffer
 * registered, and registration is never per message, so suppliers hand out pieces of memory
 * registered once. SlabBufferPool is the default supplier: fixed slots of one registered slab.
 */
import { constants } from 'node:buffer';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Fabric, MemoryRegion } from '../transport/fabric.js';

export interface RdmcBuffer {
  region: MemoryRegion;
  /** Where the message starts in the region. */
  offset: number;
  size_bytes: number;
  /** Gives the buffer back to its supplier; the multicast layer calls it after delivery. */
  release(): void;
}

/**
 * Messages of one sender are given buffers in order and give them back in order (delivery is FIFO
 * per sender), but across senders delivery follows the global order. So a supplier must never let
 * one sender's messages starve another's of buffers: the oldest undelivered message of every
 * sender must always be able to get one, or delivery can deadlock. Per-sender quotas do it.
 */
export interface RdmcBufferSupplier {
  /** A registered buffer of `size_bytes` for a message from member `senderId`, or null if none is free now. */
  acquire(size_bytes: number, senderId: number): RdmcBuffer | null;
  /** Calls `fn` once, when a buffer has been released. */
  whenReleased(fn: () => void): void;
  /** The group is closed (its view ended): nothing more is handed out. */
  close?(): void;
}

export class SlabBufferPool implements RdmcBufferSupplier {
  /** The registered slab (its owner deregisters it once no peer can still write into it). */
  readonly region: MemoryRegion;
  /** Free slot numbers per sender. */
  private readonly free = new Map<number, number[]>();
  private readonly waiters: (() => void)[] = [];
  private readonly buffers: RdmcBuffer[] = [];
  private readonly inUse: Uint8Array;

  /**
   * `slots_per_sender` buffers of `slot_bytes` for each sender (two let a sender's next large
   * message arrive while the previous one awaits delivery). The slab is virtual memory until
   * written: pages a message never touches never become resident.
   */
  constructor(
    fabric: Fabric,
    senderIds: readonly number[],
    readonly slots_per_sender: number,
    readonly slot_bytes: number,
  ) {
    assert(senderIds.length >= 1 && slots_per_sender >= 1 && slot_bytes >= 1, 'a pool has at least one non-empty slot');
    const slots = senderIds.length * slots_per_sender;
    const total = slots * slot_bytes;
    if (total > constants.MAX_LENGTH) {
      throw new TempestError('ERR_MULTICAST_CONFIG', `an RDMC buffer pool of ${total} bytes (2 x max_payload_size per sender) exceeds the ${constants.MAX_LENGTH}-byte buffer limit`);
    }
    this.region = fabric.register(Buffer.alloc(total));
    this.inUse = new Uint8Array(slots);
    for (const [si, id] of senderIds.entries()) {
      const free: number[] = [];
      for (let j = slots_per_sender - 1; j >= 0; j--) {
        const slot = si * slots_per_sender + j;
        free.push(slot);
        this.buffers[slot] = { region: this.region, offset: slot * slot_bytes, size_bytes: slot_bytes, release: () => this.release(id, slot) };
      }
      this.free.set(id, free);
    }
  }

  close(): void {
    this.waiters.length = 0;
  }

  acquire(size_bytes: number, senderId: number): RdmcBuffer | null {
    if (size_bytes > this.slot_bytes) {
      throw new TempestError('ERR_MULTICAST_TOO_LARGE', `a message of ${size_bytes} bytes exceeds the ${this.slot_bytes}-byte RDMC buffers`);
    }
    const free = this.free.get(senderId);
    assert(free !== undefined, `member ${senderId} is a sender of this pool`);
    const i = free.pop();
    if (i === undefined) return null;
    this.inUse[i] = 1;
    return this.buffers[i]!;
  }

  whenReleased(fn: () => void): void {
    this.waiters.push(fn);
  }

  private release(senderId: number, i: number): void {
    assert(this.inUse[i] === 1, 'a buffer is released once per acquire');
    this.inUse[i] = 0;
    this.free.get(senderId)!.push(i);
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w();
  }
}
