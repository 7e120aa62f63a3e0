/**
 * `npm run bench` / `tempest bench`: runs every benchmark as its own process, one after another
 * (they measure the machine, so never two at once), takes the JSON summary each prints as its last
 * stdout line, and writes into the output directory:
 *   REPORT.md      every benchmark's figures beside the baselines measured in the same run, its
 *                  ratios and goals (met / MISSED), or why it failed;
 *   results.json   the raw summaries;
 *   throughput.svg ordered-multicast throughput against message size and against group size
 *                  (3, 5, 7 members), Tempest beside Node net (from bench:multicast --sweep).
 * A benchmark that fails or times out is reported as failed (exit code, stderr tail) and the run
 * ends with exit code 1 after writing the report.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { renderThroughputSvg, type SweepSummary } from './report-plot.js';

export interface BenchSpec {
  name: string;
  script: string;
  args: string[];
  quickArgs: string[];
  /** Extra environment for the --quick form (benchmarks sized by environment variables). */
  quickEnv?: Record<string, string>;
  timeout_ms: number;
}

const MIN = 60_000;
export const BENCHMARKS: BenchSpec[] = [
  { name: 'transport', script: 'transport.js', args: [], quickArgs: ['--quick'], timeout_ms: 10 * MIN },
  { name: 'multicast', script: 'multicast.js', args: [], quickArgs: ['--quick'], timeout_ms: 15 * MIN },
  { name: 'sweep', script: 'multicast.js', args: ['--sweep'], quickArgs: ['--sweep', '--quick'], timeout_ms: 20 * MIN },
  { name: 'membership', script: 'membership.js', args: [], quickArgs: ['--runs=4'], timeout_ms: 20 * MIN },
  { name: 'persist', script: 'persist.js', args: [], quickArgs: ['--duration-ms=2000', '--warmup-ms=500'], timeout_ms: 15 * MIN },
  { name: 'persist-log', script: 'persist-log.js', args: [], quickArgs: ['--entries=20000'], timeout_ms: 10 * MIN },
  { name: 'blob', script: 'blob.js', args: [], quickArgs: [], quickEnv: { BENCH_BLOB_LARGE_MIB: '32', BENCH_BLOB_RUNS: '1', BENCH_BLOB_SMALL_RUNS: '5' }, timeout_ms: 20 * MIN },
  { name: 'fs', script: 'fs.js', args: [], quickArgs: [], quickEnv: { TEMPEST_BENCH_FS_MIB: '128' }, timeout_ms: 25 * MIN },
];

export interface BenchOptions {
  packageRoot: string;
  quick: boolean;
  /** Comma-separated names of BENCHMARKS to run; all when undefined. */
  only: string | undefined;
  outDir: string;
}

interface Outcome {
  spec: BenchSpec;
  seconds: number;
  summary: Record<string, unknown> | null;
  failure: string | null;
}

const STDERR_TAIL_BYTES = 4000;

export async function runBench(o: BenchOptions): Promise<number> {
  const wanted = o.only?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = wanted?.filter((w) => !BENCHMARKS.some((b) => b.name === w)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`tempest bench: unknown benchmark(s) ${unknown.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}\n`);
    return 2;
  }
  const specs = BENCHMARKS.filter((b) => wanted === undefined || wanted.includes(b.name));
  const started = new Date();
  const outcomes: Outcome[] = [];
  for (const spec of specs) {
    process.stderr.write(`bench: ${spec.name} ...\n`);
    outcomes.push(await runOne(o, spec));
    const last = outcomes[outcomes.length - 1]!;
    process.stderr.write(`bench: ${spec.name} ${last.failure === null ? 'done' : `FAILED (${last.failure.split('\n')[0]})`} in ${last.seconds.toFixed(0)} s\n`);
  }
  mkdirSync(o.outDir, { recursive: true });
  const results = Object.fromEntries(outcomes.map((r) => [r.spec.name, r.summary ?? { failed: r.failure }]));
  writeFileSync(path.join(o.outDir, 'results.json'), `${JSON.stringify({ started: started.toISOString(), quick: o.quick, results }, null, 2)}\n`);
  const sweep = outcomes.find((r) => r.spec.name === 'sweep')?.summary as SweepSummary | undefined;
  let plot: string | null = null;
  if (sweep !== undefined) {
    plot = 'throughput.svg';
    writeFileSync(path.join(o.outDir, plot), await renderThroughputSvg(sweep));
  }
  writeFileSync(path.join(o.outDir, 'REPORT.md'), reportMarkdown(o, started, outcomes, plot));
  process.stderr.write(`bench: wrote ${path.join(o.outDir, 'REPORT.md')}${plot !== null ? ` and ${plot}` : ''}\n`);
  const failed = outcomes.filter((r) => r.failure !== null).length;
  process.stdout.write(`${JSON.stringify({ bench: 'all', report: path.join(o.outDir, 'REPORT.md'), ran: outcomes.length, failed, ratios: Object.fromEntries(outcomes.flatMap((r) => Object.entries(ratiosOf(r.summary)).map(([k, v]) => [`${r.spec.name}.${k}`, v]))) })}\n`);
  return failed === 0 ? 0 : 1;
}

