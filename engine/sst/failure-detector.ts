/**
 * Heartbeats in the SST and suspicion of members whose heartbeat stops advancing. Every
 * heartbeat_ms we bump and push our `heartbeat` group; a member whose heartbeat has not changed
 * for timeout_ms is suspected once: we raise its flag in our `suspected` column, push it, stop
 * pushing to it, and call back. A suspicion raised by another live member is adopted the same way,
 * so suspicion spreads through the table (the membership layer acts on it).
 */
import type { Logger } from '../util/log.js';
import type { ColumnSpec } from './layout.js';
import type { SharedStateTable } from './table.js';

export function failureDetectorColumns(members: number): ColumnSpec[] {
  return [
    { name: 'heartbeat', type: 'i64', group: 'heartbeat' },
    { name: 'suspected', type: 'u8', count: members },
  ];
}

export interface FailureDetectorOptions {
  sst: SharedStateTable;
  heartbeat_ms: number;
  timeout_ms: number;
  onSuspect: (id: number, reason: string) => void;
  log: Logger;
  now_ms?: () => number;
}

export class FailureDetector {
  private readonly sst: SharedStateTable;
  private readonly opts: FailureDetectorOptions;
  private readonly now_ms: () => number;
  private readonly lastBeat: number[];
  private readonly lastProgress_ms: number[];
  private readonly suspectedRanks: boolean[];
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: FailureDetectorOptions) {
    this.sst = opts.sst;
    this.opts = opts;
    this.now_ms = opts.now_ms ?? (() => performance.now());
    const n = this.sst.size;
    const now = this.now_ms();
    this.lastBeat = new Array<number>(n).fill(-1);
    this.lastProgress_ms = new Array<number>(n).fill(now);
    this.suspectedRanks = new Array<boolean>(n).fill(false);
  }

  start(): void {
    if (this.timer !== undefined) return;
    const now = this.now_ms();
    this.lastProgress_ms.fill(now);
    this.timer = setInterval(() => this.tick(), this.opts.heartbeat_ms);
    this.tick();
  }

  /** One round: beat, then judge every other member. Public so a simulator can drive it. */
  tick(): void {
    const sst = this.sst;
    sst.increment('heartbeat');
    // The whole row, not just the heartbeat: a push lost with a torn-down connection is then
    // repaired within one heartbeat, for every column (the rows are small).
    sst.push();
    const now = this.now_ms();
    for (let r = 0; r < sst.size; r++) {
      if (r === sst.myRank || this.suspectedRanks[r]) continue;
      const beat = sst.get(r, 'heartbeat');
      if (beat !== this.lastBeat[r]) {
        this.lastBeat[r] = beat;
        this.lastProgress_ms[r] = now;
        continue;
      }
      const silent_ms = now - this.lastProgress_ms[r]!;
      if (silent_ms > this.opts.timeout_ms) this.suspect(r, `no heartbeat for ${Math.round(silent_ms)} ms`);
    }
    // Adopt suspicions that live members have published.
    for (let q = 0; q < sst.size; q++) {
      if (q === sst.myRank || this.suspectedRanks[q]) continue;
      for (let r = 0; r < sst.size; r++) {
        if (r !== sst.myRank && !this.suspectedRanks[r] && sst.get(q, 'suspected', r) === 1) {
          this.suspect(r, `suspected by member ${sst.members[q]}`);
        }
      }
    }
  }

  /** Suspects a member at once (it never answered, or a new incarnation of it asked to join). */
  suspectNow(rank: number, reason: string): void {
    if (rank === this.sst.myRank || this.suspectedRanks[rank]) return;
    this.suspect(rank, reason);
  }

  private suspect(rank: number, reason: string): void {
    this.suspectedRanks[rank] = true;
    const id = this.sst.members[rank]!;
    this.sst.set('suspected', 1, rank);
    this.sst.freeze(rank);
    this.sst.push();
    this.opts.log.warn({ member: id, reason }, 'member suspected');
    this.opts.onSuspect(id, reason);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
