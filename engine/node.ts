/**
 * One Tempest member process, wired from a loaded configuration. The CLI (`tempest node`) calls
 * startNode() and close() on SIGINT/SIGTERM. A member starts the group when the configured leader
 * address is its own, and otherwise joins through it (redirected to the current leader); from then
 * on it follows the group's views, restarts from its logs after a total shutdown, and answers
 * external clients on external_port. It hosts the store's shards (engine/store) and, when [HTTP]
 * is enabled, serves the blob API on [HTTP] host:port for every key, forwarding to the key's shard.
 *
 * A member that finds itself outside a majority (the others died, or a partition) closes its
 * group and starts it again from its logs, the path a restarted process takes: that joins the
 * majority if one runs, and otherwise waits for enough of the last view to come back and restart
 * it together, longest log first. The HTTP server stays up meanwhile and answers 503.
 */
import type { TempestConfig } from '../config/index.js';
import { Registry } from 'prom-client';
import { startBlobServer, type BlobServer } from '../blob-api/index.js';
import { mountInThread, type MountHandle } from '../fs/index.js';
import { Group, type HostedType } from './rpc/group.js';
import { startStoreMember, storeHostedType, type StoreMember } from './store/store-member.js';
import { SwitchableStoreClient } from './store/switchable-client.js';
import type { Logger } from './util/log.js';

export interface NodeHandle {
  /** One human sentence on what this member is running and where. */
  describe(): string;
  /**
   * Called each time the member is serving again after it lost the majority and restarted from
   * its logs (the first view needs no call: startNode resolves in it), so a caller can say so.
   */
  onServingAgain(fn: () => void): void;
  /** Stops every layer and releases ports, memory registrations and threads. Idempotent. */
  close(): Promise<void>;
}

/** Pause between attempts to bring the group back after a lost majority (each attempt is bounded by join_timeout_ms). */
const RESTART_RETRY_MS = 1_000;
/** On close, how long to wait for a restart attempt under way before giving up on it. */
const CLOSE_RESTART_WAIT_MS = 5_000;

interface Engine {
  group: Group;
  store: StoreMember;
}

async function startEngine(cfg: TempestConfig, log: Logger, types: HostedType[]): Promise<Engine> {
  const group = await Group.start({ config: cfg, types: [storeHostedType(cfg), ...types], log });
  try {
    return { group, store: await startStoreMember(cfg, group, log) };
  } catch (err) {
    await group.close();
    throw err;
  }
}

async function closeEngine(e: Engine): Promise<void> {
  await e.store.close().catch(() => {});
  await e.group.close().catch(() => {});
}

/** Runs a member hosting the store (and `types`, for tools and tests that add their own). */
export async function startNode(cfg: TempestConfig, log: Logger, types: HostedType[] = []): Promise<NodeHandle> {
  const d = cfg.DERECHO;
  const memberLog = log.child({ member: d.local_id });
  let running: Engine | null = await startEngine(cfg, memberLog, types);
  const live = new SwitchableStoreClient(running.store.client);
  // One registry for the member's /metrics: the HTTP API's and the mount's.
  const registry = new Registry();
  let http: BlobServer | null = null;
  if (cfg.HTTP.enabled) {
    try {
      http = await startBlobServer({ store: live, log: memberLog, max_blob_size_bytes: cfg.HTTP.max_blob_size, host: cfg.HTTP.host, port: cfg.HTTP.port, metrics: { registry } });
    } catch (err) {
      await closeEngine(running);
      throw err;
    }
  }
  let mount: MountHandle | null = null;
  let mountFailure: string | null = null;
  if (cfg.FUSE.enabled) {
    try {
      // Serving the kernel from its own thread; its store calls run here (fs/mount-thread.ts).
      mount = await mountInThread({ cfg, store: live, log: memberLog, registry, bindings: { member: d.local_id } });
    } catch (err) {
      // The store and HTTP serve without the mount; say why, once, loudly.
      mountFailure = (err as Error).message;
      log.error({ err: mountFailure }, 'the file system is not mounted; serving HTTP only');
    }
  }
  let closing: Promise<void> | undefined;
  let restarting: Promise<void> | null = null;
  let restartReason: string | null = null;
  const servingAgain: (() => void)[] = [];

  const watch = (e: Engine): void => {
    const member = e.group.member;
    member.onView((v) => log.info({ vid: v.vid, members: v.members.map((m) => m.id), leader: v.leader }, 'view'));
    member.onLostMajority((reason) => {
      if (running !== e || closing !== undefined) return;
      restarting ??= restart(e, reason).finally(() => {
        restarting = null;
      });
    });
  };

  const restart = async (old: Engine, reason: string): Promise<void> => {
    live.detach(`member ${d.local_id} is not in a majority view (${reason}); it is restarting from its logs to rejoin`);
    log.warn({ reason }, 'lost the majority: restarting the group from the logs');
    restartReason = reason;
    running = null;
    await closeEngine(old);
    for (let attempt = 1; closing === undefined; attempt++) {
      try {
        const e = await startEngine(cfg, memberLog, types);
        if (closing !== undefined) {
          await closeEngine(e);
          return;
        }
        running = e;
        watch(e);
        live.attach(e.store.client);
        restartReason = null;
        log.info({ attempt }, 'back in a majority view: serving again');
        for (const fn of servingAgain) fn();
        return;
      } catch (err) {
        log.warn({ err: (err as Error).message, attempt }, 'the group is not back yet; trying again');
        await new Promise((r) => setTimeout(r, RESTART_RETRY_MS));
      }
    }
  };

  watch(running);
  const first = running.group.member;
  log.info({ local_id: d.local_id, provider: first.fabric.provider, domain: first.fabric.domain }, 'member started');
  return {
    describe: () => {
      const member = running?.group.member;
      const v = member?.summary() ?? null;
      const view =
        v === null
          ? `restarting from its logs to rejoin a majority view (it lost the majority: ${restartReason ?? 'closing'})`
          : `in view ${v.vid} with members ${v.members.map((m) => m.id).join(', ')} (leader ${v.leader})`;
      return (
        `Tempest member ${d.local_id}: libfabric ${first.fabric.provider} on ${first.fabric.domain} at ${d.local_ip}:${d.sst_port}, ` +
        `group membership on ${d.local_ip}:${d.gms_port}, external clients on ${d.local_ip}:${d.external_port}, ${view}; ` +
        (http === null ? 'HTTP blob API off' : `HTTP blob API on http://${cfg.HTTP.host}:${http.port}/v1/`) +
        (mount !== null ? `; file system mounted on ${mount.mountpoint}.` : mountFailure !== null ? `; file system NOT mounted (${mountFailure}).` : '.')
      );
    },
    onServingAgain: (fn) => {
      servingAgain.push(fn);
    },
    close: () =>
      (closing ??= (async () => {
        // Stop taking requests first, so none is cut by the store closing under it.
        if (mount !== null) await mount.close().catch(() => {});
        if (http !== null) await http.close().catch(() => {});
        await live.close();
        if (restarting !== null) await Promise.race([restarting, new Promise((r) => setTimeout(r, CLOSE_RESTART_WAIT_MS))]);
        const e = running;
        running = null;
        if (e !== null) await closeEngine(e);
      })()),
  };
}
