/**
 * The child side of scripts/lib/child.ts: what a test fixture or benchmark peer process tells
 * its parent over the IPC channel, in the shapes Child.waitFor expects.
 */

/** Sends one message to the parent. */
export function report(m: object): void {
  process.send!(m);
}

/** Reports an error (the parent's waits fail on `type: 'error'`). */
export function reportFailure(err: unknown): void {
  report({ type: 'error', message: String((err as Error)?.stack ?? err) });
}

/** Runs `close`, then reports `closed` and exits 0; a failure is reported instead. */
export function closeAndExit(close: () => Promise<void>): void {
  close().then(() => {
    report({ type: 'closed' });
    process.exit(0);
  }, reportFailure);
}
