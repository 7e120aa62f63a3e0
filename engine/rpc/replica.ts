/**
 * One replica of a replicated object hosted by this member: the object, the logs of its
 * Persistent and Volatile fields, and the table that makes an external client's retried call
 * idempotent. Ordered calls are applied here in delivery order; every delivered call becomes a
 * version of every field (version = vid << 32 | index, timestamp from the hybrid clock, the same on
 * every replica because it is a function of the delivered sequence).
 *
 * Logs live in `<file_path>/<type>.<subgroup index>.<shard>/<field>/` (persistence/log-store.ts).
 * State transfer sends, per field, the log suffix the fetcher lacks (`since`); the fetcher cuts
 * its log back to the last version both hold and appends the rest.
 *
 * In a durable replica the client table is durable too, so that a call retried across a total
 * restart is still applied once: every flush also appends, to the log `#clients`, one entry at the
 * last applied version holding the client calls applied since the previous flush (a window), and
 * retention keeps a snapshot of the whole table as that log's base. Recovery cuts the fields back
 * to the last window boundary they reach, so every update kept has its client call recorded.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { LogStore, MemoryLogStore, type Log } from '../persistence/log-store.js';
import { Persistent, Volatile } from '../persistence/persistent.js';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { type CallHeader } from './call-header.js';
import { decode, encode } from './codec.js';
import { toErrorRecord } from './errors.js';
import { type ReplicatedType, withUpdate } from './replicated-type.js';

/** Replies remembered per external client (its most recent request numbers). */
const DEDUP_PER_CLIENT = 256;
/** External clients remembered per replica; the least recently seen is forgotten first. */
const DEDUP_CLIENTS = 4096;
/** Versions a Volatile field keeps in memory at most (whatever [PERS] retain_entries says). */
const VOLATILE_RETAIN_ENTRIES = 100_000;
/** The client table's log, beside the fields' logs (no property name a class declares looks so). */
const CLIENTS_LOG = '#clients';
/** Windows the client table's log keeps before retention snapshots the table into its base. */
const CLIENTS_RETAIN_ENTRIES = 65_536;
/** State transfer records hold entries up to about this many bytes (each side holds one at a time). */
const STATE_RECORD_BYTES = 1024 * 1024;
/** What an entry adds to its payload in a state record (version, timestamp, framing), roughly. */
const STATE_ENTRY_OVERHEAD_BYTES = 32;
/** One client call in a window: client id, request number, outcome. */
type ClientRecord = [bigint, bigint, Buffer];
/** The client table as it is encoded (snapshots, state transfer): per client, its remembered [request, outcome] pairs. */
type ClientTable = [bigint, [bigint, Buffer][]][];

export interface PersistenceSettings {
  file_path: string;
  segment_size_bytes?: number;
  retain_entries: number;
  retain_ms: number;
  /** Windows the client table's log keeps before its base is rewritten (tests make it small). */
  clients_retain_entries?: number;
}

type Field = Persistent<unknown> | Volatile<unknown>;

/** The outcome of one call: its value or the error it threw, encoded as it travels. */
export interface CallOutcome {
  ok: boolean;
  /** The value (ok) or an ErrorRecord. */
  value: unknown;
}

/**
 * Outcomes of methods that return nothing or a constant, encoded once: most updates (Cache.put)
 * return undefined, and every replica encodes an outcome per update. Never written to (they are
 * shared by the dedup table and the reply queues).
 */
const OK_UNDEFINED = encode([true, undefined]);
const OK_NULL = encode([true, null]);
const OK_TRUE = encode([true, true]);
const OK_FALSE = encode([true, false]);

function constantOutcome(value: unknown): Buffer | undefined {
  if (value === undefined) return OK_UNDEFINED;
  if (value === null) return OK_NULL;
  if (value === true) return OK_TRUE;
  if (value === false) return OK_FALSE;
  return undefined;
}

