/**
 * A shipping mirror (an ingress node handing its mirrored reads to a remote runtime test) ships in
 * batches, and only once the node has been quiet for a moment or the oldest read has waited its
 * limit: its work then does not compete with the clients' requests on the machines the node shares
 * with the old universe.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { waitUntil } from '../src/deadline.js';
import { BackendSet, Mirror, type ShippedExchange } from '../src/ingress/index.js';

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

const shipped = (shipments: Shipment[]) => shipments.reduce((n, s) => n + s.exchanges.length, 0);

async function until(shipments: Shipment[], n: number): Promise<void> {
  await waitUntil(`${n} exchanges shipped`, async () => (shipped(shipments) >= n ? true : undefined), {
    timeoutMs: 5_000,
    intervalMs: 5,
  });
}

describe('shipping mirror', () => {
  test('reads enqueued together while the node is quiet go in one shipment, in arrival order', async () => {
    const { mirror, shipments, read } = shippingMirror({});
    mirror.idleFor = () => 1_000;
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
    mirror.idleFor = () => Math.max(0, performance.now() - quietSince);
    read(1);
    read(2);
    // A measurement, not a synchronisation: the node stays busy for a while.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(shipments.length, 0, 'nothing shipped while a request is in flight');
    quietSince = performance.now();
    await until(shipments, 2);
    const at = shipments[0]?.at ?? 0;
    assert.ok(at - quietSince >= 19, `shipped ${(at - quietSince).toFixed(1)} ms after the node went quiet`);
    assert.equal(shipments.length, 1);
  });

  test('a node that is never quiet still ships, once the oldest read has waited its limit', async () => {
    const { mirror, shipments, read } = shippingMirror({ shipMaxWaitMs: 100 });
    mirror.idleFor = () => 0;
    const started = performance.now();
    read(1);
    await until(shipments, 1);
    const waited = (shipments[0]?.at ?? 0) - started;
    assert.ok(waited >= 99, `shipped after ${waited.toFixed(1)} ms`);
  });

  test('batches are bounded by count and by body bytes', async () => {
    const { mirror, shipments, read } = shippingMirror({ concurrency: 1 });
    mirror.idleFor = () => 1_000;
    for (let i = 0; i < 100; i++) read(i);
    await until(shipments, 100);
    assert.deepEqual(
      shipments.map((s) => s.exchanges.length),
      [64, 36],
    );
    const big = shippingMirror({ concurrency: 1 });
    big.mirror.idleFor = () => 1_000;
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
    await waitUntil('3 failed', async () => (mirror.stats().failed === 3 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 5,
    });
    assert.equal(mirror.stats().sent, 3);
  });
});
