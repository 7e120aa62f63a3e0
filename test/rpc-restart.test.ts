/**
 * Total restart under durable traffic (issue 5): 20 rounds of SIGKILL of every member at seeded
 * random points while all three send 1 KiB puts; after each restart every acknowledged update is
 * present, the members' logs are identical entry for entry, and no entry is torn (every log
 * replays from its checksummed entries, or the member would not start). And an external client's
 * calls across a total restart: each applied once (the replicas' client table is logged too), and
 * restarts without the configured leader. Serial: each test runs 3 members, and the machine has 2 cores.
 */
import test, { type ExecutionContext } from 'ava';
import { decode, encode } from '../engine/rpc/codec.js';
import { ExternalClient } from '../engine/rpc/external-client.js';
import { KIND_EXTERNAL_ORDERED } from '../engine/rpc/protocol.js';
import { WireClient } from '../engine/rpc/wire.js';
import { layerLogger } from '../engine/util/log.js';
import { CacheType } from '../examples/cache/cache.js';
import { prng } from '../scripts/lib/prng.js';
import { CacheCluster } from './helpers/cache.js';

const ROUNDS = Number(process.env.TEMPEST_RESTART_ROUNDS ?? 20);

test.serial(`${ROUNDS} rounds of SIGKILL of all members during durable traffic: nothing acknowledged is lost, logs identical`, async (t) => {
  t.timeout(ROUNDS * 40_000);
  const rand = prng(0x5eed_0005);
  const cluster = await CacheCluster.create(3);
  const acked = new Set<string>();
  try {
    await cluster.startAll(90_000);
    for (let round = 0; round < ROUNDS; round++) {
      const procs = cluster.procs.map((c) => c!);
      const seen = procs.map((c) => c.inbox.length);
      for (const c of procs) c.send({ cmd: 'traffic', on: true, concurrency: 8, value_bytes: 1024 });
      await new Promise((r) => setTimeout(r, 200 + Math.floor(rand() * 1300)));
      // Kill in a random order with random gaps (0..40 ms): the members die at different points.
      const order = [0, 1, 2].sort(() => rand() - 0.5);
      for (const i of order) {
        cluster.kill(i);
        await new Promise((r) => setTimeout(r, Math.floor(rand() * 40)));
      }
      await cluster.killAll();
      let roundAcks = 0;
      procs.forEach((c, i) => {
        for (const m of c.inbox.slice(seen[i])) {
          if (m.type !== 'acks') continue;
          for (const k of m.keys as string[]) acked.add(k);
          roundAcks += (m.keys as string[]).length;
        }
      });
      await cluster.startAll(90_000);
      const digests = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest', 60_000)));
      const keys = new Set(digests[0]!.keys as string[]);
      const missing = [...acked].filter((k) => !keys.has(k));
      t.deepEqual(missing.slice(0, 5), [], `round ${round}: every acknowledged update is present (${missing.length} missing of ${acked.size})`);
      for (const d of digests) {
        t.is(d.sha256, digests[0]!.sha256, `round ${round}: member ${String(d.member)} has the same map`);
        t.deepEqual(d.logs, digests[0]!.logs, `round ${round}: member ${String(d.member)} has the same log`);
      }
      t.log(`round ${round}: ${roundAcks} acknowledged this round, ${acked.size} in all, map size ${String(digests[0]!.size)}`);
      if (missing.length > 0) break;
    }
  } finally {
    await cluster.cleanup();
  }
});

test.serial('an external client retrying across a total restart has each call applied once', async (t) => {
  t.timeout(240_000);
  const cluster = await CacheCluster.create(3);
  const log = layerLogger('test');
  let client: ExternalClient | null = null;
  const raw: WireClient[] = [];
  try {
    await cluster.startAll(90_000);
    const ms = cluster.members;
    client = await ExternalClient.connect({ contacts: ms.map((m) => ({ host: m.ip, port: m.external_port })), log, call_timeout_ms: 120_000 });
    const cache = client.getSubgroup(CacheType);
    // A request acknowledged before the restart and sent again after it, as a client whose reply
    // was lost would: the replicas must answer it from their (restored) memory.
    const wire = (i: number) => WireClient.connect({ host: ms[i]!.ip, port: ms[i]!.external_port, connect_timeout_ms: 2000, max_request_bytes: 1 << 20, max_reply_bytes: 1 << 20, log });
    const body = encode(['Cache', 0, 0, 'append', ['journal', 'early;'], 777n, 1n]);
    raw.push(await wire(1));
    const first = decode(await raw[0]!.request(KIND_EXTERNAL_ORDERED, body, 20_000)) as [bigint, [number, boolean, unknown][]];
    let expected = 'early;';
    t.deepEqual(first[1].map((r) => r[2]), [expected, expected, expected]);
    const N = 60;
    const pidsBefore = cluster.procs.map((p) => p!.pid);
    for (let i = 0; i < N; i++) {
      const call = cache.orderedSend('append', 'journal', `${i};`);
      if (i === 30) {
        // Every member dies while this append is in flight (delivered or not); they come back,
        // and the client retries the same request (id and number) until one of them answers.
        await cluster.killAll();
        await cluster.startAll(90_000);
      }
      const out = await call;
      expected += `${i};`;
      for (const [id, r] of out.replies) if (r.ok && r.value !== expected) t.fail(`append ${i} on member ${id}: ...${String(r.value).slice(-40)} (applied twice?)`);
    }
    t.true(cluster.procs.every((p, i) => p!.pid !== pidsBefore[i]), 'every member was restarted during the appends');
    await cluster.waitView(3, 90_000);
    t.is(await cache.p2pSend('get', 'journal'), expected, 'every append once, in order, across the restart');
    // The request from before the restart, again: answered with its first outcome, not applied.
    raw.push(await wire(2));
    const again = decode(await raw[1]!.request(KIND_EXTERNAL_ORDERED, body, 20_000)) as [bigint, [number, boolean, unknown][]];
    t.true(again[0] > first[0], 'a new delivery');
    t.deepEqual(again[1].map((r) => r[2]), first[1].map((r) => r[2]), 'answered with the first outcome');
    t.is(await cache.p2pSend('get', 'journal'), expected, 'and not applied again');
  } finally {
    for (const c of raw) await c.close().catch(() => {});
    await client?.close();
    await cluster.cleanup();
  }
});

