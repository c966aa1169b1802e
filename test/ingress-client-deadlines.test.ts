/**
 * The client deadlines of a node that has been up longer than its request timeout (issue 21: every
 * body still arriving ~1 s after its head got 408 there, because the request deadline was timed from
 * the process's start or from the previous request on the connection). Bodies are paced by timers
 * (that is the workload: slow uploads); the node's age is reached by waiting out its clock, not guessed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { startIngress, type Ingress, type IngressLimits } from '../src/ingress/index.js';
import { SlowClient } from './fixtures/slow-client.js';

const SEED = Number(process.env.IMAGO_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`client deadline tests: seed ${SEED} (IMAGO_TEST_SEED=${SEED} repeats it)`);

/** A small linear congruential generator: the same sequence for the same seed. */
function generator(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * For the tests of the enclosing describe: a node with `limits` in front of an echo backend, which
 * they use once it has been up longer than its request timeout (the condition under which uploads
 * failed: its clock is waited out from when it was listening). `connect()` opens a client closed after.
 */
function olderNode(limits: IngressLimits & { requestTimeoutMs: number }): { connect(): Promise<SlowClient> } {
  let backend: EchoBackend;
  let ingress: Ingress;
  const clients: SlowClient[] = [];
  before(async () => {
    backend = await startEchoBackend({ name: 'old' });
    ingress = await startIngress({ upstreams: { old: [backend.url] }, route: 'old', limits });
    const since = performance.now();
    await delay(since + limits.requestTimeoutMs + 50 - performance.now());
    assert.ok(performance.now() - since > limits.requestTimeoutMs);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await ingress.close();
    await backend.close();
  });
  return {
    async connect() {
      const c = await SlowClient.connect(ingress.port);
      clients.push(c);
      return c;
    },
  };
}

function head(path: string, length: number, extra = ''): string {
  return `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n${extra}\r\n`;
}

function bodyBytes(answer: { body: string }): number {
  return (JSON.parse(answer.body) as { bodyBytes: number }).bodyBytes;
}

describe('client deadlines on a node older than its request timeout', () => {
  const limits = { headersTimeoutMs: 800, requestTimeoutMs: 1_200, idleTimeoutMs: 2_000 };
  const { connect } = olderNode(limits);

  test('a body still arriving 0.6 s after its head is forwarded whole', async () => {
    const c = await connect();
    await c.write(head('/drip', 1000));
    await c.pace(Buffer.alloc(1000, 'a'), 1_600, 100);
    const [answer] = await c.answered(1);
    assert.equal(answer?.status, 200, c.text);
    assert.equal(bodyBytes(answer!), 1000);
  });

  test('a keep-alive request after the first one’s request timeout gets its own deadline', async () => {
    const c = await connect();
    const first = performance.now();
    await c.write(head('/first', 10) + 'x'.repeat(10));
    assert.equal((await c.answered(1))[0]?.status, 200, c.text);
    // The second request begins later than the first one's request deadline (but within the idle one).
    await delay(first + limits.requestTimeoutMs + 50 - performance.now());
    await c.write(head('/second', 1000));
    await c.pace(Buffer.alloc(1000, 'b'), 1_600, 100);
    const answers = await c.answered(2);
    assert.equal(answers[1]?.status, 200, c.text);
    assert.equal(bodyBytes(answers[1]!), 1000);
  });

  test('an Expect: 100-continue body sent after the 100 is forwarded whole', async () => {
    const c = await connect();
    await c.write(head('/continue', 1000, 'expect: 100-continue\r\n'));
    assert.equal((await c.answered(1))[0]?.status, 100, c.text);
    await c.pace(Buffer.alloc(1000, 'c'), 1_600, 100);
    const answers = await c.answered(2);
    assert.equal(answers[1]?.status, 200, c.text);
    assert.equal(bodyBytes(answers[1]!), 1000);
  });

  test('a POST pipelined behind a GET in one write is timed from that write', async () => {
    const c = await connect();
    await c.write(`GET /before HTTP/1.1\r\nhost: x\r\n\r\n${head('/pipelined', 1000)}`);
    await c.pace(Buffer.alloc(1000, 'p'), 1_600, 100);
    const answers = await c.answered(2);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200],
      c.text,
    );
    assert.equal(bodyBytes(answers[1]!), 1000);
  });

  test('a body slower than the request timeout still gets 408, timed from its own head', async () => {
    const c = await connect();
    const sent = performance.now();
    await c.write(head('/too-slow', 1000));
    // 1000 bytes over 2.5 s: past the 1.2 s deadline.
    await c.pace(Buffer.alloc(1000, 'd'), 400, 50);
    const [answer] = await c.answered(1);
    const elapsed = performance.now() - sent;
    assert.equal(answer?.status, 408, c.text);
    assert.ok(elapsed >= limits.requestTimeoutMs, `408 after ${elapsed.toFixed(0)} ms, before the deadline`);
    assert.ok(elapsed < limits.requestTimeoutMs + 1_500, `408 only after ${elapsed.toFixed(0)} ms`);
  });

  test('after a POST, the next head gets the whole headers timeout from its first byte', async () => {
    const c = await connect();
    // The 100 Continue makes the body arrive in a read of its own, after its head.
    await c.write(head('/post', 10, 'expect: 100-continue\r\n'));
    await c.answered(1);
    await c.write('y'.repeat(10));
    assert.equal((await c.answered(2))[1]?.status, 200, c.text);
    // A client pausing on its keep-alive connection, then sending a head in two halves 0.4 s apart:
    // the head takes half the headers timeout, but ends 1.1 s after the POST's body.
    await delay(700);
    await c.write('GET /next HTTP/1.1\r\nhost');
    await delay(400);
    await c.write(': x\r\n\r\n');
    const answers = await c.answered(3);
    assert.equal(answers[2]?.status, 200, c.text);
  });

  test('an idle keep-alive connection after a POST is closed at the idle timeout, without a 408', async () => {
    const c = await connect();
    await c.write(head('/post', 10, 'expect: 100-continue\r\n'));
    await c.answered(1);
    await c.write('z'.repeat(10));
    assert.equal((await c.answered(2))[1]?.status, 200, c.text);
    const answeredAt = performance.now();
    const text = c.text;
    await c.closedByServer();
    const idle = performance.now() - answeredAt;
    assert.equal(c.text, text, 'nothing is sent on an idle connection before it is closed');
    assert.ok(idle >= limits.idleTimeoutMs - 50, `closed after ${idle.toFixed(0)} ms idle`);
  });
});

