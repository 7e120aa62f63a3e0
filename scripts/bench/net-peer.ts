/**
 * The baseline: the same workloads over one Node `net` TCP connection on loopback (no framing
 * beyond fixed sizes; Nagle off for ping-pong).
 */
import { connect, createServer, type Socket } from 'node:net';
import { ReplyLatch } from './reply-latch.js';
import { report, reportFailure } from '../lib/ipc-child.js';

let sock: Socket | null = null;
let mode: 'count' | 'echo' = 'count';
let expectedBytes = 0;
let receivedBytes = 0;
let echoSize = 64;
let pending = 0;
const latch = new ReplyLatch();

function wire(s: Socket): void {
  sock = s;
  s.setNoDelay(true);
  s.on('data', (chunk: Buffer) => {
    if (mode === 'echo') {
      pending += chunk.length;
      while (pending >= echoSize) {
        pending -= echoSize;
        s.write(chunk.subarray(0, echoSize));
      }
      return;
    }
    if (latch.fire()) return;
    receivedBytes += chunk.length;
    if (expectedBytes > 0 && receivedBytes >= expectedBytes) {
      receivedBytes -= expectedBytes;
      expectedBytes = 0;
      s.write(Buffer.alloc(1));
    }
  });
}

const reply = () => latch.wait();

async function stream(count: number, size: number): Promise<number> {
  const s = sock!;
  const payload = Buffer.alloc(size, 1);
  const done = reply();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    if (!s.write(payload)) await new Promise((r) => s.once('drain', r));
  }
  await done;
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function pingpong(count: number, size: number): Promise<number[]> {
  const s = sock!;
  const payload = Buffer.alloc(size, 7);
  const rtts_us: number[] = [];
  for (let i = 0; i < count; i++) {
    let got = 0;
    const answered = new Promise<void>((resolve) => {
      const onData = (c: Buffer) => {
        got += c.length;
        if (got >= size) {
          s.off('data', onData);
          resolve();
        }
      };
      s.on('data', onData);
    });
    const t0 = process.hrtime.bigint();
    s.write(payload);
    await answered;
    rtts_us.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return rtts_us;
}

process.on('message', (m: { cmd: string; port?: number; count: number; size: number; bytes?: number }) => {
  switch (m.cmd) {
    case 'listen': {
      const server = createServer((s) => wire(s));
      server.listen(0, '127.0.0.1', () => report({ type: 'listening', port: (server.address() as { port: number }).port }));
      break;
    }
    case 'connect': {
      const s = connect({ host: '127.0.0.1', port: m.port! }, () => report({ type: 'connected' }));
      wire(s);
      // The sender reads only its one-byte reply (or echoes during ping-pong, handled inline).
      s.removeAllListeners('data');
      s.on('data', () => latch.fire());
      break;
    }
    case 'expect':
      mode = 'count';
      expectedBytes = m.bytes!;
      break;
    case 'echo':
      mode = 'echo';
      echoSize = m.size;
      break;
    case 'stream':
      stream(m.count, m.size).then((seconds) => report({ type: 'result', seconds }), reportFailure);
      break;
    case 'pingpong':
      sock!.removeAllListeners('data');
      pingpong(m.count, m.size).then((rtts_us) => report({ type: 'result', rtts_us }), reportFailure);
      break;
    case 'close':
      process.exit(0);
  }
});
report({ type: 'ready' });
