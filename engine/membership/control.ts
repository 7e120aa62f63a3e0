/**
 * The membership control plane over TCP on gms_port (DESIGN §3: joins and per-view hellos go
 * over plain TCP, as in Derecho). One JSON request frame per connection, answered by one frame;
 * a join's answer may come much later (when the view that admits the joiner is installed), so
 * the handler replies through a callback and the connection stays open until then.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { readFrame, writeFrame } from '../transport/bootstrap.js';
import { listenTcp } from '../transport/tcp-listen.js';
import type { Logger } from '../util/log.js';

export type ControlHandler = (request: Record<string, unknown>, reply: (answer: unknown) => void, closed: Promise<void>) => void;

const REQUEST_READ_TIMEOUT_MS = 5_000;

export class ControlServer {
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static listen(ip: string, port: number, what: string, handler: ControlHandler, log: Logger): Promise<ControlServer> {
    let self: ControlServer | null = null;
    const server = createServer((sock) => {
      sock.setNoDelay(true);
      self?.sockets.add(sock);
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
      void closed.then(() => self?.sockets.delete(sock));
      sock.on('error', () => sock.destroy());
      readFrame(sock, REQUEST_READ_TIMEOUT_MS)
        .then((v) => {
          if (typeof v !== 'object' || v === null || typeof (v as { type?: unknown }).type !== 'string') throw new Error('malformed request');
          let answered = false;
          handler(v as Record<string, unknown>, (answer) => {
            if (answered || sock.destroyed) return;
            answered = true;
            writeFrame(sock, answer);
            sock.end();
          }, closed);
        })
        .catch((err: Error) => {
          log.debug({ err: err.message, remote: sock.remoteAddress }, `${what} connection dropped`);
          sock.destroy();
        });
    });
    return listenTcp(server, ip, port, what, 'ERR_MEMBERSHIP_LISTEN', log).then(() => (self = new ControlServer(server)));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Sends one request and waits (bounded) for its answer. Rejects on refusal, reset or timeout. */
export async function controlRequest(ip: string, port: number, request: unknown, timeout_ms: number): Promise<Record<string, unknown>> {
  const sock = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ host: ip, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no connection to ${ip}:${port} within ${timeout_ms} ms`));
    }, timeout_ms);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  sock.setNoDelay(true);
  try {
    writeFrame(sock, request);
    const answer = await readFrame(sock, timeout_ms);
    if (typeof answer !== 'object' || answer === null) throw new Error(`malformed answer from ${ip}:${port}`);
    return answer as Record<string, unknown>;
  } finally {
    sock.destroy();
  }
}
