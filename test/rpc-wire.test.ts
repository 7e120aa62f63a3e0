/**
 * The RPC wire over real sockets on 127.0.0.1: multiplexed out-of-order replies, size limits on
 * both sides (the connection surviving a refused request), remote errors with their codes,
 * timeouts, connection loss, a 64 MiB body, pushes, backpressure, frames split at every byte, and
 * a peer breaking the frame format (only its own connection closes). FrameReader is also tested
 * alone for split points and zero-copy delivery.
 */
import { createHash } from 'node:crypto';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { decode, encode } from '../engine/rpc/codec.js';
import { isRemoteError, RemoteError } from '../engine/rpc/errors.js';
import { FRAME_PUSH, FRAME_REPLY_ERROR, FRAME_REPLY_OK, FRAME_REQUEST, frameHeader } from '../engine/rpc/frame.js';
import { FrameReader } from '../engine/rpc/frame-reader.js';
import { WireClient, WireServer, type WireBody, type WireRequest, type WireServerOptions } from '../engine/rpc/wire.js';
import { TempestError } from '../engine/util/errors.js';
import { layerLogger } from '../engine/util/log.js';
import { Rng } from './sim/rng.js';

// Many tests provoke warnings on purpose; RPC_TEST_LOG_LEVEL=debug shows them.
const log = layerLogger('rpc-test').child({}, { level: process.env.RPC_TEST_LOG_LEVEL ?? 'silent' });
const HOST = '127.0.0.1';
const KIB = 1024;
const MIB = 1024 * 1024;

type Handler = (req: WireRequest) => Promise<WireBody>;

async function startServer(onRequest: Handler, extra: Partial<WireServerOptions> = {}): Promise<WireServer> {
  return WireServer.listen({ host: HOST, port: 0, max_request_bytes: MIB, max_reply_bytes: MIB, log, onRequest, ...extra });
}

async function connectTo(server: WireServer, extra: Partial<Parameters<typeof WireClient.connect>[0]> = {}): Promise<WireClient> {
  return WireClient.connect({ host: HOST, port: server.port, connect_timeout_ms: 2000, max_request_bytes: MIB, max_reply_bytes: MIB, log, ...extra });
}

const echo: Handler = async (req) => req.body;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function frame(type: number, kind: number, id: number, body: Buffer): Buffer {
  return Buffer.concat([frameHeader(type, kind, 0, id, body.length), body]);
}

/** A raw TCP peer that collects the frames the server sends. */
async function rawPeer(port: number): Promise<{ socket: Socket; frames: { type: number; kind: number; id: number; body: Buffer }[]; closed: Promise<void> }> {
  const socket = connect({ host: HOST, port });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.setNoDelay(true);
  const frames: { type: number; kind: number; id: number; body: Buffer }[] = [];
  const reader = new FrameReader(64 * MIB, [FRAME_REPLY_OK, FRAME_REPLY_ERROR, FRAME_PUSH], {
    onFrame: (type, kind, _hi, lo, body) => frames.push({ type, kind, id: lo, body: Buffer.from(body) }),
    onOversize: () => {},
  });
  socket.on('data', (c: Buffer) => reader.push(c));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, frames, closed };
}

async function until(cond: () => boolean, timeout_ms = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeout_ms) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

test('many concurrent requests are answered out of order and matched to their requests', async (t) => {
  const rng = new Rng(7);
  const delays = Array.from({ length: 500 }, () => rng.int(0, 30));
  const server = await startServer(async (req) => {
    const [i] = decode(req.body) as [number];
    await sleep(delays[i]!);
    return encode(['reply', i, req.kind, req.id]);
  });
  t.teardown(() => server.close());
  const client = await connectTo(server);
  t.teardown(() => client.close());
  const completion: number[] = [];
  const replies = await Promise.all(
    delays.map((_, i) =>
      client.request(i % 7, encode([i]), 5000).then((b) => {
        completion.push(i);
        return decode(b) as [string, number, number, bigint];
      }),
    ),
  );
  replies.forEach(([tag, i, kind], n) => {
    t.is(tag, 'reply');
    t.is(i, n, 'each reply answers its own request');
    t.is(kind, n % 7, 'the kind reaches the handler');
  });
  t.is(new Set(replies.map((r) => r[3])).size, delays.length, 'request ids are unique');
  t.notDeepEqual(completion, [...completion].sort((a, b) => a - b), 'replies arrived out of order');
  t.is(client.pending_requests, 0);
});

