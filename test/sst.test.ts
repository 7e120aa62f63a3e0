/**
 * The shared state table across three real processes: counters converge, a monotone threshold
 * predicate fires exactly once per threshold, and a SIGKILLed member is suspected by both others
 * within 2 x timeout_ms.
 */
import test from 'ava';
import { killAll, MemberProcess, memberAddresses } from './helpers/processes.js';

const TIMEOUT_MS = 1_000;
const COUNT_TO = 2_000;
const THRESHOLDS = [1, 250, 500, 1_000, 1_999, 2_000];

test('three SSTs converge, thresholds fire once each, a SIGKILLed member is suspected within 2 x timeout_ms', async (t) => {
  t.timeout(90_000);
  const members = await memberAddresses(3);
  const procs = members.map((self) => MemberProcess.start({ self, members, provider: 'tcp', heartbeat_ms: 100, timeout_ms: TIMEOUT_MS }));
  t.teardown(() => killAll(procs));
  await Promise.all(procs.map((p) => p.waitType('ready', 30_000)));

  for (const p of procs) p.send({ cmd: 'sst-count', to: COUNT_TO, thresholds: THRESHOLDS });
  const converged = await Promise.all(procs.map((p) => p.waitType('sst-converged', 30_000)));
  for (const c of converged) {
    t.deepEqual(c.rows, [COUNT_TO, COUNT_TO, COUNT_TO], "every member sees every member's final counter");
    for (const th of THRESHOLDS) {
      t.is((c.fires as Record<number, number>)[th], 1, `threshold ${th} fired once`);
      t.true((c.minAtFire as Record<number, number>)[th]! >= th, `threshold ${th} held when it fired`);
    }
  }
  // Still once each after more pushes and heartbeats have arrived.
  const final = await Promise.all(procs.map((p) => p.waitType('sst-final', 5_000)));
  for (const f of final) for (const th of THRESHOLDS) t.is((f.fires as Record<number, number>)[th], 1);

  const [victim, ...survivors] = procs as [MemberProcess, MemberProcess, MemberProcess];
  const killedAt = Date.now();
  victim.kill('SIGKILL');
  const suspicions = await Promise.all(survivors.map((p) => p.waitFor((m) => m.type === 'suspect' && m.id === 0, 4 * TIMEOUT_MS, 'suspicion of member 0')));
  for (const s of suspicions) {
    const after_ms = (s.at_ms as number) - killedAt;
    t.true(after_ms <= 2 * TIMEOUT_MS, `suspected ${after_ms} ms after SIGKILL (bound ${2 * TIMEOUT_MS} ms)`);
    t.log(`suspected after ${after_ms} ms: ${s.reason}`);
  }
  // The survivors do not suspect each other.
  for (const p of survivors) t.false(p.inbox.some((m) => m.type === 'suspect' && m.id !== 0));
});
