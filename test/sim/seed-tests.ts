/** Helpers the simulator test files share: environment knobs, failures of a batch of seeds, replay-command checks. */
import type { ExecutionContext } from 'ava';
import type { SeedResult } from './run-seed.js';

/** Failing seeds quoted in full in an assertion message; the rest are counted. */
const FAILURES_SHOWN = 10;

/** A positive whole number from an environment variable, else the fallback. */
export function positiveInt(text: string | undefined, fallback: number): number {
  const n = text === undefined ? NaN : Number(text);
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
}

export function failuresOf(results: readonly SeedResult<unknown>[]): string[] {
  return results.flatMap((r) => (r.failure === undefined ? [] : [r.failure]));
}

/** Asserts that no seed failed; else names the failing seeds, quotes the first failures and says how to replay one. */
export function assertNoFailures(t: ExecutionContext, results: readonly SeedResult<{ seed: number }>[], replay: (seed: number) => string, firstSeed: number): void {
  const failures = failuresOf(results);
  const seeds = results.filter((r) => !r.ok).map((r) => r.stats.seed);
  const shown = failures.slice(0, FAILURES_SHOWN).join('\n');
  t.deepEqual(seeds, [], `${failures.length} failing seeds: ${seeds.join(' ')}\n${shown}\nreplay one with: ${replay(seeds[0] ?? firstSeed)} --trace`);
}

/** Whether every failure line ends with the replay command of its own seed. */
export function endWithReplay(failures: readonly string[], replay: (seed: number) => string): boolean {
  return failures.every((f) => f.endsWith(replay(Number(/^seed (\d+)/.exec(f)?.[1]))));
}
