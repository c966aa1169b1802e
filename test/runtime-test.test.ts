/**
 * Runtime testing without databases: each normaliser, declared expected differences (paths and a
 * typed mapping), the verdict's use of the noise sample, noise learning and its forgiveness limit,
 * endpoint grouping, redaction of sample diffs, the gate blocking and allowing, and the barrier's
 * coalescing of fence markers (with a catch-up source the test releases by hand).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAnswer, type Answer } from '../src/runtime-test/answer.js';
import { ConsistencyBarrier } from '../src/runtime-test/barrier.js';
import { CompareBudget } from '../src/runtime-test/budget.js';
import type { RuntimeTestConfig } from '../src/runtime-test/config.js';
import { Endpoints } from '../src/runtime-test/endpoints.js';
import { evaluateGate, expectJson, runtimeTestSchema } from '../src/runtime-test/index.js';
import { NoiseLearner } from '../src/runtime-test/noise.js';
import { Redactor } from '../src/runtime-test/redact.js';
import { SettledNoise } from '../src/runtime-test/settled-noise.js';
import { Collector, type RuntimeTestReport } from '../src/runtime-test/report.js';
import { p99Bounds } from '../src/runtime-test/quantile-bounds.js';
import { Judge, type Verdict } from '../src/runtime-test/verdict.js';

const json = (body: unknown, status = 200, headers: string[] = []): Answer =>
  parseAnswer({
    status,
    headers: ['content-type', 'application/json; charset=utf-8', ...headers],
    body: Buffer.from(JSON.stringify(body)),
  });
const html = (body: string): Answer =>
  parseAnswer({ status: 200, headers: ['content-type', 'text/html'], body: Buffer.from(body) });

function judge(
  config: RuntimeTestConfig,
  primary: Answer,
  candidate: Answer,
  secondary?: Answer,
  url = '/x',
): Verdict {
  return new Judge(config).judge({ method: 'GET', url, primary, candidate, secondary });
}
const paths = (v: Verdict, kind: 'unexplained' | 'expected' | 'noisy' | 'explained' = 'unexplained') =>
  v[kind].map((d) => d.path.join('.'));

/** A plain match, for feeding a Collector. */
const MATCH: Verdict = {
  outcome: 'match',
  new5xx: false,
  mapped: false,
  expected: [],
  explained: [],
  noisy: [],
  unexplained: [],
  noiseKeys: [],
  sampled: false,
};

