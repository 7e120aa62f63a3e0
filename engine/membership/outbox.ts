/**
 * The updates one member sends to one shard, across views. Updates waiting together go out
 * packed in one multicast message (a batch, see packBatch): the multicast, its table pushes and
 * the receivers' per-message work are paid once per batch instead of once per update. A batch is
 * delivered whole or not at all, and its updates keep their order. An update is acknowledged (its promise
 * resolves) when the member delivers it, which in an ordered shard means every member of the
 * shard received it. Updates handed to a view's multicast and not delivered when the view ended
 * were delivered nowhere (the ragged trim is agreed), so all of them go again, in order, in the
 * next view: never lost, never twice.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';

/** Where an update was delivered (the version is vid << 32 | index). */
export interface DeliveredAt {
  vid: number;
  index: number;
}

/** How a delivered update's sender is answered: at once, or once the shard persisted it. */
export interface Settle {
  resolve: (at: DeliveredAt) => void;
  reject: (e: Error) => void;
}

/** What the outbox hands updates to: the multicast of the current view. */
export interface UpdateSink {
  /**
   * Sends the concatenation of `pieces` (kept unchanged until it resolves); resolves once in
   * flight; rejects with ERR_MULTICAST_WEDGED/CLOSED when the view ends first.
   */
  send(pieces: readonly Buffer[]): Promise<number>;
}

interface Outgoing {
  payload: Buffer;
  /** Who is answered (a promise's functions, or the caller's own Settle). */
  settle: Settle;
  deadline_ms: number;
  /** Handed to the multicast of view `submittedIn` and not yet delivered. */
  submitted: boolean;
  submittedIn: number;
}

/** A batch: u16 count, then per update u32 length and its bytes (little-endian). */
const BATCH_HEADER_BYTES = 2;
const BATCH_ENTRY_BYTES = 4;
/** Bytes a batch adds to an update sent alone. */
export const BATCH_OVERHEAD_BYTES = BATCH_HEADER_BYTES + BATCH_ENTRY_BYTES;
/** A batch at least this long is sent as pieces (batchPieces) rather than packed (packBatch). */
const PIECES_MIN_BYTES = 64 * 1024;
/** Updates per batch at most (their deliveries share one multicast message). */
export const MAX_BATCH_UPDATES = 256;

/** Packs updates (payloads, or outgoing entries) into one multicast payload of `total_bytes` (as counted by pump). */
export function packBatch(payloads: readonly (Buffer | { payload: Buffer })[], total_bytes: number): Buffer {
  assert(payloads.length > 0 && payloads.length <= MAX_BATCH_UPDATES, 'a batch holds 1..MAX_BATCH_UPDATES updates');
  const out = Buffer.allocUnsafe(total_bytes);
  out.writeUInt16LE(payloads.length, 0);
  let at = BATCH_HEADER_BYTES;
  for (const x of payloads) {
    const p = Buffer.isBuffer(x) ? x : x.payload;
    out.writeUInt32LE(p.length, at);
    out.set(p, at + BATCH_ENTRY_BYTES);
    at += BATCH_ENTRY_BYTES + p.length;
  }
  assert(at === total_bytes, 'the batch is exactly as long as counted');
  return out;
}

/**
 * The batch packBatch makes, as pieces to send without gathering them first: the framing (one
 * small buffer) around the updates' own bytes. A 1 MiB update is then copied once, into the
 * multicast's buffer, not also into a batch.
 */
export function batchPieces(batch: readonly { payload: Buffer }[]): Buffer[] {
  assert(batch.length > 0 && batch.length <= MAX_BATCH_UPDATES, 'a batch holds 1..MAX_BATCH_UPDATES updates');
  const framing = Buffer.allocUnsafe(BATCH_HEADER_BYTES + BATCH_ENTRY_BYTES * batch.length);
  framing.writeUInt16LE(batch.length, 0);
  const pieces: Buffer[] = [];
  for (let j = 0; j < batch.length; j++) {
    const at = BATCH_HEADER_BYTES + BATCH_ENTRY_BYTES * j;
    framing.writeUInt32LE(batch[j]!.payload.length, at);
    pieces.push(framing.subarray(j === 0 ? 0 : at, at + BATCH_ENTRY_BYTES), batch[j]!.payload);
  }
  return pieces;
}

/**
 * Calls `fn` with each update of a delivered batch (views of `batch`, valid while it is). The
 * whole batch is checked first, so a malformed one (a bug, or a foreign sender) is refused with
 * ERR_MEMBERSHIP_MALFORMED_BATCH before any of it is delivered.
 */
export function forEachInBatch(batch: Buffer, fn: (update: Buffer, j: number) => void): void {
  const bad = () => new TempestError('ERR_MEMBERSHIP_MALFORMED_BATCH', `a delivered batch of ${batch.length} bytes is malformed`);
  if (batch.length < BATCH_HEADER_BYTES) throw bad();
  const count = batch.readUInt16LE(0);
  if (count === 0 || count > MAX_BATCH_UPDATES) throw bad();
  let at = BATCH_HEADER_BYTES;
  for (let j = 0; j < count; j++) {
    if (at + BATCH_ENTRY_BYTES > batch.length) throw bad();
    at += BATCH_ENTRY_BYTES + batch.readUInt32LE(at);
    if (at > batch.length) throw bad();
  }
  if (at !== batch.length) throw bad();
  at = BATCH_HEADER_BYTES;
  for (let j = 0; j < count; j++) {
    const len = batch.readUInt32LE(at);
    at += BATCH_ENTRY_BYTES;
    fn(batch.subarray(at, at + len), j);
    at += len;
  }
}

