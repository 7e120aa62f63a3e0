#!/usr/bin/env node
/**
 * One-command set-up, run before `npm start`, `npm test` and the benchmarks (and by
 * bin/tempest.mjs in a fresh clone). Plain Node ESM with no npm dependencies: it runs before
 * node_modules exists.
 *
 *   a. system packages: libfabric (header + library), libfuse 2, fusermount, a C compiler, make
 *   b. npm packages: `npm ci` when node_modules is missing or package-lock.json changed
 *   c. native shim: `make -C native` when make says it is out of date; fuse-native's addon rebuilt
 *      with one fix (its utimens passes the access time as the modification time too)
 *   d. TypeScript: `tsc -p .` (incremental) when a source file or the compiler setup changed
 *
 * Every step is skipped quickly when already done, and then nothing is printed. Progress lines
 * and the output of the tools it runs go to stderr, so stdout stays clean for the command that
 * follows. Exits non-zero with one clear message on failure.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE_MODULES = path.join(ROOT, 'node_modules');
const LOCK_FILE = path.join(ROOT, 'package-lock.json');
const LOCK_STAMP = path.join(NODE_MODULES, '.tempest-lock-sha256');
const DIST = path.join(ROOT, 'dist');
const TSC_STAMP = path.join(DIST, '.tempest-tsc-stamp');
const TSBUILDINFO = path.join(DIST, '.tsbuildinfo');
const TSC = path.join(NODE_MODULES, 'typescript', 'bin', 'tsc');

/** Children write to our stderr: stdout belongs to the command that runs after set-up. */
const CHILD_STDIO = ['ignore', 2, 2];

class SetupError extends Error {}

function progress(message) {
  process.stderr.write(`tempest setup: ${message}\n`);
}

function fail(message) {
  throw new SetupError(message);
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

function readIfExists(file) {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

function run(command, args, what, options = {}) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: CHILD_STDIO, ...options });
  if (result.error) fail(`${what} could not start: ${result.error.message}.`);
  if (result.status !== 0) {
    const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.status}`;
    fail(`${what} ${how}; see its output above.`);
  }
}

// ---------------------------------------------------------------------------------------------
// a. System packages

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, command), fs.constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

const LIB_DIRS = (() => {
  const triplet = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', ia32: 'i386-linux-gnu', arm: 'arm-linux-gnueabihf' }[
    process.arch
  ];
  const dirs = [];
  for (const base of ['/lib', '/usr/lib', '/usr/local/lib']) {
    if (triplet) dirs.push(`${base}/${triplet}`);
    dirs.push(base);
  }
  dirs.push('/lib64', '/usr/lib64');
  return dirs;
})();

let ldCache;
/** A shared library the dynamic loader can find: the usual directories, else ld.so.cache. */
function hasSharedLibrary(soname) {
  if (LIB_DIRS.some((dir) => fs.existsSync(path.join(dir, soname)))) return true;
  ldCache ??= readIfExists('/etc/ld.so.cache') ?? Buffer.alloc(0);
  return ldCache.includes(`${soname}\0`);
}

/** What Tempest needs from the system: how to tell it is there, and the Debian package with it. */
const SYSTEM_NEEDS = [
  { what: 'libfabric headers', pkg: 'libfabric-dev', present: () => fs.existsSync('/usr/include/rdma/fabric.h') },
  { what: 'libfabric.so.1', pkg: 'libfabric1', present: () => hasSharedLibrary('libfabric.so.1') },
  { what: 'libfuse.so.2', pkg: 'libfuse2', present: () => hasSharedLibrary('libfuse.so.2') },
  { what: 'fusermount', pkg: 'fuse', present: () => onPath('fusermount') },
  { what: 'a C compiler (cc)', pkg: 'gcc', present: () => onPath('cc') },
  { what: 'C library headers', pkg: 'libc6-dev', present: () => fs.existsSync('/usr/include/stdio.h') },
  { what: 'make', pkg: 'make', present: () => onPath('make') },
  // The file-system tests copy trees into the mount with rsync -a, as users do.
  { what: 'rsync', pkg: 'rsync', present: () => onPath('rsync') },
];

function missingSystemNeeds() {
  return SYSTEM_NEEDS.filter((need) => !need.present());
}

function missingSystemPackages() {
  return [...new Set(missingSystemNeeds().map((need) => need.pkg))];
}

function ensureSystemPackages() {
  const missing = missingSystemPackages();
  if (missing.length === 0) return;
  const list = missing.join(' ');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!onPath('apt-get')) {
    const what = missingSystemNeeds().map((need) => need.what).join(', ');
    fail(`Tempest needs ${what} (Debian packages: ${list}): install them or your system's equivalents and try again.`);
  }
  if (!isRoot) {
    fail(`Tempest needs ${list}: run "sudo apt-get install -y ${list}" and try again.`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  progress('updating the apt package lists (apt-get update) ...');
  run('apt-get', ['update'], 'apt-get update', { env });
  progress(`installing ${list} ...`);
  run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], `apt-get install ${list}`, { env });
  const still = missingSystemPackages();
  if (still.length > 0) {
    const names = still.join(' ');
    fail(`${names} still missing after apt-get install (installed but files removed?): run "apt-get install -y --reinstall ${names}" and try again.`);
  }
}