describe('differ and normalisers', () => {
  test('JSON is compared structurally by path; key order does not matter', () => {
    const v = judge({}, json({ a: 1, b: { c: [1, 2] } }), json({ b: { c: [1, 3] }, a: 1 }));
    assert.equal(v.outcome, 'differs');
    assert.deepEqual(paths(v), ['b.c.1']);
    assert.equal(judge({}, json({ a: 1, b: 2 }), json({ b: 2, a: 1 })).outcome, 'match');
  });

  test('status and the configured header subset are compared', () => {
    const v = judge(
      { compareHeaders: ['content-type', 'x-api'] },
      json({}, 200, ['x-api', '1']),
      json({}, 404, ['x-api', '2']),
    );
    assert.deepEqual(paths(v).sort(), ['$headers.x-api', '$status']);
    // Headers outside the subset are not compared.
    assert.equal(judge({}, json({}, 200, ['date', 'a']), json({}, 200, ['date', 'b'])).outcome, 'match');
  });

  test('ignore removes paths (body, array elements, headers)', () => {
    const config: RuntimeTestConfig = {
      compareHeaders: ['content-type', 'etag'],
      normalise: [{ kind: 'ignore', paths: ['generated_at', 'items.*.etag', '$headers.etag'] }],
    };
    const v = judge(
      config,
      json({ generated_at: 1, items: [{ id: 1, etag: 'a' }] }, 200, ['etag', 'x']),
      json({ generated_at: 2, items: [{ id: 1, etag: 'b' }] }, 200, ['etag', 'y']),
    );
    assert.equal(v.outcome, 'match');
    const w = judge(config, json({ items: [{ id: 1 }] }), json({ items: [{ id: 2 }] }));
    assert.deepEqual(paths(w), ['items.0.id']);
  });

  test('sort makes array order irrelevant, optionally by a field', () => {
    const plain = judge(
      { normalise: [{ kind: 'sort', paths: ['tags'] }] },
      json({ tags: ['b', 'a'] }),
      json({ tags: ['a', 'b'] }),
    );
    assert.equal(plain.outcome, 'match');
    const byId = judge(
      { normalise: [{ kind: 'sort', paths: ['users'], by: 'id' }] },
      json({
        users: [
          { id: 2, n: 'y' },
          { id: 1, n: 'x' },
        ],
      }),
      json({
        users: [
          { id: 1, n: 'x' },
          { id: 2, n: 'y' },
        ],
      }),
    );
    assert.equal(byId.outcome, 'match');
    assert.equal(judge({}, json({ tags: ['b', 'a'] }), json({ tags: ['a', 'b'] })).outcome, 'differs');
  });

  test('replace normalises text/HTML bodies and JSON strings; text bodies differ as a whole', () => {
    const config: RuntimeTestConfig = {
      normalise: [
        { kind: 'replace', pattern: /csrf=[0-9a-f]+/, with: 'csrf=…' },
        { kind: 'replace', pattern: '\\s+', with: ' ' },
      ],
    };
    assert.equal(
      judge(
        config,
        html('<p>hi</p>\n<a href="?csrf=ab12">x</a>'),
        html('<p>hi</p>  <a href="?csrf=ff09">x</a>'),
      ).outcome,
      'match',
    );
    const v = judge(config, html('<p>hi</p>'), html('<p>bye</p>'));
    assert.deepEqual(paths(v), ['$body']);
    assert.equal(judge(config, json({ link: '/a?csrf=01' }), json({ link: '/a?csrf=99' })).outcome, 'match');
  });

  test('numeric tolerance, absolute and relative, only at its paths', () => {
    const config: RuntimeTestConfig = {
      normalise: [
        { kind: 'tolerance', paths: ['score'], absolute: 0.01 },
        { kind: 'tolerance', paths: ['items.*.price'], relative: 0.001 },
      ],
    };
    assert.equal(
      judge(
        config,
        json({ score: 1.0, items: [{ price: 1000 }] }),
        json({ score: 1.005, items: [{ price: 1000.9 }] }),
      ).outcome,
      'match',
    );
    assert.deepEqual(
      paths(judge(config, json({ score: 1, other: 1 }), json({ score: 1.02, other: 1.001 }))).sort(),
      ['other', 'score'],
    );
  });

  test('normalisers and expectations apply only to their endpoint', () => {
    const config: RuntimeTestConfig = {
      normalise: [{ kind: 'ignore', endpoint: 'GET /a/:id', paths: ['t'] }],
    };
    assert.equal(judge(config, json({ t: 1 }), json({ t: 2 }), undefined, '/a/5').outcome, 'match');
    assert.equal(judge(config, json({ t: 1 }), json({ t: 2 }), undefined, '/b/5').outcome, 'differs');
  });
});

describe('declared expected differences', () => {
  test('paths with a kind of change are not counted, other changes still are', () => {
    const config: RuntimeTestConfig = {
      expected: [{ paths: ['length'], change: 'added', why: 'v2 stores it' }],
    };
    const v = judge(config, json({ text: 'ab' }), json({ text: 'ab', length: 2 }));
    assert.equal(v.outcome, 'match');
    assert.deepEqual(paths(v, 'expected'), ['length']);
    // A removal is not the declared addition.
    assert.equal(judge(config, json({ text: 'ab', length: 2 }), json({ text: 'ab' })).outcome, 'differs');
  });

  test('a typed mapping from the old answer checks the new value too', () => {
    interface PageV1 {
      text: string;
    }
    interface PageV2 extends PageV1 {
      length: number;
    }
    const config: RuntimeTestConfig = {
      expected: [
        expectJson<PageV1, PageV2>('GET /wiki/:title', (p) => ({ ...p, length: Buffer.byteLength(p.text) })),
      ],
    };
    const url = '/wiki/A';
    assert.equal(
      judge(config, json({ text: 'Grüße' }), json({ text: 'Grüße', length: 7 }), undefined, url).outcome,
      'match',
    );
    const wrong = judge(config, json({ text: 'Grüße' }), json({ text: 'Grüße', length: 5 }), undefined, url);
    assert.deepEqual(paths(wrong), ['length']);
    // Error answers are left alone by default: a 404 body is compared as it is.
    assert.equal(
      judge(config, json({ error: 'no' }, 404), json({ error: 'no' }, 404), undefined, url).outcome,
      'match',
    );
  });
});