export class Outbox {
  private entries: Outgoing[] = [];
  /** Entries with `submitted` set (kept as a count: send() asks for it per update). */
  private submittedCount = 0;

  constructor(private readonly max_pending: number) {}

  get length(): number {
    return this.entries.length;
  }

  /** Queues an update; it fails with ERR_MEMBERSHIP_TIMEOUT if not handed over by `deadline_ms`. */
  add(payload: Buffer, deadline_ms: number): Promise<DeliveredAt> {
    return new Promise<DeliveredAt>((resolve, reject) => this.addSettled(payload, deadline_ms, { resolve, reject }));
  }

  /** add(), answering through `settle` instead of a promise (refused at once: settle.reject, synchronously). */
  addSettled(payload: Buffer, deadline_ms: number, settle: Settle): void {
    if (this.entries.length >= this.max_pending) {
      settle.reject(new TempestError('ERR_MEMBERSHIP_BACKPRESSURE', `${this.entries.length} updates already wait for delivery in this shard`));
      return;
    }
    this.entries.push({ payload, settle, deadline_ms, submitted: false, submittedIn: -1 });
  }

  /** Updates handed to the multicast and not yet delivered. */
  get inFlight(): number {
    return this.submittedCount;
  }

  /**
   * Hands waiting updates to the multicast of view `vid`, with at most `limit` of ours in flight,
   * packed into batches of at most `batch_bytes` (an update larger than that goes alone).
   */
  pump(sink: UpdateSink, vid: number, limit: number, batch_bytes: number): void {
    let inFlight = 0;
    let i = 0;
    for (; i < this.entries.length && this.entries[i]!.submitted; i++) inFlight++;
    while (i < this.entries.length && inFlight < limit) {
      const batch: Outgoing[] = [];
      let bytes = BATCH_HEADER_BYTES;
      while (i < this.entries.length && inFlight < limit && batch.length < MAX_BATCH_UPDATES) {
        const o = this.entries[i]!;
        const size = BATCH_ENTRY_BYTES + o.payload.length;
        if (batch.length > 0 && bytes + size > batch_bytes) break;
        o.submitted = true;
        o.submittedIn = vid;
        this.submittedCount++;
        batch.push(o);
        bytes += size;
        inFlight++;
        i++;
      }
      // Large updates go as themselves (copied once, into the multicast's buffer); many small ones
      // are gathered here, one copy each either way, into one piece.
      sink.send(bytes >= PIECES_MIN_BYTES ? batchPieces(batch) : [packBatch(batch, bytes)]).catch((err: TempestError) => {
        // The view ended before it went out: its updates go again in the next view.
        if (err.code === 'ERR_MULTICAST_WEDGED' || err.code === 'ERR_MULTICAST_CLOSED') {
          for (const o of batch) {
            if (o.submittedIn === vid && o.submitted) {
              o.submitted = false;
              this.submittedCount--;
            }
          }
        } else {
          for (const o of batch) {
            const at = this.entries.indexOf(o);
            if (at >= 0) {
              this.entries.splice(at, 1);
              if (o.submitted) this.submittedCount--;
              o.submitted = false;
            }
            o.settle.reject(err);
          }
        }
      });
    }
  }

  /**
   * Our oldest update was delivered here: it leaves the outbox (it is never sent again) and its
   * sender is answered through the returned Settle. `more` is true when updates wait to be handed over.
   */
  delivered(): { settle: Settle; more: boolean } {
    const settle = this.shiftDelivered();
    return { settle, more: this.moreWaiting };
  }

  /** delivered() without the pair: the oldest update leaves; how to answer its sender. */
  shiftDelivered(): Settle {
    const o = this.entries.shift();
    assert(o !== undefined && o.submitted, 'our deliveries match our sends in order');
    o.submitted = false; // gone: a late failure of its batch must not count it
    this.submittedCount--;
    return o.settle;
  }

  /** Updates wait to be handed over. */
  get moreWaiting(): boolean {
    return this.entries.length > 0 && !this.entries[this.entries.length - 1]!.submitted;
  }

  /** A new view: nothing still here was delivered in the old one, so all of it goes again. */
  resubmitAll(): void {
    for (const o of this.entries) o.submitted = false;
    this.submittedCount = 0;
  }

  /** Rejects the updates not handed over by their deadline. */
  expire(now_ms: number, error: () => TempestError): void {
    this.entries = this.entries.filter((o) => {
      if (o.submitted || o.deadline_ms > now_ms) return true;
      o.settle.reject(error());
      return false;
    });
  }

  /** Rejects everything: ones in flight with an unknown outcome (the others may have delivered them). */
  failAll(error: () => TempestError): void {
    this.submittedCount = 0;
    for (const o of this.entries.splice(0)) {
      const inFlight = o.submitted;
      o.submitted = false;
      o.settle.reject(inFlight ? new TempestError('ERR_MEMBERSHIP_OUTCOME_UNKNOWN', `${error().message}; this update was in flight and may have been delivered by the others`) : error());
    }
  }

  /** Moves every update of `other` (none handed over yet) behind ours. */
  absorb(other: Outbox): void {
    assert(other.entries.every((o) => !o.submitted), 'only updates not yet handed over move');
    this.entries.push(...other.entries.splice(0));
  }
}