/** An encoded outcome as [ok, value or ErrorRecord]; the common `[true, undefined]` without a decode. */
export function decodeOutcome(outcome: Buffer): [boolean, unknown] {
  if (outcome.length === OK_UNDEFINED.length && outcome[0] === OK_UNDEFINED[0] && outcome[1] === OK_UNDEFINED[1] && outcome[2] === OK_UNDEFINED[2]) return [true, undefined];
  return decode(outcome) as [boolean, unknown];
}

export function replicaDirName(type: string, subgroupIndex: number, shard: number): string {
  return `${type}.${subgroupIndex}.${shard}`;
}

/** The fields of an object that log versions, in declaration order. */
export function versionedFields(obj: object): { name: string; field: Field }[] {
  return Object.entries(obj)
    .filter(([, v]) => v instanceof Persistent || v instanceof Volatile)
    .map(([name, field]) => ({ name, field: field as Field }));
}

/** Whether objects of this type have Persistent fields (their subgroup is durable). */
export function isDurableType(type: ReplicatedType): boolean {
  return versionedFields(type.create()).some((f) => f.field instanceof Persistent);
}

export class Replica {
  readonly obj: Record<string, unknown>;
  readonly durable: boolean;
  private readonly fields: { name: string; field: Field; log: Log }[];
  /** Last version applied here (-1n: none). */
  lastVersion = -1n;
  /** Timestamp of the last version applied here. */
  lastTimestamp = 0n;
  /** client -> (seq -> outcome), in recency order. Deterministic: every replica applies the same calls. */
  private readonly dedup = new Map<bigint, Map<bigint, Buffer>>();
  /** The client table's log (durable replicas only). */
  private readonly clients: Log | null;
  /** Client calls applied since the last window was appended. */
  private window: ClientRecord[] = [];
  /** Version of the last window appended (or the base installed). */
  private windowVersion = -1n;
  /** Retention asked for a snapshot of the table (written with the next window). */
  private snapshotWanted = false;

  private constructor(
    readonly type: ReplicatedType,
    readonly subgroupIndex: number,
    readonly shard: number,
    obj: object,
    fields: { name: string; field: Field; log: Log }[],
    private readonly dir: string | null,
    private readonly max_reply_bytes: number,
    clients: Log | null,
    private readonly log: Logger,
  ) {
    this.obj = obj as Record<string, unknown>;
    this.fields = fields;
    this.durable = fields.some((f) => f.field instanceof Persistent);
    assert(this.durable === (clients !== null), 'a durable replica, and only one, logs its client table');
    this.clients = clients;
    clients?.onBaseWanted(() => (this.snapshotWanted = true));
  }

  /** Opens (or creates) the replica, loading its fields from their logs. */
  static async open(type: ReplicatedType, subgroupIndex: number, shard: number, pers: PersistenceSettings, log: Logger, max_reply_bytes = Infinity): Promise<Replica> {
    const obj = type.create();
    const found = versionedFields(obj);
    const dir = path.join(pers.file_path, replicaDirName(type.name, subgroupIndex, shard));
    if (found.some((f) => f.field instanceof Persistent)) await mkdir(dir, { recursive: true });
    const fields: { name: string; field: Field; log: Log }[] = [];
    let clients: Log | null = null;
    try {
      if (found.some((f) => f.name === CLIENTS_LOG)) throw new TempestError('ERR_RPC_TYPE', `${type.name} has a field named "${CLIENTS_LOG}", which is reserved`);
      for (const f of found) {
        const l: Log =
          f.field instanceof Persistent
            ? await LogStore.open({ dir: path.join(dir, f.name), durable: true, segment_size_bytes: pers.segment_size_bytes, retain_entries: pers.retain_entries, retain_ms: pers.retain_ms, log: log.child({ field: f.name }) })
            : new MemoryLogStore({ retain_entries: pers.retain_entries === 0 ? VOLATILE_RETAIN_ENTRIES : Math.min(pers.retain_entries, VOLATILE_RETAIN_ENTRIES) });
        fields.push({ name: f.name, field: f.field, log: l });
      }
      if (found.some((f) => f.field instanceof Persistent)) {
        clients = await LogStore.open({ dir: path.join(dir, CLIENTS_LOG), durable: true, segment_size_bytes: pers.segment_size_bytes, retain_entries: pers.clients_retain_entries ?? CLIENTS_RETAIN_ENTRIES, retain_ms: 0, log: log.child({ field: CLIENTS_LOG }) });
        clients.requireBase = true;
      }
    } catch (err) {
      for (const f of fields) await f.log.close().catch(() => {});
      await clients?.close().catch(() => {});
      throw err;
    }
    const r = new Replica(type, subgroupIndex, shard, obj, fields, found.length > 0 ? dir : null, max_reply_bytes, clients, log);
    try {
      await r.reconcileFields(log);
    } catch (err) {
      await r.close().catch(() => {});
      throw err;
    }
    return r;
  }

