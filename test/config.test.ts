import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ini from 'ini';
import { assertPortsBindable, loadConfig, SCHEMA, splitArgv, type TempestConfig } from '../config/index.js';
import { TempestError } from '../engine/util/errors.js';

// Compiled to dist/test/, so the repository (and its config/ INI files) is two levels up.
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG_DIR = path.join(REPO_ROOT, 'config');
const NODE_FILES = [0, 1, 2].map((i) => path.join(CONFIG_DIR, 'local', `node${i}.ini`));

/** A fresh directory under the OS temp dir, removed when the test ends. */
function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tempest-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeIni(t: ExecutionContext, text: string): string {
  const file = path.join(tempDir(t), 'test.ini');
  writeFileSync(file, text);
  return file;
}

/** Asserts `fn` throws a TempestError with `code` whose message contains every one of `parts`. */
function throwsConfig(t: ExecutionContext, fn: () => unknown, code: string, parts: string[]): TempestError {
  const err = t.throws(fn, { instanceOf: TempestError });
  t.is(err?.code, code, err?.message);
  for (const part of parts) t.true(err?.message.includes(part), `message ${JSON.stringify(err?.message)} lacks ${JSON.stringify(part)}`);
  return err as TempestError;
}

/** The own ports of a loaded config, as (key, port) pairs. */
function ownPorts(cfg: TempestConfig): [string, number][] {
  const d = cfg.DERECHO;
  return [
    ['gms_port', d.gms_port],
    ['state_transfer_port', d.state_transfer_port],
    ['sst_port', d.sst_port],
    ['rdmc_port', d.rdmc_port],
    ['external_port', d.external_port],
    ['HTTP port', cfg.HTTP.port],
  ];
}

function listen(port: number, host = '127.0.0.1'): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host }, () => resolve(server));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Ports the OS reports free right now on 127.0.0.1 (bound to port 0, then released). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listen(0)));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map(closeServer));
  return ports;
}

function portOverrides(ports: number[]): string[] {
  const keys = ['gms_port', 'state_transfer_port', 'sst_port', 'rdmc_port', 'external_port', 'HTTP/port'];
  return keys.map((k, i) => `--${k.includes('/') ? k : `DERECHO/${k}`}=${ports[i]}`);
}

// ---- defaults and types ----------------------------------------------------------------

test('no file: schema defaults, paths made absolute, source null', (t) => {
  const cfg = loadConfig({});
  t.is(cfg.source, null);
  t.is(cfg.DERECHO.leader_ip, '127.0.0.1');
  t.is(cfg.DERECHO.gms_port, 23580);
  t.is(cfg.DERECHO.max_payload_size, 33554432);
  t.is(cfg.DERECHO.rdmc_send_algorithm, 'binomial_send');
  t.is(cfg.DERECHO.disable_partitioning_safety, false);
  t.is(cfg.RDMA.provider, 'tcp');
  t.is(cfg.HTTP.max_blob_size, 5368709120);
  t.is(cfg.FUSE.timeout_ms, 30000);
  t.is(cfg.DERECHO.data_dir, path.resolve(process.cwd(), 'data/node0'));
  t.is(cfg.PERS.file_path, path.resolve(process.cwd(), 'data/node0', '.plog'));
  t.is(cfg.PERS.ramdisk_path, '/dev/shm/tempest');
  t.is(cfg.FUSE.mountpoint, path.resolve(process.cwd(), 'mnt'));
});

test('every type parses from a file: string, ip, port, uint, bytes, bool, enum', (t) => {
  const file = writeIni(
    t,
    [
      '; comment',
      '# another comment',
      '[DERECHO]',
      'leader_ip = ::1',
      'local_ip=10.1.2.3',
      'gms_port = 65535 ; inline comment',
      'local_id = 1023',
      'max_payload_size = 2147483648',
      'max_smc_payload_size = 1',
      'disable_partitioning_safety = TRUE',
      'rdmc_send_algorithm = chain_send',
      'data_dir = "/srv/tempest data"',
      '',
      '[RDMA]',
      'domain = eth0',
      '[HTTP]',
      'enabled = False',
      'max_blob_size = 1099511627776',
      '[PERS]',
      'reset = true',
    ].join('\r\n'), // CRLF: files edited on Windows load the same
  );
  const cfg = loadConfig({ file });
  t.is(cfg.DERECHO.leader_ip, '::1');
  t.is(cfg.DERECHO.local_ip, '10.1.2.3');
  t.is(cfg.DERECHO.gms_port, 65535);
  t.is(cfg.DERECHO.local_id, 1023);
  t.is(cfg.DERECHO.max_payload_size, 2147483648);
  t.is(cfg.DERECHO.max_smc_payload_size, 1);
  t.is(cfg.DERECHO.disable_partitioning_safety, true);
  t.is(cfg.DERECHO.rdmc_send_algorithm, 'chain_send');
  t.is(cfg.DERECHO.data_dir, '/srv/tempest data');
  t.is(cfg.RDMA.domain, 'eth0');
  t.is(cfg.HTTP.enabled, false);
  t.is(cfg.HTTP.max_blob_size, 1099511627776);
  t.is(cfg.PERS.reset, true);
  t.is(cfg.source, path.resolve(file));
  t.is(cfg.DERECHO.timeout_ms, 1000, 'keys the file leaves out keep their defaults');
});

