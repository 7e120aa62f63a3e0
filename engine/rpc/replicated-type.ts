/**
 * Declaring a replicated class (seed 003, "Replicated Objects"): which methods change state and
 * are called through the ordered multicast (every replica runs them in the same order), and which
 * only read and are called point to point on one replica. The declaration is checked by the
 * TypeScript compiler: method names must be methods of the class, and calls through a Group are
 * typed by their parameters and results.
 *
 *   class Cache { readonly data = new Persistent(...); put(k: string, v: string) {...}; get(k: string) {...} }
 *   const CacheType = replicatedType({ name: 'Cache', create: () => new Cache(), ordered: ['put'], p2p: ['get'] });
 *
 * Ordered methods must be deterministic and synchronous: they run at delivery, in order, on every
 * replica, and what they change is what the Persistent fields log. p2p methods may be async (reads
 * of a Persistent field's history are).
 */
import { Persistent, Volatile } from '../persistence/persistent.js';
import { TempestError } from '../util/errors.js';

/** The names of T's methods. */
export type MethodNames<T> = { [K in keyof T & string]: T[K] extends (...args: never[]) => unknown ? K : never }[keyof T & string];
export type MethodArgs<T, K extends keyof T> = T[K] extends (...args: infer A) => unknown ? A : never;
export type MethodResult<T, K extends keyof T> = T[K] extends (...args: never[]) => infer R ? Awaited<R> : never;

export interface ReplicatedType<T extends object = object, O extends string = string, P extends string = string> {
  /** The subgroup type's name (layout, log directories, the wire). */
  readonly name: string;
  /** A fresh replica (its Persistent and Volatile fields hold their initial values). */
  create(): T;
  /** State-changing methods, called with orderedSend. */
  readonly ordered: readonly O[];
  /** Read-only methods, called with p2pSend. */
  readonly p2p: readonly P[];
  /**
   * Ordered methods whose Buffer arguments are views into the delivery buffer, valid only during
   * the call: they copy what they keep. A 1 MiB chunk is then not copied out of the multicast
   * buffer once more before the method copies it into its log entry.
   */
  readonly borrowing: ReadonlySet<string>;
}

/** The update an ordered method is applied as (set by the framework around the call). */
export interface UpdateContext {
  /** `(view id << 32) | sequence`: the version every field of the object records for this update. */
  readonly version: bigint;
  /** The update's HLC timestamp (the same on every replica). */
  readonly timestamp: bigint;
}

let current: UpdateContext | null = null;

/**
 * The version and timestamp of the update being applied, for an ordered method that records them
 * in its state (a store keeps each key's history by version and time). Only valid inside an
 * ordered method: ordered methods are synchronous, so one slot suffices.
 */
export function currentUpdate(): UpdateContext {
  if (current === null) throw new TempestError('ERR_RPC_NO_UPDATE', 'currentUpdate() is only valid inside an ordered method');
  return current;
}

/** @internal Runs `fn` as the update (version, timestamp); used by the replica that applies it. */
export function withUpdate<R>(version: bigint, timestamp: bigint, fn: () => R): R {
  current = { version, timestamp };
  try {
    return fn();
  } finally {
    current = null;
  }
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** Declares a replicated class; the lists are checked against a fresh instance. */
export function replicatedType<T extends object, const O extends MethodNames<T>, const P extends MethodNames<T>>(spec: {
  name: string;
  create: () => T;
  ordered: readonly O[];
  p2p: readonly P[];
  /** Ordered methods that only read their Buffer arguments during the call (see ReplicatedType). */
  borrowing?: readonly O[];
}): ReplicatedType<T, O, P> {
  if (!NAME.test(spec.name)) throw new TempestError('ERR_RPC_DECLARATION', `a replicated type's name is 1..64 letters, digits, _ or -, starting with a letter, not "${spec.name}"`);
  const seen = new Set<string>();
  for (const m of [...spec.ordered, ...spec.p2p]) {
    if (seen.has(m)) throw new TempestError('ERR_RPC_DECLARATION', `method "${m}" of ${spec.name} is listed twice`);
    seen.add(m);
  }
  if (spec.ordered.length > 0xffff || spec.p2p.length > 0xffff) throw new TempestError('ERR_RPC_DECLARATION', `${spec.name} declares too many methods`);
  const probe = spec.create() as Record<string, unknown>;
  for (const m of seen) {
    if (typeof probe[m] !== 'function') throw new TempestError('ERR_RPC_DECLARATION', `${spec.name}.${m} is not a method of the objects create() returns`);
  }
  // Only versioned fields are logged, sent to members new to a shard and restored after a
  // restart: state kept anywhere else would silently differ between replicas.
  if (!Object.values(probe).some((v) => v instanceof Persistent || v instanceof Volatile)) {
    throw new TempestError('ERR_RPC_DECLARATION', `${spec.name} has no Persistent or Volatile field: keep a replicated object's state in such fields (they are logged, transferred to new members and restored after a restart)`);
  }
  for (const m of spec.borrowing ?? []) {
    if (!spec.ordered.includes(m)) throw new TempestError('ERR_RPC_DECLARATION', `${spec.name}.${m} borrows its arguments but is not an ordered method`);
  }
  return Object.freeze({ name: spec.name, create: spec.create, ordered: Object.freeze([...spec.ordered]), p2p: Object.freeze([...spec.p2p]), borrowing: new Set<string>(spec.borrowing ?? []) });
}
