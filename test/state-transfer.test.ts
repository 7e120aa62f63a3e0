/** State transfer on state_transfer_port (engine/membership/state-transfer.ts): records streamed with backpressure, refusals, and streams cut short. */
import test from 'ava';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { fetchState, StateTransferServer } from '../engine/membership/state-transfer.js';
import { layerLogger } from '../engine/util/log.js';
import { freePorts } from '../scripts/lib/child.js';

const log = layerLogger('test');

async function server(): Promise<{ s: StateTransferServer; port: number }> {
  const [port] = await freePorts(1);
  return { s: await StateTransferServer.listen('127.0.0.1', port!, log), port: port! };
}

/** Record i of a deterministic stream: sizes vary from 1 byte to about 1 MiB. */
function record(i: number): Buffer {
  const size = i % 7 === 0 ? 1 : ((i * 7919) % (1 << 20)) + 1;
  return Buffer.alloc(size, i % 251);
}

test('a state of about 170 MiB in 400 records arrives whole and in order, read as it is consumed', async (t) => {
  t.timeout(120_000);
  const { s, port } = await server();
  try {
    const COUNT = 400;
    const sent = createHash('sha256');
    let produced = 0;
    s.offer(3, 0, 1, async function* (since) {
      t.is(since, 42n, 'the fetcher says what it holds');
      for (let i = 0; i < COUNT; i++) {
        const r = record(i);
        sent.update(r);
        produced++;
        yield r;
      }
    });
    const got = createHash('sha256');
    let n = 0;
    let bytes = 0;
    let maxAhead = 0;
    const rss0 = process.memoryUsage().rss;
    for await (const r of fetchState('127.0.0.1', port, 3, 0, 1, 42n, 10_000)) {
      t.is(r.length, record(n).length);
      got.update(r);
      n++;
      bytes += r.length;
      maxAhead = Math.max(maxAhead, produced - n);
      if (n % 50 === 0) await new Promise((r2) => setTimeout(r2, 20)); // a slow installer
    }
    t.is(n, COUNT);
    t.is(got.digest('hex'), sent.digest('hex'));
    t.log(`${(bytes / 2 ** 20).toFixed(0)} MiB; sender at most ${maxAhead} records ahead; RSS +${((process.memoryUsage().rss - rss0) / 2 ** 20).toFixed(0)} MiB`);
    t.true(bytes > 150 * 2 ** 20);
    t.true(maxAhead < COUNT / 4, `the sender waits for the fetcher (${maxAhead} records ahead)`);
  } finally {
    await s.close();
  }
});

test('no such state, a source that fails, and a stream cut short are ERR_STATE_TRANSFER, never a shorter state', async (t) => {
  const { s, port } = await server();
  try {
    const drain = async (it: AsyncIterable<Buffer>) => {
      let n = 0;
      for await (const _ of it) n++;
      return n;
    };
    await t.throwsAsync(drain(fetchState('127.0.0.1', port, 9, 0, 0, -1n, 5_000)), { code: 'ERR_STATE_TRANSFER', message: /no state for view 9/ });
    s.offer(1, 0, 0, async function* () {
      throw new Error('disk on fire');
    });
    await t.throwsAsync(drain(fetchState('127.0.0.1', port, 1, 0, 0, -1n, 5_000)), { code: 'ERR_STATE_TRANSFER', message: /disk on fire/ });
    s.offer(2, 0, 0, async function* () {
      yield Buffer.alloc(1000, 1);
      yield Buffer.alloc(1000, 2);
      throw new Error('read error half way');
    });
    let seen = 0;
    const e = await t.throwsAsync(
      (async () => {
        for await (const _ of fetchState('127.0.0.1', port, 2, 0, 0, -1n, 5_000)) seen++;
      })(),
      { code: 'ERR_STATE_TRANSFER' },
    );
    t.regex(e!.message, /stopped before the end|reset|closed/);
    t.true(seen <= 2);
    // An empty state is a state: zero records, then the end.
    s.offer(4, 0, 0, async function* () {});
    t.is(await drain(fetchState('127.0.0.1', port, 4, 0, 0, -1n, 5_000)), 0);
  } finally {
    await s.close();
  }
  // Nobody listening.
  const [dead] = await freePorts(1);
  await t.throwsAsync(
    (async () => {
      for await (const _ of fetchState('127.0.0.1', dead!, 1, 0, 0, -1n, 2_000));
    })(),
    { code: 'ERR_STATE_TRANSFER', message: /ECONNREFUSED/ },
  );
});

test('records split at every byte boundary (length prefixes included) are reassembled', async (t) => {
  // A raw server speaking the format, writing one byte per TCP write with pauses between.
  const records = [Buffer.from('a'), Buffer.alloc(300, 7), Buffer.from('tail')];
  const frame = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const header = Buffer.from(JSON.stringify({ ok: true }));
  const stream = Buffer.concat([frame(header), ...records.map(frame), Buffer.alloc(4)]);
  const server = createServer((sock) => {
    sock.setNoDelay(true); // each byte its own segment
    sock.once('data', async () => {
      for (const byte of stream) {
        sock.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      sock.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const got: Buffer[] = [];
    for await (const r of fetchState('127.0.0.1', port, 1, 0, 0, -1n, 5_000)) got.push(Buffer.from(r));
    t.deepEqual(got, records);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
