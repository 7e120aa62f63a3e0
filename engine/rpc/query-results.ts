/**
 * The result of an ordered call (seed 003, "Using QueryResults objects"): one reply per member of
 * the shard in the view in which the call was delivered. A member removed from the group before it
 * replied rejects with NodeRemovedError; a method that threw rejects with a RemoteError carrying
 * the remote code and message. `delivered` resolves once the call is acknowledged: delivered, and
 * in a durable subgroup persisted on every member of the shard.
 *
 * Every durable update makes one of these, so its state is plain fields and promises are made only
 * when asked for (replies(), all(), delivered): a caller that awaits all() costs one promise, not
 * one per reply plus the bookkeeping ones.
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

/** How a call is acknowledged when no promise is given: the member calls these directly. */
export interface Acknowledgement {
  resolve(): void;
  reject(e: Error): void;
}

const PENDING = 0;
const FULFILLED = 1;
const REJECTED = 2;
type State = typeof PENDING | typeof FULFILLED | typeof REJECTED;

/** One member's reply: its outcome, and a promise only once replies() asked for one. */
interface Slot<R> {
  id: number;
  state: State;
  /** The value (fulfilled) or the Error (rejected). */
  result: unknown;
  promise: Promise<R> | null;
  resolve: ((v: R) => void) | null;
  reject: ((e: Error) => void) | null;
}

/** A caller of all() or replies() waiting for the members to be known / the replies to be in. */
interface Waiter {
  resolve: (v: never) => void;
  reject: (e: Error) => void;
}

function settledPromise<R>(s: Slot<R>): Promise<R> {
  if (s.state === FULFILLED) return Promise.resolve(s.result as R);
  const p = Promise.reject(s.result as Error);
  p.catch(() => {}); // a reply nobody asks for must not be an unhandled rejection
  return p;
}

/** An ordered call's outcome: the version it got and each replica's reply. */
export interface OrderedOutcome<R> {
  version: bigint;
  replies: Map<number, { ok: true; value: R } | { ok: false; code: string; message: string }>;
}

export class QueryResults<R> implements Acknowledgement {
  private slots: Slot<R>[] = [];
  private early: { member: number; ok: boolean; value: unknown }[] | null = null;
  /** Who replies (not copied: the group passes the view's list, which nobody changes). */
  private members: readonly number[] | null = null;
  private version = -1n;
  /** `delivered`: pending, resolved with `deliveredValue`, or rejected with `deliveredError`. */
  private deliveredState: State = PENDING;
  private deliveredValue: DeliveredCall | null = null;
  private deliveredError: Error | null = null;
  private deliveredPromise: Promise<DeliveredCall> | null = null;
  private deliveredResolve: ((d: DeliveredCall) => void) | null = null;
  private deliveredReject: ((e: Error) => void) | null = null;
  /** The call failed before it was delivered here: who replies is never known (replies() rejects). */
  private failedEarly: Error | null = null;
  /** Callers of replies() waiting for setDelivered. */
  private repliesWaiters: Waiter[] | null = null;
  /** Callers of all() waiting. */
  private allWaiters: Waiter[] | null = null;
  private unsettled = 0;

  /** `acknowledged`: a promise, or nothing when the caller calls resolve()/reject() itself. */
  constructor(acknowledged?: Promise<unknown>) {
    acknowledged?.then(
      () => this.resolve(),
      (err: Error) => this.reject(err),
    );
  }

  /** Acknowledged (delivered; in a durable subgroup also persisted by every shard member). */
  get delivered(): Promise<DeliveredCall> {
    if (this.deliveredPromise === null) {
      if (this.deliveredState === FULFILLED) this.deliveredPromise = Promise.resolve(this.deliveredCall());
      else if (this.deliveredState === REJECTED) this.deliveredPromise = Promise.reject(this.deliveredError!);
      else {
        this.deliveredPromise = new Promise<DeliveredCall>((res, rej) => {
          this.deliveredResolve = res;
          this.deliveredReject = rej;
        });
      }
      this.deliveredPromise.catch(() => {});
    }
    return this.deliveredPromise;
  }

  /** One promise per replying member, once the call is delivered here. */
  replies(): Promise<Map<number, Promise<R>>> {
    if (this.failedEarly !== null) return Promise.reject(this.failedEarly);
    if (this.members !== null) return Promise.resolve(this.replyMap());
    return new Promise<Map<number, Promise<R>>>((resolve, reject) => {
      (this.repliesWaiters ??= []).push({ resolve: resolve as (v: never) => void, reject });
    });
  }

  /** Every reply by member id; rejects with the first failure. Waits for the acknowledgement too. */
  all(): Promise<Map<number, R>> {
    return new Promise<Map<number, R>>((resolve, reject) => {
      const w: Waiter = { resolve: resolve as (v: never) => void, reject };
      if (!this.tryAll(w)) (this.allWaiters ??= []).push(w);
    });
  }

  // ---- driven by the group ---------------------------------------------------------------------

  /** Our own delivery of the call: who is to reply. */
  setDelivered(version: bigint, members: readonly number[]): void {
    if (this.members !== null) return;
    this.version = version;
    this.members = members;
    const slots: Slot<R>[] = [];
    for (const id of members) slots.push({ id, state: PENDING, result: undefined, promise: null, resolve: null, reject: null });
    this.slots = slots;
    this.unsettled = slots.length;
    const early = this.early;
    this.early = null;
    if (early !== null) for (const r of early) this.settle(r.member, r.ok, r.value);
    const waiters = this.repliesWaiters;
    this.repliesWaiters = null;
    if (waiters !== null) for (const w of waiters) w.resolve(this.replyMap() as never);
    this.wakeAll();
  }

