/**
 * Replays one simulator seed: `node dist/test/sim/replay.js <seed> [--trace]`.
 * Prints the stats (and with --trace every event), the failure if any; exits 1 on failure.
 */
import { runSimulation } from './multicast-sim.js';
import { replayMain } from './replay-main.js';

replayMain(runSimulation, 'dist/test/sim/replay.js');