describe('noise', () => {
  test('the noise sample explains data changed meanwhile and marks where old disagrees with itself', () => {
    // primary ≤ candidate ≤ secondary: the page was edited between the two old answers.
    const changed = judge(
      {},
      json({ text: 'v1', at: 1 }),
      json({ text: 'v2', at: 2 }),
      json({ text: 'v2', at: 2 }),
    );
    assert.equal(changed.outcome, 'match');
    assert.deepEqual(paths(changed, 'explained').sort(), ['at', 'text']);
    // A clock: every answer differs, old from old too.
    const clock = judge({}, json({ now: 1, id: 1 }), json({ now: 2, id: 1 }), json({ now: 3, id: 1 }));
    assert.equal(clock.outcome, 'noisy');
    assert.deepEqual(clock.noiseKeys, ['now']);
    // Where old agrees with itself, a difference is unexplained.
    const real = judge({}, json({ now: 1, id: 1 }), json({ now: 2, id: 9 }), json({ now: 3, id: 1 }));
    assert.deepEqual(paths(real), ['id']);
  });

  test('in a list edits shift, old disagreeing anywhere in an element makes its fields noisy', () => {
    // Recent changes, newest first: one edit before the candidate read, another before the sample.
    const change = (comment: string, user: string) => ({ comment, user });
    const [a, b, c, d] = [change('a', 'w1'), change('b', 'w2'), change('c', 'w3'), change('d', 'w1')];
    const x = change('x', 'w2');
    const y = change('y', 'w5');
    const shifted = judge(
      {},
      json({ changes: [a, b, c, d] }),
      json({ changes: [x, a, b, c] }),
      json({ changes: [y, x, a, b] }),
    );
    // At index 3 old said w1 twice (d, then b): a coincidence, not old agreeing with itself.
    assert.equal(shifted.outcome, 'noisy', JSON.stringify(shifted.unexplained));
    assert.ok(paths(shifted, 'noisy').includes('changes.3.user'));
    // Without an edit between the old answers, a wrong user in one element is still unexplained.
    const wrong = judge(
      {},
      json({ changes: [a, b, c, d] }),
      json({ changes: [a, b, change('c', 'w9'), d] }),
      json({ changes: [a, b, c, d] }),
    );
    assert.deepEqual(paths(wrong), ['changes.2.user']);
  });

  test('learned per endpoint and path; a difference is forgiven only within the noise rate', () => {
    const learner = new NoiseLearner({ minOccurrences: 2 });
    for (let i = 0; i < 100; i++) learner.observe(i < 10 ? ['changes.*.title'] : [], []);
    learner.observe([], ['changes.*.title']);
    assert.ok(learner.forgives('changes.*.title'));
    assert.ok(!learner.forgives('text'), 'never noisy, never forgiven');
    for (let i = 0; i < 20; i++) learner.observe([], ['changes.*.title']);
    assert.ok(!learner.forgives('changes.*.title'), 'differences beyond the noise rate count');
    assert.deepEqual(
      learner.noisyPaths().map((p) => p.path),
      ['changes.*.title'],
    );
  });

  test('by default two coincidences are not noise: a regression on a path edits move stays a mismatch', () => {
    const learner = new NoiseLearner();
    // A page read's comment: two edits landed between a read and its noise sample, and v2 lost the
    // comment of two pages (old agreed with itself there).
    learner.observe(['comment'], []);
    learner.observe(['comment'], []);
    learner.observe([], ['comment']);
    learner.observe([], ['comment']);
    assert.ok(!learner.forgives('comment'), 'two disagreements of old with itself are not yet noise');
    learner.observe(['comment'], []);
    learner.observe(['comment'], []);
    assert.ok(!learner.forgives('comment'), 'nor four');
    assert.deepEqual(learner.noisyPaths(), []);
    learner.observe(['comment'], []);
    assert.ok(learner.forgives('comment'), 'five are, and then forgive as many differences');
  });

  test('the report counts forgiven differences as noisy and lists noise paths apart', () => {
    const c = new Collector({ noise: { minOccurrences: 2 } });
    const j = new Judge({});
    const record = (p: unknown, cand: unknown, s: unknown) =>
      c.record({
        endpoint: 'GET /t',
        verdict: j.judge({
          method: 'GET',
          url: '/t',
          primary: json(p),
          candidate: json(cand),
          secondary: json(s),
        }),
        sample: () => ({
          endpoint: 'GET /t',
          at: '',
          request: { method: 'GET', url: '/t', headers: {} },
          old: { status: 200, headers: {}, body: '' },
          new: { error: 'x' },
          differences: [],
        }),
      });
    for (let i = 0; i < 5; i++) record({ ms: 1 }, { ms: 2 }, { ms: 3 }); // noisy now
    record({ ms: 1 }, { ms: 2 }, { ms: 1 }); // unexplained, but on a noisy path
    record({ ms: 1, v: 1 }, { ms: 1, v: 2 }, { ms: 1, v: 1 }); // a real mismatch
    const e = c.report().endpoints[0];
    assert.ok(e);
    assert.equal(e.compared, 7);
    assert.equal(e.noisy, 6);
    assert.equal(e.mismatched, 1);
    assert.deepEqual(e.mismatchPaths, [{ path: 'v', count: 1 }]);
    assert.equal(e.noisePaths[0]?.path, 'ms');
  });
});

