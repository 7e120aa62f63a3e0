/**
 * The state of one LogStore that its parts share. log-store.ts creates and owns it (open, append,
 * group commit, close) and hands the same object to log-reader.ts, log-truncator.ts and
 * log-retention.ts, which read and update these fields directly: one object, no copies, no
 * accessors, so every part always sees the current position of the log.
 */
import type { Logger } from '../util/log.js';
import type { Hlc } from './hlc.js';
import type { Version } from './version.js';
import type { LogIndex } from './log-index.js';
import type { LogIndexer } from './log-indexer.js';
import type { Segment, SegmentFds } from './segment.js';
import type { TailIndex } from './tail-index.js';
import type { WriteBuffer } from './write-buffer.js';
import type { Mutex } from './async-util.js';

export interface LogState {
  readonly dir: string;
  /** fdatasync every flush, truncation and trim (else only hand the bytes to the OS). */
  readonly durable: boolean;
  readonly log: Logger;
  /** The LevelDB block index. */
  readonly index: LogIndex;
  readonly fds: SegmentFds;
  /** Where the newest entries are, in memory. */
  readonly tail: TailIndex;
  /** Feeds `index` in the background. */
  readonly indexer: LogIndexer;
  /** Serialises truncation, trimming and the indexer's LevelDB writes. */
  readonly maint: Mutex;

  /** Oldest first; the last one is being written. */
  segments: Segment[];
  /** Index of the oldest retained entry. */
  first: number;
  /** One past the newest entry. */
  nextIndex: number;
  latestV: Version;
  latestTs: Hlc;
  /** One past the newest durable entry. */
  persistedEnd: number;
  persistedV: Version;
  /** Appends go here; reads of entries not yet written look here and in `inflight`. */
  active: WriteBuffer;
  /** The batch the flush in flight is writing. */
  inflight: WriteBuffer | null;

  /** Bumped by truncateAfter: reads that raced with it re-check before reporting corruption. */
  generation: number;
  truncating: boolean;
  closing: boolean;
  baseV: Version | null;
  /** Writes and removals of the base, one after the other. */
  baseChain: Promise<void>;
}
