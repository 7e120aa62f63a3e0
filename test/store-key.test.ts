/**
 * Blob keys: UTF-8 paths of 1..1024 bytes, no empty, `.` or `..` segment, no control character,
 * no lone surrogate; every refusal is ERR_STORE_BAD_KEY with a message naming the problem.
 */
import test from 'ava';
import { isStoreError, STORE_ERRORS } from '../engine/store/errors.js';
import { MAX_KEY_BYTES, validateKey, validatePrefix } from '../engine/store/key.js';

function refuses(t: import('ava').ExecutionContext, key: string, why: RegExp): void {
  const err = t.throws(() => validateKey(key), undefined, `refuses ${JSON.stringify(key.slice(0, 40))}`);
  t.true(isStoreError(err, STORE_ERRORS.BAD_KEY), `code of ${JSON.stringify(key.slice(0, 40))}`);
  t.regex(err!.message, why);
}

test('ordinary keys are returned unchanged', (t) => {
  for (const key of ['a', 'photos/cat.jpg', 'a/b/c/d.txt', 'naïve/ünïcødé 😀.txt', 'with space/and%percent', '.hidden/..x/x..', 'a.b/...', 'back\\slash', 'at@2026-11-23T10:15:00Z', 'x'.repeat(MAX_KEY_BYTES)]) {
    t.is(validateKey(key), key);
  }
});

test('length is counted in UTF-8 bytes: 1..1024', (t) => {
  refuses(t, '', /empty/);
  refuses(t, 'x'.repeat(MAX_KEY_BYTES + 1), /1025 bytes/);
  // 'é' is 2 bytes: 512 of them fit, 513 do not.
  t.is(validateKey('é'.repeat(512)), 'é'.repeat(512));
  refuses(t, 'é'.repeat(513), /1026 bytes of UTF-8/);
  // '😀' is 4 bytes (2 UTF-16 units): 256 fit.
  t.notThrows(() => validateKey('😀'.repeat(256)));
  refuses(t, '😀'.repeat(256) + 'x', /1025 bytes/);
});

test('empty, . and .. segments are refused, each named', (t) => {
  refuses(t, '/a', /starts with '\/'/);
  refuses(t, 'a/', /ends with '\/'/);
  refuses(t, '/', /starts with/);
  refuses(t, 'a//b', /empty segment/);
  refuses(t, '.', /'\.' segment/);
  refuses(t, '..', /'\.\.' segment/);
  refuses(t, 'a/./b', /'\.' segment/);
  refuses(t, 'a/../b', /'\.\.' segment/);
  refuses(t, '../etc/passwd', /'\.\.' segment/);
  refuses(t, 'a/..', /'\.\.' segment/);
});

test('control characters (NUL, C0, DEL, C1) are refused by code point and index', (t) => {
  refuses(t, 'a\0b', /U\+0000 at index 1/);
  refuses(t, 'a\nb', /U\+000A/);
  refuses(t, 'tab\there', /U\+0009/);
  refuses(t, 'del\x7f', /U\+007F at index 3/);
  refuses(t, 'c1\u0085', /U\+0085/);
});

test('lone surrogates (no UTF-8 encoding) are refused; pairs are fine', (t) => {
  refuses(t, 'a\ud800', /lone surrogate at index 1/);
  refuses(t, '\udc00b', /lone surrogate at index 0/);
  refuses(t, 'x\ude00\ud83d', /lone surrogate/);
  t.notThrows(() => validateKey('\ud83d\ude00'));
});

test('a long bad key is quoted short in the message', (t) => {
  const err = t.throws(() => validateKey('/' + 'x'.repeat(2000)));
  t.true(err!.message.length < 200);
});

test('prefixes: empty, trailing slash and partial segments are fine; characters and length are checked', (t) => {
  for (const p of ['', 'photos/', 'pho', 'a/b/', '.', 'a/.']) t.is(validatePrefix(p), p);
  t.true(isStoreError(t.throws(() => validatePrefix('a\0')), STORE_ERRORS.BAD_KEY));
  t.true(isStoreError(t.throws(() => validatePrefix('a\ud800')), STORE_ERRORS.BAD_KEY));
  t.true(isStoreError(t.throws(() => validatePrefix('x'.repeat(MAX_KEY_BYTES + 1))), STORE_ERRORS.BAD_KEY));
});
