/**
 * HTTP/1.1 correctness of the ingress over real sockets: chunked bodies, keep-alive on both sides,
 * pipelining, Expect: 100-continue, HEAD, HTTP/1.0, body-size limit, timeouts, client aborts, malformed
 * requests and request smuggling attempts,
 * slow clients, WebSocket passthrough, and several backends per universe.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { startIngress, type Ingress } from '../src/ingress/index.js';
import { raw } from './fixtures/raw-http.js';

const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe('HTTP/1.1 proxying', () => {
  let backend: EchoBackend;
  let ingress: Ingress;
  let aborted = 0;
  let abortSeen: () => void = () => undefined;

  before(async () => {
    backend = await startEchoBackend({
      name: 'old',
      record: true,
      handler: (req, res) => {
        if (req.url === '/chunked-response') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          for (let i = 0; i < 5; i++) res.write(`chunk${i};`);
          res.end();
          return true;
        }
        if (req.url === '/hang') {
          res.on('close', () => {
            aborted++;
            abortSeen();
          });
          return true;
        }
        if (req.url === '/trailers') {
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
          res.write('body');
          res.addTrailers({ 'x-checksum': 'abc' });
          res.end();
          return true;
        }
        if (req.url === '/head-info') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1234' });
          res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(1234));
          return true;
        }
        return false;
      },
    });
    ingress = await startIngress({
      upstreams: { old: [backend.url] },
      route: 'old',
      limits: {
        maxBodyBytes: 10_000,
        upstreamHeadersTimeoutMs: 300,
        headersTimeoutMs: 300,
        idleTimeoutMs: 300,
        requestTimeoutMs: 600,
      },
    });
  });
  after(async () => {
    await ingress.close();
    await backend.close();
  });

  test('chunked request and response bodies stream through', async () => {
    const body = Readable.from(['a'.repeat(1000), 'b'.repeat(2000), 'c'.repeat(3000)]);
    const r = await request(`${ingress.url}/up`, { method: 'POST', body });
    assert.equal(r.statusCode, 200);
    assert.equal(((await r.body.json()) as { bodyBytes: number }).bodyBytes, 6000);
    const c = await request(`${ingress.url}/chunked-response`);
    assert.equal(c.headers['transfer-encoding'], 'chunked');
    assert.equal(await c.body.text(), 'chunk0;chunk1;chunk2;chunk3;chunk4;');
  });

  test('keep-alive on both sides: one client connection, backend connections reused', async () => {
    const before = backend.connections();
    const socket = net.connect(ingress.port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (got += d));
    const answers = () => got.split('HTTP/1.1 200').length - 1;
    try {
      for (let i = 1; i <= 20; i++) {
        socket.write(`GET /ka/${i} HTTP/1.1\r\nhost: x\r\n\r\n`);
        await waitUntil(`answer ${i}`, async () => (answers() === i ? true : undefined), {
          timeoutMs: 2_000,
          intervalMs: 1,
        });
      }
      assert.equal(socket.destroyed, false);
    } finally {
      socket.destroy();
    }
    assert.ok(
      backend.connections() - before <= 1,
      `${backend.connections() - before} new backend connections`,
    );
  });

  test('Expect: 100-continue is answered, then the body flows', async () => {
    const socket = net.connect(ingress.port, '127.0.0.1');
    const answer = await withDeadline(
      'expect exchange',
      new Promise<string>((resolve) => {
        let got = '';
        socket.setEncoding('latin1');
        socket.on('data', (d: string) => {
          got += d;
          if (got.startsWith('HTTP/1.1 100') && !got.includes('hello-sent')) {
            socket.write('hello');
            got += 'hello-sent';
          }
          if (got.includes('"bodyBytes":5')) resolve(got);
        });
        socket.write(
          'POST /expect HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n',
        );
      }),
      5_000,
    );
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nhello-sentHTTP\/1\.1 200/);
    assert.ok(!backend.seen.some((s) => s.headers.expect !== undefined), 'Expect is answered by the proxy');
  });

  test('Expect: 100-continue with a body over the limit gets 413 and no 100', async () => {
    const text = await raw(
      ingress.port,
      'POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 20000\r\nexpect: 100-continue\r\n\r\n',
    );
    assert.equal(statusOf(text), 413);
    assert.doesNotMatch(text, /100 Continue/);
  });

  test('HEAD keeps Content-Length and sends no body', async () => {
    const text = await raw(ingress.port, 'HEAD /head-info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.equal(statusOf(text), 200);
    assert.match(text, /content-length: 1234/i);
    assert.ok(text.endsWith('\r\n\r\n'), 'no body after the headers');
  });

  test('bodies over the limit get 413: declared and chunked', async () => {
    const r = await request(`${ingress.url}/big`, { method: 'POST', body: Buffer.alloc(20_000) });
    assert.equal(r.statusCode, 413);
    await r.body.text();
    const chunked = Readable.from([Buffer.alloc(6_000), Buffer.alloc(6_000)]);
    const c = await request(`${ingress.url}/big-chunked`, { method: 'POST', body: chunked }).catch(
      (e: Error) => e,
    );
    // Either the 413 arrives or the connection is cut mid-upload; never a 200.
    if (!(c instanceof Error)) {
      assert.equal(c.statusCode, 413);
      await c.body.text().catch(() => '');
    }
    assert.ok(
      !backend.seen.some((s) => s.url === '/big-chunked'),
      'the backend never completed the oversized body',
    );
  });

  test('a backend that does not answer in time becomes 504', async () => {
    const r = await request(`${ingress.url}/hang`);
    assert.equal(r.statusCode, 504);
    await r.body.text();
    assert.equal(ingress.inFlight('old'), 0);
  });

  test('a client abort is propagated to the backend', async () => {
    const seen = new Promise<void>((resolve) => (abortSeen = resolve));
    const before = aborted;
    const ac = new AbortController();
    const pending = request(`${ingress.url}/hang`, { signal: ac.signal }).catch(() => 'aborted');
    await waitUntil('request in flight', async () => (ingress.inFlight('old') === 1 ? true : undefined), {
      timeoutMs: 2_000,
    });
    ac.abort();
    assert.equal(await pending, 'aborted');
    await withDeadline('backend sees the abort', seen, 2_000);
    assert.equal(aborted, before + 1);
    await ingress.drained('old', 2_000);
  });

  test('smuggling vectors are rejected with 400 and never reach the backend', async () => {
    const attempts = [
      // Content-Length and Transfer-Encoding together (CL.TE / TE.CL).
      'POST /s1 HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n',
      // Two different Content-Lengths.
      'POST /s2 HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 40\r\n\r\nabcdGET /smuggled HTTP/1.1\r\n\r\n',
      // obs-fold (a header continued on the next line).
      'GET /s3 HTTP/1.1\r\nhost: x\r\nx-a: 1\r\n transfer-encoding: chunked\r\n\r\n',
      // Transfer-Encoding that is not chunked last.
      'POST /s4 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      // Bad chunk size.
      'POST /s5 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n',
      // Space before the colon.
      'GET /s6 HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\n\r\n',
    ];
    for (const attempt of attempts) {
      const text = await raw(ingress.port, attempt);
      const status = statusOf(text);
      assert.ok(status === 400 || status === 413 || status === 502, `${JSON.stringify(attempt)} → ${status}`);
    }
    for (const s of backend.seen) assert.ok(!s.url.includes('smuggled'), `backend saw ${s.url}`);
  });

  test('slow clients (slowloris) are cut at the header deadline and do not starve others', async () => {
    const slow: net.Socket[] = [];
    const closed: Promise<void>[] = [];
    for (let i = 0; i < 50; i++) {
      const s = net.connect(ingress.port, '127.0.0.1');
      s.on('error', () => undefined);
      s.resume(); // read, so that the server's close is seen
      s.write('GET /slow HTTP/1.1\r\nhost: x\r\nx-a: ');
      closed.push(new Promise((resolve) => s.on('close', () => resolve())));
      slow.push(s);
    }
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      const r = await request(`${ingress.url}/fast/${i}`);
      assert.equal(r.statusCode, 200);
      await r.body.text();
    }
    assert.ok(performance.now() - t0 < 1_000, 'normal requests are served while slow clients wait');
    await withDeadline('slow clients cut', Promise.all(closed), 3_000);
  });

  test('pipelined requests are forwarded one by one and answered in order', async () => {
    const text = await raw(
      ingress.port,
      'GET /p/1 HTTP/1.1\r\nhost: x\r\n\r\n' +
        'POST /p/2 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc' +
        'GET /p/3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
    );
    const answers = text.split('HTTP/1.1 ').slice(1);
    assert.deepEqual(
      answers.map((a) => a.slice(0, 3)),
      ['200', '200', '200'],
    );
    assert.match(answers[1] as string, /"bodyBytes":3/);
    assert.match(answers[2] as string, /connection: close/i);
    const urls = backend.seen.map((s) => s.url).filter((u) => u.startsWith('/p/'));
    assert.deepEqual(urls, ['/p/1', '/p/2', '/p/3']);
  });

  test('a body that stops arriving gets 408 at the request deadline', async () => {
    const text = await raw(
      ingress.port,
      'POST /stalled HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabcde',
    );
    assert.equal(statusOf(text), 408);
    await ingress.drained('old', 2_000);
  });

  test('malformed requests get precise errors: 400, 431 for oversized headers', async () => {
    assert.equal(statusOf(await raw(ingress.port, 'HELLO\r\n\r\n')), 400);
    assert.equal(statusOf(await raw(ingress.port, 'GET / HTTP/1.1\r\nhost: x\r\nx-a: b\nc\r\n\r\n')), 400);
    const big = `GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`;
    assert.equal(statusOf(await raw(ingress.port, big)), 431);
    // A good request followed by a malformed one: the first is answered, then the connection closes.
    const mixed = await raw(
      ingress.port,
      'GET /ok HTTP/1.1\r\nhost: x\r\n\r\nGET /bad HTTP/1.1\r\nhost x\r\n\r\n',
    );
    assert.equal(statusOf(mixed), 200);
    assert.ok(!backend.seen.some((s) => s.url === '/bad'));
  });

  test('HTTP/1.0 clients get close-delimited bodies instead of chunked ones', async () => {
    const text = await raw(ingress.port, 'GET /chunked-response HTTP/1.0\r\nhost: x\r\n\r\n');
    assert.equal(statusOf(text), 200);
    assert.doesNotMatch(text, /transfer-encoding/i);
    assert.match(text, /connection: close/i);
    assert.ok(text.endsWith('chunk0;chunk1;chunk2;chunk3;chunk4;'));
  });

  test('trailers are dropped and never leak into the next message on either connection', async () => {
    const socket = net.connect(ingress.port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (got += d));
    const answers = () => got.split('HTTP/1.1 200').length - 1;
    const answered = (n: number) =>
      waitUntil(`answer ${n}`, async () => (answers() >= n ? true : undefined), {
        timeoutMs: 2_000,
        intervalMs: 1,
      });
    try {
      socket.write(
        'POST /t/1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nx-trail: 1\r\n\r\n',
      );
      await answered(1);
      socket.write('GET /trailers HTTP/1.1\r\nhost: x\r\n\r\n');
      await answered(2);
      socket.write('GET /t/3 HTTP/1.1\r\nhost: x\r\n\r\n');
      await answered(3);
    } finally {
      socket.destroy();
    }
    const third = got.slice(got.lastIndexOf('HTTP/1.1 200'));
    assert.doesNotMatch(third, /x-checksum/i, 'a backend trailer leaked into the next answer');
    const second = got.slice(got.indexOf('HTTP/1.1 200', 1), got.lastIndexOf('HTTP/1.1 200'));
    assert.match(
      second,
      /\r\n\r\n4\r\nbody\r\n0\r\n\r\n$/,
      'the second request reached /trailers, unchanged',
    );
    const seen = backend.seen.find((s) => s.url === '/t/3');
    assert.ok(seen, 'the third request reached the backend');
    assert.equal(seen.headers['x-trail'], undefined, 'a client trailer leaked into the next request');
  });

  test('idle keep-alive client connections are closed after the idle timeout', async () => {
    const socket = net.connect(ingress.port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /idle HTTP/1.1\r\nhost: x\r\n\r\n');
    socket.resume();
    await withDeadline('idle connection closed', closed, 3_000);
  });
});

describe('WebSocket / Upgrade passthrough', () => {
  test('upgraded connections are spliced and stay with their universe after a flip', async () => {
    const servers: http.Server[] = [];
    const start = async (name: string): Promise<string> => {
      const srv = http.createServer((_req, res) => res.end(name));
      srv.on('upgrade', (req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
        socket.on('data', (d: Buffer) => socket.write(`${name}:${d.toString()}`));
        socket.on('error', () => undefined);
        assert.equal(req.headers.upgrade, 'websocket');
      });
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
      servers.push(srv);
      return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
    };
    const ingress = await startIngress({
      upstreams: { old: [await start('old')], new: [await start('new')] },
      route: 'old',
    });
    const socket = net.connect(ingress.port, '127.0.0.1');
    try {
      let got = '';
      const waitFor = (s: string) =>
        waitUntil(`socket to receive ${s}`, async () => (got.includes(s) ? true : undefined), {
          timeoutMs: 2_000,
          intervalMs: 5,
        });
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (got += d));
      socket.write('GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      await waitFor('101 Switching Protocols');
      socket.write('ping');
      await waitFor('old:ping');
      assert.deepEqual(ingress.upgraded(), { old: 1, new: 0 });
      ingress.hold();
      const held = await raw(
        ingress.port,
        'GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n',
      );
      assert.equal(statusOf(held), 503, 'upgrades during a hold are refused with Retry-After');
      ingress.release('new');
      socket.write('again');
      await waitFor('old:again');
      const fresh = await raw(
        ingress.port,
        'GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n',
        { done: (t) => t.includes('\r\n\r\n') },
      );
      assert.equal(statusOf(fresh), 101);
    } finally {
      socket.destroy();
      await ingress.close();
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
    }
  });
});

describe('several backends per universe', () => {
  test('round-robin, and a dead backend is taken out, retried and comes back', async () => {
    const a = await startEchoBackend({ name: 'a', record: true });
    const b = await startEchoBackend({ name: 'b', record: true });
    const bPort = b.port;
    const ingress = await startIngress({ upstreams: { old: [a.url, b.url] }, route: 'old' });
    try {
      for (let i = 0; i < 10; i++) await (await request(`${ingress.url}/rr/${i}`)).body.text();
      assert.equal(a.seen.length, 5);
      assert.equal(b.seen.length, 5);
      await b.close();
      for (let i = 0; i < 10; i++) {
        const r = await request(`${ingress.url}/after-death/${i}`);
        assert.equal(r.statusCode, 200, 'GETs to the dead backend are retried on the live one');
        await r.body.text();
      }
      assert.equal(a.seen.filter((s) => s.url.startsWith('/after-death')).length, 10);
      assert.equal(ingress.stats().errors.old, 0);
      // Bring b back on the same port: after its back-off it receives traffic again.
      const b2 = await startEchoBackend({ name: 'b', record: true, port: bPort });
      try {
        await waitUntil(
          'b back in rotation',
          async () => {
            await (await request(`${ingress.url}/back`)).body.text();
            return b2.seen.length > 0 ? true : undefined;
          },
          { timeoutMs: 8_000, intervalMs: 50 },
        );
      } finally {
        await b2.close();
      }
    } finally {
      await ingress.close();
      await a.close();
    }
  });
});
