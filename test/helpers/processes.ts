/** Real member processes for multi-process tests (test/fixtures/member-process.ts). */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePorts } from '../../scripts/lib/child.js';

export { freePorts, killAll, type Msg } from '../../scripts/lib/child.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURE = join(here, '../fixtures/member-process.js');

export type MemberProcess = Child;
export const MemberProcess = {
  start: (args: object, env: Record<string, string> = {}): Child => Child.start(FIXTURE, args, env),
};

/** Member addresses for n processes on 127.0.0.1 with fresh ports. */
export async function memberAddresses(n: number): Promise<{ id: number; ip: string; port: number; fabric_port: number }[]> {
  const ports = await freePorts(2 * n);
  return Array.from({ length: n }, (_, i) => ({ id: i, ip: '127.0.0.1', port: ports[2 * i]!, fabric_port: ports[2 * i + 1]! }));
}

/** SIGKILLs the whole process group led by `pid` (a child spawned detached), if it is still there. */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Sends `signal` to `p` and waits up to wait_ms for its exit; SIGKILLs it if it is still there. */
export async function killBounded(p: import('node:child_process').ChildProcess, signal: NodeJS.Signals, wait_ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, wait_ms)))]);
  clearTimeout(timer);
  if (p.exitCode === null && p.signalCode === null) {
    p.kill('SIGKILL');
    await exited;
  }
}