describe('settled noise', () => {
  test('differences on paths whose samples kept resolving them are sampled one in n, per endpoint', () => {
    const s = new SettledNoise({ resampleEvery: 4, settleAfter: 20 });
    const spares = (endpoint: string, keys: string[], n: number) =>
      Array.from({ length: n }, () => s.spare(endpoint, keys)).filter(Boolean).length;
    assert.equal(spares('GET /recent', ['changes.*.title'], 8), 0, 'nothing is settled before samples');
    for (let i = 0; i < 19; i++) s.learn('GET /recent', ['changes.*.title'], []);
    assert.equal(spares('GET /recent', ['changes.*.title'], 8), 0, 'settles only after settleAfter samples');
    s.learn('GET /recent', ['changes.*.title'], []);
    assert.equal(spares('GET /recent', ['changes.*.title'], 8), 6, 'one in four is still sampled');
    assert.equal(s.spared, 6);
    assert.equal(spares('GET /recent', ['changes.*.title', 'total'], 8), 0, 'every path must be settled');
    assert.equal(spares('GET /other', ['changes.*.title'], 8), 0, 'settled per endpoint');
    assert.equal(spares('GET /recent', [], 8), 0, 'a match is never spared its calibration sample');
  });

  test('a path stops being settled as soon as its samples stop resolving its differences', () => {
    const s = new SettledNoise({ resampleEvery: 2, settleAfter: 20 });
    for (let i = 0; i < 20; i++) s.learn('GET /wiki/:title', ['comment'], []);
    assert.ok(
      [s.spare('GET /wiki/:title', ['comment']), s.spare('GET /wiki/:title', ['comment'])].includes(true),
    );
    // A regression on the settled path: the samples taken leave it unexplained.
    s.learn('GET /wiki/:title', ['comment'], ['comment']);
    s.learn('GET /wiki/:title', ['comment'], ['comment']);
    for (let i = 0; i < 6; i++) assert.equal(s.spare('GET /wiki/:title', ['comment']), false);
  });

  test('resampleEvery 1 samples every difference', () => {
    const s = new SettledNoise({ resampleEvery: 1, settleAfter: 1 });
    for (let i = 0; i < 50; i++) s.learn('GET /t', ['ms'], []);
    for (let i = 0; i < 10; i++) assert.equal(s.spare('GET /t', ['ms']), false);
  });
});