  /**
   * A crash between two fields' flushes can leave one log a version longer: all are cut back to
   * the shortest (that version was not acknowledged, as no member reported it persisted). They are
   * then cut back to the last window of the client table they reach, and the client table's log
   * after it: an update kept must have its client call recorded (else a retry would apply it
   * again), and what is cut was never acknowledged (persistedVersion counts the client log).
   */
  private async reconcileFields(log: Logger): Promise<void> {
    const durable = this.fields.filter((f) => f.field instanceof Persistent);
    if (durable.length > 0) {
      let min = durable[0]!.log.latestVersion;
      for (const f of durable) if (f.log.latestVersion < min) min = f.log.latestVersion;
      const clients = this.clients!;
      let boundary = -1n;
      if (min >= 0n) {
        const w = await clients.getAtVersion(min);
        const base = clients.baseVersion;
        if (w !== undefined) boundary = w.version;
        if (base !== null && base <= min && base > boundary) boundary = base;
      }
      if (clients.latestVersion > boundary || (clients.baseVersion ?? -1n) > boundary) {
        log.warn({ from: String(clients.latestVersion), to: String(boundary) }, 'cutting the client table log back to its fields');
        try {
          await clients.truncateAfter(boundary);
        } catch (err) {
          // Its base is newer and the history before it is gone (a state transfer that did not
          // finish): nothing before the base is known, so everything goes, and the transfer runs again.
          if ((err as TempestError).code !== 'ERR_PERSIST_TRIMMED') throw err;
          boundary = -1n;
          await clients.truncateAfter(-1n);
        }
      }
      await this.cutBack(durable, boundary, log);
      await this.replayClients(boundary);
    }
    await this.reload();
  }

  /** Rebuilds the client table from its log: the base (a snapshot), then the windows after it. */
  private async replayClients(upto: bigint): Promise<void> {
    const clients = this.clients!;
    this.dedup.clear();
    this.window = [];
    const base = await clients.getBase();
    let after = clients.trimmedVersion;
    if (base !== null && base.version <= upto) {
      this.loadClients(decode(Buffer.from(base.bytes)) as ClientTable);
      if (base.version > after) after = base.version;
    }
    for await (const e of clients.entries(after, upto)) {
      for (const [c, q, o] of decode(e.payload) as ClientRecord[]) if (this.lookup(c, q) === undefined) this.remember(c, q, Buffer.from(o));
    }
    this.windowVersion = upto;
  }

  private async cutBack(fields: { name: string; log: Log }[], min: bigint, log: Logger): Promise<void> {
    for (const f of fields) {
      if (f.log.latestVersion > min) {
        log.warn({ field: f.name, from: String(f.log.latestVersion), to: String(min) }, 'cutting a field log back to the shortest of its object');
        await f.log.truncateAfter(min);
      }
    }
  }

  private async reload(): Promise<void> {
    this.lastVersion = -1n;
    this.lastTimestamp = 0n;
    for (const f of this.fields) {
      await f.field.attach(f.log);
      const latest = await f.log.latest();
      if (latest !== undefined) {
        this.lastVersion = latest.version;
        if (latest.timestamp > this.lastTimestamp) this.lastTimestamp = latest.timestamp;
      }
    }
  }

  /** The last version this replica holds (what a state transfer starts after). */
  get localVersion(): bigint {
    return this.lastVersion;
  }

