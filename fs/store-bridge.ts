/**
 * The member's StoreClient, used from the mount thread (mount-thread.ts) over a MessagePort: the
 * thread serves the kernel's requests on its own event loop, and each store call it makes runs
 * in the main thread on the member's own client (local replica reads, in-process ordered
 * calls), as it would without the thread. Only the calls fs/ makes cross; values are structured
 * clones (a Buffer arrives as a Uint8Array and is made a Buffer again, over the same memory);
 * errors keep their code, message and whether a full disk caused them (errno.ts maps them).
 */
import type { MessagePort } from 'node:worker_threads';
import { StoreError, STORE_ERRORS, type StoreErrorCode } from '../engine/store/errors.js';
import type { BlobSummary, BlobVersion, ByteRange, ClusterSummary, CommitOptions, DeleteOptions, FileMeta, ListOptions, ListPage, NewManifest, PutOptions, ReadPoint, StoreClient, StoreStats, TimePoint, Watch } from '../engine/store/types.js';
import { TempestError } from '../engine/util/errors.js';
import type { Logger } from '../engine/util/log.js';
import { noSpace } from './errno.js';
import type { Readable } from 'node:stream';

/** The calls that cross (what fs/ uses). */
const BRIDGED = ['head', 'putChunk', 'putSmall', 'touchChunks', 'commit', 'readChunk', 'move', 'lookup', 'sameShard', 'delete', 'list'] as const;
type Bridged = (typeof BRIDGED)[number];
const BRIDGED_SET = new Set<string>(BRIDGED);

/** Calls in flight from the thread at most (the kernel has few requests outstanding; reads ahead add some). */
const MAX_IN_FLIGHT = 1_024;
/** Events a bridged watch holds for its consumer at most (the change feed drains them at once). */
const WATCH_QUEUE_MAX = 10_000;

type Request = { t: 'call'; id: number; method: Bridged; args: unknown[] } | { t: 'watch'; wid: number; prefix: string } | { t: 'unwatch'; wid: number };
type WireError = { code: string; message: string; delete_marker: boolean; no_space: boolean };
type Reply = { t: 'ok'; id: number; value: unknown } | { t: 'err'; id: number; error: WireError } | { t: 'event'; wid: number; v: BlobSummary } | { t: 'ended'; wid: number };

const asBuffer = (x: unknown): unknown => (x instanceof Uint8Array && !Buffer.isBuffer(x) ? Buffer.from(x.buffer, x.byteOffset, x.byteLength) : x);

function wireError(err: unknown): WireError {
  const e = err as { code?: unknown; message?: unknown; delete_marker?: unknown };
  return { code: typeof e.code === 'string' ? e.code : 'ERR_FS_BRIDGE', message: String(e.message ?? err), delete_marker: e.delete_marker === true, no_space: noSpace(err) };
}

function errorOf(w: WireError): Error {
  const cause = w.no_space ? Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }) : undefined;
  if (w.code.startsWith('ERR_STORE_')) return new StoreError(w.code as StoreErrorCode, w.message, w.delete_marker, cause === undefined ? undefined : { cause });
  return new TempestError(w.code, w.message, cause === undefined ? undefined : { cause });
}

/** Main thread: answers the mount thread's calls on `store` until the port closes. */
export function serveStore(port: MessagePort, store: StoreClient, log: Logger): void {
  const watches = new Map<number, Watch>();
  port.on('message', (r: Request) => {
    if (r.t === 'call') {
      if (!BRIDGED_SET.has(r.method)) {
        port.postMessage({ t: 'err', id: r.id, error: { code: 'ERR_FS_BRIDGE', message: `${String(r.method)} is not a bridged call`, delete_marker: false, no_space: false } } satisfies Reply);
        return;
      }
      const fn = store[r.method] as (...a: unknown[]) => Promise<unknown>;
      let p: Promise<unknown>;
      try {
        const args = r.args.map(asBuffer);
        // The bytes arrived as this thread's own copy: nothing else will change them.
        if (r.method === 'putChunk') args[2] = { owned: true };
        p = Promise.resolve(fn.apply(store, args));
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (value) => port.postMessage({ t: 'ok', id: r.id, value } satisfies Reply),
        (err: unknown) => port.postMessage({ t: 'err', id: r.id, error: wireError(err) } satisfies Reply),
      );
    } else if (r.t === 'watch') {
      const w = store.watch(r.prefix);
      watches.set(r.wid, w);
      void (async () => {
        for (;;) {
          const v = await w.next();
          if (v === null) break;
          port.postMessage({ t: 'event', wid: r.wid, v } satisfies Reply);
        }
        port.postMessage({ t: 'ended', wid: r.wid } satisfies Reply);
      })().catch((err: Error) => log.warn({ err: err.message }, 'a watch for the mount thread failed'));
    } else if (r.t === 'unwatch') {
      watches.get(r.wid)?.close();
      watches.delete(r.wid);
    }
  });
  port.on('close', () => {
    for (const w of watches.values()) w.close();
    watches.clear();
  });
}

