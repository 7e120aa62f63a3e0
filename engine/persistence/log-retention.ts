/**
 * Retention and the base of a LogStore. Retention trims whole old segments, by count and by age
 * (`[PERS]`), in the background: never the segment being written, and in a delta log
 * (requireBase) never entries above the base, the full value that the entries after it build
 * on. When the base holds retention back, the log asks its owner for a newer one (onBaseWanted).
 */
import * as fs from 'node:fs';
import { assert } from '../util/assert.js';
import { hlcFromMs } from './hlc.js';
import type { Version } from './version.js';
import type { Log } from './log.js';
import type { LogStoreOptions } from './log-store.js';
import type { LogState } from './log-state.js';
import { type LogBase, readBase, writeBase } from './base-file.js';
import * as io from './fs-io.js';
import type { Segment } from './segment.js';

export class LogRetention {
  private readonly retainEntries: number;
  private readonly retainMs: number;
  private readonly nowMs: () => number;
  private retentionTimer: NodeJS.Timeout | null = null;
  private retentionScheduled = false;
  private baseWanted: ((v: Version) => void) | null = null;

  /** @param owner the log, whose requireBase may change while it is open. */
  constructor(
    private readonly s: LogState,
    private readonly owner: Pick<Log, 'requireBase'>,
    opts: LogStoreOptions,
  ) {
    this.retainEntries = opts.retain_entries ?? 0;
    this.retainMs = opts.retain_ms ?? 0;
    this.nowMs = opts.now_ms ?? Date.now;
    if (this.retainEntries > 0 || this.retainMs > 0) {
      this.retentionTimer = setInterval(() => this.scheduleRetention(), opts.retention_interval_ms ?? 5000);
      this.retentionTimer.unref();
    }
  }

  /** Ends the background passes (the log is closing). */
  stop(): void {
    if (this.retentionTimer) clearInterval(this.retentionTimer);
  }

  async trimBefore(v: Version): Promise<void> {
    await this.s.maint.run(() => this.trimLocked((next) => next.prev_version < v));
  }

  runRetention(): Promise<void> {
    if (this.retainEntries === 0 && this.retainMs === 0) return Promise.resolve();
    return this.s.maint.run(() => {
      const cutoff = this.retainMs > 0 ? hlcFromMs(Math.max(0, this.nowMs() - this.retainMs)) : -1n;
      return this.trimLocked((next) => (this.retainEntries > 0 && this.s.nextIndex - next.first_index >= this.retainEntries) || next.prev_timestamp < cutoff);
    });
  }

  /** Runs a retention pass soon (once, however often it is asked before it runs). */
  scheduleRetention(): void {
    if (this.retentionScheduled || this.s.closing) return;
    if (this.retainEntries === 0 && this.retainMs === 0) return;
    this.retentionScheduled = true;
    setImmediate(() => {
      this.retentionScheduled = false;
      if (this.s.closing) return;
      this.runRetention().catch((err: unknown) => this.s.log.warn({ dir: this.s.dir, err: (err as Error).message }, 'log retention failed'));
    });
  }

  /**
   * Drops the oldest segments while `want(next segment)` says the one before it may go (a
   * segment's last version and timestamp are in the next segment's header). Never the segment
   * being written, never one whose successor's first entry is not durable yet (so the log always
   * keeps its position), and with requireBase never entries above the base.
   */
  private async trimLocked(want: (next: Segment) => boolean): Promise<void> {
    const s = this.s;
    let drop = 0;
    let wanted: Version | null = null;
    let blocked = false;
    for (let k = 0; k + 1 < s.segments.length; k++) {
      const next = s.segments[k + 1]!;
      if (next.first_index >= s.persistedEnd || !want(next)) break;
      if (this.owner.requireBase && (s.baseV === null || next.prev_version > s.baseV)) {
        // Ask for a base covering everything retention wants gone, not just this segment.
        blocked = true;
        wanted = next.prev_version;
      }
      if (!blocked) drop = k + 1;
    }
    if (wanted !== null && this.baseWanted !== null) {
      const listener = this.baseWanted;
      const v = wanted;
      queueMicrotask(() => listener(v));
    }
    if (drop === 0) return;
    const dropped = s.segments.splice(0, drop);
    const head = s.segments[0]!;
    s.first = head.first_index;
    s.tail.dropBelow(s.first);
    let bytes = 0;
    try {
      for (const seg of dropped) {
        bytes += seg.written_bytes;
        s.fds.retire(seg);
        await fs.promises.unlink(seg.path).catch((err: unknown) => {
          if (io.errnoCode(err) !== 'ENOENT') throw err;
        });
        // One at a time and in order, so a crash never leaves a hole in the middle of the log.
        if (s.durable) await io.fsyncDir(s.dir);
      }
    } catch (err) {
      throw io.ioError(`log ${s.dir}: trimming failed`, err);
    }
    await s.index.deleteBelow(head.first_index, head.prev_version, head.prev_timestamp);
    s.log.debug({ dir: s.dir, segments: drop, bytes, first_index: s.first }, 'log trimmed');
  }

  async setBase(version: Version, bytes: Uint8Array): Promise<void> {
    const s = this.s;
    assert(version >= 0n, 'a base is at a real version');
    const run = s.baseChain.then(async () => {
      try {
        await writeBase(s.dir, version, bytes, s.durable);
      } catch (err) {
        throw io.ioError(`log ${s.dir}: cannot write the base`, err);
      }
      s.baseV = version;
    });
    s.baseChain = run.catch(() => {});
    await run;
    this.scheduleRetention();
  }

  getBase(): Promise<LogBase | null> {
    return this.s.baseChain.then(() => readBase(this.s.dir));
  }

  onBaseWanted(listener: ((version: Version) => void) | null): void {
    this.baseWanted = listener;
  }
}
