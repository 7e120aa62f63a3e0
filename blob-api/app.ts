/**
 * The HTTP blob API (DESIGN §11) as an express app over a StoreClient. Routes live in routes/,
 * one file each; this file only wires them, in order: request logs, metrics, routes, then 404,
 * 405 and errors as JSON.
 *
 * Blob and version paths are matched by a regular expression without groups, so express decodes
 * nothing: params.ts decodes the raw key exactly once. Query strings are parsed there too (the
 * express query parser is off).
 */
import express from 'express';
import { pinoHttp } from 'pino-http';
import type { StoreClient } from '../engine/store/types.js';
import type { Logger } from '../engine/util/log.js';
import { errorHandler, methodNotAllowed, noRoute } from './error-handler.js';
import { EventStreams } from './event-streams.js';
import { jsonReplacer } from './json.js';
import { BlobMetrics, labelRoute, type BlobMetricsOptions } from './metrics.js';
import { clusterInfo, healthz } from './routes/cluster.js';
import { deleteBlob } from './routes/delete.js';
import { getBlob } from './routes/get.js';
import { listBlobs } from './routes/list.js';
import { postBlob } from './routes/post.js';
import { putBlob } from './routes/put.js';
import { listVersions } from './routes/versions.js';
import { watchVersions } from './routes/watch.js';

export interface BlobAppOptions {
  store: StoreClient;
  /** The app logs through a child `{layer: 'http'}` of this one (request logs at debug level). */
  log: Logger;
  /** Largest blob an upload may carry ([HTTP] max_blob_size); larger ones get 413. */
  max_blob_size_bytes: number;
  metrics?: BlobMetricsOptions;
}

// Everything under the slash is a key, the empty one included (refused as such, not listed).
const BLOB_ROUTE = /^\/v1\/blobs\/.*$/;
const VERSIONS_ROUTE = /^\/v1\/versions\/.*$/;
const READ_ONLY = 'GET, HEAD';

export function createBlobApp(opts: BlobAppOptions): express.Application {
  return buildBlobApp(opts, new EventStreams());
}

/** @internal createBlobApp with the list of watch streams the server ends on close (server.ts). */
export function buildBlobApp(opts: BlobAppOptions, streams: EventStreams): express.Application {
  const log = opts.log.child({ layer: 'http' });
  const metrics = new BlobMetrics(opts.store, log, opts.metrics);
  const ctx = { store: opts.store, log, max_blob_size_bytes: opts.max_blob_size_bytes, metrics, streams };

  const app = express();
  app.disable('x-powered-by');
  // Blob replies carry their own strong ETag; JSON replies need none.
  app.set('etag', false);
  app.set('query parser', false);
  app.set('json replacer', jsonReplacer);

  app.use(pinoHttp({ logger: log, useLevel: 'debug' }));
  app.use(metrics.middleware());

  app.route(BLOB_ROUTE).all(labelRoute('blob')).get(getBlob(ctx)).put(putBlob(ctx)).post(postBlob(ctx)).delete(deleteBlob(ctx)).all(methodNotAllowed('GET, HEAD, PUT, POST, DELETE'));
  app.route('/v1/blobs').all(labelRoute('list')).get(listBlobs(ctx)).all(methodNotAllowed(READ_ONLY));
  app.route(VERSIONS_ROUTE).all(labelRoute('versions')).get(listVersions(ctx)).all(methodNotAllowed(READ_ONLY));
  app.route('/v1/watch').all(labelRoute('watch')).get(watchVersions(ctx)).all(methodNotAllowed(READ_ONLY));
  app.route('/v1/cluster').all(labelRoute('cluster')).get(clusterInfo(ctx)).all(methodNotAllowed(READ_ONLY));
  app.route('/healthz').all(labelRoute('healthz')).get(healthz(ctx)).all(methodNotAllowed(READ_ONLY));
  app.route('/metrics').all(labelRoute('metrics')).get(metrics.handler()).all(methodNotAllowed(READ_ONLY));

  app.use(noRoute);
  app.use(errorHandler(log));
  return app;
}
