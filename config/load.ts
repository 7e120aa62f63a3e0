/**
 * Loading the configuration: schema defaults, then the INI file, then `--SECTION/key=value`
 * overrides from the command line, each validated against the schema. The first problem stops
 * start-up with one TempestError naming where the value came from, the section and the key.
 */
import { isIP, Server } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { TempestError } from '../engine/util/errors.js';
import { layerLogger, type Logger } from '../engine/util/log.js';
import { readIniFile } from './ini-file.js';
import { expectation, PORT_MAX, PORT_MIN, SCHEMA, SCHEMA_BY_NAME, type KeySpec, type TempestConfig } from './schema.js';

export interface LoadOptions {
  /** INI file to read; null or absent means schema defaults only. */
  file?: string | null;
  /** `--SECTION/key=value` tokens, applied in order after the file (the last one of a key wins). */
  overrides?: string[];
}

/** Where a setting came from, for error messages: a file path, "command line" or "defaults". */
type Origin = string;
const COMMAND_LINE: Origin = 'command line';
const DEFAULTS: Origin = 'defaults';

interface Setting {
  section: string;
  key: string;
  text: string;
  origin: Origin;
}

type Values = Record<string, Record<string, string | number | boolean>>;

// Where each key of a loaded config was set (file or command line), so assertPortsBindable can name it.
const originsOf = new WeakMap<TempestConfig, Map<string, Origin>>();

let log: Logger | undefined;

export function loadConfig(opts: LoadOptions = {}): TempestConfig {
  const values = defaults();
  const origins = new Map<string, Origin>();
  const file = opts.file ?? null;
  if (file === '') throw new TempestError('ERR_CONFIG_FILE', 'configuration file path is empty');

  const settings: Setting[] = [];
  if (file !== null) settings.push(...fileSettings(file));
  settings.push(...(opts.overrides ?? []).map(parseOverride));

  for (const s of settings) {
    const spec = lookup(s.section, s.key, s.origin);
    (values[s.section] as Record<string, unknown>)[s.key] = coerce(spec, s);
    origins.set(`${s.section}/${s.key}`, s.origin);
  }

  const cfg = { ...values, source: file === null ? null : resolvePath(file) } as unknown as TempestConfig;
  checkOrderRules(cfg, origins);
  checkPortClashes(cfg, origins);
  resolvePaths(cfg);
  originsOf.set(cfg, origins);

  log ??= layerLogger('config');
  log.debug({ source: cfg.source, overrides: opts.overrides?.length ?? 0 }, 'configuration loaded');
  return cfg;
}

/**
 * Splits a command line (without the node and script paths) at the first bare `--`: before it,
 * `--SECTION/key=value` tokens are overrides and the rest are the CLI's own arguments; after it,
 * everything belongs to the application untouched. A token shaped like `--SECTION/key` without
 * `=` still counts as an override, so that loadConfig can reject it rather than the CLI misread it.
 */
export function splitArgv(argv: string[]): { overrides: string[]; args: string[]; appArgs: string[] } {
  const end = argv.indexOf('--');
  const head = end === -1 ? argv : argv.slice(0, end);
  const overrides: string[] = [];
  const args: string[] = [];
  for (const token of head) (OVERRIDE_SHAPE_RE.test(token) ? overrides : args).push(token);
  return { overrides, args, appArgs: end === -1 ? [] : argv.slice(end + 1) };
}

/**
 * Binds and at once releases every port this member will listen on (HTTP on the HTTP host, the
 * rest on local_ip), so a clash with another process is reported before any layer starts.
 */
export async function assertPortsBindable(cfg: TempestConfig): Promise<void> {
  const origins = originsOf.get(cfg);
  // A config not made by loadConfig (a copy, a hand-built one) can only be attributed to its source.
  const originOf = (section: string, key: string) => (origins ? (origins.get(`${section}/${key}`) ?? DEFAULTS) : (cfg.source ?? DEFAULTS));
  for (const p of ownPorts(cfg)) {
    const origin = originOf(p.section, p.key);
    try {
      await bindAndRelease(p.host, p.port);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const name = `${origin}: [${p.section}] ${p.key}`;
      if (code === 'EADDRINUSE') {
        throw new TempestError('ERR_CONFIG_PORT_IN_USE', `${name}: port ${p.port} on ${p.host} is already in use`, { cause: err });
      }
      if (code === 'EACCES') {
        throw new TempestError('ERR_CONFIG_PORT_IN_USE', `${name}: port ${p.port} on ${p.host}: permission denied`, { cause: err });
      }
      if (code === 'EADDRNOTAVAIL') {
        // The port is fine; the address is not one of this host's, which is a value error of the host key.
        const [section, key] = p.section === 'HTTP' ? ['HTTP', 'host'] : ['DERECHO', 'local_ip'];
        throw new TempestError('ERR_CONFIG_RANGE', `${originOf(section, key)}: [${section}] ${key}: ${p.host} is not an address of this host`, {
          cause: err,
        });
      }
      throw err;
    }
  }
}

