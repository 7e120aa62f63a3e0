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
