/** Real member processes for multi-process tests (test/fixtures/member-process.ts). */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePorts } from '../../scripts/lib/child.js';

export { freePorts, killAll, type Msg } from '../../scripts/lib/child.js';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURE = join(here, '../fixtures/member-process.js');

export type MemberProcess = Child;
export const MemberProcess = {
  start: (args: object, env: Record<string, string> = {}): Child => Child.start(FIXTURE, args, env),
};

/** Member addresses for n processes on 127.0.0.1 with fresh ports. */
export async function memberAddresses(n: number): Promise<{ id: number; ip: string; port: number; fabric_port: number }[]> {
  const ports = await freePorts(2 * n);
  return Array.from({ length: n }, (_, i) => ({ id: i, ip: '127.0.0.1', port: ports[2 * i]!, fabric_port: ports[2 * i + 1]! }));
}
