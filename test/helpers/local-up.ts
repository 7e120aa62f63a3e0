/**
 * `tempest up` (what `npm start` runs) as a test drives it: the 3-member layout of config/local
 * with its fixed ports (HTTP 8080..8082), data under <cwd>/data and the mount at <cwd>/mnt. The
 * process gets its own process group so a failed test can still kill every member.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { forceUnmount } from './mount.js';
import { killGroup } from './processes.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
export const README = path.join(ROOT, 'README.md');
const POLL_MS = 100;

export interface LocalUp {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** The latest line `[nodeN] ... in view V ...` of each member that is in a view. */
  viewLines(): string[];
  /** Waits until all three members printed their line. */
  ready(timeout_ms: number): Promise<void>;
  /** SIGINT (Ctrl-C) and the exit code, bounded. */
  interrupt(timeout_ms: number): Promise<number | null>;
  /** Kills the whole process group and unmounts; safe to call twice. */
  destroy(): void;
}

export function startLocalUp(cwd: string, env: NodeJS.ProcessEnv = {}): LocalUp {
  const child = spawn(process.execPath, [BIN, 'up'], {
    cwd,
    detached: true,
    env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s.length + err.length > 200_000 ? s.slice(-100_000) : s));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A member that lost the majority early (a loaded machine) prints a second line once it is back.
  const viewLines = (): string[] => {
    const last = new Map<string, string>();
    for (const l of out.split('\n')) if (/^\[node\d\] .* in view \d+/.test(l)) last.set(l.slice(0, 7), l);
    return [...last.values()];
  };
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    viewLines,
    ready: (timeout_ms) =>
      within(
        new Promise<void>((resolve, reject) => {
          const check = (): void => {
            if (viewLines().length >= 3) resolve();
            else if (child.exitCode !== null) reject(new Error(`tempest up exited with code ${child.exitCode}`));
            else setTimeout(check, POLL_MS);
          };
          check();
        }),
        timeout_ms,
        () => `three members in a view (stdout: ${out}, stderr: ${err.slice(-4000)})`,
      ),
    interrupt: (timeout_ms) => {
      process.kill(child.pid!, 'SIGINT');
      return within(exit, timeout_ms, () => `tempest up stopping after Ctrl-C (stderr: ${err.slice(-4000)})`);
    },
    destroy: () => {
      killGroup(child.pid);
      forceUnmount(path.join(cwd, 'mnt'));
    },
  };
}

export function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what()}: not within ${ms} ms`)), ms);
    }),
  ]);
}
