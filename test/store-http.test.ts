/**
 * Acceptance tests of the HTTP blob API (DESIGN §11) against a real cluster: three `tempest node`
 * processes (test/helpers/store-cluster.ts), talked to over HTTP only, one test per row of the
 * API table. Every test uses keys under its own prefix, and runs serially, so none sees another's
 * versions; every request is bounded (AbortSignal.timeout).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { blobPath, md5b64, sha256, sleep } from './helpers/http-blob.js';
import { StoreCluster } from './helpers/store-cluster.js';

const REQUEST_TIMEOUT_MS = 20_000;
const MEMBERS = 3;
const HEX64 = /^[0-9a-f]{64}$/;
const DECIMAL = /^\d+$/;
/** formatHlc: ISO 8601 UTC with microseconds. */
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const JSON_TYPE = 'application/json; charset=utf-8';
const CHUNK = 1024 * 1024;

let c: StoreCluster;

test.before(async () => {
  c = await StoreCluster.create(MEMBERS);
  await c.startAll();
});

test.after.always(async () => {
  await c?.stop();
});

// ---- helpers ------------------------------------------------------------------------------------

interface Written {
  key: string;
  version: string;
  timestamp: string;
  size: number;
  etag: string;
}

interface VersionEntry {
  version: string;
  timestamp: string;
  size: number;
  etag: string | null;
  delete_marker: boolean;
}



