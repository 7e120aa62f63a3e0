/** Small figures the benchmarks share: medians and MB/s (10^6 bytes per second). */
import { readFileSync } from 'node:fs';

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/** Runs `cleanup` on process exit, and on SIGINT/SIGTERM/SIGHUP then exits 130 saying so. */
export function cleanUpOnExit(bench: string, cleanup: () => void, onSignal: () => void = () => {}): void {
  process.on('exit', cleanup);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(s, (signal: NodeJS.Signals) => {
      cleanup();
      onSignal();
      process.stderr.write(`bench:${bench}: ${signal}; stopped\n`);
      process.exit(130);
    });
  }
}

/** An integer setting from the environment (default when unset); exits 2 with a message when bad. */
export function envInt(bench: string, name: string, def: number, min: number): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`bench:${bench}: ${name} must be an integer >= ${min}, not ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return v;
}

/** CPU seconds (user + system) a process has used, from /proc (NaN once it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM); NaN once the process is gone. */
export function statusKib(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
