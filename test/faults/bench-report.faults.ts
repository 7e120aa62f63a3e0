/**
 * The README's benchmark command, run as written in its short form: `npm run bench -- --quick`
 * (into a temporary directory, so the committed bench/REPORT.md stays the full run's). Every
 * benchmark must finish, end with its JSON summary naming the ratios its issue asks for, and the
 * report and plot must be written. It lives beside the fault suite, not in `npm test`, because it
 * measures the machine: nothing else may run meanwhile.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { killGroup } from '../helpers/processes.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const RUN_TIMEOUT_MS = 14 * 60_000;

/**
 * The ratios each benchmark's issue names (its summary must carry them as numbers). The blob
 * benchmark names its large size in the ratio (256MiB in the full run, 32MiB in the short one).
 */
const REQUIRED_RATIOS: Record<string, RegExp[]> = {
  transport: [/^bw_1MiB_vs_net$/, /^rtt_64B_vs_net$/],
  multicast: [/^rdmc_256MiB_vs_net$/],
  sweep: [/^ordered_1KiB_7_vs_3_members$/, /^rdmc_16MiB_7_vs_3_members$/],
  membership: [/^failure_to_view_vs_timeout_3$/, /^failure_to_view_vs_timeout_5$/],
  persist: [/^rate_vs_etcd$/, /^p50_vs_etcd$/],
  'persist-log': [/^sync_vs_raw$/, /^pipelined_vs_raw$/],
  blob: [/^upload_\d+MiB_vs_cp$/, /^download_\d+MiB_vs_bare$/],
  fs: [/^read_vs_passthrough$/, /^write_vs_passthrough$/],
};

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs it in its own process group (npm, the driver, the benchmark); `track` gets the group's pid while it runs (undefined once it exited). */
function npmRunBench(outDir: string, track: (pid: number | undefined) => void): Promise<RunResult> {
  const child = spawn('npm', ['run', 'bench', '--', '--quick', `--out=${outDir}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-20_000)));
  const timer = setTimeout(() => killGroup(child.pid), RUN_TIMEOUT_MS);
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      clearTimeout(timer);
      track(undefined);
      resolve({ code, stdout, stderr });
    });
  });
}

test('npm run bench -- --quick runs every benchmark, each ends with its JSON summary and ratios, and writes REPORT.md with its plot', async (t) => {
  t.timeout(RUN_TIMEOUT_MS + 60_000);
  const out = mkdtempSync(path.join(tmpdir(), 'tempest-bench-report-'));
  let pid: number | undefined;
  t.teardown(() => {
    killGroup(pid); // a test that failed or timed out leaves no benchmark running
    rmSync(out, { recursive: true, force: true });
  });
  const r = await npmRunBench(out, (p) => (pid = p));
  t.is(r.code, 0, `npm run bench exit code; stderr tail:\n${r.stderr.slice(-4000)}`);
  const last = JSON.parse(r.stdout.trimEnd().split('\n').pop()!) as { bench: string; ran: number; failed: number; ratios: Record<string, unknown> };
  t.is(last.bench, 'all');
  t.is(last.failed, 0);
  t.is(last.ran, Object.keys(REQUIRED_RATIOS).length);
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as { quick: boolean; results: Record<string, { bench?: string; ratios?: Record<string, unknown> }> };
  t.true(results.quick);
  for (const [name, ratios] of Object.entries(REQUIRED_RATIOS)) {
    const summary = results.results[name];
    t.truthy(summary?.bench, `${name}: its last line is a JSON summary with "bench"`);
    for (const pattern of ratios) {
      const ratio = Object.keys(summary?.ratios ?? {}).find((k) => pattern.test(k));
      if (ratio === undefined) {
        t.fail(`${name}: no ratio matching ${pattern} in ${JSON.stringify(summary?.ratios)}`);
        continue;
      }
      const v = summary!.ratios![ratio];
      t.true(typeof v === 'number' && Number.isFinite(v) && v > 0, `${name}: ratios.${ratio} is a positive number (got ${JSON.stringify(v)})`);
      t.is(last.ratios[`${name}.${ratio}`], v, `${name}.${ratio} in the driver's own summary`);
    }
  }
  const report = readFileSync(path.join(out, 'REPORT.md'), 'utf8');
  for (const name of Object.keys(REQUIRED_RATIOS)) t.regex(report, new RegExp(`^\\| ${name} \\| \\d+ s \\| `, 'm'), `REPORT.md has the ${name} row`);
  t.regex(report, /!\[ordered multicast throughput\]\(throughput\.svg\)/);
  t.true(existsSync(path.join(out, 'throughput.svg')));
  t.regex(readFileSync(path.join(out, 'throughput.svg'), 'utf8'), /^<svg[\s\S]*<\/svg>\s*$/, 'the plot is an SVG document');
});