describe('slow uploads through a node older than its request timeout', () => {
  const { connect } = olderNode({ headersTimeoutMs: 2_000, requestTimeoutMs: 4_000 });

  test('a 1 MB POST sent at 500 KB/s gets 200', async () => {
    const c = await connect();
    const body = Buffer.alloc(1024 * 1024, 'm');
    await c.write(head('/upload', body.length));
    await c.pace(body, 500 * 1024, 16 * 1024);
    const [answer] = await c.answered(1);
    assert.equal(answer?.status, 200, c.text.slice(0, 200));
    assert.equal(bodyBytes(answer!), body.length);
  });

  test('300 concurrent slow-body clients all get 200', async () => {
    const random = generator(SEED);
    const n = 300;
    const size = 6 * 1024;
    const outcomes = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        // Staggered starts and paces (1–2 s per body), from the seed.
        await delay(random(500));
        const c = await connect();
        await c.write(head(`/slow/${i}`, size));
        await c.pace(Buffer.alloc(size, 's'), size / (1 + random(1000) / 1000), 512);
        const [answer] = await c.answered(1, 20_000);
        c.destroy();
        return answer?.status === 200 && bodyBytes(answer) === size ? 'ok' : `${answer?.status}`;
      }),
    );
    const failed = outcomes.filter((o) => o !== 'ok');
    assert.deepEqual(failed, [], `${failed.length} of ${n} failed: ${[...new Set(failed)].join(', ')}`);
  });
});
