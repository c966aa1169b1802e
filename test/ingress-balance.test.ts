/**
 * Balancing across several backends of a universe, over real HTTP on loopback: least-busy steers
 * around a backend holding a request open where round-robin does not, and active health checks take a
 * backend out of rotation (non-2xx, timeout), put it back once it passes, check backends set later,
 * forget removed ones, and still serve when every backend fails its check.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { startIngress, type Balance, type Ingress } from '../src/ingress/index.js';

async function get(ingress: Ingress, path: string): Promise<number> {
  const r = await request(`${ingress.url}${path}`);
  await r.body.text();
  return r.statusCode;
}

const seenUnder = (backend: EchoBackend, prefix: string): number =>
  backend.seen.filter((s) => s.url.startsWith(prefix)).length;

/** Backend `a` holds its first `/hold` request open until `answer()`; `b` echoes. */
async function busyPair(balance: Balance) {
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  let pending: ServerResponse | undefined;
  const a = await startEchoBackend({
    name: 'a',
    record: true,
    handler: (req, res) => {
      if (req.url !== '/hold') return false;
      pending = res;
      holding();
      return true;
    },
  });
  const b = await startEchoBackend({ name: 'b', record: true });
  const ingress = await startIngress({ upstreams: { old: [a.url, b.url] }, route: 'old', balance });
  // The cursor starts at a: the first request goes there whatever the policy.
  const first = get(ingress, '/hold');
  await withDeadline('a holding its first request', held, 5_000);
  return {
    a,
    b,
    ingress,
    answer: async () => {
      pending?.end('done');
      assert.equal(await withDeadline('the held request answered', first, 5_000), 200);
    },
    close: async () => {
      pending?.end();
      await ingress.close();
      await a.close();
      await b.close();
    },
  };
}

describe('balancing', () => {
  test('least-busy: while a holds a request everything goes to b, then they alternate again', async () => {
    const pair = await busyPair('least-busy');
    const { a, b, ingress } = pair;
    try {
      for (let i = 0; i < 6; i++) assert.equal(await get(ingress, `/busy/${i}`), 200);
      assert.equal(seenUnder(a, '/busy'), 0, 'nothing is sent to the backend with an exchange under way');
      assert.equal(seenUnder(b, '/busy'), 6);
      await pair.answer();
      for (let i = 0; i < 6; i++) assert.equal(await get(ingress, `/idle/${i}`), 200);
      assert.equal(seenUnder(a, '/idle'), 3, 'equally idle backends take turns');
      assert.equal(seenUnder(b, '/idle'), 3);
    } finally {
      await pair.close();
    }
  });

  test('round-robin: a backend holding a request still gets its turn', async () => {
    const pair = await busyPair('round-robin');
    const { a, b, ingress } = pair;
    try {
      for (let i = 0; i < 6; i++) assert.equal(await get(ingress, `/busy/${i}`), 200);
      assert.equal(seenUnder(a, '/busy'), 3);
      assert.equal(seenUnder(b, '/busy'), 3);
      await pair.answer();
    } finally {
      await pair.close();
    }
  });

  test('health checks take a failing backend out, put it back, follow setUpstreams, and fall back when all fail', async () => {
    const health = { a: 503, c: 'hang' as 'hang' | 200 };
    const a = await startEchoBackend({
      name: 'a',
      record: true,
      handler: (req, res) => {
        if (req.url !== '/healthz') return false;
        res.writeHead(health.a).end();
        return true;
      },
    });
    const b = await startEchoBackend({ name: 'b', record: true });
    const c = await startEchoBackend({
      name: 'c',
      record: true,
      // Never answered while 'hang': the check's timeout fails it.
      handler: (req, res) => {
        if (req.url !== '/healthz') return false;
        if (health.c !== 'hang') res.writeHead(health.c).end();
        return true;
      },
    });
    const ingress = await startIngress({
      upstreams: { old: [a.url, b.url] },
      route: 'old',
      healthCheck: { path: '/healthz', intervalMs: 50, timeoutMs: 300 },
    });
    const up = (url: string): boolean | undefined =>
      ingress.stats().backends.old.find((x) => x.url === url)?.up;
    const until = (what: string, ok: () => boolean) =>
      waitUntil(what, async () => (ok() ? true : undefined), { timeoutMs: 5_000, intervalMs: 10 });
    try {
      await until('a out of rotation (503)', () => up(a.url) === false);
      assert.equal(up(b.url), true);
      assert.match(await ingress.metrics(), /imago_ingress_backends_up\{universe="old"\} 1\n/);
      for (let i = 0; i < 8; i++) assert.equal(await get(ingress, `/out/${i}`), 200);
      assert.equal(seenUnder(a, '/out'), 0);
      assert.equal(seenUnder(b, '/out'), 8);

      health.a = 200;
      await until('a back in rotation', () => up(a.url) === true);
      for (let i = 0; i < 8; i++) assert.equal(await get(ingress, `/back/${i}`), 200);
      assert.equal(seenUnder(a, '/back'), 4);

      // c is new: checked at once, and its health path never answers.
      ingress.setUpstreams('old', [a.url, c.url]);
      const bChecks = seenUnder(b, '/healthz');
      assert.deepEqual(
        ingress.stats().backends.old.map((x) => x.url),
        [a.url, c.url],
        'the removed backend is forgotten',
      );
      await until('c out of rotation (timeout)', () => up(c.url) === false);
      for (let i = 0; i < 6; i++) assert.equal(await get(ingress, `/new-set/${i}`), 200);
      assert.equal(seenUnder(a, '/new-set'), 6);
      assert.equal(seenUnder(c, '/new-set'), 0);
      // Several rounds have passed (c's check timed out): at most the one under way at removal arrived.
      assert.ok(seenUnder(b, '/healthz') <= bChecks + 1, 'b, removed, is not checked any more');

      // Every backend failing its check: requests are still served, in turn, rather than refused.
      health.a = 503;
      await until('a out again', () => up(a.url) === false);
      for (let i = 0; i < 6; i++) assert.equal(await get(ingress, `/all-down/${i}`), 200);
      assert.equal(seenUnder(a, '/all-down'), 3);
      assert.equal(seenUnder(c, '/all-down'), 3);

      health.c = 200;
      await until('c back once its check passes', () => up(c.url) === true);
    } finally {
      await ingress.close();
      await a.close();
      await b.close();
      await c.close();
    }
  });
});
