/**
 * What every log of versioned updates offers (the durable LogStore and the in-memory
 * MemoryLogStore), so that Persistent<T> and Volatile<T> share one implementation.
 *
 * A log is a sequence of entries, each with a version (strictly increasing, assigned by the
 * ordered multicast), an HLC timestamp (strictly increasing) and an index (its position since the
 * log was created: 0, 1, 2, ...). Old entries may be trimmed by retention: their indices are
 * never reused, they just cannot be read any more.
 */
import type { Hlc } from './hlc.js';
import type { Version } from './version.js';
import type { LogBase } from './base-file.js';
import type { Pieces } from '../util/pieces.js';

export type { LogBase };

export interface LogEntry {
  version: Version;
  timestamp: Hlc;
  index: number;
  payload: Buffer;
}

export interface Log {
  /** Version of the newest entry (NO_VERSION when there is none). */
  readonly latestVersion: Version;
  /** Timestamp of the newest entry (0n when there is none). */
  readonly latestTimestamp: Hlc;
  /** Index of the newest entry (firstIndex - 1 when the log is empty). */
  readonly latestIndex: number;
  /** Index of the oldest entry still readable. */
  readonly firstIndex: number;
  /** Number of readable entries. */
  readonly length: number;
  /** Version of the newest entry known to be durable (written to the OS when not durable). */
  readonly persistedVersion: Version;
  /**
   * Retention only drops entries at or below the base's version (delta logs). Persistent<T> in
   * delta mode turns it on when it attaches.
   */
  requireBase: boolean;
  /** Newest version trimmed away (the version just before the first retained entry); NO_VERSION when none was. */
  readonly trimmedVersion: Version;

  /**
   * Appends an entry; synchronous, nothing touches the disk until flush(). Returns its index.
   * Versions and timestamps must increase (asserted). ERR_PERSIST_BACKPRESSURE when too much is
   * buffered: flush and retry. A payload given in pieces is stored as their concatenation; the
   * pieces are copied before append returns, so they may be views of memory reused afterwards.
   */
  append(version: Version, timestamp: Hlc, payload: Pieces): number;
  /** Makes everything appended so far durable; resolves with the newest durable version. */
  flush(): Promise<Version>;

  /** The entry with exactly version v. */
  getByVersion(v: Version): Promise<LogEntry | undefined>;
  /** The newest entry with version <= v. */
  getAtVersion(v: Version): Promise<LogEntry | undefined>;
  getByIndex(i: number): Promise<LogEntry | undefined>;
  /** The newest entry with timestamp <= t. */
  getByTime(t: Hlc): Promise<LogEntry | undefined>;
  latest(): Promise<LogEntry | undefined>;
  /**
   * The entries with afterVersion < version <= uptoVersion (default: the newest at the call), in
   * order. ERR_PERSIST_TRIMMED when some of them were trimmed.
   */
  entries(afterVersion: Version, uptoVersion?: Version): AsyncIterable<LogEntry>;

  /**
   * Removes every entry with version > v, durably. A base above v is removed too (allowed only
   * while the log's history is complete: ERR_PERSIST_TRIMMED otherwise). A v older than the
   * trimmed history empties the log (and drops the base): it then continues after version v.
   */
  truncateAfter(v: Version): Promise<void>;
  /** Trims old entries with version < v (whole segments; the newest entry always stays). */
  trimBefore(v: Version): Promise<void>;
  /** Runs one retention pass now (it also runs in the background). */
  runRetention(): Promise<void>;

  /**
   * Records the full value as of `version` (written atomically). It may be ahead of the log's
   * entries (state transfer installs a base, then the entries after it).
   */
  setBase(version: Version, bytes: Uint8Array): Promise<void>;
  getBase(): Promise<LogBase | null>;
  /** Version of the base, or null when none (cheap). */
  readonly baseVersion: Version | null;
  /**
   * Called (asynchronously) when retention would trim entries up to `version` but the base is
   * older: a delta log's owner then writes a newer base.
   */
  onBaseWanted(listener: ((version: Version) => void) | null): void;

  close(): Promise<void>;
}