// ---------------------------------------------------------------------------------------------
// b. npm packages

/**
 * node_modules was installed without our stamp (by hand, or before this script existed): trust
 * it when npm's own record of it (node_modules/.package-lock.json) agrees with package-lock.json
 * on every package, rather than wiping it with `npm ci`.
 */
function installedTreeMatchesLock(lockText) {
  try {
    const want = JSON.parse(lockText).packages;
    const have = JSON.parse(fs.readFileSync(path.join(NODE_MODULES, '.package-lock.json'), 'utf8')).packages;
    if (!want || !have) return false;
    for (const [key, entry] of Object.entries(want)) {
      if (key === '') continue;
      const got = have[key];
      if (!got) {
        if (entry.optional) continue; // an optional dependency for another platform
        return false;
      }
      if (got.version !== entry.version || got.integrity !== entry.integrity || got.resolved !== entry.resolved) return false;
      if (!got.link && !fs.existsSync(path.join(ROOT, key, 'package.json'))) return false;
    }
    for (const key of Object.keys(have)) if (!(key in want)) return false;
    return true;
  } catch {
    return false;
  }
}

function ensureNpmPackages() {
  const lock = readIfExists(LOCK_FILE);
  const haveModules = fs.existsSync(NODE_MODULES);
  if (lock && haveModules) {
    const stamp = readIfExists(LOCK_STAMP)?.toString('utf8').trim();
    const hash = sha256(lock);
    if (stamp === hash) return;
    if (stamp === undefined && installedTreeMatchesLock(lock.toString('utf8'))) {
      fs.writeFileSync(LOCK_STAMP, `${hash}\n`);
      return;
    }
  }
  const why = !haveModules ? 'node_modules is missing' : lock ? 'package-lock.json changed' : 'there is no package-lock.json';
  const env = { ...process.env };
  if (lock) {
    progress(`installing npm packages (npm ci), because ${why} ...`);
    run('npm', ['ci', '--no-audit', '--no-fund'], 'npm ci', { env });
  } else {
    progress(`installing npm packages (npm install), because ${why} ...`);
    run('npm', ['install', '--no-audit', '--no-fund'], 'npm install', { env });
  }
  const after = readIfExists(LOCK_FILE);
  if (after) fs.writeFileSync(LOCK_STAMP, `${sha256(after)}\n`);
}

// ---------------------------------------------------------------------------------------------
// c. Native shim

function ensureNative() {
  const nativeDir = path.join(ROOT, 'native');
  if (!fs.existsSync(path.join(nativeDir, 'Makefile'))) return; // not written yet
  // `make -q`: exit 0 when everything is up to date, 1 when something must be rebuilt.
  const q = spawnSync('make', ['-q', '-C', nativeDir], { cwd: ROOT, stdio: 'ignore' });
  if (q.error) fail(`make could not start: ${q.error.message}.`);
  if (q.status === 0) return;
  progress('building the native libfabric shim (make -C native) ...');
  run('make', ['-C', nativeDir], 'make -C native');
}

/**
 * fuse-native 2.2.6 gets utimens wrong, so tar, rsync and `touch -m` would record wrong
 * modification times, and it can only mount from the main thread. Its addon is rebuilt from its
 * own source with these fixes, where
 * node-gyp-build looks first (build/Release); a stamp of the patched source skips the rebuild:
 *   - it passes the access time as the modification time too (argv 5 is l->atime);
 *   - it does not set libfuse 2's flag_utime_omit_ok, so a change of one time only (atime
 *     UTIME_OMIT, as `touch -m` and tar send) is silently dropped by libfuse;
 *   - it turns UTIME_NOW and UTIME_OMIT into ~1073 ms; they become 1 and 0 (fs/tempest-fs.ts);
 *   - it posts every request to uv_default_loop(), the main thread's: a mount made in a worker
 *     thread crashed the process; requests now go to the loop of the thread that mounted.
 */
