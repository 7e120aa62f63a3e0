/**
 * Total restart under durable traffic (issue 5): 20 rounds of SIGKILL of every member at seeded
 * random points while all three send 1 KiB puts; after each restart every acknowledged update is
 * present, the members' logs are identical entry for entry, and no entry is torn (every log
 * replays from its checksummed entries, or the member would not start).
 */
import test from 'ava';
import { prng } from '../scripts/lib/prng.js';
import { CacheCluster } from './helpers/cache.js';

const ROUNDS = Number(process.env.TEMPEST_RESTART_ROUNDS ?? 20);

test(`${ROUNDS} rounds of SIGKILL of all members during durable traffic: nothing acknowledged is lost, logs identical`, async (t) => {
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
