/**
 * The updates one member sends to one shard, across views. An update is acknowledged (its promise
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
  /** Resolves once in flight; rejects with ERR_MULTICAST_WEDGED/CLOSED when the view ends first. */
  send(payload: Buffer): Promise<number>;
}

interface Outgoing {
  payload: Buffer;
  resolve: (at: DeliveredAt) => void;
  reject: (e: Error) => void;
  deadline_ms: number;
  /** Handed to the multicast of view `submittedIn` and not yet delivered. */
  submitted: boolean;
  submittedIn: number;
}

export class Outbox {
  private entries: Outgoing[] = [];

  constructor(private readonly max_pending: number) {}

  get length(): number {
    return this.entries.length;
  }

  /** Queues an update; it fails with ERR_MEMBERSHIP_TIMEOUT if not handed over by `deadline_ms`. */
  add(payload: Buffer, deadline_ms: number): Promise<DeliveredAt> {
    if (this.entries.length >= this.max_pending) {
      return Promise.reject(new TempestError('ERR_MEMBERSHIP_BACKPRESSURE', `${this.entries.length} updates already wait for delivery in this shard`));
    }
    return new Promise<DeliveredAt>((resolve, reject) => {
      this.entries.push({ payload, resolve, reject, deadline_ms, submitted: false, submittedIn: -1 });
    });
  }

  /** Hands waiting updates to the multicast of view `vid`, with at most `limit` of ours in flight. */
  pump(sink: UpdateSink, vid: number, limit: number): void {
    let inFlight = 0;
    for (const o of this.entries) {
      if (o.submitted) {
        inFlight++;
        continue;
      }
      if (inFlight >= limit) break;
      o.submitted = true;
      o.submittedIn = vid;
      inFlight++;
      sink.send(o.payload).catch((err: TempestError) => {
        // The view ended before it went out: it goes again in the next view.
        if (err.code === 'ERR_MULTICAST_WEDGED' || err.code === 'ERR_MULTICAST_CLOSED') {
          if (o.submittedIn === vid) o.submitted = false;
        } else {
          const i = this.entries.indexOf(o);
          if (i >= 0) this.entries.splice(i, 1);
          o.reject(err);
        }
      });
    }
  }

  /**
   * Our oldest update was delivered here: it leaves the outbox (it is never sent again) and its
   * sender is answered through the returned Settle. `more` is true when updates wait to be handed over.
   */
  delivered(): { settle: Settle; more: boolean } {
    const o = this.entries.shift();
    assert(o !== undefined && o.submitted, 'our deliveries match our sends in order');
    return { settle: { resolve: o.resolve, reject: o.reject }, more: this.entries.length > 0 && !this.entries[this.entries.length - 1]!.submitted };
  }

  /** A new view: nothing still here was delivered in the old one, so all of it goes again. */
  resubmitAll(): void {
    for (const o of this.entries) o.submitted = false;
  }

  /** Rejects the updates not handed over by their deadline. */
  expire(now_ms: number, error: () => TempestError): void {
    this.entries = this.entries.filter((o) => {
      if (o.submitted || o.deadline_ms > now_ms) return true;
      o.reject(error());
      return false;
    });
  }

  /** Rejects everything: ones in flight with an unknown outcome (the others may have delivered them). */
  failAll(error: () => TempestError): void {
    for (const o of this.entries.splice(0)) {
      o.reject(o.submitted ? new TempestError('ERR_MEMBERSHIP_OUTCOME_UNKNOWN', `${error().message}; this update was in flight and may have been delivered by the others`) : error());
    }
  }

  /** Moves every update of `other` (none handed over yet) behind ours. */
  absorb(other: Outbox): void {
    assert(other.entries.every((o) => !o.submitted), 'only updates not yet handed over move');
    this.entries.push(...other.entries.splice(0));
  }
}
