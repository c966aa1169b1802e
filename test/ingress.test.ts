/**
 * Ingress phase-1 behaviour over real HTTP on 127.0.0.1: routing and header rewriting, 502 on a dead
 * upstream, hold/release under concurrent load (every held request answered once, by the universe in
 * force at release, in arrival order), drain tracking, and the hold deadline.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { startClientLoops } from './fixtures/ingress-load.js';
import { waitUntil } from '../src/deadline.js';
import { startIngress, type Ingress } from '../src/ingress/index.js';

async function getJson(url: string, init?: Parameters<typeof request>[1]) {
  const res = await request(url, init);
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    json: () => JSON.parse(text) as Record<string, unknown>,
  };
}

/** A port nothing listens on: bind, read the number, close. */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A gate a backend handler waits on, opened by the test. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('ingress routing', () => {
  let oldB: EchoBackend;
  let newB: EchoBackend;
  let ingress: Ingress;
  before(async () => {
    oldB = await startEchoBackend({ name: 'old', record: true });
    newB = await startEchoBackend({ name: 'new', record: true });
    ingress = await startIngress({ upstreams: { old: [oldB.url] }, route: 'old' });
  });
  after(async () => {
    await ingress.close();
    await oldB.close();
    await newB.close();
  });

  test('routes to the initial universe and rewrites headers', async () => {
    // node:http rather than undici: undici refuses a custom Connection header.
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        `${ingress.url}/pages/1?x=1`,
        {
          headers: {
            connection: 'keep-alive, x-hop',
            'x-hop': 'secret',
            'x-keep': 'yes',
            'x-forwarded-for': '10.0.0.1',
            'proxy-authorization': 'Basic abc',
          },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { universe: string }).universe, 'old');
    const seen = oldB.seen.at(-1);
    assert.ok(seen);
    assert.equal(seen.url, '/pages/1?x=1');
    assert.equal(seen.headers['x-keep'], 'yes');
    assert.equal(seen.headers['x-hop'], undefined, 'headers named in Connection are hop-by-hop');
    assert.equal(seen.headers['proxy-authorization'], undefined);
    assert.equal(seen.headers['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], `127.0.0.1:${ingress.port}`);
    assert.equal(ingress.stats().requests.old, 1);
  });

  test('POST bodies stream through', async () => {
    const body = Buffer.alloc(100_000, 7);
    const r = await getJson(`${ingress.url}/upload`, { method: 'POST', body });
    assert.equal(r.status, 200);
    assert.equal(r.json().bodyBytes, 100_000);
  });

  test('release refuses a universe without upstreams, then flips once they are set', async () => {
    ingress.hold();
    assert.throws(() => ingress.release('new'), /no upstreams/);
    assert.equal(ingress.route(), 'old');
    assert.equal(ingress.holding(), true);
    ingress.setUpstreams('new', [newB.url]);
    assert.deepEqual(ingress.release('new'), { released: 0 });
    const r = await getJson(`${ingress.url}/after`);
    assert.equal(r.json().universe, 'new');
  });
});

describe('ingress upstream failure', () => {
  test('a refused connection becomes 502 and an error count, never a crash', async () => {
    const ingress = await startIngress({
      upstreams: { old: [`http://127.0.0.1:${await deadPort()}`] },
      route: 'old',
    });
    try {
      const r = await getJson(`${ingress.url}/x`);
      assert.equal(r.status, 502);
      assert.equal(ingress.stats().errors.old, 1);
      assert.equal(ingress.inFlight('old'), 0);
    } finally {
      await ingress.close();
    }
  });
});

describe('hold and release', () => {
  test('under concurrent load every held request is answered once, by the universe in force at release', async () => {
    const oldB = await startEchoBackend({ name: 'old', record: true });
    const newB = await startEchoBackend({ name: 'new', record: true });
    const dispatchOrder: string[] = [];
    const ingress = await startIngress({
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old',
      onDispatch: (_u, req) => dispatchOrder.push(req.url ?? ''),
    });
    let releasedAt = Infinity;
    // Clients stop 200 ms after the release: enough to see who answers after it.
    const load = startClientLoops(ingress.url, 16, () => performance.now() > releasedAt + 200);
    const { answers, perClient, sent } = load;
    try {
      await waitUntil(
        'some traffic to old',
        async () => (ingress.stats().requests.old >= 100 ? true : undefined),
        {
          timeoutMs: 5_000,
        },
      );
      ingress.hold();
      // Every client loop ends up blocked on a held request.
      await waitUntil('all 16 clients held', async () => (ingress.stats().held === 16 ? true : undefined), {
        timeoutMs: 5_000,
      });
      await ingress.drained('old', 2_000);
      const heldIds = dispatchOrder.length;
      releasedAt = performance.now();
      assert.deepEqual(ingress.release('new'), { released: 16 });
      assert.equal(ingress.route(), 'new');
      await load.done;

      // Exactly once: every id answered once, nothing lost.
      const total = sent.reduce((a, b) => a + b, 0);
      assert.equal(answers.size, total);
      for (const [id, by] of answers) assert.equal(by.length, 1, `${id} answered ${by.length} times`);
      assert.equal(oldB.seen.length + newB.seen.length, total);
      // Atomicity: old saw nothing after the release; each client sees old… then new…, never back.
      for (const s of oldB.seen) assert.ok(s.at < releasedAt, `old received ${s.url} after release`);
      for (const seq of perClient) {
        const firstNew = seq.indexOf('new');
        assert.ok(firstNew > 0);
        assert.ok(seq.slice(firstNew).every((u) => u === 'new'));
      }
      // The 16 held requests were dispatched first after release, to 'new'.
      const heldDispatched = dispatchOrder.slice(heldIds, heldIds + 16);
      for (const url of heldDispatched) assert.deepEqual(answers.get(url), ['new']);
      assert.ok(ingress.stats().maxHoldMs > 0);
    } finally {
      await load.close();
      await ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('held requests are dispatched in arrival order', async () => {
    const oldB = await startEchoBackend({ name: 'old', record: true });
    const dispatchOrder: string[] = [];
    const ingress = await startIngress({
      upstreams: { old: [oldB.url] },
      route: 'old',
      onDispatch: (_u, req) => dispatchOrder.push(req.url ?? ''),
    });
    try {
      ingress.hold();
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < 20; i++) {
        pending.push(getJson(`${ingress.url}/seq/${i}`));
        await waitUntil(
          `request ${i} held`,
          async () => (ingress.stats().held === i + 1 ? true : undefined),
          {
            timeoutMs: 2_000,
            intervalMs: 2,
          },
        );
      }
      assert.deepEqual(ingress.release(), { released: 20 });
      const results = (await Promise.all(pending)) as { status: number }[];
      assert.ok(results.every((r) => r.status === 200));
      assert.deepEqual(
        dispatchOrder,
        Array.from({ length: 20 }, (_, i) => `/seq/${i}`),
      );
    } finally {
      await ingress.close();
      await oldB.close();
    }
  });

  test('past maxWaitMs a held request gets 503 with Retry-After: 1; past maxRequests at once', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const ingress = await startIngress({
      upstreams: { old: [oldB.url] },
      route: 'old',
      hold: { maxWaitMs: 150, maxRequests: 2 },
    });
    try {
      ingress.hold();
      const t0 = performance.now();
      const first = getJson(`${ingress.url}/a`);
      const second = getJson(`${ingress.url}/b`);
      await waitUntil('two held', async () => (ingress.stats().held === 2 ? true : undefined), {
        timeoutMs: 2_000,
      });
      const third = await getJson(`${ingress.url}/c`);
      assert.equal(third.status, 503, 'queue full');
      const [a, b] = await Promise.all([first, second]);
      const waited = performance.now() - t0;
      for (const r of [a, b]) {
        assert.equal(r.status, 503);
        assert.equal(r.headers['retry-after'], '1');
      }
      assert.ok(waited >= 140, `answered after ${waited} ms`);
      assert.equal(ingress.stats().held, 0);
      assert.ok(ingress.stats().maxHoldMs >= 140);
      assert.deepEqual(ingress.release(), { released: 0 });
      assert.equal((await getJson(`${ingress.url}/d`)).status, 200);
    } finally {
      await ingress.close();
      await oldB.close();
    }
  });
});

describe('drain', () => {
  test('inFlight counts a request until its upstream response is completely received', async () => {
    const headersGate = gate();
    const bodyGate = gate();
    const oldB = await startEchoBackend({
      name: 'old',
      handler: (req, res) => {
        if (req.url !== '/slow') return false;
        void headersGate.opened.then(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('part1 ');
          void bodyGate.opened.then(() => res.end('part2'));
        });
        return true;
      },
    });
    const ingress = await startIngress({ upstreams: { old: [oldB.url] }, route: 'old' });
    try {
      assert.equal(ingress.inFlight('old'), 0);
      await ingress.drained('old', 10);
      const res = request(`${ingress.url}/slow`);
      await waitUntil('dispatched', async () => (ingress.inFlight('old') === 1 ? true : undefined), {
        timeoutMs: 2_000,
      });
      await assert.rejects(ingress.drained('old', 50), /1 request\(s\) still in flight/);
      headersGate.open();
      const r = await res;
      assert.equal(r.statusCode, 200);
      // Headers and part of the body are out, but the backend has not finished: still in flight.
      assert.equal(ingress.inFlight('old'), 1);
      const drained = ingress.drained('old', 2_000);
      bodyGate.open();
      assert.equal(await r.body.text(), 'part1 part2');
      await drained;
      assert.equal(ingress.inFlight('old'), 0);
    } finally {
      await ingress.close();
      await oldB.close();
    }
  });
});
