/**
 * npm run bench — every benchmark, one after another, into bench/REPORT.md (see report.ts).
 * Options: --quick (short forms), --only=a,b (a subset), --out=DIR (default <repo>/bench).
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BENCHMARKS, runBench } from './report.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const USAGE = `usage: npm run bench -- [--quick] [--only=${BENCHMARKS.map((b) => b.name).join(',')}] [--out=DIR]\n`;

let values;
try {
  ({ values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } }));
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
process.exit(await runBench({ packageRoot: ROOT, quick: values.quick!, only: values.only, outDir: values.out ?? path.join(ROOT, 'bench') }));
