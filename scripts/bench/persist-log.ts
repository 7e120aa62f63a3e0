/**
 * Micro-benchmark of the durable log (engine/persistence/log-store.ts): entries/s for appends of
 * `--size` bytes with a flush (write + fdatasync) every `--batch` entries, in two shapes:
 *   sync:      append a batch, await its flush, repeat (one writer waiting on its own fsync);
 *   pipelined: keep appending while flushes run, yielding to the event loop after each batch
 *              and calling flush() without waiting (what a replica under load does: group
 *              commit coalesces the batches that arrive during one fsync into the next);
 *              the writer waits only when over 64 MiB is buffered.
 * Also reports the fsyncs made, the index lag at the end, and a cold-read sample. The baseline,
 * measured in the same run on the same disk: plain fs.writeSync of the same bytes (payload plus
 * the log's 40-byte header) with an fdatasync every batch. The last line is the JSON summary.
 *
 *   node dist/scripts/bench/persist-log.js [--entries=200000 --batch=256 --size=1024 --dir=/tmp/...]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { LogStore } from '../../engine/persistence/log-store.js';
import { HybridClock } from '../../engine/persistence/hlc.js';
import { layerLogger } from '../../engine/util/log.js';

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '256' },
    size: { type: 'string', default: '1024' },
    dir: { type: 'string' },
    durable: { type: 'string', default: 'true' },
  },
});
const N = Number(values.entries);
const BATCH = Number(values.batch);
const SIZE = Number(values.size);
const DURABLE = values.durable !== 'false';
const root = values.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tempest-bench-log-'));
const log = layerLogger('bench');
const payload = Buffer.alloc(SIZE, 0x61);

const ENTRY_OVERHEAD_BYTES = 40;

/** Entries/s of the baseline: the same bytes written with writeSync, fdatasync every batch. */
function rawRate(): number {
  const file = path.join(root, 'raw.bin');
  const record = Buffer.alloc(SIZE + ENTRY_OVERHEAD_BYTES, 0x61);
  const batch = Buffer.alloc(record.length * BATCH);
  for (let k = 0; k < BATCH; k++) record.copy(batch, k * record.length);
  const fd = fs.openSync(file, 'w');
  const t0 = performance.now();
  try {
    for (let i = 0; i < N; i += BATCH) {
      const n = Math.min(BATCH, N - i);
      fs.writeSync(fd, batch, 0, n * record.length);
      if (DURABLE) fs.fdatasyncSync(fd);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return (N / (performance.now() - t0)) * 1000;
}

async function run(shape: 'sync' | 'pipelined'): Promise<number> {
  const dir = path.join(root, shape);
  await LogStore.reset(dir);
  const store = await LogStore.open({ dir, durable: DURABLE, log });
  const clock = new HybridClock();
  const t0 = performance.now();
  let v = 1n;
  let last: Promise<bigint> = Promise.resolve(-1n);
  for (let i = 0; i < N; i += BATCH) {
    const n = Math.min(BATCH, N - i);
    for (let k = 0; k < n; k++) store.append(v++, clock.now(), payload);
    if (shape === 'sync') {
      await store.flush();
    } else {
      last = store.flush();
      if (store.bufferedBytes > 64 << 20) await last;
      else await new Promise((r) => setImmediate(r));
    }
  }
  await last;
  const ms = performance.now() - t0;
  const lag = store.indexLag;
  const c0 = performance.now();
  const cold = await store.getByIndex(Math.floor(N / 3));
  const coldMs = performance.now() - c0;
  if (cold?.payload.length !== SIZE) throw new Error('cold read returned the wrong entry');
  const fsyncs = store.fsyncCount;
  await store.close();
  const rate = (N / ms) * 1000;
  process.stdout.write(
    `${shape.padEnd(9)} ${N} x ${SIZE} B, flush every ${BATCH}, durable=${DURABLE}: ${Math.round(rate).toLocaleString('en-US')} entries/s ` +
      `(${((rate * (SIZE + 40)) / 1048576).toFixed(1)} MiB/s), ${fsyncs} fsyncs${fsyncs > 0 ? ` (${((N / fsyncs) | 0)} entries and ${(ms / fsyncs).toFixed(2)} ms each)` : ''}, index lag at end ${lag}, cold read ${coldMs.toFixed(2)} ms\n`,
  );
  await LogStore.reset(dir);
  return rate;
}

const raw = rawRate();
process.stdout.write(`raw       ${N} x ${SIZE + ENTRY_OVERHEAD_BYTES} B, writeSync + fdatasync every ${BATCH}: ${Math.round(raw).toLocaleString('en-US')} entries/s (baseline)\n`);
const sync = await run('sync');
const pipelined = await run('pipelined');
const round3 = (x: number) => Math.round(x * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({
    bench: 'persist-log',
    entries: N,
    entry_bytes: SIZE,
    batch: BATCH,
    durable: DURABLE,
    entries_per_s: { sync: Math.round(sync), pipelined: Math.round(pipelined), raw_write_fdatasync: Math.round(raw) },
    ratios: { sync_vs_raw: round3(sync / raw), pipelined_vs_raw: round3(pipelined / raw) },
  })}\n`,
);
if (values.dir === undefined) fs.rmSync(root, { recursive: true, force: true });
