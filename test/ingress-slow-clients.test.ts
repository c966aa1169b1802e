/**
 * Clients that do not read their answers, over real sockets: the proxy must not buffer for them without
 * bound (pipelined requests wait for the socket to drain), must cut them after `sendTimeoutMs`, and the
 * backend connections they would pin must not starve other clients (queued requests time out).
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { startIngress, type Ingress } from '../src/ingress/index.js';

// Small enough to arrive in one read from the backend, so it is written with the end of the answer.
const BIG = Buffer.alloc(60 * 1024, 'x');
// More than the kernel buffers between the proxy and a client hold (up to tens of MiB on loopback).
const HUGE = Buffer.alloc(96 * 1024 * 1024, 'y');

/** Resolves once `read()` has returned the same value for `polls` polls in a row (deadline 15 s). */
function settled(what: string, read: () => number, polls = 6): Promise<number> {
  let last = -1;
  let same = 0;
  return waitUntil(
    what,
    async () => {
      const now = read();
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= polls ? now : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 50 },
  );
}

/** Counts `HTTP/1.1 200` status lines across reads (a line may be split between two). */
function statusCounter(): { feed(chunk: Buffer): void; count(): number } {
  let carry = '';
  let n = 0;
  return {
    feed(chunk) {
      const text = carry + chunk.toString('latin1');
      n += text.split('HTTP/1.1 200 OK').length - 1;
      carry = text.slice(-14);
      if (carry.includes('HTTP/1.1 200 OK')) carry = '';
    },
    count: () => n,
  };
}

describe('clients that do not read', () => {
  let backend: EchoBackend;
  let ingress: Ingress;
  let bigServed = 0;
  let hung = 0;
  const hanging: ServerResponse[] = [];
  const hugeConnectionClosed: Array<() => void> = [];

  before(async () => {
    backend = await startEchoBackend({
      name: 'old',
      handler: (req: IncomingMessage, res: ServerResponse) => {
        if (req.url === '/big') {
          bigServed++;
          res.writeHead(200, { 'content-length': BIG.length });
          res.end(BIG);
          return true;
        }
        if (req.url === '/huge') {
          req.socket.on('close', () => {
            for (const f of hugeConnectionClosed.splice(0)) f();
          });
          res.writeHead(200, { 'content-length': HUGE.length });
          res.end(HUGE);
          return true;
        }
        if (req.url === '/hang') {
          hung++;
          hanging.push(res);
          return true;
        }
        return false;
      },
    });
    ingress = await startIngress({
      upstreams: { old: [backend.url] },
      route: 'old',
      limits: {
        headersTimeoutMs: 400,
        idleTimeoutMs: 30_000,
        sendTimeoutMs: 800,
        upstreamConnectTimeoutMs: 400,
        upstreamHeadersTimeoutMs: 30_000,
      },
    });
  });
  after(async () => {
    for (const res of hanging) res.destroy();
    await ingress.close();
    await backend.close();
  });

  test('pipelined requests are not forwarded while the client does not take its answers', async () => {
    const n = 1000;
    const socket = net.connect(ingress.port, '127.0.0.1');
    socket.pause();
    try {
      const before = process.memoryUsage().arrayBuffers;
      socket.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n'.repeat(n));
      // Without backpressure all 1000 (60 MiB) are fetched and buffered by the proxy.
      const served = await settled('backend request count to settle', () => bigServed);
      assert.ok(served < n / 4, `the backend served ${served} of ${n} answers nobody read`);
      const grown = process.memoryUsage().arrayBuffers - before;
      assert.ok(grown < 24 * 1024 * 1024, `array buffers grew by ${grown} bytes`);
      // Reading resumes the pipeline: every answer arrives, in order.
      const answers = statusCounter();
      await withDeadline(
        'all pipelined answers',
        new Promise<void>((resolve, reject) => {
          socket.on('data', (d: Buffer) => {
            answers.feed(d);
            if (answers.count() === n) resolve();
          });
          socket.on('close', () => reject(new Error(`closed after ${answers.count()} answers`)));
          socket.resume();
        }),
        15_000,
      );
    } finally {
      socket.destroy();
    }
  });

  test('a client that does not drain its answer is cut after sendTimeoutMs, with its backend connection', async () => {
    const backendClosed = new Promise<void>((resolve) => hugeConnectionClosed.push(resolve));
    const socket = net.connect(ingress.port, '127.0.0.1');
    socket.pause();
    socket.on('error', () => undefined);
    socket.write('GET /huge HTTP/1.1\r\nhost: x\r\n\r\n');
    try {
      // Without a send timeout the proxy waits for this client forever, pinning the backend connection.
      await withDeadline('the backend connection to be let go', backendClosed, 5_000);
      // A paused client sees its connection cut only once it reads: the answer stops short.
      let received = 0;
      await withDeadline(
        'the client to see its connection closed',
        new Promise<void>((resolve) => {
          socket.on('data', (d: Buffer) => (received += d.length));
          socket.on('close', () => resolve());
          socket.resume();
        }),
        5_000,
      );
      assert.ok(received < HUGE.length, `the client received the whole answer (${received} bytes)`);
    } finally {
      socket.destroy();
    }
  });

  test('a request queued behind a full pool gets 504 after the connect timeout', async () => {
    // 256 connections (the pool's maximum) pinned by answers that never come.
    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < 256; i++) {
        const c = net.connect(ingress.port, '127.0.0.1');
        c.on('error', () => undefined);
        c.write('GET /hang HTTP/1.1\r\nhost: x\r\n\r\n');
        clients.push(c);
      }
      await waitUntil('256 hanging requests at the backend', async () => (hung >= 256 ? true : undefined), {
        timeoutMs: 10_000,
      });
      const started = performance.now();
      const answer = await withDeadline(
        'the queued request',
        new Promise<string>((resolve, reject) => {
          const c = net.connect(ingress.port, '127.0.0.1');
          let text = '';
          c.setEncoding('latin1');
          c.on('data', (d: string) => {
            text += d;
            if (text.includes('\r\n\r\n') && text.endsWith('\n')) {
              c.destroy();
              resolve(text);
            }
          });
          c.on('error', reject);
          c.write('GET /small HTTP/1.1\r\nhost: x\r\n\r\n');
        }),
        5_000,
      );
      assert.match(answer, /^HTTP\/1\.1 504 /);
      assert.match(answer, /upstreamConnectTimeoutMs/);
      assert.ok(performance.now() - started >= 300, 'answered before the connect timeout');
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});