describe('comparison budget', () => {
  test('per endpoint: a fifth of a second of reads at once, then perSecond; the rest counted', () => {
    let now = 0;
    const b = new CompareBudget(20, () => now);
    const admitted = (endpoint: string, n: number) =>
      Array.from({ length: n }, () => b.admit(endpoint)).filter(Boolean).length;
    assert.equal(admitted('GET /wiki/:title', 10), 4, 'a full bucket holds a fifth of a second');
    now = 100;
    assert.equal(admitted('GET /wiki/:title', 10), 2, 'refilled at 20 a second');
    assert.equal(admitted('GET /recent', 3), 3, 'another endpoint has its own bucket');
    now = 60_000;
    assert.equal(admitted('GET /wiki/:title', 10), 4, 'never more than a fifth of a second saved up');
    assert.deepEqual(b.stats(), { perSecond: 20, passedOver: { 'GET /wiki/:title': 20 } });
  });

  test('a rare endpoint under budget keeps every read; below one a second, one read per 1/rate s', () => {
    let now = 0;
    const b = new CompareBudget(0.5, () => now);
    const times = [0, 1_000, 2_000, 2_100, 4_100];
    assert.deepEqual(
      times.map((t) => ((now = t), b.admit('GET /x'))),
      [true, false, true, false, true],
    );
    const rare = new CompareBudget(10, () => now);
    for (let i = 0; i < 50; i++) {
      now += 100;
      assert.equal(rare.admit('GET /rare'), true);
    }
  });

  test('after endpoint learning, counts and the emptiest bucket follow the merged key', () => {
    const b = new CompareBudget(1, () => 0);
    for (const k of ['GET /tag/a', 'GET /tag/a', 'GET /tag/b', 'GET /tag/b', 'GET /other']) b.admit(k);
    b.rekey((k) => (k.startsWith('GET /tag/') ? 'GET /tag/:param' : k));
    assert.deepEqual(b.stats().passedOver, { 'GET /tag/:param': 2 });
    assert.equal(b.admit('GET /tag/:param'), false, 'the merged key keeps its spent bucket');
    assert.equal(b.admit('GET /other'), false, 'an endpoint learning did not touch keeps its own');
    assert.throws(() => new CompareBudget(0), /must be positive/);
  });
});

describe('endpoint grouping', () => {
  test('declared templates win; ids and many distinct segments are learned as parameters', () => {
    const e = new Endpoints(['/wiki/:title'], 5);
    assert.equal(e.key('get', '/wiki/Foo?x=1').key, 'GET /wiki/:title');
    assert.equal(e.key('GET', '/users/42/posts').key, 'GET /users/:param/posts');
    const keys = ['a', 'b', 'c', 'd', 'e'].map((s) => e.key('GET', `/tag/${s}`).key);
    assert.deepEqual(keys, ['GET /tag/a', 'GET /tag/b', 'GET /tag/c', 'GET /tag/d', 'GET /tag/e']);
    const sixth = e.key('GET', '/tag/f');
    assert.deepEqual(sixth, { key: 'GET /tag/:param', learned: true });
    assert.equal(e.rekey('GET /tag/a'), 'GET /tag/:param');
    assert.equal(e.key('GET', '/tag/a').key, 'GET /tag/:param');
  });

  test('regrouping merges what was counted per literal path', () => {
    const c = new Collector();
    const v = MATCH;
    const none = () => {
      throw new Error('no sample for a match');
    };
    c.record({ endpoint: 'GET /tag/a', verdict: v, sample: none });
    c.record({ endpoint: 'GET /tag/b', verdict: v, sample: none });
    c.regroup((k) => k.replace(/\/tag\/\w+$/, '/tag/:param'));
    assert.deepEqual(
      c.report().endpoints.map((e) => [e.endpoint, e.matched]),
      [['GET /tag/:param', 2]],
    );
  });
});

describe('latency verdict', () => {
  /** A collector fed paired latencies (old, new) for one endpoint. */
  const gateOn = (pairs: [number, number][]) => {
    const c = new Collector();
    for (const [latencyOldMs, latencyNewMs] of pairs)
      c.record({
        endpoint: 'GET /p',
        verdict: MATCH,
        sample: () => assert.fail(),
        latencyOldMs,
        latencyNewMs,
      });
    const report = c.report();
    return { report, verdict: evaluateGate(report, { minComparedPerEndpoint: 50, maxLatencyRatio: 2 }) };
  };
  /** Deterministic jitter around `ms`: ±20 %. */
  const around = (ms: number, i: number) => ms * (0.8 + (0.4 * ((i * 37) % 50)) / 50);

  test('the p99 bound is the order statistic the binomial gives, with no upper end on few samples', () => {
    const bounds = (n: number) => {
      const b = p99Bounds(Array.from({ length: n }, (_, i) => i + 1));
      return [n + 1 - b.low, b.high === null ? null : n + 1 - b.high]; // ranks from the largest
    };
    assert.deepEqual(bounds(1), [1, null]);
    assert.deepEqual(bounds(30), [3, null]);
    assert.deepEqual(bounds(200), [6, null]);
    assert.deepEqual(bounds(1000), [18, 4]);
    assert.throws(() => p99Bounds([]), RangeError);
    // Past the point where 0.99^n underflows: still about the 1,000th largest of 100,000.
    const [low, high] = bounds(100_000);
    assert.ok(typeof low === 'number' && low > 1000 && low < 1100, `lower bound rank ${low}`);
    assert.ok(high !== null && high !== undefined && high > 900 && high < 1000, `upper bound rank ${high}`);
  });

  test('one stall of the new universe does not close the gate; a slower new universe does', () => {
    const stall = gateOn(
      Array.from({ length: 60 }, (_, i) => [around(10, i), i === 7 ? 500 : around(10, i + 3)]),
    );
    assert.ok((stall.report.endpoints[0]?.latencyMs.p99Ratio ?? 0) > 2, 'the point ratio alone would block');
    assert.deepEqual(stall.verdict, { pass: true, reasons: [] });

    const slower = gateOn(Array.from({ length: 60 }, (_, i) => [around(10, i), around(30, i + 3)]));
    assert.equal(slower.verdict.pass, false);
    assert.match(
      slower.verdict.reasons[0] ?? '',
      /GET \/p: new p99 .* \(at least .* at 97.5 % confidence\) is over 2× old p99/,
    );
  });
});

