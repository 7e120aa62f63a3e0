/**
 * A libfabric endpoint as the rest of Tempest sees it: open on a configured provider, register
 * memory once, post sends, receives and RMA writes, and get their completions in batches on the
 * event loop. No per-operation allocation: completions are routed to handler slots by number and
 * carry a caller-chosen tag.
 */
import { Socket } from 'node:net';
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { COMPLETION_SIZE_BYTES, CompletionKind, type CtxHandle, FI_EAGAIN, type MrHandle, nativeFabric } from './native-lib.js';

export { CompletionKind } from './native-lib.js';

/** The providers a Tempest configuration may name, and the libfabric stacks they mean. */
export const PROVIDER_STACKS: Record<string, string> = {
  tcp: 'tcp;ofi_rxm',
  sockets: 'sockets',
  verbs: 'verbs;ofi_rxm',
};

export interface FabricOptions {
  /** `tcp`, `sockets`, `verbs`, or a full libfabric provider string. */
  provider: string;
  /** libfabric domain (interface or NIC), e.g. `lo`; empty for any. */
  domain: string;
  ip: string;
  port: number;
  tx_depth: number;
  rx_depth: number;
  /** Completions the native side may queue for JS before it stops reading the queue. */
  completion_ring_entries?: number;
  /**
   * How completions reach JS: `loop` (Node's event loop watches the completion queue's wait fd:
   * one wake-up per arrival) or `thread` (a native progress thread relays them). Default: loop
   * when the provider offers a wait fd, else thread; TEMPEST_COMPLETIONS overrides.
   */
  completion_mode?: 'loop' | 'thread';
  log: Logger;
}

/** Receives the completions of operations posted with its handler id. */
export interface CompletionHandler {
  onCompletion(kind: CompletionKind, tag: number, len: number, data: number): void;
  onError(opKind: CompletionKind, tag: number, err: number, message: string): void;
}

/** Called when a peer's RMA write with immediate data has landed in our memory. */
export type RemoteWriteListener = (value24: number, len: number) => void;

/** Where a peer may write: the base its offsets are added to, the key, the length. */
export interface RemoteRegion {
  base: number;
  key: number;
  length: number;
}

/** A peer in the address vector. */
export type PeerAddress = number & { readonly __brand: 'fi_addr' };

export class MemoryRegion {
  constructor(
    readonly buffer: Buffer,
    readonly handle: MrHandle,
    readonly key: number,
    readonly remoteBase: number,
  ) {}

  get length(): number {
    return this.buffer.length;
  }

  /** What a peer needs to write into this region. */
  descriptor(): RemoteRegion {
    return { base: this.remoteBase, key: this.key, length: this.buffer.length };
  }
}

const POLL_BATCH = 256;
/** Back-off for operations refused with EAGAIN when no completion is due to wake us. */
const RETRY_MIN_MS = 1;
const RETRY_MAX_MS = 50;
/**
 * Loop mode: how often the queue is read even without a wake-up. The wait fd signals completions
 * but not connection requests, which ofi_rxm progresses only when its queue is read.
 */
const BACKSTOP_PROGRESS_MS = 50;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function toSafeNumber(v: number | bigint, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  assert(Number.isSafeInteger(n) && n <= MAX_SAFE, `${what} ${v} is not a safe integer`);
  return n;
}

/** Bytes of immediate data every protocol here relies on (verbs guarantees 4). */
const IMMEDIATE_BYTES = 4;

/** Immediate data: 8 bits of service id, 24 bits of that service's value. */
export function immediate(service: number, value24: number): number {
  return ((service & 0xff) << 24 | (value24 & 0xffffff)) >>> 0;
}

export class Fabric {
  readonly provider: string;
  readonly domain: string;
  /** How completions reach JS (see FabricOptions.completion_mode). */
  completionMode: 'loop' | 'thread' = 'thread';
  readonly log: Logger;
  private readonly lib = nativeFabric();
  private ctx: CtxHandle | null;
  private readonly notify: Socket;
  private readonly completions = Buffer.alloc(POLL_BATCH * COMPLETION_SIZE_BYTES);
  private readonly handlers: (CompletionHandler | undefined)[] = [undefined];
  private readonly remoteListeners: (RemoteWriteListener | undefined)[] = new Array(256);
  private readonly regions = new Set<MemoryRegion>();
  private readonly peerAddresses = new Map<string, PeerAddress>();
  private readonly capacityWaiters = new Set<() => void>();
  /** Keys we choose where the provider does not (no FI_MR_PROV_KEY); unique within our domain. */
  private nextKey = 1;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay_ms = RETRY_MIN_MS;
  private backstop: NodeJS.Timeout | undefined;
  private releaseLoopWake: (() => void) | undefined;
  private draining = false;

