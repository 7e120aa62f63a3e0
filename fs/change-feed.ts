/**
 * Keeps the mount's attribute cache coherent with writers elsewhere (HTTP, other mounts): a store
 * watch of every key calls `onChange(key)` for each new version, in shard order, within about the
 * watch's poll interval. The cache can then keep listed attributes for long (so `ls -l` of a big
 * directory needs no per-entry lookups) while a change made anywhere is seen within ~0.2 s plus
 * the kernel's 1 s attribute timeout. The watch never drops events (it pauses a slow consumer,
 * and this one never is slow), so no change goes unseen while the feed runs.
 */
import type { StoreClient, Watch } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';

export class ChangeFeed {
  private readonly watch: Watch;
  private closed = false;
  private readonly done: Promise<void>;

  constructor(store: StoreClient, onChange: (key: string) => void, log: Logger) {
    const watch = store.watch('');
    this.watch = watch;
    this.done = (async () => {
      while (!this.closed) {
        const v = await watch.next();
        if (v === null) break;
        onChange(v.key);
      }
    })().catch((err: Error) => log.warn({ err: err.message }, 'the change feed stopped; cached attributes expire on their own'));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watch.close();
    await this.done;
  }
}
