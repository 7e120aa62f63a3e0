/**
 * One member process of the multicast benchmark (scripts/bench/multicast.ts): a real Member
 * running one MulticastGroup, started as in test/fixtures/multicast-process.ts, driven over IPC.
 *
 * Commands:
 *   load   {phase, t0, warmup_ms, measure_ms, send, rate_per_s, size, sample_every}
 *          From t0 (a process.hrtime.bigint() value as a string; CLOCK_MONOTONIC, shared by every
 *          process on the machine) this member sends `size`-byte messages, stamped with hrtime in
 *          their first 8 bytes, either keeping its window full (rate_per_s 0) or paced at
 *          rate_per_s in timer batches. Deliveries are counted from t0+warmup to
 *          t0+warmup+measure, and 1 in `sample_every` of them yields a latency sample (now -
 *          stamp). Replies `load-done` {delivered, seconds, sent, samples, ...} once its sending
 *          has stopped.
 *   drain  {expected}: replies `drained` once it has delivered `expected` messages this phase.
 *   rdmc-send {seq, size}: (sender) reserve + commit one large message; replies `rdmc-sent`
 *          {seq, t0} with t0 the hrtime just before reserve() (or after the one-time page touch).
 *   close: closes the group and the member, replies `closed`, exits.
 * Every member reports `rdmc-delivered` {seq, t, size} when it delivers a large message.
 *
 * TEMPEST_BENCH_PROF=1: write a V8 CPU profile of each `load` phase (from its start to its
 * load-done) to TEMPEST_BENCH_PROF_DIR (default the OS temp dir), named after set, phase, member.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Member, type MemberAddress, type MemberOptions } from '../../engine/member.js';
import { MulticastGroup, multicastPlan, type MulticastSettings } from '../../engine/multicast/group.js';
import { layerLogger } from '../../engine/util/log.js';
import { report, reportFailure, closeAndExit } from '../lib/ipc-child.js';

interface Args {
  set: string;
  self: MemberAddress;
  members: MemberAddress[];
  settings: MulticastSettings;
  member: Pick<MemberOptions, 'provider' | 'domain' | 'tx_depth' | 'rx_depth' | 'heartbeat_ms' | 'timeout_ms' | 'messenger'>;
}

interface LoadCmd {
  cmd: 'load';
  phase: string;
  t0: string;
  warmup_ms: number;
  measure_ms: number;
  send: boolean;
  rate_per_s: number;
  size: number;
  sample_every: number;
}

type Cmd =
  | LoadCmd
  | { cmd: 'drain'; expected: number }
  | { cmd: 'rdmc-send'; seq: number; size: number }
  | { cmd: 'heap' }
  | { cmd: 'close' };

const args = JSON.parse(process.argv[2]!) as Args;
const log = layerLogger('bench', { member: args.self.id });
const now = () => process.hrtime.bigint();
const PROFILE = process.env.TEMPEST_BENCH_PROF === '1';
// `heap` forces a full GC; expose it without needing --expose-gc on the fork's command line.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const PROFILE_DIR = process.env.TEMPEST_BENCH_PROF_DIR || tmpdir();

const plan = multicastPlan(args.settings);
const member = await Member.start({
  self: args.self,
  members: args.members,
  ...args.member,
  connect_timeout_ms: 30_000,
  columns: plan.columns,
  regionSizes: plan.regionSizes,
  onSuspect: (id, reason) => report({ type: 'suspect', id, reason }),
});
const group = await MulticastGroup.start({ ...args.settings, member, send_timeout_ms: 60_000, log });
const maxSmc = args.settings.max_smc_payload_size;

// ---- delivery: counting and latency samples (preallocated; a ring, so memory stays flat: past
// SAMPLE_CAPACITY samples in one phase it holds the latest ones) ----------------------------------

const SAMPLE_CAPACITY = 1 << 18;
const samples = new Float64Array(SAMPLE_CAPACITY);
let sampleCount = 0; // samples taken this phase (may exceed capacity: the ring then holds the latest)
let sampleEvery = 16;
let sampleTick = 0;
let measuring = false;
let phaseDelivered = 0;
let drainTarget = -1;
let rdmcSeq = 0;

group.handle((_senderId, _index, payload) => {
  phaseDelivered++;
  if (payload.length > maxSmc) {
    report({ type: 'rdmc-delivered', seq: rdmcSeq++, t: String(now()), size: payload.length });
  } else if (measuring && ++sampleTick >= sampleEvery && payload.length >= 8) {
    sampleTick = 0;
    samples[sampleCount++ % SAMPLE_CAPACITY] = Number(now() - payload.readBigUInt64LE(0)) / 1e6;
  }
  if (drainTarget >= 0 && phaseDelivered >= drainTarget) {
    drainTarget = -1;
    report({ type: 'drained', delivered: phaseDelivered });
  }
});

// ---- sending ----------------------------------------------------------------------------------

let sending = false;
let sent = 0;

/** Keeps the window full: trySend while there is room, then wait for room with a reservation. */
async function sendFullWindow(size: number): Promise<void> {
  const buf = Buffer.alloc(size, 0x5a);
  while (sending) {
    buf.writeBigUInt64LE(now(), 0);
    if (group.trySend(buf) >= 0) {
      sent++;
      continue;
    }
    const view = await group.reserve(size);
    view.writeBigUInt64LE(now(), 0);
    group.commit();
    sent++;
  }
}