test('an oversize request is refused by the server with its code and the connection stays usable', async (t) => {
  let calls = 0;
  const server = await startServer(async (req) => {
    calls++;
    return req.body;
  }, { max_request_bytes: 1 * KIB });
  t.teardown(() => server.close());
  const client = await connectTo(server, { max_request_bytes: 16 * MIB });
  t.teardown(() => client.close());

  for (const size of [1 * KIB + 1, 3 * MIB]) {
    const err = await t.throwsAsync(client.request(1, Buffer.alloc(size, 1), 5000));
    t.true(err instanceof RemoteError);
    t.true(isRemoteError(err, 'ERR_RPC_REQUEST_TOO_LARGE'), String(err));
    t.is((err as RemoteError).code, 'ERR_RPC_REMOTE');
    t.regex(err!.message, new RegExp(`request of ${size} bytes exceeds max_request_bytes 1024`));
  }
  t.is(calls, 0, 'the handler never saw the oversize requests');
  // Interleaved: small requests around an oversize one, all in flight together.
  const [a, big, b] = await Promise.allSettled([
    client.request(1, Buffer.from('before'), 5000),
    client.request(1, [Buffer.alloc(600), Buffer.alloc(600)], 5000),
    client.request(1, Buffer.from('after'), 5000),
  ]);
  t.is(a.status === 'fulfilled' && a.value.toString(), 'before');
  t.true(big.status === 'rejected' && isRemoteError(big.reason, 'ERR_RPC_REQUEST_TOO_LARGE'));
  t.is(b.status === 'fulfilled' && b.value.toString(), 'after');
  t.is((await client.request(1, Buffer.alloc(1 * KIB, 2), 5000)).length, 1 * KIB, 'exactly the limit is accepted');

  // The client refuses above its own limit at once, without sending.
  const small = await connectTo(server, { max_request_bytes: 100 });
  t.teardown(() => small.close());
  const before = calls;
  await t.throwsAsync(small.request(1, Buffer.alloc(101), 5000), { code: 'ERR_RPC_REQUEST_TOO_LARGE', instanceOf: TempestError });
  t.is(small.pending_requests, 0);
  t.is(calls, before);
  t.is((await small.request(1, Buffer.from('ok'), 5000)).toString(), 'ok');
});

test('an oversize reply is replaced by ERR_RPC_REPLY_TOO_LARGE; a client refuses one it gets anyway', async (t) => {
  const server = await startServer(async (req) => {
    const [size, delay_ms] = req.body.toString().split(',').map(Number);
    if (delay_ms) await sleep(delay_ms);
    return Buffer.alloc(size!, 5);
  }, { max_reply_bytes: 64 * KIB });
  t.teardown(() => server.close());
  const client = await connectTo(server, { max_reply_bytes: 16 * MIB });
  t.teardown(() => client.close());
  const err = await t.throwsAsync(client.request(1, Buffer.from(String(64 * KIB + 1)), 5000));
  t.true(isRemoteError(err, 'ERR_RPC_REPLY_TOO_LARGE'), String(err));
  t.is((await client.request(1, Buffer.from(String(64 * KIB)), 5000)).length, 64 * KIB, 'the connection still works');

  // A client with a smaller limit than the server's: the reply is refused and the connection closed.
  const strict = await connectTo(server, { max_reply_bytes: 1 * KIB });
  let closeErr: Error | undefined;
  const closed = new Promise<void>((resolve) => strict.onClose((e) => { closeErr = e; resolve(); }));
  const slow = strict.request(1, Buffer.from('100,300'), 5000); // small, but answered after the big one
  const tooBig = strict.request(1, Buffer.from(String(32 * KIB)), 5000);
  const results = await Promise.allSettled([tooBig, slow]);
  t.true(results[0].status === 'rejected' && (results[0].reason as TempestError).code === 'ERR_RPC_REPLY_TOO_LARGE', 'the oversize reply is refused');
  t.true(results[1].status === 'rejected' && (results[1].reason as TempestError).code === 'ERR_RPC_CONNECTION_LOST', 'the others fail with the connection');
  await closed;
  t.is((closeErr as TempestError | undefined)?.code, 'ERR_RPC_CONNECTION_LOST');
  t.true(strict.closed);
  await t.throwsAsync(strict.request(1, Buffer.from('1'), 1000), { code: 'ERR_RPC_CONNECTION_LOST' });
});

