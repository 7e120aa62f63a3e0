/**
 * Fields of replicated objects whose every update is a version: Persistent<T> (logged to disk by
 * a LogStore) and Volatile<T> (same API, logged in memory by a MemoryLogStore).
 *
 * The application reads and changes `value` inside its ordered methods; after each delivered
 * update the framework calls commit(version, timestamp) on EVERY field of the object, changed or
 * not (as Derecho does), so all fields of an object share the same versions and any version can
 * be read back consistently across fields.
 *
 * Two modes:
 *   - value mode (default): each entry is the whole encoded value. Reads of the past are one
 *     entry read + decode.
 *   - delta mode (`opts.delta`): each entry is the change since the previous commit (empty when
 *     nothing changed), and the log keeps a base (a full value as of some version). The current
 *     value is base + replay of the deltas after it. Reading the past costs a replay from the
 *     base (or from the start of the log when the base is newer than the version asked for):
 *     O(entries between the two), plus one decode of the base. When retention wants to trim
 *     entries the base does not cover, the field writes a newer base in the background (rebuilt
 *     from the log at the last version retention wants to drop), then lets retention proceed.
 */
import { layerLogger, type Logger } from '../util/log.js';
import { TempestError } from '../util/errors.js';
import type { Hlc } from './hlc.js';
import type { Log } from './log.js';
import { MemoryLogStore } from './memory-log-store.js';
import { NO_VERSION, type Version } from './version.js';

export interface ValueCodec<T> {
  encode(v: T): Buffer;
  decode(b: Buffer): T;
}

export interface DeltaSupport<T> {
  /**
   * The changes made since the last commit, or null when none; taking them starts a new
   * (empty) set of changes. In pieces, they are logged as their concatenation and may be views
   * of memory valid only until the commit returns (the log copies them).
   */
  takeDelta(current: T): Buffer | readonly Buffer[] | null;
  /**
   * Applies a delta to `value` (which it may change in place) and returns the result. Must not
   * count as a change for takeDelta (it replays history).
   */
  applyDelta(value: T, delta: Buffer): T;
}

export interface VersionedFieldOptions<T> {
  delta?: DeltaSupport<T>;
}

const EMPTY = Buffer.alloc(0);

let defaultLogger: Logger | undefined;
function fieldLogger(): Logger {
  defaultLogger ??= layerLogger('persistence');
  return defaultLogger;
}

/** What Persistent<T> and Volatile<T> share; the framework tells them apart with instanceof. */
export abstract class VersionedField<T> {
  protected log: Log | null = null;
  private current: T;
  private readonly delta: DeltaSupport<T> | undefined;
  private baseWriting: Promise<void> | null = null;
  /** The base's bytes as last read (reads of the past decode them again; the file is read once). */
  private baseCache: { log: Log; version: Version; bytes: Buffer } | null = null;

  constructor(
    private readonly initial: () => T,
    readonly codec: ValueCodec<T>,
    opts: VersionedFieldOptions<T> = {},
  ) {
    this.current = initial();
    this.delta = opts.delta;
  }

  /** Whether entries are deltas. */
  get deltaMode(): boolean {
    return this.delta !== undefined;
  }

  /** The current value (what the ordered methods applied so far). */
  get value(): T {
    return this.current;
  }

  /**
   * Replaces the value (value mode). In delta mode the DeltaSupport only sees changes made to
   * the value in place, so a replacement would be lost: ERR_PERSIST_DELTA_ASSIGN.
   */
  set value(v: T) {
    if (this.delta !== undefined) throw new TempestError('ERR_PERSIST_DELTA_ASSIGN', 'a delta-mode field is changed in place, not assigned');
    this.current = v;
  }

  /**
   * Binds the field to its log and loads the current value from it: value mode decodes the
   * newest entry, delta mode replays the deltas after the base. May be called again (after a
   * state transfer replaced the log's contents).
   */
  async attach(log: Log): Promise<void> {
    if (this.log !== null && this.log !== log) this.log.onBaseWanted(null);
    this.log = log;
    this.baseCache = null; // the log's contents may have been replaced (state transfer)
    if (this.delta !== undefined) {
      log.requireBase = true;
      log.onBaseWanted((v) => this.writeBase(v));
      const v = await this.reconstruct(log.latestVersion);
      if (v === undefined) {
        throw new TempestError('ERR_PERSIST_NO_BASE', `a delta log whose history was trimmed has no base to rebuild the value from (latest version ${log.latestVersion})`);
      }
      this.current = v;
      // Whatever the replay left in the change tracker is history, not a change.
      this.delta.takeDelta(this.current);
    } else {
      const e = await log.latest();
      this.current = e === undefined ? this.initial() : this.codec.decode(e.payload);
    }
  }

  /** Records the current value (or its delta) as version `version`. Synchronous: the log buffers it. */
  commit(version: Version, timestamp: Hlc): void {
    const log = this.attached();
    if (this.delta !== undefined) log.append(version, timestamp, this.delta.takeDelta(this.current) ?? EMPTY);
    else log.append(version, timestamp, this.codec.encode(this.current));
  }

