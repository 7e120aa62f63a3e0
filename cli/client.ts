/**
 * `tempest status`, `put` and `get`: one-shot external clients of a running group over members'
 * [DERECHO] external_port (the protocol `tempest mount --connect` uses). Blobs stream chunk by
 * chunk in both directions, never whole in memory; a progress bar goes to stderr when it is a
 * terminal and the blob is large.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, readdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { loadConfig, type TempestConfig } from '../config/index.js';
import { connectRemoteStore } from '../fs/index.js';
import { parseContacts } from './mount.js';
import { validateKey } from '../engine/store/key.js';
import { formatHlc, parseTime } from '../engine/store/time.js';
import type { BlobVersion, ReadPoint, StoreClient } from '../engine/store/types.js';
import { TempestError } from '../engine/util/errors.js';
import { layerLogger } from '../engine/util/log.js';

/** The layout `npm start` runs: what the commands reach, and are sized by, with no --connect / --config. */
const LOCAL_LAYOUT_DIR = path.join('config', 'local');
/** Blobs at least this large get a progress bar (when stderr is a terminal). */
const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;
/** Longest the first connection to the group may take. */
const CONNECT_TIMEOUT_MS = 15_000;

/** host:port of every member of the local layout (config/local/node*.ini [DERECHO] external_port). */
export function localContacts(packageRoot: string): string {
  const dir = path.join(packageRoot, LOCAL_LAYOUT_DIR);
  const files = readdirSync(dir).filter((f) => /^node\d+\.ini$/.test(f)).sort();
  if (files.length === 0) throw new TempestError('ERR_CLI_USAGE', `no member configuration in ${dir}: give --connect host:port`);
  return files.map((f) => {
    const d = loadConfig({ file: path.join(dir, f), overrides: [] }).DERECHO;
    return `${d.local_ip}:${d.external_port}`;
  }).join(',');
}

/** The local layout's node0.ini: the configuration (chunk size, limits) to use when none is given. */
export function localConfigFile(packageRoot: string): string {
  return path.join(packageRoot, LOCAL_LAYOUT_DIR, 'node0.ini');
}

