/**
 * The `tempest` command line (bin/tempest.mjs calls main()).
 *
 *   tempest node [--config FILE] [--SECTION/key=value ...] [-- app args]   run one member
 *   tempest up [--SECTION/key=value ...]                                   what `npm start` runs
 *   tempest mount <dir> --connect host:port [--config FILE] [--SECTION/key=value ...]
 *   tempest status [--connect host:port,...] [--json]
 *   tempest put <key> <file|-> [--connect ...]      tempest get <key> [--at T | --version N] [-o FILE]
 *   tempest bench [--quick] [--only=a,b] [--out=DIR] runs every benchmark, writes bench/REPORT.md
 *
 * `--SECTION/key=value` overrides (and everything after `--`) are taken out of argv by the config
 * loader's splitArgv() before commander parses the rest, since commander would reject them as
 * unknown options.
 *
 * Exit codes: 0 done (or stopped by SIGINT/SIGTERM), 1 failure, 2 bad configuration or usage,
 * 128+n forced by a second signal n while stopping.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { assertPortsBindable, loadConfig, splitArgv } from '../config/index.js';
import { startNode, type NodeHandle } from '../engine/node.js';
import { runBench } from './bench.js';
import { localConfigFile, localContacts, runGet, runPut, runStatus } from './client.js';
import { runMount } from './mount.js';
import { runUp } from './up.js';
import { isTempestError } from '../engine/util/errors.js';
import { layerLogger, type Logger } from '../engine/util/log.js';

/** The package root: the nearest directory above this module holding Tempest's package.json. */
const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Longest a member may take to stop after SIGINT/SIGTERM before the process gives up on it. */
const CLOSE_TIMEOUT_MS = 10_000;

const OVERRIDE_HELP = `
Configuration overrides:
  --SECTION/key=value   override one key of the configuration file, e.g.
                        --DERECHO/gms_port=23590 --HTTP/port=9090
  --                    everything after it is passed to the application`;

/** Thrown by action handlers to end the process with a given code after cleanup. */
class Exit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

export async function main(argv: string[]): Promise<void> {
  let code: number;
  try {
    await run(argv);
    code = 0;
  } catch (err) {
    code = exitCodeFor(err);
  }
  process.exit(code);
}

async function run(argv: string[]): Promise<void> {
  // Overrides may appear anywhere before `--`; take them (and the app args) out first.
  const split = splitArgv(argv);
  const program = buildProgram(split.overrides, split.appArgs);
  await program.parseAsync(split.args, { from: 'user' });
}

/** `--SECTION/key=value` tokens, applied by loadConfig after the file. */
type Overrides = string[];