/** Mount thread: a StoreClient whose calls run in the main thread (serveStore). */
export class BridgedStoreClient implements StoreClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly watchers = new Map<number, BridgedWatch>();
  private closed = false;

  constructor(
    private readonly port: MessagePort,
    readonly chunk_size_bytes: number,
  ) {
    port.on('message', (r: Reply) => {
      if (r.t === 'ok' || r.t === 'err') {
        const p = this.pending.get(r.id);
        if (p === undefined) return;
        this.pending.delete(r.id);
        if (r.t === 'ok') p.resolve(r.value);
        else p.reject(errorOf(r.error));
      } else if (r.t === 'event') this.watchers.get(r.wid)?.push(r.v);
      else if (r.t === 'ended') this.watchers.get(r.wid)?.end();
    });
  }

  private call(method: Bridged, args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new StoreError(STORE_ERRORS.UNAVAILABLE, 'the mount is closing'));
    if (this.pending.size >= MAX_IN_FLIGHT) return Promise.reject(new StoreError(STORE_ERRORS.UNAVAILABLE, `${MAX_IN_FLIGHT} store calls are in flight already`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Structured clone copies the arguments now: the caller may reuse its buffers at once.
      this.port.postMessage({ t: 'call', id, method, args } satisfies Request);
    });
  }

  head(key: string, point: ReadPoint): Promise<BlobVersion> {
    return this.call('head', [key, point]) as Promise<BlobVersion>;
  }
  putChunk(key: string, bytes: Buffer): Promise<string> {
    return this.call('putChunk', [key, bytes]) as Promise<string>;
  }
  putSmall(key: string, bytes: Buffer, m: { sha256?: string; content_type?: string | undefined; meta?: FileMeta | null | undefined }, cond?: CommitOptions): Promise<BlobVersion> {
    return this.call('putSmall', [key, bytes, m, cond]) as Promise<BlobVersion>;
  }
  async touchChunks(key: string, ids: string[]): Promise<void> {
    await this.call('touchChunks', [key, ids]);
  }
  commit(key: string, m: NewManifest, opts?: CommitOptions): Promise<BlobVersion> {
    return this.call('commit', [key, m, opts]) as Promise<BlobVersion>;
  }
  async readChunk(key: string, id: string, size: number): Promise<Buffer> {
    return asBuffer(await this.call('readChunk', [key, id, size])) as Buffer;
  }
  move(from: string, to: string, meta?: FileMeta | null): Promise<BlobVersion> {
    return this.call('move', [from, to, meta]) as Promise<BlobVersion>;
  }
  lookup(key: string, at: TimePoint | null): Promise<{ version: BlobVersion | null; child_timestamp: bigint | null }> {
    return this.call('lookup', [key, at]) as Promise<{ version: BlobVersion | null; child_timestamp: bigint | null }>;
  }
  sameShard(a: string, b: string): Promise<boolean> {
    return this.call('sameShard', [a, b]) as Promise<boolean>;
  }
  delete(key: string, opts?: DeleteOptions): Promise<BlobVersion> {
    return this.call('delete', [key, opts]) as Promise<BlobVersion>;
  }
  list(opts: ListOptions): Promise<ListPage> {
    return this.call('list', [opts]) as Promise<ListPage>;
  }

  watch(prefix: string): Watch {
    const wid = this.nextId++;
    const w = new BridgedWatch(() => {
      this.watchers.delete(wid);
      if (!this.closed) this.port.postMessage({ t: 'unwatch', wid } satisfies Request);
    });
    this.watchers.set(wid, w);
    this.port.postMessage({ t: 'watch', wid, prefix } satisfies Request);
    return w;
  }

  // Not used by fs/: streams (put, read) and reports go through the member's own HTTP API.
  put(_key: string, _body: Readable | AsyncIterable<Buffer>, _opts: PutOptions): Promise<BlobVersion> {
    return Promise.reject(notBridged('put'));
  }
  read(_v: BlobVersion, _range?: ByteRange): Readable {
    throw notBridged('read');
  }
  versions(_key: string): Promise<BlobSummary[]> {
    return Promise.reject(notBridged('versions'));
  }
  cluster(): Promise<ClusterSummary> {
    return Promise.reject(notBridged('cluster'));
  }
  stats(): Promise<StoreStats> {
    return Promise.reject(notBridged('stats'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watchers.values()]) w.close();
    const err = new StoreError(STORE_ERRORS.UNAVAILABLE, 'the mount is closing');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.port.close();
  }
}

function notBridged(method: string): Error {
  return new TempestError('ERR_FS_BRIDGE', `${method} is not available in the mount thread`);
}

class BridgedWatch implements Watch {
  private readonly queue: BlobSummary[] = [];
  private waiter: ((v: BlobSummary | null) => void) | null = null;
  private done = false;

  constructor(private readonly onClose: () => void) {}

  push(v: BlobSummary): void {
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w(v);
      return;
    }
    // Bounded: a consumer this far behind loses the oldest (the change feed only drops cached
    // attributes, which expire on their own).
    if (this.queue.length >= WATCH_QUEUE_MAX) this.queue.shift();
    this.queue.push(v);
  }

  end(): void {
    this.done = true;
    this.waiter?.(null);
    this.waiter = null;
  }

  next(): Promise<BlobSummary | null> {
    const v = this.queue.shift();
    if (v !== undefined) return Promise.resolve(v);
    if (this.done) return Promise.resolve(null);
    return new Promise((r) => (this.waiter = r));
  }

  close(): void {
    if (this.done) return;
    this.end();
    this.onClose();
  }
}
