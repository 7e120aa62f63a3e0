/**
 * Metrics of the mount: store calls by kind, so that `ls -l` of a large directory can be seen to
 * be one listing per page and not one lookup per entry, and file-system operations by result.
 *
 * A mount in a member runs in a worker thread (mount-thread.ts) while the member's /metrics is
 * served by the main thread's registry; so FsMetrics counts into plain maps, and whoever exports
 * them takes the counts since last time with drain(): the main thread asks the worker for them on
 * every scrape (FsMetricsExport), so a scrape is exact, not a sample.
 */
import { Counter, type Registry } from 'prom-client';

export type StoreCall = 'list' | 'head' | 'read' | 'chunk' | 'commit' | 'delete';

/** Counts since the last drain: store calls by kind; operations by `op result`. */
export interface FsCounts {
  calls: [string, number][];
  ops: [string, string, number][];
}

export class FsMetrics {
  private readonly calls = new Map<string, number>();
  private readonly ops = new Map<string, number>();

  call(kind: StoreCall): void {
    this.calls.set(kind, (this.calls.get(kind) ?? 0) + 1);
  }

  op(name: string, result: string): void {
    const k = `${name} ${result}`;
    this.ops.set(k, (this.ops.get(k) ?? 0) + 1);
  }

  /** The counts since the last drain (and starts counting from zero). */
  drain(): FsCounts {
    const out: FsCounts = {
      calls: [...this.calls],
      ops: [...this.ops].map(([k, n]) => {
        const sp = k.indexOf(' ');
        return [k.slice(0, sp), k.slice(sp + 1), n];
      }),
    };
    this.calls.clear();
    this.ops.clear();
    return out;
  }
}

/** The mount's counters in a prom-client registry, filled from `fetch` (drained counts) on scrape. */
export class FsMetricsExport {
  constructor(registry: Registry, fetch: () => Promise<FsCounts | null>) {
    let pending: Promise<void> | null = null;
    // Both counters' collect() run in one scrape; one fetch serves both.
    const update = (): Promise<void> =>
      (pending ??= fetch()
        .then((c) => {
          if (c === null) return;
          for (const [call, n] of c.calls) calls.inc({ call }, n);
          for (const [op, result, n] of c.ops) ops.inc({ op, result }, n);
        })
        .finally(() => setImmediate(() => (pending = null))));
    const calls = new Counter({ name: 'tempest_fs_store_calls_total', help: 'Store calls the mount made, by kind (chunk: a chunk stored)', labelNames: ['call'], registers: [registry], collect: update });
    const ops = new Counter({ name: 'tempest_fs_operations_total', help: 'File-system operations answered, by operation and result (ok or the errno name)', labelNames: ['op', 'result'], registers: [registry], collect: update });
  }
}
