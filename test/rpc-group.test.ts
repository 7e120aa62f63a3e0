/**
 * Replicated objects on real member processes (issue 5): the example Cache on 3 members, ordered
 * puts from every member, p2p reads, QueryResults, history by version, index and time across a
 * total restart, and an external client that fails over without applying an update twice.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode, encode } from '../engine/rpc/codec.js';
import { ExternalClient } from '../engine/rpc/external-client.js';
import { KIND_EXTERNAL_ORDERED } from '../engine/rpc/protocol.js';
import { WireClient } from '../engine/rpc/wire.js';
import { layerLogger } from '../engine/util/log.js';
import { CacheType } from '../examples/cache/cache.js';
import { CacheCluster } from './helpers/cache.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('Cache on 3 members: 10,000 ordered puts from 3 senders; identical state and logs; p2p gets agree; one reply per member', async (t) => {
  t.timeout(240_000);
  const cluster = await CacheCluster.create(3);
  try {
    await cluster.startAll();
    const counts = [3334, 3333, 3333];
    const done = await Promise.all(counts.map((count, i) => cluster.ask(i, { cmd: 'puts', count, prefix: `s${i}-`, concurrency: 32, value_bytes: 64 }, 'puts-done', 180_000)));
    done.forEach((d, i) => {
      t.is(d.acked, counts[i], `sender ${i}: every put acknowledged (${JSON.stringify(d.failures)})`);
      t.deepEqual(d.replyCounts, { 3: counts[i] }, `sender ${i}: every QueryResults carried exactly 3 replies`);
    });
    t.log(`rates (puts/s per sender): ${done.map((d) => Math.round(d.rate_per_s as number)).join(', ')}; p50 ${done.map((d) => (d.p50_ms as number).toFixed(1)).join('/')} ms`);
    const digests = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest')));
    for (const d of digests) {
      t.deepEqual((d.shards as number[][]).map((s) => [...s].sort()), [[0, 1, 2]], 'getSubgroupMembers: one shard of all three');
      t.is(d.size, 10_000);
      t.is(d.sha256, digests[0]!.sha256, `member ${String(d.member)} has the same map`);
      t.deepEqual(d.logs, digests[0]!.logs, `member ${String(d.member)} has the same log, entry for entry`);
    }
    // p2p: every member asked through every other agrees.
    for (const key of ['s0-0', 's1-1234', 's2-3332', 'missing']) {
      const answers = await Promise.all([0, 1, 2].flatMap((asker) => [0, 1, 2].map((node) => cluster.ask(asker, { cmd: 'get', key, node }, 'got', 60_000, (m) => m.key === key && m.node === node))));
      const expected = key === 'missing' ? null : `${key}:`.padEnd(64, 'x');
      for (const a of answers) t.is(a.value, expected, `get ${key} on member ${String(a.node)}`);
    }
  } finally {
    await cluster.cleanup();
  }
});

test('values written at known times read back by version, index and time, also after all members restart', async (t) => {
  t.timeout(180_000);
  const cluster = await CacheCluster.create(3);
  try {
    await cluster.startAll();
    const writes: { value: string; version: string; before_ms: number; after_ms: number }[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await cluster.ask(0, { cmd: 'put-one', key: 'k', value: `v${i}` }, 'put-one');
      t.is(r.replies, 3);
      writes.push({ value: `v${i}`, version: r.version as string, before_ms: r.before_ms as number, after_ms: r.after_ms as number });
      await sleep(40);
    }
    const check = async (label: string) => {
      for (let i = 0; i < writes.length; i++) {
        const w = writes[i]!;
        const node = i % 3;
        const byVersion = await cluster.ask(1, { cmd: 'at', key: 'k', at: { version: w.version }, node }, 'at');
        t.is(byVersion.value, w.value, `${label}: by version ${w.version}`);
        const byIndex = await cluster.ask(2, { cmd: 'at', key: 'k', at: { index: i }, node }, 'at');
        t.is(byIndex.value, w.value, `${label}: by index ${i}`);
        const next = writes[i + 1];
        const t_ms = next === undefined ? w.after_ms + 5 : Math.floor((w.after_ms + next.before_ms) / 2);
        const byTime = await cluster.ask(0, { cmd: 'at', key: 'k', at: { time_ms: t_ms }, node }, 'at');
        t.is(byTime.value, w.value, `${label}: by time ${new Date(t_ms).toISOString()}`);
      }
      const before = await cluster.ask(0, { cmd: 'at', key: 'k', at: { time_ms: writes[0]!.before_ms - 1000 }, node: 1 }, 'at');
      t.is(before.value, null, `${label}: nothing before the first write`);
    };
    await check('running');
    await cluster.killAll();
    await cluster.startAll(90_000);
    await check('after a total restart');
  } finally {
    await cluster.cleanup();
  }
});

test('an external client keeps working when its member is killed, and no update is applied twice', async (t) => {
  t.timeout(180_000);
  const cluster = await CacheCluster.create(3);
  const log = layerLogger('test');
  let client: ExternalClient | null = null;
  try {
    await cluster.startAll();
    const m0 = cluster.members[0]!;
    client = await ExternalClient.connect({ contacts: [{ host: m0.ip, port: m0.external_port }], log, call_timeout_ms: 60_000 });
    t.is(client.cluster.members.length, 3);
    const cache = client.getSubgroup(CacheType);
    const N = 300;
    let expected = '';
    let killedAt = -1;
    const views: number[] = [];
    client.onView((v) => views.push(v.vid));
    for (let i = 0; i < N; i++) {
      if (i === 100) {
        killedAt = i;
        // The member the client talks to dies while this call is in flight (delivered or not).
        setTimeout(() => cluster.kill(0), 2);
      }
      const out = await cache.orderedSend('append', 'journal', `${i};`);
      expected += `${i};`;
      // One reply per member of the view it was delivered in; the killed member, while still in
      // that view, answers with NodeRemovedError once the next view drops it.
      let ok = 0;
      for (const [id, r] of out.replies) {
        if (r.ok) {
          ok++;
          if (r.value !== expected) t.fail(`append ${i} on member ${id}: ${String(r.value).slice(-40)} (applied twice or out of order?)`);
        } else if (!(id === 0 && r.code === 'ERR_RPC_NODE_REMOVED')) t.fail(`append ${i} on member ${id} failed: ${r.code} ${r.message}`);
      }
      if (ok < 2) t.fail(`append ${i}: ${ok} replies`);
    }
    t.pass(`${N} appends acknowledged`);
    t.true(killedAt > 0);
    t.true(views.length > 0, 'the client followed the view change');
    // DESIGN §6: each survivor logged the ragged trim it accepted before publishing it.
    for (const i of [1, 2]) {
      const trim = JSON.parse(readFileSync(join(cluster.dataDir(i), 'ragged-trim.json'), 'utf8')) as { vid: number; keep: number[]; trim: Record<string, number[]> };
      t.false(trim.keep.includes(0), `member ${i} logged the trim of the change that removed member 0`);
      t.is(Object.values(trim.trim)[0]!.length, 3, 'one count per sender of the shard');
    }
    t.is(client.cluster.members.length, 2);
    const final = await cache.p2pSend('get', 'journal');
    t.is(final, expected, 'the journal holds every append exactly once');

    // The same request (client id, number) relayed by two members, as after a fail-over whose
    // first attempt was delivered: applied once, the second answered from the replicas' memory.
    const raw = await Promise.all([1, 2].map((i) => WireClient.connect({ host: cluster.members[i]!.ip, port: cluster.members[i]!.external_port, connect_timeout_ms: 2000, max_request_bytes: 1 << 20, max_reply_bytes: 1 << 20, log })));
    const body = encode(['Cache', 0, 0, 'append', ['journal', 'dup;'], 4242n, 1n]);
    const first = decode(await raw[0]!.request(KIND_EXTERNAL_ORDERED, body, 10_000)) as [bigint, [number, boolean, unknown][]];
    const again = decode(await raw[1]!.request(KIND_EXTERNAL_ORDERED, body, 10_000)) as [bigint, [number, boolean, unknown][]];
    t.true(again[0] > first[0], 'the retry is a new delivery');
    t.deepEqual(again[1].map((r) => r[2]), first[1].map((r) => r[2]), 'answered with the first outcome');
    t.is(await cache.p2pSend('get', 'journal'), expected + 'dup;', 'applied once');
    for (const c of raw) await c.close();
  } finally {
    await client?.close();
    await cluster.cleanup();
  }
});

test('p2p request and reply sizes are enforced with clear errors; an ordered reply over the limit fails, the call still applied', async (t) => {
  t.timeout(120_000);
  const cluster = await CacheCluster.create(3, { overrides: ['--DERECHO/max_p2p_request_payload_size=4096', '--DERECHO/max_p2p_reply_payload_size=4096'] });
  try {
    await cluster.startAll();
    const big = 'x'.repeat(8192);
    const put = await cluster.ask(0, { cmd: 'put-one', key: 'big', value: big }, 'put-one');
    t.is(put.replies, 3, 'an ordered call may carry more than the p2p limit (up to max_payload_size)');
    const small = await cluster.ask(1, { cmd: 'get', key: 'missing', node: 2 }, 'got', 30_000, (m) => m.key === 'missing');
    t.is(small.value, null);
    const tooBigReply = await t.throwsAsync(cluster.ask(1, { cmd: 'get', key: 'big', node: 2 }, 'got'));
    t.is((tooBigReply as { remoteCode?: string }).remoteCode, 'ERR_RPC_REPLY_TOO_LARGE', tooBigReply?.message);
    t.regex(tooBigReply!.message, /max_p2p_reply_payload_size \(4096 bytes\)/);
    const tooBigRequest = await t.throwsAsync(cluster.ask(1, { cmd: 'get', key: big, node: 2 }, 'got'));
    t.is((tooBigRequest as { code?: string }).code, 'ERR_RPC_REQUEST_TOO_LARGE', tooBigRequest?.message);
    const appended = await t.throwsAsync(cluster.ask(0, { cmd: 'put-one', key: 'big', value: '!', method: 'append' }, 'put-one'));
    t.is((appended as { remoteCode?: string }).remoteCode, 'ERR_RPC_REPLY_TOO_LARGE', appended?.message);
    const d = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest')));
    for (const x of d) t.is(x.sha256, d[0]!.sha256, 'the append was applied everywhere alike');
  } finally {
    await cluster.cleanup();
  }
});

test('[PERS] reset = true starts every member with empty logs; the group carries on from there', async (t) => {
  t.timeout(120_000);
  const cluster = await CacheCluster.create(3);
  try {
    await cluster.startAll();
    await cluster.ask(0, { cmd: 'put-one', key: 'old', value: 'before the reset' }, 'put-one');
    await cluster.killAll();
    cluster.opts = { ...cluster.opts, overrides: ['--PERS/reset=true'] };
    await cluster.startAll(90_000);
    const gone = await cluster.ask(1, { cmd: 'get', key: 'old', node: 2 }, 'got');
    t.is(gone.value, null, 'nothing survives a reset');
    const put = await cluster.ask(2, { cmd: 'put-one', key: 'new', value: 'after' }, 'put-one');
    t.is(put.replies, 3);
    const d = await Promise.all([0, 1, 2].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest')));
    for (const x of d) t.is(x.size, 1);
  } finally {
    await cluster.cleanup();
  }
});

test('a member restarted while the others run catches up from its own log; a new member gets the whole log; logs end identical', async (t) => {
  t.timeout(180_000);
  const cluster = await CacheCluster.create(4);
  try {
    const first = [0, 1, 2].map((i) => cluster.start(i));
    await Promise.all(first.map((c) => c.waitType('ready', 60_000)));
    await cluster.waitView(3, 60_000);
    for (const i of [0, 1]) cluster.procs[i]!.send({ cmd: 'traffic', on: true, concurrency: 4, value_bytes: 256 });
    await sleep(800);
    cluster.kill(2);
    await cluster.procs[2]!.waitExit(10_000);
    await cluster.waitView(2, 30_000);
    await sleep(500);
    cluster.start(2);
    await cluster.procs[2]!.waitType('ready', 60_000);
    cluster.start(3);
    await cluster.procs[3]!.waitType('ready', 60_000);
    await cluster.waitView(4, 60_000);
    await sleep(500);
    for (const i of [0, 1]) cluster.procs[i]!.send({ cmd: 'traffic', on: false });
    await Promise.all([0, 1].map((i) => cluster.procs[i]!.waitType('traffic-stopped', 60_000)));
    await sleep(500);
    const d = await Promise.all([0, 1, 2, 3].map((i) => cluster.ask(i, { cmd: 'digest' }, 'digest')));
    t.true((d[0]!.size as number) > 100, `traffic went on (${String(d[0]!.size)} keys)`);
    for (const x of d) {
      t.is(x.sha256, d[0]!.sha256, `member ${String(x.member)} has the same map`);
      t.deepEqual(x.logs, d[0]!.logs, `member ${String(x.member)} has the same log`);
    }
  } finally {
    await cluster.cleanup();
  }
});