  /**
   * The last version every Persistent field has on disk, with the client calls up to it (the last
   * applied one when there are no Persistent fields).
   */
  get persistedVersion(): bigint {
    let min = this.lastVersion;
    for (const f of this.fields) if (f.field instanceof Persistent && f.log.persistedVersion < min) min = f.log.persistedVersion;
    if (this.clients !== null) {
      const c = this.clients.persistedVersion > (this.clients.baseVersion ?? -1n) ? this.clients.persistedVersion : (this.clients.baseVersion ?? -1n);
      if (c < min) min = c;
    }
    return min;
  }

  /**
   * Applies one delivered ordered call. `args` were decoded from the delivery; the method runs
   * synchronously (it must be deterministic), and every field then records the version.
   */
  apply(header: CallHeader, methodName: string, args: unknown[], version: bigint, timestamp: bigint): Buffer {
    assert(version > this.lastVersion, 'versions only grow');
    assert(timestamp > this.lastTimestamp, 'timestamps only grow');
    let outcome: Buffer | undefined;
    if (header.client !== 0n) outcome = this.lookup(header.client, header.seq); // a retried call: applied once, answered again
    if (outcome === undefined) {
      outcome = withUpdate(version, timestamp, () => this.run(methodName, args));
      if (header.client !== 0n) this.remember(header.client, header.seq, outcome);
    }
    // Replayed by replayClients() with the same lookup-then-remember, so the table comes back identical.
    if (header.client !== 0n && this.clients !== null) this.window.push([header.client, header.seq, outcome]);
    for (const f of this.fields) f.field.commit(version, timestamp);
    this.lastVersion = version;
    this.lastTimestamp = timestamp;
    return outcome;
  }

  private run(methodName: string, args: unknown[]): Buffer {
    try {
      const fn = this.obj[methodName] as (...a: unknown[]) => unknown;
      const value = fn.apply(this.obj, args);
      if (value instanceof Promise) {
        value.catch(() => {});
        throw new TempestError('ERR_RPC_ORDERED_ASYNC', `ordered method ${this.type.name}.${methodName} returned a promise; ordered methods must be synchronous`);
      }
      const out = constantOutcome(value) ?? encode([true, value], 'result');
      if (out.length > this.max_reply_bytes) {
        throw new TempestError('ERR_RPC_REPLY_TOO_LARGE', `${this.type.name}.${methodName} returned ${out.length} bytes, over [DERECHO] max_p2p_reply_payload_size (${this.max_reply_bytes} bytes); the call was applied`);
      }
      return out;
    } catch (err) {
      return encode([false, toErrorRecord(err)]);
    }
  }

  /** The remembered outcome of a client's call, if any; the client becomes the most recently seen. */
  private lookup(client: bigint, seq: bigint): Buffer | undefined {
    const seen = this.dedup.get(client);
    if (seen === undefined) return undefined;
    this.dedup.delete(client);
    this.dedup.set(client, seen); // most recently seen last
    return seen.get(seq);
  }

  private remember(client: bigint, seq: bigint, outcome: Buffer): void {
    let seen = this.dedup.get(client);
    if (seen === undefined) {
      if (this.dedup.size >= DEDUP_CLIENTS) this.dedup.delete(this.dedup.keys().next().value!);
      this.dedup.set(client, (seen = new Map()));
    }
    seen.set(seq, outcome);
    if (seen.size > DEDUP_PER_CLIENT) {
      let oldest = seq;
      for (const s of seen.keys()) if (s < oldest) oldest = s;
      seen.delete(oldest);
    }
  }

  /**
   * Writes what was applied (one write and fsync per durable field, and one for the window of
   * client calls); resolves with persistedVersion.
   */
  async flush(): Promise<bigint> {
    const clients = this.clients;
    let snapshot: Promise<void> | null = null;
    if (clients !== null && this.lastVersion > this.windowVersion) {
      // A window per flush, even an empty one: its version marks how far the fields may be kept.
      clients.append(this.lastVersion, this.lastTimestamp, encode(this.window));
      this.window = [];
      this.windowVersion = this.lastVersion;
      if (this.snapshotWanted) {
        this.snapshotWanted = false;
        snapshot = clients.setBase(this.windowVersion, encode(this.clientTable()));
      }
    }
    await Promise.all([...this.fields.map((f) => f.log.flush()), ...(clients !== null ? [clients.flush()] : []), ...(snapshot !== null ? [snapshot] : [])]);
    return this.persistedVersion;
  }

