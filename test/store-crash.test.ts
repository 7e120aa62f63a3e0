/**
 * Failures under HTTP load on 3 real members (1 shard × 3): a member SIGKILLed during 50 parallel
 * uploads, and the loss and return of quorum. What a client was told succeeded is never lost.
 */
import test from 'ava';
import { getHashed, putStream, seededBytes, seededSha256, sleep } from './helpers/http-blob.js';
import { StoreCluster } from './helpers/store-cluster.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TIMEOUT_MS = 120_000;

interface Outcome {
  key: string;
  seed: string;
  size_bytes: number;
  via: number;
  status: number | null;
  error?: string;
}

/** Tries `attempt` every 500 ms until it is answered `status` (bounded by timeout_ms): that reply, or null. */
async function untilStatus(status: number, timeout_ms: number, attempt: (n: number) => Promise<Response>): Promise<Response | null> {
  const deadline = Date.now() + timeout_ms;
  for (let n = 0; Date.now() < deadline; n++) {
    const r = await attempt(n).catch(() => null);
    if (r !== null && r.status === status) return r;
    if (r !== null) await r.arrayBuffer();
    await sleep(500);
  }
  return null;
}

async function versionsOf(url: string, key: string): Promise<{ status: number; versions: { etag: string | null; delete_marker: boolean }[] }> {
  const r = await fetch(`${url}/v1/versions/${key}`, { signal: AbortSignal.timeout(30_000) });
  if (r.status !== 200) {
    await r.arrayBuffer();
    return { status: r.status, versions: [] };
  }
  return { status: 200, versions: ((await r.json()) as { versions: { etag: string | null; delete_marker: boolean }[] }).versions };
}

for (const [victim, what] of [[2, 'a member'], [0, 'the leader']] as const) {
  test.serial(`SIGKILL ${what} during 50 parallel uploads: every 201 is readable byte-exact from the survivors; failures leave no version`, async (t) => {
    t.timeout(10 * 60_000);
    const c = await StoreCluster.create(3);
    t.teardown(() => c.stop());
    await c.startAll();
    const survivors = [0, 1, 2].filter((i) => i !== victim);

    const outcomes: Outcome[] = Array.from({ length: 50 }, (_, i) => ({
      key: `crash/u${i}`,
      seed: `crash-${i}`,
      // 64 KiB .. 6 MiB.
      size_bytes: 64 * KiB + ((i * 7919) % 97) * 64 * KiB,
      via: i % 3,
      status: null,
    }));
    // Kill once a third of all the bytes have been handed to the sockets: the server cannot be
    // ahead of that, so uploads are in every stage at once (some answered, some mid-body, some
    // committing). Bounded wait.
    const total_bytes = outcomes.reduce((n, o) => n + o.size_bytes, 0);
    let sent_bytes = 0;
    let settled = 0;
    let thirdSent!: () => void;
    const killTime = new Promise<void>((r) => (thirdSent = r));
    function* counted(o: Outcome): Generator<Buffer> {
      for (const b of seededBytes(o.seed, o.size_bytes)) {
        sent_bytes += b.length;
        if (sent_bytes >= total_bytes / 3) thirdSent();
        yield b;
      }
    }
    const uploads = outcomes.map(async (o) => {
      try {
        const r = await putStream(`${c.url(o.via)}/v1/blobs/${o.key}`, counted(o), o.size_bytes, TIMEOUT_MS);
        o.status = r.status;
        if (r.status !== 201) o.error = r.body;
      } catch (err) {
        o.error = String(err);
      }
      settled++;
    });
    await Promise.race([killTime, sleep(60_000)]);
    const inFlightAtKill = 50 - settled;
    await c.kill(victim);
    const t_kill = Date.now();
    await Promise.all(uploads);
    t.log(`killed with ${inFlightAtKill} uploads in flight; all 50 answered or failed ${Date.now() - t_kill} ms after`);
    t.true(inFlightAtKill > 0, 'the member died while uploads were in flight');

    const ok = outcomes.filter((o) => o.status === 201);
    const failed = outcomes.filter((o) => o.status !== 201);
    t.log(`${ok.length} answered 201, ${failed.length} failed: ${[...new Set(failed.map((o) => `via ${o.via}: ${o.status ?? ''} ${(o.error ?? '').slice(0, 80)}`))].slice(0, 6).join(' | ')}`);
    t.true(ok.length > 0, 'some uploads succeeded');
    // Uploads through survivors ride out the view change: the member's store client retries.
    for (const o of outcomes.filter((x) => x.via !== victim)) t.is(o.status, 201, `${o.key} via surviving member ${o.via}: ${o.error ?? ''}`);

    for (const o of ok) {
      const expected = seededSha256(o.seed, o.size_bytes);
      for (const s of survivors) {
        const got = await getHashed(`${c.url(s)}/v1/blobs/${o.key}`, 60_000);
        t.is(got.status, 200, `${o.key} from member ${s}`);
        t.is(got.sha256, expected, `${o.key} from member ${s} byte-exact`);
      }
    }
    // A failed upload left no version. An upload through the killed member may have committed just
    // before it died (its reply lost with it, as any HTTP server's would be): then the version is
    // the whole of it, never a part.
    let committedUnanswered = 0;
    for (const o of failed) {
      t.is(o.via, victim, `${o.key} failed through a surviving member: ${o.error ?? ''}`);
      for (const s of survivors) {
        const v = await versionsOf(c.url(s), o.key);
        if (v.status === 404) continue;
        t.is(v.versions.length, 1, `${o.key}: at most the one version it sent`);
        t.is(v.versions[0]!.etag, seededSha256(o.seed, o.size_bytes), `${o.key}: a version is the whole upload`);
        if (s === survivors[0]) committedUnanswered++;
      }
    }
    t.log(`${committedUnanswered} of the ${failed.length} failed uploads had committed before their member died`);
  });
}

