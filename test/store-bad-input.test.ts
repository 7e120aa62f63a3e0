/**
 * Acceptance tests of the HTTP blob API (DESIGN §11) against bad input, on a real 3-process
 * cluster: bad keys, times, query parameters and Range headers; bodies over max_blob_size (with and
 * without Content-Length); checksum mismatches; clients that go away mid-upload. Every refused
 * write must leave no version, and every chunk an upload left behind must be collected.
 *
 * The cluster runs with [HTTP] max_blob_size = 1 MiB and 256 KiB chunks ([DERECHO] block_size),
 * so an upload cut at (or aborted before) the limit has already stored several chunks; with
 * [STORE] chunk_grace_ms = 1000 and collect_interval_ms = 500 they are collected within seconds.
 * Requests that fetch would normalize (`..` and `.` segments, `%2e%2e`) or cannot shape (a body
 * left open, an abort mid-body, Expect: 100-continue) go through node:http.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { blobPath, md5b64, sha256, sleep } from './helpers/http-blob.js';
import { StoreCluster } from './helpers/store-cluster.js';

const REQUEST_TIMEOUT_MS = 20_000;
const MEMBERS = 3;
const KIB = 1024;
const MIB = 1024 * KIB;
const MAX_BLOB = MIB;
const CHUNK = 256 * KIB;
const JSON_TYPE = 'application/json; charset=utf-8';
const COLLECT_WAIT_MS = 30_000;

let c: StoreCluster;

test.before(async () => {
  c = await StoreCluster.create(MEMBERS, {
    overrides: [`--HTTP/max_blob_size=${MAX_BLOB}`, `--DERECHO/block_size=${CHUNK}`, '--STORE/chunk_grace_ms=1000', '--STORE/collect_interval_ms=500'],
  });
  await c.startAll();
});

test.after.always(async () => {
  await c?.stop();
});

// ---- helpers ------------------------------------------------------------------------------------



function call(i: number, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(c.url(i) + path, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The server sent 100 Continue. */
  continued: boolean;
  /** Body bytes written before the reply came. */
  written: number;
  json(): Record<string, unknown>;
}

interface RawRequest {
  method: string;
  /** Sent exactly as given (no normalization of `.`/`..`, no re-encoding). */
  path: string;
  headers?: OutgoingHttpHeaders;
  /** Written piece by piece, stopping as soon as a reply arrives. */
  body?: Buffer[];
  /** Leave the body open after the pieces (default: end it). */
  hold_open?: boolean;
  timeout_ms?: number;
}

/** One request over node:http on a fresh connection; resolves with the whole reply. */
function raw(member: number, r: RawRequest): Promise<RawReply> {
  const url = new URL(c.url(member));
  return new Promise((resolve, reject) => {
    let continued = false;
    let responded = false;
    let written = 0;
    const req = request({ host: url.hostname, port: url.port, method: r.method, path: r.path, headers: r.headers, agent: false });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`${r.method} ${r.path.slice(0, 100)}: no complete reply within ${r.timeout_ms ?? REQUEST_TIMEOUT_MS} ms (${written} body bytes written)`));
    }, r.timeout_ms ?? REQUEST_TIMEOUT_MS);
    /** Resolves on the first of `events` (or a reply, or the end of the request), then stops listening. */
    const first = (...events: string[]): Promise<void> =>
      new Promise<void>((ok) => {
        const all = [...events, 'response', 'close'];
        const done = (): void => {
          for (const e of all) req.off(e, done);
          ok();
        };
        for (const e of all) req.on(e, done);
      });
    const write = async (): Promise<void> => {
      if (r.headers?.expect === '100-continue') {
        // The body only after the 100 (or never, when a reply comes first).
        await first('continue');
        if (responded) return;
      }
      for (const piece of r.body ?? []) {
        if (responded || req.destroyed) return;
        written += piece.length;
        if (!req.write(piece)) await first('drain');
      }
      if (!responded && !req.destroyed && r.hold_open !== true) req.end();
    };
    req.on('continue', () => (continued = true));
    req.on('response', (res) => {
      responded = true;
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(parts);
        resolve({ status: res.statusCode!, headers: res.headers, body, continued, written, json: () => JSON.parse(body.toString()) as Record<string, unknown> });
        req.destroy();
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    req.on('error', (err) => {
      // Writing into a connection the server closed after replying: the reply is what counts.
      if (responded) return;
      clearTimeout(timer);
      reject(err);
    });
    // The headers go out at once, even when no body follows (yet).
    req.flushHeaders();
    void write();
  });
}

