/**
 * Versions of replicated state: 64-bit, `(view id << 32) | sequence`, so that versions assigned by
 * the ordered multicast are totally ordered across view changes. A version is a bigint because
 * view ids and sequence numbers together exceed the 53 bits a JS number holds exactly.
 */
import { assert } from '../util/assert.js';

export type Version = bigint;

/** "No version yet": smaller than every real version. */
export const NO_VERSION: Version = -1n;

const SEQ_LIMIT = 2 ** 32;

export function makeVersion(vid: number, seq: number): Version {
  assert(Number.isSafeInteger(vid) && vid >= 0, `a view id is a non-negative integer, not ${vid}`);
  assert(Number.isInteger(seq) && seq >= 0 && seq < SEQ_LIMIT, `a sequence number is in 0..2^32-1, not ${seq}`);
  return (BigInt(vid) << 32n) | BigInt(seq);
}

export function versionVid(v: Version): number {
  assert(v >= 0n, 'NO_VERSION has no view id');
  return Number(v >> 32n);
}

export function versionSeq(v: Version): number {
  assert(v >= 0n, 'NO_VERSION has no sequence number');
  return Number(v & 0xffff_ffffn);
}

/** "vid:seq" for logs and messages. */
export function formatVersion(v: Version): string {
  return v < 0n ? 'none' : `${versionVid(v)}:${versionSeq(v)}`;
}