  /** The client table now, in recency order (a copy: later calls do not change it). */
  private clientTable(): ClientTable {
    return [...this.dedup].map(([c, m]) => [c, [...m]]);
  }

  /** Replaces the client table (outcomes are copied out of the buffer they were decoded from). */
  private loadClients(table: ClientTable): void {
    this.dedup.clear();
    for (const [c, m] of table) this.dedup.set(c, new Map(m.map(([q, o]) => [q, Buffer.from(o)])));
  }

  // ---- state transfer ----------------------------------------------------------------------

  /**
   * Captures the state now (end of a view): the fields' logs up to the last applied version and
   * the client table. Produced lazily for each fetcher from its `since`, as records (see
   * stateRecords) of about STATE_RECORD_BYTES, so neither side holds a whole log.
   */
  capture(): (since: bigint) => AsyncIterable<Buffer> {
    const upto = this.lastVersion;
    const lastTimestamp = this.lastTimestamp;
    const table = this.clientTable();
    return (since: bigint) => this.stateRecords(since, upto, lastTimestamp, table);
  }

  /**
   * The records of a state: ['state', upto, lastTimestamp, client table, field count], then per
   * field ['field', name, keep, base] and its entries in ['entries', [[v, ts, payload], ...]]
   * batches, then ['end'] (install() refuses a state without it).
   */
  private async *stateRecords(since: bigint, upto: bigint, lastTimestamp: bigint, table: ClientTable): AsyncGenerator<Buffer> {
    yield encode(['state', upto, lastTimestamp, table, this.fields.length]);
    for (const f of this.fields) {
      // The fetcher keeps its log up to the last version both hold (logs of one shard are
      // prefixes of one sequence, so that is the latest entry here at or before its last) and
      // takes the rest; when nothing here is that old (trimmed), it starts over from our base.
      const at = since >= 0n ? await f.log.getAtVersion(since) : undefined;
      const keep = at === undefined ? -1n : at.version;
      const base = at === undefined ? await f.log.getBase() : null;
      const after = at === undefined ? beforeFirstReadable(f.log) : at.version;
      yield encode(['field', f.name, keep, base === null ? null : [base.version, base.bytes]]);
      let batch: [bigint, bigint, Buffer][] = [];
      let bytes = 0;
      for await (const e of f.log.entries(after, upto)) {
        batch.push([e.version, e.timestamp, Buffer.from(e.payload)]);
        bytes += e.payload.length + STATE_ENTRY_OVERHEAD_BYTES;
        if (bytes >= STATE_RECORD_BYTES) {
          yield encode(['entries', batch]);
          batch = [];
          bytes = 0;
        }
      }
      if (batch.length > 0) yield encode(['entries', batch]);
    }
    yield encode(['end']);
  }

  /**
   * Replaces this replica's state by the records a member of the shard streams (stateRecords).
   * Each batch of entries is flushed as it comes. If the stream breaks, the replica is brought back
   * to a consistent state from its logs (as after a crash) and the error is rethrown: the fetch is
   * retried from the new localVersion.
   */
  async install(records: AsyncIterable<Buffer>): Promise<void> {
    try {
      await this.installRecords(records);
    } catch (err) {
      await this.reconcileFields(this.log);
      throw err;
    }
  }