/** Paced: every ~1 ms timer tick, sends what is due by now (rate_per_s since start) while there is room. */
function sendPaced(size: number, rate_per_s: number): Promise<void> {
  const buf = Buffer.alloc(size, 0x5a);
  const start = now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      try {
        if (!sending) {
          resolve();
          return;
        }
        const due = Math.floor((Number(now() - start) / 1e9) * rate_per_s);
        while (sent < due) {
          buf.writeBigUInt64LE(now(), 0);
          if (group.trySend(buf) < 0) break; // window full: the backlog goes at the next tick
          sent++;
        }
        setTimeout(tick, 1);
      } catch (err) {
        reject(err as Error);
      }
    };
    tick();
  });
}

const sleepUntil = (t: bigint) => new Promise((r) => setTimeout(r, Math.max(0, Number(t - now()) / 1e6)));

let session: Session | null = null;
async function profileStart(): Promise<void> {
  if (!PROFILE) return;
  if (session === null) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
  }
  await session.post('Profiler.start');
}
async function profileStop(phase: string): Promise<string | null> {
  if (!PROFILE || session === null) return null;
  const { profile } = await session.post('Profiler.stop');
  const file = join(PROFILE_DIR, `tempest-bench-multicast-${args.set}-${phase}-m${args.self.id}-${process.pid}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  return file;
}

async function load(c: LoadCmd): Promise<void> {
  phaseDelivered = 0;
  sampleCount = 0;
  sampleTick = 0;
  sampleEvery = c.sample_every;
  sent = 0;
  const nulls0 = group.nullsSent;
  const t0 = BigInt(c.t0);
  const warmEnd = t0 + BigInt(Math.round(c.warmup_ms * 1e6));
  const measureEnd = warmEnd + BigInt(Math.round(c.measure_ms * 1e6));
  await profileStart();
  await sleepUntil(t0);
  sending = c.send;
  const sender = c.send ? (c.rate_per_s > 0 ? sendPaced(c.size, c.rate_per_s) : sendFullWindow(c.size)) : Promise.resolve();
  let senderError: unknown = null;
  sender.catch((err) => (senderError = err));
  await sleepUntil(warmEnd);
  const d0 = phaseDelivered;
  const m0 = now();
  measuring = true;
  await sleepUntil(measureEnd);
  measuring = false;
  const d1 = phaseDelivered;
  const m1 = now();
  const sentInWindow = sent;
  sending = false;
  await sender;
  if (senderError !== null) throw senderError;
  const n = Math.min(sampleCount, SAMPLE_CAPACITY);
  const profile = await profileStop(c.phase);
  report({
    type: 'load-done',
    phase: c.phase,
    delivered: d1 - d0,
    seconds: Number(m1 - m0) / 1e9,
    sent,
    sent_by_measure_end: sentInWindow,
    samples: Array.from(samples.subarray(0, n)),
    samples_taken: sampleCount,
    nulls: group.nullsSent - nulls0,
    profile,
  });
}

/** Pages of RDMC buffers already written once (byteOffset -> bytes touched). */
const touched = new Map<number, number>();

async function rdmcSend(seq: number, size: number): Promise<void> {
  let t0 = now();
  const view = await group.reserve(size);
  if ((touched.get(view.byteOffset) ?? 0) < size) {
    // First use of this buffer region: make its pages resident, then restart the clock.
    view.fill(seq & 0xff);
    touched.set(view.byteOffset, size);
    t0 = now();
  }
  group.commit();
  report({ type: 'rdmc-sent', seq, t0: String(t0) });
}

process.on('message', (m: Cmd) => {
  switch (m.cmd) {
    case 'load':
      load(m).catch(reportFailure);
      break;
    case 'drain':
      if (phaseDelivered >= m.expected) report({ type: 'drained', delivered: phaseDelivered });
      else drainTarget = m.expected;
      break;
    case 'rdmc-send':
      rdmcSend(m.seq, m.size).catch(reportFailure);
      break;
    case 'heap':
      // A full collection first, so the figure is live data, not garbage awaiting collection.
      collectGarbage();
      report({ type: 'heap', used_MB: process.memoryUsage().heapUsed / 2 ** 20 });
      break;
    case 'close':
      sending = false;
      group.close();
      closeAndExit(() => member.close());
      break;
    default:
      reportFailure(new Error(`unknown command ${(m as { cmd: string }).cmd}`));
  }
});

report({ type: 'ready', pid: process.pid });
