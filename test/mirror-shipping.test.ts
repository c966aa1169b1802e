/**
 * A shipping mirror (an ingress node handing its mirrored reads to a remote runtime test) ships in
 * batches, and only once the node has been quiet for a moment or the oldest read has waited its
 * limit: its work then does not compete with the clients' requests on the machines the node shares
 * with the old universe.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil } from '../src/deadline.js';
import {
  BackendSet,
  decodeExchanges,
  Mirror,
  startIngress,
  type MirrorLimits,
  type ShippedExchange,
} from '../src/ingress/index.js';
import { startCollector } from '../src/runtime-test/collector.js';

type Shipment = { at: number; exchanges: ShippedExchange[] };

function shippingMirror(limits: { shipQuietMs?: number; shipMaxWaitMs?: number; concurrency?: number }) {
  const shipments: Shipment[] = [];
  const mirror = new Mirror(
    {
      ...limits,
      ship: async (exchanges) => void shipments.push({ at: performance.now(), exchanges }),
    },
    new BackendSet({ connectMs: 1_000, headersMs: 1_000, bodyMs: 1_000 }),
  );
  mirror.enabled = true;
  const read = (i: number, bodyBytes = 10) =>
    mirror.enqueue({
      target: 'new',
      request: { method: 'GET', url: `/page/${i}`, headers: [], body: Buffer.alloc(0) },
      primary: { universe: 'old', status: 200, headers: [], body: Buffer.alloc(bodyBytes), truncated: false },
      primaryDoneAt: Date.now(),
    });
  return { mirror, shipments, read };
}

/** An ingress node in front of an echo backend (standing in for both universes). */
async function startNode(
  mirrorLimits: MirrorLimits,
  handler?: Parameters<typeof startEchoBackend>[0]['handler'],
) {
  const old = await startEchoBackend({ name: 'old', ...(handler ? { handler } : {}) });
  const ingress = await startIngress({
    upstreams: { old: [old.url], new: [old.url] },
    route: 'old',
    mirrorLimits,
  });
  return { old, ingress };
}

/** Waits (5 s at most) until `ok()` holds. */
async function eventually(what: string, ok: () => boolean): Promise<void> {
  await waitUntil(what, async () => (ok() ? true : undefined), { timeoutMs: 5_000, intervalMs: 5 });
}

const shipped = (shipments: Shipment[]) => shipments.reduce((n, s) => n + s.exchanges.length, 0);

async function until(shipments: Shipment[], n: number): Promise<void> {
  await eventually(`${n} exchanges shipped`, () => shipped(shipments) >= n);
}