test('handler errors reach the client with their code, message and class name', async (t) => {
  const server = await startServer(async (req) => {
    const what = req.body.toString();
    if (what === 'coded') throw new TempestError('ERR_STORE_NOT_FOUND', 'no key "x"');
    if (what === 'plain') throw new TypeError('bad argument');
    if (what === 'string') throw 'just a string';
    if (what === 'bad-reply') return 'not a buffer' as unknown as Buffer;
    return Buffer.from('fine');
  });
  t.teardown(() => server.close());
  // A handler that throws synchronously (not async) is covered too.
  const syncServer = await startServer(() => {
    throw new TempestError('ERR_SYNC', 'thrown before any await');
  });
  t.teardown(() => syncServer.close());
  const client = await connectTo(server);
  t.teardown(() => client.close());

  const coded = (await t.throwsAsync(client.request(3, Buffer.from('coded'), 5000))) as RemoteError;
  t.like(coded, { code: 'ERR_RPC_REMOTE', remoteCode: 'ERR_STORE_NOT_FOUND', remoteName: 'TempestError', message: 'no key "x"' });
  t.true(coded instanceof TempestError);
  const plain = (await t.throwsAsync(client.request(3, Buffer.from('plain'), 5000))) as RemoteError;
  t.like(plain, { remoteCode: 'ERR_RPC_HANDLER', remoteName: 'TypeError', message: 'bad argument' });
  const str = (await t.throwsAsync(client.request(3, Buffer.from('string'), 5000))) as RemoteError;
  t.like(str, { remoteCode: 'ERR_RPC_HANDLER', message: 'just a string' });
  const badReply = (await t.throwsAsync(client.request(3, Buffer.from('bad-reply'), 5000))) as RemoteError;
  t.like(badReply, { remoteCode: 'ERR_RPC_HANDLER' });
  t.is((await client.request(3, Buffer.from('ok'), 5000)).toString(), 'fine');

  const syncClient = await connectTo(syncServer);
  t.teardown(() => syncClient.close());
  t.like(await t.throwsAsync(syncClient.request(0, Buffer.alloc(0), 5000)), {
    remoteCode: 'ERR_SYNC',
    message: 'thrown before any await',
  });
});

test('a request without a reply in time rejects with ERR_RPC_TIMEOUT; the late reply is ignored', async (t) => {
  let answerLate: () => void = () => {};
  const late = new Promise<void>((resolve) => (answerLate = resolve));
  let lateSent: () => void = () => {};
  const sent = new Promise<void>((resolve) => (lateSent = resolve));
  const server = await startServer(async (req) => {
    if (req.body.toString() === 'late') {
      await late;
      setTimeout(lateSent, 50);
    }
    return req.body;
  });
  t.teardown(() => server.close());
  const client = await connectTo(server);
  t.teardown(() => client.close());
  const start = Date.now();
  await t.throwsAsync(client.request(1, Buffer.from('late'), 50), { code: 'ERR_RPC_TIMEOUT', message: /no reply within 50 ms/ });
  t.true(Date.now() - start >= 45, 'not before the timeout');
  t.is(client.pending_requests, 0);
  answerLate(); // the reply comes after all, and is dropped
  await sent;
  t.is((await client.request(1, Buffer.from('1'), 5000)).toString(), '1', 'the connection still works');
  t.is(client.pending_requests, 0);
});

test('when the connection drops, every pending request rejects with ERR_RPC_CONNECTION_LOST', async (t) => {
  const started: WireRequest[] = [];
  const server = await startServer(async (req) => {
    started.push(req);
    return new Promise<Buffer>(() => {}); // never answers
  });
  const client = await connectTo(server);
  let closeErr: Error | undefined;
  client.onClose((e) => (closeErr = e));
  const pending = Array.from({ length: 20 }, (_, i) => client.request(1, Buffer.from([i]), 10_000));
  await until(() => started.length === 20);
  t.is(client.pending_requests, 20);
  await server.close();
  const results = await Promise.allSettled(pending);
  for (const r of results) t.true(r.status === 'rejected' && (r.reason as TempestError).code === 'ERR_RPC_CONNECTION_LOST');
  t.is((closeErr as TempestError | undefined)?.code, 'ERR_RPC_CONNECTION_LOST');
  t.true(client.closed);
  await t.throwsAsync(client.request(1, Buffer.alloc(1), 1000), { code: 'ERR_RPC_CONNECTION_LOST' });

  // Closing the client itself rejects its pending requests with ERR_RPC_CLOSED.
  const server2 = await startServer(() => new Promise<Buffer>(() => {}));
  t.teardown(() => server2.close());
  const client2 = await connectTo(server2);
  const p = client2.request(1, Buffer.alloc(1), 10_000);
  await client2.close();
  await t.throwsAsync(p, { code: 'ERR_RPC_CLOSED' });
});

