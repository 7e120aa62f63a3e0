/** `npm run example:cache` (README): the Cache example runs end to end and says what it did. */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RUN = join(dirname(fileURLToPath(import.meta.url)), '../examples/cache/run.js');

test('the Cache example: 3 members, ordered puts with 3 replies, p2p reads, history, a killed member', (t) => {
  const r = spawnSync(process.execPath, [RUN], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, TEMPEST_LOG_LEVEL: 'error' } });
  t.is(r.status, 0, r.stderr);
  const out = r.stdout;
  t.regex(out, /put greeting=hello -> version \d+:\d+ \(view:sequence\), replies from members \d, \d, \d\n/);
  t.regex(out, /get greeting -> "hello again"; contains colour -> true/);
  t.regex(out, /getAt greeting as of version \d+:\d+ -> "hello"/);
  t.regex(out, /getAt greeting as of \S+Z -> "hello"/);
  t.regex(out, /invalidate colour -> true, true, true; contains colour -> false/);
  t.regex(out, /put survivor=yes after the kill -> version \d+:\d+, view \d+ members \d, \d\n/);
  t.regex(out, /Done\./);
});