describe('redaction', () => {
  test('credential headers and configured ones and query parameters are masked', () => {
    const r = new Redactor({ headers: ['X-Api-Key'], query: ['token'] });
    assert.deepEqual(
      r.headerRecord({
        authorization: 'Bearer abc',
        cookie: 's=1',
        'set-cookie': 's=2',
        'x-api-key': 'k',
        accept: 'a',
      }),
      { authorization: '***', cookie: '***', 'set-cookie': '***', 'x-api-key': '***', accept: 'a' },
    );
    assert.equal(r.url('/a?token=secret&x=1'), '/a?token=***&x=1');
    assert.equal(r.text('postgres://u:pw@h/db'), 'postgres://u:***@h/db');
  });
});

describe('gate', () => {
  const report = (over: Partial<RuntimeTestReport['endpoints'][number]> = {}): RuntimeTestReport => ({
    startedAt: '',
    updatedAt: '',
    totals: { compared: 0, matched: 0, mismatched: 0, noisy: 0, errors: 0, new5xx: 0, skipped: 0 },
    skippedReasons: {},
    details: {},
    endpoints: [
      {
        endpoint: 'GET /wiki/:title',
        compared: 100,
        matched: 98,
        mismatched: 0,
        noisy: 2,
        errors: 0,
        new5xx: 0,
        expectedDifferences: 98,
        latencyMs: {
          old: { p50: 2, p99: 10, samples: 100 },
          new: { p50: 2, p99: 12, samples: 100, p99Low: 11 },
          p99Ratio: 1.2,
        },
        noisePaths: [],
        mismatchPaths: [],
        samples: [],
        ...over,
      },
    ],
  });

  test('allows when every criterion holds', () => {
    assert.deepEqual(evaluateGate(report(), { minComparedPerEndpoint: 50 }), { pass: true, reasons: [] });
  });

  test('blocks on mismatches, new 5xx, too few comparisons, latency, missing endpoints', () => {
    const blocked = (over: Parameters<typeof report>[0], criteria = {}) => {
      const v = evaluateGate(report(over), criteria);
      assert.equal(v.pass, false);
      return v.reasons.join('\n');
    };
    assert.match(
      blocked({ mismatched: 1, mismatchPaths: [{ path: 'comment', count: 1 }] }),
      /1 unexpected mismatches .* on comment/,
    );
    assert.match(blocked({ errors: 1, new5xx: 1 }), /5xx 1 times/);
    assert.match(blocked({ compared: 10 }), /10 compared, at least 50/);
    assert.match(
      blocked({}, { maxLatencyRatio: 1.05 }),
      /new p99 12 ms \(at least 11 ms .*\) is over 1.05× old p99 10 ms/,
    );
    assert.match(blocked({}, { endpoints: ['GET /recent'] }), /GET \/recent: never compared/);
    assert.equal(evaluateGate(report({ mismatched: 1 }), { maxMismatchRate: 0.05 }).pass, true);
    // Over by its point p99, not by its lower bound: the samples do not show it.
    assert.equal(evaluateGate(report(), { maxLatencyRatio: 1.15 }).pass, true);
    // A report saved before the bounds existed: its point p99s are compared, and said to be.
    const saved = report({
      latencyMs: {
        old: { p50: 2, p99: 10, samples: 100 },
        new: { p50: 2, p99: 12, samples: 100 },
        p99Ratio: 1.2,
      },
    });
    assert.deepEqual(evaluateGate(saved, { maxLatencyRatio: 1.1 }).reasons, [
      'GET /wiki/:title: new p99 12 ms is over 1.1× old p99 10 ms',
    ]);
    assert.match(evaluateGate({ ...report(), endpoints: [] }).reasons[0] ?? '', /no read/);
  });
});