// ---- file and command line ----------------------------------------------------------------

function fileSettings(file: string): Setting[] {
  const parsed = readIniFile(file);
  const settings = parsed.entries.map((e) => ({ section: e.section, key: e.key, text: e.value, origin: file }));
  // A header with no keys under it is checked here; one with keys is checked with its first key.
  for (const s of parsed.sections) {
    if (s.keys === 0 && !(s.name in SCHEMA)) throw unknownSection(file, s.name, undefined);
  }
  return settings;
}

// `--NAME/...`: the shape splitArgv routes to overrides; parseOverride then checks the details.
const OVERRIDE_SHAPE_RE = /^--[^-=/][^=/]*\//;
const OVERRIDE_RE = /^--([^=/]+)\/([^=]+)=(.*)$/s;

function parseOverride(token: string): Setting {
  const m = OVERRIDE_RE.exec(token);
  if (m) return { section: m[1] ?? '', key: m[2] ?? '', text: m[3] ?? '', origin: COMMAND_LINE };
  const shape = /^--([^=/]+)\/([^=]*)/.exec(token);
  const name = shape?.[2] ? `[${shape[1]}] ${shape[2]}: ` : '';
  const wanted = shape?.[2] ? `--${shape[1]}/${shape[2]}=value` : '--SECTION/key=value';
  throw new TempestError('ERR_CONFIG_SYNTAX', `${COMMAND_LINE}: ${name}expected ${wanted}, got ${JSON.stringify(token)}`);
}

// ---- schema lookup and values -------------------------------------------------------------

function defaults(): Values {
  const values: Values = {};
  for (const [section, keys] of Object.entries(SCHEMA_BY_NAME)) {
    values[section] = Object.fromEntries(Object.entries(keys).map(([key, spec]) => [key, spec.default]));
  }
  return values;
}

function lookup(section: string, key: string, origin: Origin): KeySpec {
  const keys = SCHEMA_BY_NAME[section];
  if (!keys) throw unknownSection(origin, section, key);
  const spec = keys[key];
  if (spec) return spec;

  let hint = closest(key, Object.keys(keys));
  if (hint !== undefined) {
    hint = ` did you mean "${hint}"?`;
  } else {
    const other = Object.keys(SCHEMA_BY_NAME).find((s) => SCHEMA_BY_NAME[s]?.[key] !== undefined);
    hint = other ? ` "${key}" is a key of [${other}].` : ' config/tempest.ini lists every key.';
  }
  throw new TempestError('ERR_CONFIG_UNKNOWN_KEY', `${origin}: [${section}] ${key}: unknown key;${hint}`);
}

function unknownSection(origin: Origin, section: string, key: string | undefined): TempestError {
  const sections = Object.keys(SCHEMA);
  const guess = closest(section, sections);
  const hint = guess !== undefined ? `did you mean "${guess}"?` : `sections are ${sections.join(', ')}`;
  const name = key === undefined ? `[${section}]` : `[${section}] ${key}`;
  return new TempestError('ERR_CONFIG_UNKNOWN_SECTION', `${origin}: ${name}: unknown section "${section}"; ${hint}`);
}

const UINT_RE = /^(0|[1-9][0-9]*)$/;

function coerce(spec: KeySpec, s: Setting): string | number | boolean {
  const { text } = s;
  const fail = (code: string) =>
    new TempestError(code, `${s.origin}: [${s.section}] ${s.key}: expected ${expectation(spec)}, got ${JSON.stringify(text)}`);

  switch (spec.type) {
    case 'string':
      if (text === '') throw fail('ERR_CONFIG_TYPE');
      return text;
    case 'ip':
      if (isIP(text) === 0) throw fail('ERR_CONFIG_TYPE');
      return text;
    case 'bool': {
      const lower = text.toLowerCase();
      if (lower !== 'true' && lower !== 'false') throw fail('ERR_CONFIG_TYPE');
      return lower === 'true';
    }
    case 'enum':
      if (!spec.values.includes(text)) throw fail('ERR_CONFIG_TYPE');
      return text;
    case 'port':
    case 'uint':
    case 'bytes': {
      if (!UINT_RE.test(text)) throw fail('ERR_CONFIG_TYPE');
      const n = Number(text);
      const [min, max] = spec.type === 'port' ? [PORT_MIN, PORT_MAX] : [spec.min, spec.max];
      if (n < min || n > max) {
        throw new TempestError('ERR_CONFIG_RANGE', `${s.origin}: [${s.section}] ${s.key}: expected ${expectation(spec)}, got ${text}`);
      }
      return n;
    }
  }
}

