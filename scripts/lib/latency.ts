/**
 * Latency samples for benchmarks: a growable Float64Array (no per-sample objects) and percentiles
 * by nearest rank, index floor(n * p) of the sorted samples, the same convention as the local
 * helpers in scripts/bench/multicast.ts, so figures from different benchmarks compare.
 */

/** The p-quantile (0 <= p <= 1) of `sorted` (ascending) by nearest rank; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(sorted.length * p)))]!;
}

export interface LatencySummary {
  count: number;
  mean_ms: number;
  min_ms: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

/** Records latencies in milliseconds into a preallocated Float64Array that doubles when full. */
export class LatencyRecorder {
  private buf: Float64Array;
  private n = 0;
  private sum = 0;

  constructor(expected = 1 << 16) {
    this.buf = new Float64Array(Math.max(16, expected));
  }

  get count(): number {
    return this.n;
  }

  record(ms: number): void {
    if (this.n === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.n++] = ms;
    this.sum += ms;
  }

  /** The samples so far, sorted ascending (a copy). */
  sorted(): Float64Array {
    return this.buf.slice(0, this.n).sort();
  }

  summary(): LatencySummary {
    const s = this.sorted();
    return {
      count: this.n,
      mean_ms: this.n === 0 ? Number.NaN : this.sum / this.n,
      min_ms: s.length === 0 ? Number.NaN : s[0]!,
      p50_ms: percentile(s, 0.5),
      p90_ms: percentile(s, 0.9),
      p99_ms: percentile(s, 0.99),
      p999_ms: percentile(s, 0.999),
      max_ms: s.length === 0 ? Number.NaN : s[s.length - 1]!,
    };
  }
}
