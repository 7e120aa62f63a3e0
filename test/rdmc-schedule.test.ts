/** RDMC block schedules: replayed and checked by a checker that knows only the model, not the constructions. */
import test from 'ava';
import { RDMC_ALGORITHMS, type RdmcAlgorithm, type RdmcSchedule, rdmcSchedule } from '../engine/multicast/rdmc-schedule.js';

const NODE_COUNTS = [...Array.from({ length: 17 }, (_, i) => i + 1), 32, 33, 64];
const BLOCK_COUNTS = [...Array.from({ length: 40 }, (_, i) => i + 1), 100, 257];
const MAX_ERRORS = 10;

interface Replay {
  /** Rule violations found (at most MAX_ERRORS); empty when the schedule is valid. */
  errors: string[];
  /** Blocks sent by node 0, in its posting order. */
  senderBlocks: Int32Array;
  /** Per step: how many nodes send, and how many receive. */
  sendersPerStep: Int32Array;
  receiversPerStep: Int32Array;
}

/**
 * Replays every node's send list and checks the model: each receiver gets each block exactly once;
 * a node sends only blocks it had before that step (the sender has all); at most one send and one
 * receive per node per step; receiveStep/receiveFrom agree with the senders; steps = last step + 1.
 */
function replay(s: RdmcSchedule, n: number, B: number): Replay {
  const errors: string[] = [];
  const fail = (msg: string): void => {
    if (errors.length < MAX_ERRORS) errors.push(msg);
  };
  if (s.nodes !== n || s.blocks !== B) fail(`shape ${s.nodes}x${s.blocks}, expected ${n}x${B}`);
  const steps = s.steps;
  // gotStep[r * B + b]: step at which node r got block b; gotFrom likewise.
  const gotStep = new Int32Array(n * B).fill(-1);
  const gotFrom = new Int32Array(n * B).fill(-1);
  const receivesAt = new Uint8Array(n * Math.max(steps, 0));
  const sendersPerStep = new Int32Array(Math.max(steps, 0));
  const receiversPerStep = new Int32Array(Math.max(steps, 0));
  let lastStep = -1;

  for (let i = 0; i < n; i++) {
    const ns = s.node(i);
    const count = ns.sendBlock.length;
    if (ns.sendTarget.length !== count || ns.sendStep.length !== count) fail(`node ${i}: send arrays differ in length`);
    if (ns.receiveStep.length !== B || ns.receiveFrom.length !== B) fail(`node ${i}: receive arrays are not B long`);
    let prevStep = -1;
    for (let x = 0; x < count; x++) {
      const block = ns.sendBlock[x]!;
      const to = ns.sendTarget[x]!;
      const step = ns.sendStep[x]!;
      if (step < prevStep) fail(`node ${i}: send ${x} at step ${step} after step ${prevStep}`);
      if (step === prevStep) fail(`node ${i}: two sends at step ${step}`);
      prevStep = step;
      if (step < 0 || step >= steps) {
        fail(`node ${i}: send at step ${step} outside 0..${steps - 1}`);
        continue;
      }
      if (block < 0 || block >= B || to < 0 || to >= n || to === i) {
        fail(`node ${i}: bad send of block ${block} to ${to}`);
        continue;
      }
      if (to === 0) fail(`node ${i}: sends block ${block} to the sender`);
      if (gotStep[to * B + block] !== -1) fail(`node ${to} gets block ${block} twice (steps ${gotStep[to * B + block]} and ${step})`);
      gotStep[to * B + block] = step;
      gotFrom[to * B + block] = i;
      if (receivesAt[to * steps + step]) fail(`node ${to}: two receives at step ${step}`);
      receivesAt[to * steps + step] = 1;
      sendersPerStep[step]!++;
      receiversPerStep[step]!++;
      if (step > lastStep) lastStep = step;
    }
  }

  // Second pass, now that every receive is known: a node forwards only what it already had.
  for (let i = 1; i < n; i++) {
    const ns = s.node(i);
    for (let x = 0; x < ns.sendBlock.length; x++) {
      const block = ns.sendBlock[x]!;
      const step = ns.sendStep[x]!;
      if (block < 0 || block >= B) continue;
      const had = gotStep[i * B + block]!;
      if (had < 0 || had >= step) fail(`node ${i} sends block ${block} at step ${step} but got it at step ${had}`);
    }
  }

  for (let i = 0; i < n; i++) {
    const ns = s.node(i);
    if (ns.receiveCount !== (i === 0 ? 0 : B)) fail(`node ${i}: receiveCount ${ns.receiveCount}`);
    for (let block = 0; block < B; block++) {
      const step = gotStep[i * B + block]!;
      if (i > 0 && step < 0) fail(`node ${i} never gets block ${block}`);
      if (ns.receiveStep[block] !== step) fail(`node ${i} block ${block}: receiveStep ${ns.receiveStep[block]}, replay ${step}`);
      if (ns.receiveFrom[block] !== gotFrom[i * B + block]) fail(`node ${i} block ${block}: receiveFrom ${ns.receiveFrom[block]}, replay ${gotFrom[i * B + block]}`);
    }
  }
  if (steps !== lastStep + 1) fail(`steps ${steps}, last transfer at step ${lastStep}`);
  return { errors, senderBlocks: s.node(0).sendBlock, sendersPerStep, receiversPerStep };
}

