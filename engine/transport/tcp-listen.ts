/** Starts a TCP listener with the errors every Tempest port gives: address in use, or another failure, named by port. */
import type { Server } from 'node:net';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/**
 * Listens on ip:port; rejects with ERR_TRANSPORT_ADDRESS_IN_USE or `errorCode`, the message naming
 * `what` (the configuration key). Later errors of the listener are logged, not thrown.
 */
export function listenTcp(server: Server, ip: string, port: number, what: string, errorCode: string, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new TempestError(err.code === 'EADDRINUSE' ? 'ERR_TRANSPORT_ADDRESS_IN_USE' : errorCode, `cannot listen on ${ip}:${port} (${what}): ${err.message}`));
    });
    server.listen(port, ip, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => log.error({ err }, `${what} listener failed`));
      resolve();
    });
  });
}
