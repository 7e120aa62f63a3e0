/**
 * `npm start` as a new user meets it: the `tempest up` layout (fixed ports 8080..8082, ./data,
 * ./mnt), and the README's five-minute tour pasted line by line into one shell. Both tests use
 * the layout's fixed ports, so they run one after the other.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { isFuseMounted } from './helpers/mount.js';
import { BIN, README, startLocalUp } from './helpers/local-up.js';
import { ShellSession, tourBlocks } from './helpers/shell-session.js';

const READY_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 20_000;
const LINE_TIMEOUT_MS = 30_000;

test.serial('tempest up (npm start) runs the 3-member layout: every member reports its view; Ctrl-C stops all three', async (t) => {
  t.timeout(90_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'tempest-up-'));
  const up = startLocalUp(dir);
  t.teardown(() => {
    up.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  await up.ready(READY_TIMEOUT_MS);
  const lines = up.viewLines();
  t.deepEqual(lines.map((l) => l.slice(0, 7)).sort(), ['[node0]', '[node1]', '[node2]']);
  t.regex(lines.find((l) => l.startsWith('[node0]'))!, /in view \d+ with members 0(, [12])* \(leader 0\)/, 'node0 started the group and leads it (the view number depends on when its mount came up)');
  t.regex(lines.find((l) => l.startsWith('[node1]'))!, /HTTP blob API on http:\/\/127\.0\.0\.1:8081\/v1\//);
  t.regex(up.stdout(), /Press Ctrl-C to stop every member/, 'it says how to stop');
  // What a new user does next: put a blob through one member, read it from the others.
  const put = await fetch('http://127.0.0.1:8080/v1/blobs/readme/hello.txt', { method: 'PUT', body: 'hello from npm start\n', signal: AbortSignal.timeout(30_000) });
  t.is(put.status, 201, await put.clone().text());
  const { version } = (await put.json()) as { version: string };
  for (const port of [8081, 8082]) {
    // Acknowledged means durable on every replica of the shard: any member reads it at once.
    const got = await fetch(`http://127.0.0.1:${port}/v1/blobs/readme/hello.txt`, { signal: AbortSignal.timeout(10_000) });
    t.is(got.status, 200, `GET from :${port}`);
    t.is(got.headers.get('x-tempest-version'), version);
    t.is(await got.text(), 'hello from npm start\n');
  }
  t.is(await up.interrupt(STOP_TIMEOUT_MS), 0, up.stderr());
  t.false(isFuseMounted(path.join(dir, 'mnt')), 'Ctrl-C unmounts ./mnt');
  t.true(readFileSync(path.join(dir, 'data', 'node0', 'membership-view.json'), 'utf8').includes('"members"'), 'the last view is remembered under ./data');
});

test.serial("the README's five-minute tour and its HTTP API and file system references, pasted line by line, print what the README says; Ctrl-C and npm start again keep everything", async (t) => {
  t.timeout(240_000);
  const readme = readFileSync(README, 'utf8');
  const blocks = tourBlocks(readme);
  t.is(blocks.length, 2, 'the README has two ```sh tour blocks: before and after the restart');
  for (const tag of ['api', 'fs']) {
    const more = tourBlocks(readme, tag);
    t.is(more.length, 1, `the README has one \`\`\`sh ${tag} block (the HTTP API and file system references)`);
    blocks.push(more[0]!);
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'tempest-tour-'));
  // The README's reader pastes in the repository, where `npx tempest` is this package's bin.
  mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(BIN, path.join(dir, 'node_modules', '.bin', 'tempest'));
  const shell = new ShellSession(dir);
  let up = startLocalUp(dir, { TEMPEST_LOG_LEVEL: 'info' });
  t.teardown(() => {
    shell.close();
    up.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const runBlock = async (i: number): Promise<void> => {
    for (const { command, expect } of blocks[i]!) {
      const r = await shell.run(command, LINE_TIMEOUT_MS);
      t.log(`$ ${command}\n${r.output.trimEnd()}`);
      t.is(r.status, 0, `exit status of: ${command}\n${r.output}`);
      if (expect !== null) t.true(r.output.includes(expect), `"${command}" prints ${JSON.stringify(expect)}; it printed:\n${r.output}`);
    }
  };
  await up.ready(READY_TIMEOUT_MS);
  await runBlock(0);
  t.regex(up.stderr(), /member node2 was killed \(SIGKILL\); the other 2 go on/, 'the first terminal reports the killed member and carries on');
  t.is(await up.interrupt(STOP_TIMEOUT_MS), 0, up.stderr().slice(-4000));
  t.false(isFuseMounted(path.join(dir, 'mnt')), 'Ctrl-C unmounts ./mnt');
  up = startLocalUp(dir, { TEMPEST_LOG_LEVEL: 'info' });
  await up.ready(READY_TIMEOUT_MS);
  await runBlock(1);
  // The HTTP API and file system references, against the same three members (all up again).
  await runBlock(2);
  await runBlock(3);
  t.is(await up.interrupt(STOP_TIMEOUT_MS), 0, up.stderr().slice(-4000));
});
