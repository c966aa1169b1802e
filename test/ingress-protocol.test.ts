/**
 * HTTP/1.1 protocol errors on both sides of the ingress, over real sockets, against a backend that
 * writes raw bytes: a backend sending more than it was asked for, unsupported transfer codings, bad
 * status codes; a request without Host, in absolute form, or with a coding other than chunked.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startIngress, type Ingress } from '../src/ingress/index.js';
import { listen } from '../src/universe/listen.js';
import { raw } from './fixtures/raw-http.js';
import { waitUntil, withDeadline } from '../src/deadline.js';

/** Request heads a raw backend received (no bodies: these tests send none). */
interface RawBackend {
  url: string;
  seen: string[];
  close(): Promise<void>;
}

/** A backend answering each request head with the raw bytes `answer(path)` returns. */
async function startRawBackend(answer: (path: string) => string): Promise<RawBackend> {
  const seen: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      pending += d;
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        seen.push(head);
        socket.write(answer(head.split(' ')[1] ?? ''), 'latin1');
      }
    });
  });
  const { url } = await listen(server, 0, '127.0.0.1');
  return {
    url,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sends raw bytes; resolves with what came back once `count` answers are complete or the socket closes. */
function exchange(port: number, send: string, count = 1): Promise<string> {
  return raw(port, send, { done: (text) => completeAnswers(text) >= count });
}

/** Answers in `text` whose body (Content-Length framed) is complete. */
function completeAnswers(text: string): number {
  let n = 0;
  let at = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end === -1) return n;
    const length = Number(/content-length: *(\d+)/i.exec(text.slice(at, end))?.[1] ?? 0);
    if (text.length < end + 4 + length) return n;
    at = end + 4 + length;
    n++;
  }
}

const ok = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

describe('protocol errors', () => {
  let backend: RawBackend;
  let ingress: Ingress;

  before(async () => {
    backend = await startRawBackend((path) => {
      if (path === '/inject') return `${ok('ok')}${ok('INJECTED')}`;
      if (path === '/gzip-te')
        return 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
      if (path === '/switch')
        return 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n';
      if (path === '/status-99') return 'HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n';
      return ok(`answer to ${path}`);
    });
    ingress = await startIngress({
      upstreams: { old: [backend.url] },
      route: 'old',
      limits: { upstreamHeadersTimeoutMs: 3_000, headersTimeoutMs: 3_000 },
    });
  });
  after(async () => {
    await ingress.close();
    await backend.close();
  });

  test('bytes a backend sends after its answer never become the next answer', async () => {
    const text = await exchange(
      ingress.port,
      'GET /inject HTTP/1.1\r\nhost: x\r\n\r\nGET /next HTTP/1.1\r\nhost: x\r\n\r\n',
      2,
    );
    assert.doesNotMatch(text, /INJECTED/);
    assert.match(text, /\r\n\r\nok/);
    assert.match(text, /answer to \/next$/);
    // Nor on a later connection: the polluted backend connection was not put back.
    assert.match(
      await exchange(ingress.port, 'GET /later HTTP/1.1\r\nhost: x\r\n\r\n'),
      /answer to \/later$/,
    );
  });

  const seenPath = (path: string): boolean => backend.seen.some((h) => h.split(' ')[1] === path);
  const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

  test('an HTTP/1.1 request without Host, or with two, gets 400 and reaches no backend', async () => {
    assert.equal(statusOf(await exchange(ingress.port, 'GET /no-host HTTP/1.1\r\n\r\n')), 400);
    const two = 'GET /two-hosts HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n';
    assert.equal(statusOf(await exchange(ingress.port, two)), 400);
    assert.ok(!seenPath('/no-host') && !seenPath('/two-hosts'));
    // HTTP/1.0 has no Host requirement.
    assert.equal(statusOf(await exchange(ingress.port, 'GET /http10 HTTP/1.0\r\n\r\n')), 200);
  });

  test('an absolute-form target is forwarded in origin form', async () => {
    const send = 'GET http://example.com/abs?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n';
    assert.match(await exchange(ingress.port, send), /answer to \/abs\?q=1$/);
    const bare = 'GET HTTP://example.com?x HTTP/1.1\r\nhost: example.com\r\n\r\n';
    assert.match(await exchange(ingress.port, bare), /answer to \/\?x$/);
  });

  test('a request body in a coding other than chunked gets 501 and reaches no backend', async () => {
    const send =
      'POST /te HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    assert.equal(statusOf(await exchange(ingress.port, send)), 501);
    assert.ok(!seenPath('/te'));
  });

  test('a backend answer in a coding other than chunked, a 101 or a status below 100 is a 502', async () => {
    for (const path of ['/gzip-te', '/switch', '/status-99']) {
      const text = await exchange(ingress.port, `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      assert.equal(statusOf(text), 502, `${path}: ${text}`);
    }
  });

  test('shutdown does not wait for an upgrade the backend has not answered', async () => {
    const silent = await startRawBackend(() => '');
    const own = await startIngress({
      upstreams: { old: [silent.url] },
      route: 'old',
      limits: { upstreamConnectTimeoutMs: 30_000 },
    });
    const client = net.connect(own.port, '127.0.0.1');
    client.on('error', () => undefined);
    try {
      client.write('GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
      await waitUntil(
        'the handshake at the backend',
        async () => (silent.seen.length > 0 ? true : undefined),
        {
          timeoutMs: 5_000,
        },
      );
      await withDeadline('ingress close', own.close(), 3_000);
    } finally {
      client.destroy();
      await silent.close();
    }
  });
});