const FUSE_NATIVE_FIXES = [
  ['FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ['  if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;', '  if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;\n  ops.flag_utime_omit_ok = 1;'],
  ['static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n', 'static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n  if (ts->tv_nsec == UTIME_OMIT) return 0;\n  if (ts->tv_nsec == UTIME_NOW) return 1;\n'],
  // The mount's requests go to the event loop of the thread that mounted (a member mounts in a
  // worker thread, fs/mount-thread.ts), not always to the main thread's.
  ['int err = uv_async_init(uv_default_loop(), &(l->async)', 'int err = uv_async_init(handle->loop, &(l->async)'],
  ['  int err = uv_async_init(uv_default_loop(), &(ft->async)', '  uv_loop_t *loop = NULL;\n  napi_get_uv_event_loop(env, &loop);\n  int err = uv_async_init(loop, &(ft->async)'],
];

function ensureFuseAddon() {
  const pkg = path.join(NODE_MODULES, 'fuse-native');
  const source = readIfExists(path.join(pkg, 'fuse-native.c'));
  if (!source) return; // not installed (yet)
  let patched = source.toString('utf8');
  for (const [from, to] of FUSE_NATIVE_FIXES) {
    if (!patched.includes(from)) fail(`node_modules/fuse-native/fuse-native.c is not the 2.2.6 source our fixes were written for ("${from.trim()}" is missing): pin fuse-native to 2.2.6 in package.json.`);
    patched = patched.replace(from, to);
  }
  const release = path.join(pkg, 'build', 'Release');
  const stampFile = path.join(release, '.tempest-patch-sha256');
  const stamp = sha256(patched);
  if (readIfExists(stampFile)?.toString('utf8').trim() === stamp && fs.existsSync(path.join(release, 'fuse.node'))) return;
  progress('building fuse-native with our fixes (utimens, worker-thread loop; node-gyp) ...');
  // Built beside it inside node_modules, so the binding's require('napi-macros') resolves.
  const work = path.join(NODE_MODULES, '.tempest-fuse-native');
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  for (const f of ['binding.gyp', 'package.json']) fs.copyFileSync(path.join(pkg, f), path.join(work, f));
  fs.writeFileSync(path.join(work, 'fuse-native.c'), patched);
  const npmGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const gyp = process.env.npm_config_node_gyp ?? npmGyp;
  if (!fs.existsSync(gyp)) fail(`node-gyp (npm's, at ${gyp}) is missing: it builds fuse-native's addon. Reinstall npm, or set npm_config_node_gyp to a node-gyp.js.`);
  // Node's own headers, where the distribution installed them (no download: the network is closed).
  const nodeDir = path.resolve(path.dirname(process.execPath), '..');
  const args = [gyp, 'rebuild', '--loglevel=warn'];
  if (fs.existsSync(path.join(nodeDir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodeDir}`);
  run(process.execPath, args, 'node-gyp rebuild of fuse-native', { cwd: work });
  fs.mkdirSync(release, { recursive: true });
  // A new file renamed over the old one: processes that loaded the old addon keep their mapping of it.
  fs.copyFileSync(path.join(work, 'build', 'Release', 'fuse.node'), path.join(release, 'fuse.node.tmp'));
  fs.renameSync(path.join(release, 'fuse.node.tmp'), path.join(release, 'fuse.node'));
  fs.writeFileSync(stampFile, `${stamp}\n`);
  fs.rmSync(work, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// d. TypeScript

const TS_EXTENSIONS = /\.(ts|mts|cts|tsx)$/;

/**
 * A fingerprint of everything the compile depends on: tsconfig.json, the installed packages
 * (through the lock hash) and each source file's path, size and mtime; plus the .js files the
 * compile should have produced. Undefined when the tsconfig is not simple enough to list its
 * inputs here; then tsc always runs.
 */
function sourceFingerprint() {
  const tsconfigText = readIfExists(path.join(ROOT, 'tsconfig.json'));
  if (!tsconfigText) return undefined;
  let tsconfig;
  try {
    tsconfig = JSON.parse(tsconfigText.toString('utf8'));
  } catch {
    return undefined; // comments or trailing commas: let tsc decide
  }
  if (tsconfig.extends || tsconfig.files || tsconfig.references || !Array.isArray(tsconfig.include)) return undefined;
  const roots = new Set();
  for (const pattern of tsconfig.include) {
    const m = /^([A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*)\/\*\*\/\*(\.ts)?$/.exec(pattern);
    if (!m || m[1].split('/').includes('..')) return undefined;
    roots.add(m[1]);
  }
  const outDir = typeof tsconfig.compilerOptions?.outDir === 'string' ? path.resolve(ROOT, tsconfig.compilerOptions.outDir) : undefined;
  const rootDir = path.resolve(ROOT, tsconfig.compilerOptions?.rootDir ?? '.');
  const outputs = [];
  const hash = createHash('sha256');
  hash.update(tsconfigText);
  hash.update(readIfExists(LOCK_STAMP) ?? 'no-lock-stamp');
  const walk = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      if (err.code === 'ENOENT') return;
      throw err;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(full);
      } else if (TS_EXTENSIONS.test(entry.name)) {
        const st = fs.statSync(full);
        hash.update(`${path.relative(ROOT, full)}\0${st.size}\0${st.mtimeMs}\n`);
        if (outDir && /\.ts$/.test(entry.name) && !/\.d\.ts$/.test(entry.name)) {
          outputs.push(path.join(outDir, path.relative(rootDir, full)).replace(/\.ts$/, '.js'));
        }
      }
    }
  };
  for (const dir of [...roots].sort()) walk(path.join(ROOT, dir));
  return { fingerprint: hash.digest('hex'), outputs };
}

function ensureTypeScript() {
  if (!fs.existsSync(TSC)) fail(`${path.relative(ROOT, TSC)} is missing: delete node_modules and run "npm run setup" again.`);
  const sources = sourceFingerprint();
  const fingerprint = sources?.fingerprint;
  const stamp = readIfExists(TSC_STAMP)?.toString('utf8').trim();
  const outputsMissing = sources !== undefined && sources.outputs.some((file) => !fs.existsSync(file));
  if (fingerprint !== undefined && stamp === fingerprint && !outputsMissing && fs.existsSync(TSBUILDINFO)) return;
  // An incremental tsc does not re-emit outputs deleted by hand: start it from scratch then.
  if (outputsMissing) fs.rmSync(TSBUILDINFO, { force: true });
  progress('compiling TypeScript (tsc -p .) ...');
  const result = spawnSync(process.execPath, [TSC, '-p', '.', '--pretty', String(Boolean(process.stderr.isTTY))], {
    cwd: ROOT,
    stdio: CHILD_STDIO,
  });
  if (result.error) fail(`tsc could not start: ${result.error.message}.`);
  if (result.status !== 0) {
    try {
      fs.rmSync(TSC_STAMP, { force: true });
    } catch {
      // nothing to remove
    }
    fail('TypeScript compile errors (listed above); fix them and run again.');
  }
  // The fingerprint was taken before compiling, so an edit made during the compile is seen next time.
  if (fingerprint !== undefined) fs.writeFileSync(TSC_STAMP, `${fingerprint}\n`);
}

// ---------------------------------------------------------------------------------------------
// One set-up at a time per checkout (two `npm test` started together must not both run npm ci).

const LOCK_PATH = path.join(os.tmpdir(), `tempest-setup-${sha256(ROOT).slice(0, 16)}.lock`);

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function acquireLock() {
  const deadline = Date.now() + 15 * 60_000;
  let told = false;
  for (;;) {
    try {
      const fd = fs.openSync(LOCK_PATH, 'wx');
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt(readIfExists(LOCK_PATH)?.toString('utf8') ?? '', 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !pidAlive(owner)) {
      fs.rmSync(LOCK_PATH, { force: true }); // left by a set-up that died
      continue;
    }
    if (Date.now() > deadline) fail(`another set-up has held ${LOCK_PATH} for 15 minutes; remove it if no set-up is running.`);
    if (!told) {
      progress(`waiting for another set-up (pid ${owner || '?'}) to finish ...`);
      told = true;
    }
    sleep(200);
  }
}

function releaseLock() {
  try {
    if (readIfExists(LOCK_PATH)?.toString('utf8') === String(process.pid)) fs.rmSync(LOCK_PATH, { force: true });
  } catch {
    // best effort
  }
}

// ---------------------------------------------------------------------------------------------

function setup() {
  acquireLock();
  try {
    ensureSystemPackages();
    ensureNpmPackages();
    ensureNative();
    ensureFuseAddon();
    ensureTypeScript();
  } finally {
    releaseLock();
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    releaseLock();
    process.exit(128 + (os.constants.signals[signal] ?? 1));
  });
}

try {
  setup();
} catch (err) {
  if (err instanceof SetupError) {
    process.stderr.write(`tempest setup: ${err.message}\n`);
  } else {
    process.stderr.write(`tempest setup failed: ${err?.stack ?? err}\n`);
  }
  process.exitCode = 1;
}