  /** Makes every committed version durable; resolves with the newest durable version. */
  flush(): Promise<Version> {
    return this.attached().flush();
  }

  get latestVersion(): Version {
    return this.log?.latestVersion ?? NO_VERSION;
  }

  get persistedVersion(): Version {
    return this.log?.persistedVersion ?? NO_VERSION;
  }

  /** The value as of version v (after every update <= v); undefined before the log's history or when trimmed. */
  async getAtVersion(v: Version): Promise<T | undefined> {
    const log = this.attached();
    if (this.delta === undefined) {
      const e = await log.getAtVersion(v);
      return e === undefined ? undefined : this.codec.decode(e.payload);
    }
    const base = log.baseVersion;
    if (base !== null && v >= base) return this.reconstruct(v);
    const e = await log.getAtVersion(v);
    return e === undefined ? undefined : this.reconstruct(e.version);
  }

  /** The value as of the entry at log index i. */
  async getByIndex(i: number): Promise<T | undefined> {
    const e = await this.attached().getByIndex(i);
    if (e === undefined) return undefined;
    return this.delta === undefined ? this.codec.decode(e.payload) : this.reconstruct(e.version);
  }

  /** The value as of time t: after the newest update with timestamp <= t. */
  async getByTime(t: Hlc): Promise<T | undefined> {
    const e = await this.attached().getByTime(t);
    if (e === undefined) return undefined;
    return this.delta === undefined ? this.codec.decode(e.payload) : this.reconstruct(e.version);
  }

  /** Delta mode: the delta recorded at exactly version v (empty when that update changed nothing). */
  async getDeltaAtVersion(v: Version): Promise<Buffer | undefined> {
    if (this.delta === undefined) throw new TempestError('ERR_PERSIST_NOT_DELTA', 'getDeltaAtVersion() needs a delta-mode field');
    const e = await this.attached().getByVersion(v);
    return e?.payload;
  }

  private attached(): Log {
    if (this.log === null) throw new TempestError('ERR_PERSIST_NOT_ATTACHED', 'the field is not attached to a log yet');
    return this.log;
  }

  /**
   * Delta mode: the value after every update <= v, from the base (when it is not newer than v)
   * or from the initial value (when the log's history is complete). Cost: one decode plus one
   * applyDelta per entry replayed.
   */
  private async reconstruct(v: Version): Promise<T | undefined> {
    const log = this.attached();
    const delta = this.delta!;
    const base = await this.readBase(log);
    let value: T;
    let from: Version;
    if (base !== null && base.version <= v) {
      value = this.codec.decode(base.bytes);
      from = base.version;
    } else if (log.trimmedVersion < 0n) {
      value = this.initial();
      from = NO_VERSION;
    } else {
      return undefined;
    }
    if (v > from) {
      for await (const e of log.entries(from, v)) {
        if (e.payload.length > 0) value = delta.applyDelta(value, e.payload);
      }
    }
    return value;
  }

  private async readBase(log: Log): Promise<{ version: Version; bytes: Buffer } | null> {
    const c = this.baseCache;
    if (c !== null && c.log === log && c.version === log.baseVersion) return c;
    const base = await log.getBase();
    this.baseCache = base === null ? null : { log, version: base.version, bytes: base.bytes };
    return base;
  }

  /** Retention wants to drop entries up to `wanted`: write a base there (one at a time, in the background). */
  private writeBase(wanted: Version): void {
    if (this.baseWriting !== null) return;
    const log = this.log;
    if (log === null) return;
    const base = log.baseVersion;
    if (base !== null && base >= wanted) return;
    this.baseWriting = (async () => {
      const value = await this.reconstruct(wanted);
      if (value === undefined) throw new TempestError('ERR_PERSIST_NO_BASE', `cannot rebuild the value at version ${wanted}`);
      if (this.log !== log) return; // re-attached meanwhile
      const bytes = this.codec.encode(value);
      await log.setBase(wanted, bytes);
      if (this.log === log) this.baseCache = { log, version: wanted, bytes };
      await log.runRetention();
    })()
      .catch((err: unknown) => fieldLogger().warn({ err: (err as Error).message, version: String(wanted) }, 'writing a log base failed; retention waits'))
      .finally(() => {
        this.baseWriting = null;
      });
  }

  /** Resolves once a background base write (if any) has finished (for tests and shutdown). */
  async settled(): Promise<void> {
    while (this.baseWriting !== null) await this.baseWriting;
  }
}

/** A field logged to disk (the framework attaches a LogStore). */
export class Persistent<T> extends VersionedField<T> {}

/** A field whose versions are kept in memory only (a MemoryLogStore unless the framework gives another). */
export class Volatile<T> extends VersionedField<T> {
  override attach(log: Log = new MemoryLogStore()): Promise<void> {
    return super.attach(log);
  }
}
