/**
 * The view-change core (engine/membership/gms-core.ts) on small hand-made scenarios, over an
 * in-memory table where a push is seen by every live member at once: batched joins, a leader
 * replaced by the next rank, the ragged trim as a minimum over the staying members, no decision
 * without a majority; and the outbox that carries a member's updates across views. The simulator
 * (membership-sim.test.ts) covers the same core under faults.
 */
import test from 'ava';
import { type Decision, GmsCore, type GmsOutcome, gmsColumns, type GmsTable } from '../engine/membership/gms-core.js';
import { decodeMember, encodeMember, isMemberInfo, type MemberInfo } from '../engine/membership/view.js';
import { batchPieces, forEachInBatch, Outbox, packBatch } from '../engine/membership/outbox.js';
import { isTempestError, TempestError } from '../engine/util/errors.js';

/** Rows of every member; `published` is what others see, updated by push(). */
class Cluster {
  readonly own: Map<string, number[]>[];
  readonly published: Map<string, number[]>[];
  readonly cores: GmsCore[] = [];
  readonly outcomes: (GmsOutcome | null)[];
  /** Pairs (from, to) that cannot see each other. */
  readonly cut = new Set<string>();

  constructor(readonly n: number, slots: number, fr: (rank: number, slot: number) => number) {
    const columns = [{ name: 'suspected', count: n }, ...gmsColumns(n, slots, 4).map((c) => ({ name: c.name, count: c.count ?? 1 }))];
    const row = () => new Map(columns.map((c) => [c.name, new Array<number>(c.count).fill(0)]));
    this.own = Array.from({ length: n }, row);
    this.published = Array.from({ length: n }, row);
    this.outcomes = new Array(n).fill(null);
    const slotRanks = Array.from({ length: slots }, () => Array.from({ length: n }, (_, r) => r));
    for (let me = 0; me < n; me++) {
      const table: GmsTable = {
        size: n,
        myRank: me,
        get: (rank, column, index = 0) => (rank === me ? this.own[me]! : this.published[rank]!).get(column)![index]!,
        set: (column, value, index = 0) => void (this.own[me]!.get(column)![index] = value),
        push: () => this.published[me] = new Map([...this.own[me]!].map(([k, v]) => [k, [...v]])),
      };
      this.cores.push(new GmsCore({ table, effects: { wedge: () => Array.from({ length: slots }, (_, s) => fr(me, s)) }, slotRanks, maxJoins: 4 }));
    }
  }

  suspect(by: number, rank: number): void {
    this.own[by]!.get('suspected')![rank] = 1;
    this.published[by] = new Map([...this.own[by]!].map(([k, v]) => [k, [...v]]));
  }

  /** Steps every live core until nothing changes (bounded). */
  settle(live: number[] = Array.from({ length: this.n }, (_, r) => r)): void {
    for (let round = 0; round < 100; round++) {
      const before = JSON.stringify(this.published.map((r) => [...r]));
      for (const r of live) {
        const out = this.cores[r]!.step();
        if (out !== null) this.outcomes[r] = out;
      }
      if (JSON.stringify(this.published.map((r) => [...r])) === before) return;
    }
    throw new Error('the cores did not settle within 100 rounds');
  }

  decision(rank: number): Decision {
    const o = this.outcomes[rank];
    if (o?.kind !== 'decided') throw new Error(`member ${rank} did not decide (${JSON.stringify(o)})`);
    return o.decision;
  }
}

const joiner = (id: number): MemberInfo => ({ id, ip: '127.0.0.1', gms_port: 20000 + id, fabric_port: 21000 + id, state_transfer_port: 22000 + id, external_port: 23000 + id });

test('joins waiting at the leader together are admitted in one view, decided alike everywhere', (t) => {
  const c = new Cluster(3, 3, () => 5);
  c.cores[0]!.setPendingJoins([joiner(7), joiner(8), joiner(9)].map(encodeMember));
  c.settle();
  const d = c.decision(0);
  t.deepEqual(d.keep, [0, 1, 2]);
  t.deepEqual(d.joins.map((j) => decodeMember(j)), [joiner(7), joiner(8), joiner(9)]);
  t.deepEqual(c.decision(1), d);
  t.deepEqual(c.decision(2), d);
  t.deepEqual(d.trim, [5, 5, 5]);
});

