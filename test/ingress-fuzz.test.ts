/**
 * Malformed, cut-off and abandoned requests (mutations of valid ones, a fixed pseudo-random sequence so
 * a failure reproduces) must never crash the ingress, leave nothing in flight, and leave no client
 * socket behind that would keep close() waiting.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startEchoBackend } from '../src/bench/proxy-backend.js';
import { withDeadline } from '../src/deadline.js';
import { startIngress } from '../src/ingress/index.js';

const SEEDS = [
  'GET / HTTP/1.1\r\nhost: x\r\n\r\n',
  'POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n',
  'POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\nabc',
  'HEAD / HTTP/1.0\r\n\r\n',
  'CONNECT x:1 HTTP/1.1\r\nhost: x\r\n\r\n',
];

/** A small linear congruential generator: the same sequence on every run. */
function generator(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
}

function mutate(text: string, r: (n: number) => number): Buffer {
  const b = Buffer.from(text.repeat(1 + r(3)), 'latin1');
  for (let i = 0, n = 1 + r(6); i < n; i++) {
    const at = r(b.length);
    const kind = r(4);
    if (kind === 0) b[at] = r(256);
    else if (kind === 1) b[at] = [13, 10, 58, 32, 48, 9][r(6)] as number;
    else if (kind === 2) b.copyWithin(at, r(b.length));
    else b[at] = 0x30 + r(10);
  }
  return b;
}

/** Sends `data` in two writes, a few ms apart; half the time the client waits for the server to close, else it leaves. */
function exchange(port: number, data: Buffer, r: (n: number) => number): Promise<void> {
  return withDeadline(
    'fuzz exchange',
    new Promise<void>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
      socket.resume();
      const cut = r(data.length);
      const leave = r(2) === 0;
      socket.write(data.subarray(0, cut));
      // The rest a few milliseconds later, so that it also arrives in a separate read.
      setTimeout(() => {
        if (!socket.destroyed) socket.write(data.subarray(cut));
        if (leave) socket.destroy();
      }, r(5));
    }),
    5_000,
  );
}

test('malformed and abandoned requests never crash the ingress nor keep close() waiting', async () => {
  const backend = await startEchoBackend({ name: 'old' });
  const ingress = await startIngress({
    upstreams: { old: [backend.url] },
    route: 'old',
    limits: { headersTimeoutMs: 200, requestTimeoutMs: 400, idleTimeoutMs: 200, maxBodyBytes: 5_000 },
  });
  try {
    const r = generator(7919);
    for (let round = 0; round < 40; round++) {
      await Promise.all(
        Array.from({ length: 20 }, () =>
          exchange(ingress.port, mutate(SEEDS[r(SEEDS.length)] as string, r), r),
        ),
      );
    }
    assert.ok(ingress.stats().requests.old > 0, 'some mutations are still valid requests');
    await ingress.drained('old', 2_000);
  } finally {
    await withDeadline('ingress close', ingress.close(), 3_000);
    await backend.close();
  }
});
