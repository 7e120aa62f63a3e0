/**
 * Replays one membership simulator seed: `node dist/test/sim/membership-replay.js <seed> [--trace]`.
 * Prints the stats (and with --trace every event), the failure if any; exits 1 on failure.
 */
import { runMembershipSimulation } from './membership-sim.js';
import { replayMain } from './replay-main.js';

replayMain(runMembershipSimulation, 'dist/test/sim/membership-replay.js');
