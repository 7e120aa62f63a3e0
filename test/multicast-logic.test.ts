/**
 * The multicast pieces a user can misuse or that have arithmetic worth checking on their own:
 * the SMC ring's space accounting (against a byte-level model), settings validation, and a
 * one-member group in this process (errors for bad sends, order and bytes of delivery).
 */
import test from 'ava';
import { Member } from '../engine/member.js';
import { MulticastGroup, multicastPlan, type MulticastSettings } from '../engine/multicast/group.js';
import { RingLayout, RingSpace } from '../engine/multicast/smc-ring.js';
import { layerLogger } from '../engine/util/log.js';
import { freePorts } from './helpers/processes.js';
import { prng } from './fixtures/multicast-workload.js';

test('SMC ring: records never overlap live ones, and fewer than window live records always leave room', (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const rand = prng(seed);
    const maxPayload = 8 + Math.floor(rand() * 4000);
    const window = 1 + Math.floor(rand() * 12);
    const layout = new RingLayout(maxPayload, window);
    const space = new RingSpace(layout, window);
    const live: { k: number; at: number; bytes: number }[] = [];
    let k = 0;
    for (let step = 0; step < 2000; step++) {
      if (live.length > 0 && (live.length === window || rand() < 0.45)) {
        const n = 1 + Math.floor(rand() * live.length);
        live.splice(0, n);
        space.freeBelow(live.length > 0 ? live[0]!.k : k);
        continue;
      }
      const payload = rand() < 0.2 ? maxPayload : Math.floor(rand() * maxPayload);
      const bytes = layout.recordBytes(payload);
      const at = space.fit(bytes);
      if (at < 0) {
        t.fail(`seed ${seed}: no room for ${bytes} bytes with ${live.length} of ${window} records live`);
        return;
      }
      t.true(at + bytes <= layout.ringBytes);
      for (const r of live) {
        if (at < r.at + r.bytes && r.at < at + bytes) {
          t.fail(`seed ${seed}: record ${k} at ${at}+${bytes} overlaps live record ${r.k} at ${r.at}+${r.bytes}`);
          return;
        }
      }
      space.append(k, at, bytes);
      live.push({ k, at, bytes });
      k++;
    }
  }
  t.pass();
});

const SETTINGS: MulticastSettings = {
  name: 'g',
  senders: [0],
  mode: 'ordered',
  max_payload_size: 4 * 1024 * 1024,
  max_smc_payload_size: 1024,
  block_size: 64 * 1024,
  window_size: 8,
  rdmc_send_algorithm: 'binomial_send',
};

test('settings are checked with clear errors', (t) => {
  const bad: [Partial<MulticastSettings>, RegExp][] = [
    [{ rdmc_send_algorithm: 'carrier_pigeon' }, /rdmc_send_algorithm must be one of binomial_send/],
    [{ max_smc_payload_size: 8 * 1024 * 1024 }, /max_smc_payload_size must be/],
    [{ block_size: 16 }, /blocks; RDMC allows 65536: raise block_size/],
    [{ window_size: 0 }, /window_size must be 1\.\.32768/],
    [{ senders: [] }, /1\.\.255 senders/],
  ];
  for (const [change, message] of bad) {
    const err = t.throws(() => multicastPlan({ ...SETTINGS, ...change }), { message });
    t.is((err as { code?: string }).code, 'ERR_MULTICAST_CONFIG');
  }
});

test('a one-member group delivers small and large messages in order, and refuses bad sends', async (t) => {
  const [port, fabric_port] = await freePorts(2);
  const self = { id: 0, ip: '127.0.0.1', port: port!, fabric_port: fabric_port! };
  const plan = multicastPlan(SETTINGS);
  const member = await Member.start({
    self,
    members: [self],
    provider: 'tcp',
    domain: '',
    tx_depth: 64,
    rx_depth: 64,
    heartbeat_ms: 100,
    timeout_ms: 1000,
    connect_timeout_ms: 5000,
    columns: plan.columns,
    regionSizes: plan.regionSizes,
    messenger: { slot_size_bytes: 1024, slots_per_peer: 4, send_timeout_ms: 1000 },
  });
  const group = await MulticastGroup.start({ ...SETTINGS, member, send_timeout_ms: 2000, log: layerLogger('multicast') });
  t.teardown(async () => {
    group.close();
    await member.close();
  });
  t.throws(() => new MulticastGroup({ ...SETTINGS, senders: [5], member, send_timeout_ms: 2000, log: layerLogger('multicast') }), {
    code: 'ERR_MULTICAST_CONFIG',
    message: /sender 5 is not a member/,
  });
  const got: { index: number; bytes: Buffer }[] = [];
  group.handle((_sender, index, payload) => got.push({ index, bytes: Buffer.from(payload) }));
  const sizes = [0, 1, 1024, 1025, 200_000, 4 * 1024 * 1024, 3];
  const sent = sizes.map((n, i) => Buffer.alloc(n, i + 1));
  const indices = [];
  for (const b of sent) indices.push(await group.send(b));
  t.deepEqual(indices, sizes.map((_, i) => i));
  for (let i = 0; i < 200 && got.length < sizes.length; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(got.map((g) => g.index), indices);
  for (const [i, g] of got.entries()) t.true(g.bytes.equals(sent[i]!), `message ${i} (${sizes[i]} bytes) intact`);

  await t.throwsAsync(group.send(Buffer.alloc(4 * 1024 * 1024 + 1)), { code: 'ERR_MULTICAST_TOO_LARGE' });
  t.throws(() => group.commit(), { code: 'ERR_MULTICAST_NO_RESERVATION' });
  group.close();
  await t.throwsAsync(group.send(Buffer.alloc(1)), { code: 'ERR_MULTICAST_CLOSED' });
});
