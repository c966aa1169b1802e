/**
 * Runtime testing on real traffic: the ingress mirrors reads, the runtime test compares.
 * - Noise learning over real HTTP (no database): a clock field in both universes is learned as noise
 *   and reported apart, a wrong field for one id is a mismatch, ids are grouped into one endpoint.
 * - The consistency barrier with real clusters, the wiki v1/v2 and the converter streaming: a read
 *   sent right after an edit is compared only once the new database has the edit (no false mismatch),
 *   v2's `length` is a declared difference checked by a typed mapping, the gate allows; then a planted
 *   regression in v2 is detected and the gate blocks; with conversion stopped, reads are skipped
 *   rather than compared with stale data.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { waitUntil } from '../src/deadline.js';
import { startIngress, type Ingress } from '../src/ingress/index.js';
import { RuntimeTest, expectJson, type RuntimeTestConfig } from '../src/runtime-test/index.js';
import { startCluster, createDatabase, type Cluster } from '../src/universe/cluster.js';
import { Converter } from '../src/conversion/converter.js';
import { startWiki as startV1 } from '../examples/wiki/v1/server.js';
import { startWiki as startV2 } from '../examples/wiki/v2/server.js';
import type { RunningWiki } from '../examples/wiki/app.js';
import { seedWiki } from '../examples/wiki/seed.js';
import wikiConversion from '../examples/wiki/conversion.js';

async function get(url: string): Promise<number> {
  const r = await request(url);
  await r.body.dump();
  return r.statusCode;
}

/** A tiny JSON service: `served` is a per-process counter (noise); `wrongId` gets a wrong name. */
async function itemService(
  wrongId?: string,
): Promise<{ url: string; served: () => number; close: () => Promise<void> }> {
  let served = 0;
  const server = http.createServer((req, res) => {
    const id = (req.url ?? '').split('/')[2] ?? '';
    const body = JSON.stringify({ id, name: id === wrongId ? 'wrong' : `item ${id}`, served: served++ });
    res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'session=s3cret' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    served: () => served,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The item services as old and new universe behind an ingress that mirrors to a runtime test. */
async function withItemMirror(
  config: RuntimeTestConfig,
  run: (ingressUrl: string, rt: RuntimeTest, copiesServed: () => number) => Promise<void>,
): Promise<void> {
  const oldSvc = await itemService();
  const newSvc = await itemService('7');
  const rt = new RuntimeTest({ oldUrls: [oldSvc.url], config });
  const ingress = await startIngress({
    upstreams: { old: [oldSvc.url], new: [newSvc.url] },
    route: 'old',
    mirror: rt.mirrorOptions({ concurrency: 1 }),
  });
  try {
    await ingress.mirror(true);
    await run(ingress.url, rt, newSvc.served);
  } finally {
    await ingress.close();
    await rt.close();
    await oldSvc.close();
    await newSvc.close();
  }
}

describe('runtime test over the ingress mirror', () => {
  test('learns noise per endpoint, reports it apart, counts only real differences', async () => {
    // Every difference sampled here (resampleEvery 1); sparing is the next test's.
    await withItemMirror({ noise: { minOccurrences: 2, resampleEvery: 1 } }, async (url, rt) => {
      for (let i = 0; i < 40; i++) {
        assert.equal(await get(`${url}/items/${i % 10}`), 200);
        await get(`${url}/items/${i % 10}`).then(() => rt.whenExchanges(2 * i + 1, 5_000));
      }
      await rt.whenExchanges(80, 5_000);
      const report = rt.report();
      assert.deepEqual(
        report.endpoints.map((e) => e.endpoint),
        ['GET /items/:param'],
      );
      const e = report.endpoints[0];
      assert.ok(e);
      assert.equal(e.compared, 80);
      assert.equal(e.mismatched, 8, 'the 8 reads of item 7');
      assert.deepEqual(e.mismatchPaths, [{ path: 'name', count: 8 }]);
      assert.equal(e.noisy + e.matched, 72);
      // Every answer carries the counter, but old and new counters coincide now and then.
      assert.deepEqual(
        e.noisePaths.map((n) => n.path),
        ['served'],
      );
      assert.ok((e.noisePaths[0]?.rate ?? 0) > 0.5);
      const sample = e.samples[0];
      assert.ok(sample && 'headers' in sample.new);
      assert.equal(sample.new.headers['set-cookie'], '***', 'answers are redacted in samples');
      assert.equal(rt.gate({ minComparedPerEndpoint: 10 }).pass, false);
    });
  });
});

describe('settled noise over the ingress mirror', () => {
  test('spares noise samples on a settled path, never on a real difference', async () => {
    await withItemMirror({ noise: { settleAfter: 10 } }, async (url, rt) => {
      for (let i = 0; i < 80; i++) {
        assert.equal(await get(`${url}/items/${i % 10}`), 200);
        await rt.whenExchanges(i + 1, 5_000);
      }
      const report = rt.report();
      const e = report.endpoints[0];
      assert.ok(e);
      const spared = report.skippedReasons['differs only on settled noise paths; noise sample spared'] ?? 0;
      assert.ok(spared > 20, `the counter's differences are spared once settled (${spared})`);
      assert.equal(e.compared + spared, 80, 'a spared read is skipped, not compared');
      assert.equal(e.mismatched, 8, 'every read of item 7 still sampled and found');
      assert.deepEqual((report.details.noiseSamples as { spared: number }).spared, spared);
    });
  });
});

describe('comparison budget over the ingress mirror', () => {
  test('a busy endpoint is compared at its budget, a rare one fully; the rest is never copied', async () => {
    const config = { routes: ['GET /items/:id', 'GET /rare/:id'], maxComparedPerSecond: 10 };
    await withItemMirror(config, async (url, rt, copiesServed) => {
      const started = performance.now();
      for (let i = 0; i < 30; i++) assert.equal(await get(`${url}/items/${i % 10}`), 200);
      const seconds = (performance.now() - started) / 1000;
      for (let i = 0; i < 2; i++) assert.equal(await get(`${url}/rare/${i}`), 200);
      const budget = () =>
        (rt.report().details.budget as { passedOver: Record<string, number> } | undefined)?.passedOver;
      // Every read is either handed to the comparator or passed over on arrival.
      await waitUntil(
        'every mirrored read accounted for',
        async () => (rt.exchanges() + (budget()?.['GET /items/:id'] ?? 0) === 32 ? true : undefined),
        { timeoutMs: 5_000 },
      );
      const rare = rt.report().endpoints.find((e) => e.endpoint === 'GET /rare/:id');
      assert.equal(rare?.compared, 2, 'the rare endpoint keeps every read');
      const items = rt.exchanges() - 2;
      assert.ok(items >= 2, `a full bucket's worth at once (${items})`);
      assert.ok(
        items <= 2 + Math.ceil(seconds * 10),
        `no more than the budget allows in ${seconds.toFixed(2)} s (${items})`,
      );
      assert.equal(copiesServed(), rt.exchanges(), 'a read passed over is never copied to the new universe');
    });
  });
});

describe('consistency barrier on the wiki with the converter streaming', () => {
  let oldCluster: Cluster;
  let newCluster: Cluster;
  let v1: RunningWiki;
  let v2: RunningWiki;
  let converter: Converter;
  let ingress: Ingress;
  let current: RuntimeTest;
  const streamErrors: unknown[] = [];
  const runtimeTest = (url: string) =>
    new RuntimeTest({
      conversion: converter,
      oldUrls: [url],
      config: {
        routes: ['/wiki/:title', '/wiki/:title/history'],
        expected: [
          expectJson<{ text: string }, { text: string; length: number }>('GET /wiki/:title', (p) => ({
            ...p,
            length: Buffer.byteLength(p.text),
          })),
        ],
      },
    });

  before(async () => {
    [oldCluster, newCluster] = await Promise.all([
      startCluster({ name: 'rt-old', ephemeral: true }),
      startCluster({ name: 'rt-new', ephemeral: true }),
    ]);
    const [oldDb, newDb] = await Promise.all([
      createDatabase(oldCluster, 'wiki'),
      createDatabase(newCluster, 'wiki'),
    ]);
    await seedWiki(oldDb, { pages: 50, revisionsPerPage: 2 });
    [v1, v2] = await Promise.all([startV1({ databaseUrl: oldDb }), startV2({ databaseUrl: newDb })]);
    converter = new Converter({
      sourceUrl: oldDb,
      targetUrl: newDb,
      conversion: wikiConversion,
      name: 'rt_test',
    });
    await converter.prepare();
    await converter.copy();
    await converter.startStreaming((err) => streamErrors.push(err));
    current = runtimeTest(v1.url);
    ingress = await startIngress({
      upstreams: { old: [v1.url], new: [v2.url] },
      route: 'old',
      // Delegates to the current runtime test, so each test starts with fresh figures.
      mirror: { barrier: (x) => current.barrier(x), compare: (x) => current.compare(x) },
    });
    await ingress.mirror(true);
  });

  after(async () => {
    await ingress?.close();
    await current?.close();
    await converter?.stop({ dropCapture: true });
    await Promise.all([v1?.close(), v2?.close()]);
    await Promise.all([oldCluster?.stop(), newCluster?.stop()]);
  });

  const edit = async (title: string, text: string) => {
    const r = await request(`${ingress.url}/wiki/${title}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer t0ken' },
      body: JSON.stringify({ text, user: 'tester', comment: text }),
    });
    await r.body.dump();
    assert.equal(r.statusCode, 200);
  };

  test('a read right after an edit is compared at the edit, not before it', async () => {
    const n = 20;
    for (let i = 1; i <= n; i++) {
      await edit(`Page_${i}`, `edit ${i} at ${Date.now()}`);
      // Mirrored at once: without the barrier v2 could still answer the text before the edit.
      assert.equal(await get(`${ingress.url}/wiki/Page_${i}`), 200);
      assert.equal(await get(`${ingress.url}/wiki/Page_${i}/history`), 200);
    }
    await current.whenExchanges(2 * n, 15_000);
    const report = current.report();
    assert.deepEqual(streamErrors, []);
    assert.equal(report.totals.skipped, 0, JSON.stringify(report.skippedReasons));
    assert.equal(report.totals.errors, 0);
    assert.equal(report.totals.mismatched, 0, JSON.stringify(report.endpoints.map((e) => e.samples)));
    const page = report.endpoints.find((e) => e.endpoint === 'GET /wiki/:title');
    assert.equal(page?.matched, n, 'matched outright: no difference left to explain by noise');
    assert.equal(page?.expectedDifferences, n, 'v2 adds `length`, as declared');
    const barrier = report.details.barrier as { markers: number; passed: number };
    assert.equal(barrier.passed, 2 * n);
    assert.ok(barrier.markers >= 1 && barrier.markers <= 2 * n);
    assert.deepEqual(current.gate({ minComparedPerEndpoint: n }), { pass: true, reasons: [] });
  });

  test('a regression v2 was not declared to have is detected and blocks the gate', async () => {
    await current.close();
    current = runtimeTest(v1.url);
    process.env.WIKI_V2_PLANTED_REGRESSION = '1';
    try {
      for (let i = 1; i <= 30; i++) assert.equal(await get(`${ingress.url}/wiki/Page_${i}`), 200);
      await current.whenExchanges(30, 15_000);
    } finally {
      delete process.env.WIKI_V2_PLANTED_REGRESSION;
    }
    const page = current.report().endpoints.find((e) => e.endpoint === 'GET /wiki/:title');
    assert.equal(page?.mismatched, 3, 'Page_7, Page_17, Page_27');
    assert.deepEqual(page?.mismatchPaths, [{ path: 'comment', count: 3 }]);
    const sample = page?.samples[0];
    assert.ok(sample);
    assert.match(sample.request.url, /Page_\d*7$/);
    const verdict = current.gate({ minComparedPerEndpoint: 10 });
    assert.equal(verdict.pass, false);
    assert.match(verdict.reasons.join('\n'), /GET \/wiki\/:title: 3 unexpected mismatches .* on comment/);
  });

  test('when conversion cannot catch up, reads are skipped, never compared with stale data', async () => {
    await current.close();
    current = runtimeTest(v1.url);
    await converter.stop();
    await edit('Page_40', 'written while conversion is stopped');
    assert.equal(await get(`${ingress.url}/wiki/Page_40`), 200);
    await current.whenExchanges(1, 15_000);
    const report = current.report();
    assert.equal(report.totals.compared, 0);
    assert.equal(report.totals.mismatched, 0);
    assert.deepEqual(report.skippedReasons, { 'consistency barrier not reached': 1 });
  });
});