test('a 64 MiB body round-trips byte-exact (request and reply), sent as Buffer[] without concatenation', async (t) => {
  t.timeout(60_000);
  const size = 64 * MIB;
  const server = await startServer(async (req) => [req.body.subarray(0, size / 2), req.body.subarray(size / 2)], {
    max_request_bytes: size,
    max_reply_bytes: size,
  });
  t.teardown(() => server.close());
  const client = await connectTo(server, { max_request_bytes: size, max_reply_bytes: size });
  t.teardown(() => client.close());
  const body = Buffer.allocUnsafe(size);
  const words = new Uint32Array(body.buffer, body.byteOffset, size / 4);
  let x = 99;
  for (let i = 0; i < words.length; i++) words[i] = x = (Math.imul(x, 1664525) + 1013904223) >>> 0; // an LCG: no two MiB alike
  const parts = [body.subarray(0, 1000), body.subarray(1000, 40 * MIB), body.subarray(40 * MIB)];
  const reply = await client.request(9, parts, 30_000);
  t.is(reply.length, size);
  const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  t.is(digest(reply), digest(body));
  t.is(reply.buffer.byteLength, size, 'assembled once into a buffer of exactly the frame body size');
});

test('server pushes reach the client with their kind', async (t) => {
  const server = await startServer(echo);
  t.teardown(() => server.close());
  const pushes: [number, string][] = [];
  const client = await connectTo(server, { onPush: (kind, body) => pushes.push([kind, body.toString()]) });
  t.teardown(() => client.close());
  await client.request(1, Buffer.from('hello'), 5000); // the server has accepted the connection by now
  const [conn] = [...server.connections()];
  t.truthy(conn);
  t.true(conn!.push(42, Buffer.from('view changed')));
  t.true(conn!.push(43, [Buffer.from('multi'), Buffer.from('part')]));
  t.throws(() => conn!.push(1, Buffer.alloc(MIB + 1)), { code: 'ERR_RPC_REPLY_TOO_LARGE' });
  await until(() => pushes.length === 2);
  t.deepEqual(pushes, [[42, 'view changed'], [43, 'multipart']]);
});

test('backpressure: at most max_in_flight_requests handlers run at once per connection', async (t) => {
  let running = 0;
  let most = 0;
  const server = await startServer(async (req) => {
    running++;
    most = Math.max(most, running);
    await sleep(2);
    running--;
    return req.body;
  }, { max_in_flight_requests: 4 });
  t.teardown(() => server.close());
  const client = await connectTo(server);
  t.teardown(() => client.close());
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => client.request(1, Buffer.from(String(i)), 10_000)));
  replies.forEach((r, i) => t.is(r.toString(), String(i)));
  t.is(most, 4, `at most 4 handlers at once (saw ${most})`);
});

