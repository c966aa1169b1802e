// An app's health check as the plan states it (healthPath, healthStatus), for an app given by URL as
// well as one Imago starts: checked against real HTTP servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { validatePlan } from '../src/plan/index.js';
import { ImagoError } from '../src/errors.js';
import {
  appHealth,
  checkHealth,
  describeStatus,
  healthyWithin,
  parseStatusRanges,
} from '../src/universe/app-health.js';

const base = {
  name: 'shop_v2',
  old: { database: 'postgresql://u:secret@127.0.0.1:5432/shop', app: { url: 'http://127.0.0.1:4000' } },
  conversion: './conversion.ts',
  ingress: { nodes: [{ name: 'a', control: 'http://127.0.0.1:9000', token: '0123456789abcdef' }] },
};

function planWith(newApp: unknown, oldApp: unknown = base.old.app) {
  return validatePlan(
    { ...base, old: { ...base.old, app: oldApp }, new: { database: 'embedded', app: newApp } },
    '/plans/upgrade.ts',
  );
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ImagoError, String(err));
    return err.message;
  }
  assert.fail('expected the plan to be refused');
}

/** An app without /healthz: `/status` answers `status`, every other path 404. */
async function statusApp(status: number): Promise<{ url: string; server: Server; asked: string[] }> {
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(req.url ?? '');
    res.statusCode = req.url === '/status' || req.url === '/api/status' ? status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, asked };
}

test('an app given by URL takes healthPath and healthStatus, both forms default to GET /healthz 2xx', () => {
  const plan = planWith(
    { url: 'http://127.0.0.1:4001', healthPath: '/status', healthStatus: '200-399' },
    { url: 'http://127.0.0.1:4000', healthPath: '/up', healthStatus: [200, '301-302'] },
  );
  assert.ok('url' in plan.new.app);
  assert.deepEqual(appHealth(plan.new.app), { path: '/status', status: [{ from: 200, to: 399 }] });
  assert.deepEqual(appHealth(plan.old.app), {
    path: '/up',
    status: [
      { from: 200, to: 200 },
      { from: 301, to: 302 },
    ],
  });
  const defaults = planWith({ command: ['node', 'server.js'] }, { url: 'http://127.0.0.1:4000' });
  for (const app of [defaults.new.app, defaults.old.app])
    assert.deepEqual(appHealth(app), { path: '/healthz', status: [{ from: 200, to: 299 }] });
  const started = planWith({ command: ['node', 'server.js'], healthPath: '/ready', healthStatus: 204 });
  assert.deepEqual(appHealth(started.new.app), { path: '/ready', status: [{ from: 204, to: 204 }] });
});

test('a health setting that means nothing is refused, naming the field', () => {
  assert.match(
    refusal(() => planWith({ url: 'http://127.0.0.1:4001', healthStatus: '600' })),
    /new\.app\.healthStatus: expected a status code or range from 100 to 599 such as 200 or "200-399", not "600"/,
  );
  assert.match(
    refusal(() => planWith({ url: 'http://127.0.0.1:4001', healthStatus: ['399-200'] })),
    /new\.app\.healthStatus: .*not "399-200"/,
  );
  assert.match(
    refusal(() => planWith({ url: 'http://127.0.0.1:4001', healthStatus: [] })),
    /new\.app\.healthStatus: expected at least one status code or range/,
  );
  assert.match(
    refusal(() => planWith({ command: ['node'] }, { url: 'http://127.0.0.1:4000', healthPath: 'status' })),
    /old\.app\.healthPath: expected a path starting with \//,
  );
  assert.equal(describeStatus(parseStatusRanges([200, '301-302'])), '200, 301-302');
});

test('the check asks the path (under the URL’s own prefix) and judges the status by the ranges', async () => {
  const app = await statusApp(302);
  try {
    const redirectOk = { path: '/status', status: parseStatusRanges('200-399') };
    assert.deepEqual(await checkHealth(app.url, redirectOk), {
      healthy: true,
      seen: `GET ${app.url}/status answered 302 (healthy: 200-399)`,
    });
    const only2xx = { path: '/status', status: parseStatusRanges('200-299') };
    assert.equal((await checkHealth(app.url, only2xx)).healthy, false);
    // The old rule (GET /healthz = 200) never passes on an app without /healthz.
    const fallback = await checkHealth(app.url, { path: '/healthz', status: parseStatusRanges(200) });
    assert.equal(fallback.healthy, false);
    assert.match(fallback.seen, /answered 404 \(healthy: 200\)/);
    assert.equal((await checkHealth(`${app.url}/api/`, redirectOk)).healthy, true);
    assert.deepEqual(app.asked, ['/status', '/status', '/healthz', '/api/status']);
  } finally {
    app.server.close();
  }
  const gone = await healthyWithin(app.url, { path: '/status', status: parseStatusRanges(302) }, 300);
  assert.equal(gone.healthy, false);
  assert.match(gone.seen, /^GET http:\/\/127\.0\.0\.1:\d+\/status failed: /);
});
