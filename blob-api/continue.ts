/**
 * `Expect: 100-continue` (what curl sends before a body over 1 MiB): the blob server answers it
 * itself (server.ts listens for 'checkContinue'), so that a refused upload (a key, a size over the
 * limit, a failed condition) is refused before the client sends any of its body. An upload route
 * calls sendContinue once its checks passed, just before it reads the body. In an app served by
 * some other http.Server, Node has already sent the 100 and this does nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

const awaiting = new WeakSet<IncomingMessage>();

/** Marks a request whose client waits for 100 Continue before sending its body. */
export function awaitContinue(req: IncomingMessage): void {
  awaiting.add(req);
}

export function sendContinue(req: IncomingMessage, res: ServerResponse): void {
  if (awaiting.delete(req)) res.writeContinue();
}