describe('barrier', () => {
  /** A catch-up source the test completes by hand, recording when each marker was requested. */
  function manualSource() {
    const calls: { at: number; done: () => void; fail: (e: Error) => void }[] = [];
    let outstanding = 0;
    let max = 0;
    return {
      calls,
      maxOutstanding: () => max,
      catchUp: () => {
        max = Math.max(max, ++outstanding);
        return new Promise<void>((resolve, reject) =>
          calls.push({ at: Date.now(), done: resolve, fail: reject }),
        ).finally(() => outstanding--);
      },
    };
  }
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 2_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`${what} did not happen`);
      await new Promise((r) => setImmediate(r));
    }
  };

  test('one marker serves every read waiting when it starts; later reads need a later marker', async () => {
    const src = manualSource();
    const clock = { t: 1_000 };
    const b = new ConsistencyBarrier(src, { intervalMs: 0, now: () => clock.t });
    const passed: string[] = [];
    const w1 = b.wait(999).then(() => passed.push('a'));
    const w2 = b.wait(1_000).then(() => passed.push('b'));
    await until('first marker', () => src.calls.length === 1);
    // Answered at the same millisecond as the marker started: may have preceded it, needs another.
    const w3 = b.wait(1_000).then(() => passed.push('c'));
    clock.t = 1_001;
    src.calls[0]?.done();
    await Promise.all([w1, w2]);
    assert.deepEqual(passed.sort(), ['a', 'b']);
    // The second marker starts only once the first is through: one catch-up at a time.
    await until('second marker', () => src.calls.length === 2);
    // Answered before the second marker started: the running one covers it.
    const w4 = b.wait(1_000).then(() => passed.push('d'));
    src.calls[1]?.done();
    await Promise.all([w3, w4]);
    assert.equal(src.calls.length, 2, 'no marker per read');
    assert.equal(src.maxOutstanding(), 1);
    assert.deepEqual(b.stats(), { markers: 2, passed: 4, failed: 0, maxBatch: 2 });
  });

  test('a failed catch-up fails its reads, and close refuses new ones', async () => {
    const src = manualSource();
    const b = new ConsistencyBarrier(src, { intervalMs: 0 });
    const w = b.wait(Date.now() - 1);
    await until('marker', () => src.calls.length === 1);
    src.calls[0]?.fail(new Error('stream stopped'));
    await assert.rejects(w, /stream stopped/);
    b.close();
    await assert.rejects(b.wait(Date.now()), /closed/);
    assert.equal(b.stats().failed, 1);
  });
});

describe('plan section', () => {
  test('accepts what a YAML plan can say and a typed mapping; refuses bad normalisers precisely', () => {
    const ok = runtimeTestSchema.safeParse({
      routes: ['GET /wiki/:title'],
      normalise: [
        { kind: 'ignore', paths: ['$headers.date'] },
        { kind: 'replace', pattern: 'id=\\d+', with: 'id=N' },
        { kind: 'tolerance', paths: ['score'], relative: 0.01 },
      ],
      expected: [{ paths: ['length'], change: 'added' }, expectJson('GET /wiki/:title', (p) => p)],
      gate: { minComparedPerEndpoint: 100 },
      maxComparedPerSecond: 10,
    });
    assert.ok(ok.success, ok.error?.message);
    const noBudget = runtimeTestSchema.safeParse({ maxComparedPerSecond: 0 });
    assert.equal(noBudget.error?.issues[0]?.path.join('.'), 'maxComparedPerSecond');
    const bad = runtimeTestSchema.safeParse({ normalise: [{ kind: 'replace', pattern: '(', with: '' }] });
    assert.equal(bad.success, false);
    assert.match(bad.error?.issues[0]?.message ?? '', /not a valid regular expression/);
    const noBound = runtimeTestSchema.safeParse({ normalise: [{ kind: 'tolerance', paths: ['x'] }] });
    assert.match(noBound.error?.issues[0]?.message ?? '', /absolute or relative/);
  });
});
