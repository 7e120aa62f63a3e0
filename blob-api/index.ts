/** The HTTP blob API (DESIGN §11): the app over a StoreClient, and the server that runs it. */
export { createBlobApp, type BlobAppOptions } from './app.js';
export { HTTP_ERRORS, HttpError } from './errors.js';
export type { BlobMetricsOptions } from './metrics.js';
export { startBlobServer, type BlobServer, type BlobServerOptions } from './server.js';
