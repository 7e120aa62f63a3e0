/** replayMain: the command line shared by the simulators' replay scripts (`<seed> [--trace]`). */
import type { SeedResult } from './run-seed.js';

/**
 * Replays the seed named on the command line with `run`: prints the trace (with --trace), the
 * stats, the failure if any, and sets the exit code (0 ok, 1 failed, 2 usage). `script` is the
 * replay script's path, for the usage line.
 */
export function replayMain(run: (seed: number, opts: { trace: boolean }) => SeedResult<unknown>, script: string): void {
  // `replay.js 7 --trace | head` closes the pipe early; that is not a failure of the seed.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
  process.exitCode = main(run, script, process.argv.slice(2));
}

function main(run: (seed: number, opts: { trace: boolean }) => SeedResult<unknown>, script: string, argv: readonly string[]): number {
  const args = argv.filter((a) => a !== '--trace');
  const trace = args.length !== argv.length;
  const seedText = args[0];
  const seed = seedText === undefined ? NaN : Number(seedText);
  if (args.length !== 1 || !Number.isSafeInteger(seed)) {
    process.stderr.write(`usage: node ${script} <seed> [--trace]\n`);
    return 2;
  }
  const result = run(seed, { trace });
  for (const line of result.trace ?? []) process.stdout.write(`${line}\n`);
  process.stdout.write(`${JSON.stringify(result.stats)}\n`);
  if (result.ok) {
    process.stdout.write(`seed ${seed}: ok\n`);
    return 0;
  }
  process.stdout.write(`FAILED ${result.failure}\n`);
  return 1;
}
