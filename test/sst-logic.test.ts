/** The SST's pure parts: row layout and predicate semantics. */
import test from 'ava';
import { RowLayout } from '../engine/sst/layout.js';
import { PredicateSet } from '../engine/sst/predicates.js';

test('row layout: groups framed by 8-byte sequence numbers, i64 columns 8-byte aligned, rows padded', (t) => {
  const layout = new RowLayout([
    { name: 'flag', type: 'u8' },
    { name: 'received', type: 'i64', count: 3 },
    { name: 'heartbeat', type: 'i64', group: 'heartbeat' },
    { name: 'suspected', type: 'u8', count: 5 },
  ]);
  t.deepEqual(layout.groups.map((g) => g.name), ['main', 'heartbeat']);
  const main = layout.group('main');
  const hb = layout.group('heartbeat');
  // main: seq(8) received(24) flag(1) suspected(5) -> pad to 40, tail seq(8) = 48
  t.is(main.offset, 0);
  t.is(main.length, 48);
  t.is(layout.column('received').offset, 8);
  t.is(layout.column('flag').offset, 32);
  t.is(layout.column('suspected').offset, 33);
  t.is(hb.offset, 48);
  t.is(layout.column('heartbeat').offset, 56);
  t.is(hb.length, 24);
  t.is(layout.rowBytes, 72);
  for (const c of layout.columns.values()) if (c.type === 'i64') t.is(c.offset % 8, 0, `${c.name} aligned`);
});

test('row layout: duplicate or empty columns and unknown names are errors with codes', (t) => {
  const dup = t.throws(() => new RowLayout([{ name: 'a', type: 'i64' }, { name: 'a', type: 'u8', group: 'g' }]));
  t.is((dup as { code?: string }).code, 'ERR_SST_COLUMN');
  const empty = t.throws(() => new RowLayout([{ name: 'a', type: 'i64', count: 0 }]));
  t.is((empty as { code?: string }).code, 'ERR_SST_COLUMN');
  const layout = new RowLayout([{ name: 'a', type: 'i64' }]);
  t.throws(() => layout.column('b'), { message: /no SST column "b"/ });
  t.throws(() => layout.group('nope'), { message: /no SST push group "nope"/ });
});

test('predicates: once fires once and is removed; transition fires on each false->true edge; recurrent on every true evaluation', (t) => {
  const state = { v: 0 };
  const set = new PredicateSet<typeof state>();
  const fired = { once: 0, transition: 0, recurrent: 0 };
  set.add({ name: 'once', kind: 'once', test: (s) => s.v >= 2, trigger: () => fired.once++ });
  set.add({ name: 'edge', kind: 'transition', test: (s) => s.v % 2 === 1, trigger: () => fired.transition++ });
  set.add({ name: 'each', kind: 'recurrent', test: (s) => s.v >= 3, trigger: () => fired.recurrent++ });
  for (const v of [0, 1, 1, 2, 3, 3, 4, 5]) {
    state.v = v;
    set.evaluate(state);
  }
  t.is(fired.once, 1);
  t.is(set.size, 2, 'the once predicate removed itself');
  t.is(fired.transition, 3, 'odd values entered three times (1, 3, 5)');
  t.is(fired.recurrent, 4, 'v >= 3 held on four evaluations');
  t.is(set.evaluations, 8);
});

test('predicates: a handle removes its predicate; a trigger may add predicates without disturbing this round', (t) => {
  const set = new PredicateSet<number>();
  let a = 0;
  let b = 0;
  const h = set.add({ name: 'a', kind: 'recurrent', test: () => true, trigger: () => a++ });
  set.add({
    name: 'adds',
    kind: 'once',
    test: () => true,
    trigger: () => void set.add({ name: 'b', kind: 'recurrent', test: () => true, trigger: () => b++ }),
  });
  set.evaluate(0);
  t.is(a, 1);
  t.is(b, 0, 'added during a round, evaluated from the next one');
  h.remove();
  set.evaluate(0);
  t.is(a, 1);
  t.is(b, 1);
});