function runOne(o: BenchOptions, spec: BenchSpec): Promise<Outcome> {
  const t0 = performance.now();
  const script = path.join(o.packageRoot, 'dist', 'scripts', 'bench', spec.script);
  const child = spawn(process.execPath, [script, ...(o.quick ? spec.quickArgs : spec.args)], {
    cwd: o.packageRoot,
    env: { ...process.env, ...(o.quick ? spec.quickEnv : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let errTail = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    for (const line of s.split('\n')) if (line !== '') process.stderr.write(`  [${spec.name}] ${line}\n`);
    errTail = (errTail + s).slice(-STDERR_TAIL_BYTES);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), spec.timeout_ms);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - t0) / 1000;
      const lastLine = out.trimEnd().split('\n').pop() ?? '';
      let summary: Record<string, unknown> | null = null;
      try {
        summary = JSON.parse(lastLine) as Record<string, unknown>;
      } catch {
        // reported below
      }
      let failure: string | null = null;
      if (signal === 'SIGKILL') failure = `timed out after ${spec.timeout_ms / MIN} min`;
      else if (code !== 0) failure = `exit code ${String(code)}${signal !== null ? ` (${signal})` : ''}`;
      else if (summary === null) failure = 'its last stdout line is not a JSON summary';
      if (failure !== null) failure += `\n${errTail.trim().split('\n').slice(-15).join('\n')}`;
      resolve({ spec, seconds, summary: failure === null ? summary : null, failure });
    });
  });
}

function ratiosOf(summary: Record<string, unknown> | null): Record<string, number> {
  const r = summary?.ratios;
  return typeof r === 'object' && r !== null ? (r as Record<string, number>) : {};
}

/** Leaves of a summary as `a.b.c = value` rows (arrays of numbers kept on one row). */
function flatten(v: unknown, prefix: string, out: [string, string][]): void {
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)) out.push([prefix, v.join(' / ')]);
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) flatten(x, prefix === '' ? k : `${prefix}.${k}`, out);
  else out.push([prefix, String(v)]);
}

function reportMarkdown(o: BenchOptions, started: Date, outcomes: Outcome[], plot: string | null): string {
  const cpus = os.cpus();
  const md: string[] = [
    '# Tempest benchmark report',
    '',
    `Written by \`npm run bench${o.quick ? ' -- --quick' : ''}\` (\`tempest bench\`) on ${started.toISOString()}.`,
    `Machine: ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${os.release()}, Node ${process.version}.`,
    o.quick ? '**Quick run**: every benchmark in its short form; figures are indicative only.' : 'Full run: every benchmark with its default sizes.',
    'Every Tempest figure stands beside a baseline measured in the same run on the same machine (Node `net`, `cp`, bare express, the local disk, a fuse-native passthrough, etcd).',
    '',
    '| benchmark | time | ratios (Tempest / baseline) | goals |',
    '|---|---|---|---|',
  ];
  for (const r of outcomes) {
    const ratios = Object.entries(ratiosOf(r.summary)).map(([k, v]) => `${k} ${v}`).join(', ');
    const goals = goalsOf(r.summary);
    md.push(`| ${r.spec.name} | ${r.seconds.toFixed(0)} s | ${r.failure !== null ? '**FAILED**' : ratios || '—'} | ${goals || '—'} |`);
  }
  if (plot !== null) md.push('', '## Throughput against message size and group size', '', `![ordered multicast throughput](${plot})`, '');
  for (const r of outcomes) {
    md.push('', `## ${r.spec.name}`, '', `\`node dist/scripts/bench/${r.spec.script} ${(o.quick ? r.spec.quickArgs : r.spec.args).join(' ')}\``.replace(/ `$/, '`'), '');
    if (r.failure !== null) {
      md.push('Failed: ' + r.failure.split('\n')[0]!, '', '```', ...r.failure.split('\n').slice(1), '```');
      continue;
    }
    const rows: [string, string][] = [];
    flatten(r.summary, '', rows);
    md.push('| figure | value |', '|---|---|', ...rows.filter(([k]) => k !== 'bench').map(([k, v]) => `| ${k} | ${v.replace(/\|/g, '\\|')} |`));
  }
  return `${md.join('\n')}\n`;
}

/**
 * A goal written as a bound (">= 0.8", "< 5") against the figure of the same name: in ratios,
 * else at the top level (a per-member list is held to its worst value).
 */
function meets(summary: Record<string, unknown>, name: string, goal: string): boolean | null {
  const m = /^(>=|<=|<|>)\s*(-?[\d.]+)$/.exec(goal.trim());
  if (m === null) return null;
  const raw = (summary.ratios as Record<string, unknown> | undefined)?.[name] ?? summary[name];
  const values = typeof raw === 'number' ? [raw] : Array.isArray(raw) ? raw.map(Number) : typeof raw === 'string' ? raw.split('/').map(Number) : [];
  if (values.length === 0 || values.some((x) => !Number.isFinite(x))) return null;
  const x = m[1]!.startsWith('<') ? Math.max(...values) : Math.min(...values);
  const b = Number(m[2]);
  return m[1] === '>=' ? x >= b : m[1] === '<=' ? x <= b : m[1] === '<' ? x < b : x > b;
}

function goalsOf(summary: Record<string, unknown> | null): string {
  const g = summary?.goals;
  if (typeof g !== 'object' || g === null) return '';
  return Object.entries(g as Record<string, unknown>)
    .map(([k, v]) => {
      const met = typeof v === 'boolean' ? v : typeof v === 'object' && v !== null && 'met' in v ? Boolean((v as { met: unknown }).met) : typeof v === 'string' ? meets(summary!, k, v) : null;
      const bound = typeof v === 'string' ? ` ${v}` : '';
      return `${k}${bound} ${met === null ? '(not measured)' : met ? 'met' : '**MISSED**'}`;
    })
    .join(', ');
}
