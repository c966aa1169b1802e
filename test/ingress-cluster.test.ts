/**
 * Multi-process ingress (startIngressCluster, workers: 2) over real HTTP: hold/release atomicity across
 * workers under concurrent load (every held request answered once, by 'new'; 'old' receives nothing
 * after the aggregated drain; no request reaches 'old' once release has been acknowledged), drain
 * aggregated over workers (with its deadline naming the total), and the control endpoint on the primary.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { startClientLoops } from './fixtures/ingress-load.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { startIngressCluster, type IngressCluster, type ShippedExchange } from '../src/ingress/index.js';
import { startCollector } from '../src/runtime-test/collector.js';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('ingress with 2 worker processes', () => {
  let oldB: EchoBackend;
  let newB: EchoBackend;
  let cluster: IngressCluster;
  let slow = gate();
  const token = 'cluster-test-token-0123456789';

  before(async () => {
    oldB = await startEchoBackend({
      name: 'old',
      record: true,
      handler: (req, res) => {
        if (req.url !== '/slow') return false;
        void slow.opened.then(() => res.end('slow done'));
        return true;
      },
    });
    newB = await startEchoBackend({ name: 'new', record: true });
    cluster = await startIngressCluster({
      upstreams: { old: [oldB.url] },
      route: 'old',
      workers: 2,
      control: { token, nodeId: 'c1' },
    });
  });
  after(async () => {
    slow.open();
    await cluster.close();
    await oldB.close();
    await newB.close();
  });

  test('drain is aggregated over workers and its deadline names the total in flight', async () => {
    assert.equal(cluster.workers, 2);
    assert.equal(cluster.workerPids().length, 2);
    slow = gate();
    const pending = request(`${cluster.url}/slow`).then((r) => r.body.text());
    await waitUntil(
      'one request in flight',
      async () => ((await cluster.inFlight('old')) === 1 ? true : undefined),
      {
        timeoutMs: 5_000,
      },
    );
    await assert.rejects(cluster.drained('old', 150), /1 request\(s\) still in flight across 2 workers/);
    slow.open();
    await cluster.drained('old', 5_000);
    assert.equal(await withDeadline('slow answer', pending, 5_000), 'slow done');
    assert.equal(await cluster.inFlight('old'), 0);
  });

  test('hold/release under load across workers: nothing reaches old after the release is acknowledged', async () => {
    let ackedAt = Infinity;
    // Clients stop 200 ms after the release: enough to see who answers after it.
    const load = startClientLoops(cluster.url, 16, () => performance.now() > ackedAt + 200);
    const { answers, perClient, sent } = load;
    try {
      await waitUntil(
        'traffic to old',
        async () => ((await cluster.stats()).requests.old >= 100 ? true : undefined),
        {
          timeoutMs: 10_000,
        },
      );
      await cluster.setUpstreams('new', [newB.url]);
      await cluster.hold();
      assert.equal(cluster.holding(), true);
      // Every client loop ends up blocked on a held request, in both workers.
      const held = await waitUntil(
        'all 16 clients held',
        async () => {
          const s = await cluster.stats();
          return s.held === 16 ? s : undefined;
        },
        { timeoutMs: 5_000 },
      );
      assert.equal(held.perWorker.length, 2);
      for (const w of held.perWorker) {
        assert.ok(w.held > 0, `worker ${w.pid} holds ${w.held}: connections are spread over both`);
        assert.equal(w.holding, true);
      }
      await cluster.drained('old', 5_000);
      const oldSeenAtDrain = oldB.seen.length;

      const released = await cluster.release('new');
      ackedAt = performance.now();
      assert.deepEqual(released, { released: 16 });
      assert.equal(cluster.route(), 'new');
      const after = await cluster.stats();
      for (const w of after.perWorker) {
        assert.equal(w.route, 'new', `worker ${w.pid} flipped before the release was acknowledged`);
        assert.equal(w.holding, false);
      }
      await withDeadline('client loops', load.done, 20_000);

      // Exactly once: every id answered once, nothing lost.
      const total = sent.reduce((a, b) => a + b, 0);
      assert.equal(answers.size, total);
      for (const [id, by] of answers) assert.equal(by.length, 1, `${id} answered ${by.length} times`);
      assert.equal(oldB.seen.length + newB.seen.length, total);
      // Atomicity across workers: old received nothing after the drain, let alone after the ack.
      assert.equal(oldB.seen.length, oldSeenAtDrain);
      for (const s of oldB.seen) assert.ok(s.at < ackedAt, `old received ${s.url} after release`);
      for (const seq of perClient) {
        const firstNew = seq.indexOf('new');
        assert.ok(firstNew > 0);
        assert.ok(seq.slice(firstNew).every((u) => u === 'new'));
      }
      const s = await cluster.stats();
      assert.ok(s.maxHoldMs > 0);
      // Plus the /slow request of the drain test (answered by a handler the backend does not record).
      assert.equal(
        s.perWorker.reduce((n, w) => n + w.requests.old + w.requests.new, 0),
        total + 1,
      );
    } finally {
      await load.close();
    }
  });

  test('the control endpoint on the primary drives every worker, with epochs', async () => {
    const ctl = cluster.control;
    assert.ok(ctl);
    const call = async (path: string, body?: unknown) => {
      const r = await request(`${ctl.url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
      });
      return { status: r.statusCode, json: (await r.body.json()) as Record<string, unknown> };
    };
    const held = await call('/v1/hold', { epoch: 7 });
    assert.equal(held.status, 200);
    assert.equal(held.json.holding, true);
    for (const w of (await cluster.stats()).perWorker) assert.equal(w.holding, true);
    const pending = request(`${cluster.url}/during-hold`).then(async (r) => r.body.json());
    await waitUntil('held', async () => ((await cluster.stats()).held === 1 ? true : undefined), {
      timeoutMs: 5_000,
    });
    assert.equal((await call('/v1/release', { epoch: 6, route: 'old' })).status, 409, 'stale epoch refused');
    const released = await call('/v1/release', { epoch: 8, route: 'old' });
    assert.equal(released.status, 200);
    assert.equal(released.json.released, 1);
    assert.equal(
      ((await withDeadline('held answer', pending, 5_000)) as { universe: string }).universe,
      'old',
    );
    const state = await call('/v1/state');
    assert.equal(state.json.route, 'old');
    assert.equal(state.json.workers, 2);
    const metrics = await request(`${ctl.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const text = await metrics.body.text();
    assert.match(text, /imago_ingress_route\{universe="old"\} 1/);
    assert.match(text, /imago_ingress_requests_total\{universe="new",class="read",status="2xx"\} \d+/);
  });

  test('with a runtime-test sink every worker ships the reads it mirrors, not the writes', async () => {
    const shipped: ShippedExchange[] = [];
    const collector = await startCollector({ onExchange: (x) => shipped.push(x) });
    try {
      const ctl = cluster.control;
      assert.ok(ctl);
      const mirror = (body: unknown) =>
        request(`${ctl.url}/v1/mirror`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const epoch = cluster.control?.epoch() ?? 0;
      const on = await mirror({ epoch, enabled: true, sink: collector.sink });
      assert.equal(on.statusCode, 200, await on.body.text());
      // Many connections, so that both workers take some.
      const reads = Array.from({ length: 40 }, (_, i) =>
        request(`${cluster.url}/item/${i}?q=1`, { headers: { connection: 'close' } }).then((r) =>
          r.body.text(),
        ),
      );
      await Promise.all(reads);
      const write = await request(`${cluster.url}/item/1`, { method: 'POST', body: 'x' });
      await write.body.text();
      await waitUntil('40 reads shipped', async () => (shipped.length >= 40 ? true : undefined), {
        timeoutMs: 10_000,
      });
      // Absence takes a wait to show: past the longest a read waits for a quiet moment (50 ms).
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(shipped.length, 40, 'each read once, the write never');
      const x = shipped.find((e) => e.request.url === '/item/7?q=1');
      assert.ok(x);
      assert.equal(x.request.method, 'GET');
      assert.equal(x.primary.universe, 'old');
      assert.equal(x.primary.status, 200);
      assert.match(x.primary.body.toString(), /"universe":"old"/);
      const off = await mirror({ epoch, enabled: false });
      assert.equal(off.statusCode, 200);
      assert.equal(
        (
          (await (
            await request(`${ctl.url}/v1/state`, { headers: { authorization: `Bearer ${token}` } })
          ).body.json()) as { mirror: boolean }
        ).mirror,
        false,
      );
      await (await request(`${cluster.url}/item/after-off`)).body.text();
      // Absence takes a wait to show: past the longest a read waits for a quiet moment (50 ms).
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(shipped.length, 40, 'nothing shipped once mirroring is off');
    } finally {
      await collector.close();
    }
  });

  test('the collector refuses a wrong token and a malformed exchange, naming the fault', async () => {
    const collector = await startCollector({ onExchange: () => assert.fail('nothing valid was sent') });
    try {
      const post = (authorization: string, body: string) =>
        request(`${collector.sink.url}/v1/exchanges`, {
          method: 'POST',
          headers: { authorization, 'content-type': 'application/json' },
          body,
        });
      const bad = await post('Bearer wrong-token-wrong-token', '{}');
      assert.equal(bad.statusCode, 401);
      await bad.body.text();
      const malformed = await post(
        `Bearer ${collector.sink.token}`,
        JSON.stringify([{ request: { method: 'GET' } }]),
      );
      assert.equal(malformed.statusCode, 400);
      assert.match(await malformed.body.text(), /malformed exchange batch: 0\.request\.url/);
      const empty = await post(`Bearer ${collector.sink.token}`, '[]');
      assert.equal(empty.statusCode, 400);
      assert.match(await empty.body.text(), /malformed exchange batch: \(root\)/);
      // A batch is taken whole or not at all: one bad exchange refuses the good one with it.
      const good = {
        request: { method: 'GET', url: '/x', headers: [], body: '' },
        primary: { universe: 'old', status: 200, headers: [], body: '', truncated: false },
        primaryDoneAt: 1,
      };
      const mixed = await post(
        `Bearer ${collector.sink.token}`,
        JSON.stringify([good, { ...good, primary: { ...good.primary, status: 'ok' } }]),
      );
      assert.equal(mixed.statusCode, 400);
      assert.match(await mixed.body.text(), /malformed exchange batch: 1\.primary\.status/);
      const notJson = await post(`Bearer ${collector.sink.token}`, '{');
      assert.equal(notJson.statusCode, 400);
      assert.match(await notJson.body.text(), /not JSON/);
      assert.deepEqual(collector.counts, { accepted: 0, refused: 5 });
    } finally {
      await collector.close();
    }
  });

  test('a worker that dies is replaced by one that starts from the current state (here: holding)', async () => {
    await cluster.hold();
    const [victim, survivor] = cluster.workerPids();
    assert.ok(victim && survivor);
    process.kill(victim, 'SIGKILL');
    const pids = await waitUntil(
      'replacement worker',
      async () => {
        const now = cluster.workerPids();
        return now.length === 2 && !now.includes(victim) ? now : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const s = await cluster.stats();
    assert.deepEqual(s.perWorker.map((w) => w.pid).sort(), [...pids].sort());
    for (const w of s.perWorker) assert.equal(w.holding, true, `worker ${w.pid} holds`);
    const pending = Array.from({ length: 4 }, (_, i) =>
      request(`${cluster.url}/after-respawn/${i}`).then(
        async (r) => r.body.json() as Promise<{ universe: string }>,
      ),
    );
    await waitUntil('4 held', async () => ((await cluster.stats()).held === 4 ? true : undefined), {
      timeoutMs: 5_000,
    });
    assert.deepEqual(await cluster.release('old'), { released: 4 });
    for (const a of await withDeadline('held answers', Promise.all(pending), 5_000))
      assert.equal(a.universe, 'old');
  });
});
