/**
 * The TCP bootstrap (Node `net`, on each member's gms_port): members swap a small JSON hello with
 * their libfabric address and the memory regions peers may write. Control plane only: a few
 * frames per member at start-up; no payload ever travels here.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { TempestError } from '../util/errors.js';
import { listenTcp } from './tcp-listen.js';
import type { Logger } from '../util/log.js';

export interface BootstrapMember {
  id: number;
  ip: string;
  /** TCP port of the member's bootstrap listener (its gms_port). */
  port: number;
}

export interface Hello {
  id: number;
  provider: string;
  /** base64 of the libfabric endpoint address */
  address: string;
  regions: Record<string, { base: number; key: number; length: number }>;
}

const MAX_FRAME_BYTES = 64 * 1024;
const RETRY_DELAY_MIN_MS = 20;
const RETRY_DELAY_MAX_MS = 500;

export function writeFrame(sock: Socket, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  sock.write(Buffer.concat([head, body]));
}

/** Reads one length-prefixed JSON frame, bounded in size and time. */
export function readFrame(sock: Socket, timeout_ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no reply within ${timeout_ms} ms`)), timeout_ms);
    const finish = (err: Error | null, value?: unknown) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len > MAX_FRAME_BYTES) return finish(new Error(`bootstrap frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`));
      if (buf.length < 4 + len) return;
      try {
        finish(null, JSON.parse(buf.subarray(4, 4 + len).toString('utf8')));
      } catch (err) {
        finish(err as Error);
      }
    };
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new Error('connection closed before a reply'));
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
  });
}

function isHello(v: unknown): v is Hello {
  const h = v as Hello;
  return (
    typeof h === 'object' && h !== null && Number.isInteger(h.id) && typeof h.provider === 'string' &&
    typeof h.address === 'string' && typeof h.regions === 'object' && h.regions !== null
  );
}

/** Answers every hello with ours. */
export class BootstrapServer {
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static listen(self: BootstrapMember, hello: Hello, log: Logger): Promise<BootstrapServer> {
    const server = createServer((sock) => {
      sock.setNoDelay(true);
      readFrame(sock, 5_000)
        .then((v) => {
          if (!isHello(v)) throw new Error('malformed hello');
          writeFrame(sock, hello);
          sock.end();
        })
        .catch((err: Error) => {
          log.warn({ err: err.message, remote: sock.remoteAddress }, 'bootstrap connection dropped');
          sock.destroy();
        });
    });
    return listenTcp(server, self.ip, self.port, 'gms_port', 'ERR_TRANSPORT_BOOTSTRAP', log).then(() => new BootstrapServer(server, self.port));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Swaps hellos with `peer`, retrying (with back-off) until `deadline` (epoch ms). */
export async function exchangeHello(peer: BootstrapMember, mine: Hello, deadline: number): Promise<Hello> {
  let delay_ms = RETRY_DELAY_MIN_MS;
  let lastError = 'no attempt';
  while (Date.now() < deadline) {
    try {
      const sock = await new Promise<Socket>((resolve, reject) => {
        const s = connect({ host: peer.ip, port: peer.port });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
      sock.setNoDelay(true);
      try {
        writeFrame(sock, mine);
        const reply = await readFrame(sock, Math.max(100, deadline - Date.now()));
        if (!isHello(reply)) throw new Error('malformed hello');
        if (reply.id !== peer.id) {
          throw new TempestError('ERR_TRANSPORT_PEER_MISMATCH', `${peer.ip}:${peer.port} answered as member ${reply.id}, expected member ${peer.id}`);
        }
        return reply;
      } finally {
        sock.destroy();
      }
    } catch (err) {
      if (err instanceof TempestError) throw err;
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, Math.min(delay_ms, Math.max(0, deadline - Date.now()))));
    delay_ms = Math.min(delay_ms * 2, RETRY_DELAY_MAX_MS);
  }
  throw new TempestError(
    'ERR_TRANSPORT_PEER_UNREACHABLE',
    `member ${peer.id} at ${peer.ip}:${peer.port} did not answer the bootstrap (${lastError})`,
  );
}
