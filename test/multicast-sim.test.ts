/**
 * The ordering core under the deterministic simulator (test/sim/multicast-sim.ts): 1,000 seeds
 * by default (TEMPEST_SIM_RUNS more, from TEMPEST_SIM_SEED), a check that the seeds covered the
 * interesting shapes, and mutants proving each check can fail.
 */
import test from 'ava';
import { OrderingCore, type OrderingOptions } from '../engine/multicast/ordering.js';
import { replayCommand, runSimulation, type SimOptions, type SimResult } from './sim/multicast-sim.js';
import { assertNoFailures, endWithReplay, failuresOf, positiveInt } from './sim/seed-tests.js';

const RUNS = positiveInt(process.env.TEMPEST_SIM_RUNS, 1000);
const FIRST_SEED = positiveInt(process.env.TEMPEST_SIM_SEED, 1);
const MUTANT_SEEDS = 300;

function runSeeds(first: number, count: number, opts: SimOptions = {}): SimResult[] {
  const results: SimResult[] = [];
  for (let seed = first; seed < first + count; seed++) results.push(runSimulation(seed, opts));
  return results;
}

// Both the pass test and the coverage test read the same runs; compute them once.
let mainRuns: SimResult[] | undefined;
function mainResults(): SimResult[] {
  mainRuns ??= runSeeds(FIRST_SEED, RUNS);
  return mainRuns;
}

test(`simulator: seeds ${FIRST_SEED}..${FIRST_SEED + RUNS - 1} keep order, FIFO, stability, window and liveness`, (t) => {
  const results = mainResults();
  assertNoFailures(t, results, replayCommand, FIRST_SEED);
  const total = (f: (r: SimResult) => number) => results.reduce((n, r) => n + f(r), 0);
  t.log(`${results.length} runs, ${total((r) => r.stats.events)} events, ${total((r) => r.stats.messages)} app messages, ${total((r) => r.stats.nulls)} nulls, ${total((r) => r.stats.deliveries)} deliveries`);
});

test('simulator: the seeds cover one member, idle senders, raw mode, large messages, window 1', (t) => {
  const results = mainResults();
  const count = (f: (r: SimResult) => boolean) => results.filter(f).length;
  const mix = {
    oneMember: count((r) => r.stats.nodes === 1),
    oneSender: count((r) => r.stats.senders === 1),
    allSend: count((r) => r.stats.nodes > 1 && r.stats.senders === r.stats.nodes),
    idleBesideActive: count((r) => r.stats.idleSenders > 0 && r.stats.idleSenders < r.stats.senders),
    raw: count((r) => r.stats.mode === 'raw'),
    large: count((r) => r.stats.largeMessages > 0),
    window1: count((r) => r.stats.window === 1),
    withNulls: count((r) => r.stats.nulls > 0),
  };
  t.log(JSON.stringify(mix));
  // Each shape should turn up in at least 3% of runs (expected rates are 10-80%).
  const minimum = Math.max(1, Math.floor(RUNS * 0.03));
  for (const [name, n] of Object.entries(mix)) t.true(n >= minimum, `${name}: ${n} runs of ${RUNS}, want >= ${minimum}`);
});

// ---- mutants: each must be caught, by the right check ----

class EagerCore extends OrderingCore {
  // Delivers what we hold ourselves, without waiting for the others.
  override stablePrefix(): number {
    return this.receivedPrefix(this.myRank);
  }
}

class NoNullsCore extends OrderingCore {
  // An idle sender never fills its turn.
  override nullsWanted(): number {
    return 0;
  }
}

class NoWindowCore extends OrderingCore {
  // Puts messages in flight whatever the receivers have freed.
  override canSend(): boolean {
    return true;
  }
}

const MUTANTS = [
  { name: 'delivers before stability', make: (o: OrderingOptions) => new EagerCore(o), check: /: stability: / },
  { name: 'never sends nulls', make: (o: OrderingOptions) => new NoNullsCore(o), check: /: liveness: / },
  { name: 'ignores the window', make: (o: OrderingOptions) => new NoWindowCore(o), check: /: window: / },
];

for (const mutant of MUTANTS) {
  test(`mutant caught: a core that ${mutant.name} fails seeds 1..${MUTANT_SEEDS} with ${mutant.check.source}`, (t) => {
    const failures = failuresOf(runSeeds(1, MUTANT_SEEDS, { coreFactory: mutant.make }));
    t.true(failures.length > 0, 'the checker let the mutant through');
    const right = failures.filter((f) => mutant.check.test(f));
    t.log(`${failures.length} of ${MUTANT_SEEDS} seeds fail, ${right.length} by the expected check; first: ${failures[0]}`);
    t.true(right.length > 0, `no failure names the expected check; first: ${failures[0]}`);
    t.true(endWithReplay(failures, replayCommand), 'each failure ends with its replay command');
  });
}
