/**
 * A Group of replicated objects (seed 003, "Replicated Objects", "Invoking RPC Functions"): the
 * member process hosts one replica per shard it belongs to, of the types the group declares.
 *
 *   const group = await Group.start({ config, types: [{ type: CacheType, policy: { kind: 'one_subgroup' } }], log });
 *   const results = group.getSubgroup(CacheType).orderedSend('put', 'k', 'v');   // every replica, in order
 *   await results.all();                                                      // one reply per shard member
 *   const v = await group.getSubgroup(CacheType).p2pSend(2, 'get', 'k');          // one replica
 *
 * Ordered calls travel through the shard's ordered multicast (membership/group-member.ts) as a
 * binary header and codec-encoded arguments; each replica applies them in delivery order, logs a
 * version of every Persistent field, and replies to the call's origin once its log is on disk (in
 * a durable subgroup; at once otherwise). p2p calls, replies and external clients use framed TCP
 * on external_port (wire.ts): the libfabric messenger's receives are posted untagged from any
 * source and sized for a fixed mesh, which views that change do not fit yet.
 */
import { rm } from 'node:fs/promises';
import * as path from 'node:path';
import type { TempestConfig } from '../../config/index.js';
import { type Delivery, GroupMember, type SubgroupHandlers } from '../membership/group-member.js';
import type { MemberInfo, ViewSummary } from '../membership/view.js';
import { HybridClock } from '../persistence/hlc.js';
import type { AllocationPolicy } from '../subgroups/allocation.js';
import { TempestError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { CALL_HEADER_BYTES, NO_ORIGIN, readCallHeader, readU64, writeCallHeader, writeU64 } from './call-header.js';
import { decode, decodeDetached, encode, encodeAfter } from './codec.js';
import type { RemoteError } from './errors.js';
import { type ClusterInfo, KIND_CLUSTER, KIND_EXTERNAL_ORDERED, KIND_EXTERNAL_P2P, KIND_ORDERED_REPLIES, KIND_P2P_CALL, PUSH_VIEW } from './protocol.js';
import { type OrderedOutcome, QueryResults } from './query-results.js';
import { decodeOutcome, existingReplicas, isDurableType, type PersistenceSettings, Replica } from './replica.js';
import type { MethodArgs, MethodNames, MethodResult, ReplicatedType } from './replicated-type.js';
import { WireClient, type WireRequest, WireServer, type WireServerConnection } from './wire.js';

export interface HostedType {
  type: ReplicatedType;
  policy: AllocationPolicy;
}

export interface GroupOptions {
  config: TempestConfig;
  types: HostedType[];
  log: Logger;
  /** Longest an ordered call waits for delivery (view changes, inadequate views), ms. */
  send_timeout_ms?: number;
  /** Longest a p2p call or a reply waits, ms. */
  p2p_timeout_ms?: number;
  join_timeout_ms?: number;
}

/** Replies queued until the replica's log covers their version. */
interface QueuedReply {
  version: bigint;
  origin: number;
  request: bigint;
  outcome: Buffer;
}

interface Hosted {
  replica: Replica;
  replies: QueuedReply[];
  flushScheduled: boolean;
  flushing: boolean;
}

/** An ordered call of ours: its results, and how the member acknowledges it (no promise per call). */
class PendingCall {
  constructor(
    private readonly pending: Map<bigint, PendingCall>,
    private readonly request: bigint,
    readonly results: QueryResults<unknown>,
    /** Replies not in by then fail with ERR_RPC_TIMEOUT (a lost reply never pins memory). */
    readonly deadline_ms: number,
  ) {}

  /** Acknowledged: delivered, and in a durable subgroup persisted by every shard member. */
  resolve(): void {
    this.results.resolve();
  }

  /** Never acknowledged (refused, timed out, the member left): the call fails as a whole. */
  reject(err: Error): void {
    this.pending.delete(this.request);
    this.results.reject(err);
  }
}

const DEFAULT_SEND_TIMEOUT_MS = 30_000;
const DEFAULT_P2P_TIMEOUT_MS = 10_000;
const SWEEP_MS = 1_000;
/** Room for the codec's own bytes around a payload that may be as large as a configured limit. */
const FRAMING_MARGIN_BYTES = 4096;

function hostedKey(type: string, subgroupIndex: number, shard: number): string {
  return `${type}#${subgroupIndex}/${shard}`;
}

const EMPTY = Buffer.alloc(0);

/**
 * KIND_ORDERED_REPLIES bodies: replies of one member to ordered calls of the origin, one after
 * another, each (little-endian)
 *
 *   u64 request   the origin's request number      u32 member    who replies
 *   u32 length    of the outcome                   u64 version   where the call was delivered
 *   outcome       the codec-encoded [ok, value or ErrorRecord] (replica.ts)
 *
 * Binary, not codec-encoded: there is one per update and member, and the codec writes bigints as
 * hex text.
 */
const REPLY_HEADER_BYTES = 24;

function encodeReplies(list: readonly QueuedReply[], from: number, to: number, member: number): Buffer {
  let bytes = 0;
  for (let i = from; i < to; i++) bytes += REPLY_HEADER_BYTES + list[i]!.outcome.length;
  const out = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (let i = from; i < to; i++) {
    const r = list[i]!;
    writeU64(out, at, r.request);
    out.writeUInt32LE(member, at + 8);
    out.writeUInt32LE(r.outcome.length, at + 12);
    writeU64(out, at + 16, r.version);
    out.set(r.outcome, at + REPLY_HEADER_BYTES);
    at += REPLY_HEADER_BYTES + r.outcome.length;
  }
  return out;
}

/** Calls `fn` per reply of a KIND_ORDERED_REPLIES body (outcomes are views of it); checks the whole body first. */
function forEachReply(body: Buffer, fn: (request: bigint, member: number, outcome: Buffer) => void): void {
  let at = 0;
  while (at < body.length) {
    if (body.length - at < REPLY_HEADER_BYTES || body.length - at - REPLY_HEADER_BYTES < body.readUInt32LE(at + 12)) {
      throw new TempestError('ERR_RPC_MALFORMED', `a list of replies of ${body.length} bytes is malformed at offset ${at}`);
    }
    at += REPLY_HEADER_BYTES + body.readUInt32LE(at + 12);
  }
  for (at = 0; at < body.length; ) {
    const length = body.readUInt32LE(at + 12);
    fn(readU64(body, at), body.readUInt32LE(at + 8), body.subarray(at + REPLY_HEADER_BYTES, at + REPLY_HEADER_BYTES + length));
    at += REPLY_HEADER_BYTES + length;
  }
}

export class Group {
  private memberOrNull: GroupMember | null = null;
  readonly clock = new HybridClock();
  private readonly opts: GroupOptions;
  private readonly log: Logger;
  private readonly types = new Map<string, ReplicatedType>();
  private readonly hosted = new Map<string, Hosted>();
  private readonly opening = new Map<string, Promise<Hosted>>();
  private readonly pending = new Map<bigint, PendingCall>();
  private readonly peers = new Map<number, Promise<WireClient>>();
  private server: WireServer | null = null;
  private readonly clients = new Set<WireServerConnection>();
  private nextRequest = 1n;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly pers: PersistenceSettings;

  private constructor(opts: GroupOptions, pers: PersistenceSettings, log: Logger) {
    this.opts = opts;
    this.log = log;
    this.pers = pers;
    for (const t of opts.types) this.types.set(t.type.name, t.type);
  }

  /** The group member (membership, multicast); set once start() has joined or started the group. */
  get member(): GroupMember {
    if (this.memberOrNull === null) throw new TempestError('ERR_RPC_STARTING', 'this member is still starting');
    return this.memberOrNull;
  }

  static async start(opts: GroupOptions): Promise<Group> {
    const cfg = opts.config;
    const d = cfg.DERECHO;
    const log = opts.log.child({ layer: 'rpc' });
    const names = new Set<string>();
    for (const t of opts.types) {
      if (names.has(t.type.name)) throw new TempestError('ERR_RPC_DECLARATION', `type ${t.type.name} is hosted twice`);
      names.add(t.type.name);
    }
    const pers: PersistenceSettings = { file_path: cfg.PERS.file_path, segment_size_bytes: cfg.PERS.segment_size, retain_entries: cfg.PERS.retain_entries, retain_ms: cfg.PERS.retain_ms };
    if (cfg.PERS.reset) {
      log.warn({ file_path: cfg.PERS.file_path }, '[PERS] reset: deleting every persistent log');
      await rm(cfg.PERS.file_path, { recursive: true, force: true });
      await rm(path.join(d.data_dir, 'ragged-trim.json'), { force: true });
    }
    // The group exists before the member starts: the first view installs (and may deliver)
    // inside GroupMember.start().
    const group = new Group(opts, pers, log);
    const handlers: Record<string, SubgroupHandlers> = {};
    for (const t of opts.types) handlers[t.type.name] = group.handlersFor(t.type);
    // Logs from an earlier run are opened now, so a total restart knows how far each one goes.
    for (const [type, idx, shard] of await existingReplicas(pers.file_path)) {
      const t = opts.types.find((x) => x.type.name === type);
      if (t !== undefined) await group.open(t.type, idx, shard);
    }
    const self: MemberInfo = { id: d.local_id, ip: d.local_ip, gms_port: d.gms_port, fabric_port: d.sst_port, state_transfer_port: d.state_transfer_port, external_port: d.external_port };
    try {
      group.server = await WireServer.listen({
        host: d.local_ip,
        port: d.external_port,
        max_request_bytes: Math.max(d.max_p2p_request_payload_size, d.max_payload_size) + FRAMING_MARGIN_BYTES,
        max_reply_bytes: d.max_p2p_reply_payload_size + FRAMING_MARGIN_BYTES,
        log,
        what: 'external_port',
        onRequest: (req) => group.onRequest(req),
        onConnection: (conn) => group.addClient(conn),
      });
      group.memberOrNull = await GroupMember.start({
        self,
        leader: { ip: d.leader_ip, gms_port: d.leader_gms_port },
        provider: cfg.RDMA.provider,
        domain: cfg.RDMA.domain,
        tx_depth: cfg.RDMA.tx_depth,
        rx_depth: cfg.RDMA.rx_depth,
        types: opts.types.map((t) => ({ type: t.type.name, policy: t.policy })),
        handlers,
        multicast: {
          max_payload_size: d.max_payload_size,
          max_smc_payload_size: d.max_smc_payload_size,
          block_size: d.block_size,
          window_size: d.window_size,
          rdmc_send_algorithm: d.rdmc_send_algorithm,
        },
        heartbeat_ms: d.heartbeat_ms,
        timeout_ms: d.timeout_ms,
        send_timeout_ms: opts.send_timeout_ms ?? DEFAULT_SEND_TIMEOUT_MS,
        join_timeout_ms: opts.join_timeout_ms ?? 60_000,
        require_majority: !d.disable_partitioning_safety,
        data_dir: d.data_dir,
        log: opts.log.child({ member: d.local_id }),
      });
    } catch (err) {
      await group.close();
      throw err;
    }
    const member = group.memberOrNull;
    for (const h of group.hosted.values()) {
      const r = h.replica;
      if (r.durable && r.persistedVersion >= 0n) member.reportPersisted(r.type.name, r.subgroupIndex, r.shard, r.persistedVersion);
    }
    member.onView((v) => group.viewChanged(v));
    group.sweepTimer = setInterval(() => group.sweep(), SWEEP_MS).unref();
    return group;
  }

  // ---- the typed API ---------------------------------------------------------------------------

  /** A handle on subgroup `index` of `type` (calls are typed by the class's methods). */
  getSubgroup<T extends object, O extends MethodNames<T>, P extends MethodNames<T>>(type: ReplicatedType<T, O, P>, index = 0): SubgroupHandle<T, O, P> {
    this.checkType(type);
    return new SubgroupHandle(this, type, index);
  }

  /** The members of each shard of subgroup `index` of `type` in the current view. */
  getSubgroupMembers(type: ReplicatedType, index = 0): number[][] {
    this.checkType(type);
    const v = this.member.view;
    const sg = v?.layout.subgroups.find((s) => s.type === type.name && s.index === index);
    return sg === undefined ? [] : sg.shards.map((s) => [...s.members]);
  }

  /** This member's replica of `type` (subgroup `index`), if it holds one. */
  localReplica<T extends object>(type: ReplicatedType<T>, index = 0): T | undefined {
    const ref = this.member.myShard(type.name, index);
    if (ref === undefined) return undefined;
    return this.hosted.get(hostedKey(type.name, index, ref.shard))?.replica.obj as T | undefined;
  }

  get myId(): number {
    return this.member.self.id;
  }

  private checkType(type: ReplicatedType): void {
    if (this.types.get(type.name) !== type) throw new TempestError('ERR_RPC_UNKNOWN_TYPE', `this group does not host type ${type.name}`);
  }

  // ---- ordered calls ---------------------------------------------------------------------------

  /**
   * @internal An ordered call to our shard of (type, index) and what an external client gets for
   * it: the version and every replica's reply (they come once the update is stable and, in
   * durable mode, persisted there). `hlc`, the caller's newest timestamp, orders it after that.
   */
  async orderedOutcome(type: ReplicatedType, index: number, method: string, args: unknown[], hlc?: bigint, client = 0n, seq = 0n): Promise<OrderedOutcome<unknown>> {
    if (typeof hlc === 'bigint') this.clock.observe(hlc);
    const results = this.orderedCall(type, index, method, args, client, seq);
    const replies: OrderedOutcome<unknown>['replies'] = new Map();
    for (const [id, p] of await results.replies()) {
      try {
        replies.set(id, { ok: true, value: await p });
      } catch (err) {
        replies.set(id, { ok: false, code: String((err as RemoteError).remoteCode ?? (err as TempestError).code), message: (err as Error).message });
      }
    }
    return { version: (await results.delivered).version, replies };
  }

  /** @internal Sends an ordered call to our shard of (type, index). */
  orderedCall(type: ReplicatedType, index: number, method: string, args: unknown[], client = 0n, seq = 0n): QueryResults<unknown> {
    const m = type.ordered.indexOf(method as never);
    if (m < 0) throw new TempestError('ERR_RPC_UNKNOWN_METHOD', `${type.name}.${method} is not an ordered method`);
    const payload = encodeAfter(CALL_HEADER_BYTES, args, 'args');
    const request = this.nextRequest++;
    writeCallHeader(payload, { method: m, origin: this.myId, hlc: this.clock.now(), request, client, seq });
    const member = this.member;
    const results = new QueryResults<unknown>();
    const call = new PendingCall(this.pending, request, results, Date.now() + (this.opts.send_timeout_ms ?? DEFAULT_SEND_TIMEOUT_MS) * 2);
    this.pending.set(request, call);
    member.sendSettled(type.name, index, payload, call);
    return results;
  }

  private handlersFor(type: ReplicatedType): SubgroupHandlers {
    // The replica the last delivery went to: a shard's deliveries come in long runs.
    let last: Hosted | undefined;
    return {
      durable: isDurableType(type),
      deliver: (m) => {
        let h = last;
        if (h === undefined || h.replica.subgroupIndex !== m.subgroupIndex || h.replica.shard !== m.shard || this.closed) {
          h = this.hosted.get(hostedKey(type.name, m.subgroupIndex, m.shard));
          if (h === undefined) throw new TempestError('ERR_RPC_NO_REPLICA', `a delivery for ${type.name}[${m.subgroupIndex}] shard ${m.shard}, which has no replica here`);
          last = h;
        }
        this.deliver(type, m, h);
      },
      prepare: async (idx, shard) => {
        await this.open(type, idx, shard);
      },
      getState: (idx, shard) => {
        const h = this.hosted.get(hostedKey(type.name, idx, shard));
        if (h === undefined) {
          return async function* (): AsyncGenerator<Buffer> {
            throw new TempestError('ERR_STATE_TRANSFER', `no replica of ${type.name}[${idx}] shard ${shard} here`);
          };
        }
        return h.replica.capture();
      },
      setState: async (idx, shard, records) => {
        const h = await this.open(type, idx, shard);
        await h.replica.install(records);
        this.memberOrNull?.reportPersisted(type.name, idx, shard, h.replica.persistedVersion);
      },
      localVersion: (idx, shard) => this.hosted.get(hostedKey(type.name, idx, shard))?.replica.localVersion ?? -1n,
    };
  }

  /** @internal Opens (once) the replica of a shard. */
  async open(type: ReplicatedType, idx: number, shard: number): Promise<Hosted> {
    const key = hostedKey(type.name, idx, shard);
    const h = this.hosted.get(key);
    if (h !== undefined) return h;
    let p = this.opening.get(key);
    if (p === undefined) {
      p = Replica.open(type, idx, shard, this.pers, this.log, this.opts.config.DERECHO.max_p2p_reply_payload_size).then((replica) => {
        const hosted: Hosted = { replica, replies: [], flushScheduled: false, flushing: false };
        this.hosted.set(key, hosted);
        this.opening.delete(key);
        return hosted;
      });
      p.catch(() => this.opening.delete(key));
      this.opening.set(key, p);
    }
    return p;
  }

  private deliver(type: ReplicatedType, m: Delivery, h: Hosted): void {
    const rep = h.replica;
    // Valid only during this call: the arguments are decoded detached from it (decodeDetached).
    const payload = m.payload;
    const header = readCallHeader(payload);
    const version = (BigInt(m.vid) << 32n) | BigInt(m.index);
    const timestamp = header.hlc > rep.lastTimestamp ? header.hlc : rep.lastTimestamp + 1n;
    this.clock.observe(timestamp);
    const method = type.ordered[header.method];
    let outcome: Buffer;
    if (method === undefined) {
      outcome = encode([false, { code: 'ERR_RPC_UNKNOWN_METHOD', message: `${type.name} has no ordered method #${header.method}`, name: 'TempestError' }]);
      rep.apply({ ...header, client: 0n }, '', [], version, timestamp); // still a version, like every delivery
    } else {
      let args: unknown[];
      try {
        const body = payload.subarray(CALL_HEADER_BYTES);
        args = (type.borrowing.has(method) ? decode(body) : decodeDetached(body)) as unknown[];
        if (!Array.isArray(args)) throw new TempestError('ERR_RPC_MALFORMED', 'arguments are not a list');
        outcome = rep.apply(header, method, args, version, timestamp);
      } catch (err) {
        outcome = encode([false, { code: (err as TempestError).code ?? 'ERR_RPC_MALFORMED', message: (err as Error).message, name: 'TempestError' }]);
      }
    }
    if (header.origin === this.memberOrNull?.self.id) {
      const p = this.pending.get(header.request);
      p?.results.setDelivered(version, m.members);
    }
    if (header.origin !== NO_ORIGIN) h.replies.push({ version, origin: header.origin, request: header.request, outcome });
    this.scheduleFlush(type, m.subgroupIndex, m.shard, h);
  }

  /** Group commit: one flush per replica for everything delivered since the last one. */
  private scheduleFlush(type: ReplicatedType, idx: number, shard: number, h: Hosted): void {
    if (h.flushScheduled) return;
    h.flushScheduled = true;
    setImmediate(() => {
      h.flushScheduled = false;
      if (h.flushing) {
        h.flushScheduled = true; // runs again when the current one ends
        return;
      }
      h.flushing = true;
      h.replica.flush().then(
        (persisted) => {
          h.flushing = false;
          if (this.closed) return;
          if (h.replica.durable) this.memberOrNull?.reportPersisted(type.name, idx, shard, persisted);
          this.releaseReplies(h, h.replica.durable ? persisted : h.replica.lastVersion);
          if (h.flushScheduled || h.replies.length > 0) {
            h.flushScheduled = false;
            this.scheduleFlush(type, idx, shard, h);
          }
        },
        (err: Error) => {
          h.flushing = false;
          // A log that cannot be written must not acknowledge anything: this member stops.
          this.log.fatal({ err: err.message, type: type.name, shard }, 'persisting the log failed; leaving the group');
          void this.memberOrNull?.close();
        },
      );
    });
  }

  private releaseReplies(h: Hosted, upto: bigint): void {
    let n = 0;
    while (n < h.replies.length && h.replies[n]!.version <= upto) n++;
    if (n === 0) return;
    const byOrigin = new Map<number, QueuedReply[]>();
    const me = this.myId;
    for (const r of h.replies.splice(0, n)) {
      if (r.origin === me) {
        this.onReply(r.request, me, r.outcome);
        continue;
      }
      let list = byOrigin.get(r.origin);
      if (list === undefined) byOrigin.set(r.origin, (list = []));
      list.push(r);
    }
    // Batches stay under the request limit (each outcome is at most max_p2p_reply_payload_size).
    const budget = this.opts.config.DERECHO.max_p2p_request_payload_size;
    for (const [origin, list] of byOrigin) {
      let from = 0;
      while (from < list.length) {
        let to = from;
        let bytes = 0;
        while (to < list.length && (to === from || bytes + list[to]!.outcome.length + 48 <= budget)) bytes += list[to++]!.outcome.length + 48;
        const body = encodeReplies(list, from, to, me);
        from = to;
        this.peer(origin)
          .then((c) => c.request(KIND_ORDERED_REPLIES, body, this.opts.p2p_timeout_ms ?? DEFAULT_P2P_TIMEOUT_MS))
          .catch((err: Error) => this.log.debug({ origin, err: err.message }, 'replies not delivered (the origin may have failed)'));
      }
    }
  }

  private onReply(request: bigint, member: number, outcome: Buffer): void {
    const p = this.pending.get(request);
    if (p === undefined) return;
    const [ok, value] = decodeOutcome(outcome);
    p.results.reply(member, ok, value);
    if (p.results.done) this.pending.delete(request);
  }

  // ---- p2p calls -------------------------------------------------------------------------------

  /** @internal */
  async p2pCall(type: ReplicatedType, index: number, node: number, method: string, args: unknown[]): Promise<unknown> {
    if (!type.p2p.includes(method as never)) throw new TempestError('ERR_RPC_UNKNOWN_METHOD', `${type.name}.${method} is not a p2p method`);
    if (node === this.myId) return this.localP2p(type.name, index, undefined, method, args);
    const body = encode([type.name, index, method, args], 'args');
    this.checkRequestSize(body);
    const c = await this.peer(node);
    const reply = await c.request(KIND_P2P_CALL, body, this.opts.p2p_timeout_ms ?? DEFAULT_P2P_TIMEOUT_MS);
    return decode(reply);
  }

  private checkRequestSize(body: Buffer): void {
    const max = this.opts.config.DERECHO.max_p2p_request_payload_size;
    if (body.length > max) throw new TempestError('ERR_RPC_REQUEST_TOO_LARGE', `a p2p request of ${body.length} bytes exceeds [DERECHO] max_p2p_request_payload_size (${max} bytes)`);
  }

  /** Encodes a p2p result, refusing one over max_p2p_reply_payload_size. */
  private encodeReply(value: unknown): Buffer {
    const out = encode(value, 'result');
    const max = this.opts.config.DERECHO.max_p2p_reply_payload_size;
    if (out.length > max) throw new TempestError('ERR_RPC_REPLY_TOO_LARGE', `a reply of ${out.length} bytes exceeds [DERECHO] max_p2p_reply_payload_size (${max} bytes)`);
    return out;
  }

  private async localP2p(typeName: string, index: number, shard: number | undefined, method: string, args: unknown): Promise<unknown> {
    const type = this.types.get(typeName);
    if (type === undefined) throw new TempestError('ERR_RPC_UNKNOWN_TYPE', `this group does not host type ${typeName}`);
    if (!type.p2p.includes(method as never)) throw new TempestError('ERR_RPC_UNKNOWN_METHOD', `${typeName}.${method} is not a p2p method`);
    if (!Array.isArray(args)) throw new TempestError('ERR_RPC_MALFORMED', 'arguments are not a list');
    const ref = this.member.myShard(typeName, index);
    if (ref === undefined || (shard !== undefined && ref.shard !== shard)) {
      throw new TempestError('ERR_RPC_NOT_A_REPLICA', `member ${this.myId} holds no replica of ${typeName}[${index}]${shard === undefined ? '' : ` shard ${shard}`}`);
    }
    const h = this.hosted.get(hostedKey(typeName, index, ref.shard));
    if (h === undefined) throw new TempestError('ERR_RPC_NOT_A_REPLICA', `the replica of ${typeName}[${index}] is still opening here`);
    const fn = h.replica.obj[method] as (...a: unknown[]) => unknown;
    return await fn.apply(h.replica.obj, args);
  }

  private peer(id: number): Promise<WireClient> {
    let p = this.peers.get(id);
    if (p !== undefined) return p;
    const m = this.member.view?.members.find((x) => x.id === id);
    if (m === undefined) return Promise.reject(new TempestError('ERR_RPC_NO_SUCH_MEMBER', `member ${id} is not in the current view`));
    const d = this.opts.config.DERECHO;
    p = WireClient.connect({
      host: m.ip,
      port: m.external_port,
      connect_timeout_ms: 2_000,
      max_request_bytes: Math.max(d.max_p2p_request_payload_size, d.max_payload_size) + FRAMING_MARGIN_BYTES,
      max_reply_bytes: d.max_p2p_reply_payload_size + FRAMING_MARGIN_BYTES,
      log: this.log,
    });
    this.peers.set(id, p);
    p.then(
      (c) => c.onClose(() => this.peers.get(id) === p && this.peers.delete(id)),
      () => this.peers.get(id) === p && this.peers.delete(id),
    );
    return p;
  }

  // ---- requests on external_port ---------------------------------------------------------------

  private addClient(conn: WireServerConnection): void {
    this.clients.add(conn);
    conn.onClose(() => this.clients.delete(conn));
  }

  private async onRequest(req: WireRequest): Promise<Buffer> {
    switch (req.kind) {
      case KIND_ORDERED_REPLIES: {
        forEachReply(req.body, (request, member, outcome) => this.onReply(request, member, outcome));
        return EMPTY;
      }
      case KIND_P2P_CALL: {
        this.checkRequestSize(req.body);
        const [type, index, method, args] = decode(req.body) as [string, number, string, unknown[]];
        return this.encodeReply(await this.localP2p(type, index, undefined, method, args));
      }
      case KIND_EXTERNAL_P2P: {
        this.checkRequestSize(req.body);
        const [type, index, shard, method, args] = decode(req.body) as [string, number, number, string, unknown[]];
        return this.encodeReply(await this.localP2p(type, index, shard, method, args));
      }
      case KIND_CLUSTER:
        return encode(this.clusterInfo());
      case KIND_EXTERNAL_ORDERED: {
        const [typeName, index, shard, method, args, client, seq, hlc] = decode(req.body) as [string, number, number, string, unknown[], bigint, bigint, bigint | undefined];
        const type = this.types.get(typeName);
        if (type === undefined) throw new TempestError('ERR_RPC_UNKNOWN_TYPE', `this group does not host type ${typeName}`);
        const ref = this.member.myShard(typeName, index);
        if (ref === undefined || ref.shard !== shard) throw new TempestError('ERR_RPC_NOT_A_REPLICA', `member ${this.myId} is not in shard ${shard} of ${typeName}[${index}]; ask one of its members`);
        if (typeof client !== 'bigint' || typeof seq !== 'bigint' || client === 0n) throw new TempestError('ERR_RPC_MALFORMED', 'an external ordered call needs a client id and a request number');
        const o = await this.orderedOutcome(type, index, method, args, hlc, client, seq);
        return encode([o.version, [...o.replies].map(([id, r]) => (r.ok ? [id, true, r.value] : [id, false, { code: r.code, message: r.message }]))]);
      }
      default:
        throw new TempestError('ERR_RPC_UNKNOWN_KIND', `unknown request kind ${req.kind}`);
    }
  }

  clusterInfo(): ClusterInfo {
    const v = this.member.view;
    const s = this.member.summary();
    return {
      vid: v?.vid ?? -1,
      leader: s?.leader ?? -1,
      members: (v?.members ?? []).map((m) => ({ id: m.id, ip: m.ip, external_port: m.external_port })),
      layout: (v?.layout.subgroups ?? []).map((sg) => ({ type: sg.type, index: sg.index, shards: sg.shards.map((sh) => [...sh.members]) })),
    };
  }

  private viewChanged(v: ViewSummary): void {
    const present = new Set(v.members.map((m) => m.id));
    for (const [request, p] of this.pending) {
      p.results.removed(present, v.vid);
      if (p.results.done) this.pending.delete(request);
    }
    for (const [id, c] of this.peers) {
      if (!present.has(id)) {
        this.peers.delete(id);
        void c.then((x) => x.close(), () => {});
      }
    }
    const info = encode(this.clusterInfo());
    for (const conn of this.clients) conn.push(PUSH_VIEW, info);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [request, p] of this.pending) {
      if (p.deadline_ms > now) continue;
      p.results.fail(new TempestError('ERR_RPC_TIMEOUT', 'replies did not arrive in time'));
      this.pending.delete(request);
    }
  }

  async leave(): Promise<void> {
    await this.member.leave();
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    await this.memberOrNull?.close();
    for (const p of this.peers.values()) void p.then((c) => c.close(), () => {});
    this.peers.clear();
    await this.server?.close();
    for (const h of this.hosted.values()) {
      await h.replica.flush().catch(() => {});
      await h.replica.close().catch(() => {});
    }
    this.hosted.clear();
  }
}

/** A typed handle on one subgroup (getSubgroup). */
export class SubgroupHandle<T extends object, O extends MethodNames<T>, P extends MethodNames<T>> {
  constructor(
    private readonly group: Group,
    readonly type: ReplicatedType<T, O, P>,
    readonly index: number,
  ) {}

  /** Calls a state-changing method on every replica of our shard, in the shard's order. */
  orderedSend<K extends O>(method: K, ...args: MethodArgs<T, K>): QueryResults<MethodResult<T, K>> {
    return this.group.orderedCall(this.type as ReplicatedType, this.index, method, args as unknown[]) as QueryResults<MethodResult<T, K>>;
  }

  /** Calls a read-only method on one member's replica. */
  p2pSend<K extends P>(node: number, method: K, ...args: MethodArgs<T, K>): Promise<MethodResult<T, K>> {
    return this.group.p2pCall(this.type as ReplicatedType, this.index, node, method, args as unknown[]) as Promise<MethodResult<T, K>>;
  }

  /** This member's replica, if it holds one (reads only: changes go through orderedSend). */
  get local(): T | undefined {
    return this.group.localReplica(this.type, this.index);
  }
}
