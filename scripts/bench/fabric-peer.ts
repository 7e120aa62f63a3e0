/**
 * A benchmark peer over Tempest's transport (a real Member), driven by the benchmark over IPC.
 * Workloads: one-way streams of equal-sized messages, ping-pong, and RMA write streams.
 */
import { Member, type MemberAddress } from '../../engine/member.js';
import { CompletionKind, immediate } from '../../engine/transport/fabric.js';
import { Service } from '../../engine/transport/services.js';
import { ReplyLatch } from './reply-latch.js';
import { report, reportFailure } from '../lib/ipc-child.js';

interface Args {
  self: MemberAddress;
  members: MemberAddress[];
  provider: string;
  slot_size_bytes: number;
  slots_per_peer: number;
  rma_bytes: number;
}

const RMA_SERVICE = Service.FirstApplication + 1;
const args = JSON.parse(process.argv[2]!) as Args;

const member = await Member.start({
  self: args.self,
  members: args.members,
  provider: args.provider,
  domain: '',
  tx_depth: 1024,
  rx_depth: 1024,
  heartbeat_ms: 100,
  timeout_ms: 5_000,
  connect_timeout_ms: 20_000,
  regionSizes: { bench: args.rma_bytes },
  messenger: { slot_size_bytes: args.slot_size_bytes, slots_per_peer: args.slots_per_peer, send_timeout_ms: 60_000 },
});
const messenger = member.messenger;

// Receiving side: count a stream and answer with one byte when it is complete, or echo everything.
let mode: 'count' | 'echo' = 'count';
let expected = 0;
let received = 0;
const latch = new ReplyLatch();
const ack = (to: number) => {
  if (!messenger.trySend(to, Buffer.alloc(1))) messenger.send(to, Buffer.alloc(1)).catch(reportFailure);
};
messenger.handle((from, payload) => {
  if (mode === 'echo') {
    if (!messenger.trySend(from, payload)) throw new Error('echo without credit');
    return;
  }
  if (latch.fire()) return;
  if (++received === expected) {
    received = 0;
    ack(from);
  }
});

let rmaArrived = 0;
let rmaExpected = 0;
let rmaFrom = -1;
member.fabric.onRemoteWrite(RMA_SERVICE, () => {
  if (++rmaArrived === rmaExpected) {
    rmaArrived = 0;
    ack(rmaFrom);
  }
});

const reply = () => latch.wait();

async function stream(to: number, count: number, size: number): Promise<number> {
  const done = reply();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    // Zero copy: the payload is written in place in registered memory (here it is left as is).
    let view = messenger.reserve(to, size);
    while (view === null) {
      await messenger.whenWritable(to);
      view = messenger.reserve(to, size);
    }
    messenger.commit(to, size);
  }
  await done;
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function pingpong(to: number, count: number, size: number): Promise<number[]> {
  const payload = Buffer.alloc(size, 7);
  const rtts_us: number[] = [];
  for (let i = 0; i < count; i++) {
    const answered = reply();
    const t0 = process.hrtime.bigint();
    await messenger.send(to, payload);
    await answered;
    rtts_us.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return rtts_us;
}

async function rmaStream(to: number, count: number, size: number, window: number): Promise<number> {
  const peer = member.mesh.peers.get(to)!;
  const local = member.regions.bench!;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  const handler = member.fabric.addHandler({
    onCompletion: (kind) => {
      if (kind === CompletionKind.Write) inFlight--;
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
    },
    onError: (_k, _t, err, message) => {
      throw new Error(`RMA write failed: ${message} (${err})`);
    },
  });
  const done = reply();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    while (inFlight >= window) await new Promise<void>((r) => (wake = r));
    while (!member.fabric.write(peer.address, local, 0, size, peer.regions.bench!, 0, handler, i, immediate(RMA_SERVICE, i))) {
      await new Promise<void>((r) => member.fabric.whenCapacity(r));
    }
    inFlight++;
  }
  await done;
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

process.on('message', (m: { cmd: string; to: number; count: number; size: number; from?: number }) => {
  switch (m.cmd) {
    case 'expect':
      mode = 'count';
      expected = m.count;
      break;
    case 'echo':
      mode = 'echo';
      break;
    case 'expect-rma':
      rmaExpected = m.count;
      rmaFrom = m.from!;
      break;
    case 'stream':
      stream(m.to, m.count, m.size).then((seconds) => report({ type: 'result', seconds }), reportFailure);
      break;
    case 'pingpong':
      pingpong(m.to, m.count, m.size).then((rtts_us) => report({ type: 'result', rtts_us }), reportFailure);
      break;
    case 'rma':
      rmaStream(m.to, m.count, m.size, 16).then((seconds) => report({ type: 'result', seconds }), reportFailure);
      break;
    case 'close':
      member.close().then(() => process.exit(0), reportFailure);
      break;
  }
});
report({ type: 'ready', provider: member.fabric.provider });