test('wrong types are ERR_CONFIG_TYPE naming the expectation and the value', (t) => {
  const cases: [string, string, string][] = [
    ['DERECHO/gms_port', 'abc', 'a port 1..65535'],
    ['DERECHO/gms_port', '', 'a port 1..65535'],
    ['DERECHO/gms_port', '-1', 'a port 1..65535'],
    ['DERECHO/window_size', '1.5', 'an integer 1..65536'],
    ['DERECHO/window_size', '0x10', 'an integer 1..65536'],
    ['DERECHO/window_size', '1e3', 'an integer 1..65536'],
    ['DERECHO/window_size', '010', 'an integer 1..65536'],
    ['DERECHO/block_size', '1MiB', 'a size in bytes 4096..268435456'],
    ['PERS/reset', 'yes', 'true or false'],
    ['DERECHO/local_ip', '256.1.1.1', 'an IPv4 or IPv6 address'],
    ['HTTP/host', 'localhost', 'an IPv4 or IPv6 address'],
    ['RDMA/provider', 'infiniband', 'one of tcp, sockets, verbs'],
    ['RDMA/domain', '', 'a non-empty string'],
  ];
  for (const [name, value, expected] of cases) {
    const [section, key] = name.split('/');
    throwsConfig(t, () => loadConfig({ overrides: [`--${name}=${value}`] }), 'ERR_CONFIG_TYPE', [
      'command line',
      `[${section}] ${key}`,
      `expected ${expected}, got ${JSON.stringify(value)}`,
    ]);
  }
});

// ---- precedence and argv ---------------------------------------------------------------

test('overrides win over the file, the file over defaults; the last override of a key wins', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = 24000\nsst_port = 24001\n[HTTP]\nport = 9000\n');
  const cfg = loadConfig({
    file,
    overrides: ['--DERECHO/gms_port=25000', '--HTTP/port=9001', '--HTTP/port=9002', '--FUSE/enabled=false'],
  });
  t.is(cfg.DERECHO.gms_port, 25000);
  t.is(cfg.DERECHO.sst_port, 24001);
  t.is(cfg.HTTP.port, 9002);
  t.is(cfg.FUSE.enabled, false);
  t.is(cfg.DERECHO.rdmc_port, 31675);
});

test('overrides apply without a file too', (t) => {
  const cfg = loadConfig({ file: null, overrides: ['--DERECHO/local_id=7', '--RDMA/provider=verbs'] });
  t.is(cfg.DERECHO.local_id, 7);
  t.is(cfg.RDMA.provider, 'verbs');
  t.is(cfg.source, null);
});

test('splitArgv: overrides and args before the first --, everything after it is the app\'s', (t) => {
  t.deepEqual(
    splitArgv(['node', '--DERECHO/gms_port=1', '-c', 'x.ini', '--config=a/b.ini', '--HTTP/port=2', '--', '--DERECHO/sst_port=3', '--', 'z']),
    {
      overrides: ['--DERECHO/gms_port=1', '--HTTP/port=2'],
      args: ['node', '-c', 'x.ini', '--config=a/b.ini'],
      appArgs: ['--DERECHO/sst_port=3', '--', 'z'],
    },
  );
  t.deepEqual(splitArgv([]), { overrides: [], args: [], appArgs: [] });
  t.deepEqual(splitArgv(['up', '--']), { overrides: [], args: ['up'], appArgs: [] });
  // Malformed override tokens still go to overrides, so loadConfig can name the problem.
  t.deepEqual(splitArgv(['--DERECHO/gms_port']).overrides, ['--DERECHO/gms_port']);
});

