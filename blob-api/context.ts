/** What every route handler of one app shares. */
import type { StoreClient } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';
import type { EventStreams } from './event-streams.js';
import type { BlobMetrics } from './metrics.js';

export interface BlobContext {
  store: StoreClient;
  /** The `http` layer's logger. */
  log: Logger;
  /** Largest blob an upload may carry ([HTTP] max_blob_size). */
  max_blob_size_bytes: number;
  metrics: BlobMetrics;
  streams: EventStreams;
}
