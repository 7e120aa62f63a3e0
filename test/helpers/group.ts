/** Real group-member processes (test/fixtures/group-process.ts) on 127.0.0.1 with fresh ports. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, freePorts } from '../../scripts/lib/child.js';
import type { MemberInfo } from '../../engine/membership/view.js';
import type { SubgroupTypeSpec } from '../../engine/subgroups/allocation.js';
import type { GroupProcessArgs } from '../../scripts/lib/group-process.js';

export const GROUP_FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '../../scripts/lib/group-process.js');

export async function memberInfos(n: number, firstId = 0, ip = '127.0.0.1'): Promise<MemberInfo[]> {
  const ports = await freePorts(4 * n);
  return Array.from({ length: n }, (_, i) => ({
    id: firstId + i,
    ip,
    gms_port: ports[4 * i]!,
    fabric_port: ports[4 * i + 1]!,
    state_transfer_port: ports[4 * i + 2]!,
    external_port: ports[4 * i + 3]!,
  }));
}

export interface GroupSpec {
  types: SubgroupTypeSpec[];
  timeout_ms: number;
  heartbeat_ms: number;
  max_payload_size: number;
}

export function startMember(self: MemberInfo, leader: MemberInfo, spec: GroupSpec, extra: Partial<GroupProcessArgs> = {}, env: Record<string, string> = {}): Child {
  const args: GroupProcessArgs = { self, leader: { ip: leader.ip, gms_port: leader.gms_port }, ...spec, ...extra };
  return Child.start(GROUP_FIXTURE, args, env);
}