test('a suspected leader is replaced by the next rank; the trim is the minimum over the members that stay', (t) => {
  // Member r has received 10 - r messages of every sender; the leader (rank 0) fails.
  const c = new Cluster(4, 4, (rank) => 10 - rank);
  for (const r of [1, 2, 3]) c.suspect(r, 0);
  c.settle([1, 2, 3]);
  const d = c.decision(1);
  t.deepEqual(d.keep, [1, 2, 3]);
  t.deepEqual(d.trim, [7, 7, 7, 7], 'min over ranks 1..3 of 10 - rank');
  t.true(d.ballot > 1, 'a proposer other than rank 0 runs phase 1 with a higher ballot');
  t.deepEqual(c.decision(2), d);
  t.deepEqual(c.decision(3), d);
});

test('without a majority of the view nothing is decided, and the core says so', (t) => {
  const c = new Cluster(5, 1, () => 3);
  for (const by of [3, 4]) for (const r of [0, 1, 2]) c.suspect(by, r);
  c.settle([3, 4]);
  t.deepEqual(c.outcomes[3], { kind: 'minority', live: 2 });
  t.deepEqual(c.outcomes[4], { kind: 'minority', live: 2 });
  t.false(c.cores[3]!.hasQuorum());
  t.is(c.published[3]!.get('gms.decided')![0], 0);
});

test('a leaver is let go only when the others are still a majority', (t) => {
  const c = new Cluster(3, 1, () => 1);
  c.cores[2]!.requestLeave();
  c.settle();
  t.deepEqual(c.decision(0).keep, [0, 1], 'two of three stay: the leave is granted');

  const d = new Cluster(3, 1, () => 1);
  d.suspect(0, 1);
  d.suspect(2, 1);
  d.cores[2]!.requestLeave();
  d.settle([0, 2]);
  t.deepEqual(d.decision(0).keep, [0, 2], 'with member 1 gone, the leaver stays to keep a majority');
});

test('member records survive the table encoding; bad addresses are refused', (t) => {
  const m = joiner(42);
  t.deepEqual(decodeMember(encodeMember(m)), m);
  t.true(isMemberInfo(m));
  t.false(isMemberInfo({ ...m, gms_port: 70000 }));
  t.false(isMemberInfo({ ...m, ip: 'example.org' }));
  t.false(isMemberInfo({ ...m, ip: '300.1.1.1' }));
  const err = t.throws(() => encodeMember({ ...m, ip: '300.1.1.1' }));
  t.true(isTempestError(err, 'ERR_MEMBERSHIP_ADDRESS'));
});

/** A multicast stand-in for the outbox: records what it was handed; `end()` ends the view. */
class Sink {
  readonly sent: string[] = [];
  /** The updates of each batch handed over. */
  readonly batches: string[][] = [];
  private readonly pending: ((e: Error) => void)[] = [];
  send(pieces: readonly Buffer[]): Promise<number> {
    // What the multicast sends: the pieces' concatenation, which must parse as one batch.
    const batch = Buffer.concat(pieces);
    const items: string[] = [];
    forEachInBatch(batch, (u) => items.push(u.toString()));
    this.batches.push(items);
    this.sent.push(...items);
    return new Promise((_resolve, reject) => this.pending.push(reject));
  }
  end(): void {
    for (const r of this.pending.splice(0)) r(Object.assign(new Error('wedged'), { code: 'ERR_MULTICAST_WEDGED' }));
  }
}

test('outbox: updates not delivered in a view go again, in order, in the next; delivered ones never twice', async (t) => {
  const box = new Outbox(16);
  const acks: string[] = [];
  for (const p of ['a', 'b', 'c', 'd']) void box.add(Buffer.from(p), Date.now() + 60_000).then(() => acks.push(p));
  const v1 = new Sink();
  box.pump(v1, 1, 3, 1);
  t.deepEqual(v1.sent, ['a', 'b', 'c'], 'at most 3 in flight');
  const first = box.delivered();
  t.true(first.more, 'a delivered; d still waits');
  first.settle.resolve({ vid: 1, index: 0 });
  await Promise.resolve();
  t.deepEqual(acks, ['a']);
  v1.end(); // the view ends: b and c were beyond the trim
  await new Promise((r) => setImmediate(r));
  box.resubmitAll();
  const v2 = new Sink();
  box.pump(v2, 2, 8, 1);
  t.deepEqual(v2.sent, ['b', 'c', 'd'], 'the rest, in order, once each');
  for (let i = 0; i < 3; i++) box.delivered().settle.resolve({ vid: 2, index: i });
  await Promise.resolve();
  t.deepEqual(acks, ['a', 'b', 'c', 'd']);
  t.is(box.length, 0);
});