test('paths: data_dir against the cwd, file_path against data_dir, absolute paths kept', (t) => {
  const rel = loadConfig({ overrides: ['--DERECHO/data_dir=var/n1', '--PERS/file_path=logs'] });
  t.is(rel.DERECHO.data_dir, path.join(process.cwd(), 'var/n1'));
  t.is(rel.PERS.file_path, path.join(process.cwd(), 'var/n1/logs'));

  const abs = loadConfig({ overrides: ['--DERECHO/data_dir=/srv/t', '--PERS/file_path=/var/plog', '--FUSE/mountpoint=/mnt/t'] });
  t.is(abs.DERECHO.data_dir, '/srv/t');
  t.is(abs.PERS.file_path, '/var/plog');
  t.is(abs.FUSE.mountpoint, '/mnt/t');
});

// ---- one test per error code ------------------------------------------------------------

test('ERR_CONFIG_FILE: missing file or a directory, naming the file', (t) => {
  const dir = tempDir(t);
  const missing = path.join(dir, 'nope.ini');
  throwsConfig(t, () => loadConfig({ file: missing }), 'ERR_CONFIG_FILE', [missing, 'no such file']);
  throwsConfig(t, () => loadConfig({ file: dir }), 'ERR_CONFIG_FILE', [dir, 'directory']);
});

test('ERR_CONFIG_SYNTAX: what ini would silently accept is rejected, naming file, line, section and key', (t) => {
  const cases: [string, string[]][] = [
    ['gms_port = 1\n[DERECHO]\n', ['line 1', 'gms_port', 'outside any section']],
    ['[DERECHO]\ngms_port[] = 1\n', ['line 2', '[DERECHO] gms_port[]', 'array keys']],
    ['[DERECHO]\n[DERECHO.sub]\nx = 1\n', ['line 2', '[DERECHO.sub]', 'nested sections']],
    ['[DERECHO]\ngms_port\n', ['line 2', '[DERECHO] gms_port', 'expected "key = value"']],
    ['[DERECHO]\n= 5\n', ['line 2', 'expected "key = value"']],
    ['[DERECHO\ngms_port = 1\n', ['line 1', 'expected a [SECTION] header']],
    ['[DERECHO] ; members\n', ['line 1', 'header alone on its line']],
    ['[DERECHO]\n[HTTP]\n[DERECHO]\n', ['line 3', '[DERECHO]', 'duplicate section (first at line 1)']],
    ['[DERECHO]\n"gms_port" = 1\n', ['line 2', 'malformed key']],
  ];
  for (const [text, parts] of cases) {
    const file = writeIni(t, text);
    throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_SYNTAX', [file, ...parts]);
  }
});

test('ERR_CONFIG_SYNTAX: a duplicate key names the file, section, key and both lines', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = 1000\n\nsst_port = 1001\ngms_port = 1002\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_SYNTAX', [file, '[DERECHO] gms_port', 'duplicate key', 'lines 2 and 5']);
});

test('ERR_CONFIG_SYNTAX: a malformed override names the command line, section and key', (t) => {
  throwsConfig(t, () => loadConfig({ overrides: ['--DERECHO/gms_port'] }), 'ERR_CONFIG_SYNTAX', [
    'command line',
    '[DERECHO] gms_port',
    'expected --DERECHO/gms_port=value',
  ]);
  throwsConfig(t, () => loadConfig({ overrides: ['gms_port=1'] }), 'ERR_CONFIG_SYNTAX', ['command line', '--SECTION/key=value']);
});

test('ERR_CONFIG_UNKNOWN_SECTION: in a file and on the command line, with a suggestion', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = 1000\n[DERCHO]\nsst_port = 1\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_UNKNOWN_SECTION', [file, '[DERCHO] sst_port', 'did you mean "DERECHO"?']);

  const empty = writeIni(t, '[NETWORK]\n');
  throwsConfig(t, () => loadConfig({ file: empty }), 'ERR_CONFIG_UNKNOWN_SECTION', [empty, '[NETWORK]', 'sections are DERECHO']);

  throwsConfig(t, () => loadConfig({ overrides: ['--derecho/gms_port=1'] }), 'ERR_CONFIG_UNKNOWN_SECTION', [
    'command line',
    '[derecho] gms_port',
    'did you mean "DERECHO"?',
  ]);
});

