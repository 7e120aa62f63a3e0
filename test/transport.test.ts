/**
 * The libfabric transport between two real processes on 127.0.0.1, once per provider: 10,000
 * messages of random sizes from 1 B to 1 MiB (5,000 each way), every byte checked by sha256 and
 * order checked by sequence number; RMA writes landing in the peer's registered region.
 */
import test from 'ava';
import { killAll, MemberProcess, memberAddresses } from './helpers/processes.js';

const EXPECTED_STACK: Record<string, string> = { tcp: 'tcp;ofi_rxm', sockets: 'sockets' };
const MESSAGES_EACH_WAY = 5_000;
const MAX_MESSAGE_BYTES = 1024 * 1024;
const RMA_WRITES = 500;

// Completions reach JS through Node's loop by default; the progress thread is the fallback for
// providers without a wait fd, so it is exercised too.
const CASES = [
  { provider: 'tcp', completions: 'loop' },
  { provider: 'tcp', completions: 'thread' },
  { provider: 'sockets', completions: 'loop' },
] as const;

for (const { provider, completions } of CASES) {
  test.serial(`${provider} (${completions} completions): two processes exchange 10,000 messages of 1 B to 1 MiB, every byte checked; RMA writes land`, async (t) => {
    t.timeout(150_000);
    const members = await memberAddresses(2);
    const procs = members.map((self) =>
      MemberProcess.start({
        self,
        members,
        provider,
        heartbeat_ms: 100,
        timeout_ms: 5_000,
        slot_size_bytes: MAX_MESSAGE_BYTES,
        slots_per_peer: 8,
        rma_bytes: 4 * 1024 * 1024,
      }, { TEMPEST_COMPLETIONS: completions }),
    );
    t.teardown(() => killAll(procs));
    const [a, b] = procs as [MemberProcess, MemberProcess];
    const ready = await Promise.all(procs.map((p) => p.waitType('ready', 30_000)));
    for (const r of ready) {
      t.is(r.provider, EXPECTED_STACK[provider], 'the configured provider is the one in use');
      t.is(r.completions, completions);
    }

    a.send({ cmd: 'expect-messages', from: 1, count: MESSAGES_EACH_WAY });
    b.send({ cmd: 'expect-messages', from: 0, count: MESSAGES_EACH_WAY });
    a.send({ cmd: 'messages', to: 1, count: MESSAGES_EACH_WAY, seed: 11, max_bytes: MAX_MESSAGE_BYTES });
    b.send({ cmd: 'messages', to: 0, count: MESSAGES_EACH_WAY, seed: 22, max_bytes: MAX_MESSAGE_BYTES });
    const [atA, atB] = await Promise.all([a.waitType('messages-received', 120_000), b.waitType('messages-received', 120_000)]);
    const [sentA, sentB] = await Promise.all([a.waitType('messages-sent', 5_000), b.waitType('messages-sent', 5_000)]);
    t.like(atB, { ok: MESSAGES_EACH_WAY, bad: 0, bytes: sentA.bytes });
    t.like(atA, { ok: MESSAGES_EACH_WAY, bad: 0, bytes: sentB.bytes });
    t.true((sentA.bytes as number) > 50 * MAX_MESSAGE_BYTES, 'sizes reach the megabyte range');

    b.send({ cmd: 'expect-rma', count: RMA_WRITES });
    a.send({ cmd: 'rma', to: 1, count: RMA_WRITES, seed: 33 });
    const [written, landed] = await Promise.all([a.waitType('rma-written', 30_000), b.waitType('rma-landed', 30_000)]);
    t.is(written.failed, '');
    t.is(written.completed, RMA_WRITES);
    t.is(landed.writes, RMA_WRITES);
    t.is(landed.sha256, written.sha256, "the peer's registered region holds exactly the bytes written");

    for (const p of procs) p.send({ cmd: 'close' });
    await Promise.all(procs.map((p) => p.waitType('closed', 10_000)));
  });
}

test.serial('an unknown provider is a clear error, not a crash', async (t) => {
  const { Fabric } = await import('../engine/transport/fabric.js');
  const { layerLogger } = await import('../engine/util/log.js');
  const err = t.throws(() =>
    Fabric.open({ provider: 'no-such-provider', domain: '', ip: '127.0.0.1', port: 1, tx_depth: 8, rx_depth: 8, log: layerLogger('test') }),
  );
  t.is((err as { code?: string }).code, 'ERR_TRANSPORT_OPEN');
  t.regex(err!.message, /no-such-provider/);
});

test.serial('a member that never comes up is reported unreachable within the bound', async (t) => {
  const { Member } = await import('../engine/member.js');
  const members = await memberAddresses(2);
  const started = Date.now();
  const err = await t.throwsAsync(
    Member.start({
      self: members[0]!,
      members,
      provider: 'tcp',
      domain: '',
      tx_depth: 64,
      rx_depth: 64,
      heartbeat_ms: 100,
      timeout_ms: 1_000,
      connect_timeout_ms: 1_500,
      messenger: { slot_size_bytes: 1024, slots_per_peer: 4, send_timeout_ms: 1_000 },
    }),
  );
  t.is((err as { code?: string }).code, 'ERR_TRANSPORT_PEER_UNREACHABLE');
  t.regex(err!.message, /member 1 at 127\.0\.0\.1:\d+/);
  t.true(Date.now() - started < 5_000);
});

test.serial('a peer killed mid-stream: sends to it fail with ERR_TRANSPORT_PEER_FAILED, the sender lives on', async (t) => {
  t.timeout(60_000);
  const timeout_ms = 1_000;
  const members = await memberAddresses(2);
  const procs = members.map((self) => MemberProcess.start({ self, members, provider: 'tcp', heartbeat_ms: 100, timeout_ms }));
  t.teardown(() => killAll(procs));
  const [a, b] = procs as [MemberProcess, MemberProcess];
  await Promise.all(procs.map((p) => p.waitType('ready', 30_000)));
  a.send({ cmd: 'send-until-error', to: 1, max_ms: 20_000 });
  await new Promise((r) => setTimeout(r, 300));
  const killedAt = Date.now();
  b.kill('SIGKILL');
  const failed = await a.waitType('send-failed', 10_000);
  t.is(failed.code, 'ERR_TRANSPORT_PEER_FAILED', String(failed.message));
  t.regex(String(failed.message), /member 1/);
  t.true((failed.sent as number) > 0, 'messages flowed before the kill');
  const after_ms = (failed.at_ms as number) - killedAt;
  t.true(after_ms <= 2 * timeout_ms + 500, `sends failed ${after_ms} ms after the kill`);
  t.log(`sends failed ${after_ms} ms after SIGKILL: ${String(failed.message)}`);
  a.send({ cmd: 'ping' });
  await a.waitType('pong', 5_000);
  t.is(a.exited, null, 'the sender did not crash');
});