function buildProgram(overrides: Overrides, appArgs: string[]): Command {
  const program = new Command('tempest');
  program
    .description("Tempest: a replicated, versioned file system and blob store after Cornell's Derecho.")
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show help')
    // Root options only before the command name, so `tempest get k --version 3` is get's --version.
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride() // inherited by the subcommands below: errors come back to main() as exceptions
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stdout.write(s) });

  program
    .command('node')
    .description('run one member of a Tempest group with the given configuration')
    .option('-c, --config <file>', 'configuration file (INI); defaults apply to keys it leaves out')
    .addHelpText('after', OVERRIDE_HELP)
    .action(async (opts: { config?: string }) => {
      await runNode({ file: opts.config, overrides, appArgs });
    });

  program
    .command('up')
    .description('start Tempest on this machine with the default configuration (what `npm start` runs)')
    .addHelpText('after', OVERRIDE_HELP)
    .action(async () => {
      process.stdout.write(UP_INTRO);
      const code = await runUp({ packageRoot: PACKAGE_ROOT, overrides, log: layerLogger('cli') });
      if (code !== 0) throw new Exit(code);
    });

  program
    .command('mount')
    .description("mount the file system of a running group on <dir>, as a client of a member's external port")
    .argument('<dir>', 'mount point (created if missing)')
    .requiredOption('--connect <host:port>', "a member's [DERECHO] external_port (several: comma-separated)")
    .option('-c, --config <file>', 'configuration file (INI) whose [DERECHO] block_size and limits match the group')
    .addHelpText('after', OVERRIDE_HELP)
    .action(async (dir: string, opts: { connect: string; config?: string }) => {
      const log = layerLogger('cli');
      const cfg = loadConfig({ file: opts.config, overrides });
      const stop = watchStopSignals(log);
      await runMount({ dir, connect: opts.connect, cfg, log: layerLogger('mount'), stop: stop.requested, ready: (m) => process.stdout.write(`${m}\n`) });
    });

  const CONNECT_HELP = "members' [DERECHO] external_port, host:port[,host:port...] tried in turn (default: the local layout of `npm start`, config/local)";
  const CLIENT_CONFIG_HELP = 'configuration file (INI) whose [DERECHO] block_size and limits match the group (default: config/local/node0.ini)';
  /** The client commands' configuration and contacts: the local layout's unless given. */
  const clientSetup = (opts: { connect?: string; config?: string }): { cfg: ReturnType<typeof loadConfig>; connect: string } => ({
    cfg: loadConfig({ file: opts.config ?? localConfigFile(PACKAGE_ROOT), overrides }),
    connect: opts.connect ?? localContacts(PACKAGE_ROOT),
  });
  program
    .command('status')
    .description('print the view, members, leader, shard layout and stability frontier of a running group')
    .option('--connect <host:port>', CONNECT_HELP)
    .option('-c, --config <file>', CLIENT_CONFIG_HELP)
    .option('--json', 'one JSON object instead of text')
    .addHelpText('after', OVERRIDE_HELP)
    .action(async (opts: { connect?: string; config?: string; json?: boolean }) => {
      await runStatus({ ...clientSetup(opts), json: opts.json === true, out: process.stdout });
    });

  program
    .command('put')
    .description('store <file> (or standard input for -) as a new version of blob <key>, streamed chunk by chunk; prints the version, size and sha256 acknowledged')
    .argument('<key>', 'blob key, e.g. photos/cat.jpg (the file mnt/photos/cat.jpg)')
    .argument('<file>', 'file to upload, or - for standard input')
    .option('--connect <host:port>', CONNECT_HELP)
    .option('--content-type <type>', 'media type stored with the version')
    .option('-c, --config <file>', CLIENT_CONFIG_HELP)
    .addHelpText('after', OVERRIDE_HELP)
    .action(async (key: string, file: string, opts: { connect?: string; contentType?: string; config?: string }) => {
      await runPut({ ...clientSetup(opts), key, file, contentType: opts.contentType, out: process.stdout });
    });

  program
    .command('get')
    .description('write blob <key> (now, as it was at a past time, or one version) to a file or stdout, checking its sha256; its description goes to stdout (stderr when the bytes do)')
    .argument('<key>', 'blob key')
    .option('--at <time>', 'as it was at this time: ISO 8601 UTC (2026-12-03T10:15:00Z; dots may replace the colons) or epoch milliseconds')
    .option('--version <n>', 'this version number (what `tempest put` printed, or x-tempest-version)')
    .option('-o, --output <file>', 'where to write the bytes (- for stdout)', '-')
    .option('--connect <host:port>', CONNECT_HELP)
    .option('-c, --config <file>', CLIENT_CONFIG_HELP)
    .addHelpText('after', OVERRIDE_HELP)
    .action(async (key: string, opts: { at?: string; version?: string; output: string; connect?: string; config?: string }) => {
      await runGet({ ...clientSetup(opts), key, at: opts.at, version: opts.version, output: opts.output, out: process.stdout });
    });

  program
    .command('bench')
    .description('run every benchmark, one after another (node dist/scripts/bench/all.js), and write REPORT.md with each figure beside its baseline')
    .option('--quick', 'the short form of every benchmark that has one')
    .option('--only <names>', 'comma-separated subset, e.g. transport,blob')
    .option('--out <dir>', 'where REPORT.md and results.json go (default: <repo>/bench)')
    .action(async (opts: { quick?: boolean; only?: string; out?: string }) => {
      const code = await runBench({ packageRoot: PACKAGE_ROOT, quick: opts.quick === true, only: opts.only, outDir: opts.out });
      if (code !== 0) throw new Exit(code);
    });

  return program;
}