/** Asserts a JSON error reply from fetch: exactly {error, message}, with this status and code. */
async function assertError(t: ExecutionContext, r: Response, status: number, code: string, what = ''): Promise<void> {
  const text = await r.text();
  t.is(r.status, status, `${what}: ${text}`);
  t.is(r.headers.get('content-type'), JSON_TYPE, what);
  const j = JSON.parse(text) as Record<string, unknown>;
  t.deepEqual(Object.keys(j).sort(), ['error', 'message'], what);
  t.is(j.error, code, `${what}: ${text}`);
}

/** The same for a raw reply (HEAD replies have no body to check). */
function assertRawError(t: ExecutionContext, r: RawReply, status: number, code: string, what = ''): void {
  t.is(r.status, status, `${what}: ${r.body.toString().slice(0, 300)}`);
  if (r.body.length === 0) return;
  t.is(r.headers['content-type'], JSON_TYPE, what);
  const j = r.json();
  t.deepEqual(Object.keys(j).sort(), ['error', 'message'], what);
  t.is(j.error, code, `${what}: ${r.body.toString().slice(0, 300)}`);
}

/** The key has no version at all: GET and HEAD 404 (not a delete marker), /v1/versions 404. */
async function assertNoVersion(t: ExecutionContext, key: string, what = key): Promise<void> {
  for (let i = 0; i < MEMBERS; i++) {
    const g = await call(i, blobPath(key));
    t.is(g.headers.get('x-tempest-delete-marker'), null, what);
    t.is(g.headers.get('x-tempest-version'), null, what);
    await assertError(t, g, 404, 'ERR_STORE_NOT_FOUND', `GET ${what} on member ${i}`);
    await assertError(t, await call(i, blobPath(key, '/v1/versions/')), 404, 'ERR_STORE_NOT_FOUND', `versions of ${what} on member ${i}`);
  }
}

async function allKeys(): Promise<string[]> {
  const r = await call(0, '/v1/blobs?limit=1000');
  const j = (await r.json()) as { entries: { key: string }[]; next_after: string | null };
  if (r.status !== 200 || j.next_after !== null) throw new Error(`listing: ${r.status} ${JSON.stringify(j).slice(0, 200)}`);
  return j.entries.map((e) => e.key);
}

