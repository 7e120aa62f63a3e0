/** Declaring replicated types and one replica's log handling (engine/rpc/replicated-type.ts, replica.ts), without processes. */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { utf8Codec } from '../engine/persistence/codecs.js';
import { Persistent, Volatile } from '../engine/persistence/persistent.js';
import { decode } from '../engine/rpc/codec.js';
import { Replica } from '../engine/rpc/replica.js';
import { replicatedType } from '../engine/rpc/replicated-type.js';
import { layerLogger } from '../engine/util/log.js';

class Register {
  readonly value = new Persistent<string>(() => '', utf8Codec);
  readonly hits = new Volatile<string>(() => '0', utf8Codec);
  set(v: string): string {
    this.value.value = v;
    this.hits.value = String(Number(this.hits.value) + 1);
    return v;
  }
  get(): string {
    return this.value.value;
  }
}
const RegisterType = replicatedType({ name: 'Register', create: () => new Register(), ordered: ['set'], p2p: ['get'] });

test('declarations are checked: names, methods, and state in versioned fields', (t) => {
  t.throws(() => replicatedType({ name: 'bad name', create: () => new Register(), ordered: ['set'], p2p: [] }), { code: 'ERR_RPC_DECLARATION' });
  t.throws(() => replicatedType({ name: 'R', create: () => new Register(), ordered: ['set'], p2p: ['set'] }), { code: 'ERR_RPC_DECLARATION', message: /listed twice/ });
  t.throws(() => replicatedType({ name: 'R', create: () => ({ set: 1 }) as unknown as Register, ordered: ['set'], p2p: [] }), { code: 'ERR_RPC_DECLARATION', message: /not a method/ });
  class Plain {
    n = 0;
    inc(): void {
      this.n++;
    }
  }
  t.throws(() => replicatedType({ name: 'Plain', create: () => new Plain(), ordered: ['inc'], p2p: [] }), { code: 'ERR_RPC_DECLARATION', message: /no Persistent or Volatile field/ });
  // Only ordered methods are delivered from a multicast buffer, so only they can borrow it.
  t.throws(() => replicatedType({ name: 'R', create: () => new Register(), ordered: ['set'], p2p: ['get'], borrowing: ['get' as 'set'] }), { code: 'ERR_RPC_DECLARATION', message: /borrows its arguments but is not an ordered method/ });
  t.true(replicatedType({ name: 'R', create: () => new Register(), ordered: ['set'], p2p: ['get'], borrowing: ['set'] }).borrowing.has('set'));
  t.false(RegisterType.borrowing.has('set'), 'arguments are detached unless a method says otherwise');
  t.is(RegisterType.name, 'Register');
});