  private constructor(ctx: CtxHandle, opts: FabricOptions) {
    this.ctx = ctx;
    this.provider = this.lib.tf_provider_name(ctx);
    this.domain = this.lib.tf_domain_name(ctx);
    this.log = opts.log;
    const fd = this.lib.tf_notify_fd(ctx);
    this.notify = new Socket({ fd, readable: true, writable: false });
    this.notify.on('data', () => this.drain());
    this.notify.on('error', (err) => this.log.error({ err }, 'completion pipe failed'));
  }

  static open(opts: FabricOptions): Fabric {
    const lib = nativeFabric();
    const stack = PROVIDER_STACKS[opts.provider] ?? opts.provider;
    const errbuf = Buffer.alloc(512);
    const ctx = lib.tf_open(
      stack,
      opts.domain,
      opts.ip,
      String(opts.port),
      opts.tx_depth,
      opts.rx_depth,
      opts.completion_ring_entries ?? 8192,
      errbuf,
      errbuf.length,
    );
    if (ctx === null) {
      const why = errbuf.toString('utf8', 0, Math.max(0, errbuf.indexOf(0)));
      const inUse = /address already in use|in use/i.test(why);
      throw new TempestError(
        inUse ? 'ERR_TRANSPORT_ADDRESS_IN_USE' : 'ERR_TRANSPORT_OPEN',
        `cannot open libfabric provider "${opts.provider}" (${stack}) at ${opts.ip}:${opts.port}: ${why}`,
      );
    }
    const fabric = new Fabric(ctx, opts);
    const immediateBytes = lib.tf_cq_data_size(ctx);
    if (immediateBytes < IMMEDIATE_BYTES) {
      fabric.close();
      throw new TempestError(
        'ERR_TRANSPORT_OPEN',
        `libfabric provider "${opts.provider}" (${stack}) carries ${immediateBytes} bytes of immediate data; Tempest needs ${IMMEDIATE_BYTES}`,
      );
    }
    const wanted = opts.completion_mode ?? (process.env.TEMPEST_COMPLETIONS === 'thread' ? 'thread' : 'loop');
    if (wanted === 'loop' && lib.tf_attach_loop(ctx) === 0) {
      fabric.completionMode = 'loop';
      fabric.releaseLoopWake = lib.registerLoopWake(ctx, () => fabric.wakeFromLoop());
      fabric.backstop = setInterval(() => fabric.drain(), BACKSTOP_PROGRESS_MS).unref();
    } else {
      const rc = lib.tf_start_progress(ctx);
      if (rc !== 0) {
        fabric.close();
        throw new TempestError('ERR_TRANSPORT_OPEN', `cannot start the completion progress thread: ${lib.tf_strerror(rc)}`);
      }
    }
    fabric.log.debug({ provider: fabric.provider, domain: fabric.domain, port: opts.port, completions: fabric.completionMode }, 'fabric open');
    return fabric;
  }

  private handle(): CtxHandle {
    if (this.ctx === null) throw new TempestError('ERR_TRANSPORT_CLOSED', 'the fabric endpoint is closed');
    return this.ctx;
  }

  get closed(): boolean {
    return this.ctx === null;
  }

  /** This endpoint's libfabric address, for peers' address vectors. */
  address(): Buffer {
    const out = Buffer.alloc(256);
    const n = this.lib.tf_local_address(this.handle(), out, out.length);
    if (n < 0) throw new TempestError('ERR_TRANSPORT_ADDRESS', `fi_getname failed: ${this.lib.tf_strerror(n)}`);
    return out.subarray(0, n);
  }