describe('shipping mirror', () => {
  test('reads enqueued together while the node is quiet go in one shipment, in arrival order', async () => {
    const { mirror, shipments, read } = shippingMirror({});
    mirror.watchIdle(() => 1_000);
    for (let i = 0; i < 5; i++) assert.equal(read(i), true);
    await until(shipments, 5);
    assert.equal(shipments.length, 1);
    assert.deepEqual(
      shipments[0]?.exchanges.map((x) => x.request.url),
      ['/page/0', '/page/1', '/page/2', '/page/3', '/page/4'],
    );
    assert.deepEqual(
      { sent: mirror.stats().sent, queued: mirror.stats().queued, failed: mirror.stats().failed },
      { sent: 5, queued: 0, failed: 0 },
    );
  });

  test('while requests are in flight it waits, and ships once the node has been quiet', async () => {
    const { mirror, shipments, read } = shippingMirror({ shipQuietMs: 20, shipMaxWaitMs: 5_000 });
    let quietSince = Infinity;
    mirror.watchIdle(() => Math.max(0, performance.now() - quietSince));
    read(1);
    read(2);
    // A measurement, not a synchronisation: the node stays busy for a while.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(shipments.length, 0, 'nothing shipped while a request is in flight');
    quietSince = performance.now();
    mirror.nodeIdle();
    await until(shipments, 2);
    const at = shipments[0]?.at ?? 0;
    assert.ok(at - quietSince >= 19, `shipped ${(at - quietSince).toFixed(1)} ms after the node went quiet`);
    assert.equal(shipments.length, 1);
  });

  test('a node that is never quiet still ships, once the oldest read has waited its limit', async () => {
    const { mirror, shipments, read } = shippingMirror({ shipMaxWaitMs: 100 });
    mirror.watchIdle(() => 0);
    // A flush with nothing to ship leaves the waiting rule as it was.
    await mirror.flush(1_000);
    const started = performance.now();
    read(1);
    await until(shipments, 1);
    const waited = (shipments[0]?.at ?? 0) - started;
    assert.ok(waited >= 99, `shipped after ${waited.toFixed(1)} ms`);
  });

  test('batches are bounded by count and by body bytes', async () => {
    const { mirror, shipments, read } = shippingMirror({ concurrency: 1 });
    mirror.watchIdle(() => 1_000);
    for (let i = 0; i < 100; i++) read(i);
    await until(shipments, 100);
    assert.deepEqual(
      shipments.map((s) => s.exchanges.length),
      [64, 36],
    );
    const big = shippingMirror({ concurrency: 1 });
    big.mirror.watchIdle(() => 1_000);
    for (let i = 0; i < 3; i++) big.read(i, 900 * 1024);
    await until(big.shipments, 3);
    assert.deepEqual(
      big.shipments.map((s) => s.exchanges.length),
      [2, 1],
      'at most 2 MiB of bodies in one shipment',
    );
  });

  test('a shipment that fails counts each of its reads as failed', async () => {
    const mirror = new Mirror(
      { ship: async () => Promise.reject(new Error('collector down')) },
      new BackendSet({ connectMs: 1_000, headersMs: 1_000, bodyMs: 1_000 }),
    );
    mirror.enabled = true;
    for (let i = 0; i < 3; i++)
      mirror.enqueue({
        target: 'new',
        request: { method: 'GET', url: `/p/${i}`, headers: [], body: Buffer.alloc(0) },
        primary: { universe: 'old', status: 200, headers: [], body: Buffer.alloc(0), truncated: false },
        primaryDoneAt: Date.now(),
      });
    await eventually('3 failed', () => mirror.stats().failed === 3);
    assert.equal(mirror.stats().sent, 3);
  });

  test('through a real node: a read answered while another is in flight ships after that one ends', async () => {
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let slowArrived = false;
    const shipped: { url: string; at: number }[] = [];
    const collector = await startCollector({
      onExchange: (x) => shipped.push({ url: x.request.url, at: performance.now() }),
    });
    const { old, ingress } = await startNode({ shipMaxWaitMs: 10_000 }, (req, res) => {
      if (req.url !== '/slow') return false;
      slowArrived = true;
      void released.then(() => res.end('slow'));
      return true;
    });
    try {
      await ingress.mirror(true, collector.sink);
      const slow = request(`${ingress.url}/slow`).then((r) => r.body.text());
      await eventually('the slow read at the backend', () => slowArrived);
      assert.equal((await request(`${ingress.url}/fast`)).statusCode, 200);
      // A measurement, not a synchronisation: /slow stays in flight a while.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(shipped.length, 0, 'nothing shipped while /slow is in flight');
      const endedAt = performance.now();
      release();
      assert.equal(await slow, 'slow');
      await eventually('both reads shipped', () => shipped.length === 2);
      assert.deepEqual(
        shipped.map((x) => x.url),
        ['/fast', '/slow'],
      );
      assert.ok((shipped[0]?.at ?? 0) > endedAt);
      assert.equal(collector.counts.accepted, 2);
      assert.deepEqual(
        { sent: ingress.mirrorStats()?.sent, queued: ingress.mirrorStats()?.queued },
        { sent: 2, queued: 0 },
      );
    } finally {
      await ingress.close();
      await collector.close();
      await old.close();
    }
  });

  test('what waits for a quiet moment is shipped, not lost, when the node closes', async () => {
    const shipped: string[] = [];
    const collector = await startCollector({ onExchange: (x) => shipped.push(x.request.url) });
    // Never quiet enough: only the flush at close ships.
    const { old, ingress } = await startNode({ shipQuietMs: 60_000, shipMaxWaitMs: 60_000 });
    try {
      await ingress.mirror(true, collector.sink);
      for (let i = 0; i < 3; i++)
        assert.match(await (await request(`${ingress.url}/p/${i}`)).body.text(), /"universe":"old"/);
      await eventually('3 reads waiting', () => ingress.mirrorStats()?.queued === 3);
      await ingress.close();
      assert.deepEqual(shipped, ['/p/0', '/p/1', '/p/2']);
    } finally {
      await ingress.close();
      await collector.close();
      await old.close();
    }
  });

  test('another sink: what the old mirror holds goes to the old sink; the same sink keeps the mirror', async () => {
    const toA: string[] = [];
    const toB: string[] = [];
    const a = await startCollector({ onExchange: (x) => toA.push(x.request.url) });
    const b = await startCollector({ onExchange: (x) => toB.push(x.request.url) });
    const { old, ingress } = await startNode({ shipQuietMs: 60_000, shipMaxWaitMs: 60_000 });
    const waiting = (n: number) =>
      eventually(`${n} reads waiting`, () => ingress.mirrorStats()?.queued === n);
    try {
      await ingress.mirror(true, a.sink);
      for (const p of ['/a/1', '/a/2']) await (await request(`${ingress.url}${p}`)).body.text();
      await waiting(2);
      await ingress.mirror(true, a.sink);
      assert.equal(
        ingress.mirrorStats()?.queued,
        2,
        'the same sink again: the same mirror, its reads still waiting',
      );
      await ingress.mirror(true, b.sink);
      await eventually('the old mirror flushed to A', () => toA.length === 2);
      await (await request(`${ingress.url}/b/1`)).body.text();
      await waiting(1);
      await ingress.close();
      assert.deepEqual({ toA, toB }, { toA: ['/a/1', '/a/2'], toB: ['/b/1'] });
    } finally {
      await ingress.close();
      await a.close();
      await b.close();
      await old.close();
    }
  });

  test('a read the collector would refuse (not origin-form, as OPTIONS *) is skipped at the node', async () => {
    const { mirror, shipments, read } = shippingMirror({});
    const refused = mirror.enqueue({
      target: 'new',
      request: { method: 'OPTIONS', url: '*', headers: [], body: Buffer.alloc(0) },
      primary: { universe: 'old', status: 200, headers: [], body: Buffer.alloc(0), truncated: false },
      primaryDoneAt: Date.now(),
    });
    assert.equal(refused, false);
    read(1);
    await until(shipments, 1);
    assert.deepEqual(
      shipments.flatMap((s) => s.exchanges.map((x) => x.request.url)),
      ['/page/1'],
    );
    assert.equal(mirror.stats().skipped, 1);
  });

  test('a bare exchange (one per POST, the previous release) is a batch of one', () => {
    const wire = {
      request: { method: 'GET', url: '/x', headers: [], body: '' },
      primary: {
        universe: 'old',
        status: 200,
        headers: [],
        body: Buffer.from('hi').toString('base64'),
        truncated: false,
      },
      primaryDoneAt: 1,
    };
    const [x, ...rest] = decodeExchanges(wire);
    assert.equal(rest.length, 0);
    assert.equal(x?.primary.body.toString(), 'hi');
  });
});