// ---- rules across keys --------------------------------------------------------------------

interface OrderRule {
  section: 'DERECHO';
  smaller: 'max_smc_payload_size' | 'heartbeat_ms';
  larger: 'max_payload_size' | 'timeout_ms';
  strict: boolean;
}

const ORDER_RULES: readonly OrderRule[] = [
  // SMC carries the small messages of the same multicast, so its limit cannot exceed the overall one.
  { section: 'DERECHO', smaller: 'max_smc_payload_size', larger: 'max_payload_size', strict: false },
  // A heartbeat no more frequent than the timeout would get healthy members suspected.
  { section: 'DERECHO', smaller: 'heartbeat_ms', larger: 'timeout_ms', strict: true },
];

const ORIGIN_RANK = (o: Origin | undefined): number => (o === undefined || o === DEFAULTS ? 0 : o === COMMAND_LINE ? 2 : 1);

function checkOrderRules(cfg: TempestConfig, origins: Map<string, Origin>): void {
  for (const r of ORDER_RULES) {
    const small = cfg[r.section][r.smaller];
    const large = cfg[r.section][r.larger];
    if (r.strict ? small < large : small <= large) continue;

    // Blame the key set last (command line over file over defaults); the other one is context.
    const smallOrigin = origins.get(`${r.section}/${r.smaller}`) ?? DEFAULTS;
    const largeOrigin = origins.get(`${r.section}/${r.larger}`) ?? DEFAULTS;
    const blameLarger = ORIGIN_RANK(largeOrigin) > ORIGIN_RANK(smallOrigin);
    const message = blameLarger
      ? `${largeOrigin}: [${r.section}] ${r.larger}: expected ${r.strict ? 'more than' : 'at least'} [${r.section}] ${r.smaller} (${small}), got ${large}`
      : `${smallOrigin}: [${r.section}] ${r.smaller}: expected ${r.strict ? 'less than' : 'at most'} [${r.section}] ${r.larger} (${large}), got ${small}`;
    throw new TempestError('ERR_CONFIG_RANGE', message);
  }
}

interface OwnPort {
  section: 'DERECHO' | 'HTTP';
  key: string;
  host: string;
  port: number;
}

/** The ports this member listens on; the leader's ports belong to another member (or are the same). */
function ownPorts(cfg: TempestConfig): OwnPort[] {
  const d = cfg.DERECHO;
  const ports: OwnPort[] = (['gms_port', 'state_transfer_port', 'sst_port', 'rdmc_port', 'external_port'] as const).map((key) => ({
    section: 'DERECHO',
    key,
    host: d.local_ip,
    port: d[key],
  }));
  if (cfg.HTTP.enabled) ports.push({ section: 'HTTP', key: 'port', host: cfg.HTTP.host, port: cfg.HTTP.port });
  return ports;
}

function checkPortClashes(cfg: TempestConfig, origins: Map<string, Origin>): void {
  const ports = ownPorts(cfg);
  ports.forEach((b, j) => {
    const a = ports.slice(0, j).find((p) => p.port === b.port);
    if (!a) return;
    const originOf = (p: OwnPort) => origins.get(`${p.section}/${p.key}`) ?? DEFAULTS;
    const [blamed, other] = ORIGIN_RANK(originOf(a)) > ORIGIN_RANK(originOf(b)) ? [a, b] : [b, a];
    throw new TempestError(
      'ERR_CONFIG_PORT_CLASH',
      `${originOf(blamed)}: [${blamed.section}] ${blamed.key}: port ${blamed.port} is also [${other.section}] ${other.key}; ` +
        `each of this member's ports must differ`,
    );
  });
}

// ---- paths and ports ----------------------------------------------------------------------

function resolvePaths(cfg: TempestConfig): void {
  const values = cfg as unknown as Values;
  // data_dir first: file_path is resolved against it.
  for (const base of ['cwd', 'data_dir'] as const) {
    const from = base === 'cwd' ? process.cwd() : cfg.DERECHO.data_dir;
    for (const [section, keys] of Object.entries(SCHEMA_BY_NAME)) {
      for (const [key, spec] of Object.entries(keys)) {
        if (spec.type !== 'string' || spec.resolve !== base) continue;
        const sectionValues = values[section] as Record<string, string>;
        sectionValues[key] = resolvePath(from, sectionValues[key] as string);
      }
    }
  }
}

function bindAndRelease(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = new Server();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

// ---- suggestions --------------------------------------------------------------------------

const MAX_SUGGESTION_DISTANCE = 2;

/** The candidate nearest to `name` within edit distance 2 (case-insensitive), if any. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** Optimal-string-alignment distance: Levenshtein plus adjacent transpositions ("prot" -> "port" is 1). */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number) => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}
