/**
 * `tempest status`, `tempest put` and `tempest get` as a user runs them (bin/tempest.mjs) against
 * a real 3-member group, over the members' external port (the protocol `tempest mount` uses).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { BIN, runCli } from './helpers/cli-run.js';
import { StoreCluster } from './helpers/store-cluster.js';

const MEMBERS = 3;
const CLI_TIMEOUT_MS = 60_000;
const MiB = 1024 * 1024;
const BIG_BYTES = 128 * MiB;

let c: StoreCluster;
let dir: string;
let connect: string;

test.before(async () => {
  c = await StoreCluster.create(MEMBERS);
  await c.startAll();
  dir = mkdtempSync(path.join(tmpdir(), 'tempest-cli-client-'));
  // Every member's external port, tried in turn, as a user of a remote group gives them.
  connect = c.nodes.map((n) => `127.0.0.1:${n.external}`).join(',');
});

test.after.always(async () => {
  await c?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli([...args, '--connect', connect], CLI_TIMEOUT_MS);

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file)) h.update(b as Buffer);
  return h.digest('hex');
}

interface Described {
  key: string;
  version: string;
  timestamp: string;
  size: number;
  sha256: string;
}

interface StatusJson {
  vid: number;
  leader: number;
  members: { id: number }[];
  layout: { type: string; shards: number[][] }[];
  frontier: { shard: number; version: string; timestamp: string | null }[];
}

test.serial('status names the view, its members and leader, the layout, and a stability frontier that moves with each write', async (t) => {
  const text = await cli(['status']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^view \d+, leader 0, 3 members$/m);
  for (const n of c.nodes) t.regex(text.stdout, new RegExp(`member ${n.id}\\s+127\\.0\\.0\\.1\\s+external port ${n.external}`));
  const shard = /BlobStore\[0\] shard 0: members ([\d, ]+)$/m.exec(text.stdout);
  t.deepEqual(shard?.[1]!.split(', ').sort(), ['0', '1', '2'], 'the one shard holds all three (in join order)');
  t.regex(text.stdout, /stability frontier/);

  const before = await cli(['status', '--json']);
  t.is(before.code, 0, before.stderr);
  const b = JSON.parse(before.stdout) as StatusJson;
  t.is(b.leader, 0);
  t.deepEqual(b.members.map((m) => m.id).sort(), [0, 1, 2]);
  t.deepEqual(b.layout[0]!.shards.map((s) => [...s].sort()), [[0, 1, 2]]);
  writeFileSync(path.join(dir, 'small.txt'), 'status moves\n');
  const put = await cli(['put', 'cli/status.txt', path.join(dir, 'small.txt')]);
  t.is(put.code, 0, put.stderr);
  const v = JSON.parse(put.stdout) as Described;
  const after = JSON.parse((await cli(['status', '--json'])).stdout) as StatusJson;
  t.is(after.frontier.length, 1);
  t.true(BigInt(after.frontier[0]!.version) >= BigInt(v.version), 'the acknowledged version is stable, so inside the frontier');
  t.true(after.frontier[0]!.timestamp! >= v.timestamp, 'the frontier time is at or after the write');
  t.true(b.frontier[0]!.version === '-1' || BigInt(b.frontier[0]!.version) < BigInt(v.version));
});

test.serial('put streams a 128 MiB file and get writes it back byte-exact; neither holds the blob in memory', async (t) => {
  const src = path.join(dir, 'big.bin');
  writeFileSync(src, randomBytes(BIG_BYTES));
  const want = await sha256File(src);
  const baseline = await cli(['status']); // a client that moves no blob: its peak RSS is the floor
  const put = await cli(['put', 'cli/big.bin', src]);
  t.is(put.code, 0, put.stderr);
  const v = JSON.parse(put.stdout) as Described;
  t.is(v.size, BIG_BYTES);
  t.is(v.sha256, want, 'the acknowledged sha256 is the file’s');
  const out = path.join(dir, 'big.out');
  const get = await cli(['get', 'cli/big.bin', '-o', out]);
  t.is(get.code, 0, get.stderr);
  t.is(await sha256File(out), want);
  t.is((JSON.parse(get.stdout) as Described).version, v.version);
  // Whole-blob buffering would add at least the blob's size; streaming adds a bounded window.
  const limit = baseline.peak_rss_bytes + BIG_BYTES / 2;
  t.log(`peak RSS (MiB): status ${(baseline.peak_rss_bytes / MiB).toFixed(0)}, put ${(put.peak_rss_bytes / MiB).toFixed(0)}, get ${(get.peak_rss_bytes / MiB).toFixed(0)}`);
  t.true(put.peak_rss_bytes < limit, `put peak RSS ${put.peak_rss_bytes} < ${limit}`);
  t.true(get.peak_rss_bytes < limit, `get peak RSS ${get.peak_rss_bytes} < ${limit}`);
});

test.serial('get --at reads the version current at that time, --version one version, and stdout takes the bytes', async (t) => {
  const file = path.join(dir, 'note.txt');
  writeFileSync(file, 'first\n');
  const first = JSON.parse((await cli(['put', 'cli/note.txt', file])).stdout) as Described;
  await new Promise((r) => setTimeout(r, 20));
  const between = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 20));
  writeFileSync(file, 'second\n');
  const second = JSON.parse((await cli(['put', 'cli/note.txt', file])).stdout) as Described;
  t.true(BigInt(second.version) > BigInt(first.version));

  const now = await cli(['get', 'cli/note.txt']);
  t.is(now.code, 0, now.stderr);
  t.is(now.stdout, 'second\n', 'the bytes go to stdout by default');
  t.regex(now.stderr, new RegExp(`"version":"${second.version}"`), 'and the description to stderr');
  const past = await cli(['get', 'cli/note.txt', '--at', between]);
  t.is(past.code, 0, past.stderr);
  t.is(past.stdout, 'first\n');
  // The time syntax of the README: dots may replace the colons.
  const dotted = await cli(['get', 'cli/note.txt', '--at', between.replaceAll(':', '.')]);
  t.is(dotted.stdout, 'first\n', dotted.stderr);
  const byVersion = await cli(['get', 'cli/note.txt', '--version', first.version]);
  t.is(byVersion.stdout, 'first\n', byVersion.stderr);
});

test.serial('standard input uploads with put <key> -', async (t) => {
  const r = spawnSync(process.execPath, [BIN, 'put', 'cli/stdin.txt', '-', '--connect', connect], { input: 'from a pipe\n', encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
  t.is(r.status, 0, r.stderr);
  t.is((JSON.parse(r.stdout) as Described).size, 12);
  t.is((await cli(['get', 'cli/stdin.txt'])).stdout, 'from a pipe\n');
});

test.serial('a large put on a terminal shows a progress bar', async (t) => {
  // `script` gives the command a pseudo-terminal, as a user's shell does.
  const src = path.join(dir, 'big.bin');
  const cmd = [process.execPath, BIN, 'put', 'cli/bar.bin', src, '--connect', connect].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: CLI_TIMEOUT_MS });
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /put cli\/bar\.bin \[[█░]+\] 100% \| 128\/128 MiB/);
  t.regex(r.stdout, /"size":134217728/);
});

test.serial('bad input: a clear message and exit code, nothing written', async (t) => {
  const file = path.join(dir, 'x.txt');
  writeFileSync(file, 'x');
  const cases: { args: string[]; code: number; message: RegExp }[] = [
    { args: ['get', 'cli/none'], code: 1, message: /no blob "cli\/none"/ },
    { args: ['get', 'cli/note.txt', '--at', 'yesterday'], code: 2, message: /--at: bad time "yesterday"/ },
    { args: ['get', 'cli/note.txt', '--at', '2099-01-01T00:00:00Z'], code: 2, message: /later than now/ },
    { args: ['get', 'cli/note.txt', '--version', 'abc'], code: 2, message: /--version "abc" is not a version number/ },
    { args: ['get', 'cli/note.txt', '--version', '1', '--at', '0'], code: 2, message: /--at or --version, not both/ },
    { args: ['put', '../x', file], code: 2, message: /'\.\.' segment/ },
    { args: ['put', 'cli/x', path.join(dir, 'missing')], code: 2, message: /cannot read .*missing/ },
    { args: ['put', 'cli/x', dir], code: 2, message: /is not a regular file/ },
  ];
  for (const k of cases) {
    const r = await cli(k.args);
    t.is(r.code, k.code, `${k.args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, k.message, k.args.join(' '));
  }
  const none = await cli(['get', 'cli/x']);
  t.is(none.code, 1, 'the refused puts stored no version');
  t.false((await cli(['get', 'cli/x', '--at', new Date().toISOString()])).code === 0);
});

test.serial('a dead contact is reported at once; a live one later in the list is used', async (t) => {
  const dead = await runCli(['status', '--connect', '127.0.0.1:1'], CLI_TIMEOUT_MS);
  t.is(dead.code, 1);
  t.regex(dead.stderr, /no member answered .*127\.0\.0\.1:1/);
  const mixed = await runCli(['status', '--connect', `127.0.0.1:1,${connect}`], CLI_TIMEOUT_MS);
  t.is(mixed.code, 0, mixed.stderr);
  t.regex(mixed.stdout, /3 members/);
});

test('--help of status, put, get and bench says what each takes', async (t) => {
  for (const [cmd, has] of [
    ['status', /--json/],
    ['put', /<key> <file>/],
    ['get', /--at <time>[\s\S]*--version <n>/],
    ['bench', /--quick[\s\S]*--only/],
  ] as const) {
    const r = await runCli([cmd, '--help'], CLI_TIMEOUT_MS);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`^Usage: tempest ${cmd}`, 'm'));
    t.regex(r.stdout, has);
  }
});
