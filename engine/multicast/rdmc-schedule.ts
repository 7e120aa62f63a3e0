/**
 * Block-transfer schedules for RDMC, Derecho's large-message multicast (Behrens et al., "RDMC: A
 * Reliable RDMA Multicast for Large Objects"). Pure functions: no I/O, no timers.
 *
 * Model: the message is cut into B blocks; node 0 (position in the transfer, not a member id) is
 * the sender, nodes 1..n-1 receive. Time is cut into abstract steps; per step a node sends at most
 * one block and receives at most one. A node forwards a block only from the step after it got it,
 * and every receiver gets every block exactly once.
 *
 * Step counts (n nodes, B blocks, l = ceil(log2 n)):
 *   sequential_send  B * (n - 1)          receiver-major: all of receiver 1's blocks, then receiver 2's, ...
 *   chain_send       B + n - 2            sender -> 1 -> 2 -> ... -> n-1, pipelined
 *   tree_send        B * l                binomial tree, stage by stage (as Derecho's tree_schedule)
 *   binomial_send    n = 1: 0; n = 2: B; n = 2^l >= 4: exactly B + l;
 *                    otherwise at most B + l (= B + floor(log2 n) + 1)
 *
 * Why binomial_send takes B + l and not B + l - 1 steps for n = 2^l >= 4: here the sender sends each
 * block exactly once (its uplink carries one copy of the message). Its last first-and-only send is at
 * step >= B - 1; from then on only receivers hold that block, and the number of receivers holding it
 * can at most double per step, so reaching 2^l - 1 > 2^(l-1) receivers needs l more steps. Derecho's
 * B + l - 1 pipeline gets its extra step by having the sender resend the last block up to l - 1 times.
 */
import { assert } from '../util/assert.js';
import { TempestError } from '../util/errors.js';

export type RdmcAlgorithm = 'binomial_send' | 'sequential_send' | 'chain_send' | 'tree_send';

export const RDMC_ALGORITHMS: readonly RdmcAlgorithm[] = Object.freeze([
  'binomial_send',
  'sequential_send',
  'chain_send',
  'tree_send',
] as const);

/** One node's part of a transfer. Shared with the cache: treat as read-only. */
export interface NodeSchedule {
  /** Outgoing transfers in the order they must be posted: sendBlock[i] to node sendTarget[i] at step sendStep[i] (steps non-decreasing). */
  sendBlock: Int32Array;
  sendTarget: Int32Array;
  sendStep: Int32Array;
  /** Blocks this node receives (B for every receiver, 0 for the sender). */
  receiveCount: number;
  /** For each block, the step at which this node receives it (-1 for the sender); and from whom (-1 for sender). */
  receiveStep: Int32Array;
  receiveFrom: Int32Array;
}

export interface RdmcSchedule {
  algorithm: RdmcAlgorithm;
  nodes: number;
  blocks: number;
  steps: number;
  node(i: number): NodeSchedule;
}

export const RDMC_MAX_NODES = 256;
export const RDMC_MAX_BLOCKS = 65536;

/** Schedules are reused for every message of the same shape, so keep the recent ones... */
const MAX_CACHED_SCHEDULES = 32;
/** ...but bound their memory too (one n = 256, B = 65536 schedule alone is ~84 Mi ints). */
const MAX_CACHED_INTS = 1 << 26;

const cache = new Map<string, { schedule: RdmcSchedule; ints: number }>();
let cachedInts = 0;

/**
 * Computes (and caches a bounded number of) schedules. Throws TempestError('ERR_RDMC_SCHEDULE', ...)
 * for bad arguments. The returned schedule and its arrays are shared: do not modify them.
 */
