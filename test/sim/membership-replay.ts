/**
 * Replays one membership simulator seed: `node dist/test/sim/membership-replay.js <seed> [--trace]`.
 * Prints the stats (and with --trace every event), the failure if any; exits 1 on failure.
 */
import { runMembershipSimulation } from './membership-sim.js';

function main(argv: readonly string[]): number {
  const args = argv.filter((a) => a !== '--trace');
  const trace = args.length !== argv.length;
  const seedText = args[0];
  const seed = seedText === undefined ? NaN : Number(seedText);
  if (args.length !== 1 || !Number.isSafeInteger(seed)) {
    process.stderr.write('usage: node dist/test/sim/membership-replay.js <seed> [--trace]\n');
    return 2;
  }
  const result = runMembershipSimulation(seed, { trace });
  for (const line of result.trace ?? []) process.stdout.write(`${line}\n`);
  process.stdout.write(`${JSON.stringify(result.stats)}\n`);
  if (result.ok) {
    process.stdout.write(`seed ${seed}: ok\n`);
    return 0;
  }
  process.stdout.write(`FAILED ${result.failure}\n`);
  return 1;
}

// `membership-replay.js 7 --trace | head` closes the pipe early; that is not a failure of the seed.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});
process.exitCode = main(process.argv.slice(2));
