/**
 * `tempest up` (what `npm start` runs): the ready 3-member layout of config/local on 127.0.0.1,
 * one `tempest node` process per member, data under ./data. Members start together; node0 starts
 * the group and the others join through it. Ctrl-C (or SIGTERM) stops every member. A member
 * killed from outside (kill -9 in the README's tour) is reported and the others go on without it,
 * as a replicated service should; `npm start` again brings the whole layout back from ./data. A
 * member that exits by itself (bad configuration, port in use) stops the others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../engine/util/log.js';

export const LOCAL_MEMBERS = 3;
/** Longest the members may take to stop after Ctrl-C before they are killed. */
const STOP_TIMEOUT_MS = 15_000;

export interface UpOptions {
  packageRoot: string;
  /** --SECTION/key=value overrides, applied to every member. */
  overrides: string[];
  log: Logger;
}

/** Runs the members until a stop signal or until one of them exits; resolves with the exit code. */
export async function runUp(opts: UpOptions): Promise<number> {
  const bin = path.join(opts.packageRoot, 'bin', 'tempest.mjs');
  const children: ChildProcess[] = [];
  let stopping = false;
  const exited: Promise<number | null>[] = [];
  for (let i = 0; i < LOCAL_MEMBERS; i++) {
    const config = path.join(opts.packageRoot, 'config', 'local', `node${i}.ini`);
    const child = spawn(process.execPath, [bin, 'node', '--config', config, ...opts.overrides], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    // Each member prints one describe line once it is in a view; show it with the member's number.
    createInterface({ input: child.stdout! }).on('line', (line) => process.stdout.write(`[node${i}] ${line}\n`));
    exited.push(new Promise((resolve) => child.once('exit', (code) => resolve(code))));
  }
  const stopAll = (why: string) => {
    if (stopping) return;
    stopping = true;
    opts.log.info({ why }, 'stopping every member');
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    setTimeout(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    }, STOP_TIMEOUT_MS).unref();
  };
  const onSignal = (signal: NodeJS.Signals) => stopAll(signal);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  exited.forEach((p, i) =>
    void p.then((code) => {
      if (stopping) return;
      const how = code === null ? `was killed (${children[i]!.signalCode ?? 'signal'})` : `exited with code ${code}`;
      const left = children.filter((c) => c.exitCode === null && c.signalCode === null).length;
      // A member that ended by itself failed (bad configuration, a port in use, a full disk):
      // the layout is meant to run whole, so stop. One killed from outside is a crash to ride out.
      if (code !== null || left === 0) {
        process.stderr.write(`tempest: member node${i} ${how}; stopping the others\n`);
        stopAll(`node${i} ${how}`);
        return;
      }
      process.stderr.write(
        `tempest: member node${i} ${how}; the other ${left} go on without it (a group needs a majority of its last view). ` +
          `Ctrl-C and \`npm start\` again restart all three from ./data\n`,
      );
    }),
  );
  const codes = await Promise.all(exited);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  // Stopped by a signal: members exit 0 after an orderly stop. Otherwise report the first failure.
  return codes.find((c) => c !== 0 && c !== null) ?? 0;
}
