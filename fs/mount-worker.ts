/**
 * The body of a member's mount thread (mount-thread.ts starts it): mounts over the member's store
 * client (reached through a MessagePort, store-bridge.ts), and answers the main thread's requests for metric
 * counts and for closing. Its own event loop serves the kernel's requests, so a write through the
 * mount never queues behind the member's multicast and logging work (each 128 KiB FUSE request
 * is a round trip the writer waits for).
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { TempestConfig } from '../config/index.js';
import { layerLogger } from '../engine/util/log.js';
import { FsMetrics } from './metrics.js';
import { mountTempest, type MountHandle } from './mount.js';
import { BridgedStoreClient } from './store-bridge.js';
import type { FromMain, ToMain } from './mount-thread.js';

export interface MountWorkerData {
  cfg: TempestConfig;
  /** Where store calls go (the main thread's serveStore). */
  store_port: MessagePort;
  mountpoint: string;
  statfs_path: string;
  bindings: Record<string, unknown>;
}

const port = parentPort!;
const data = workerData as MountWorkerData;
const post = (m: ToMain): void => port.postMessage(m);
const metrics = new FsMetrics();
const log = layerLogger('fs', data.bindings);

async function main(): Promise<void> {
  const cfg = data.cfg;
  let mount: MountHandle | null = null;
  let closing: Promise<void> | null = null;
  const store = new BridgedStoreClient(data.store_port, cfg.DERECHO.block_size);
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      try {
        await mount?.close();
      } finally {
        await store.close().catch(() => {});
        post({ type: 'closed' });
        port.close();
      }
    })());
  port.on('message', (m: FromMain) => {
    if (m.type === 'counts') post({ type: 'counts', id: m.id, counts: metrics.drain() });
    else if (m.type === 'close') void close();
  });
  try {
    mount = await mountTempest({
      store,
      mountpoint: data.mountpoint,
      log,
      timeout_ms: cfg.FUSE.timeout_ms,
      max_file_size_bytes: cfg.HTTP.max_blob_size,
      upload_window: cfg.STORE.upload_window,
      metrics,
      statfs_path: data.statfs_path,
      chunk_grace_ms: cfg.STORE.chunk_grace_ms,
    });
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  post({ type: 'mounted', mountpoint: mount.mountpoint });
}

main().catch((err: Error & { code?: string }) => {
  post({ type: 'failed', message: err.message, code: err.code ?? 'ERR_FS_MOUNT' });
  port.close();
});
