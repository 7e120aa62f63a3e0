/**
 * A member's mount, in a worker thread of the member process (mount-worker.ts). The kernel sends
 * a writer's requests one 128 KiB piece at a time and waits for each answer; in the member's main
 * thread each answer waited behind multicast, persistence and RPC work, which cut sequential
 * writes to about two thirds of what the same mount does from its own thread (bench:fs). The
 * thread's store calls still run here, on the member's own client (store-bridge.ts: local replica
 * reads, no network hop). Its metrics are fetched on each scrape of the member's /metrics.
 */
import { MessageChannel, Worker } from 'node:worker_threads';
import type { Registry } from 'prom-client';
import type { TempestConfig } from '../config/index.js';
import type { Logger } from '../engine/util/log.js';
import { type FsCounts, FsMetricsExport } from './metrics.js';
import type { MountHandle } from './mount.js';
import type { MountWorkerData } from './mount-worker.js';
import type { StoreClient } from '../engine/store/types.js';
import { serveStore } from './store-bridge.js';

export type FromMain = { type: 'counts'; id: number } | { type: 'close' };
export type ToMain =
  | { type: 'mounted'; mountpoint: string }
  | { type: 'failed'; message: string; code: string }
  | { type: 'counts'; id: number; counts: FsCounts }
  | { type: 'closed' };

/** Longest the thread may take to connect and mount. */
const MOUNT_TIMEOUT_MS = 60_000;
/** Longest a scrape waits for the thread's counts. */
const COUNTS_TIMEOUT_MS = 2_000;
/** Beyond [FUSE] timeout_ms (the last commit may take that long), for unmounting. */
const CLOSE_MARGIN_MS = 15_000;

export interface MountThreadOptions {
  cfg: TempestConfig;
  /** The member's store client; the thread's store calls run on it, in this thread. */
  store: StoreClient;
  log: Logger;
  /** The member's /metrics registry (the mount's counters are added to it); none when null. */
  registry: Registry | null;
  /** Log bindings for the thread's loggers (the member id). */
  bindings: Record<string, unknown>;
}

let exported = false;

export async function mountInThread(o: MountThreadOptions): Promise<MountHandle> {
  const channel = new MessageChannel();
  serveStore(channel.port1, o.store, o.log);
  const data: MountWorkerData = { cfg: o.cfg, store_port: channel.port2, mountpoint: o.cfg.FUSE.mountpoint, statfs_path: o.cfg.DERECHO.data_dir, bindings: o.bindings };
  const worker = new Worker(new URL('./mount-worker.js', import.meta.url), { workerData: data, transferList: [channel.port2] });
  worker.once('exit', () => channel.port1.close());
  let nextId = 1;
  const waiting = new Map<number, (c: FsCounts | null) => void>();
  let closed: (() => void) | null = null;
  let exitedBeforeClose = true;

  const mountpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(Object.assign(new Error(`the mount thread did not mount ${o.cfg.FUSE.mountpoint} within ${MOUNT_TIMEOUT_MS} ms`), { code: 'ERR_FS_MOUNT' }));
    }, MOUNT_TIMEOUT_MS);
    worker.on('message', (m: ToMain) => {
      if (m.type === 'mounted') {
        clearTimeout(timer);
        resolve(m.mountpoint);
      } else if (m.type === 'failed') {
        clearTimeout(timer);
        reject(Object.assign(new Error(m.message), { code: m.code }));
      } else if (m.type === 'counts') {
        waiting.get(m.id)?.(m.counts);
        waiting.delete(m.id);
      } else if (m.type === 'closed') {
        exitedBeforeClose = false;
        closed?.();
      }
    });
    worker.on('error', (err) => {
      clearTimeout(timer);
      o.log.error({ err: err.message }, 'the mount thread failed; the file system is no longer served');
      reject(err);
    });
    worker.on('exit', (code) => {
      clearTimeout(timer);
      for (const w of waiting.values()) w(null);
      waiting.clear();
      closed?.();
      if (exitedBeforeClose) o.log.error({ code }, 'the mount thread exited');
      reject(Object.assign(new Error(`the mount thread exited (code ${code}) before mounting`), { code: 'ERR_FS_MOUNT' }));
    });
  });

  if (o.registry !== null && !exported) {
    exported = true;
    new FsMetricsExport(o.registry, () => {
      const id = nextId++;
      return new Promise<FsCounts | null>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve(null);
        }, COUNTS_TIMEOUT_MS);
        waiting.set(id, (c) => {
          clearTimeout(timer);
          resolve(c);
        });
        worker.postMessage({ type: 'counts', id } satisfies FromMain);
      });
    });
  }

  let closing: Promise<void> | undefined;
  return {
    mountpoint,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          o.log.warn({ mountpoint }, 'the mount thread did not close in time; stopping it');
          void worker.terminate().then(() => resolve());
        }, o.cfg.FUSE.timeout_ms + CLOSE_MARGIN_MS);
        closed = () => {
          clearTimeout(timer);
          // Everything is closed; the thread need not linger on handles a library keeps.
          void worker.terminate().then(() => resolve());
        };
        worker.postMessage({ type: 'close' } satisfies FromMain);
      })),
  };
}
