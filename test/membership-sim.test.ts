/**
 * The view-change core and the ordering core under the membership simulator
 * (test/sim/membership-sim.ts): 2,000 seeds with crashes, joins, leaves, pauses and partitions by
 * default (TEMPEST_MEMBERSHIP_SIM_RUNS more, from TEMPEST_MEMBERSHIP_SIM_SEED), a check that the
 * seeds exercised every kind of fault, and mutants proving the checks can fail.
 */
import test from 'ava';
import { Col, GMS_GROUP, GmsCore, type GmsCoreOptions, type GmsOutcome, type GmsTable } from '../engine/membership/gms-core.js';
import { OrderingCore, type OrderingOptions } from '../engine/multicast/ordering.js';
import { membershipReplayCommand, runMembershipSimulation, type MembershipSimOptions, type MembershipSimResult } from './sim/membership-sim.js';
import { assertNoFailures, endWithReplay, positiveInt } from './sim/seed-tests.js';

const RUNS = positiveInt(process.env.TEMPEST_MEMBERSHIP_SIM_RUNS, 2000);
const FIRST_SEED = positiveInt(process.env.TEMPEST_MEMBERSHIP_SIM_SEED, 1);
/** Each mutant must be caught within this many seeds. */
const MUTANT_SEEDS = 300;

// The pass test and the coverage test read the same runs; compute them once.
let mainRuns: MembershipSimResult[] | undefined;
let mainMs = 0;
function mainResults(): MembershipSimResult[] {
  if (mainRuns === undefined) {
    const start = performance.now();
    mainRuns = [];
    for (let seed = FIRST_SEED; seed < FIRST_SEED + RUNS; seed++) mainRuns.push(runMembershipSimulation(seed));
    mainMs = performance.now() - start;
  }
  return mainRuns;
}

test(`membership simulator: seeds ${FIRST_SEED}..${FIRST_SEED + RUNS - 1} keep virtual synchrony through crashes, joins, leaves and partitions`, (t) => {
  const results = mainResults();
  assertNoFailures(t, results, membershipReplayCommand, FIRST_SEED);
  const total = (f: (r: MembershipSimResult) => number) => results.reduce((n, r) => n + f(r), 0);
  t.log(
    `${results.length} runs in ${(mainMs / 1000).toFixed(1)} s: ${total((r) => r.stats.faultsApplied)} faults applied (${total((r) => r.stats.crashes)} crashes, ` +
      `${total((r) => r.stats.joiners)} joiners, ${total((r) => r.stats.leaves)} leaves, ${total((r) => r.stats.partitions)} partitions, ${total((r) => r.stats.pauses)} pauses), ` +
      `${total((r) => r.stats.viewsInstalled)} views, ${total((r) => r.stats.installs)} installs, ${total((r) => r.stats.messages)} app messages, ` +
      `${total((r) => r.stats.resent)} resent, ${total((r) => r.stats.deliveries)} deliveries (${total((r) => r.stats.trimDeliveries)} in ragged trims), ` +
      `${total((r) => r.stats.events)} events; ${total((r) => (r.stats.converged ? 1 : 0))} runs settled, ${total((r) => (r.stats.deadGroup ? 1 : 0))} lost their majority for good`,
  );
});

test('membership simulator: the seeds exercise every kind of fault', (t) => {
  const results = mainResults();
  const runsWith = (f: (r: MembershipSimResult) => number) => results.filter((r) => f(r) > 0).length;
  const total = (f: (r: MembershipSimResult) => number) => results.reduce((n, r) => n + f(r), 0);
  const mix = {
    leaderCrashes: runsWith((r) => r.stats.leaderCrashes),
    crashesMidChange: runsWith((r) => r.stats.midChangeCrashes),
    joins: runsWith((r) => r.stats.joinsInstalled - r.stats.rejoins),
    rejoins: runsWith((r) => r.stats.rejoins),
    leaves: runsWith((r) => r.stats.cleanLeaves),
    minorityPartitions: runsWith((r) => r.stats.minorityPartitions),
    evenSplits: runsWith((r) => r.stats.evenSplits),
    pauses: runsWith((r) => r.stats.pauses),
    severalFaultsInOneChange: runsWith((r) => r.stats.multiFaultChanges),
    higherBallots: runsWith((r) => r.stats.higherBallotDecisions),
    raggedTrims: runsWith((r) => r.stats.trimDeliveries),
    resends: runsWith((r) => r.stats.resent),
    refusedMinoritySends: runsWith((r) => r.stats.refusedSends),
    settled: runsWith((r) => (r.stats.converged ? 1 : 0)),
  };
  t.log(JSON.stringify(mix));
  t.log(`totals: ${total((r) => r.stats.leaderCrashes)} leader crashes, ${total((r) => r.stats.midChangeCrashes)} crashes mid-change, ${total((r) => r.stats.multiFaultChanges)} view changes with several faults`);
  // Each kind should turn up in at least 4% of runs (expected rates are 8-85%).
  const minimum = Math.max(1, Math.floor(RUNS * 0.04));
  for (const [name, n] of Object.entries(mix)) t.true(n >= minimum, `${name}: ${n} runs of ${RUNS}, want >= ${minimum}`);
  t.true(mix.settled >= RUNS * 0.6, `only ${mix.settled} of ${RUNS} runs settled`);
});