const UP_INTRO = `Tempest is a replicated, versioned file system and blob store after Cornell's Derecho:
every byte is kept by several replicas that agree on one order of updates, every update is kept
as a timestamped version, and any past moment can be read back as a consistent snapshot.
This starts the ready 3-member layout of config/local on 127.0.0.1 (data under ./data): node0
starts the group and node1 and node2 join it; each prints a line once it is in a view. Kill one
member (kill -9) and the others go on in a new view within about timeout_ms. Each member serves
the HTTP blob API for every key: http://127.0.0.1:8080/v1/ (node0), :8081 (node1), :8082 (node2),
for example  curl -T photo.jpg http://127.0.0.1:8080/v1/blobs/photos/cat.jpg . node0 mounts the
file system on ./mnt: the same keys as files, and the past under ./mnt/.snapshot/<time>/ (read-only).
Press Ctrl-C to stop every member.

`;

async function runNode(args: { file: string | undefined; overrides: Overrides; appArgs: string[] }): Promise<void> {
  const log = layerLogger('cli');
  const cfg = loadConfig({ file: args.file, overrides: args.overrides });
  await assertPortsBindable(cfg);

  // Signals are watched from before the member starts, so a Ctrl-C during start-up still stops it.
  const stop = watchStopSignals(log);
  if (args.appArgs.length > 0) log.debug({ appArgs: args.appArgs }, 'application arguments (not used yet)');

  const node = await startNode(cfg, layerLogger('node'));
  process.stdout.write(`${node.describe()}\n`);
  // A member that lost the majority restarts from its logs; its line says so once it is back.
  node.onServingAgain(() => process.stdout.write(`${node.describe()}\n`));

  const signal = await stop.requested;
  log.info({ signal }, 'stopping');
  await closeBounded(node, log);
  log.info('stopped');
}

/** The first SIGINT/SIGTERM asks for an orderly stop; a second one exits at once. */
function watchStopSignals(log: Logger): { requested: Promise<NodeJS.Signals> } {
  let count = 0;
  let resolve!: (signal: NodeJS.Signals) => void;
  const requested = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const onSignal = (signal: NodeJS.Signals): void => {
    count += 1;
    if (count === 1) {
      resolve(signal);
      return;
    }
    const code = signal === 'SIGINT' ? 130 : 143;
    log.warn({ signal }, 'second signal while stopping: exiting now');
    process.stderr.write(`tempest: ${signal} again while stopping; exiting without a clean shutdown\n`);
    process.exit(code);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { requested };
}

async function closeBounded(node: NodeHandle, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), CLOSE_TIMEOUT_MS);
  });
  try {
    const outcome = await Promise.race([node.close().then(() => 'closed' as const), timedOut]);
    if (outcome === 'timeout') {
      log.error({ timeoutMs: CLOSE_TIMEOUT_MS }, 'stop timed out');
      process.stderr.write(`tempest: the member did not stop within ${CLOSE_TIMEOUT_MS / 1000} s; exiting anyway\n`);
      throw new Exit(1);
    }
  } finally {
    clearTimeout(timer);
  }
}

function exitCodeFor(err: unknown): number {
  if (err instanceof Exit) return err.exitCode;
  if (err instanceof CommanderError) {
    // Help and --version end with exitCode 0; commander has already printed any usage error.
    return err.exitCode === 0 ? 0 : 2;
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code.startsWith('ERR_CONFIG') || code === 'ERR_CLI_USAGE')) {
    process.stderr.write(`tempest: ${(err as Error).message}\n`);
    return 2;
  }
  if (isTempestError(err)) {
    process.stderr.write(`tempest: ${err.message}\n`);
    return 1;
  }
  process.stderr.write(`tempest: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'tempest') return dir;
    } catch {
      // no package.json here
    }
    if (path.dirname(dir) === dir) return path.resolve(from, '..', '..');
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? '0.0.0';
}