export function rdmcSchedule(algorithm: RdmcAlgorithm, nodes: number, blocks: number): RdmcSchedule {
  if (!RDMC_ALGORITHMS.includes(algorithm)) {
    throw new TempestError('ERR_RDMC_SCHEDULE', `unknown RDMC algorithm ${JSON.stringify(algorithm)}; expected one of ${RDMC_ALGORITHMS.join(', ')}`);
  }
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > RDMC_MAX_NODES) {
    throw new TempestError('ERR_RDMC_SCHEDULE', `RDMC group size must be an integer in 1..${RDMC_MAX_NODES}, got ${nodes}`);
  }
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > RDMC_MAX_BLOCKS) {
    throw new TempestError('ERR_RDMC_SCHEDULE', `RDMC block count must be an integer in 1..${RDMC_MAX_BLOCKS}, got ${blocks}`);
  }
  const key = `${algorithm}/${nodes}/${blocks}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    // Map iteration order is insertion order: re-insert to mark as most recently used.
    cache.delete(key);
    cache.set(key, hit);
    return hit.schedule;
  }

  const builder = new ScheduleBuilder(nodes, blocks, sendCapacities(algorithm, nodes, blocks));
  switch (algorithm) {
    case 'binomial_send':
      buildBinomial(builder);
      break;
    case 'sequential_send':
      buildSequential(builder);
      break;
    case 'chain_send':
      buildChain(builder);
      break;
    case 'tree_send':
      buildTree(builder);
      break;
  }
  const { schedule, ints } = builder.finish(algorithm);

  // Evict least recently used; the newest always stays, however large, so that a run of
  // same-shape messages computes it once.
  cache.set(key, { schedule, ints });
  cachedInts += ints;
  while (cache.size > MAX_CACHED_SCHEDULES || (cachedInts > MAX_CACHED_INTS && cache.size > 1)) {
    const oldestKey = cache.keys().next().value as string;
    cachedInts -= cache.get(oldestKey)!.ints;
    cache.delete(oldestKey);
  }
  return schedule;
}

/** ceil(log2 n) for n >= 1. */
function ceilLog2(n: number): number {
  let l = 0;
  while (1 << l < n) l++;
  return l;
}

/** floor(log2 n) for n >= 1. */
function floorLog2(n: number): number {
  return 31 - Math.clz32(n);
}

/** Upper bound on each node's sends (one per step at most), so the builder can preallocate. */
function sendCapacities(algorithm: RdmcAlgorithm, nodes: number, blocks: number): (node: number) => number {
  switch (algorithm) {
    case 'sequential_send':
      return (node) => (node === 0 ? blocks * (nodes - 1) : 0);
    case 'chain_send':
      return (node) => (node < nodes - 1 ? blocks : 0);
    case 'tree_send': {
      // Node i sends the whole message once per child i + 2^s (2^s > i); see buildTree.
      const stages = ceilLog2(nodes);
      return (node) => {
        let children = 0;
        for (let stage = 0; stage < stages; stage++) if (1 << stage > node && node + (1 << stage) < nodes) children++;
        return blocks * children;
      };
    }
    case 'binomial_send': {
      // See buildBinomial: every transfer happens before step B + floor(log2 n) + 1.
      const stepsBound = nodes === 1 ? 0 : blocks + floorLog2(nodes) + 1;
      return () => stepsBound;
    }
  }
}

/**
 * Collects transfers into per-node typed arrays, asserting the model's rules as it goes (a
 * violation is a bug in a generator). Generators emit each node's sends and receives in step
 * order, and a node's receives of a block before its sends of it.
 */
class ScheduleBuilder {
  private readonly sendBlock: Int32Array[] = [];
  private readonly sendTarget: Int32Array[] = [];
  private readonly sendStep: Int32Array[] = [];
  private readonly sendCount: Int32Array;
  private readonly receiveStep: Int32Array[] = [];
  private readonly receiveFrom: Int32Array[] = [];
  private readonly receivedBlocks: Int32Array;
  private readonly lastSendStep: Int32Array;
  private readonly lastReceiveStep: Int32Array;
  private maxStep = -1;

  constructor(
    readonly nodes: number,
    readonly blocks: number,
    capacity: (node: number) => number,
  ) {
    for (let i = 0; i < nodes; i++) {
      const slots = capacity(i);
      this.sendBlock.push(new Int32Array(slots));
      this.sendTarget.push(new Int32Array(slots));
      this.sendStep.push(new Int32Array(slots));
      this.receiveStep.push(new Int32Array(blocks).fill(-1));
      this.receiveFrom.push(new Int32Array(blocks).fill(-1));
    }
    this.sendCount = new Int32Array(nodes);
    this.receivedBlocks = new Int32Array(nodes);
    this.lastSendStep = new Int32Array(nodes).fill(-1);
    this.lastReceiveStep = new Int32Array(nodes).fill(-1);
  }

  transfer(from: number, to: number, block: number, step: number): void {
    // One combined check with a lazily built message: this runs (n - 1) * B times.
    const toReceiveStep = this.receiveStep[to]!;
    const heldSinceStep = this.receiveStep[from]![block]!;
    const ok =
      from !== to && to !== 0 && from >= 0 && to < this.nodes && from < this.nodes &&
      block >= 0 && block < this.blocks &&
      step > this.lastSendStep[from]! && // at most one send per step, posted in step order
      step > this.lastReceiveStep[to]! && // at most one receive per step
      (from === 0 || (heldSinceStep >= 0 && heldSinceStep < step)) && // forwards only what it holds
      toReceiveStep[block] === -1; // never a block twice
    if (!ok) assert(false, `transfer of block ${block} from node ${from} to node ${to} at step ${step} breaks the model`);

    const at = this.sendCount[from]!;
    const sendBlock = this.sendBlock[from]!;
    assert(at < sendBlock.length, 'send capacity');
    sendBlock[at] = block;
    this.sendTarget[from]![at] = to;
    this.sendStep[from]![at] = step;
    this.sendCount[from] = at + 1;
    this.lastSendStep[from] = step;

    toReceiveStep[block] = step;
    this.receiveFrom[to]![block] = from;
    this.receivedBlocks[to]!++;
    this.lastReceiveStep[to] = step;
    if (step > this.maxStep) this.maxStep = step;
  }

  finish(algorithm: RdmcAlgorithm): { schedule: RdmcSchedule; ints: number } {
    const perNode: NodeSchedule[] = [];
    let ints = 0;
    for (let i = 0; i < this.nodes; i++) {
      const receiveCount = this.receivedBlocks[i]!;
      assert(receiveCount === (i === 0 ? 0 : this.blocks), `node ${i} received ${receiveCount} of ${this.blocks} blocks`);
      const sends = this.sendCount[i]!;
      // Trim the preallocated send arrays: a view when little is spare, else a copy that frees it.
      const trim = (a: Int32Array): Int32Array => (sends * 8 >= a.length * 7 ? a.subarray(0, sends) : a.slice(0, sends));
      perNode.push({
        sendBlock: trim(this.sendBlock[i]!),
        sendTarget: trim(this.sendTarget[i]!),
        sendStep: trim(this.sendStep[i]!),
        receiveCount,
        receiveStep: this.receiveStep[i]!,
        receiveFrom: this.receiveFrom[i]!,
      });
      ints += 3 * sends + 2 * this.blocks;
    }
    const nodes = this.nodes;
    const schedule: RdmcSchedule = {
      algorithm,
      nodes,
      blocks: this.blocks,
      steps: this.maxStep + 1,
      node(i: number): NodeSchedule {
        if (!Number.isInteger(i) || i < 0 || i >= nodes) {
          throw new TempestError('ERR_RDMC_SCHEDULE', `RDMC node position must be an integer in 0..${nodes - 1}, got ${i}`);
        }
        return perNode[i]!;
      },
    };
    return { schedule, ints };
  }
}

/** The sender feeds each receiver in turn the whole message (receiver-major), as Derecho does. */
function buildSequential(b: ScheduleBuilder): void {
  for (let receiver = 1; receiver < b.nodes; receiver++) {
    for (let block = 0; block < b.blocks; block++) {
      b.transfer(0, receiver, block, (receiver - 1) * b.blocks + block);
    }
  }
}

/** Node i forwards block k to node i + 1 at step k + i: a pipeline that is full from step n - 2. */
function buildChain(b: ScheduleBuilder): void {
  // Node by node rather than step by step, for memory locality: the builder's checks are per node,
  // and node i's receives are all recorded before its sends.
  for (let from = 0; from < b.nodes - 1; from++) {
    for (let block = 0; block < b.blocks; block++) b.transfer(from, from + 1, block, block + from);
  }
}

/**
 * Binomial tree, stage by stage (Derecho's tree_schedule): in stage s (steps s*B .. s*B + B - 1) every
 * node i < 2^s, which holds the whole message by then, sends it in block order to child i + 2^s.
 * No forwarding before a node has the whole message, so B * ceil(log2 n) steps.
 */
function buildTree(b: ScheduleBuilder): void {
  const n = b.nodes;
  const B = b.blocks;
  const stages = ceilLog2(n);
  for (let stage = 0; stage < stages; stage++) {
    const span = 1 << stage;
    for (let from = 0; from < span && from + span < n; from++) {
      for (let block = 0; block < B; block++) b.transfer(from, from + span, block, stage * B + block);
    }
  }
}

/**
 * Binomial pipeline (Ganesan & Seshadri; RDMC's default), with the sender sending each block once.
 *
 * Vertices 0 .. V-1 (V = 2^k, k = floor(log2 n)) form a k-dimensional hypercube; vertex 0 is the
 * sender. At step s every vertex u != 0 receives from its neighbour across dimension i = s mod k
 * the block s - k + j(u, i), where j(u, i) = 0 if bit i of u is clear, else the cyclic distance
 * from bit i to u's next set bit (k if bit i is u's only set bit; then the neighbour is vertex 0,
 * which so sends block s at step s). Over any k consecutive steps the offsets i + j(u, i) hit
 * every residue mod k once, so u gets every block exactly once, block b at a step in [b, b + k].
 * A vertex receives a "tree block" at the steps of its set bits and forwards it across every
 * dimension up to and including its next set bit; blocks received on clear bits are leaves.
 * Transfers of blocks outside 0..B-1 are simply skipped, so nothing is sent twice and the last
 * block arrives by step B - 1 + k.
 *
 * n not a power of two: vertex v in 1..n-V also holds node v + V - 1, its twin (RDMC's construction).
 * One twin, the "outer receiver" O, takes the vertex's incoming block; the other, T, makes the
 * vertex's outgoing send; O passes its previous block on to T at the same step. O and T swap at
 * each set-bit step of v, so the twin that just got a tree block is T while it is being
 * forwarded. Each twin then has at most one block its twin lacks; these leftovers also move
 * T -> O when both ports are idle. All hypercube traffic ends by step B - 1 + k, so the last
 * leftovers cross at step B + k: at most B + k + 1 = B + ceil(log2 n) steps. For n = 3 this is the
 * sender alternating blocks between nodes 1 and 2, which swap what they got.
 */
function buildBinomial(b: ScheduleBuilder): void {
  const n = b.nodes;
  const B = b.blocks;
  if (n === 1) return;
  const k = floorLog2(n);
  const V = 1 << k;

  // jOffset[u * k + i] = j(u, i) above.
  const jOffset = new Int32Array(V * k);
  for (let u = 1; u < V; u++) {
    for (let i = 0; i < k; i++) {
      let j = 0;
      if (u & (1 << i)) {
        j = 1;
        while (!(u & (1 << ((i + j) % k)))) j++;
      }
      jOffset[u * k + i] = j;
    }
  }

  const twin = new Int32Array(V).fill(-1);
  for (let v = 1; v < V && v + V - 1 < n; v++) twin[v] = v + V - 1;
  // outerIsTwin[v]: parity of set-bit steps passed; 0 -> node v is O, 1 -> its twin is O.
  const outerIsTwin = new Uint8Array(V);
  // pending[node]: block this twin holds and its twin lacks (-1: none). At most one by construction.
  const pending = new Int32Array(n).fill(-1);
  let pendingCount = 0;
  // incomingBlock[u]: block vertex u receives across the hypercube this step, or -1.
  const incomingBlock = new Int32Array(V);

  const outer = (v: number): number => (twin[v]! >= 0 && outerIsTwin[v] ? twin[v]! : v);
  const inner = (v: number): number => (twin[v]! >= 0 && !outerIsTwin[v] ? twin[v]! : v);

  const lastHypercubeStep = B - 1 + k;
  for (let step = 0; step <= lastHypercubeStep || pendingCount > 0; step++) {
    const dim = step % k;
    const bit = 1 << dim;
    incomingBlock[0] = -1;
    for (let u = 1; u < V; u++) {
      const block = step - k + jOffset[u * k + dim]!;
      incomingBlock[u] = block >= 0 && block < B ? block : -1;
    }
    // Hypercube transfers: T of the sending vertex (or the sender itself) to O of the receiving one.
    for (let u = 1; u < V; u++) {
      const block = incomingBlock[u]!;
      if (block < 0) continue;
      const v = u ^ bit;
      b.transfer(v === 0 ? 0 : inner(v), outer(u), block, step);
    }
    // Twin transfers, then the block O just got becomes O's pending block.
    for (let v = 1; v < V; v++) {
      if (twin[v]! < 0) continue;
      const o = outer(v);
      const t = inner(v);
      const oPending = pending[o]!;
      if (oPending >= 0) {
        b.transfer(o, t, oPending, step);
        pending[o] = -1;
        pendingCount--;
      }
      const tPending = pending[t]!;
      const partner = v ^ bit;
      const tSendsOut = partner !== 0 && incomingBlock[partner]! >= 0;
      if (tPending >= 0 && !tSendsOut && incomingBlock[v]! < 0) {
        b.transfer(t, o, tPending, step);
        pending[t] = -1;
        pendingCount--;
      }
      if (incomingBlock[v]! >= 0) {
        assert(pending[o] === -1, 'an outer receiver passes on its previous block before it gets the next');
        pending[o] = incomingBlock[v]!;
        pendingCount++;
      }
    }
    // After a set-bit step the twin that got the tree block becomes T and forwards it.
    for (let v = 1; v < V; v++) if (v & bit) outerIsTwin[v] = outerIsTwin[v]! ^ 1;
    assert(step <= lastHypercubeStep + 1, 'twins settle within one step of the hypercube traffic');
  }
}