async function put201(t: ExecutionContext, key: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<{ version: string; etag: string }> {
  const r = await call(0, blobPath(key), { method: 'PUT', body, headers });
  const j = (await r.json()) as { version: string; etag: string };
  t.is(r.status, 201, `PUT ${key}: ${JSON.stringify(j)}`);
  return j;
}

/** A metric's value in /metrics text (a sample without labels), or undefined when absent. */
function metric(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

async function metricsOf(member: number): Promise<string> {
  const r = await call(member, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics of member ${member}: ${r.status}`);
  return r.text();
}

interface ChunkStats {
  up: number | undefined;
  chunks: number | undefined;
  unreferenced: number | undefined;
}

async function chunkStats(member: number): Promise<ChunkStats> {
  const text = await metricsOf(member);
  return { up: metric(text, 'tempest_store_stats_up'), chunks: metric(text, 'tempest_store_chunks'), unreferenced: metric(text, 'tempest_store_unreferenced_chunks') };
}

// ---- keys ----------------------------------------------------------------------------------------

const BAD_KEY_PATHS: [string, string][] = [
  ['a `..` segment', '/v1/blobs/bk/x/../y'],
  ['a `..` segment, percent-encoded', '/v1/blobs/bk/%2e%2e/y'],
  ['a `..` last segment', '/v1/blobs/bk/x/..'],
  ['a `.` segment', '/v1/blobs/bk/./y'],
  ['a `.` segment, percent-encoded', '/v1/blobs/bk/%2E/y'],
  ['a `.` first segment', '/v1/blobs/./bk'],
  ['an empty segment', '/v1/blobs/bk//y'],
  ['an empty segment via %2F', '/v1/blobs/bk%2F%2Fy'],
  ['a trailing slash', '/v1/blobs/bk/y/'],
  ['a leading slash', '/v1/blobs//bk/y'],
  ['a leading %2F', '/v1/blobs/%2Fbk/y'],
  ['the empty key', '/v1/blobs/'],
  ['%FF (not UTF-8)', '/v1/blobs/bk/%FF'],
  ['%C3 (a truncated sequence)', '/v1/blobs/bk/a%C3'],
  ['%E2%82 (a truncated sequence)', '/v1/blobs/bk/%E2%82x'],
  ['an encoded surrogate %ED%A0%80', '/v1/blobs/bk/%ED%A0%80'],
  ['an overlong encoding %C0%AF', '/v1/blobs/bk/%C0%AF'],
  ['a malformed escape %zz', '/v1/blobs/bk/%zz'],
  ['a lone %', '/v1/blobs/bk/50%'],
  ['NUL', '/v1/blobs/bk/a%00b'],
  ['a newline', '/v1/blobs/bk/a%0Ab'],
  ['1025 bytes of ASCII', `/v1/blobs/bk/${'a'.repeat(1022)}`],
  ['1025 bytes of UTF-8 in 515 characters', `/v1/blobs/bk/${'%C3%A9'.repeat(510)}a${'b'}`],
];

test.serial('bad keys (`..`, `.`, empty segments, empty, > 1024 bytes, invalid UTF-8, controls): 400 ERR_STORE_BAD_KEY for every method, nothing written', async (t) => {
  const before = await allKeys();
  // The 1025-byte cases really are 1025 bytes.
  t.is(Buffer.byteLength(decodeURIComponent(BAD_KEY_PATHS.at(-2)![1].slice('/v1/blobs/'.length))), 1025);
  t.is(Buffer.byteLength(decodeURIComponent(BAD_KEY_PATHS.at(-1)![1].slice('/v1/blobs/'.length))), 1025);
  for (const [what, path] of BAD_KEY_PATHS) {
    const member = BAD_KEY_PATHS.findIndex((p) => p[1] === path) % MEMBERS;
    const body = Buffer.from('must not be stored');
    const p = await raw(member, { method: 'PUT', path, headers: { 'content-length': body.length }, body: [body] });
    assertRawError(t, p, 400, 'ERR_STORE_BAD_KEY', `PUT ${what}`);
    t.is(p.headers['x-tempest-version'], undefined, what);
    t.is(p.headers.etag, undefined, what);
    t.is(p.headers.location, undefined, what);
    for (const method of ['GET', 'DELETE']) assertRawError(t, await raw(member, { method, path }), 400, 'ERR_STORE_BAD_KEY', `${method} ${what}`);
    const head = await raw(member, { method: 'HEAD', path });
    t.is(head.status, 400, `HEAD ${what}`);
    t.is(head.body.length, 0);
    const versionsPath = path.replace('/v1/blobs/', '/v1/versions/');
    assertRawError(t, await raw(member, { method: 'GET', path: versionsPath }), 400, 'ERR_STORE_BAD_KEY', `versions ${what}`);
    // A multipart POST is refused on its key before its form is read.
    const form = Buffer.from('--XyZ\r\ncontent-disposition: form-data; name="file"; filename="f"\r\n\r\nmust not be stored\r\n--XyZ--\r\n');
    const post = await raw(member, { method: 'POST', path, headers: { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': form.length }, body: [form] });
    assertRawError(t, post, 400, 'ERR_STORE_BAD_KEY', `POST ${what}`);
  }
  // Nothing was stored under any name (the normalized `bk/y` included).
  t.deepEqual(await allKeys(), before);
  await assertNoVersion(t, 'bk/y');
  await assertNoVersion(t, 'bk/x/y');
});

test.serial('keys of exactly 1024 bytes (ASCII, and 2-byte UTF-8) are accepted; %2F is a slash, %252F three characters', async (t) => {
  const ascii = `ok/${'a'.repeat(1021)}`;
  const utf8 = `ok/${'é'.repeat(510)}a`;
  t.is(Buffer.byteLength(ascii), 1024);
  t.is(Buffer.byteLength(utf8), 1024);
  for (const key of [ascii, utf8]) {
    const w = await put201(t, key, `body of ${key.length}`);
    const g = await call(1, blobPath(key));
    t.is(g.status, 200);
    t.is(await g.text(), `body of ${key.length}`);
    t.is(g.headers.get('x-tempest-version'), w.version);
  }
  const slash = await raw(0, { method: 'PUT', path: '/v1/blobs/ok%2Fslash', headers: { 'content-length': 1 }, body: [Buffer.from('s')] });
  t.is(slash.status, 201);
  t.is(slash.json().key, 'ok/slash');
  const literal = await raw(0, { method: 'PUT', path: '/v1/blobs/ok/%252F', headers: { 'content-length': 1 }, body: [Buffer.from('l')] });
  t.is(literal.status, 201);
  t.is(literal.json().key, 'ok/%2F');
  t.is(literal.headers.location, '/v1/blobs/ok/%252F');
  t.is(await (await call(2, '/v1/blobs/ok/slash')).text(), 's');
});

// ---- times and query parameters ------------------------------------------------------------------

test.serial('malformed times in ?at= are 400 ERR_STORE_BAD_TIME; future times 400 ERR_STORE_FUTURE_TIME (GET, HEAD, listing)', async (t) => {
  await put201(t, 'time/a', 'now');
  const bad = [
    'garbage',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-02-29T00:00:00Z', // 2026 is no leap year
    '2026-04-31T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T00:60:00Z',
    '2026-01-01T00:00:60Z',
    '2026-01-01T00:00:00', // no zone
    '2026-01-01T00:00:00+01:00',
    '2026-01-01t00:00:00z',
    '2026-01-01 00:00:00Z',
    '2026-01-01T10:15.00Z', // mixed separators
    '2026-01-01T00:00:00.Z',
    '2026-01-01T00:00:00.1234567890Z',
    '1969-12-31T23:59:59Z',
    '-1',
    '1.5',
    '',
    '12345678901234567', // 17 digits of epoch ms
  ];
  for (const at of bad) {
    const q = `at=${encodeURIComponent(at)}`;
    await assertError(t, await call(0, `/v1/blobs/time/a?${q}`), 400, 'ERR_STORE_BAD_TIME', `GET ?${q}`);
    await assertError(t, await call(1, `/v1/blobs?prefix=time/&${q}`), 400, 'ERR_STORE_BAD_TIME', `list ?${q}`);
    const h = await call(2, `/v1/blobs/time/a?${q}`, { method: 'HEAD' });
    t.is(h.status, 400, `HEAD ?${q}`);
  }
  const hour = 3600_000;
  const future = [new Date(Date.now() + hour).toISOString(), new Date(Date.now() + hour).toISOString().replace(/:/g, '.'), String(Date.now() + hour), '2999-01-01T00:00:00Z', '9999999999999999'];
  for (const at of future) {
    const q = `at=${encodeURIComponent(at)}`;
    await assertError(t, await call(0, `/v1/blobs/time/a?${q}`), 400, 'ERR_STORE_FUTURE_TIME', `GET ?${q}`);
    await assertError(t, await call(1, `/v1/blobs?${q}`), 400, 'ERR_STORE_FUTURE_TIME', `list ?${q}`);
  }
  // The boundary: now (and a valid past time) are read fine.
  const ok = await call(0, `/v1/blobs/time/a?at=${encodeURIComponent(new Date().toISOString())}`);
  t.is(ok.status, 200);
  t.is(await ok.text(), 'now');
});

test.serial('bad ?version=, ?limit=, repeated or malformed parameters: 400 ERR_STORE_BAD_REQUEST', async (t) => {
  const w = await put201(t, 'query/a', 'q');
  const blob = [
    'version=abc',
    'version=-1',
    'version=1.5',
    'version=',
    `version=${(1n << 64n).toString()}`,
    'version=123456789012345678901',
    `version=${w.version}&at=${encodeURIComponent(new Date().toISOString())}`,
    `version=${w.version}&version=${w.version}`,
    'at=2026-01-01T00:00:00Z&at=2026-01-01T00:00:00Z',
    'version=%FF',
    '%FF=1',
  ];
  for (const q of blob) await assertError(t, await call(0, `/v1/blobs/query/a?${q}`), 400, 'ERR_STORE_BAD_REQUEST', `GET ?${q}`);
  for (const q of ['limit=0', 'limit=1001', 'limit=abc', 'limit=-5', 'limit=1e3', 'limit=', 'prefix=a&prefix=b', 'prefix=%E2%82']) {
    await assertError(t, await call(1, `/v1/blobs?${q}`), 400, 'ERR_STORE_BAD_REQUEST', `list ?${q}`);
  }
  // A prefix that no key can start with.
  await assertError(t, await call(2, '/v1/blobs?prefix=a%00'), 400, 'ERR_STORE_BAD_KEY', 'list prefix with NUL');
  await assertError(t, await call(2, `/v1/blobs?prefix=${'a'.repeat(1025)}`), 400, 'ERR_STORE_BAD_KEY', 'list prefix of 1025 bytes');
  await assertError(t, await call(2, '/v1/watch?prefix=a%0A'), 400, 'ERR_STORE_BAD_KEY', 'watch prefix with a newline');
  // The bounds themselves are fine.
  for (const q of ['limit=1', 'limit=1000']) t.is((await call(0, `/v1/blobs?prefix=query/&${q}`)).status, 200, q);
});

test.serial('malformed conditional headers on writes: 400 ERR_HTTP_BAD_REQUEST, nothing written', async (t) => {
  for (const headers of [{ 'if-match': '"unterminated' }, { 'if-match': '' }, { 'if-none-match': `"${sha256('x')}"` }] as Record<string, string>[]) {
    const r = await call(0, blobPath('cond/a'), { method: 'PUT', body: 'x', headers });
    await assertError(t, r, 400, 'ERR_HTTP_BAD_REQUEST', JSON.stringify(headers));
  }
  await assertNoVersion(t, 'cond/a');
});

// ---- Range ---------------------------------------------------------------------------------------

test.serial('malformed Range (bytes=abc, bytes=5-2, other units, several ranges) is ignored: 200 with the whole blob; unsatisfiable is 416 bytes */size', async (t) => {
  // RFC 9110 §14.1.1/§14.2: an invalid range-spec (last < first) or a unit the server does not
  // know makes the header ignored; the server may also ignore a multi-range request (this one
  // does, like S3). Only a valid single range starting at or past the end is a 416.
  const text = 'abcdefghijklmnopqrstuvwxyz';
  const w = await put201(t, 'range/a', text);
  for (const range of ['bytes=abc', 'bytes=5-2', 'bytes=-', 'bytes=', 'bytes 0-4', 'items=0-4', 'bytes=0x1-2', 'bytes=0-1,3-4', 'bytes=0-4,100-']) {
    const r = await call(1, blobPath('range/a'), { headers: { range } });
    t.is(r.status, 200, range);
    t.is(await r.text(), text, range);
    t.is(r.headers.get('content-range'), null, range);
    t.is(r.headers.get('content-length'), '26', range);
    t.is(r.headers.get('etag'), `"${w.etag}"`, range);
  }
  for (const range of ['bytes=26-', 'bytes=26-26', 'bytes=99999999999999999999-', 'bytes=-0']) {
    const r = await call(2, blobPath('range/a'), { headers: { range } });
    t.is(r.headers.get('content-range'), 'bytes */26', range);
    await assertError(t, r, 416, 'ERR_HTTP_RANGE_NOT_SATISFIABLE', range);
  }
  await put201(t, 'range/empty', '');
  for (const range of ['bytes=0-', 'bytes=-1', 'bytes=0-0']) {
    const r = await call(0, blobPath('range/empty'), { headers: { range } });
    t.is(r.headers.get('content-range'), 'bytes */0', range);
    await assertError(t, r, 416, 'ERR_HTTP_RANGE_NOT_SATISFIABLE', range);
  }
});

// ---- too large -----------------------------------------------------------------------------------

test.serial('over max_blob_size with Content-Length: 413 before any body is read (no 100 Continue), nothing written', async (t) => {
  // The headers alone: the reply comes though the body never does.
  const early = await raw(0, { method: 'PUT', path: '/v1/blobs/big/announced', headers: { 'content-length': 2 * MIB }, hold_open: true, timeout_ms: 10_000 });
  assertRawError(t, early, 413, 'ERR_STORE_TOO_LARGE', 'Content-Length 2 MiB, no body');
  t.is(early.headers.connection, 'close');

  // Expect: 100-continue: refused without the 100, so a client sends none of its body.
  const expect = await raw(1, { method: 'PUT', path: '/v1/blobs/big/expect', headers: { 'content-length': 2 * MIB, expect: '100-continue' }, body: [randomBytes(2 * MIB)], timeout_ms: 10_000 });
  assertRawError(t, expect, 413, 'ERR_STORE_TOO_LARGE', 'Expect: 100-continue');
  t.false(expect.continued);
  t.is(expect.written, 0);

  // One byte over, the whole body sent by an ordinary client.
  const over = await call(2, '/v1/blobs/big/full', { method: 'PUT', body: randomBytes(MAX_BLOB + 1) });
  await assertError(t, over, 413, 'ERR_STORE_TOO_LARGE', 'PUT max + 1 bytes');
  const two = await call(0, '/v1/blobs/big/full2', { method: 'PUT', body: randomBytes(2 * MIB) });
  await assertError(t, two, 413, 'ERR_STORE_TOO_LARGE', 'PUT 2 MiB');

  for (const key of ['big/announced', 'big/expect', 'big/full', 'big/full2']) await assertNoVersion(t, key);
  // Exactly the limit is fine.
  const body = randomBytes(MAX_BLOB);
  const w = await put201(t, 'big/limit', body);
  t.is(w.etag, sha256(body));
});

test.serial('over max_blob_size without Content-Length (chunked): the upload is cut at the limit and answered 413 while the client still sends, nothing written', async (t) => {
  const receivedBefore = metric(await metricsOf(0), 'tempest_http_blob_bytes_received_total')!;
  const pieces = Array.from({ length: 64 }, () => randomBytes(64 * KIB)); // 4 MiB, never ended
  const r = await raw(0, { method: 'PUT', path: '/v1/blobs/big/chunked', headers: { 'transfer-encoding': 'chunked' }, body: pieces, hold_open: true, timeout_ms: 15_000 });
  assertRawError(t, r, 413, 'ERR_STORE_TOO_LARGE', 'chunked 4 MiB');
  t.is(r.headers.connection, 'close');
  // The store took the limit and at most one more piece of what the socket delivered.
  const taken = metric(await metricsOf(0), 'tempest_http_blob_bytes_received_total')! - receivedBefore;
  t.true(taken > MAX_BLOB && taken <= MAX_BLOB + 256 * KIB, `the server took ${taken} bytes`);
  t.log(`413 after ${r.written} body bytes written; the server took ${taken}`);
  await assertNoVersion(t, 'big/chunked');

  // A chunked body of exactly the limit is stored.
  const body = randomBytes(MAX_BLOB);
  const ok = await raw(1, { method: 'PUT', path: '/v1/blobs/big/chunked-limit', headers: { 'transfer-encoding': 'chunked' }, body: [body.subarray(0, 300 * KIB), body.subarray(300 * KIB)] });
  t.is(ok.status, 201, ok.body.toString());
  t.is(ok.json().etag, sha256(body));
  t.is(ok.json().size, MAX_BLOB);
});

test.serial('POST with a file part over max_blob_size: 413, nothing written', async (t) => {
  // Small enough that the form is read, and the part is cut at the limit.
  const form = new FormData();
  form.append('file', new Blob([randomBytes(MAX_BLOB + 200 * KIB)]), 'f.bin');
  await assertError(t, await call(0, '/v1/blobs/big/post', { method: 'POST', body: form }), 413, 'ERR_STORE_TOO_LARGE', 'POST 1.2 MiB part');
  // Announced longer than any allowed form: refused unread, as raw bytes and as a FormData (fetch
  // sends the whole FormData before it reads: the server lingers on the connection, dropping a
  // bounded amount, so the reply reaches it instead of EPIPE).
  const boundary = 'tempest-test-boundary';
  const form2 = Buffer.concat([
    Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="f.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`),
    randomBytes(2 * MIB),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const r2 = await call(1, '/v1/blobs/big/post2', { method: 'POST', body: new Blob([form2]), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
  await assertError(t, r2, 413, 'ERR_STORE_TOO_LARGE', 'POST 2 MiB part');
  const form3 = new FormData();
  form3.append('file', new Blob([randomBytes(2 * MIB)]), 'f.bin');
  await assertError(t, await call(2, '/v1/blobs/big/post3', { method: 'POST', body: form3 }), 413, 'ERR_STORE_TOO_LARGE', 'POST 2 MiB FormData');
  await assertNoVersion(t, 'big/post');
  await assertNoVersion(t, 'big/post3');
  await assertNoVersion(t, 'big/post2');
});

// ---- checksums -----------------------------------------------------------------------------------

test.serial('checksum mismatches (x-checksum-sha256, Content-MD5, malformed digests): 400 ERR_STORE_CHECKSUM, nothing written', async (t) => {
  const body = randomBytes(3 * CHUNK + 100); // several chunks are stored before the digest is known
  const other = randomBytes(16);
  const cases: [string, Record<string, string>][] = [
    ['wrong x-checksum-sha256 (hex)', { 'x-checksum-sha256': sha256(other) }],
    ['wrong x-checksum-sha256 (base64)', { 'x-checksum-sha256': createHash('sha256').update(other).digest('base64') }],
    ['wrong Content-MD5', { 'content-md5': md5b64(other) }],
    ['right sha256, wrong Content-MD5', { 'x-checksum-sha256': sha256(body), 'content-md5': md5b64(other) }],
    ['right Content-MD5, wrong sha256', { 'x-checksum-sha256': sha256(other), 'content-md5': md5b64(body) }],
    ['malformed x-checksum-sha256', { 'x-checksum-sha256': 'not-a-digest' }],
    ['x-checksum-sha256 of 31 bytes', { 'x-checksum-sha256': sha256(other).slice(0, 62) }],
    ['malformed Content-MD5', { 'content-md5': 'xyz' }],
  ];
  for (const [i, [what, headers]] of cases.entries()) {
    const key = `sum/new-${i}`;
    await assertError(t, await call(i % MEMBERS, blobPath(key), { method: 'PUT', body, headers }), 400, 'ERR_STORE_CHECKSUM', what);
    await assertNoVersion(t, key, what);
  }
  // On an existing key the current version stays.
  const w = await put201(t, 'sum/existing', 'original');
  await assertError(t, await call(1, blobPath('sum/existing'), { method: 'PUT', body, headers: { 'x-checksum-sha256': sha256(other) } }), 400, 'ERR_STORE_CHECKSUM', 'existing key');
  const g = await call(2, blobPath('sum/existing'));
  t.is(await g.text(), 'original');
  t.is(g.headers.get('x-tempest-version'), w.version);
  const v = (await (await call(0, blobPath('sum/existing', '/v1/versions/'))).json()) as { versions: unknown[] };
  t.is(v.versions.length, 1);
  // A POST's checksum field (sent before the file part) is checked too.
  const form = new FormData();
  form.append('x-checksum-sha256', sha256(other));
  form.append('file', new Blob([body]), 'f.bin');
  await assertError(t, await call(0, blobPath('sum/post'), { method: 'POST', body: form }), 400, 'ERR_STORE_CHECKSUM', 'POST field');
  await assertNoVersion(t, 'sum/post');
});

// ---- malformed forms -----------------------------------------------------------------------------

test.serial('POST without a usable form (not multipart, no file part, two files): 400 ERR_HTTP_MULTIPART, nothing written', async (t) => {
  await assertError(t, await call(0, '/v1/blobs/form/raw', { method: 'POST', body: 'raw bytes', headers: { 'content-type': 'application/octet-stream' } }), 400, 'ERR_HTTP_MULTIPART', 'not multipart');
  const noFile = new FormData();
  noFile.append('other', 'value');
  await assertError(t, await call(1, '/v1/blobs/form/nofile', { method: 'POST', body: noFile }), 400, 'ERR_HTTP_MULTIPART', 'no file part');
  const two = new FormData();
  two.append('file', new Blob(['one']), 'a');
  two.append('file', new Blob(['two']), 'b');
  await assertError(t, await call(2, '/v1/blobs/form/two', { method: 'POST', body: two }), 400, 'ERR_HTTP_MULTIPART', 'two file parts');
  // A form cut before its closing boundary.
  const cut = Buffer.from('--XyZ\r\ncontent-disposition: form-data; name="file"; filename="f"\r\n\r\npartial');
  const r = await raw(0, { method: 'POST', path: '/v1/blobs/form/cut', headers: { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': cut.length }, body: [cut] });
  t.is(r.status, 400, r.body.toString());
  for (const key of ['form/raw', 'form/nofile', 'form/two', 'form/cut']) await assertNoVersion(t, key);
});

// ---- a client that goes away mid-upload, and collection --------------------------------------

test.serial('a client aborting mid-upload leaves no version, and the chunks it stored (and those of every refused upload) are collected', async (t) => {
  // Member 0 takes the upload and is scraped while it runs; members 1 and 2 are first scraped
  // right after the abort (/metrics reads the store's statistics at most once a second).
  const member = 0;
  // Member 0 was scraped by earlier tests: let its cached statistics expire so that the baseline
  // counts every chunk committed since.
  await sleep(1_100);
  const text0 = await metricsOf(member);
  const receivedBefore = metric(text0, 'tempest_http_blob_bytes_received_total') ?? 0;
  const start: ChunkStats = { up: metric(text0, 'tempest_store_stats_up'), chunks: metric(text0, 'tempest_store_chunks'), unreferenced: metric(text0, 'tempest_store_unreferenced_chunks') };
  t.is(start.up, 1);
  const referenced = start.chunks! - start.unreferenced!;
  t.log(`before the abort: ${start.chunks} chunks, ${start.unreferenced} unreferenced`);

  // A chunked PUT that writes 3 chunks' worth and more, then vanishes without ending its body.
  const url = new URL(c.url(member));
  const req = request({ host: url.hostname, port: url.port, method: 'PUT', path: '/v1/blobs/abort/a', headers: { 'transfer-encoding': 'chunked' }, agent: false });
  const failed = new Promise<Error | 'response'>((resolve) => {
    req.on('error', resolve);
    req.once('close', () => resolve(new Error('closed')));
    req.once('response', () => resolve('response'));
  });
  const sent = 3 * CHUNK + 100 * KIB;
  for (let at = 0; at < sent; at += 100 * KIB) req.write(randomBytes(Math.min(100 * KIB, sent - at)));
  // Wait until the server has taken in at least 3 chunks (so they were stored), then abort.
  const deadline = Date.now() + 10_000;
  let received = 0;
  while (received - receivedBefore < 3 * CHUNK) {
    t.true(Date.now() < deadline, `the server took only ${received - receivedBefore} bytes of the upload`);
    if (Date.now() >= deadline) break;
    await sleep(50);
    received = metric(await metricsOf(member), 'tempest_http_blob_bytes_received_total') ?? 0;
  }
  req.destroy();
  t.not(await failed, 'response', 'the server answered an upload that never ended');

  // Right after: no version, and the stored chunks show as unreferenced (the last ones may still
  // be in flight for a few ms).
  await sleep(100);
  let sawUnreferenced = 0;
  for (const m of [1, 2]) {
    const s = await chunkStats(m);
    sawUnreferenced = Math.max(sawUnreferenced, s.unreferenced ?? 0);
    t.log(`member ${m} after the abort: ${s.chunks} chunks, ${s.unreferenced} unreferenced`);
  }
  t.true(sawUnreferenced >= 3, `unreferenced chunks after the abort: ${sawUnreferenced}`);
  await assertNoVersion(t, 'abort/a');

  // Then every member's unreferenced count reaches 0 and the chunk count is back to the
  // referenced ones, within the bound.
  const started = Date.now();
  const settled = new Set<number>();
  let last: ChunkStats[] = [];
  while (settled.size < MEMBERS && Date.now() - started < COLLECT_WAIT_MS) {
    last = await Promise.all([0, 1, 2].map((m) => chunkStats(m)));
    for (const [m, s] of last.entries()) {
      if (s.up === 1 && s.unreferenced === 0 && s.chunks === referenced) settled.add(m);
      else settled.delete(m);
    }
    if (settled.size < MEMBERS) await sleep(250);
  }
  t.is(settled.size, MEMBERS, `after ${Date.now() - started} ms: ${JSON.stringify(last)} (referenced: ${referenced})`);
  t.log(`collected within ${Date.now() - started} ms`);
  await assertNoVersion(t, 'abort/a');
  // The aborted request is counted as such.
  t.regex(await metricsOf(member), /^tempest_http_requests_total\{route="blob",method="PUT",status="aborted"\} [1-9]\d*$/m);
});
