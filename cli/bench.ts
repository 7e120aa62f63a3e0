/**
 * `tempest bench`: runs the benchmark suite's driver, `node <root>/dist/scripts/bench/all.js`
 * (what `npm run bench` runs), as its own process with the same options, its output passed
 * through, and answers its exit code.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import { TempestError } from '../engine/util/errors.js';

export interface BenchCommand {
  packageRoot: string;
  quick: boolean;
  only: string | undefined;
  outDir: string | undefined;
}

/** The driver, relative to the package root. */
export const BENCH_DRIVER = path.join('dist', 'scripts', 'bench', 'all.js');

export function benchArgs(c: BenchCommand): string[] {
  return [...(c.quick ? ['--quick'] : []), ...(c.only !== undefined ? [`--only=${c.only}`] : []), ...(c.outDir !== undefined ? [`--out=${path.resolve(c.outDir)}`] : [])];
}

export async function runBench(c: BenchCommand): Promise<number> {
  const driver = path.join(c.packageRoot, BENCH_DRIVER);
  if (!existsSync(driver)) {
    throw new TempestError('ERR_CLI_BENCH_MISSING', `the benchmark driver ${driver} is missing: build it with \`npm run build\` (it is compiled from scripts/bench/all.ts)`);
  }
  const child = spawn(process.execPath, [driver, ...benchArgs(c)], { cwd: c.packageRoot, stdio: 'inherit' });
  // Ctrl-C reaches the child too (same process group): this process just waits for it. A SIGTERM
  // sent to this process alone is passed on.
  const ignore = (): void => {};
  const forward = (): void => {
    child.kill('SIGTERM');
  };
  process.on('SIGINT', ignore);
  process.on('SIGTERM', forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (err) => reject(new TempestError('ERR_CLI_BENCH_SPAWN', `cannot start ${driver}: ${err.message}`)));
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal !== null ? (constants.signals[signal] ?? 0) : 0)));
    });
  } finally {
    process.off('SIGINT', ignore);
    process.off('SIGTERM', forward);
  }
}