  /** A member's reply (the value decoded, or an error record when the method threw). */
  reply(member: number, ok: boolean, value: unknown): void {
    if (this.members === null) {
      const early = (this.early ??= []);
      const at = early.findIndex((r) => r.member === member);
      if (at >= 0) early[at] = { member, ok, value }; // the latest counts
      else early.push({ member, ok, value });
      return;
    }
    this.settle(member, ok, value);
  }

  /**
   * The member acknowledged the call: `delivered` resolves (if it was delivered here; otherwise it
   * stays pending until the call fails, e.g. by the group's sweep).
   */
  resolve(): void {
    if (this.deliveredState !== PENDING || this.members === null) return;
    this.deliveredState = FULFILLED;
    if (this.deliveredResolve !== null) this.deliveredResolve(this.deliveredCall());
    this.deliveredResolve = this.deliveredReject = null;
    this.wakeAll();
  }

  /** The acknowledgement failed: the call fails as a whole. */
  reject(err: Error): void {
    this.fail(err);
  }

  private settle(member: number, ok: boolean, value: unknown): void {
    let s: Slot<R> | undefined;
    for (const x of this.slots) if (x.id === member) s = x;
    if (s === undefined || s.state !== PENDING) return;
    if (ok) this.settleSlot(s, FULFILLED, value);
    else {
      const e = value as { code?: string; message?: string; name?: string };
      this.settleSlot(s, REJECTED, new RemoteError(String(e?.code ?? 'ERR_RPC_HANDLER'), String(e?.message ?? 'the method failed'), String(e?.name ?? 'Error')));
    }
    this.wakeAll();
  }

  private settleSlot(s: Slot<R>, state: State, result: unknown): void {
    s.state = state;
    s.result = result;
    this.unsettled--;
    if (s.resolve !== null) {
      if (state === FULFILLED) s.resolve(result as R);
      else s.reject!(result as Error);
      s.resolve = s.reject = null;
    }
  }

  /** Members gone in view `vid`: their replies will never come. */
  removed(present: ReadonlySet<number>, vid: number): void {
    let changed = false;
    for (const s of this.slots) {
      if (s.state === PENDING && !present.has(s.id)) {
        this.settleSlot(s, REJECTED, new NodeRemovedError(s.id, vid));
        changed = true;
      }
    }
    if (changed) this.wakeAll();
  }

  /** The call failed as a whole (never sent, timed out, no quorum): every reply fails with it. */
  fail(err: Error): void {
    if (this.deliveredState === PENDING) {
      this.deliveredState = REJECTED;
      this.deliveredError = err;
      if (this.deliveredReject !== null) this.deliveredReject(err);
      this.deliveredResolve = this.deliveredReject = null;
    }
    if (this.members === null && this.failedEarly === null) {
      this.failedEarly = err;
      const waiters = this.repliesWaiters;
      this.repliesWaiters = null;
      if (waiters !== null) for (const w of waiters) w.reject(err);
    }
    for (const s of this.slots) if (s.state === PENDING) this.settleSlot(s, REJECTED, err);
    this.wakeAll();
  }

  /** True once every reply is settled (the group forgets the call). */
  get done(): boolean {
    return this.members !== null && this.unsettled === 0;
  }

  // ---- internals ---------------------------------------------------------------------------------

  /** What `delivered` resolves with, made when first asked for (most callers only await all()). */
  private deliveredCall(): DeliveredCall {
    return (this.deliveredValue ??= { version: this.version, members: this.members!.slice() });
  }

  private replyMap(): Map<number, Promise<R>> {
    const out = new Map<number, Promise<R>>();
    for (const s of this.slots) {
      if (s.promise === null) {
        if (s.state === PENDING) {
          s.promise = new Promise<R>((res, rej) => {
            s.resolve = res;
            s.reject = rej;
          });
          s.promise.catch(() => {}); // a reply nobody asks for must not be an unhandled rejection
        } else s.promise = settledPromise(s);
      }
      out.set(s.id, s.promise);
    }
    return out;
  }

  private wakeAll(): void {
    const waiters = this.allWaiters;
    if (waiters === null) return;
    let n = 0;
    for (const w of waiters) if (!this.tryAll(w)) waiters[n++] = w;
    waiters.length = n;
    if (n === 0) this.allWaiters = null;
  }

  /**
   * Settles an all() caller once its outcome is known, as awaiting each reply in member order and
   * then `delivered` would: the first failure among the replies once those before it are in, else
   * the acknowledgement's.
   */
  private tryAll(w: Waiter): boolean {
    if (this.failedEarly !== null) {
      w.reject(this.failedEarly);
      return true;
    }
    if (this.members === null) return false;
    for (const s of this.slots) {
      if (s.state === PENDING) return false;
      if (s.state === REJECTED) {
        w.reject(s.result as Error);
        return true;
      }
    }
    if (this.deliveredState === PENDING) return false;
    if (this.deliveredState === REJECTED) w.reject(this.deliveredError!);
    else {
      const out = new Map<number, R>();
      for (const s of this.slots) out.set(s.id, s.result as R);
      w.resolve(out as never);
    }
    return true;
  }
}
