/**
 * Metrics of the mount: store calls by kind, so that `ls -l` of a large directory can be seen to
 * be one listing per page and not one lookup per entry, and file-system operations by result.
 */
import { Counter, type Registry } from 'prom-client';

export type StoreCall = 'list' | 'head' | 'read' | 'chunk' | 'commit' | 'delete';

export class FsMetrics {
  private readonly calls: Counter<'call'> | null;
  private readonly ops: Counter<'op' | 'result'> | null;

  constructor(registry: Registry | null) {
    const registers = registry === null ? [] : [registry];
    this.calls = registry === null ? null : new Counter({ name: 'tempest_fs_store_calls_total', help: 'Store calls the mount made, by kind (chunk: a chunk stored)', labelNames: ['call'], registers });
    this.ops = registry === null ? null : new Counter({ name: 'tempest_fs_operations_total', help: 'File-system operations answered, by operation and result (ok or the errno name)', labelNames: ['op', 'result'], registers });
  }

  call(kind: StoreCall): void {
    this.calls?.inc({ call: kind });
  }

  op(name: string, result: string): void {
    this.ops?.inc({ op: name, result });
  }
}
