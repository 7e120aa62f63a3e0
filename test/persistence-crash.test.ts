/**
 * A real crash test: a child process (fixtures/persistence-writer.ts) appends and flushes in a
 * loop, printing each flushed version (its acknowledgement); it is SIGKILLed at seeded random
 * moments, ten times. After each kill the log is reopened here and must hold every acknowledged
 * version with the right payload, no torn entry, and contiguous indices; the next round's writer
 * continues the same log.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { LogStore } from '../engine/persistence/log-store.js';
import { makeVersion, versionSeq, versionVid } from '../engine/persistence/version.js';
import { prng } from '../scripts/lib/prng.js';
import { payloadFor, recordingLogger, tempDir } from './fixtures/persistence-helpers.js';

const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/persistence-writer.js');
const SEED = 20261123;
const ROUNDS = 10;
const MAX_BYTES = 2000;

interface Round {
  vid: number;
  /** Highest acknowledged sequence number of this round (-1: none). */
  acked: number;
}

/** Runs one writer until it has started, then for `run_ms`, then SIGKILLs it; returns its acknowledgements. */
function runWriter(args: object, run_ms: number): Promise<bigint[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TEMPEST_LOG_FORMAT: 'json' } });
    let out = '';
    let err = '';
    let started = false;
    const deadline = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer did not start within 20 s; stderr: ${err.slice(-2000)}`));
    }, 20_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!started && out.includes('start ')) {
        started = true;
        clearTimeout(deadline);
        setTimeout(() => {
          child.kill('SIGKILL');
          setTimeout(() => reject(new Error('the writer did not exit within 10 s of SIGKILL')), 10_000).unref();
        }, run_ms);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(deadline);
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited with ${code}/${signal} before it was killed; stderr: ${err.slice(-2000)}`));
      // Only complete lines count: a line cut by the kill was never a whole acknowledgement.
      const lines = out.split('\n').slice(0, -1);
      resolve(lines.filter((l) => /^\d+$/.test(l)).map((l) => BigInt(l)));
    });
  });
}

test('SIGKILL at random points: every acknowledged version survives, nothing torn, indices contiguous', async (t) => {
  t.timeout(150_000);
  const dir = await tempDir(t);
  const rand = prng(SEED);
  const rounds: Round[] = [];
  const { log, records } = recordingLogger();
  let totalAcked = 0;
  let cuts = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const vid = r + 1;
    const run_ms = 20 + Math.floor(rand() * 400);
    const acks = await runWriter({ dir, vid, seed: SEED, segment_size_bytes: 256 * 1024, max_bytes: MAX_BYTES }, run_ms);
    for (let k = 1; k < acks.length; k++) t.true(acks[k]! > acks[k - 1]!, 'acknowledgements increase');
    for (const a of acks) t.is(versionVid(a), vid);
    rounds.push({ vid, acked: acks.length === 0 ? -1 : versionSeq(acks[acks.length - 1]!) });
    totalAcked += acks.length;

    const before = records.length;
    const s = await LogStore.open({ dir, durable: true, segment_size_bytes: 256 * 1024, log });
    if (records.slice(before).some((x) => typeof x.cut_bytes === 'number')) cuts++;
    // Walk the whole log: contiguous indices, versions in order, every payload intact.
    const seen = new Map<number, number>(); // vid -> highest seq present
    let expectIndex = 0;
    let prev = -1n;
    let bad = 0;
    for await (const e of s.entries(-1n)) {
      if (e.index !== expectIndex) t.fail(`index ${e.index}, expected ${expectIndex}`);
      expectIndex++;
      t.true(e.version > prev);
      prev = e.version;
      const vid2 = versionVid(e.version);
      const seq = versionSeq(e.version);
      if (seq !== (seen.get(vid2) ?? -1) + 1) t.fail(`round ${vid2}: seq ${seq} after ${seen.get(vid2) ?? -1}`);
      seen.set(vid2, seq);
      if (!e.payload.equals(payloadFor(e.version, MAX_BYTES, SEED))) bad++;
    }
    t.is(bad, 0, 'no torn or damaged payload');
    t.is(expectIndex, s.latestIndex + 1);
    for (const round of rounds) {
      const have = seen.get(round.vid) ?? -1;
      t.true(have >= round.acked, `round ${round.vid}: acknowledged up to seq ${round.acked}, log has up to ${have}`);
    }
    // Point reads of acknowledged versions (tail and cold paths).
    for (const round of rounds) {
      if (round.acked < 0) continue;
      for (const seq of [0, Math.floor(round.acked / 2), round.acked]) {
        const v = makeVersion(round.vid, seq);
        const e = await s.getByVersion(v);
        t.truthy(e, `version ${round.vid}:${seq}`);
        t.true(e!.payload.equals(payloadFor(v, MAX_BYTES, SEED)));
      }
    }
    await s.close();
  }
  t.true(totalAcked > 20, `acknowledged flushes: ${totalAcked}`);
  t.log(`${ROUNDS} kills, ${totalAcked} acknowledged flushes, ${cuts} reopen(s) cut a torn tail`);
});