// ---- mutants: each must be caught, by the right check ----

/** Decides as soon as its own proposal is accepted, without waiting for a majority. */
class HastyCore extends GmsCore {
  private readonly tab: GmsTable;
  constructor(o: GmsCoreOptions) {
    super(o);
    this.tab = o.table;
  }
  override step(): GmsOutcome | null {
    const out = super.step();
    if (out !== null) return out;
    const t = this.tab;
    const b = t.get(t.myRank, Col.prop);
    if (b !== 0 && t.get(t.myRank, Col.acc) === b && t.get(t.myRank, Col.decided) === 0) {
      t.set(Col.decided, b);
      t.push(GMS_GROUP);
      return super.step();
    }
    return out;
  }
}

/** t with get() replaced: size, myRank, set and push go through to t. */
function withGet(t: GmsTable, get: (rank: number, column: string, index?: number) => number): GmsTable {
  return {
    get size() {
      return t.size;
    },
    get myRank() {
      return t.myRank;
    },
    get,
    set: (column: string, value: number, index?: number) => t.set(column, value, index),
    push: (group?: string) => t.push(group),
  };
}

/** Shows the core each member's final received counts as the largest any member reported: the trim becomes a max. */
function maxTrimTable(t: GmsTable): GmsTable {
  return withGet(t, (rank, column, index) => {
    if (column !== Col.fr) return t.get(rank, column, index);
    let m = 0;
    for (let r = 0; r < t.size; r++) m = Math.max(m, t.get(r, column, index));
    return m;
  });
}

/** Phase 1 without waiting: every member seems to have promised the proposer's ballot already. */
function promiseLiarTable(t: GmsTable): GmsTable {
  return withGet(t, (rank, column, index) => {
    const v = t.get(rank, column, index);
    return column === Col.promised && rank !== t.myRank ? Math.max(v, t.get(t.myRank, Col.prepare)) : v;
  });
}

/** Delivers what it holds itself, without waiting for the others (stability ignored). */
class EagerOrdering extends OrderingCore {
  override stablePrefix(): number {
    return this.receivedPrefix(this.myRank);
  }
}

const MUTANTS: { name: string; opts: MembershipSimOptions; check: RegExp }[] = [
  { name: 'a core that decides without waiting for a majority', opts: { coreFactory: (o) => new HastyCore(o) }, check: /: minority-progress: / },
  { name: 'a core that computes the trim as a max instead of a min', opts: { coreFactory: (o) => new GmsCore({ ...o, table: maxTrimTable(o.table) }) }, check: /: same-messages: .*trim/ },
  { name: 'a core with partition safety off (requireMajority: false)', opts: { coreFactory: (o) => new GmsCore({ ...o, requireMajority: false }) }, check: /: (minority-progress|unique-view): / },
  { name: 'a core whose phase 1 does not wait for promises', opts: { coreFactory: (o) => new GmsCore({ ...o, table: promiseLiarTable(o.table) }) }, check: /: unique-view: / },
  { name: 'an ordering core that delivers before stability', opts: { orderingFactory: (o: OrderingOptions) => new EagerOrdering(o) }, check: /: (failed-prefix|same-messages): / },
  { name: 'a runtime that skips the ragged-trim delivery', opts: { mutation: 'skip-trim' }, check: /: same-messages: / },
  { name: 'a runtime that drops its trimmed-off messages instead of resending them', opts: { mutation: 'no-resend' }, check: /: resend: / },
  { name: 'a runtime that transfers the state from before the ragged trim', opts: { mutation: 'early-transfer' }, check: /: state-transfer: / },
];

for (const mutant of MUTANTS) {
  test(`mutant caught: ${mutant.name} fails a seed in 1..${MUTANT_SEEDS} with ${mutant.check.source}`, (t) => {
    const failures: string[] = [];
    let caught: string | undefined;
    let seed = 1;
    for (; seed <= MUTANT_SEEDS && caught === undefined; seed++) {
      const r = runMembershipSimulation(seed, mutant.opts);
      if (r.failure === undefined) continue;
      failures.push(r.failure);
      if (mutant.check.test(r.failure)) caught = r.failure;
    }
    t.log(`${failures.length} failing seeds by seed ${seed - 1}; caught by: ${(caught ?? failures[0] ?? 'nothing').slice(0, 300)}`);
    t.true(failures.length > 0, 'the checker let the mutant through');
    t.not(caught, undefined, `no failure names the expected check; first: ${failures[0]}`);
    t.true(endWithReplay(failures, membershipReplayCommand), 'each failure ends with its replay command');
  });
}