test('ERR_CONFIG_UNKNOWN_KEY: names file, section and key and suggests a near key', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_prot = 1000\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_UNKNOWN_KEY', [file, '[DERECHO] gms_prot', 'did you mean "gms_port"?']);

  throwsConfig(t, () => loadConfig({ overrides: ['--DERECHO/mountpoint=x'] }), 'ERR_CONFIG_UNKNOWN_KEY', [
    'command line',
    '[DERECHO] mountpoint',
    'is a key of [FUSE]',
  ]);
  const far = throwsConfig(t, () => loadConfig({ overrides: ['--HTTP/completely_unknown=1'] }), 'ERR_CONFIG_UNKNOWN_KEY', [
    '[HTTP] completely_unknown',
  ]);
  t.false(far.message.includes('did you mean'));
});

test('ERR_CONFIG_TYPE: names file, section, key, expectation and value', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = abc\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_TYPE', [
    `${file}: [DERECHO] gms_port: expected a port 1..65535, got "abc"`,
  ]);
  // `ini` reads a bare null as JSON null; it is still reported as the text written.
  const nullFile = writeIni(t, '[DERECHO]\nwindow_size = null\n');
  throwsConfig(t, () => loadConfig({ file: nullFile }), 'ERR_CONFIG_TYPE', [nullFile, '[DERECHO] window_size', 'got "null"']);
});

test('ERR_CONFIG_RANGE: out-of-range values name file, section, key, range and value', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = 70000\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_RANGE', [`${file}: [DERECHO] gms_port: expected a port 1..65535, got 70000`]);
  const cases: [string, string][] = [
    ['--DERECHO/gms_port=0', '[DERECHO] gms_port'],
    ['--DERECHO/local_id=1024', '[DERECHO] local_id'],
    ['--DERECHO/block_size=4095', '[DERECHO] block_size'],
    ['--DERECHO/max_payload_size=2147483649', '[DERECHO] max_payload_size'],
    ['--FUSE/timeout_ms=999', '[FUSE] timeout_ms'],
    ['--HTTP/max_blob_size=99999999999999999999', '[HTTP] max_blob_size'],
  ];
  for (const [token, name] of cases) {
    throwsConfig(t, () => loadConfig({ overrides: [token] }), 'ERR_CONFIG_RANGE', ['command line', name]);
  }
});

test('ERR_CONFIG_RANGE: cross-key rules blame the key set last', (t) => {
  throwsConfig(t, () => loadConfig({ overrides: ['--DERECHO/heartbeat_ms=1000'] }), 'ERR_CONFIG_RANGE', [
    'command line: [DERECHO] heartbeat_ms: expected less than [DERECHO] timeout_ms (1000), got 1000',
  ]);
  throwsConfig(t, () => loadConfig({ overrides: ['--DERECHO/timeout_ms=50'] }), 'ERR_CONFIG_RANGE', [
    'command line: [DERECHO] timeout_ms: expected more than [DERECHO] heartbeat_ms (100), got 50',
  ]);
  const file = writeIni(t, '[DERECHO]\nmax_smc_payload_size = 20000\n');
  throwsConfig(t, () => loadConfig({ file, overrides: ['--DERECHO/max_payload_size=10000'] }), 'ERR_CONFIG_RANGE', [
    'command line: [DERECHO] max_payload_size: expected at least [DERECHO] max_smc_payload_size (20000), got 10000',
  ]);
  const both = writeIni(t, '[DERECHO]\nmax_payload_size = 8192\nmax_smc_payload_size = 20000\n');
  throwsConfig(t, () => loadConfig({ file: both }), 'ERR_CONFIG_RANGE', [
    `${both}: [DERECHO] max_smc_payload_size: expected at most [DERECHO] max_payload_size (8192), got 20000`,
  ]);
  t.notThrows(() => loadConfig({ overrides: ['--DERECHO/max_smc_payload_size=4096', '--DERECHO/max_payload_size=4096'] }));
});