test.serial('with quorum lost, writes get 503; once it is back, 201 again; nothing accepted is lost', async (t) => {
  t.timeout(10 * 60_000);
  const c = await StoreCluster.create(3);
  t.teardown(() => c.stop());
  await c.startAll();
  const accepted: { key: string; body: string }[] = [];
  const put = async (i: number, key: string, body: string, timeout_ms = 60_000): Promise<Response> => {
    const r = await fetch(`${c.url(i)}/v1/blobs/${key}`, { method: 'PUT', body, signal: AbortSignal.timeout(timeout_ms) });
    if (r.status === 201) accepted.push({ key, body });
    return r;
  };
  for (let i = 0; i < 20; i++) t.is((await put(i % 3, `q/before-${i}`, `before ${i}`)).status, 201);

  // Two of three die: the survivor is a minority and must refuse writes, not accept them.
  await c.kill(1);
  await c.kill(2);
  const refused = await untilStatus(503, 60_000, (n) => put(0, `q/during-${n}`, `during ${n}`, 60_000));
  t.not(refused, null, 'a write without quorum is answered 503 within 60 s');
  if (refused !== null) {
    const body = (await refused.json()) as { error: string; message: string };
    t.is(typeof body.error, 'string');
    t.true(Number(refused.headers.get('retry-after')) > 0, 'with Retry-After');
    t.log(`without quorum: ${refused.status} ${body.error}: ${body.message}`);
  }
  const health = await fetch(`${c.url(0)}/healthz`, { signal: AbortSignal.timeout(10_000) });
  t.is(health.status, 503, '/healthz says the member cannot serve');
  await health.arrayBuffer();

  // They come back from their data dirs: writes are accepted again.
  c.start(1);
  c.start(2);
  const again = await untilStatus(201, 120_000, (n) => put(0, `q/after-${n}`, `after ${n}`, 30_000));
  t.not(again, null, 'writes are accepted again once quorum is back');
  await again?.arrayBuffer();
  await c.waitHealthy([0, 1, 2], 3, 120_000);
  for (let i = 0; i < 10; i++) t.is((await put(i % 3, `q/later-${i}`, `later ${i}`)).status, 201);

  // Everything accepted, from every member.
  for (const a of accepted) {
    for (const i of [0, 1, 2]) {
      const r = await fetch(`${c.url(i)}/v1/blobs/${a.key}`, { signal: AbortSignal.timeout(30_000) });
      t.is(r.status, 200, `${a.key} from member ${i}`);
      t.is(await r.text(), a.body, `${a.key} from member ${i}`);
    }
  }
  t.log(`${accepted.length} accepted writes all readable from the 3 members`);
});
