/**
 * The HTTP server of the blob API: listens on [HTTP] host:port, answers `Expect: 100-continue`
 * only once an upload's checks passed (continue.ts), and shuts down without waiting forever for
 * watch streams or stalled clients.
 *
 * Timeouts: Node's default requestTimeout (300 s for the whole request) would cut any upload of a
 * few GiB, so it is off; a socket with no traffic either way for idle_timeout_ms is closed instead
 * (slow-loris bodies, clients that stopped reading). Headers still have Node's 60 s.
 */
import { createServer, type Server } from 'node:http';
import { TempestError } from '../engine/util/errors.js';
import { buildBlobApp, type BlobAppOptions } from './app.js';
import { awaitContinue } from './continue.js';
import { HTTP_ERRORS } from './errors.js';
import { EventStreams } from './event-streams.js';

export interface BlobServerOptions extends BlobAppOptions {
  host: string;
  /** 0 picks a free port (see BlobServer.port). */
  port: number;
  /** A connection silent this long is closed (default 120 s; watch streams send every 15 s). */
  idle_timeout_ms?: number;
  /** On close, requests still running after this long are cut (default 5 s). */
  close_grace_ms?: number;
}

export interface BlobServer {
  /** The port listened on (the one picked, when asked for 0). */
  readonly port: number;
  readonly server: Server;
  /** Stops accepting, ends watch streams, lets running requests finish within the grace, then cuts them. */
  close(): Promise<void>;
}

const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const DEFAULT_CLOSE_GRACE_MS = 5_000;

export async function startBlobServer(opts: BlobServerOptions): Promise<BlobServer> {
  const streams = new EventStreams();
  const app = buildBlobApp(opts, streams);
  const server = createServer({ requestTimeout: 0 }, app);
  server.setTimeout(opts.idle_timeout_ms ?? DEFAULT_IDLE_TIMEOUT_MS);
  server.on('checkContinue', (req, res) => {
    awaitContinue(req);
    server.emit('request', req, res);
  });
  await listen(server, opts.host, opts.port);
  const port = (server.address() as { port: number }).port;
  const log = opts.log.child({ layer: 'http' });
  log.info({ host: opts.host, port }, 'HTTP blob API listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), opts.close_grace_ms ?? DEFAULT_CLOSE_GRACE_MS);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        streams.endAll();
        server.closeIdleConnections();
      })),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.message;
      reject(new TempestError(HTTP_ERRORS.LISTEN, `cannot listen on ${host}:${port} ([HTTP] port ${port}): ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
