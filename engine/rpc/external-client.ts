/**
 * An external client (seed 003, "external clients"): a process that is not a member talks to any
 * member's external_port. p2p calls are answered by a member of the shard; ordered calls are
 * relayed by a member of the shard into its ordered multicast. The client follows view changes
 * (members push the view) and, when its member dies or answers that it lost its majority, fails
 * over to another member and retries with the same request id (client id, request number): the
 * replicas remember recent ids per client, so a retried update is applied once and answered again.
 */
import { randomBytes } from 'node:crypto';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { decode, encode } from './codec.js';
import { isRemoteError } from './errors.js';
import type { OrderedOutcome } from './query-results.js';
import { type ClusterInfo, KIND_CLUSTER, KIND_EXTERNAL_ORDERED, KIND_EXTERNAL_P2P, PUSH_VIEW } from './protocol.js';
import type { MethodArgs, MethodNames, MethodResult, ReplicatedType } from './replicated-type.js';
import { WireClient } from './wire.js';

export interface ExternalClientOptions {
  /** Members to start from ({host, port} of external_port); any one that answers will do. */
  contacts: { host: string; port: number }[];
  log: Logger;
  /** Longest one request to one member waits, ms. */
  request_timeout_ms?: number;
  /** Longest one call may take across fail-overs, ms. */
  call_timeout_ms?: number;
  max_request_bytes?: number;
  max_reply_bytes?: number;
}

export type { OrderedOutcome } from './query-results.js';

/** Answers after which another member is tried (the call may be retried safely: request ids). */
const RETRYABLE_REMOTE = new Set([
  'ERR_NO_QUORUM',
  'ERR_MEMBERSHIP_OUTCOME_UNKNOWN',
  'ERR_MEMBERSHIP_CLOSED',
  'ERR_MEMBERSHIP_TIMEOUT',
  'ERR_RPC_STARTING',
  'ERR_RPC_NOT_A_REPLICA',
  'ERR_RPC_NODE_REMOVED',
  'ERR_NOT_SHARD_MEMBER',
  'ERR_RPC_TIMEOUT',
]);
const RETRYABLE_LOCAL = new Set(['ERR_RPC_CONNECTION_LOST', 'ERR_RPC_CONNECT_FAILED', 'ERR_RPC_CONNECT_TIMEOUT', 'ERR_RPC_TIMEOUT', 'ERR_RPC_CLOSED']);
const RETRY_PAUSE_MS = 100;
/** A member that failed is avoided this long. */
const AVOID_MS = 3_000;

export class ExternalClient {
  /** Random, never 0: with `seq` it names each ordered call for the replicas' duplicate check. */
  readonly clientId: bigint;
  private seq = 0n;
  private info: ClusterInfo | null = null;
  private readonly conns = new Map<string, Promise<WireClient>>();
  private readonly avoid = new Map<string, number>();
  private readonly listeners: ((c: ClusterInfo) => void)[] = [];
  private closed = false;

  private constructor(private readonly opts: ExternalClientOptions) {
    let id = 0n;
    while (id === 0n) id = randomBytes(8).readBigUInt64LE(0) & 0x7fffffffffffffffn;
    this.clientId = id;
  }

  static async connect(opts: ExternalClientOptions): Promise<ExternalClient> {
    if (opts.contacts.length === 0) throw new TempestError('ERR_RPC_INVALID_ARGUMENT', 'an external client needs at least one member address');
    const c = new ExternalClient(opts);
    await c.refresh();
    return c;
  }

  /** The latest view this client knows. */
  get cluster(): ClusterInfo {
    return this.info!;
  }

  onView(fn: (c: ClusterInfo) => void): void {
    this.listeners.push(fn);
  }

  getSubgroup<T extends object, O extends MethodNames<T>, P extends MethodNames<T>>(type: ReplicatedType<T, O, P>, index = 0): ExternalSubgroup<T, O, P> {
    return new ExternalSubgroup(this, type.name, index, 0);
  }

  private adopt(info: ClusterInfo): void {
    if (this.info !== null && info.vid <= this.info.vid) return;
    this.info = info;
    for (const fn of this.listeners) fn(info);
  }

  /** Asks the members it knows (then the configured contacts) for the current view. */
  private async refresh(): Promise<void> {
    const addrs = [...(this.info?.members.map((m) => `${m.ip}:${m.external_port}`) ?? []), ...this.opts.contacts.map((c) => `${c.host}:${c.port}`)];
    let last: Error | null = null;
    for (const a of addrs) {
      if (this.avoided(a)) continue;
      try {
        const c = await this.conn(a);
        this.adopt(decode(await c.request(KIND_CLUSTER, Buffer.alloc(0), this.requestTimeout())) as ClusterInfo);
        return;
      } catch (err) {
        last = err as Error;
        this.avoid.set(a, Date.now() + AVOID_MS);
      }
    }
    throw new TempestError('ERR_RPC_NO_MEMBER', `no member answered (${addrs.join(', ')}): ${last?.message ?? 'all avoided after failures'}`);
  }

  private avoided(addr: string): boolean {
    const until = this.avoid.get(addr);
    return until !== undefined && until > Date.now();
  }

  private requestTimeout(): number {
    return this.opts.request_timeout_ms ?? 10_000;
  }