function call(i: number, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(c.url(i) + path, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

async function bodyOf(r: Response): Promise<Buffer> {
  return Buffer.from(await r.arrayBuffer());
}

async function put(key: string, body: Uint8Array | string, headers: Record<string, string> = {}, member = 0): Promise<{ r: Response; json: Written }> {
  const r = await call(member, blobPath(key), { method: 'PUT', body, headers });
  return { r, json: (await r.json()) as Written };
}

/** A PUT that must succeed: 201 and its version. */
async function put201(t: { is: (a: unknown, b: unknown, m?: string) => void }, key: string, body: Uint8Array | string, headers: Record<string, string> = {}, member = 0): Promise<Written> {
  const { r, json } = await put(key, body, headers, member);
  t.is(r.status, 201, `PUT ${key}: ${JSON.stringify(json)}`);
  return json;
}

async function versionsOf(key: string, member = 0): Promise<{ status: number; versions: VersionEntry[] }> {
  const r = await call(member, blobPath(key, '/v1/versions/'));
  const j = (await r.json()) as { versions?: VersionEntry[] };
  return { status: r.status, versions: j.versions ?? [] };
}

/** Asserts a JSON error reply: exactly {error, message}, with this status and code. */
async function assertError(t: import('ava').ExecutionContext, r: Response, status: number, code: string): Promise<Record<string, unknown>> {
  const text = await r.text();
  t.is(r.status, status, text);
  t.is(r.headers.get('content-type'), JSON_TYPE);
  const j = JSON.parse(text) as Record<string, unknown>;
  t.deepEqual(Object.keys(j).sort(), ['error', 'message']);
  t.is(j.error, code);
  t.true(typeof j.message === 'string' && (j.message as string).length > 0);
  return j;
}

function lastModifiedOf(timestamp: string): string {
  return new Date(Date.parse(`${timestamp.slice(0, 23)}Z`)).toUTCString();
}

/** Epoch µs of a formatHlc timestamp. */
function microsOf(timestamp: string): bigint {
  return BigInt(Date.parse(`${timestamp.slice(0, 19)}Z`)) * 1000n + BigInt(timestamp.slice(20, 26));
}

/** formatHlc-style ISO string of epoch µs. */
function isoOfMicros(us: bigint): string {
  return `${new Date(Number(us / 1_000_000n) * 1000).toISOString().slice(0, 19)}.${(us % 1_000_000n).toString().padStart(6, '0')}Z`;
}

function assertWritten(t: import('ava').ExecutionContext, r: Response, j: Written, key: string, body: Uint8Array | string): void {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  t.deepEqual(Object.keys(j).sort(), ['etag', 'key', 'size', 'timestamp', 'version']);
  t.is(j.key, key);
  t.is(j.size, size);
  t.is(j.etag, sha256(body));
  t.regex(j.version, DECIMAL);
  t.regex(j.timestamp, TIMESTAMP);
  t.is(r.headers.get('content-type'), JSON_TYPE);
  t.is(r.headers.get('etag'), `"${sha256(body)}"`);
  t.is(r.headers.get('x-tempest-version'), j.version);
  t.is(r.headers.get('x-tempest-timestamp'), j.timestamp);
  t.is(r.headers.get('location'), blobPath(key));
}

// ---- PUT and GET ---------------------------------------------------------------------------------

test.serial('PUT /v1/blobs/{key}: 201 with {key, version, timestamp, size, etag}; GET from each member returns the same bytes, etag and version', async (t) => {
  // Over two chunks, so reads stitch chunks together.
  const body = randomBytes(2 * CHUNK + 12_345);
  const key = 'put/multi-chunk.bin';
  const { r, json } = await put(key, body, { 'content-type': 'application/x-tempest-test' }, 1);
  t.is(r.status, 201);
  assertWritten(t, r, json, key, body);

  for (let i = 0; i < MEMBERS; i++) {
    const g = await call(i, blobPath(key));
    const got = await bodyOf(g);
    t.is(g.status, 200, `member ${i}`);
    t.is(got.length, body.length, `member ${i}`);
    t.is(sha256(got), sha256(body), `member ${i}`);
    t.is(g.headers.get('content-length'), String(body.length));
    t.is(g.headers.get('content-type'), 'application/x-tempest-test');
    t.is(g.headers.get('etag'), `"${json.etag}"`);
    t.is(g.headers.get('x-tempest-version'), json.version);
    t.is(g.headers.get('x-tempest-timestamp'), json.timestamp);
    t.is(g.headers.get('last-modified'), lastModifiedOf(json.timestamp));
    t.is(g.headers.get('accept-ranges'), 'bytes');
  }
});

test.serial('PUT without a Content-Type stores application/octet-stream; an empty body is a 0-byte version; unicode and %2F keys round-trip', async (t) => {
  const empty = await put201(t, 'put/empty', new Uint8Array(0));
  t.is(empty.size, 0);
  t.is(empty.etag, sha256(''));
  const g = await call(2, blobPath('put/empty'));
  t.is(g.status, 200);
  t.is((await bodyOf(g)).length, 0);
  t.is(g.headers.get('content-length'), '0');
  t.is(g.headers.get('etag'), `"${sha256('')}"`);

  // fetch with a Buffer body sends no Content-Type of its own.
  const plain = await put201(t, 'put/plain', Buffer.from('plain'));
  t.is(plain.etag, sha256('plain'));
  t.is((await call(1, blobPath('put/plain'))).headers.get('content-type'), 'application/octet-stream');

  // A key with spaces, non-ASCII and a '?' segment; %2F in the path is a slash in the key.
  const key = 'put/ünï cödé/a?b#c.txt';
  const { r, json } = await put(key, 'unicode');
  t.is(r.status, 201);
  assertWritten(t, r, json, key, 'unicode');
  const g2 = await call(1, blobPath(key));
  t.is(g2.status, 200);
  t.is(await g2.text(), 'unicode');
  const g3 = await call(2, '/v1/blobs/put%2F%C3%BCn%C3%AF%20c%C3%B6d%C3%A9%2Fa%3Fb%23c.txt');
  t.is(g3.status, 200);
  t.is(g3.headers.get('x-tempest-version'), json.version);
});

// ---- HEAD ----------------------------------------------------------------------------------------

test.serial('HEAD /v1/blobs/{key}: the headers of GET, no body', async (t) => {
  const body = randomBytes(70_001);
  const w = await put201(t, 'head/a', body, { 'content-type': 'image/png' });
  for (let i = 0; i < MEMBERS; i++) {
    const h = await call(i, blobPath('head/a'), { method: 'HEAD' });
    t.is(h.status, 200);
    t.is(h.headers.get('content-length'), '70001');
    t.is(h.headers.get('content-type'), 'image/png');
    t.is(h.headers.get('etag'), `"${w.etag}"`);
    t.is(h.headers.get('x-tempest-version'), w.version);
    t.is(h.headers.get('x-tempest-timestamp'), w.timestamp);
    t.is(h.headers.get('last-modified'), lastModifiedOf(w.timestamp));
    t.is(h.headers.get('accept-ranges'), 'bytes');
    t.is((await bodyOf(h)).length, 0);
  }
  const missing = await call(0, blobPath('head/missing'), { method: 'HEAD' });
  t.is(missing.status, 404);
  t.is(missing.headers.get('x-tempest-delete-marker'), null);
  t.is((await bodyOf(missing)).length, 0);
});

// ---- Range ---------------------------------------------------------------------------------------

test.serial('GET with one Range: 206 with Content-Range (a-b, a-, -n, clipped), 416 with bytes */size past the end', async (t) => {
  const text = 'abcdefghijklmnopqrstuvwxyz';
  const w = await put201(t, 'range/abc', text);
  const cases: [string, string, string][] = [
    ['bytes=0-4', 'abcde', 'bytes 0-4/26'],
    ['bytes=-3', 'xyz', 'bytes 23-25/26'],
    ['bytes=5-', 'fghijklmnopqrstuvwxyz', 'bytes 5-25/26'],
    ['bytes=20-100', 'uvwxyz', 'bytes 20-25/26'],
    ['bytes=25-25', 'z', 'bytes 25-25/26'],
    ['bytes=-100', text, 'bytes 0-25/26'],
  ];
  for (const [range, want, contentRange] of cases) {
    const r = await call(1, blobPath('range/abc'), { headers: { range } });
    t.is(r.status, 206, range);
    t.is(await r.text(), want, range);
    t.is(r.headers.get('content-range'), contentRange, range);
    t.is(r.headers.get('content-length'), String(want.length), range);
    t.is(r.headers.get('etag'), `"${w.etag}"`, range);
    t.is(r.headers.get('x-tempest-version'), w.version, range);
  }
  for (const range of ['bytes=26-', 'bytes=26-30', 'bytes=1000-2000', 'bytes=-0']) {
    const r = await call(2, blobPath('range/abc'), { headers: { range } });
    t.is(r.headers.get('content-range'), 'bytes */26', range);
    await assertError(t, r, 416, 'ERR_HTTP_RANGE_NOT_SATISFIABLE');
  }
  // If-Range: the range holds only while the client's etag is current.
  const same = await call(0, blobPath('range/abc'), { headers: { range: 'bytes=0-1', 'if-range': `"${w.etag}"` } });
  t.is(same.status, 206);
  t.is(await same.text(), 'ab');
  const stale = await call(0, blobPath('range/abc'), { headers: { range: 'bytes=0-1', 'if-range': `"${sha256('other')}"` } });
  t.is(stale.status, 200);
  t.is(await stale.text(), text);
});

test.serial('Range across chunk boundaries of a multi-chunk blob returns exactly those bytes', async (t) => {
  const body = randomBytes(3 * CHUNK + 777);
  await put201(t, 'range/big', body);
  const cases: [number, number][] = [
    [CHUNK - 10, CHUNK + 9],
    [CHUNK - 1, 2 * CHUNK],
    [10, 3 * CHUNK + 100],
    [3 * CHUNK, 3 * CHUNK + 776],
  ];
  for (const [start, end] of cases) {
    const r = await call(start % MEMBERS, blobPath('range/big'), { headers: { range: `bytes=${start}-${end}` } });
    t.is(r.status, 206);
    const got = await bodyOf(r);
    t.is(r.headers.get('content-range'), `bytes ${start}-${end}/${body.length}`);
    t.is(got.length, end - start + 1);
    t.is(sha256(got), sha256(body.subarray(start, end + 1)), `${start}-${end}`);
  }
});

// ---- conditional reads ---------------------------------------------------------------------------

test.serial('strong ETag: If-None-Match with the current etag is 304 (no body, validators kept); another etag is 200', async (t) => {
  const w1 = await put201(t, 'etag/a', 'one');
  const h = await call(0, blobPath('etag/a'));
  t.is(h.headers.get('etag'), `"${sha256('one')}"`);
  t.is(w1.etag, sha256('one'));
  await h.arrayBuffer();

  for (const inm of [`"${w1.etag}"`, `W/"${w1.etag}"`, `"${sha256('x')}", "${w1.etag}"`, '*']) {
    const r = await call(1, blobPath('etag/a'), { headers: { 'if-none-match': inm } });
    t.is(r.status, 304, inm);
    t.is((await bodyOf(r)).length, 0);
    t.is(r.headers.get('etag'), `"${w1.etag}"`);
    t.is(r.headers.get('x-tempest-version'), w1.version);
    t.is(r.headers.get('last-modified'), lastModifiedOf(w1.timestamp));
  }
  const other = await call(2, blobPath('etag/a'), { headers: { 'if-none-match': `"${sha256('x')}"` } });
  t.is(other.status, 200);
  t.is(await other.text(), 'one');

  // After a new version the old etag no longer matches.
  const w2 = await put201(t, 'etag/a', 'two');
  const r = await call(0, blobPath('etag/a'), { headers: { 'if-none-match': `"${w1.etag}"` } });
  t.is(r.status, 200);
  t.is(await r.text(), 'two');
  t.is(r.headers.get('etag'), `"${w2.etag}"`);
});

// ---- conditional writes --------------------------------------------------------------------------

test.serial('If-None-Match: * creates only: 201 on a new key, 412 on an existing one (nothing written)', async (t) => {
  const key = 'inm/a';
  const { r, json } = await put(key, 'first', { 'if-none-match': '*' });
  t.is(r.status, 201);
  assertWritten(t, r, json, key, 'first');
  const before = await versionsOf(key);
  t.is(before.versions.length, 1);

  for (let i = 0; i < MEMBERS; i++) {
    const again = await call(i, blobPath(key), { method: 'PUT', body: 'second', headers: { 'if-none-match': '*' } });
    t.is(again.headers.get('etag'), null);
    t.is(again.headers.get('x-tempest-version'), null);
    await assertError(t, again, 412, 'ERR_STORE_PRECONDITION');
  }
  t.deepEqual(await versionsOf(key), before);
  const g = await call(2, blobPath(key));
  t.is(await g.text(), 'first');
  t.is(g.headers.get('x-tempest-version'), json.version);

  // After a delete, the key has no live version: create-only succeeds again.
  t.is((await call(0, blobPath(key), { method: 'DELETE' })).status, 200);
  const recreated = await put201(t, key, 'third', { 'if-none-match': '*' });
  t.is(recreated.etag, sha256('third'));
  t.is((await versionsOf(key)).versions.length, 3);
});

test.serial('If-Match: the current etag swaps (201), a stale one is 412 and changes nothing', async (t) => {
  const key = 'im/a';
  const w1 = await put201(t, key, 'v1');
  const w2 = await put201(t, key, 'v2', { 'if-match': `"${w1.etag}"` }, 1);
  t.is(w2.etag, sha256('v2'));
  t.true(BigInt(w2.version) > BigInt(w1.version));

  const stale = await call(2, blobPath(key), { method: 'PUT', body: 'v3', headers: { 'if-match': `"${w1.etag}"` } });
  await assertError(t, stale, 412, 'ERR_STORE_PRECONDITION');
  const g = await call(0, blobPath(key));
  t.is(await g.text(), 'v2');
  t.is(g.headers.get('x-tempest-version'), w2.version);
  t.deepEqual(
    (await versionsOf(key)).versions.map((v) => v.version),
    [w1.version, w2.version],
  );

  // A missing key never matches; a weak tag never matches (strong comparison).
  await assertError(t, await call(0, blobPath('im/missing'), { method: 'PUT', body: 'x', headers: { 'if-match': `"${w1.etag}"` } }), 412, 'ERR_STORE_PRECONDITION');
  t.is((await versionsOf('im/missing')).status, 404);
  await assertError(t, await call(0, blobPath(key), { method: 'PUT', body: 'x', headers: { 'if-match': `W/"${w2.etag}"` } }), 412, 'ERR_STORE_PRECONDITION');
  // `*` and lists: matched against the current version.
  const w3 = await put201(t, key, 'v3', { 'if-match': '*' });
  const w4 = await put201(t, key, 'v4', { 'if-match': `"${w1.etag}", "${w3.etag}"` });
  t.is((await versionsOf(key)).versions.length, 4);
  t.is(w4.etag, sha256('v4'));
});

// ---- checksums -----------------------------------------------------------------------------------

test.serial('Content-MD5 (base64) and x-checksum-sha256 (hex or base64) that match the body: 201', async (t) => {
  const body = randomBytes(CHUNK + 5);
  const hex = sha256(body);
  const b64 = createHash('sha256').update(body).digest('base64');
  const a = await put201(t, 'sum/md5', body, { 'content-md5': md5b64(body) });
  t.is(a.etag, hex);
  const b = await put201(t, 'sum/sha-hex', body, { 'x-checksum-sha256': hex });
  t.is(b.etag, hex);
  const c2 = await put201(t, 'sum/sha-b64', body, { 'x-checksum-sha256': b64 });
  t.is(c2.etag, hex);
  const d = await put201(t, 'sum/both', body, { 'content-md5': md5b64(body), 'x-checksum-sha256': hex.toUpperCase() });
  t.is(d.etag, hex);
  for (const key of ['sum/md5', 'sum/sha-hex', 'sum/sha-b64', 'sum/both']) {
    const g = await call(1, blobPath(key));
    t.is(sha256(await bodyOf(g)), hex, key);
  }
});

// ---- POST (multipart) ----------------------------------------------------------------------------

test.serial('POST /v1/blobs/{key} multipart (field file): 201 like PUT; GET returns the part bytes and its type', async (t) => {
  const body = randomBytes(CHUNK + 4321);
  const form = new FormData();
  form.append('x-checksum-sha256', sha256(body));
  form.append('file', new Blob([body], { type: 'image/jpeg' }), 'photo.jpg');
  const key = 'post/photo.jpg';
  const r = await call(1, blobPath(key), { method: 'POST', body: form });
  const json = (await r.json()) as Written;
  t.is(r.status, 201, JSON.stringify(json));
  assertWritten(t, r, json, key, body);

  for (let i = 0; i < MEMBERS; i++) {
    const g = await call(i, blobPath(key));
    t.is(g.status, 200);
    t.is(g.headers.get('content-type'), 'image/jpeg');
    t.is(g.headers.get('etag'), `"${sha256(body)}"`);
    t.is(g.headers.get('x-tempest-version'), json.version);
    t.is(sha256(await bodyOf(g)), sha256(body));
  }
  // A second POST is a second version; If-None-Match: * applies to POST too.
  const form2 = new FormData();
  form2.append('file', new Blob(['small']), 'small.txt');
  const r2 = await call(0, blobPath(key), { method: 'POST', body: form2, headers: { 'if-none-match': '*' } });
  await assertError(t, r2, 412, 'ERR_STORE_PRECONDITION');
  t.is((await versionsOf(key)).versions.length, 1);
});

// ---- the past: ?version= and ?at= ----------------------------------------------------------------

test.serial('GET ?version=N and ?at=<time> read older versions (ISO, ISO with dots, epoch ms)', async (t) => {
  const key = 'past/a';
  const w1 = await put201(t, key, 'version one');
  await sleep(30);
  const w2 = await put201(t, key, 'version two');
  await sleep(30);
  const w3 = await put201(t, key, 'version three');

  const get = async (query: string, member: number) => {
    const r = await call(member, `${blobPath(key)}?${query}`);
    return { r, text: await r.text() };
  };

  for (const [w, text] of [[w1, 'version one'], [w2, 'version two'], [w3, 'version three']] as [Written, string][]) {
    const { r, text: got } = await get(`version=${w.version}`, 2);
    t.is(r.status, 200);
    t.is(got, text);
    t.is(r.headers.get('x-tempest-version'), w.version);
    t.is(r.headers.get('x-tempest-timestamp'), w.timestamp);
    t.is(r.headers.get('etag'), `"${w.etag}"`);
  }

  const us1 = microsOf(w1.timestamp);
  const us2 = microsOf(w2.timestamp);
  t.true(us2 - us1 > 10_000n, `${w1.timestamp} .. ${w2.timestamp}`);
  const between = us1 + (us2 - us1) / 2n;
  const betweenIso = isoOfMicros(between);
  const forms = [
    betweenIso,
    betweenIso.replace(/:/g, '.'),
    `${betweenIso.slice(0, 19)}.${betweenIso.slice(20, 23)}Z`,
    String(between / 1000n),
    encodeURIComponent(betweenIso),
  ];
  for (const at of forms) {
    const { r, text } = await get(`at=${at}`, 1);
    t.is(r.status, 200, at);
    t.is(text, 'version one', at);
    t.is(r.headers.get('x-tempest-version'), w1.version, at);
  }
  // A version's own timestamp reads that version.
  const own = await get(`at=${w2.timestamp}`, 0);
  t.is(own.text, 'version two');
  t.is(own.r.headers.get('x-tempest-version'), w2.version);
  // Before the first version: nothing.
  await assertError(t, (await call(0, `${blobPath(key)}?at=${isoOfMicros(us1 - 5000n)}`)), 404, 'ERR_STORE_NOT_FOUND');
  // A version that does not exist.
  await assertError(t, await call(0, `${blobPath(key)}?version=${BigInt(w3.version) + 1000n}`), 404, 'ERR_STORE_NOT_FOUND');
  // HEAD at a past time.
  const h = await call(2, `${blobPath(key)}?at=${betweenIso}`, { method: 'HEAD' });
  t.is(h.status, 200);
  t.is(h.headers.get('content-length'), String('version one'.length));
  t.is(h.headers.get('x-tempest-version'), w1.version);
  // The current version is still the newest.
  t.is((await get('', 0)).text, 'version three');
});

// ---- DELETE --------------------------------------------------------------------------------------

test.serial('DELETE writes a delete marker: GET 404 with x-tempest-delete-marker, history still readable, versions list it', async (t) => {
  const key = 'del/a';
  const w1 = await put201(t, key, 'alive');
  const d = await call(1, blobPath(key), { method: 'DELETE' });
  t.is(d.status, 200);
  t.is(d.headers.get('x-tempest-delete-marker'), 'true');
  const dj = (await d.json()) as { key: string; version: string; timestamp: string; delete_marker: boolean };
  t.deepEqual(Object.keys(dj).sort(), ['delete_marker', 'key', 'timestamp', 'version']);
  t.is(dj.key, key);
  t.is(dj.delete_marker, true);
  t.regex(dj.version, DECIMAL);
  t.regex(dj.timestamp, TIMESTAMP);
  t.true(BigInt(dj.version) > BigInt(w1.version));
  t.is(d.headers.get('x-tempest-version'), dj.version);
  t.is(d.headers.get('x-tempest-timestamp'), dj.timestamp);

  for (let i = 0; i < MEMBERS; i++) {
    const g = await call(i, blobPath(key));
    t.is(g.headers.get('x-tempest-delete-marker'), 'true');
    t.is(g.headers.get('x-tempest-version'), dj.version);
    t.is(g.headers.get('etag'), null);
    await assertError(t, g, 404, 'ERR_STORE_NOT_FOUND');
    const h = await call(i, blobPath(key), { method: 'HEAD' });
    t.is(h.status, 404);
    t.is(h.headers.get('x-tempest-delete-marker'), 'true');
  }
  // The history stays readable.
  const old = await call(2, `${blobPath(key)}?version=${w1.version}`);
  t.is(old.status, 200);
  t.is(await old.text(), 'alive');
  t.is(old.headers.get('etag'), `"${w1.etag}"`);
  const before = await call(0, `${blobPath(key)}?at=${w1.timestamp}`);
  t.is(await before.text(), 'alive');
  // ?version= of the marker itself is a delete marker too.
  const marker = await call(0, `${blobPath(key)}?version=${dj.version}`);
  t.is(marker.headers.get('x-tempest-delete-marker'), 'true');
  await assertError(t, marker, 404, 'ERR_STORE_NOT_FOUND');

  const { status, versions } = await versionsOf(key, 1);
  t.is(status, 200);
  t.deepEqual(versions, [
    { version: w1.version, timestamp: w1.timestamp, size: 5, etag: w1.etag, delete_marker: false },
    { version: dj.version, timestamp: dj.timestamp, size: 0, etag: null, delete_marker: true },
  ]);
  // Deleting again: no live version (404), and no second marker.
  const again = await call(0, blobPath(key), { method: 'DELETE' });
  await assertError(t, again, 404, 'ERR_STORE_NOT_FOUND');
  t.is((await versionsOf(key)).versions.length, 2);
  // A missing key: 404 without the marker header.
  const missing = await call(0, blobPath('del/never'), { method: 'DELETE' });
  t.is(missing.headers.get('x-tempest-delete-marker'), null);
  await assertError(t, missing, 404, 'ERR_STORE_NOT_FOUND');
  // DELETE with If-Match: stale -> 412, current -> 200.
  const w2 = await put201(t, 'del/b', 'b1');
  await assertError(t, await call(0, blobPath('del/b'), { method: 'DELETE', headers: { 'if-match': `"${sha256('nope')}"` } }), 412, 'ERR_STORE_PRECONDITION');
  t.is((await call(0, blobPath('del/b'))).status, 200);
  const d2 = await call(0, blobPath('del/b'), { method: 'DELETE', headers: { 'if-match': `"${w2.etag}"` } });
  t.is(d2.status, 200);
  await d2.arrayBuffer();
  t.is((await call(0, blobPath('del/b'))).status, 404);
});

// ---- listing -------------------------------------------------------------------------------------

interface ListEntry extends Written {
  content_type: string;
}

async function list(query: string, member = 0): Promise<{ r: Response; entries: ListEntry[]; next_after: string | null }> {
  const r = await call(member, `/v1/blobs?${query}`);
  const j = (await r.json()) as { entries: ListEntry[]; next_after: string | null };
  return { r, entries: j.entries, next_after: j.next_after };
}

test.serial('GET /v1/blobs?prefix=&limit=&after=: 25 keys in pages of 10, in key order, each once, next_after null at the end', async (t) => {
  // 25 keys: k0..k22 (k10 sorts before k2), one nested under k1, one upper case (sorts first).
  const names = Array.from({ length: 23 }, (_, i) => `list/k${i}`);
  names.push('list/k1/nested', 'list/K24');
  const written = new Map<string, Written>();
  for (const [i, key] of names.entries()) written.set(key, await put201(t, key, `body of ${key}`, { 'content-type': 'text/plain' }, i % MEMBERS));
  // Neighbours outside the prefix.
  await put201(t, 'listx/k0', 'outside');
  await put201(t, 'lis', 'outside');
  // A deleted key under the prefix is not listed.
  await put201(t, 'list/deleted', 'gone');
  t.is((await call(0, blobPath('list/deleted'), { method: 'DELETE' })).status, 200);

  const expected = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  t.is(expected.length, 25);
  const seen: string[] = [];
  const pageSizes: number[] = [];
  let after: string | null = '';
  for (let page = 0; after !== null; page++) {
    t.true(page < 10, 'pagination does not end');
    const q: string = `prefix=${encodeURIComponent('list/')}&limit=10${after === '' ? '' : `&after=${encodeURIComponent(after)}`}`;
    const { r, entries, next_after } = await list(q, page % MEMBERS);
    t.is(r.status, 200);
    t.is(r.headers.get('content-type'), JSON_TYPE);
    pageSizes.push(entries.length);
    for (const e of entries) seen.push(e.key);
    if (next_after !== null) t.is(next_after, entries[entries.length - 1]!.key);
    after = next_after;
  }
  t.deepEqual(pageSizes, [10, 10, 5]);
  t.deepEqual(seen, expected);
  t.is(new Set(seen).size, seen.length);

  // One whole page, and the shape of an entry.
  const all = await list('prefix=list/&limit=1000', 1);
  t.deepEqual(all.entries.map((e) => e.key), expected);
  t.is(all.next_after, null);
  for (const e of all.entries) {
    const w = written.get(e.key)!;
    t.deepEqual(e, { ...w, content_type: 'text/plain' });
  }
  // Exactly `limit` keys left: all of them, then either next_after null or an empty next page.
  const tail = await list(`prefix=list/&limit=10&after=${encodeURIComponent(expected[14]!)}`);
  t.deepEqual(tail.entries.map((e) => e.key), expected.slice(15));
  if (tail.next_after !== null) t.deepEqual((await list(`prefix=list/&limit=10&after=${encodeURIComponent(tail.next_after)}`)).entries, []);
  t.log(`next_after with exactly limit keys left: ${JSON.stringify(tail.next_after)}`);
  // `after` need not be a key: it is where the last page stopped.
  t.deepEqual((await list('prefix=list/&after=list/k2')).entries.map((e) => e.key), expected.filter((k) => k > 'list/k2'));
  // A prefix inside a segment.
  t.deepEqual((await list('prefix=list/k1')).entries.map((e) => e.key), expected.filter((k) => k.startsWith('list/k1')));
});

test.serial('GET /v1/blobs?at=<time>: the keys as of then (created later: absent; deleted later: present)', async (t) => {
  const a = await put201(t, 'lat/a', 'a');
  const d = await put201(t, 'lat/d', 'd');
  const m1 = await put201(t, 'lat/m', 'm1');
  const then = m1.timestamp;
  await sleep(20);
  const b = await put201(t, 'lat/b', 'b');
  t.is((await call(1, blobPath('lat/d'), { method: 'DELETE' })).status, 200);
  const m2 = await put201(t, 'lat/m', 'm2 changed');

  const past = await list(`prefix=lat/&at=${encodeURIComponent(then)}`, 2);
  t.is(past.r.status, 200);
  t.deepEqual(past.entries.map((e) => e.key), ['lat/a', 'lat/d', 'lat/m']);
  t.is(past.next_after, null);
  const pm = past.entries.find((e) => e.key === 'lat/m')!;
  t.is(pm.version, m1.version);
  t.is(pm.etag, m1.etag);
  t.is(past.entries.find((e) => e.key === 'lat/d')!.version, d.version);
  t.is(past.entries.find((e) => e.key === 'lat/a')!.version, a.version);

  const now = await list('prefix=lat/', 0);
  t.deepEqual(now.entries.map((e) => e.key), ['lat/a', 'lat/b', 'lat/m']);
  t.is(now.entries.find((e) => e.key === 'lat/b')!.version, b.version);
  t.is(now.entries.find((e) => e.key === 'lat/m')!.version, m2.version);

  // Before anything: empty.
  const before = await list(`prefix=lat/&at=${isoOfMicros(microsOf(a.timestamp) - 1000n)}`, 1);
  t.is(before.r.status, 200);
  t.deepEqual(before.entries, []);
  t.is(before.next_after, null);
});

// ---- versions ------------------------------------------------------------------------------------

test.serial('GET /v1/versions/{key}: every version oldest first, delete markers included', async (t) => {
  const key = 'ver/a';
  const w = [await put201(t, key, 'one'), await put201(t, key, 'two two', {}, 1), await put201(t, key, 'three three three', {}, 2)];
  const d = await call(0, blobPath(key), { method: 'DELETE' });
  const dj = (await d.json()) as { version: string; timestamp: string };
  t.is(d.status, 200);
  for (let i = 0; i < MEMBERS; i++) {
    const r = await call(i, blobPath(key, '/v1/versions/'));
    t.is(r.status, 200);
    t.is(r.headers.get('content-type'), JSON_TYPE);
    const j = (await r.json()) as { key: string; versions: VersionEntry[] };
    t.deepEqual(j, {
      key,
      versions: [
        ...w.map((v) => ({ version: v.version, timestamp: v.timestamp, size: v.size, etag: v.etag, delete_marker: false })),
        { version: dj.version, timestamp: dj.timestamp, size: 0, etag: null, delete_marker: true },
      ],
    });
    const vs = j.versions.map((v) => BigInt(v.version));
    t.true(vs.every((v, k) => k === 0 || v > vs[k - 1]!));
    const ts = j.versions.map((v) => microsOf(v.timestamp));
    t.true(ts.every((v, k) => k === 0 || v >= ts[k - 1]!));
  }
  await assertError(t, await call(0, blobPath('ver/none', '/v1/versions/')), 404, 'ERR_STORE_NOT_FOUND');
});

// ---- watch ---------------------------------------------------------------------------------------

interface SseEvent {
  event?: string;
  id?: string;
  data?: string;
  comment?: string;
}

/** Reads a text/event-stream response event by event (comments reported as such). */
class SseReader {
  private buf = '';
  private readonly queue: SseEvent[] = [];
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  async next(timeout_ms: number): Promise<SseEvent | null> {
    const deadline = Date.now() + timeout_ms;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([this.reader.read(), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), left)))]);
      clearTimeout(timer);
      if (chunk === 'timeout') return null;
      if (chunk.done) throw new Error('the event stream ended');
      this.buf += this.decoder.decode(chunk.value, { stream: true });
      for (let end = this.buf.indexOf('\n\n'); end >= 0; end = this.buf.indexOf('\n\n')) {
        const block = this.buf.slice(0, end);
        this.buf = this.buf.slice(end + 2);
        const ev: SseEvent = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) ev.comment = line.slice(1).trim();
          else {
            const colon = line.indexOf(':');
            const field = line.slice(0, colon);
            const value = line.slice(colon + 1).replace(/^ /, '');
            if (field === 'event' || field === 'id') ev[field] = value;
            else if (field === 'data') ev.data = ev.data === undefined ? value : `${ev.data}\n${value}`;
          }
        }
        this.queue.push(ev);
      }
    }
    return this.queue.shift()!;
  }

  /** The next event that is not a comment (keep-alives skipped). */
  async nextEvent(timeout_ms: number): Promise<SseEvent | null> {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const ev = await this.next(Math.max(0, deadline - Date.now()));
      if (ev === null || ev.comment === undefined) return ev;
    }
  }

  cancel(): Promise<void> {
    return this.reader.cancel().catch(() => {});
  }
}