test('a replica logs every call as a version of each field; after a restart Persistent fields come back, Volatile ones start over, nothing is cut', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempest-replica-'));
  const log = layerLogger('test');
  const pers = { file_path: dir, retain_entries: 0, retain_ms: 0 };
  try {
    const a = await Replica.open(RegisterType, 0, 0, pers, log);
    t.true(a.durable);
    const header = { method: 0, origin: 0, hlc: 0n, request: 0n, client: 0n, seq: 0n };
    for (let i = 0; i < 5; i++) {
      const out = decode(a.apply(header, 'set', [`v${i}`], (1n << 32n) | BigInt(i), 1000n + BigInt(i))) as [boolean, unknown];
      t.deepEqual(out, [true, `v${i}`]);
    }
    t.is(await a.flush(), (1n << 32n) | 4n);
    await a.close();
    const b = await Replica.open(RegisterType, 0, 0, pers, log);
    const obj = b.obj as unknown as Register;
    t.is(obj.value.value, 'v4', 'the Persistent field is back');
    t.is(obj.hits.value, '0', 'the Volatile field starts over');
    t.is(b.localVersion, (1n << 32n) | 4n, 'no Persistent entry was cut because the Volatile log is empty');
    t.is(await obj.value.getAtVersion((1n << 32n) | 2n), 'v2');
    // The client table makes a retried call idempotent.
    const h2 = { ...header, client: 7n, seq: 1n };
    const first = b.apply(h2, 'set', ['once'], (2n << 32n) | 0n, 2000n);
    const again = b.apply(h2, 'set', ['twice?'], (2n << 32n) | 1n, 2001n);
    t.deepEqual(again, first);
    t.is(obj.value.value, 'once');
    // A method that throws answers with its error; the call is still a version.
    const bad = decode(b.apply(header, 'nope', [], (2n << 32n) | 2n, 2002n)) as [boolean, { code: string }];
    t.false(bad[0]);
    t.is(b.localVersion, (2n << 32n) | 2n);
    await b.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

class Counter {
  readonly n = new Persistent<string>(() => '0', utf8Codec);
  add(k: number): number {
    const v = Number(this.n.value) + k;
    this.n.value = String(v);
    return v;
  }
}
const CounterType = replicatedType({ name: 'Counter', create: () => new Counter(), ordered: ['add'], p2p: [] });
const call = (client: bigint, seq: bigint) => ({ method: 0, origin: 0, hlc: 0n, request: 0n, client, seq });
const ver = (vid: number, i: number) => (BigInt(vid) << 32n) | BigInt(i);
const counterOf = (r: Replica) => Number((r.obj as unknown as Counter).n.value);

test('the client table is durable: a call retried after a restart is answered from it, not applied again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempest-replica-'));
  const log = layerLogger('test');
  // A small client log: retention snapshots the table into its base and trims old windows.
  const pers = { file_path: dir, retain_entries: 0, retain_ms: 0, segment_size_bytes: 4096, clients_retain_entries: 8 };
  try {
    let r = await Replica.open(CounterType, 0, 0, pers, log);
    let v = 0;
    const outcomes = new Map<string, Buffer>();
    // 3 clients, W windows of calls (each flush is a window), member calls (client 0) between.
    const W = 150;
    for (let w = 0; w < W; w++) {
      for (let c = 1n; c <= 3n; c++) {
        const seq = BigInt(w);
        outcomes.set(`${c}:${seq}`, r.apply(call(c, seq), 'add', [1], ver(1, v), BigInt(1000 + v)));
        v++;
      }
      r.apply(call(0n, 0n), 'add', [100], ver(1, v), BigInt(1000 + v));
      v++;
      t.is(await r.flush(), ver(1, v - 1));
      if (w % 10 === 9) await (r as unknown as { clients: { runRetention(): Promise<void> } }).clients.runRetention();
    }
    t.is(counterOf(r), W * 3 + W * 100);
    const clientLog = (r as unknown as { clients: { baseVersion: bigint | null; trimmedVersion: bigint } }).clients;
    t.not(clientLog.baseVersion, null, 'retention snapshotted the table');
    t.true(clientLog.trimmedVersion > ver(1, 0), 'and trimmed the oldest windows');
    await r.close();
    r = await Replica.open(CounterType, 0, 0, pers, log);
    t.is(r.localVersion, ver(1, v - 1), 'nothing was cut');
    t.is(counterOf(r), W * 3 + W * 100);
    // Every remembered call, retried in the new run, gets its first outcome and changes nothing.
    for (const c of [1n, 2n, 3n]) {
      for (const seq of [0n, 17n, 149n]) {
        const again = r.apply(call(c, seq), 'add', [1], ver(2, v), BigInt(1000 + v));
        v++;
        t.deepEqual(again, outcomes.get(`${c}:${seq}`), `client ${c} request ${seq}`);
      }
    }
    t.is(counterOf(r), W * 3 + W * 100, 'no retried call was applied again');
    // A new request is applied.
    r.apply(call(1n, 150n), 'add', [1], ver(2, v), BigInt(1000 + v));
    v++;
    t.is(counterOf(r), W * 3 + W * 100 + 1);
    await r.flush();
    await r.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a crash between the fields and the client table is cut back to the last window: no update kept without its client call', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempest-replica-'));
  const log = layerLogger('test');
  const pers = { file_path: dir, retain_entries: 0, retain_ms: 0 };
  try {
    const r = await Replica.open(CounterType, 0, 0, pers, log);
    r.apply(call(5n, 1n), 'add', [1], ver(1, 0), 1000n);
    r.apply(call(5n, 2n), 'add', [1], ver(1, 1), 1001n);
    await r.flush(); // window at (1, 1)
    r.apply(call(5n, 3n), 'add', [1], ver(1, 2), 1002n);
    r.apply(call(0n, 0n), 'add', [10], ver(1, 3), 1003n);
    await r.flush(); // window at (1, 3)
    await r.close();
    // As if the machine died after the field's write and before the client log's: drop the last window.
    const { LogStore } = await import('../engine/persistence/log-store.js');
    const clients = await LogStore.open({ dir: join(dir, 'Counter.0.0', '#clients'), durable: true, log });
    t.is(clients.latestVersion, ver(1, 3));
    await clients.truncateAfter(ver(1, 1));
    await clients.close();
    const back = await Replica.open(CounterType, 0, 0, pers, log);
    t.is(back.localVersion, ver(1, 1), 'the field is cut back to the last window the client log holds');
    t.is(counterOf(back), 2);
    t.is(back.persistedVersion, ver(1, 1));
    // The cut call (never acknowledged: persistedVersion never passed it) is applied when retried; the kept ones are not.
    t.deepEqual(decode(back.apply(call(5n, 2n), 'add', [1], ver(2, 0), 2000n)), [true, 2]);
    t.deepEqual(decode(back.apply(call(5n, 3n), 'add', [1], ver(2, 1), 2001n)), [true, 3]);
    t.is(counterOf(back), 3);
    await back.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an installed state brings the client table, and it survives a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempest-replica-'));
  const log = layerLogger('test');
  try {
    const a = await Replica.open(CounterType, 0, 0, { file_path: join(dir, 'a'), retain_entries: 0, retain_ms: 0 }, log);
    for (let i = 0; i < 5; i++) a.apply(call(9n, BigInt(i)), 'add', [1], ver(1, i), BigInt(1000 + i));
    await a.flush();
    const state = await a.capture()(-1n);
    const pb = { file_path: join(dir, 'b'), retain_entries: 0, retain_ms: 0 };
    const b = await Replica.open(CounterType, 0, 0, pb, log);
    await b.install(state);
    t.is(b.persistedVersion, ver(1, 4));
    await b.close();
    const b2 = await Replica.open(CounterType, 0, 0, pb, log);
    t.is(b2.localVersion, ver(1, 4));
    t.deepEqual(decode(b2.apply(call(9n, 3n), 'add', [1], ver(2, 0), 2000n)), [true, 4], 'answered from the installed table');
    t.is(counterOf(b2), 5);
    await b2.close();
    await a.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('state transfer streams records of about 1 MiB; a stream that breaks leaves the state the replica had, and the retry from it completes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempest-replica-'));
  const log = layerLogger('test');
  try {
    const a = await Replica.open(RegisterType, 0, 0, { file_path: join(dir, 'a'), retain_entries: 0, retain_ms: 0 }, log);
    const put = (i: number) => a.apply({ method: 0, origin: 0, hlc: 0n, request: 0n, client: i % 2 === 0 ? 3n : 0n, seq: BigInt(i) }, 'set', [`${i}:`.padEnd(1024, 'x')], ver(1, i), BigInt(1000 + i));
    const N = 3000;
    const FIRST = 1000;
    for (let i = 0; i < FIRST; i++) put(i);
    await a.flush();
    // b first takes the state of a at FIRST entries (a member that held the shard before).
    const pb = { file_path: join(dir, 'b'), retain_entries: 0, retain_ms: 0 };
    const b = await Replica.open(RegisterType, 0, 0, pb, log);
    await b.install(a.capture()(-1n));
    t.is(b.localVersion, ver(1, FIRST - 1));
    for (let i = FIRST; i < N; i++) put(i);
    await a.flush();
    const source = a.capture();
    const records: Buffer[] = [];
    for await (const r of source(b.localVersion)) records.push(r);
    // The head, per field (Persistent value, Volatile hits) a header and batches, the end.
    t.true(records.length >= 6, `${records.length} records`);
    t.true(Math.max(...records.map((r) => r.length)) < 2 * 1024 * 1024, 'no record holds the whole log');

    // The stream breaks after the first batch of entries.
    const broken = async function* (): AsyncGenerator<Buffer> {
      for await (const r of source(b.localVersion)) {
        yield r;
        if ((decode(r) as unknown[])[0] === 'entries') throw new Error('connection reset (simulated)');
      }
    };
    await t.throwsAsync(b.install(broken()), { message: /simulated/ });
    t.is(b.localVersion, ver(1, FIRST - 1), 'back to the state it held: every entry kept has its client calls recorded');
    t.is((b.obj as unknown as Register).value.value, `${FIRST - 1}:`.padEnd(1024, 'x'), 'the object matches its log');
    await b.install(source(b.localVersion));
    t.is(b.localVersion, ver(1, N - 1));
    t.deepEqual(await b.logDigest().then((d) => d.filter((f) => f.field === 'value')), await a.logDigest().then((d) => d.filter((f) => f.field === 'value')));
    // The client table came along: request 2998 of client 3 (recent enough to be remembered) is answered, not applied.
    t.deepEqual(decode(b.apply({ method: 0, origin: 0, hlc: 0n, request: 0n, client: 3n, seq: 2998n }, 'set', ['again'], ver(2, 0), 5000n)), [true, '2998:'.padEnd(1024, 'x')]);
    t.is((b.obj as unknown as Register).value.value, `${N - 1}:`.padEnd(1024, 'x'));
    await b.close();
    await a.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