  /** Inserts a peer's address once; later views reuse the same fi_addr (and its connection). */
  addPeer(address: Buffer): PeerAddress {
    const key = address.toString('base64');
    const known = this.peerAddresses.get(key);
    if (known !== undefined) return known;
    const r = toSafeNumber(this.lib.tf_av_insert(this.handle(), address, address.length), 'fi_addr');
    if (r < 0) throw new TempestError('ERR_TRANSPORT_PEER', `fi_av_insert failed: ${this.lib.tf_strerror(r)}`);
    this.peerAddresses.set(key, r as PeerAddress);
    return r as PeerAddress;
  }

  /**
   * Forgets a peer (it left the group): libfabric closes its connection and frees what it held.
   * Only once nothing more will be posted to it; a later addPeer of the same address starts afresh.
   */
  removePeer(peer: PeerAddress): void {
    if (this.ctx === null) return;
    for (const [key, addr] of this.peerAddresses) if (addr === peer) this.peerAddresses.delete(key);
    const rc = this.lib.tf_av_remove(this.ctx, peer);
    if (rc !== 0) this.log.debug({ peer, rc }, 'fi_av_remove failed');
  }

  /** Registers `buffer` once; every later operation on it reuses the registration. */
  register(buffer: Buffer): MemoryRegion {
    const errbuf = Buffer.alloc(256);
    const key = this.nextKey++;
    const mr = this.lib.tf_mr_register(this.handle(), buffer, buffer.length, key, errbuf, errbuf.length);
    if (mr === null) {
      const why = errbuf.toString('utf8', 0, Math.max(0, errbuf.indexOf(0)));
      throw new TempestError('ERR_TRANSPORT_REGISTER', `cannot register ${buffer.length} bytes: ${why}`);
    }
    const region = new MemoryRegion(
      buffer,
      mr,
      toSafeNumber(this.lib.tf_mr_key(mr), 'memory key'),
      toSafeNumber(this.lib.tf_mr_remote_base(mr), 'memory base'),
    );
    this.regions.add(region);
    return region;
  }

  /**
   * Releases a registration made for one view. Only once no peer can still write into it:
   * ofi_rxm answers a write to a closed key by tearing down the whole connection to that peer
   * (see membership/view-instance.ts for how long views keep theirs).
   */
  deregister(region: MemoryRegion): void {
    if (!this.regions.delete(region) || this.ctx === null) return;
    this.lib.tf_mr_close(region.handle);
  }

  /** Adds a completion handler; its id goes with every operation it posts. */
  addHandler(handler: CompletionHandler): number {
    this.handlers.push(handler);
    return this.handlers.length - 1;
  }

  /** Removes a completion handler (its operations have completed or will be ignored). */
  removeHandler(id: number): void {
    if (id > 0 && id < this.handlers.length) this.handlers[id] = undefined;
  }

  /** Routes remote writes whose immediate data names `service` (0..255) to `listener`. */
  onRemoteWrite(service: number, listener: RemoteWriteListener): void {
    assert(service >= 0 && service < 256, 'service id is 8 bits');
    assert(this.remoteListeners[service] === undefined, `remote-write service ${service} taken`);
    this.remoteListeners[service] = listener;
  }

  /** Frees a service id taken with onRemoteWrite (the layer using it has closed). */
  offRemoteWrite(service: number): void {
    this.remoteListeners[service] = undefined;
  }

