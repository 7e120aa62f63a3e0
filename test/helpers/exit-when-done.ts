/**
 * Loaded into every test worker (ava `require`). AVA waits for a worker process to exit by
 * itself once its tests are done, so one handle a test left open (a child's pipe, a socket, a
 * timer) would hold the whole run until CI's limit. Instead the worker names what was still
 * open, on stderr, and exits.
 */
import { registerCompletionHandler } from 'ava';

// Always open in an AVA worker: its IPC channel and the standard streams.
const EXPECTED = new Set(['TTYWrap', 'PipeWrap', 'FSReqCallback']);

registerCompletionHandler(() => {
  const open = process.getActiveResourcesInfo().filter((r) => !EXPECTED.has(r));
  if (open.length > 0) {
    const counts = new Map<string, number>();
    for (const r of open) counts.set(r, (counts.get(r) ?? 0) + 1);
    const what = [...counts].map(([r, n]) => `${n} ${r}`).join(', ');
    process.stderr.write(`# ${process.argv[1] ?? 'test worker'}: tests done with handles still open (${what}); exiting anyway\n`);
  }
  process.exit(0);
});
