/**
 * Prometheus metrics of the HTTP API (DESIGN §13): requests by route, method and status, their
 * durations, blob bytes in and out, and the store's counts (store.stats(), read once per scrape).
 * They live in a registry of their own unless one is passed in, so two apps in one process (tests,
 * a member serving several ports) never clash over names.
 */
import type { RequestHandler, Response } from 'express';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StoreClient, StoreStats } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';

export interface BlobMetricsOptions {
  /** Register here (e.g. a registry shared with other layers); default: a new one. */
  registry?: Registry;
}

/** Routes label requests with these names; anything else is `none` (a 404 of no route). */
export type RouteName = 'blob' | 'list' | 'versions' | 'watch' | 'cluster' | 'healthz' | 'metrics' | 'none';

// Uploads and downloads of large blobs take minutes; the default buckets stop at 10 s.
const DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];
/** Scrapes within this long of each other share one store.stats() call. */
const STATS_REUSE_MS = 1000;

const STORE_GAUGES: { name: string; help: string; field: Exclude<keyof StoreStats, 'frontier'> }[] = [
  { name: 'tempest_store_keys', help: 'Keys with at least one version', field: 'keys' },
  { name: 'tempest_store_versions', help: 'Versions kept, delete markers included', field: 'versions' },
  { name: 'tempest_store_chunks', help: 'Chunks stored', field: 'chunks' },
  { name: 'tempest_store_unreferenced_chunks', help: 'Chunks no version refers to (aborted uploads, awaiting collection)', field: 'unreferenced_chunks' },
  { name: 'tempest_store_chunk_bytes', help: 'Bytes of stored chunks', field: 'chunk_bytes' },
];

export class BlobMetrics {
  readonly registry: Registry;
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly duration: Histogram<'route' | 'method'>;
  private readonly bytesIn: Counter;
  private readonly bytesOut: Counter;
  private stats: { at_ms: number; value: Promise<StoreStats | null> } | undefined;

  constructor(
    private readonly store: StoreClient,
    private readonly log: Logger,
    opts: BlobMetricsOptions = {},
  ) {
    this.registry = opts.registry ?? new Registry();
    const registers = [this.registry];
    this.requests = new Counter({ name: 'tempest_http_requests_total', help: 'HTTP requests answered, by route, method and status (aborted: the client left first)', labelNames: ['route', 'method', 'status'], registers });
    this.duration = new Histogram({ name: 'tempest_http_request_duration_seconds', help: 'Time from request to the end of the reply (watch streams excluded)', labelNames: ['route', 'method'], buckets: DURATION_BUCKETS_S, registers });
    this.bytesIn = new Counter({ name: 'tempest_http_blob_bytes_received_total', help: 'Blob bytes received in uploads', registers });
    this.bytesOut = new Counter({ name: 'tempest_http_blob_bytes_sent_total', help: 'Blob bytes sent in downloads', registers });
    const storeStats = (): Promise<StoreStats | null> => this.storeStats();
    new Gauge({
      name: 'tempest_store_stats_up',
      help: '1 when the store answered for its statistics at the last scrape, else 0',
      registers,
      async collect() {
        this.set((await storeStats()) === null ? 0 : 1);
      },
    });
    for (const g of STORE_GAUGES) {
      new Gauge({
        name: g.name,
        help: g.help,
        registers,
        async collect() {
          const s = await storeStats();
          if (s === null) this.reset();
          else this.set(s[g.field]);
        },
      });
    }
  }

  readonly received = (n: number): void => this.bytesIn.inc(n);
  readonly sent = (n: number): void => this.bytesOut.inc(n);

  /** Counts and times every request once its reply ends or its connection goes. */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const endTimer = this.duration.startTimer();
      res.once('close', () => {
        const route = routeOf(res);
        const labels = { route, method: req.method };
        this.requests.inc({ ...labels, status: res.writableFinished ? String(res.statusCode) : 'aborted' });
        if (route !== 'watch') endTimer(labels);
      });
      next();
    };
  }

  /** GET /metrics. */
  handler(): RequestHandler {
    return async (_req, res) => {
      const text = await this.registry.metrics();
      res.setHeader('content-type', this.registry.contentType);
      res.send(text);
    };
  }

  private storeStats(): Promise<StoreStats | null> {
    const now = Date.now();
    if (this.stats === undefined || now - this.stats.at_ms > STATS_REUSE_MS) {
      const value = this.store.stats().catch((err: unknown) => {
        this.log.debug({ err }, 'store statistics unavailable for /metrics');
        return null;
      });
      this.stats = { at_ms: now, value };
    }
    return this.stats.value;
  }
}

/** Names the route of a request for the metrics (set by the app before the route's handlers). */
export function labelRoute(route: RouteName): RequestHandler {
  return (_req, res, next) => {
    res.locals.route = route;
    next();
  };
}

function routeOf(res: Response): RouteName {
  return (res.locals.route as RouteName | undefined) ?? 'none';
}
