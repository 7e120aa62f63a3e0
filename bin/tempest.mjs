#!/usr/bin/env node
// The `tempest` command. In a fresh clone (nothing compiled yet) it first runs the one-command
// set-up, so `npx tempest ...` works before `npm start` or `npm test` ever ran.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const mainJs = new URL('../dist/cli/main.js', import.meta.url);

if (!existsSync(mainJs)) {
  const setup = fileURLToPath(new URL('../scripts/setup.mjs', import.meta.url));
  const result = spawnSync(process.execPath, [setup], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: 'inherit',
  });
  if (result.error) {
    process.stderr.write(`tempest: could not run ${setup}: ${result.error.message}\n`);
    process.exit(1);
  }
  if (result.status !== 0) process.exit(result.status ?? 1);
  if (!existsSync(mainJs)) {
    process.stderr.write(`tempest: set-up finished but ${fileURLToPath(mainJs)} is still missing\n`);
    process.exit(1);
  }
}

const { main } = await import(mainJs.href);
await main(process.argv.slice(2));
