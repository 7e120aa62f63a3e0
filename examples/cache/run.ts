/**
 * The Cache example, end to end, with one command (`npm run example:cache`): starts 3 member
 * processes on 127.0.0.1 (free ports, data under a temporary directory), then, as an external
 * client, puts a few keys (ordered: every replica applies them in the same order, each replies),
 * reads them back from different replicas (p2p), invalidates one, reads a value as it was at an
 * earlier version and time, kills one member and carries on through the others, and stops.
 *
 *   npm run example:cache            # prints what it does, step by step
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MemberInfo } from '../../engine/membership/view.js';
import { formatVersion } from '../../engine/persistence/version.js';
import { ExternalClient } from '../../engine/rpc/external-client.js';
import { layerLogger } from '../../engine/util/log.js';
import type { CacheProcessArgs } from '../../scripts/lib/cache-process.js';
import { freePorts } from '../../scripts/lib/child.js';
import { CacheType } from './cache.js';

const MEMBER = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/cache-process.js');
const say = (s: string) => process.stdout.write(`${s}\n`);

const root = mkdtempSync(join(tmpdir(), 'tempest-cache-example-'));
const ports = await freePorts(12);
const members: MemberInfo[] = [0, 1, 2].map((i) => ({ id: i, ip: '127.0.0.1', gms_port: ports[4 * i]!, fabric_port: ports[4 * i + 1]!, state_transfer_port: ports[4 * i + 2]!, external_port: ports[4 * i + 3]! }));
const procs: ChildProcess[] = [];
let client: ExternalClient | null = null;

function start(m: MemberInfo): Promise<void> {
  const args: CacheProcessArgs = { self: m, leader: members[0]!, data_dir: join(root, `node${m.id}`) };
  const p = fork(MEMBER, [JSON.stringify(args)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, TEMPEST_LOG_LEVEL: process.env.TEMPEST_LOG_LEVEL ?? 'error' } });
  procs[m.id] = p;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`member ${m.id} did not start within 60 s`)), 60_000);
    p.on('message', (msg: { type: string; message?: string }) => {
      if (msg.type === 'ready') {
        clearTimeout(t);
        resolve();
      } else if (msg.type === 'error') reject(new Error(msg.message));
    });
    p.on('exit', (code) => reject(new Error(`member ${m.id} exited (${code})`)));
  });
}

try {
  say(`Starting 3 members on 127.0.0.1 (data in ${root}) ...`);
  await start(members[0]!);
  await Promise.all(members.slice(1).map(start));
  client = await ExternalClient.connect({ contacts: members.map((m) => ({ host: m.ip, port: m.external_port })), log: layerLogger('example') });
  for (let i = 0; i < 50 && client.cluster.members.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
  say(`View ${client.cluster.vid}: members ${client.cluster.members.map((m) => m.id).join(', ')}; Cache shard 0 = {${client.cluster.layout[0]?.shards[0]?.join(',')}}`);
  const cache = client.getSubgroup(CacheType);

  const put = await cache.orderedSend('put', 'greeting', 'hello');
  say(`put greeting=hello -> version ${formatVersion(put.version)} (view:sequence), replies from members ${[...put.replies.keys()].join(', ')}`);
  const t1 = Date.now();
  await new Promise((r) => setTimeout(r, 20));
  const put2 = await cache.orderedSend('put', 'greeting', 'hello again');
  await cache.orderedSend('put', 'colour', 'blue');
  say(`put greeting="hello again" -> version ${formatVersion(put2.version)}; put colour=blue`);
  say(`get greeting -> "${await cache.p2pSend('get', 'greeting')}"; contains colour -> ${await cache.p2pSend('contains', 'colour')}`);
  say(`getAt greeting as of version ${formatVersion(put.version)} -> "${await cache.p2pSend('getAt', 'greeting', { version: put.version })}"`);
  say(`getAt greeting as of ${new Date(t1).toISOString()} -> "${await cache.p2pSend('getAt', 'greeting', { time_ms: t1 })}"`);
  const inv = await cache.orderedSend('invalidate', 'colour');
  say(`invalidate colour -> ${[...inv.replies.values()].map((r) => (r.ok ? String(r.value) : r.code)).join(', ')}; contains colour -> ${await cache.p2pSend('contains', 'colour')}`);

  say('Killing member 0 (SIGKILL) ...');
  procs[0]!.kill('SIGKILL');
  const after = await cache.orderedSend('put', 'survivor', 'yes');
  say(`put survivor=yes after the kill -> version ${formatVersion(after.version)}, view ${client.cluster.vid} members ${client.cluster.members.map((m) => m.id).join(', ')}`);
  say(`get greeting -> "${await cache.p2pSend('get', 'greeting')}"`);
  say('Done.');
} catch (err) {
  process.stderr.write(`example failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await client?.close();
  for (const p of procs) p?.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
}
