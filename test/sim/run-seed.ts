/** runSeed: runs one simulator seed and turns a failed check, core assertion or crash into its failure line. */
import { AssertionFailed } from '../../engine/util/assert.js';

/** A check failed; carries what the failure message needs. */
export class CheckFailure<Check extends string> extends Error {
  constructor(
    /** The member or process it happened at, or 'all'. */
    readonly who: number | 'all',
    readonly check: Check,
    detail: string,
  ) {
    super(detail);
  }
}

export interface SeedResult<Stats> {
  ok: boolean;
  /** On failure: seed, member or process, check and detail, ending with the replay command. */
  failure?: string;
  stats: Stats;
  /** Event trace, when asked for. */
  trace?: string[];
}

/** What runSeed drives. */
export interface SeedSimulation<Stats> {
  readonly stats: Stats;
  readonly trace: string[] | undefined;
  /** Whose event is being handled: every core call meanwhile is on its cores. */
  readonly current: number | 'all';
  run(): void;
}

export interface SeedSpec<Stats> {
  /** How a failure names where it happened: 'member' and 'all members', say. */
  one: string;
  all: string;
  /** The seed's scenario, for the failure line. */
  describe: () => string;
  /** The command that replays this seed. */
  replay: string;
  create: () => SeedSimulation<Stats>;
  /** The stats of a run that never started. */
  emptyStats: () => Stats;
}

export function runSeed<Stats>(seed: number, spec: SeedSpec<Stats>): SeedResult<Stats> {
  let failure: string | undefined;
  let sim: SeedSimulation<Stats> | undefined;
  try {
    sim = spec.create();
    sim.run();
  } catch (err) {
    // Every core call while handling an event is on that event's member, so it raised it.
    const e = err instanceof AssertionFailed ? new CheckFailure(sim?.current ?? 'all', 'core-assertion', err.message) : err;
    failure = failureMessage(seed, spec, e);
  }
  if (sim === undefined) return { ok: false, failure: failure ?? 'unreachable', stats: spec.emptyStats() };
  const result: SeedResult<Stats> = { ok: failure === undefined, stats: sim.stats };
  if (failure !== undefined) result.failure = failure;
  if (sim.trace) result.trace = sim.trace;
  return result;
}

function failureMessage(seed: number, spec: SeedSpec<unknown>, err: unknown): string {
  let where = `${spec.one} ?`;
  let what: string;
  if (err instanceof CheckFailure) {
    where = err.who === 'all' ? spec.all : `${spec.one} ${err.who}`;
    what = `${err.check}: ${err.message}`;
  } else if (err instanceof AssertionFailed) {
    what = `core-assertion: ${err.message}`;
  } else {
    what = `crash: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
  }
  return `seed ${seed} (${spec.describe()}): ${where}: ${what} — replay: ${spec.replay}`;
}

/** The first index where a and b differ, or -1. */
export function firstDifference<T>(a: readonly T[], b: readonly T[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}