async function withStore<T>(cfg: TempestConfig, connect: string, fn: (store: StoreClient) => Promise<T>): Promise<T> {
  const contacts = parseContacts(connect);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TempestError('ERR_CLI_UNREACHABLE', `no member answered at ${connect} within ${CONNECT_TIMEOUT_MS / 1000} s (is the group running? \`npm start\` runs the local one)`)), CONNECT_TIMEOUT_MS);
  });
  let store: StoreClient;
  try {
    store = await Promise.race([connectRemoteStore(cfg, contacts, layerLogger('store')), timedOut]);
  } finally {
    clearTimeout(timer);
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

// ---- status ----------------------------------------------------------------------------------

export async function runStatus(c: { cfg: TempestConfig; connect: string; json: boolean; out: Writable }): Promise<void> {
  await withStore(c.cfg, c.connect, async (store) => {
    const [cluster, stats] = await Promise.all([store.cluster(), store.stats()]);
    if (c.json) {
      const { frontier, ...counts } = stats;
      const stable = frontier.map((f) => ({ shard: f.shard, version: f.version, timestamp: f.timestamp === 0n ? null : formatHlc(f.timestamp) }));
      c.out.write(`${JSON.stringify({ ...cluster, stats: counts, frontier: stable }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
      return;
    }
    const lines = [
      `view ${cluster.vid}, leader ${cluster.leader}, ${cluster.members.length} members`,
      ...cluster.members.map((m) => `  member ${m.id}  ${m.ip}  external port ${m.external_port}${m.id === cluster.leader ? '  (leader)' : ''}`),
      'layout',
      ...cluster.layout.flatMap((l) => l.shards.map((members, shard) => `  ${l.type}[${l.index}] shard ${shard}: members ${members.join(', ')}`)),
      `store: ${cluster.store.shards} shard(s), chunks of ${cluster.store.chunk_size_bytes} bytes; ${stats.keys} keys, ${stats.versions} versions, ${stats.chunks} chunks (${stats.chunk_bytes} bytes)`,
      'stability frontier (reads at or before these times are answered at once)',
      ...stats.frontier.map((f) => `  shard ${f.shard}: version ${f.version}, ${f.timestamp === 0n ? 'no update yet' : formatHlc(f.timestamp)}`),
    ];
    c.out.write(`${lines.join('\n')}\n`);
  });
}

// ---- put / get -------------------------------------------------------------------------------

/** Counts bytes through, feeding a progress bar (when there is one) and a sha256. */
function meter(total: number | null, label: string, hash: ReturnType<typeof createHash> | null): Transform {
  const bar = total !== null && total >= PROGRESS_MIN_BYTES && process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | {speed} MB/s | ETA {eta}s`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  const MiB = 1024 * 1024;
  const started = Date.now();
  let done = 0;
  bar?.start(Math.ceil(total! / MiB), 0, { speed: '0' });
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      hash?.update(chunk);
      bar?.update(Math.floor(done / MiB), { speed: (done / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1) });
      cb(null, chunk);
    },
    flush(cb) {
      bar?.update(Math.ceil(done / MiB));
      bar?.stop();
      cb();
    },
  });
}

function describe(v: BlobVersion): string {
  return JSON.stringify({ key: v.key, version: v.version.toString(), timestamp: formatHlc(v.timestamp), size: v.size, sha256: v.sha256 });
}

export async function runPut(c: { cfg: TempestConfig; connect: string; key: string; file: string; contentType: string | undefined; out: Writable }): Promise<void> {
  const key = checkedKey(c.key);
  let size: number | null = null;
  let source: Readable;
  if (c.file === '-') source = process.stdin;
  else {
    try {
      const st = statSync(c.file);
      if (!st.isFile()) throw new TempestError('ERR_CLI_USAGE', `${c.file} is not a regular file`);
      size = st.size;
    } catch (err) {
      if (err instanceof TempestError) throw err;
      throw new TempestError('ERR_CLI_USAGE', `cannot read ${c.file}: ${(err as Error).message}`);
    }
    source = createReadStream(c.file);
  }
  await withStore(c.cfg, c.connect, async (store) => {
    const body = source.pipe(meter(size, `put ${key}`, null));
    source.once('error', (err) => body.destroy(err));
    const v = await store.put(key, body, { max_size: c.cfg.HTTP.max_blob_size, ...(size !== null ? { expected_size: size } : {}), ...(c.contentType !== undefined ? { content_type: c.contentType } : {}) });
    c.out.write(`${describe(v)}\n`);
  });
}

export async function runGet(c: { cfg: TempestConfig; connect: string; key: string; at: string | undefined; version: string | undefined; output: string; out: Writable }): Promise<void> {
  const key = checkedKey(c.key);
  if (c.at !== undefined && c.version !== undefined) throw new TempestError('ERR_CLI_USAGE', 'give --at or --version, not both');
  let point: ReadPoint = { kind: 'current' };
  if (c.at !== undefined) point = { kind: 'at', at: checkedTime(c.at) };
  if (c.version !== undefined) {
    if (!/^\d{1,20}$/.test(c.version)) throw new TempestError('ERR_CLI_USAGE', `--version ${JSON.stringify(c.version)} is not a version number (see x-tempest-version or \`tempest put\`'s answer)`);
    point = { kind: 'version', version: BigInt(c.version) };
  }
  await withStore(c.cfg, c.connect, async (store) => {
    const v = await store.head(key, point);
    if (v.deleted) throw new TempestError('ERR_STORE_NOT_FOUND', `${key} is deleted${point.kind === 'current' ? '' : ' at that point'} (version ${v.version})`);
    const hash = createHash('sha256');
    const toFile = c.output !== '-';
    const sink = toFile ? createWriteStream(c.output) : stdoutSink();
    try {
      await pipeline(store.read(v), meter(v.size, `get ${key}`, hash), sink);
    } catch (err) {
      // No half-written file is left behind looking like the blob.
      if (toFile) rmSync(c.output, { force: true });
      throw err;
    }
    // Where stdout carries the bytes, the description goes to stderr.
    (c.output === '-' ? process.stderr : c.out).write(`${describe(v)}\n`);
    const got = hash.digest('hex');
    if (!v.sha256.includes('-') && got !== v.sha256) {
      if (toFile) rmSync(c.output, { force: true });
      throw new TempestError('ERR_CLI_CHECKSUM', `read ${key} version ${v.version}: sha256 ${got}, expected ${v.sha256}`);
    }
  });
}

/**
 * Standard output as a pipeline's end. Not process.stdout itself: when it is a socket (a parent's
 * 'pipe' stdio, as a shell run from Node gets) it is a Duplex, and the pipeline reads it to see
 * its end, taking input meant for the commands after this one.
 */
function stdoutSink(): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (process.stdout.write(chunk)) cb();
      else process.stdout.once('drain', () => cb());
    },
  });
}

/** --at in the HTTP API's / .snapshot/<time> syntax (engine/store/time.ts); a bad one is a usage error. */
function checkedTime(at: string): ReturnType<typeof parseTime> {
  try {
    return parseTime(at);
  } catch (err) {
    throw new TempestError('ERR_CLI_USAGE', `--at: ${(err as Error).message}`);
  }
}

function checkedKey(key: string): string {
  try {
    return validateKey(key);
  } catch (err) {
    throw new TempestError('ERR_CLI_USAGE', (err as Error).message);
  }
}
