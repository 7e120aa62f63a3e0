/**
 * A StoreClient for a mount outside the member's main thread: an external client of the group
 * (RemoteStoreClient over members' external ports), sized from the configuration, which must match
 * the group's ([DERECHO] block_size above all). Used by `tempest mount --connect` and by a
 * member's own mount thread (which connects to its member's external port).
 */
import type { TempestConfig } from '../config/index.js';
import { RemoteStoreClient } from '../engine/store/store-client.js';
import type { Logger } from '../engine/util/log.js';

/** Room above one chunk in a request carrying it. */
const REQUEST_MARGIN_BYTES = 64 * 1024;
/**
 * How long one store call keeps failing over before it gives up, at most: long enough to ride out
 * a failure and the view change after it (seconds), short enough that an operation making two or
 * three calls answers EAGAIN (no quorum) before the kernel's [FUSE] timeout_ms turns it into
 * ETIMEDOUT. A third of timeout_ms, within these bounds.
 */
const MIN_CALL_TIMEOUT_MS = 1_000;
const MAX_CALL_TIMEOUT_MS = 10_000;

export interface Contact {
  host: string;
  port: number;
}

/** `log`: the store client's logger (a `store` layer logger). */
export function connectRemoteStore(cfg: TempestConfig, contacts: Contact[], log: Logger): Promise<RemoteStoreClient> {
  const d = cfg.DERECHO;
  return RemoteStoreClient.connect({
    contacts,
    log,
    chunk_size_bytes: d.block_size,
    max_reply_bytes: d.max_p2p_reply_payload_size,
    max_request_bytes: Math.max(d.max_p2p_request_payload_size, d.block_size + REQUEST_MARGIN_BYTES),
    upload_window: cfg.STORE.upload_window,
    stable_wait_ms: cfg.STORE.stable_wait_ms,
    call_timeout_ms: Math.min(MAX_CALL_TIMEOUT_MS, Math.max(MIN_CALL_TIMEOUT_MS, Math.floor(cfg.FUSE.timeout_ms / 3))),
  });
}