  private conn(addr: string): Promise<WireClient> {
    let p = this.conns.get(addr);
    if (p !== undefined) return p;
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    p = WireClient.connect({
      host,
      port,
      connect_timeout_ms: 2_000,
      max_request_bytes: this.opts.max_request_bytes ?? 1024 * 1024,
      max_reply_bytes: this.opts.max_reply_bytes ?? 64 * 1024 * 1024,
      log: this.opts.log,
      onPush: (kind, body) => {
        if (kind === PUSH_VIEW) this.adopt(decode(Buffer.from(body)) as ClusterInfo);
      },
    });
    this.conns.set(addr, p);
    p.then(
      (c) => c.onClose(() => this.conns.get(addr) === p && this.conns.delete(addr)),
      () => this.conns.get(addr) === p && this.conns.delete(addr),
    );
    return p;
  }

  /** Members of shard `shard` of (type, index) in the known view, the ones not avoided first. */
  private shardMembers(type: string, index: number, shard: number): string[] {
    const sg = this.info?.layout.find((s) => s.type === type && s.index === index);
    const ids = sg?.shards[shard] ?? [];
    const addrs = ids.map((id) => this.info!.members.find((m) => m.id === id)).filter((m) => m !== undefined).map((m) => `${m.ip}:${m.external_port}`);
    return [...addrs.filter((a) => !this.avoided(a)), ...addrs.filter((a) => this.avoided(a))];
  }

  /**
   * Runs one call against members of the shard until it succeeds, fails for good, or
   * call_timeout_ms passes; every attempt carries the same body (so the same request id).
   */
  private async call(type: string, index: number, shard: number, kind: number, body: Buffer): Promise<Buffer> {
    if (this.closed) throw new TempestError('ERR_RPC_CLOSED', 'the client is closed');
    const deadline = Date.now() + (this.opts.call_timeout_ms ?? 30_000);
    let last: Error | null = null;
    for (let attempt = 0; Date.now() < deadline && !this.closed; attempt++) {
      if (attempt > 0) {
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        await this.refresh().catch((err: Error) => (last = err));
      }
      const targets = this.shardMembers(type, index, shard);
      if (targets.length === 0) {
        last = new TempestError('ERR_RPC_NO_MEMBER', `view ${this.info?.vid} has no member in shard ${shard} of ${type}[${index}]`);
        continue;
      }
      const addr = targets[0]!;
      try {
        const c = await this.conn(addr);
        return await c.request(kind, body, Math.min(this.requestTimeout(), Math.max(1, deadline - Date.now())));
      } catch (err) {
        last = err as Error;
        const retry = isRemoteError(err) ? RETRYABLE_REMOTE.has(err.remoteCode) : RETRYABLE_LOCAL.has((err as TempestError).code);
        if (!retry) throw err;
        this.opts.log.debug({ member: addr, err: (err as Error).message }, 'failing over to another member');
        this.avoid.set(addr, Date.now() + AVOID_MS);
      }
    }
    throw new TempestError('ERR_RPC_TIMEOUT', `the call did not succeed within call_timeout_ms: ${last?.message ?? 'closed'}`);
  }

  /**
   * @internal An ordered call on shard `shard`; `hlc` (the newest timestamp the caller has seen)
   * makes the call's timestamp later than it.
   */
  async ordered(type: string, index: number, shard: number, method: string, args: unknown[], hlc?: bigint): Promise<OrderedOutcome<unknown>> {
    const seq = ++this.seq;
    const body = encode(hlc === undefined ? [type, index, shard, method, args, this.clientId, seq] : [type, index, shard, method, args, this.clientId, seq, hlc], 'args');
    const [version, list] = decode(await this.call(type, index, shard, KIND_EXTERNAL_ORDERED, body)) as [bigint, [number, boolean, unknown][]];
    const replies: OrderedOutcome<unknown>['replies'] = new Map();
    for (const [id, ok, value] of list) {
      if (ok) replies.set(id, { ok: true, value });
      else {
        const e = value as { code?: string; message?: string };
        replies.set(id, { ok: false, code: String(e?.code), message: String(e?.message) });
      }
    }
    return { version, replies };
  }

  /** @internal */
  async p2p(type: string, index: number, shard: number, method: string, args: unknown[]): Promise<unknown> {
    return decode(await this.call(type, index, shard, KIND_EXTERNAL_P2P, encode([type, index, shard, method, args], 'args')));
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    for (const p of all) await p.then((c) => c.close(), () => {});
  }
}

/** Typed calls on one subgroup from outside the group. */
export class ExternalSubgroup<T extends object, O extends MethodNames<T>, P extends MethodNames<T>> {
  constructor(
    private readonly client: ExternalClient,
    private readonly type: string,
    private readonly index: number,
    private readonly shardIndex: number,
  ) {}

  /** The same subgroup, shard `s`. */
  shard(s: number): ExternalSubgroup<T, O, P> {
    return new ExternalSubgroup(this.client, this.type, this.index, s);
  }

  /** An ordered call relayed by a member of the shard; retried safely on fail-over. */
  orderedSend<K extends O>(method: K, ...args: MethodArgs<T, K>): Promise<OrderedOutcome<MethodResult<T, K>>> {
    return this.client.ordered(this.type, this.index, this.shardIndex, method, args as unknown[]) as Promise<OrderedOutcome<MethodResult<T, K>>>;
  }

  /** A read-only call answered by one member of the shard. */
  p2pSend<K extends P>(method: K, ...args: MethodArgs<T, K>): Promise<MethodResult<T, K>> {
    return this.client.p2p(this.type, this.index, this.shardIndex, method, args as unknown[]) as Promise<MethodResult<T, K>>;
  }
}
