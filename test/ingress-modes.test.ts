/**
 * Ingress run-time modes over real HTTP: mirroring (comparator gets both answers; a slow or failing
 * mirror neither delays nor changes the client's answer; a full queue drops and counts), read/write
 * classification, the control endpoint (token, epochs, restart from the control store) and metrics.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil } from '../src/deadline.js';
import { startIngress, type MirrorExchange } from '../src/ingress/index.js';

async function get(url: string, init?: Parameters<typeof request>[1]) {
  const r = await request(url, init);
  return { status: r.statusCode, text: await r.body.text() };
}

describe('mirror', () => {
  test('reads are copied to the other universe and both answers reach the comparator', async () => {
    const oldB = await startEchoBackend({ name: 'old', record: true });
    const newB = await startEchoBackend({ name: 'new', record: true });
    const exchanges: MirrorExchange[] = [];
    const ingress = await startIngress({
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old',
      mirror: { compare: (e) => void exchanges.push(e) },
    });
    try {
      await ingress.mirror(true);
      assert.equal((await get(`${ingress.url}/page/1`)).status, 200);
      assert.equal((await get(`${ingress.url}/search`, { method: 'POST', body: 'q=1' })).status, 200);
      await waitUntil('one comparison', async () => (exchanges.length === 1 ? true : undefined), {
        timeoutMs: 2_000,
      });
      const e = exchanges[0];
      assert.ok(e && 'status' in e.mirror);
      assert.equal(e.request.url, '/page/1');
      assert.equal(JSON.parse(e.primary.body.toString()).universe, 'old');
      assert.equal(JSON.parse(e.mirror.body.toString()).universe, 'new');
      // The POST is a write: never mirrored.
      assert.equal(newB.seen.filter((s) => s.method === 'POST').length, 0);
      assert.equal(ingress.mirrorStats()?.skipped, 1);
      assert.equal(ingress.stats().requests.new, 0, 'mirror copies are not client requests');
    } finally {
      await ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('reads waiting for the barrier hold no copy slot; past it they go one slot at a time', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new', record: true });
    let open!: () => void;
    const fence = new Promise<void>((resolve) => (open = resolve));
    let atBarrier = 0;
    let compared = 0;
    const ingress = await startIngress({
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old',
      mirror: {
        concurrency: 1,
        barrier: async () => {
          atBarrier++;
          await fence;
        },
        compare: () => void compared++,
      },
    });
    try {
      await ingress.mirror(true);
      for (let i = 0; i < 5; i++) assert.equal((await get(`${ingress.url}/page/${i}`)).status, 200);
      // With one slot held at the barrier, only the first read would be waiting there.
      await waitUntil('5 reads at the barrier', async () => (atBarrier === 5 ? true : undefined), {
        timeoutMs: 5_000,
      });
      assert.equal(ingress.mirrorStats()?.queued, 5);
      assert.equal(ingress.mirrorStats()?.inFlight, 0);
      assert.equal(newB.seen.length, 0, 'nothing is copied before the barrier passes');
      open();
      await waitUntil('5 comparisons', async () => (compared === 5 ? true : undefined), { timeoutMs: 5_000 });
      assert.deepEqual(
        newB.seen.map((s) => s.url),
        ['/page/0', '/page/1', '/page/2', '/page/3', '/page/4'],
        'one at a time, in order',
      );
    } finally {
      await ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('sampleRate copies every n-th eligible read and counts the others', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new', record: true });
    let compared = 0;
    const ingress = await startIngress({
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old',
      mirror: { compare: () => void compared++, sampleRate: 0.25 },
    });
    try {
      await ingress.mirror(true);
      for (let i = 0; i < 40; i++) assert.equal((await get(`${ingress.url}/page/${i}`)).status, 200);
      await waitUntil('10 comparisons', async () => (compared === 10 ? true : undefined), {
        timeoutMs: 5_000,
      });
      assert.equal(ingress.mirrorStats()?.unsampled, 30);
      assert.deepEqual(
        newB.seen.map((s) => s.url),
        [
          '/page/3',
          '/page/7',
          '/page/11',
          '/page/15',
          '/page/19',
          '/page/23',
          '/page/27',
          '/page/31',
          '/page/35',
          '/page/39',
        ],
      );
    } finally {
      await ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('a slow or failing mirror target changes neither latency nor answers; a full queue drops and counts', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    // The mirror target never answers /slow and resets /fail.
    const newB = await startEchoBackend({
      name: 'new',
      handler: (req, res) => {
        if (req.url?.startsWith('/fail')) {
          res.socket?.destroy();
          return true;
        }
        return true; // everything else hangs
      },
    });
    let compared = 0;
    const ingress = await startIngress({
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old',
      mirror: { compare: () => void compared++, maxQueue: 5, concurrency: 2, timeoutMs: 300 },
    });
    try {
      // Baseline latency without mirroring.
      const time = async (n: number, prefix: string) => {
        const t0 = performance.now();
        for (let i = 0; i < n; i++) {
          const r = await get(`${ingress.url}/${prefix}/${i}`);
          assert.equal(r.status, 200);
          assert.equal(JSON.parse(r.text).universe, 'old');
        }
        return (performance.now() - t0) / n;
      };
      await time(20, 'warm');
      const base = await time(50, 'base');
      await ingress.mirror(true);
      const mirrored = await time(50, 'slow');
      assert.ok(
        mirrored < base * 3 + 2,
        `mean latency ${mirrored.toFixed(2)} ms vs ${base.toFixed(2)} ms unmirrored`,
      );
      const s = ingress.mirrorStats();
      assert.ok(s);
      assert.ok(s.dropped >= 40, `dropped ${s.dropped}`);
      assert.ok(s.queued <= 5);
      await time(5, 'fail');
      await waitUntil(
        'mirror queue settled',
        async () =>
          ingress.mirrorStats()?.queued === 0 && ingress.mirrorStats()?.inFlight === 0 ? true : undefined,
        {
          timeoutMs: 5_000,
        },
      );
      assert.ok((ingress.mirrorStats()?.failed ?? 0) > 0);
      assert.ok(compared > 0, 'failures reach the comparator as errors');
      assert.match(await ingress.metrics(), /imago_ingress_mirror_dropped_total \d+/);
    } finally {
      await ingress.close();
      await oldB.close();
      await newB.close();
    }
  });
});

describe('classification', () => {
  test('by method by default, overridden by method + path rules', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const ingress = await startIngress({
      upstreams: { old: [oldB.url] },
      route: 'old',
      classify: [
        { method: 'GET', path: '/logout', class: 'write' },
        { method: 'POST', path: '/search/*', class: 'read' },
        { path: /^\/admin\//, class: 'write' },
      ],
    });
    try {
      assert.equal(ingress.classify('GET', '/pages/1'), 'read');
      assert.equal(ingress.classify('HEAD', '/'), 'read');
      assert.equal(ingress.classify('DELETE', '/pages/1'), 'write');
      assert.equal(ingress.classify('GET', '/logout?next=/'), 'write');
      assert.equal(ingress.classify('POST', '/search'), 'read');
      assert.equal(ingress.classify('POST', '/search/pages'), 'read');
      assert.equal(ingress.classify('POST', '/searchx'), 'write');
      assert.equal(ingress.classify('GET', '/admin/users'), 'write');
    } finally {
      await ingress.close();
      await oldB.close();
    }
  });
});

describe('control endpoint', () => {
  test('token, epochs, hold/release/mirror, drain, metrics, and restart from the control store', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imago-ingress-'));
    const storePath = join(dir, 'control.json');
    const token = 'test-token-0123456789';
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new' });
    const options = {
      upstreams: { old: [oldB.url], new: [newB.url] },
      route: 'old' as const,
      mirror: { compare: () => undefined },
      control: { token, store: storePath, nodeId: 'n1' },
    };
    let ingress = await startIngress(options);
    const call = async (path: string, body?: unknown, auth = token) => {
      const ctl = ingress.control;
      assert.ok(ctl);
      const r = await request(`${ctl.url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
      });
      const text = await r.body.text();
      return { status: r.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown> };
    };
    try {
      assert.equal((await call('/v1/state', undefined, 'wrong-token-0123456789')).status, 401);
      const state = await call('/v1/state');
      assert.equal(state.status, 200);
      assert.equal(state.json().route, 'old');
      assert.equal(state.json().epoch, 0);

      const held = await call('/v1/hold', { epoch: 3 });
      assert.equal(held.status, 200);
      assert.equal(held.json().epoch, 3);
      assert.equal(held.json().holding, true);
      assert.equal(ingress.holding(), true);
      const pending = get(`${ingress.url}/during-hold`);
      await waitUntil('held', async () => (ingress.stats().held === 1 ? true : undefined), {
        timeoutMs: 2_000,
      });
      assert.equal((await call('/v1/drain', { universe: 'old', timeoutMs: 1_000 })).status, 200);
      assert.equal(
        (await call('/v1/release', { epoch: 2, route: 'new' })).status,
        409,
        'stale epoch refused',
      );
      assert.equal(ingress.route(), 'old');
      const released = await call('/v1/release', { epoch: 4, route: 'new' });
      assert.equal(released.status, 200);
      assert.equal(released.json().released, 1);
      assert.equal(JSON.parse((await pending).text).universe, 'new');
      assert.equal((await call('/v1/mirror', { epoch: 5, enabled: true })).status, 200);
      assert.equal(ingress.mirrorStats()?.enabled, true);
      assert.equal((await call('/v1/hold', { epoch: 'x' })).status, 400);
      const metrics = await call('/metrics');
      assert.match(
        metrics.text,
        /imago_ingress_requests_total\{universe="new",class="read",status="2xx"\} 1/,
      );
      assert.match(metrics.text, /imago_ingress_hold_duration_seconds_count 1/);
      assert.match(metrics.text, /imago_ingress_route\{universe="new"\} 1/);

      // A restarted node resumes route, epoch and mirror from the store, not from its options.
      await ingress.close();
      ingress = await startIngress(options);
      assert.equal(ingress.route(), 'new');
      assert.equal(ingress.control?.epoch(), 5);
      assert.equal(ingress.mirrorStats()?.enabled, true);
      assert.equal(JSON.parse((await get(`${ingress.url}/after-restart`)).text).universe, 'new');
    } finally {
      await ingress.close();
      await oldB.close();
      await newB.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
