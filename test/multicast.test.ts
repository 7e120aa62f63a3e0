/**
 * Ordered multicast across real member processes on 127.0.0.1: every member delivers the same
 * sequence (running hashes compared) and every byte of every message is checked, for 3 and 5
 * members, all sending and one sending, sizes mixed from 1 byte to 32 MiB (SMC and RDMC in one
 * stream), each RDMC algorithm, and raw (unordered) mode.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { Child, killAll } from '../scripts/lib/child.js';
import { memberAddresses } from './helpers/processes.js';
import type { MulticastSettings } from '../engine/multicast/group.js';
import type { SizeMix } from './fixtures/multicast-workload.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/multicast-process.js');
const MiB = 1024 * 1024;

interface Scenario {
  members: number;
  /** Indices (= member ids) of the senders. */
  senders: number[];
  mode?: 'ordered' | 'raw';
  algorithm?: string;
  mix: SizeMix;
  seed: number;
  /** Senders with nothing to send. */
  idle?: number[];
}

async function run(t: ExecutionContext, sc: Scenario): Promise<void> {
  t.timeout(150_000);
  const members = await memberAddresses(sc.members);
  const settings: MulticastSettings = {
    name: 'shard0',
    senders: sc.senders,
    mode: sc.mode ?? 'ordered',
    max_payload_size: sc.mix.max_bytes,
    max_smc_payload_size: sc.mix.small_max_bytes,
    block_size: MiB,
    window_size: 16,
    rdmc_send_algorithm: sc.algorithm ?? 'binomial_send',
  };
  const procs = members.map((self) => Child.start(FIXTURE, { self, members, settings, seed: sc.seed, mix: sc.mix, idle: sc.idle ?? [] }));
  t.teardown(() => killAll(procs));
  await Promise.all(procs.map((p) => p.waitType('ready', 60_000)));
  for (const p of procs) p.send({ cmd: 'go' });
  const results = await Promise.all(procs.map((p) => p.waitType('delivered', 120_000)));
  const expected = (sc.senders.length - (sc.idle?.length ?? 0)) * sc.mix.count;
  for (const [i, r] of results.entries()) {
    t.is(r.count, expected, `member ${i} delivered every message`);
    t.is(r.bad, 0, `member ${i}: every byte right (${(r.problems as string[]).join('; ')})`);
  }
  if ((sc.mode ?? 'ordered') === 'ordered') {
    const hashes = new Set(results.map((r) => r.hash));
    t.is(hashes.size, 1, 'every member delivered the identical sequence');
  } else {
    // Raw mode: no total order, but each sender's messages arrive in order everywhere.
    for (const id of sc.senders) t.is(new Set(results.map((r) => (r.perSender as Record<string, string>)[id])).size, 1, `sender ${id} in FIFO order everywhere`);
  }
  for (const id of sc.idle ?? []) t.true((results[id]!.nulls as number) > 0, `idle sender ${id} sent nulls so others were not held back`);
  const mb = (results[0]!.bytes as number) / MiB;
  t.log(`${sc.members} members, ${sc.senders.length - (sc.idle?.length ?? 0)} sending: ${expected} messages, ${mb.toFixed(1)} MiB each, in ${Math.max(...results.map((r) => r.elapsed_ms as number))} ms; nulls sent ${results.map((r) => r.nulls).join('/')}`);
  await Promise.all(procs.map(async (p) => {
    p.send({ cmd: 'close' });
    await p.waitType('closed', 20_000);
  }));
}

const MIX: SizeMix = { count: 150, max_bytes: 32 * MiB, small_max_bytes: 10_240, large_fraction: 0.04 };

test('3 members, all sending, 1 B..32 MiB: identical sequences, every byte checked', (t) =>
  run(t, { members: 3, senders: [0, 1, 2], mix: MIX, seed: 1 }));

test('3 members, one sending, 1 B..32 MiB', (t) => run(t, { members: 3, senders: [1], mix: { ...MIX, count: 300 }, seed: 2 }));

test('5 members, all sending, 1 B..32 MiB', (t) => run(t, { members: 5, senders: [0, 1, 2, 3, 4], mix: { ...MIX, count: 80 }, seed: 3 }));

test('5 members, one sending, 1 B..32 MiB', (t) => run(t, { members: 5, senders: [0], mix: { ...MIX, count: 300 }, seed: 4 }));

test('3 members, 3 senders of which 2 are idle: their nulls keep delivery moving', (t) =>
  run(t, { members: 3, senders: [0, 1, 2], idle: [1, 2], mix: { ...MIX, count: 300 }, seed: 9 }));

test('5 members, sequential_send and chain_send relay every block', async (t) => {
  const mix = { ...MIX, count: 40, large_fraction: 0.2, max_bytes: 8 * MiB };
  await run(t, { members: 5, senders: [0, 3], algorithm: 'sequential_send', mix, seed: 5 });
  await run(t, { members: 5, senders: [0, 3], algorithm: 'chain_send', mix, seed: 6 });
  await run(t, { members: 5, senders: [0, 3], algorithm: 'tree_send', mix, seed: 7 });
});

test('raw mode: each sender FIFO everywhere, every byte checked', (t) =>
  run(t, { members: 3, senders: [0, 2], mode: 'raw', mix: { ...MIX, count: 200 }, seed: 8 }));

test('members started with different settings refuse to run together, naming the setting', async (t) => {
  t.timeout(60_000);
  const members = await memberAddresses(2);
  const base: MulticastSettings = {
    name: 'shard0',
    senders: [0, 1],
    mode: 'ordered',
    max_payload_size: 8 * MiB,
    max_smc_payload_size: 10_240,
    block_size: MiB,
    window_size: 16,
    rdmc_send_algorithm: 'binomial_send',
  };
  const mix = { count: 1, max_bytes: 8 * MiB, small_max_bytes: 10_240, large_fraction: 0 };
  const procs = members.map((self, i) =>
    Child.start(FIXTURE, { self, members, settings: { ...base, block_size: i === 0 ? MiB : 256 * 1024 }, seed: 1, mix }),
  );
  t.teardown(() => killAll(procs));
  const failures = await Promise.all(procs.map((p) => p.waitType('start-failed', 40_000)));
  for (const f of failures) {
    t.is(f.code, 'ERR_MULTICAST_CONFIG_MISMATCH');
    t.regex(f.message as string, /different block_size/);
  }
});
