/**
 * The README's reference parts hold what the code does: every configuration key with its real
 * default, every `npm run` script it names exists, and every `tempest` command it lists answers
 * `--help`. (The tour itself is run by readme-tour.test.ts.)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { SCHEMA } from '../config/index.js';
import { BIN, README } from './helpers/local-up.js';

const readme = readFileSync(README, 'utf8');
const pkg = JSON.parse(readFileSync(path.join(path.dirname(README), 'package.json'), 'utf8')) as { scripts: Record<string, string> };

test('the configuration reference lists every key of config/schema.ts with its default, and no key that does not exist', (t) => {
  const listed = new Map<string, string>();
  for (const m of readme.matchAll(/^\| `\[([A-Z]+)\] ([a-z0-9_]+)` \| `([^`]*)` \|/gm)) listed.set(`${m[1]}/${m[2]}`, m[3]!);
  let keys = 0;
  for (const [section, specs] of Object.entries(SCHEMA)) {
    for (const [key, spec] of Object.entries(specs)) {
      keys += 1;
      t.is(listed.get(`${section}/${key}`), String(spec.default), `[${section}] ${key} is listed with default ${String(spec.default)}`);
    }
  }
  t.is(listed.size, keys, `the README lists ${listed.size} keys, the schema has ${keys}`);
});

test('every `npm run <script>` the README names is a script of package.json', (t) => {
  const named = new Set([...readme.matchAll(/npm run ([a-z][a-z0-9:-]*)/g)].map((m) => m[1]!));
  t.true(named.size >= 5, `found ${named.size} scripts`);
  for (const s of named) t.truthy(pkg.scripts[s], `npm run ${s}`);
});

test('every `tempest <command>` of the README answers --help with its usage', (t) => {
  const commands = new Set([...readme.matchAll(/^tempest ([a-z]+)/gm)].map((m) => m[1]!));
  t.true(commands.has('node') && commands.has('up') && commands.has('mount'), [...commands].join(', '));
  for (const c of commands) {
    const r = spawnSync(process.execPath, [BIN, c, '--help'], { encoding: 'utf8', timeout: 20_000 });
    t.is(r.status, 0, `tempest ${c} --help: ${r.stderr}`);
    t.regex(r.stdout, new RegExp(`Usage: tempest ${c}`), `tempest ${c} --help prints its usage`);
  }
});
