/**
 * GET /v1/watch over real HTTP on 3 members: watchers on two members, writers on all three putting
 * and deleting keys under the prefix (and beside it) at once; each watcher receives every version
 * under its prefix, delete markers included, once each, in the shard's order.
 */
import test from 'ava';
import { StoreCluster } from './helpers/store-cluster.js';

const TIMEOUT_MS = 30_000;

interface Event {
  id: string;
  key: string;
  version: string;
  delete_marker: boolean;
}

/** Reads SSE `version` events from `url` until `until` says stop or the time is up. */
async function watch(url: string, ready: () => void, until: (events: Event[]) => boolean, timeout_ms: number): Promise<Event[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeout_ms);
  const events: Event[] = [];
  try {
    const r = await fetch(url, { signal: ac.signal, headers: { accept: 'text/event-stream' } });
    if (r.status !== 200) throw new Error(`watch: ${r.status} ${await r.text()}`);
    if (!String(r.headers.get('content-type')).startsWith('text/event-stream')) throw new Error(`watch: content-type ${r.headers.get('content-type')}`);
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    let announced = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!announced) {
          announced = true; // the first block (a comment) says the watch is on
          ready();
        }
        const fields = new Map<string, string>();
        for (const line of block.split('\n')) {
          const colon = line.indexOf(':');
          if (colon <= 0) continue; // comments and keep-alives
          fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
        }
        if (fields.get('event') !== 'version') continue;
        const data = JSON.parse(fields.get('data')!) as Omit<Event, 'id'>;
        events.push({ id: fields.get('id')!, key: data.key, version: data.version, delete_marker: data.delete_marker });
      }
      if (until(events)) break;
    }
    return events;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

test('watchers on two members receive every version under the prefix, in order, once', async (t) => {
  t.timeout(5 * 60_000);
  const c = await StoreCluster.create(3);
  t.teardown(() => c.stop());
  await c.startAll();

  const written: { key: string; version: string; delete_marker: boolean }[] = [];
  const WRITERS = 3;
  const PER_WRITER = 60;
  const expected = WRITERS * PER_WRITER;
  let readyCount = 0;
  let allReady!: () => void;
  const ready = new Promise<void>((r) => (allReady = r));
  const onReady = (): void => {
    if (++readyCount === 2) allReady();
  };
  const under = (events: Event[]): boolean => events.length >= expected;
  const watchers = [0, 2].map((i) => watch(`${c.url(i)}/v1/watch?prefix=${encodeURIComponent('w/')}`, onReady, under, 4 * 60_000));
  await Promise.race([ready, new Promise((_, reject) => setTimeout(() => reject(new Error('watchers not ready')), TIMEOUT_MS))]);

  // Each writer puts to its own keys and deletes every fifth; another prefix gets writes too.
  await Promise.all(
    Array.from({ length: WRITERS }, async (_, w) => {
      for (let n = 0; n < PER_WRITER; n++) {
        const key = `w/${w}/k${n % 7}`;
        const del = n % 5 === 4;
        const r = await fetch(`${c.url(w)}/v1/blobs/${key}`, { method: del ? 'DELETE' : 'PUT', ...(del ? {} : { body: `${w}:${n}` }), signal: AbortSignal.timeout(TIMEOUT_MS) });
        if (del && r.status === 404) {
          // nothing live to delete (the key's last version was already a marker): write instead
          await r.arrayBuffer();
          const p = await fetch(`${c.url(w)}/v1/blobs/${key}`, { method: 'PUT', body: `${w}:${n}`, signal: AbortSignal.timeout(TIMEOUT_MS) });
          t.is(p.status, 201);
          const body = (await p.json()) as { version: string };
          written.push({ key, version: body.version, delete_marker: false });
          continue;
        }
        t.is(r.status, del ? 200 : 201, `${del ? 'DELETE' : 'PUT'} ${key}`);
        const v = r.headers.get('x-tempest-version')!;
        await r.arrayBuffer();
        written.push({ key, version: v, delete_marker: del });
        const other = await fetch(`${c.url(w)}/v1/blobs/x/${w}/${n}`, { method: 'PUT', body: 'outside', signal: AbortSignal.timeout(TIMEOUT_MS) });
        t.is(other.status, 201);
        await other.arrayBuffer();
      }
    }),
  );
  const got = await Promise.all(watchers);
  const byVersion = [...written].sort((a, b) => (BigInt(a.version) < BigInt(b.version) ? -1 : 1));
  for (const [w, events] of got.entries()) {
    const who = `watcher on member ${[0, 2][w]}`;
    t.is(events.length, expected, `${who}: one event per version`);
    t.true(
      events.every((e) => e.key.startsWith('w/')),
      `${who}: nothing outside the prefix`,
    );
    t.deepEqual(
      events.map((e) => ({ key: e.key, version: e.version, delete_marker: e.delete_marker })),
      byVersion,
      `${who}: every version written, delete markers included, in version order (one shard: its delivery order)`,
    );
    t.deepEqual(
      events.map((e) => e.id),
      events.map((e) => e.version),
      `${who}: each event's id is its version (Last-Event-ID)`,
    );
  }
  t.log(`${written.length} versions under w/ (${written.filter((x) => x.delete_marker).length} delete markers); both watchers saw each once, in order`);
});
