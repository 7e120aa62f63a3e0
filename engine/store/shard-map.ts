/**
 * Which shard of the store holds a key: the first 4 bytes of sha256(key) modulo the shard count.
 * A pure function of the key and the count, so every member and client agrees without asking;
 * the count comes from the configured layout ([STORE] shards) and does not change while data
 * exists (re-sharding would move keys, and is not supported).
 */
import { createHash } from 'node:crypto';
import { assert } from '../util/assert.js';

export function shardOfKey(key: string, shards: number): number {
  assert(Number.isInteger(shards) && shards >= 1, 'a store has at least one shard');
  if (shards === 1) return 0;
  return createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0) % shards;
}
