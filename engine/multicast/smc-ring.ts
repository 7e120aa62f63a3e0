/**
 * Byte layout of one sender's SMC ring. Records are packed (a 1 KiB message costs 1 KiB, not a
 * max-size slot), so a run of consecutive messages is one contiguous RMA write. The same layout
 * is used at the sender (its own copy, which is also its receive buffer) and at every receiver.
 *
 * Record: u32 payload length, u8 kind, 3 bytes reserved, f64 k (the sender's message number, a
 * check against misparsing), then the payload padded to 8 bytes.
 *
 * Wrap rule, applied identically by sender and receivers from the offset alone: a record never
 * starts where a maximal record would not fit; it starts at 0 instead.
 */
import { assert } from '../util/assert.js';

export const RECORD_HEADER_BYTES = 16;

export const enum RecordKind {
  Data = 1,
  Null = 2,
  /** A large message: the payload (8 bytes) is its size; the bytes come by RDMC. */
  Rdmc = 3,
}

/** Payload bytes of an RDMC descriptor record. */
export const RDMC_DESCRIPTOR_BYTES = 8;

function align8(n: number): number {
  return (n + 7) & ~7;
}

export class RingLayout {
  /** Bytes of the largest record. */
  readonly maxRecordBytes: number;
  /** Bytes of one ring: room for window maximal records plus one of wrap slack. */
  readonly ringBytes: number;

  constructor(
    readonly maxPayloadBytes: number,
    readonly window: number,
  ) {
    assert(maxPayloadBytes >= RDMC_DESCRIPTOR_BYTES, 'an SMC record can hold an RDMC descriptor');
    this.maxRecordBytes = RECORD_HEADER_BYTES + align8(maxPayloadBytes);
    this.ringBytes = (window + 1) * this.maxRecordBytes;
  }

  recordBytes(payloadBytes: number): number {
    return RECORD_HEADER_BYTES + align8(payloadBytes);
  }

  /** Where a record goes given the offset after the previous one. */
  place(offset: number): number {
    return offset + this.maxRecordBytes > this.ringBytes ? 0 : offset;
  }
}

/**
 * The sender's view of its ring: which bytes hold records not yet delivered everywhere. Records
 * are freed in order (delivery is FIFO per sender), so live bytes are one circular interval.
 */
export class RingSpace {
  /** Offset where the next record would be written (before the wrap rule). */
  private tail = 0;
  /** Offset of the oldest live record. */
  private head = 0;
  private live = 0;
  /** Offsets and sizes of live records, indexed by k mod capacity. */
  private readonly offsets: Float64Array;
  private readonly sizes: Float64Array;
  private oldestK = 0;

  constructor(
    private readonly layout: RingLayout,
    private readonly capacity: number,
  ) {
    this.offsets = new Float64Array(capacity);
    this.sizes = new Float64Array(capacity);
  }

  get liveRecords(): number {
    return this.live;
  }

  /** The k of the oldest live record (everything below is delivered everywhere). */
  get oldestLive(): number {
    return this.oldestK;
  }

  /** The offset a record of `bytes` would take now, or -1 when it does not fit yet. */
  fit(bytes: number): number {
    assert(bytes <= this.layout.maxRecordBytes, 'record within the maximum');
    if (this.live >= this.capacity) return -1;
    const at = this.layout.place(this.tail);
    if (this.live === 0) return at;
    if (this.head < this.tail) {
      // Live bytes are [head, tail): free space is after tail (no wrap) or before head (wrap).
      return at === this.tail || at + bytes <= this.head ? at : -1;
    }
    // Live bytes wrap around: free space is [tail, head) and a wrap would run into live records.
    return at === this.tail && at + bytes <= this.head ? at : -1;
  }

  /** Records message k (the next one) at `offset`, as returned by fit(). */
  append(k: number, offset: number, bytes: number): void {
    assert(k === this.oldestK + this.live, 'records are appended in order');
    if (this.live === 0) this.head = offset;
    this.offsets[k % this.capacity] = offset;
    this.sizes[k % this.capacity] = bytes;
    this.tail = offset + bytes;
    this.live++;
  }

  offsetOf(k: number): number {
    assert(k >= this.oldestK && k < this.oldestK + this.live, 'record is live');
    return this.offsets[k % this.capacity]!;
  }

  sizeOf(k: number): number {
    assert(k >= this.oldestK && k < this.oldestK + this.live, 'record is live');
    return this.sizes[k % this.capacity]!;
  }

  /** Frees every record below k (delivered everywhere). */
  freeBelow(k: number): void {
    while (this.oldestK < k && this.live > 0) {
      this.oldestK++;
      this.live--;
      if (this.live > 0) this.head = this.offsets[this.oldestK % this.capacity]!;
    }
  }
}