const log2Ceil = (n: number): number => Math.ceil(Math.log2(n));
const isPowerOfTwo = (n: number): boolean => (n & (n - 1)) === 0;

for (const algorithm of RDMC_ALGORITHMS) {
  for (const n of NODE_COUNTS) {
    test(`${algorithm}: n = ${n}, B in 1..40, 100, 257: a valid schedule`, (t) => {
      for (const B of BLOCK_COUNTS) {
        const s = rdmcSchedule(algorithm, n, B);
        const r = replay(s, n, B);
        t.deepEqual(r.errors, [], `B = ${B}`);
        t.is(s.algorithm, algorithm);
        if (algorithm === 'binomial_send') checkBinomial(t, s, r, n, B);
        if (algorithm === 'chain_send') t.is(s.steps, n === 1 ? 0 : B + n - 2, `chain steps, B = ${B}`);
        if (algorithm === 'sequential_send') t.is(s.steps, B * (n - 1), `sequential steps, B = ${B}`);
        if (algorithm === 'tree_send') t.is(s.steps, B * log2Ceil(n), `tree steps, B = ${B}`);
      }
    });
  }
}

function checkBinomial(t: import('ava').ExecutionContext, s: RdmcSchedule, r: Replay, n: number, B: number): void {
  const l = log2Ceil(n);
  const at = `n = ${n}, B = ${B}`;
  if (n >= 2) {
    // One copy of the message leaves the sender: every block exactly once.
    t.is(r.senderBlocks.length, B, `sender sends B blocks, ${at}`);
    t.deepEqual([...r.senderBlocks].sort((a, b) => a - b), Array.from({ length: B }, (_, i) => i), `each block once, ${at}`);
  }
  if (n === 1) t.is(s.steps, 0);
  else if (n === 2) t.is(s.steps, B, at);
  // Sender-once makes B + l optimal for n = 2^l >= 4 (see rdmc-schedule.ts); B + l - 1 needs resends.
  else if (isPowerOfTwo(n)) t.is(s.steps, B + l, at);
  else t.true(s.steps <= B + l, `steps ${s.steps} <= B + ceil(log2 n) = ${B + l}, ${at}`);

  if (n >= 3 && B >= l) {
    // Pipeline full: from step l until the sender runs out of blocks, every receiver receives in
    // every step and every node but one sends (only n - 1 blocks can be received per step, so
    // "every node sends" is impossible). Holds for non-powers of two as well.
    for (let step = l; step < B; step++) {
      t.is(r.receiversPerStep[step], n - 1, `receivers busy at step ${step}, ${at}`);
      t.is(r.sendersPerStep[step], n - 1, `senders busy at step ${step}, ${at}`);
    }
  }
  if (n === 3) {
    // The sender alternates between the two receivers, which swap what they got.
    t.deepEqual([...s.node(0).sendTarget], Array.from({ length: B }, (_, i) => 1 + (i % 2)), at);
    t.is(s.steps, B + 1, at);
    for (let block = 0; block < B; block++) {
      const first = 1 + (block % 2);
      t.is(s.node(3 - first).receiveFrom[block], first, `block ${block} swapped, ${at}`);
    }
  }
}

test('bad arguments throw ERR_RDMC_SCHEDULE', (t) => {
  const bad: Array<[RdmcAlgorithm, number, number]> = [
    ['binomial_send', 0, 10],
    ['binomial_send', 257, 10],
    ['binomial_send', 2.5, 10],
    ['chain_send', 4, 0],
    ['chain_send', 4, 65537],
    ['tree_send', 4, Number.NaN],
    ['ring_send' as RdmcAlgorithm, 4, 10],
  ];
  for (const [algorithm, n, B] of bad) {
    const err = t.throws(() => rdmcSchedule(algorithm, n, B), undefined, `${algorithm} ${n} ${B}`);
    t.is((err as { code?: string }).code, 'ERR_RDMC_SCHEDULE');
  }
  const s = rdmcSchedule('binomial_send', 4, 10);
  for (const i of [-1, 4, 1.5]) {
    const err = t.throws(() => s.node(i));
    t.is((err as { code?: string }).code, 'ERR_RDMC_SCHEDULE');
  }
});

test('limits are accepted and repeated requests hit the cache', (t) => {
  t.is(rdmcSchedule('binomial_send', 256, 1).steps, 1 + 8);
  t.is(rdmcSchedule('chain_send', 5, 7), rdmcSchedule('chain_send', 5, 7));
});

test('binomial_send for n = 16, B = 65536 is computed and valid', (t) => {
  const n = 16;
  const B = 65536;
  const s = rdmcSchedule('binomial_send', n, B);
  t.is(s.steps, B + 4);
  t.deepEqual(replay(s, n, B).errors, []);
});
