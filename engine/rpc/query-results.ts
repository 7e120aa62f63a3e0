/**
 * The result of an ordered call (seed 003, "Using QueryResults objects"): one reply per member of
 * the shard in the view in which the call was delivered. A member removed from the group before it
 * replied rejects with NodeRemovedError; a method that threw rejects with a RemoteError carrying
 * the remote code and message. `delivered` resolves once the call is acknowledged: delivered, and
 * in a durable subgroup persisted on every member of the shard.
 */
import { TempestError } from '../util/errors.js';
import { RemoteError } from './errors.js';

export class NodeRemovedError extends TempestError {
  readonly node: number;
  constructor(node: number, vid: number) {
    super('ERR_RPC_NODE_REMOVED', `member ${node} left the group (view ${vid}) before it replied`);
    this.name = 'NodeRemovedError';
    this.node = node;
  }
}

export interface DeliveredCall {
  /** vid << 32 | index of the delivery. */
  version: bigint;
  /** The shard's members in that view: who replies. */
  members: number[];
}

interface Slot<R> {
  promise: Promise<R>;
  resolve: (v: R) => void;
  reject: (e: Error) => void;
  settled: boolean;
}

function slot<R>(): Slot<R> {
  let resolve!: (v: R) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<R>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a reply nobody asks for must not be an unhandled rejection
  return { promise, resolve, reject, settled: false };
}

export class QueryResults<R> {
  /** Acknowledged (delivered; in a durable subgroup also persisted by every shard member). */
  readonly delivered: Promise<DeliveredCall>;
  private readonly slots = new Map<number, Slot<R>>();
  private readonly early = new Map<number, { ok: boolean; value: unknown }>();
  private members: number[] | null = null;
  private readonly membersKnown: Slot<number[]> = slot();
  private resolveDelivered!: (d: DeliveredCall) => void;
  private rejectDelivered!: (e: Error) => void;
  private version = -1n;

  constructor(acknowledged: Promise<unknown>) {
    this.delivered = new Promise<DeliveredCall>((res, rej) => {
      this.resolveDelivered = res;
      this.rejectDelivered = rej;
    });
    this.delivered.catch(() => {});
    acknowledged.then(
      () => {
        if (this.members !== null) this.resolveDelivered({ version: this.version, members: [...this.members] });
      },
      (err: Error) => this.fail(err),
    );
  }

  /** One promise per replying member, once the call is delivered here. */
  async replies(): Promise<Map<number, Promise<R>>> {
    await this.membersKnown.promise;
    return new Map([...this.slots].map(([id, s]) => [id, s.promise]));
  }

  /** Every reply by member id; rejects with the first failure. Waits for the acknowledgement too. */
  async all(): Promise<Map<number, R>> {
    const replies = await this.replies();
    const out = new Map<number, R>();
    for (const [id, p] of replies) out.set(id, await p);
    await this.delivered;
    return out;
  }

  // ---- driven by the group ---------------------------------------------------------------------

  /** Our own delivery of the call: who is to reply. */
  setDelivered(version: bigint, members: readonly number[]): void {
    if (this.members !== null) return;
    this.version = version;
    this.members = [...members];
    for (const id of members) this.slots.set(id, slot());
    for (const [id, r] of this.early) this.settle(id, r.ok, r.value);
    this.early.clear();
    this.membersKnown.resolve(this.members);
  }

  /** A member's reply (the value decoded, or an error record when the method threw). */
  reply(member: number, ok: boolean, value: unknown): void {
    if (this.members === null) {
      this.early.set(member, { ok, value });
      return;
    }
    this.settle(member, ok, value);
  }

  private settle(member: number, ok: boolean, value: unknown): void {
    const s = this.slots.get(member);
    if (s === undefined || s.settled) return;
    s.settled = true;
    if (ok) s.resolve(value as R);
    else {
      const e = value as { code?: string; message?: string; name?: string };
      s.reject(new RemoteError(String(e?.code ?? 'ERR_RPC_HANDLER'), String(e?.message ?? 'the method failed'), String(e?.name ?? 'Error')));
    }
  }

  /** Members gone in view `vid`: their replies will never come. */
  removed(present: ReadonlySet<number>, vid: number): void {
    for (const [id, s] of this.slots) {
      if (!s.settled && !present.has(id)) {
        s.settled = true;
        s.reject(new NodeRemovedError(id, vid));
      }
    }
  }

  /** The call failed as a whole (never sent, timed out, no quorum): every reply fails with it. */
  fail(err: Error): void {
    this.rejectDelivered(err);
    this.membersKnown.reject(err);
    for (const s of this.slots.values()) {
      if (!s.settled) {
        s.settled = true;
        s.reject(err);
      }
    }
  }

  /** True once every reply is settled (the group forgets the call). */
  get done(): boolean {
    return this.members !== null && [...this.slots.values()].every((s) => s.settled);
  }
}
