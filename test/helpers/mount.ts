/**
 * Waiting on FUSE mounts made by member processes (or `tempest mount`): a mount is ready once
 * /proc/self/mountinfo lists the directory as a fuse file system and its root answers stat.
 */
import { readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** True when `dir` (absolute) is a FUSE mount point now. */
export function isFuseMounted(dir: string): boolean {
  const info = readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    // Field 5 is the mount point (octal escapes for spaces); after '-' comes the fs type.
    if (sep > 0 && f[4]!.replace(/\\040/g, ' ') === dir && (f[sep + 1] ?? '').startsWith('fuse')) return true;
  }
  return false;
}

/** Waits (bounded) until `dir` is a FUSE mount whose root answers stat. */
export async function waitMounted(dir: string, timeout_ms = 60_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    if (isFuseMounted(dir)) {
      try {
        statSync(dir);
        return;
      } catch {
        // mounted, not answering yet
      }
    }
    if (Date.now() > deadline) throw new Error(`${dir} was not mounted within ${timeout_ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Unmounts `dir` if a mount is left there (a SIGKILLed member leaves its mount dead: ENOTCONN). */
export function forceUnmount(dir: string): void {
  if (!isFuseMounted(dir)) return;
  try {
    execFileSync('fusermount', ['-uz', dir], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // already gone
  }
}