test.serial('GET /v1/watch?prefix=: Server-Sent Events, one per new version under the prefix, in order', async (t) => {
  const ac = new AbortController();
  const timeout = setTimeout(() => ac.abort(), 60_000);
  try {
    const r = await fetch(`${c.url(2)}/v1/watch?prefix=${encodeURIComponent('w/')}`, { signal: ac.signal });
    t.is(r.status, 200);
    t.is(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    t.is(r.headers.get('cache-control'), 'no-cache');
    const sse = new SseReader(r.body!);
    // The stream opens with a comment once the watch is in place.
    const hello = await sse.next(10_000);
    t.is(hello?.comment, 'watching "w/"');

    const puts: [string, string, number][] = [
      ['w/a', 'a1', 0],
      ['w/b', 'b1', 1],
      ['wx/outside', 'not under w/', 0],
      ['w/a', 'a2 longer', 2],
      ['w/sub/c', 'c1', 0],
      ['w', 'not under w/ either', 1],
      ['w/b', 'b2', 1],
    ];
    const expected: Written[] = [];
    for (const [key, body, member] of puts) {
      const w = await put201(t, key, body, { 'content-type': 'text/plain' }, member);
      if (key.startsWith('w/')) expected.push(w);
    }
    t.is(expected.length, 5);
    for (const w of expected) {
      const ev = await sse.nextEvent(10_000);
      t.truthy(ev, `no event for ${w.key} v${w.version}`);
      t.is(ev!.event, 'version');
      t.is(ev!.id, w.version);
      t.deepEqual(JSON.parse(ev!.data!), { key: w.key, version: w.version, timestamp: w.timestamp, size: w.size, etag: w.etag, delete_marker: false, content_type: 'text/plain' });
    }
    // Nothing else came: after another outside write and a delete under the prefix, the very
    // next event is the delete marker (the outside write never shows).
    await put201(t, 'wx/outside', 'again');
    await sleep(500);
    const d = await call(0, blobPath('w/a'), { method: 'DELETE' });
    const dj = (await d.json()) as { version: string; timestamp: string };
    t.is(d.status, 200);
    const ev = await sse.nextEvent(10_000);
    t.truthy(ev);
    t.is(ev!.id, dj.version);
    t.deepEqual(JSON.parse(ev!.data!), { key: 'w/a', version: dj.version, timestamp: dj.timestamp, size: 0, etag: null, delete_marker: true, content_type: '' });
    t.is(await sse.nextEvent(300), null);
    await sse.cancel();
  } finally {
    clearTimeout(timeout);
    ac.abort();
  }
});

// ---- cluster, health, metrics --------------------------------------------------------------------

test.serial('GET /v1/cluster: view id, leader, the 3 members, the layout with its shards', async (t) => {
  for (let i = 0; i < MEMBERS; i++) {
    const r = await call(i, '/v1/cluster');
    t.is(r.status, 200);
    t.is(r.headers.get('content-type'), JSON_TYPE);
    const j = (await r.json()) as {
      vid: number;
      leader: number;
      members: { id: number; ip: string; external_port: number }[];
      layout: { type: string; index: number; shards: number[][] }[];
      store: { shards: number; chunk_size_bytes: number };
    };
    t.true(Number.isInteger(j.vid) && j.vid >= 0, JSON.stringify(j));
    t.is(j.leader, 0);
    t.deepEqual(
      j.members.map((m) => m.id).sort(),
      [0, 1, 2],
    );
    for (const m of j.members) {
      t.is(m.ip, '127.0.0.1');
      t.is(m.external_port, c.nodes[m.id]!.external);
    }
    t.true(j.layout.length >= 1);
    const store = j.layout.find((l) => l.type === 'BlobStore' && l.index === 0);
    t.truthy(store, JSON.stringify(j.layout));
    t.is(store!.shards.length, 1);
    t.deepEqual([...store!.shards[0]!].sort(), [0, 1, 2]);
    t.deepEqual(j.store, { shards: 1, chunk_size_bytes: CHUNK });
  }
});

test.serial('GET /healthz is 200 {ok: true}; GET /metrics is Prometheus text with request counters and store gauges', async (t) => {
  for (let i = 0; i < MEMBERS; i++) {
    const h = await call(i, '/healthz');
    t.is(h.status, 200);
    t.deepEqual(await h.json(), { ok: true });
  }
  // A request whose count /metrics must show.
  await put201(t, 'metrics/a', 'counted');
  const m = await call(0, '/metrics');
  t.is(m.status, 200);
  t.regex(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4; charset=utf-8$/);
  const text = await m.text();
  t.regex(text, /^# TYPE tempest_http_requests_total counter$/m);
  t.regex(text, /^tempest_http_requests_total\{route="blob",method="PUT",status="201"\} [1-9]\d*$/m);
  t.regex(text, /^tempest_http_requests_total\{route="healthz",method="GET",status="200"\} [1-9]\d*$/m);
  t.regex(text, /^tempest_http_request_duration_seconds_bucket\{.*route="blob".*\} \d+$/m);
  t.regex(text, /^tempest_http_blob_bytes_received_total [1-9]\d*$/m);
  t.regex(text, /^tempest_store_stats_up 1$/m);
  t.regex(text, /^tempest_store_keys [1-9]\d*$/m);
  t.regex(text, /^tempest_store_unreferenced_chunks \d+$/m);
});

test.serial('unknown routes are 404 and wrong methods 405 with Allow, as JSON errors', async (t) => {
  await assertError(t, await call(0, '/v2/blobs/a'), 404, 'ERR_HTTP_NO_ROUTE');
  const r = await call(0, blobPath('x/a'), { method: 'PATCH', body: 'x' });
  t.is(r.headers.get('allow'), 'GET, HEAD, PUT, POST, DELETE');
  await assertError(t, r, 405, 'ERR_HTTP_METHOD_NOT_ALLOWED');
  const l = await call(0, '/v1/blobs', { method: 'DELETE' });
  t.is(l.headers.get('allow'), 'GET, HEAD');
  await assertError(t, l, 405, 'ERR_HTTP_METHOD_NOT_ALLOWED');
});