  private async installRecords(records: AsyncIterable<Buffer>): Promise<void> {
    const bad = (why: string) => new TempestError('ERR_STATE_TRANSFER', `a malformed state for ${this.type.name}: ${why}`);
    let head: { upto: bigint; lastTimestamp: bigint; table: ClientTable } | null = null;
    let field: { name: string; log: Log } | null = null;
    let ended = false;
    for await (const record of records) {
      if (ended) throw bad('records after its end');
      const r = decode(record) as unknown[];
      if (!Array.isArray(r)) throw bad('a record is not a list');
      if (r[0] === 'state' && head === null) {
        head = { upto: r[1] as bigint, lastTimestamp: r[2] as bigint, table: r[3] as ClientTable };
      } else if (r[0] === 'field' && head !== null) {
        const [, name, from, base] = r as [string, string, bigint, [bigint, Buffer] | null];
        const f = this.fields.find((x) => x.name === name);
        if (f === undefined) throw new TempestError('ERR_STATE_TRANSFER', `the state names a field "${name}" that ${this.type.name} does not have`);
        await f.log.truncateAfter(from);
        if (base !== null) await f.log.setBase(base[0], Buffer.from(base[1]));
        field = f;
      } else if (r[0] === 'entries' && field !== null) {
        for (const [v, ts, payload] of r[1] as [bigint, bigint, Buffer][]) if (v > field.log.latestVersion) field.log.append(v, ts, payload);
        await field.log.flush();
      } else if (r[0] === 'end' && head !== null) {
        ended = true;
      } else throw bad(`unexpected record "${String(r[0])}"`);
    }
    if (head === null || !ended) throw new TempestError('ERR_STATE_TRANSFER', `the state of ${this.type.name} ended early`);
    const { upto, lastTimestamp, table } = head;
    this.loadClients(table);
    if (this.clients !== null) {
      // After the fields: a crash in between leaves the fields past the client log, and recovery
      // cuts them back (the transfer then runs again).
      await this.clients.truncateAfter(-1n);
      if (upto >= 0n) await this.clients.setBase(upto, encode(table));
      this.window = [];
      this.windowVersion = upto;
    }
    await this.reload();
    if (this.fields.length === 0) {
      this.lastVersion = upto;
      this.lastTimestamp = lastTimestamp;
    }
  }

  /**
   * What each field's log holds: entries, first and last version, and a hash over (version,
   * timestamp, payload) of every entry, so tests and tools can compare logs across members.
   */
  async logDigest(): Promise<LogDigest[]> {
    const out: LogDigest[] = [];
    for (const f of this.fields) out.push({ field: f.name, ...(await digestLog(f.log)) });
    return out;
  }

  async close(): Promise<void> {
    for (const f of this.fields) await f.log.close();
    await this.clients?.close();
  }

  /** Removes the replica's logs (this member no longer holds the shard, or [PERS] reset). */
  async destroy(): Promise<void> {
    await this.close();
    if (this.dir !== null) await rm(this.dir, { recursive: true, force: true });
  }
}

/** The replicas this member has logs of, from a previous run: [type, subgroup index, shard]. */
export async function existingReplicas(file_path: string): Promise<[string, number, number][]> {
  let names: string[];
  try {
    names = await readdir(file_path);
  } catch {
    return [];
  }
  const out: [string, number, number][] = [];
  for (const n of names) {
    const m = /^([A-Za-z][A-Za-z0-9_-]{0,63})\.(\d+)\.(\d+)$/.exec(n);
    if (m) out.push([m[1]!, Number(m[2]), Number(m[3])]);
  }
  return out;
}

export interface LogDigest {
  field: string;
  entries: number;
  first: string;
  last: string;
  sha256: string;
}

/** Entries, first and last version, and a sha256 over (version, timestamp, payload) of every readable entry of `log`. */
export async function digestLog(log: Log): Promise<Omit<LogDigest, 'field'>> {
  const h = createHash('sha256');
  const head = Buffer.alloc(16);
  let n = 0;
  let first = -1n;
  let last = -1n;
  for await (const e of log.entries(beforeFirstReadable(log))) {
    head.writeBigInt64LE(e.version, 0);
    head.writeBigUInt64LE(e.timestamp, 8);
    h.update(head).update(e.payload);
    if (n === 0) first = e.version;
    last = e.version;
    n++;
  }
  return { entries: n, first: first.toString(), last: last.toString(), sha256: h.digest('hex') };
}

/** A version just below the oldest entry still readable (retention may have trimmed older ones). */
function beforeFirstReadable(log: Log): bigint {
  return log.trimmedVersion;
}
