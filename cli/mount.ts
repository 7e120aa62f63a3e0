/**
 * `tempest mount <dir> --connect host:port`: the file system as an external client of a running
 * group, from any machine that reaches a member's external port. Chunk size and limits come from
 * the configuration (defaults, a --config file, --SECTION/key=value), which must match the
 * group's ([DERECHO] block_size above all). Runs until SIGINT/SIGTERM, then commits open files
 * and unmounts.
 */
import type { TempestConfig } from '../config/index.js';
import { TempestError } from '../engine/util/errors.js';
import { layerLogger, type Logger } from '../engine/util/log.js';
import { connectRemoteStore, mountTempest } from '../fs/index.js';

export interface MountCommand {
  dir: string;
  /** `host:port[,host:port...]`: members' external ports. */
  connect: string;
  cfg: TempestConfig;
  log: Logger;
  /** Resolves when the mount should stop (a signal). */
  stop: Promise<unknown>;
  /** Told once the mount is up. */
  ready(message: string): void;
}

export function parseContacts(s: string): { host: string; port: number }[] {
  const out: { host: string; port: number }[] = [];
  for (const part of s.split(',')) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(part.trim());
    const port = m === null ? NaN : Number(m[3]);
    if (m === null || !(port >= 1 && port <= 65535)) throw new TempestError('ERR_CLI_USAGE', `--connect ${JSON.stringify(part)} is not host:port (a member's [DERECHO] external_port)`);
    out.push({ host: m[1] ?? m[2]!, port });
  }
  return out;
}

export async function runMount(c: MountCommand): Promise<void> {
  const store = await connectRemoteStore(c.cfg, parseContacts(c.connect), layerLogger('store'));
  try {
    const mount = await mountTempest({
      store,
      mountpoint: c.dir,
      log: layerLogger('fs'),
      timeout_ms: c.cfg.FUSE.timeout_ms,
      max_file_size_bytes: c.cfg.HTTP.max_blob_size,
      upload_window: c.cfg.STORE.upload_window,
      chunk_grace_ms: c.cfg.STORE.chunk_grace_ms,
    });
    c.ready(`Tempest mounted on ${mount.mountpoint} (the group at ${c.connect}); Ctrl-C unmounts.`);
    await c.stop;
    await mount.close();
  } finally {
    await store.close();
  }
}
