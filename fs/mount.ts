/**
 * Mounting TempestFs with fuse-native (libfuse 2). The per-operation timeout is set explicitly
 * from [FUSE] timeout_ms: fuse-native's 15 s default would turn a commit waiting out a view change
 * into an error. Options for throughput: 128 KiB reads and writes per request (big_writes; libfuse
 * 2's largest) and a 1 MiB read-ahead, so a sequential read or write is one request per 128 KiB
 * instead of per 4 KiB page. fuse-native has no flags for big_writes, max_write or max_readahead,
 * so its option string is extended here.
 */
import Fuse from 'fuse-native';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import type { StoreClient } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';
import { FsMetrics } from './metrics.js';
import { TempestFs } from './tempest-fs.js';

const IO_BYTES = 131_072;
const READ_AHEAD_BYTES = 1_048_576;
/** Seconds the kernel keeps entries and attributes (as our own listing cache does). */
const KERNEL_CACHE_S = 1;

export interface MountOptions {
  store: StoreClient;
  mountpoint: string;
  log: Logger;
  /** [FUSE] timeout_ms: longest one operation may take before it fails. */
  timeout_ms: number;
  max_file_size_bytes: number;
  upload_window: number;
  /** Where the mount counts its store calls and operations (a new FsMetrics when absent). */
  metrics?: FsMetrics;
  /** Free space reported by statfs is this directory's (the member's data dir). */
  statfs_path?: string;
  /** [STORE] chunk_grace_ms of the group. */
  chunk_grace_ms: number;
}

export interface MountHandle {
  readonly mountpoint: string;
  /** Commits open files, then unmounts. Idempotent. */
  close(): Promise<void>;
}

class TunedFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = `big_writes,max_write=${IO_BYTES},max_readahead=${READ_AHEAD_BYTES}`;
    return base === '' ? `-o${extra}` : `${base},${extra}`;
  }
}

export async function mountTempest(opts: MountOptions): Promise<MountHandle> {
  const log = opts.log;
  const mountpoint = path.resolve(opts.mountpoint);
  mkdirSync(mountpoint, { recursive: true });
  const fs = new TempestFs({
    store: opts.store,
    log,
    metrics: opts.metrics ?? new FsMetrics(),
    max_file_size_bytes: opts.max_file_size_bytes,
    upload_window: opts.upload_window,
    statfs_path: opts.statfs_path ?? process.cwd(),
    chunk_grace_ms: opts.chunk_grace_ms,
  });
  const fuse = new TunedFuse(mountpoint, fs.operations(), {
    timeout: opts.timeout_ms,
    force: true, // a mount left by a killed process (ENOTCONN) is replaced, not an error
    mkdir: true,
    maxRead: IO_BYTES,
    fsname: 'tempest',
    subtype: 'tempest',
    attrTimeout: KERNEL_CACHE_S,
    entryTimeout: KERNEL_CACHE_S,
  });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(mountError(err, mountpoint)) : resolve())));
  log.info({ mountpoint }, 'file system mounted');
  let closing: Promise<void> | undefined;
  return {
    mountpoint,
    close: () =>
      (closing ??= (async () => {
        await fs.flushAll();
        await new Promise<void>((resolve) =>
          fuse.unmount((err) => {
            if (err) log.warn({ mountpoint, err: err.message }, 'unmount failed; the mount point may need "fusermount -uz"');
            resolve();
          }),
        );
        log.info({ mountpoint }, 'file system unmounted');
      })()),
  };
}

function mountError(err: Error, mountpoint: string): Error {
  const e = new Error(`could not mount the file system on ${mountpoint}: ${err.message} (is /dev/fuse there, and fusermount installed? "apt-get install fuse libfuse2")`, { cause: err });
  (e as Error & { code: string }).code = 'ERR_FS_MOUNT';
  return e;
}
