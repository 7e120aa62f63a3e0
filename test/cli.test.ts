/**
 * The `tempest` command as a real process: `tempest node` starts a member, prints its describe
 * line, and stops cleanly on SIGINT; a bad override stops start-up with exit code 2 naming the key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';

// dist/test/cli.test.js -> the repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.join(ROOT, 'bin', 'tempest.mjs');
const START_TIMEOUT_MS = 20_000;
const EXIT_TIMEOUT_MS = 15_000;

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

/** A temp directory with a data dir and an INI file pointing everything into it. */
function tempConfig(t: ExecutionContext): { dir: string; ini: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tempest-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ini = path.join(dir, 'node.ini');
  writeFileSync(
    ini,
    [
      '[DERECHO]',
      'local_id = 0',
      'local_ip = 127.0.0.1',
      'leader_ip = 127.0.0.1',
      `data_dir = ${path.join(dir, 'data')}`,
      '[PERS]',
      `ramdisk_path = ${path.join(dir, 'ramdisk')}`,
      '[HTTP]',
      'enabled = false',
      '[FUSE]',
      'enabled = false',
      `mountpoint = ${path.join(dir, 'mnt')}`,
      '',
    ].join('\n'),
  );
  return { dir, ini };
}

/** Overrides giving every port of the member a free one, as the brief's command line does. */
async function portOverrides(): Promise<string[]> {
  const [gms, stateTransfer, sst, rdmc, external, http] = await freePorts(6);
  return [
    `--DERECHO/gms_port=${gms}`,
    `--DERECHO/leader_gms_port=${gms}`,
    `--DERECHO/state_transfer_port=${stateTransfer}`,
    `--DERECHO/sst_port=${sst}`,
    `--DERECHO/rdmc_port=${rdmc}`,
    `--DERECHO/external_port=${external}`,
    `--DERECHO/leader_external_port=${external}`,
    `--HTTP/port=${http}`,
  ];
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function tempest(t: ExecutionContext, args: string[], cwd: string): Run {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, TEMPEST_LOG_FORMAT: 'json', TEMPEST_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  return { child, stdout: () => out, stderr: () => err, exit };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]);
}

/** Resolves with the first complete stdout line; rejects if the process exits first. */
function firstLine(run: Run): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const nl = run.stdout().indexOf('\n');
      if (nl >= 0) {
        run.child.stdout!.off('data', check);
        resolve(run.stdout().slice(0, nl));
      }
    };
    run.child.stdout!.on('data', check);
    void run.exit.then(({ code, signal }) => {
      check();
      reject(new Error(`tempest exited (code ${code}, signal ${signal}) before printing a line; stderr:\n${run.stderr()}`));
    });
  });
}

test('tempest node starts a member, prints its description and stops on SIGINT with exit code 0', async (t) => {
  const { dir, ini } = tempConfig(t);
  const run = tempest(t, ['node', '--config', ini, ...(await portOverrides())], dir);

  const line = await within(firstLine(run), START_TIMEOUT_MS, 'no describe line on stdout');
  t.regex(line, /\S/, 'describe() printed a non-empty line');

  run.child.kill('SIGINT');
  const { code, signal } = await within(run.exit, EXIT_TIMEOUT_MS, 'tempest did not exit after SIGINT');
  t.is(signal, null, run.stderr());
  t.is(code, 0, run.stderr());
});

test('tempest node rejects a bad override with exit code 2 and names the key', async (t) => {
  const { dir, ini } = tempConfig(t);
  const run = tempest(t, ['node', '--config', ini, '--DERECHO/gms_port=abc'], dir);

  const { code } = await within(run.exit, EXIT_TIMEOUT_MS, 'tempest did not exit');
  t.is(code, 2, run.stderr());
  t.regex(run.stderr(), /gms_port/);
  t.regex(run.stderr(), /^tempest: /m);
  t.notRegex(run.stderr(), /^\s+at /m, 'no stack trace for a configuration error');
  t.is(run.stdout(), '', 'nothing was started');
});

test('tempest --version prints the package version', async (t) => {
  const run = tempest(t, ['--version'], ROOT);
  const { code } = await within(run.exit, EXIT_TIMEOUT_MS, 'tempest did not exit');
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  t.is(code, 0, run.stderr());
  t.is(run.stdout().trim(), pkg.version);
});

test('tempest node --help describes the overrides; an unknown option is a usage error (exit 2)', async (t) => {
  const help = tempest(t, ['node', '--help'], ROOT);
  const helped = await within(help.exit, EXIT_TIMEOUT_MS, 'tempest did not exit');
  t.is(helped.code, 0, help.stderr());
  t.regex(help.stdout(), /--config/);
  t.regex(help.stdout(), /--SECTION\/key=value/);

  const bad = tempest(t, ['node', '--no-such-option'], ROOT);
  const failed = await within(bad.exit, EXIT_TIMEOUT_MS, 'tempest did not exit');
  t.is(failed.code, 2);
  t.regex(bad.stderr(), /no-such-option/);
});
