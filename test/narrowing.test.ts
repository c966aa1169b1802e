// Which column types the dry run warns of (issue 21, item 6): those that round or refuse some source
// values, and none of the widening or equal ones (a warning for every column would hide the real ones).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { narrowing } from '../src/conversion/narrowing.js';

test('narrowing types are named with what they do', () => {
  const cases: [string, string, RegExp][] = [
    ['timestamp without time zone', 'timestamp(3) without time zone', /rounds to 3 fractional digits/],
    ['timestamp(6) with time zone', 'timestamp(0) with time zone', /rounds to whole seconds/],
    ['timestamp with time zone', 'timestamp without time zone', /drops the time zone/],
    ['time(6) without time zone', 'time(2) without time zone', /rounds to 2 fractional digits/],
    ['text', 'character varying(255)', /longer than 255 characters/],
    ['character varying(40)', 'character varying(20)', /longer than 20 characters/],
    ['character varying', 'character(1)', /longer than 1 character /],
    ['bigint', 'integer', /outside integer's range/],
    ['integer', 'smallint', /outside smallint's range/],
    ['numeric', 'integer', /rounds fractions/],
    ['numeric(12,4)', 'numeric(12,2)', /rounds to 2 decimal places$/],
    ['numeric(12,2)', 'numeric(8,2)', /more than 6 integer digits/],
    [
      'numeric',
      'numeric(10,2)',
      /rounds to 2 decimal places and refuses values of more than 8 integer digits/,
    ],
    ['bigint', 'numeric(10,0)', /more than 10 integer digits/],
    ['double precision', 'real', /6 significant digits/],
  ];
  for (const [from, to, what] of cases)
    assert.match(narrowing(from, to) ?? '(none)', what, `${from} → ${to}`);
});

test('equal and widening types are not', () => {
  const cases: [string, string][] = [
    ['timestamp(3) without time zone', 'timestamp(3) without time zone'],
    ['timestamp(3) without time zone', 'timestamp without time zone'],
    ['timestamp without time zone', 'timestamp with time zone'],
    ['character varying(20)', 'text'],
    ['character varying(20)', 'character varying(40)'],
    ['text', 'character varying'],
    ['integer', 'bigint'],
    ['smallint', 'numeric'],
    ['integer', 'numeric(10,0)'],
    ['numeric(6,2)', 'numeric(12,4)'],
    ['real', 'double precision'],
    ['uuid', 'text'],
    ['jsonb', 'json'],
  ];
  for (const [from, to] of cases) assert.equal(narrowing(from, to), undefined, `${from} → ${to}`);
});
