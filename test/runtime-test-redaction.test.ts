/**
 * Secrets in runtime-test samples, over real HTTP: a session endpoint answers JWTs and opaque tokens
 * (as a login or `/me` answer does), requests carry Authorization, Cookie and an api_key parameter.
 * The answers are compared on their real values (the tokens differ between the universes: a
 * mismatch), but nothing of a secret reaches the report file or what `imago report` prints — also for
 * a report file written by a version that masked less.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { withDeadline } from '../src/deadline.js';
import { startIngress } from '../src/ingress/index.js';
import { redactText, redactValue } from '../src/redact.js';
import { Redactor } from '../src/runtime-test/redact.js';
import { RuntimeTest, saveReport, type RuntimeTestReport } from '../src/runtime-test/index.js';
import { root } from './fixtures/driver-run.js';

/** A JWT as an identity provider issues it (header and payload are base64url JSON). */
function jwt(sub: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, iat: 1767225600 })}.c2lnbmF0dXJl${sub}`;
}

const SECRETS = {
  requestJwt: jwt('client'),
  cookie: 'sid=c00kie-v4lue',
  apiKey: 'K3y-0f-the-client',
  oldJwt: jwt('old-universe'),
  newJwt: jwt('new-universe'),
  oldRefresh: 'opaque-refresh-old-1234',
  newRefresh: 'opaque-refresh-new-5678',
  ssn: '123-45-6789',
  setCookie: 'sid=s3t-by-server',
  headerToken: 'x-auth-t0ken-value',
  formToken: 'f0rm-t0ken-value',
};

/** A session endpoint (JSON) and a page (HTML) whose tokens depend on the universe. */
async function sessionService(universe: 'old' | 'new') {
  const server = http.createServer((req, res) => {
    if ((req.url ?? '').startsWith('/session')) {
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': SECRETS.setCookie,
        'x-auth-token': SECRETS.headerToken,
      });
      res.end(
        JSON.stringify({
          user: 'ann',
          accessToken: universe === 'old' ? SECRETS.oldJwt : SECRETS.newJwt,
          session: { refresh_token: universe === 'old' ? SECRETS.oldRefresh : SECRETS.newRefresh },
          ssn: SECRETS.ssn,
          note: 'welcome back',
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(
      `<p>${universe}</p><a href="/reset?token=${SECRETS.formToken}">reset</a> ${universe === 'old' ? SECRETS.oldJwt : SECRETS.newJwt}`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function leaked(text: string): string[] {
  return Object.entries(SECRETS)
    .filter(([, secret]) => text.includes(secret) || text.includes(secret.split('.')[1] ?? secret))
    .map(([name]) => name);
}

function imagoReport(file: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(root, 'bin/imago.js'), 'report', '--file', file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return withDeadline(
    'imago report',
    new Promise((resolve) => child.once('exit', (code) => resolve({ code, out }))),
    60_000,
  );
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'imago-redaction-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('runtime-test samples over the ingress mirror', () => {
  test('are compared on real tokens, and stored and printed with every secret masked', async () => {
    const oldSvc = await sessionService('old');
    const newSvc = await sessionService('new');
    const reportFile = join(dir, 'runtime-test.json');
    const rt = new RuntimeTest({ config: { redact: { fields: ['ssn'] } }, reportFile });
    const ingress = await startIngress({
      upstreams: { old: [oldSvc.url], new: [newSvc.url] },
      route: 'old',
      mirror: rt.mirrorOptions({ concurrency: 1 }),
    });
    try {
      await ingress.mirror(true);
      for (const [i, path] of ['/session', `/page?api_key=${SECRETS.apiKey}&lang=en`].entries()) {
        const r = await request(`${ingress.url}${path}`, {
          headers: { authorization: `Bearer ${SECRETS.requestJwt}`, cookie: SECRETS.cookie },
        });
        await r.body.dump();
        assert.equal(r.statusCode, 200);
        await rt.whenExchanges(i + 1, 5_000);
      }
      const report = rt.report();
      const session = report.endpoints.find((e) => e.endpoint === 'GET /session');
      assert.ok(session, JSON.stringify(report.endpoints.map((e) => e.endpoint)));
      // Compared on the real values: the tokens differ, so the answers do.
      assert.equal(session.mismatched, 1);
      assert.deepEqual(session.mismatchPaths.map((p) => p.path).sort(), [
        'accessToken',
        'session.refresh_token',
      ]);
      const page = report.endpoints.find((e) => e.endpoint === 'GET /page');
      assert.equal(page?.mismatched, 1, 'the pages differ (universe name and token)');
      const sample = session.samples[0];
      assert.ok(sample && 'body' in sample.new);
      assert.equal(sample.request.headers.authorization, '***');
      assert.equal(sample.request.headers.cookie, '***');
      assert.equal(sample.new.headers['set-cookie'], '***');
      assert.equal(sample.new.headers['x-auth-token'], '***');
      assert.match(sample.new.body, /"user":"ann"/, 'what is not secret stays readable');
      assert.match(sample.new.body, /"note":"welcome back"/);
      assert.deepEqual(
        sample.differences.map((d) => [d.path, d.old, d.new]),
        [
          ['accessToken', '***', '***'],
          ['session.refresh_token', '***', '***'],
        ],
      );
      assert.deepEqual(leaked(JSON.stringify(report)), []);
    } finally {
      await ingress.close();
      await rt.close();
      await oldSvc.close();
      await newSvc.close();
    }
    // At rest: the file the driver writes and `imago report` reads.
    assert.deepEqual(leaked(readFileSync(reportFile, 'utf8')), []);
    assert.equal(statSync(reportFile).mode & 0o077, 0, 'readable by its owner only');
    for (const args of [[], ['--json']]) {
      const printed = await imagoReport(reportFile, ...args);
      assert.equal(printed.code, 0, printed.out);
      assert.match(printed.out, /GET \/session/);
      assert.deepEqual(leaked(printed.out), [], printed.out);
    }
  });

  test('a report file stored unredacted (an earlier version) is printed masked', async () => {
    const file = join(dir, 'earlier.json');
    const body = JSON.stringify({ user: 'ann', accessToken: SECRETS.oldJwt, password: 'hunter2hunter2' });
    const report: RuntimeTestReport = {
      startedAt: '2026-12-01T00:00:00Z',
      updatedAt: '2026-12-01T00:01:00Z',
      totals: { compared: 1, matched: 0, mismatched: 1, noisy: 0, errors: 0, new5xx: 0, skipped: 0 },
      skippedReasons: {},
      details: {},
      endpoints: [
        {
          endpoint: 'GET /me',
          compared: 1,
          matched: 0,
          mismatched: 1,
          noisy: 0,
          errors: 0,
          new5xx: 0,
          expectedDifferences: 0,
          latencyMs: {
            old: { p50: 0, p99: 0, samples: 0 },
            new: { p50: 0, p99: 0, samples: 0 },
            p99Ratio: null,
          },
          noisePaths: [],
          mismatchPaths: [{ path: 'accessToken', count: 1 }],
          samples: [
            {
              endpoint: 'GET /me',
              at: '2026-12-01T00:00:30Z',
              request: {
                method: 'GET',
                url: `/me?api_key=${SECRETS.apiKey}`,
                headers: { 'x-session-id': SECRETS.headerToken },
              },
              old: { status: 200, headers: { 'set-cookie': SECRETS.setCookie }, body },
              new: { status: 200, headers: {}, body: body.replace(SECRETS.oldJwt, SECRETS.newJwt) },
              differences: [
                { path: 'accessToken', kind: 'CHANGE', old: SECRETS.oldJwt, new: SECRETS.newJwt },
              ],
            },
          ],
        },
      ],
    };
    saveReport(file, report);
    assert.ok(leaked(readFileSync(file, 'utf8')).length > 0, 'the file holds the secrets');
    for (const args of [[], ['--json']]) {
      const printed = await imagoReport(file, ...args);
      assert.equal(printed.code, 0, printed.out);
      assert.deepEqual(leaked(printed.out), [], printed.out);
      assert.doesNotMatch(printed.out, /hunter2/);
    }
  });
});

describe('redaction rules', () => {
  test('the plan adds fields and headers to the defaults', () => {
    const body = `{"token":"${SECRETS.oldRefresh}","ssn":"${SECRETS.ssn}","id":7}`;
    assert.equal(new Redactor().text(body), `{"token":"***","ssn":"${SECRETS.ssn}","id":7}`);
    assert.equal(new Redactor({ fields: ['ssn'] }).text(body), '{"token":"***","ssn":"***","id":7}');
    const headers = { authorization: 'Bearer x', 'x-tenant': 't1', accept: 'a' };
    assert.deepEqual(new Redactor({ headers: ['X-Tenant'] }).headerRecord(headers), {
      authorization: '***',
      'x-tenant': '***',
      accept: 'a',
    });
  });

  test('a value cut short at the end of a body is masked too', () => {
    assert.equal(
      new Redactor().text('{"a":1,"refresh_token":"opaque-and-cu'),
      '{"a":1,"refresh_token":"***"',
    );
  });

  test('logs and errors: JWTs, secret JSON fields and credential header lines', () => {
    assert.equal(
      redactText(`got {"password": "hunter2", "user": "ann"} and ${SECRETS.oldJwt}`),
      'got {"password": "***", "user": "ann"} and ***',
    );
    assert.equal(redactText('  Cookie: sid=abc'), '  Cookie: ***');
    assert.equal(redactText('Authorization: Basic dXNlcjpwdw=='), 'Authorization: ***');
  });

  test('a command result or journal detail is walked: its JSON stays JSON', () => {
    const detail = {
      error: `insert failed: {"refreshToken":"${SECRETS.oldRefresh}"} at postgres://u:pw@h/db?password=pw`,
      apiKey: SECRETS.apiKey,
      rows: 3,
      nested: [{ session: { id: 's1' } }],
    };
    const out = JSON.parse(JSON.stringify(redactValue(detail))) as typeof detail;
    assert.deepEqual(out, {
      error: 'insert failed: {"refreshToken":"***"} at postgres://u:***@h/db?password=***',
      apiKey: '***',
      rows: 3,
      nested: [{ session: { id: '***' } }],
    });
  });
});