/**
 * 300 acknowledged puts, every member killed, then members 1 and 2 back without member 0 (the
 * configured leader), started with member `leader` as theirs; checks that they formed a group of
 * two holding every acknowledged update in identical logs.
 */
async function restartWithoutLeader(t: ExecutionContext, cluster: CacheCluster, leader: number): Promise<void> {
  await cluster.startAll(90_000);
  t.is((await cluster.ask(1, { cmd: 'puts', count: 300, prefix: 'k', concurrency: 8, value_bytes: 256 }, 'puts-done', 120_000)).acked, 300);
  await cluster.killAll();
  const procs = [cluster.start(1, leader), cluster.start(2, leader)];
  await Promise.all(procs.map((c) => c.waitType('ready', 90_000)));
  await cluster.waitView(2, 90_000);
  const digests = await Promise.all([1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest', 60_000)));
  const keys = new Set(digests[0]!.keys as string[]);
  t.deepEqual(Array.from({ length: 300 }, (_, i) => `k${i}`).filter((k) => !keys.has(k)), [], 'every acknowledged update is there');
  t.is(digests[1]!.sha256, digests[0]!.sha256);
  t.deepEqual(digests[1]!.logs, digests[0]!.logs);
  t.is((await cluster.ask(2, { cmd: 'put-one', key: 'after', value: 'v' }, 'put-one', 60_000)).replies, 2, 'the group of two takes updates');
}

test.serial('a total restart without the configured leader: another member of the last view, configured as leader, leads it and loses nothing', async (t) => {
  t.timeout(240_000);
  const cluster = await CacheCluster.create(3);
  try {
    // Member 0 is lost for good: 1 and 2 come back configured with member 1 as leader.
    await restartWithoutLeader(t, cluster, 1);
  } finally {
    await cluster.cleanup();
  }
});

test.serial('a total restart without the configured leader, configuration unchanged: the next member of the last view leads it; the old leader joins later', async (t) => {
  t.timeout(240_000);
  const cluster = await CacheCluster.create(3);
  try {
    // Member 0 stays down; 1 and 2 come back with the same configuration (member 0 as leader).
    await restartWithoutLeader(t, cluster, 0);
    // The configured leader comes back: it joins the group that runs instead of starting one.
    cluster.start(0);
    await cluster.procs[0]!.waitType('ready', 90_000);
    await cluster.waitView(3, 90_000);
    const all = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest', 60_000)));
    for (const d of all) t.is(d.sha256, all[1]!.sha256, `member ${String(d.member)} has the same map`);
    t.true((all[0]!.keys as string[]).includes('after'));
  } finally {
    await cluster.cleanup();
  }
});

test.serial('two members leading a restart at once: one group of all three results, with every update', async (t) => {
  t.timeout(240_000);
  const cluster = await CacheCluster.create(3);
  try {
    await cluster.startAll(90_000);
    t.is((await cluster.ask(1, { cmd: 'puts', count: 100, prefix: 'k', concurrency: 8, value_bytes: 256 }, 'puts-done', 120_000)).acked, 100);
    await cluster.killAll();
    // Member 1 comes back alone and, its grace over, leads the restart (waiting for a majority).
    const m1 = cluster.start(1);
    const until = Date.now() + 60_000;
    while (!m1.stderr.includes('restart: no candidate ahead of this member answers: leading') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    t.true(m1.stderr.includes('leading'), 'member 1 took the lead');
    // Now the configured leader and member 2 come back: member 0 leads too, member 1 must give way.
    cluster.start(0);
    cluster.start(2);
    await Promise.all(cluster.procs.map((c) => c!.waitType('ready', 90_000)));
    await cluster.waitView(3, 90_000);
    // Either member 1 gave way to member 0, or it finished its restart with member 2 before member 0
    // was listening, and member 0 then joined the group that ran: one group either way.
    t.log(m1.stderr.includes('restart: giving way') ? 'member 1 gave way to the configured leader' : 'member 1 led the restart; the configured leader joined it');
    const all = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest', 60_000)));
    t.deepEqual(all.map((d) => JSON.stringify(d.shards)), all.map(() => JSON.stringify(all[0]!.shards)), 'one group');
    for (const d of all) t.is(d.sha256, all[0]!.sha256);
    t.is(all[0]!.size, 100);
  } finally {
    await cluster.cleanup();
  }
});