test('outbox: bounded queue, deadlines for updates not handed over, unknown outcome for those in flight', async (t) => {
  const box = new Outbox(2);
  const inFlight = box.add(Buffer.from('x'), 0);
  const waiting = box.add(Buffer.from('y'), 0);
  await t.throwsAsync(box.add(Buffer.from('z'), 0), { code: 'ERR_MEMBERSHIP_BACKPRESSURE' });
  box.pump(new Sink(), 1, 1, 1);
  box.expire(Date.now(), () => new TempestError('ERR_MEMBERSHIP_TIMEOUT', 'late'));
  await t.throwsAsync(waiting, { code: 'ERR_MEMBERSHIP_TIMEOUT' });
  t.is(box.length, 1, 'the update in flight is not expired: it may still be delivered');
  box.failAll(() => new TempestError('ERR_NO_QUORUM', 'minority'));
  await t.throwsAsync(inFlight, { code: 'ERR_MEMBERSHIP_OUTCOME_UNKNOWN' });
});

test('outbox: waiting updates go out packed in batches up to the byte budget, in order; a batch lost with its view goes again whole', async (t) => {
  const box = new Outbox(64);
  const acks: string[] = [];
  const names = ['a', 'bb', 'ccc', 'dddd', 'eeeee', 'f'.repeat(40), 'g'];
  for (const p of names) void box.add(Buffer.from(p), Date.now() + 60_000).then(() => acks.push(p));
  const v1 = new Sink();
  box.pump(v1, 1, 64, 24);
  // 2 bytes of count, then 4 bytes of length per update: a(5) bb(6) ccc(7) -> 20; dddd would make 28.
  t.deepEqual(v1.batches, [['a', 'bb', 'ccc'], ['dddd', 'eeeee'], ['f'.repeat(40)], ['g']], 'an update over the budget goes alone');
  t.is(box.inFlight, 7);
  for (let i = 0; i < 3; i++) box.delivered().settle.resolve({ vid: 1, index: i });
  v1.end(); // the view ends: the other batches were not delivered
  await new Promise((r) => setImmediate(r));
  t.is(box.inFlight, 0);
  box.resubmitAll();
  const v2 = new Sink();
  box.pump(v2, 2, 64, 1024);
  t.deepEqual(v2.batches, [['dddd', 'eeeee', 'f'.repeat(40), 'g']], 'the rest, in order, once, in one batch');
  for (let i = 0; i < 4; i++) box.delivered().settle.resolve({ vid: 2, index: i });
  await Promise.resolve();
  t.deepEqual(acks, names);
});

test('outbox: a malformed batch is refused with a code, never half-read', (t) => {
  const good = packBatch([Buffer.from('xy'), Buffer.from('z')], 2 + 4 + 2 + 4 + 1);
  const seen: string[] = [];
  forEachInBatch(good, (u) => seen.push(u.toString()));
  t.deepEqual(seen, ['xy', 'z']);
  // What the outbox sends (framing pieces around the updates' own bytes) is the same batch.
  const updates = [Buffer.from('xy'), Buffer.from('z'), Buffer.alloc(0), Buffer.alloc(70_000, 7)];
  const pieces = batchPieces(updates.map((payload) => ({ payload })));
  t.true(Buffer.concat(pieces).equals(packBatch(updates, 2 + 4 * 4 + 2 + 1 + 0 + 70_000)));
  t.true(pieces.includes(updates[3]!), 'an update goes as itself, not copied into a batch');
  for (const bad of [Buffer.alloc(0), Buffer.from([0, 0]), good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.from([0])]), Buffer.from([1, 0, 255, 255, 255, 255])]) {
    t.throws(() => forEachInBatch(bad, () => {}), { code: 'ERR_MEMBERSHIP_MALFORMED_BATCH' });
  }
});
