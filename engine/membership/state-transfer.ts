/**
 * State transfer on state_transfer_port (DESIGN §6): when a view gives a shard a member that did
 * not hold it before (a joiner, or a spare replacing a failed member), one old member of the shard
 * captures the shard's state as of the end of the previous view and the newcomer fetches it here.
 * Snapshots are kept per (view, subgroup, shard) until a newer view replaces them.
 *
 * A state is a stream of records (the layer above decides what they hold): after a small JSON
 * header, each record goes as `u32 length | bytes`, and a zero length ends the stream. Both sides
 * hold at most a record at a time (the sender waits for the socket to drain, the fetcher reads as
 * it installs), so a shard's state may be far larger than memory. A stream that stops without
 * its end is an error, never a shorter state.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { writeFrame } from '../transport/bootstrap.js';
import { listenTcp } from '../transport/tcp-listen.js';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { StateSource } from './group-member.js';
import type { Logger } from '../util/log.js';

const HEADER_MAX_BYTES = 4096;
const REQUEST_TIMEOUT_MS = 5_000;
/** A sender whose fetcher reads nothing for this long gives up (the fetcher has its own limit). */
const SEND_IDLE_TIMEOUT_MS = 60_000;
const KEEP_VIEWS = 4;
const LENGTH_BYTES = 4;
/** Largest record (the length is a u32; the layer above keeps records near 1 MiB). */
export const MAX_STATE_RECORD_BYTES = 0xffff_ffff;

function key(vid: number, subgroup: number, shard: number): string {
  return `${vid}/${subgroup}/${shard}`;
}

function lengthPrefix(n: number): Buffer {
  const b = Buffer.allocUnsafe(LENGTH_BYTES);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Resolves when the socket can take more, or is gone (the next write then fails the send). */
function drained(sock: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
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
      void this.send(sock, source, since, req);
    };
    sock.on('data', onData);
  }

  /** Streams the records of `source` from `since`; the header goes once the first record exists, so a source failing at once is reported as such. */
  private async send(sock: Socket, source: StateSource, since: bigint, req: { vid?: unknown; subgroup?: unknown; shard?: unknown }): Promise<void> {
    sock.setTimeout(SEND_IDLE_TIMEOUT_MS, () => sock.destroy());
    let headerSent = false;
    let records = 0;
    let bytes = 0;
    try {
      for await (const record of source(since)) {
        assert(record.length > 0 && record.length <= MAX_STATE_RECORD_BYTES, 'a state record holds 1..2^32-1 bytes');
        if (sock.destroyed) throw new Error('the fetcher went away');
        if (!headerSent) {
          writeFrame(sock, { ok: true });
          headerSent = true;
        }
        sock.write(lengthPrefix(record.length));
        if (!sock.write(record)) await drained(sock);
        records++;
        bytes += record.length;
      }
      if (!headerSent) writeFrame(sock, { ok: true });
      sock.end(lengthPrefix(0));
      this.log.info({ vid: req.vid, subgroup: req.subgroup, shard: req.shard, since: String(since), records, size_bytes: bytes, to: sock.remoteAddress }, 'state sent');
    } catch (err) {
      this.log.error({ err: (err as Error).message, records, size_bytes: bytes }, 'could not send the state');
      if (headerSent) sock.destroy(); // no end marker: the fetcher sees the stream cut
      else {
        writeFrame(sock, { ok: false, reason: `the source failed: ${(err as Error).message}` });
        sock.end();
      }
    }
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.snapshots.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Reassembles length-prefixed records from a byte stream, copying only records split across chunks. */
class RecordParser {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The next `n` bytes, or null when fewer are buffered. */
  take(n: number): Buffer | null {
    if (this.buffered < n) return null;
    const head = this.chunks[0]!;
    let out: Buffer;
    if (head.length >= n) {
      out = head.subarray(0, n);
      if (head.length === n) this.chunks.shift();
      else this.chunks[0] = head.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }

  /** The u32 length at the front, without consuming it; null when fewer than 4 bytes are buffered. */
  peekLength(): number | null {
    if (this.buffered < LENGTH_BYTES) return null;
    const head = this.chunks[0]!;
    if (head.length >= LENGTH_BYTES) return head.readUInt32BE(0);
    let n = 0;
    for (let i = 0, c = 0, at = 0; i < LENGTH_BYTES; i++, at++) {
      while (at >= this.chunks[c]!.length) {
        c++;
        at = 0;
      }
      n = n * 256 + this.chunks[c]![at]!;
    }
    return n;
  }
}

/**
 * Fetches a shard's state for view vid from a member's state_transfer_port: its records, in order,
 * as they arrive (the socket is read only as fast as the caller consumes them). Fails with
 * ERR_STATE_TRANSFER when the member refuses, when nothing arrives for idle_timeout_ms, or when
 * the stream stops before its end.
 */
export async function* fetchState(ip: string, port: number, vid: number, subgroup: number, shard: number, since: bigint, idle_timeout_ms: number): AsyncGenerator<Buffer> {
  const what = `state transfer of subgroup ${subgroup} shard ${shard} (view ${vid}) from ${ip}:${port}`;
  const sock = connect({ host: ip, port });
  sock.setTimeout(idle_timeout_ms, () => sock.destroy(new Error(`nothing arrived for ${idle_timeout_ms} ms`)));
  try {
    const body = Buffer.from(JSON.stringify({ vid, subgroup, shard, since: since.toString() }));
    sock.write(Buffer.concat([lengthPrefix(body.length), body]));
    const parser = new RecordParser();
    let header: { ok: boolean; reason?: string } | null = null;
    for await (const chunk of sock as AsyncIterable<Buffer>) {
      parser.push(chunk);
      if (header === null) {
        const len = parser.peekLength();
        if (len === null) continue;
        if (len > HEADER_MAX_BYTES) throw new Error('oversize header');
        if (parser.bufferedBytes < LENGTH_BYTES + len) continue;
        parser.take(LENGTH_BYTES);
        try {
          header = JSON.parse(parser.take(len)!.toString('utf8')) as { ok: boolean; reason?: string };
        } catch {
          throw new Error('malformed header');
        }
        if (!header.ok) throw new Error(header.reason ?? 'refused');
      }
      for (;;) {
        const len = parser.peekLength();
        if (len === null || parser.bufferedBytes < LENGTH_BYTES + len) break;
        parser.take(LENGTH_BYTES);
        if (len === 0) {
          if (parser.bufferedBytes > 0) throw new Error('bytes after the end of the state');
          return;
        }
        yield parser.take(len)!;
      }
    }
    throw new Error(header === null ? 'connection closed before the state' : 'the stream stopped before the end of the state');
  } catch (err) {
    throw err instanceof TempestError ? err : new TempestError('ERR_STATE_TRANSFER', `${what} failed: ${(err as Error).message}`);
  } finally {
    sock.destroy();
  }
}
