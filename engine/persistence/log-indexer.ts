/**
 * Feeds the LevelDB block index of one log in the background, off the write path: append()
 * cuts entries into blocks (addEntry, O(1)), and once a flush has made blocks durable, kick()
 * writes their keys in large batches under the log's maintenance mutex. A flush never waits for
 * it. Reads of entries older than the in-memory tail wait (bounded) until the index covers
 * them; a failing LevelDB write is retried after a pause.
 */
import type { Logger } from '../util/log.js';
import { TempestError } from '../util/errors.js';
import { type Mutex, withTimeout } from './async-util.js';
import type { BlockLocation, LogIndex } from './log-index.js';

/** What the indexer needs to know of its log, read at the moment it is needed. */
export interface IndexedLog {
  /** One past the newest durable entry. */
  persistedEnd(): number;
  /** Index of the oldest retained entry. */
  firstIndex(): number;
  /** One past the newest entry. */
  nextIndex(): number;
}

const BATCH_BLOCKS = 4096;
const RETRY_MS = 1000;
const MAX_WAITERS = 10_000;

interface Waiter {
  until: number;
  resolve(): void;
}

export class LogIndexer {
  /** Entries with index < indexedEnd are covered by LevelDB (or trimmed). */
  indexedEnd: number;
  private readonly blocks: BlockLocation[] = [];
  private head = 0;
  /** The block still growing (null at a batch boundary: blocks never span flush batches). */
  private current: BlockLocation | null = null;
  private running: Promise<void> | null = null;
  private retry: NodeJS.Timeout | null = null;
  private waiters: Waiter[] = [];
  private stopped = false;

  constructor(
    private readonly host: IndexedLog,
    private readonly index: LogIndex,
    private readonly maint: Mutex,
    private readonly stride: number,
    private readonly block_bytes: number,
    private readonly read_timeout_ms: number,
    private readonly log: Logger,
    private readonly dir: string,
    next_index: number,
  ) {
    this.indexedEnd = next_index;
  }

  /** Blocks waiting to be indexed. */
  get lagBlocks(): number {
    return this.blocks.length - this.head;
  }

  /** Records an appended entry (hot path). */
  addEntry(index: number, version: bigint, timestamp: bigint, seg: number, offset: number, bytes: number): void {
    const b = this.current;
    if (b !== null && b.seg === seg && b.count < this.stride && b.bytes < this.block_bytes) {
      b.count++;
      b.bytes += bytes;
    } else {
      this.current = { index, version, timestamp, seg, offset, bytes, count: 1 };
      this.blocks.push(this.current);
    }
  }

  /** A flush batch was cut: the current block is final. */
  endBatch(): void {
    this.current = null;
  }

  /** Starts indexing the durable blocks, unless it already runs. */
  kick(): void {
    if (this.running !== null || this.retry !== null || this.stopped) return;
    const b = this.blocks[this.head];
    if (b === undefined || b.index + b.count > this.host.persistedEnd()) {
      if (this.head >= this.blocks.length) this.advance(this.host.persistedEnd());
      return;
    }
    this.running = this.run().finally(() => {
      this.running = null;
    });
  }

  /** Resolves once LevelDB covers every entry below `end` (bounded wait). */
  covered(end: number): Promise<void> {
    if (this.indexedEnd >= end || this.indexedEnd >= this.host.persistedEnd()) return Promise.resolve();
    if (this.waiters.length >= MAX_WAITERS) return Promise.reject(new TempestError('ERR_PERSIST_BACKPRESSURE', `log ${this.dir}: too many reads wait for the index`));
    this.kick();
    return withTimeout(new Promise<void>((resolve) => this.waiters.push({ until: end, resolve })), this.read_timeout_ms, `log ${this.dir}: indexing for a read`);
  }

  /** truncateAfter kept the entries below `next` (the last of them ending at `end_bytes` in its segment). */
  truncate(next: number, end_bytes: number): void {
    let k = this.blocks.length;
    while (k > this.head && this.blocks[k - 1]!.index >= next) k--;
    this.blocks.length = k;
    const spanning = this.blocks[k - 1];
    if (spanning !== undefined && k > this.head && spanning.index + spanning.count > next) {
      spanning.count = next - spanning.index;
      spanning.bytes = end_bytes - spanning.offset;
    }
    this.current = null;
    if (this.indexedEnd > next) this.indexedEnd = next;
  }

  /** The log restarted empty at `next`. */
  reset(next: number): void {
    this.blocks.length = 0;
    this.head = 0;
    this.current = null;
    this.indexedEnd = next;
  }

  /** Indexes everything durable now (for close), then stops. */
  async drain(): Promise<void> {
    if (this.retry !== null) {
      clearTimeout(this.retry);
      this.retry = null;
    }
    for (let k = 0; k < 3 && this.head < this.blocks.length; k++) {
      this.kick();
      await this.running;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry !== null) clearTimeout(this.retry);
    await this.running;
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        const taken: BlockLocation[] = [];
        for (let k = this.head; k < this.blocks.length && taken.length < BATCH_BLOCKS; k++) {
          const b = this.blocks[k]!;
          if (b.index + b.count > this.host.persistedEnd()) break;
          taken.push(b);
        }
        if (taken.length === 0) break;
        await this.maint.run(async () => {
          // Trimming or truncateAfter may have run meanwhile: index what is still in the log.
          const still = taken.filter((b) => b.index >= this.host.firstIndex() && b.index + b.count <= this.host.nextIndex());
          await this.index.putBlocks(still);
        });
        // Appends may have run during the await (and a truncation may have dropped some of the
        // taken blocks): step over exactly the taken blocks that are still queued.
        let q = this.head;
        for (const b of taken) {
          if (this.blocks[q] !== b) break;
          q++;
        }
        this.head = q;
        if (this.head > 4096 && this.head * 2 > this.blocks.length) {
          this.blocks.splice(0, this.head);
          this.head = 0;
        }
        const end = taken[taken.length - 1]!;
        this.advance(Math.min(end.index + end.count, this.host.persistedEnd()));
      }
      if (this.head >= this.blocks.length) this.advance(this.host.persistedEnd());
    } catch (err) {
      if (this.stopped) return;
      this.log.warn({ dir: this.dir, err: (err as Error).message }, 'log index update failed; retrying (reads of old entries may wait)');
      this.retry = setTimeout(() => {
        this.retry = null;
        this.kick();
      }, RETRY_MS);
      this.retry.unref();
    }
  }

  private advance(end: number): void {
    if (end <= this.indexedEnd) return;
    this.indexedEnd = end;
    if (this.waiters.length === 0) return;
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.indexedEnd >= w.until || this.indexedEnd >= this.host.persistedEnd()) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
  }
}