test('a frame written one byte at a time is parsed; a frame split at every byte boundary too', async (t) => {
  const seen: string[] = [];
  const server = await startServer(async (req) => {
    seen.push(req.body.toString());
    return Buffer.from(`re:${req.body.toString()}`);
  });
  t.teardown(() => server.close());
  const peer = await rawPeer(server.port);
  t.teardown(() => peer.socket.destroy());
  const bytes = Buffer.concat([frame(FRAME_REQUEST, 5, 1, Buffer.from('one byte at a time')), frame(FRAME_REQUEST, 5, 2, Buffer.alloc(0))]);
  for (const b of bytes) {
    peer.socket.write(Buffer.from([b]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await until(() => peer.frames.length === 2);
  t.deepEqual(seen, ['one byte at a time', '']);
  t.deepEqual(peer.frames.map((f) => [f.type, f.kind, f.id, f.body.toString()]), [
    [FRAME_REPLY_OK, 5, 1, 're:one byte at a time'],
    [FRAME_REPLY_OK, 5, 2, 're:'],
  ]);

  // Every split point of a stream of three frames, in FrameReader alone.
  const stream = Buffer.concat([
    frame(FRAME_REQUEST, 1, 10, Buffer.from('alpha')),
    frame(FRAME_REQUEST, 2, 11, Buffer.alloc(0)),
    frame(FRAME_REQUEST, 3, 12, Buffer.from('gamma-gamma')),
  ]);
  const expected = [[1, 10, 'alpha'], [2, 11, ''], [3, 12, 'gamma-gamma']];
  for (let cut = 0; cut <= stream.length; cut++) {
    for (const pieces of [[stream.subarray(0, cut), stream.subarray(cut)], [...stream.subarray(0, cut)].map((b) => Buffer.from([b])).concat([stream.subarray(cut)])]) {
      const got: (string | number)[][] = [];
      const reader = new FrameReader(1000, [FRAME_REQUEST], {
        onFrame: (_type, kind, _hi, lo, body) => got.push([kind, lo, body.toString()]),
        onOversize: () => t.fail('no frame is oversize'),
      });
      for (const p of pieces) reader.push(p);
      t.deepEqual(got, expected, `split at ${cut}`);
      t.is(reader.pending_bytes, 0);
    }
  }
});

test('FrameReader: frames inside one chunk are views of it; oversize bodies are skipped across chunks', (t) => {
  const stream = Buffer.concat([frame(FRAME_REQUEST, 1, 1, Buffer.from('first')), frame(FRAME_REQUEST, 1, 2, Buffer.alloc(5000, 7)), frame(FRAME_REQUEST, 1, 3, Buffer.from('third'))]);
  const bodies: Buffer[] = [];
  const oversize: [number, number][] = [];
  const reader = new FrameReader(100, [FRAME_REQUEST], {
    onFrame: (_t, _k, _hi, _lo, body) => bodies.push(body),
    onOversize: (_t, _k, _hi, lo, n) => oversize.push([lo, n]),
  });
  // The oversize frame's body arrives in pieces; only the other two are delivered.
  reader.push(stream.subarray(0, 100));
  reader.push(stream.subarray(100, 3000));
  reader.push(stream.subarray(3000));
  t.deepEqual(oversize, [[2, 5000]]);
  t.deepEqual(bodies.map((b) => b.toString()), ['first', 'third']);
  t.is(bodies[0]!.buffer, stream.buffer, 'a frame inside one chunk is delivered as a view, not a copy');
  t.throws(() => new FrameReader(100, [FRAME_REQUEST], { onFrame: () => {}, onOversize: () => {} }).push(frameHeader(FRAME_REPLY_OK, 0, 0, 0, 0)), {
    code: 'ERR_RPC_PROTOCOL',
  });
});

test('a malformed length or frame type from a raw socket closes only that connection', async (t) => {
  const server = await startServer(echo);
  t.teardown(() => server.close());
  const good = await connectTo(server);
  t.teardown(() => good.close());
  t.is((await good.request(1, Buffer.from('a'), 5000)).toString(), 'a');

  const badLength = Buffer.alloc(15);
  badLength.writeUInt32BE(3, 0); // shorter than the 11 bytes after the length field
  const badType = frameHeader(77, 0, 0, 1, 0);
  for (const bytes of [badLength, badType]) {
    const peer = await rawPeer(server.port);
    peer.socket.write(bytes);
    await peer.closed;
    t.pass('the server closed the broken connection');
  }
  t.is((await good.request(1, Buffer.from('b'), 5000)).toString(), 'b', 'other connections are unaffected');
  t.is([...server.connections()].length, 1);
});

test('a server breaking the frame format costs the client its connection; pending requests fail', async (t) => {
  const raw = createServer((socket) => {
    socket.once('data', () => socket.write(frameHeader(FRAME_REQUEST, 0, 0, 1, 0))); // clients never get REQUEST frames
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, HOST, resolve));
  t.teardown(() => raw.close());
  const client = await WireClient.connect({ host: HOST, port: (raw.address() as AddressInfo).port, connect_timeout_ms: 2000, max_request_bytes: MIB, max_reply_bytes: MIB, log });
  const err = await t.throwsAsync(client.request(1, Buffer.from('x'), 5000));
  t.is((err as TempestError).code, 'ERR_RPC_CONNECTION_LOST');
  t.regex(err!.message, /unexpected frame type REQUEST/);
  t.true(client.closed);
});

test('listen and connect failures are TempestErrors naming the address', async (t) => {
  const server = await startServer(echo);
  t.teardown(() => server.close());
  const err = await t.throwsAsync(startServer(echo, { port: server.port }));
  t.true(err instanceof TempestError);
  t.is((err as TempestError).code, 'ERR_TRANSPORT_ADDRESS_IN_USE');
  t.true(err!.message.includes(String(server.port)));
  const port = server.port;
  await server.close();
  const refused = await t.throwsAsync(WireClient.connect({ host: HOST, port, connect_timeout_ms: 2000, max_request_bytes: 1, max_reply_bytes: 1, log }));
  t.like(refused, { code: 'ERR_RPC_CONNECT_FAILED' });
  t.true(refused!.message.includes(`${HOST}:${port}`));
  await t.throwsAsync(WireClient.connect({ host: HOST, port: 1, connect_timeout_ms: 1000, max_request_bytes: -1, max_reply_bytes: 1, log }), {
    code: 'ERR_RPC_INVALID_ARGUMENT',
  });
});
