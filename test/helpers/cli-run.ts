/**
 * Runs the `tempest` command (bin/tempest.mjs) as a user does, to its exit, within a bound,
 * sampling its peak resident memory (VmHWM in /proc/<pid>/status) while it runs.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
const SAMPLE_EVERY_MS = 10;
const STDOUT_LIMIT_BYTES = 1024 * 1024;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Largest VmHWM (peak RSS) seen while it ran, in bytes. */
  peak_rss_bytes: number;
}

function peakRssBytes(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0; // already gone
  }
}

export async function runCli(args: string[], timeout_ms: number): Promise<CliResult> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    if (stdout.length < STDOUT_LIMIT_BYTES) stdout += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-20_000);
  });
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, peakRssBytes(child.pid!));
  }, SAMPLE_EVERY_MS);
  const killer = setTimeout(() => child.kill('SIGKILL'), timeout_ms);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c) => resolve(c));
    });
    if (code === null) throw new Error(`tempest ${args.join(' ')} did not exit within ${timeout_ms} ms (killed); stderr:\n${stderr}`);
    return { code, stdout, stderr, peak_rss_bytes: peak };
  } finally {
    clearInterval(sampler);
    clearTimeout(killer);
  }
}
