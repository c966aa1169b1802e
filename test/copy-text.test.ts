// COPY's text form: the bulk copy's parser gives the same rows however the source's bytes are cut
// (inside a multi-byte character, an escape, between a row and its newline), and refuses rows with the
// wrong number of fields and a stream that ends mid-row; what the writer escapes reads back unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CopyTextParser, copyField } from '../src/conversion/copy-text.js';

const columns = ['id', 'name', 'note'];
const values: (string | null)[][] = [
  ['1', 'plain', null],
  ['2', 'tab\there, newline\nthere, back\\slash, cr\r', ''],
  ['3', 'ünïcödé 日本語 😀', '\\N as text'],
  ['4', '', 'last'],
];
const text = values.map((v) => v.map(copyField).join('\t') + '\n').join('');
const bytes = Buffer.from(text, 'utf8');
const expected = values.map((v) => Object.fromEntries(columns.map((c, i) => [c, v[i]])));

test('rows come out whole and unescaped at every chunk size', () => {
  for (let size = 1; size <= bytes.length; size++) {
    const parser = new CopyTextParser(columns);
    const rows = [];
    for (let i = 0; i < bytes.length; i += size) rows.push(...parser.push(bytes.subarray(i, i + size)));
    parser.end();
    assert.deepEqual(rows, expected, `chunks of ${size} bytes`);
  }
});

test("PostgreSQL's other escapes are read too", () => {
  const parser = new CopyTextParser(['a']);
  assert.deepEqual(parser.push(Buffer.from('\\x41\\101\\b\\f\\v\\q\n')), [{ a: 'AA\b\f\vq' }]);
});

test('a row with too many or too few fields, and a stream cut mid-row, are refused', () => {
  assert.throws(() => new CopyTextParser(columns).push(Buffer.from('1\ta\n')), /has 2 fields, expected 3/);
  assert.throws(
    () => new CopyTextParser(columns).push(Buffer.from('1\ta\tb\tc\n')),
    /has 4 fields, expected 3/,
  );
  const parser = new CopyTextParser(columns);
  assert.deepEqual(parser.push(Buffer.from('1\ta\tb\n2\tx')), [{ id: '1', name: 'a', note: 'b' }]);
  assert.throws(() => parser.end(), /ended in the middle of a row/);
});