  /**
   * Calls `fn` once when a refused operation may succeed: after the next batch of completions, or
   * after a short back-off (libfabric also refuses while a connection is being set up, which
   * produces no completion to wake on).
   */
  whenCapacity(fn: () => void): void {
    this.capacityWaiters.add(fn);
    if (this.retryTimer === undefined) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.retryDelay_ms = Math.min(this.retryDelay_ms * 2, RETRY_MAX_MS);
        // Reading the queue drives the provider (connection set-up needs it in loop mode).
        this.drain();
        this.runCapacityWaiters();
      }, this.retryDelay_ms);
    }
  }

  private runCapacityWaiters(): void {
    if (this.capacityWaiters.size === 0) return;
    const waiters = [...this.capacityWaiters];
    this.capacityWaiters.clear();
    for (const w of waiters) w();
  }

  private check(rc: number, what: string): boolean {
    if (rc === 0) return true;
    if (rc === FI_EAGAIN) return false;
    throw new TempestError('ERR_TRANSPORT_OP', `${what} failed: ${this.lib.tf_strerror(rc)} (${rc})`);
  }

  /** Posts a receive into region[offset, offset+len) from any peer. False: no capacity now. */
  postRecv(region: MemoryRegion, offset: number, len: number, handler: number, tag: number): boolean {
    return this.check(this.lib.tf_post_recv(this.handle(), -1, region.handle, offset, len, handler, tag), 'fi_recv');
  }

  /** Sends region[offset, offset+len) to peer, with 32-bit immediate data if given. */
  send(peer: PeerAddress, region: MemoryRegion, offset: number, len: number, handler: number, tag: number, imm?: number): boolean {
    const rc = this.lib.tf_send(this.handle(), peer, region.handle, offset, len, imm ?? 0, imm === undefined ? 0 : 1, handler, tag);
    return this.check(rc, 'fi_send');
  }

  /** RMA-writes region[offset, offset+len) into the peer's remote region at remoteOffset. */
  write(
    peer: PeerAddress,
    region: MemoryRegion,
    offset: number,
    len: number,
    remote: RemoteRegion,
    remoteOffset: number,
    handler: number,
    tag: number,
    imm?: number,
  ): boolean {
    if (remoteOffset < 0 || remoteOffset + len > remote.length) {
      throw new TempestError('ERR_TRANSPORT_RANGE', `RMA write of ${len} bytes at ${remoteOffset} exceeds the remote region of ${remote.length} bytes`);
    }
    const rc = this.lib.tf_write(
      this.handle(),
      peer,
      region.handle,
      offset,
      len,
      remote.base + remoteOffset,
      remote.key,
      imm ?? 0,
      imm === undefined ? 0 : 1,
      handler,
      tag,
    );
    return this.check(rc, 'fi_write');
  }

  /** Called by the native side, on the main thread, inside libuv's poll callback (loop mode). */
  private wakeFromLoop(): void {
    try {
      this.drain();
    } catch (err) {
      // koffi would swallow an exception thrown here; let it surface as an uncaught one.
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Dispatches every queued completion. Runs on a wake-up; callers may also call it directly. */
  drain(): void {
    if (this.draining || this.ctx === null) return;
    this.draining = true;
    const c = this.completions;
    try {
      for (;;) {
        if (this.ctx === null) break;
        const n = this.lib.tf_poll(this.ctx, c, POLL_BATCH);
        for (let i = 0; i < n; i++) this.dispatch(i * COMPLETION_SIZE_BYTES);
        if (n < POLL_BATCH) break;
      }
    } finally {
      this.draining = false;
    }
    if (this.capacityWaiters.size > 0) {
      this.retryDelay_ms = RETRY_MIN_MS;
      this.runCapacityWaiters();
    }
  }

  private dispatch(at: number): void {
    const c = this.completions;
    const handlerId = c.readUInt32LE(at);
    const tag = c.readUInt32LE(at + 4);
    const kind = c.readUInt32LE(at + 8) as CompletionKind;
    const err = c.readInt32LE(at + 12);
    const len = c.readUInt32LE(at + 16) + c.readUInt32LE(at + 20) * 2 ** 32;
    const data = c.readUInt32LE(at + 24);
    if (kind === CompletionKind.RemoteWrite) {
      const listener = this.remoteListeners[data >>> 24];
      if (listener) listener(data & 0xffffff, len);
      else this.log.debug({ service: data >>> 24 }, 'remote write for a closed service');
      return;
    }
    const handler = this.handlers[handlerId];
    if (handler === undefined) {
      // A layer of an ended view removed its handler; its last operations still complete.
      this.log.debug({ handlerId, kind, err }, 'completion for a removed handler');
      return;
    }
    if (kind === CompletionKind.Error) {
      const opKind = c.readUInt32LE(at + 28) as CompletionKind;
      handler.onError(opKind, tag, err, this.lib.tf_strerror(err));
    } else {
      handler.onCompletion(kind, tag, len, data);
    }
  }

  /** Closes the endpoint: stops the progress thread, releases every registration. Idempotent. */
  close(): void {
    const ctx = this.ctx;
    if (ctx === null) return;
    this.drain();
    for (const r of this.regions) this.lib.tf_mr_close(r.handle);
    this.regions.clear();
    this.ctx = null;
    this.releaseLoopWake?.();
    this.releaseLoopWake = undefined;
    this.lib.tf_close(ctx);
    this.notify.destroy();
    this.capacityWaiters.clear();
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.backstop !== undefined) clearInterval(this.backstop);
    this.backstop = undefined;
  }
}
