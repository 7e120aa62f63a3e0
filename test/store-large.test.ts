/**
 * A 2 GiB blob over HTTP on a 3-member cluster: uploaded to one member, downloaded from the others
 * with the same sha256, while no member's resident memory grows by 128 MiB or more (chunks stream
 * through; nothing holds the blob whole).
 */
import { tmpdir } from 'node:os';
import test from 'ava';
import { freeBytes, getHashed, putStream, rssBytes, sampleRss, seededBytes, seededSha256 } from './helpers/http-blob.js';
import { StoreCluster } from './helpers/store-cluster.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const RSS_GROWTH_LIMIT_BYTES = 128 * MiB;

test('a 2 GiB upload and download: the same sha256 from every member; no member grows by 128 MiB of RSS', async (t) => {
  t.timeout(20 * 60_000);
  // Three copies of the blob, plus logs: on a machine without room for them the same checks run
  // on a smaller blob, and the log says so.
  const needed_bytes = 3 * 2 * GiB + 2 * GiB;
  const size_bytes = freeBytes(tmpdir()) >= needed_bytes ? 2 * GiB : 256 * MiB;
  if (size_bytes < 2 * GiB) t.log(`only ${(freeBytes(tmpdir()) / GiB).toFixed(1)} GiB free under ${tmpdir()}: checking a ${size_bytes / MiB} MiB blob instead of 2 GiB`);

  const c = await StoreCluster.create(3);
  t.teardown(() => c.stop());
  await c.startAll();
  const pids = c.nodes.map((n) => n.proc!.pid!);

  // Warm up every path once (allocators, buffer pools, the chunk cache), then take the baseline.
  const warm = await putStream(`${c.url(1)}/v1/blobs/warm`, seededBytes('warm', 16 * MiB), 16 * MiB, 60_000);
  t.is(warm.status, 201, warm.body);
  for (const i of [0, 2]) t.is((await getHashed(`${c.url(i)}/v1/blobs/warm`, 60_000)).sha256, seededSha256('warm', 16 * MiB));
  const baseline = pids.map((pid) => rssBytes(pid)!);

  const sampler = sampleRss(pids);
  const expected = seededSha256('large', size_bytes);
  const t0 = performance.now();
  const put = await putStream(`${c.url(1)}/v1/blobs/large/blob.bin`, seededBytes('large', size_bytes), size_bytes, 15 * 60_000);
  const up_s = (performance.now() - t0) / 1000;
  t.is(put.status, 201, put.body);
  const created = JSON.parse(put.body) as { size: number; etag: string };
  t.is(created.size, size_bytes);
  t.is(created.etag, expected, 'the version is named by the sha256 of the bytes sent');

  const downs: string[] = [];
  for (const i of [2, 0]) {
    const t1 = performance.now();
    const got = await getHashed(`${c.url(i)}/v1/blobs/large/blob.bin`, 10 * 60_000);
    const down_s = (performance.now() - t1) / 1000;
    t.is(got.status, 200);
    t.is(got.size_bytes, size_bytes);
    t.is(got.sha256, expected, `member ${i} returns the same bytes`);
    t.is(got.headers['content-length'], String(size_bytes));
    downs.push(`member ${i} ${(size_bytes / MiB / down_s).toFixed(0)} MiB/s`);
  }
  const peaks = sampler.stop();
  t.log(`${size_bytes / MiB} MiB: upload through member 1 ${(size_bytes / MiB / up_s).toFixed(1)} MiB/s; download ${downs.join(', ')}`);
  t.log(`RSS baseline → peak (MiB): ${pids.map((_, i) => `member ${i} ${(baseline[i]! / MiB).toFixed(0)} → ${(peaks[i]! / MiB).toFixed(0)}`).join(', ')}`);
  for (const [i, peak] of peaks.entries()) {
    t.true(peak - baseline[i]! < RSS_GROWTH_LIMIT_BYTES, `member ${i} RSS grew by ${((peak - baseline[i]!) / MiB).toFixed(0)} MiB (limit ${RSS_GROWTH_LIMIT_BYTES / MiB})`);
  }
});