test('ERR_CONFIG_PORT_CLASH: two of this member\'s ports equal, both keys named', (t) => {
  const file = writeIni(t, '[DERECHO]\ngms_port = 24000\nsst_port = 24000\n');
  throwsConfig(t, () => loadConfig({ file }), 'ERR_CONFIG_PORT_CLASH', [file, '[DERECHO] sst_port', '[DERECHO] gms_port', '24000']);

  throwsConfig(t, () => loadConfig({ overrides: ['--HTTP/port=23580'] }), 'ERR_CONFIG_PORT_CLASH', [
    'command line',
    '[HTTP] port',
    '[DERECHO] gms_port',
  ]);
  // The HTTP port only counts when HTTP is served; the leader's ports are another member's.
  t.notThrows(() => loadConfig({ overrides: ['--HTTP/enabled=false', '--HTTP/port=23580'] }));
  t.notThrows(() => loadConfig({ overrides: ['--DERECHO/leader_gms_port=28366'] }));
});

test('ERR_CONFIG_PORT_IN_USE: a port another socket holds on 127.0.0.1 is named with its key', async (t) => {
  const ports = await freePorts(6);
  const cfg = loadConfig({ overrides: portOverrides(ports) });
  await t.notThrowsAsync(assertPortsBindable(cfg));

  const held = await listen(0);
  t.teardown(() => closeServer(held));
  const heldPort = (held.address() as { port: number }).port;

  const [a, b, c, d, e, f] = ports;
  const sstHeld = loadConfig({ overrides: portOverrides([a, b, heldPort, d, e, f] as number[]) });
  const err = await t.throwsAsync(assertPortsBindable(sstHeld), { instanceOf: TempestError });
  t.is(err?.code, 'ERR_CONFIG_PORT_IN_USE');
  t.is(err?.message, `command line: [DERECHO] sst_port: port ${heldPort} on 127.0.0.1 is already in use`);

  const httpHeld = loadConfig({ overrides: portOverrides([a, b, c, d, e, heldPort] as number[]) });
  const httpErr = await t.throwsAsync(assertPortsBindable(httpHeld), { instanceOf: TempestError });
  t.is(httpErr?.code, 'ERR_CONFIG_PORT_IN_USE');
  t.true(httpErr?.message.includes(`[HTTP] port: port ${heldPort} on 127.0.0.1`));
});

// ---- the shipped files ------------------------------------------------------------------

test('config/tempest.ini loads to exactly the defaults and lists every key of the schema', (t) => {
  const file = path.join(CONFIG_DIR, 'tempest.ini');
  const cfg = loadConfig({ file });
  t.deepEqual({ ...cfg, source: null }, loadConfig({}));

  const parsed = ini.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  for (const [section, keys] of Object.entries(SCHEMA)) {
    for (const key of Object.keys(keys)) t.true(parsed[section]?.[key] !== undefined, `[${section}] ${key} missing`);
  }
});

test('config/local/node*.ini: complete member configs with pairwise distinct ports', (t) => {
  const cfgs = NODE_FILES.map((file) => loadConfig({ file }));
  const schemaKeys = Object.values(SCHEMA).reduce((n, keys) => n + Object.keys(keys).length, 0);

  cfgs.forEach((cfg, i) => {
    const parsed = ini.parse(readFileSync(NODE_FILES[i] as string, 'utf8')) as Record<string, Record<string, unknown>>;
    const fileKeys = Object.values(parsed).reduce((n, keys) => n + Object.keys(keys).length, 0);
    t.is(fileKeys, schemaKeys, `node${i}.ini sets every key`);

    t.is(cfg.DERECHO.local_id, i);
    t.is(cfg.DERECHO.local_ip, '127.0.0.1');
    t.is(cfg.DERECHO.leader_ip, '127.0.0.1');
    t.is(cfg.DERECHO.leader_gms_port, cfgs[0]?.DERECHO.gms_port as number);
    t.is(cfg.DERECHO.leader_external_port, cfgs[0]?.DERECHO.external_port as number);
    t.is(cfg.DERECHO.data_dir, path.resolve(`data/node${i}`));
    t.is(cfg.FUSE.enabled, i === 0, 'only node0 mounts');
    t.true(cfg.HTTP.enabled);
  });
  t.is(cfgs[0]?.FUSE.mountpoint, path.resolve('mnt'));

  const all = cfgs.flatMap((cfg, i) => ownPorts(cfg).map(([key, port]) => ({ node: i, key, port })));
  const seen = new Map<number, string>();
  for (const p of all) {
    const other = seen.get(p.port);
    t.is(other, undefined, `node${p.node} ${p.key} ${p.port} already used by ${other}`);
    seen.set(p.port, `node${p.node} ${p.key}`);
  }
  t.is(seen.size, 18);
});
