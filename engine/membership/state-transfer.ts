/**
 * State transfer on state_transfer_port (DESIGN §6): when a view gives a shard a member that did
 * not hold it before (a joiner, or a spare replacing a failed member), one old member of the shard
 * captures the shard's state as of the end of the previous view and the newcomer fetches it here.
 * Snapshots are kept per (view, subgroup, shard) until fetched by every newcomer or a newer view
 * replaces them. Raw bytes follow a small JSON header; nothing is parsed on the way.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { writeFrame } from '../transport/bootstrap.js';
import { listenTcp } from '../transport/tcp-listen.js';
import { TempestError } from '../util/errors.js';
import type { StateSource } from './group-member.js';
import type { Logger } from '../util/log.js';

const HEADER_MAX_BYTES = 4096;
const REQUEST_TIMEOUT_MS = 5_000;
const KEEP_VIEWS = 4;

function key(vid: number, subgroup: number, shard: number): string {
  return `${vid}/${subgroup}/${shard}`;
}

export class StateTransferServer {
  private readonly snapshots = new Map<string, StateSource>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, private readonly log: Logger) {}

  static listen(ip: string, port: number, log: Logger): Promise<StateTransferServer> {
    let self: StateTransferServer | null = null;
    const server = createServer((sock) => self?.serve(sock));
    return listenTcp(server, ip, port, 'state_transfer_port', 'ERR_MEMBERSHIP_LISTEN', log).then(() => (self = new StateTransferServer(server, log)));
  }

  /**
   * Offers a shard's state for view vid. Snapshots of views more than KEEP_VIEWS older are dropped
   * (a newcomer fetching from an older view than that has been replaced by a newer view anyway).
   */
  offer(vid: number, subgroup: number, shard: number, state: StateSource): void {
    for (const k of this.snapshots.keys()) if (Number(k.split('/')[0]) < vid - KEEP_VIEWS) this.snapshots.delete(k);
    this.snapshots.set(key(vid, subgroup, shard), state);
  }

  private serve(sock: Socket): void {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const timer = setTimeout(() => sock.destroy(), REQUEST_TIMEOUT_MS);
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4) return;
      const len = buf.readUInt32BE(0);
      if (len > HEADER_MAX_BYTES) return sock.destroy();
      if (buf.length < 4 + len) return;
      sock.off('data', onData);
      clearTimeout(timer);
      let req: { vid?: unknown; subgroup?: unknown; shard?: unknown; since?: unknown };
      try {
        req = JSON.parse(buf.subarray(4, 4 + len).toString('utf8')) as typeof req;
      } catch {
        return sock.destroy();
      }
      const source = this.snapshots.get(key(Number(req.vid), Number(req.subgroup), Number(req.shard)));
      const since = typeof req.since === 'string' && /^-?\d{1,20}$/.test(req.since) ? BigInt(req.since) : -1n;
      if (source === undefined) {
        writeFrame(sock, { ok: false, reason: `no state for view ${String(req.vid)}, subgroup ${String(req.subgroup)}, shard ${String(req.shard)} here` });
        sock.end();
        return;
      }
      Promise.resolve()
        .then(() => source(since))
        .then((state) => {
          writeFrame(sock, { ok: true, size_bytes: state.length });
          sock.end(state);
          this.log.info({ vid: req.vid, subgroup: req.subgroup, shard: req.shard, since: String(since), size_bytes: state.length, to: sock.remoteAddress }, 'state sent');
        })
        .catch((err: Error) => {
          this.log.error({ err: err.message }, 'could not produce the state');
          writeFrame(sock, { ok: false, reason: `the source failed: ${err.message}` });
          sock.end();
        });
    };
    sock.on('data', onData);
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.snapshots.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Fetches a shard's state for view vid from a member's state_transfer_port (bounded in time). */
export function fetchState(ip: string, port: number, vid: number, subgroup: number, shard: number, since: bigint, timeout_ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: ip, port });
    const chunks: Buffer[] = [];
    let header: { ok: boolean; size_bytes?: number; reason?: string } | null = null;
    let pending = Buffer.alloc(0);
    let got = 0;
    const timer = setTimeout(() => fail(new Error(`state transfer from ${ip}:${port} took over ${timeout_ms} ms`)), timeout_ms);
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new TempestError('ERR_STATE_TRANSFER', `state transfer of subgroup ${subgroup} shard ${shard} (view ${vid}) failed: ${err.message}`));
    };
    sock.once('connect', () => {
      const body = Buffer.from(JSON.stringify({ vid, subgroup, shard, since: since.toString() }));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      sock.write(Buffer.concat([head, body]));
    });
    sock.on('data', (chunk: Buffer) => {
      if (header === null) {
        pending = Buffer.concat([pending, chunk]);
        if (pending.length < 4) return;
        const len = pending.readUInt32BE(0);
        if (len > HEADER_MAX_BYTES) return fail(new Error('oversize header'));
        if (pending.length < 4 + len) return;
        try {
          header = JSON.parse(pending.subarray(4, 4 + len).toString('utf8')) as typeof header;
        } catch {
          return fail(new Error('malformed header'));
        }
        if (!header!.ok) return fail(new Error(header!.reason ?? 'refused'));
        chunk = pending.subarray(4 + len);
      }
      chunks.push(chunk);
      got += chunk.length;
    });
    sock.on('error', (err) => fail(err));
    sock.on('close', () => {
      if (header === null || !header.ok) return fail(new Error('connection closed before the state'));
      if (got !== header.size_bytes) return fail(new Error(`got ${got} of ${header.size_bytes} bytes`));
      clearTimeout(timer);
      resolve(Buffer.concat(chunks, got));
    });
  });
}
