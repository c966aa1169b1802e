/**
 * The proxies `imago bench proxy` measures — Imago's ingress, nginx and the minimal baseline, started by
 * the bench's own code (src/bench/proxy-targets.ts) with two workers each — against clients that leave
 * at every point of an exchange: before the head, during the request body, before the answer and
 * during it, each by closing (FIN) and by resetting (RST). wrk closes its connections at the end of
 * every run, so a proxy that dies of this loses the bench. After every step no process of the proxy
 * may have ended (a dead worker counts: the others would serve on), and at the end it must still
 * answer GETs and 4 KB POSTs on fresh connections.
 *
 * The order is made explicit, not timed: a client that closes waits for the proxy to close its side
 * (the proxy has noticed), and the backend's answers never end, so every proxy must give up the
 * upstream connection of a client that left; the step waits for that.
 * nginx must be installed in CI (CI=true; .ci/run installs it); elsewhere its case is skipped without it.
 * Last, what the bench is told when a proxy does die: a worker that ends (even replaced) or the whole.
 */
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { findNginx } from '../src/bench/executables.js';
import { logExcerpt } from '../src/bench/log-excerpt.js';
import { processTree } from '../src/bench/process-tree.js';
import { startEchoBackend, type EchoBackend } from '../src/bench/proxy-backend.js';
import { startProxy, type BenchProcess, type ProxyTarget } from '../src/bench/proxy-targets.js';

const WORKERS = 2;
const DEADLINE_MS = 10_000;
const CHUNK = Buffer.alloc(64 * 1024, 'a');
const POST_BODY = Buffer.alloc(4096, 'p');

type Leave = 'fin' | 'reset';
const LEAVES: Leave[] = ['fin', 'reset'];

/** A request the backend took over: it answers only when told, and never ends the answer. */
interface Held {
  req: IncomingMessage;
  res: ServerResponse;
  /** The upstream connection it came on has closed: the proxy gave it up. */
  closed: Promise<void>;
}

function heldBackend(): { start(): Promise<EchoBackend>; arrival(id: string): Promise<Held>; all: Held[] } {
  const waiting = new Map<string, (h: Held) => void>();
  const arrived = new Map<string, Held>();
  const all: Held[] = [];
  return {
    all,
    start: () =>
      startEchoBackend({
        name: 'old',
        handler: (req, res) => {
          const m = /^\/(hold|stream)\/(\w+)$/.exec(req.url ?? '');
          if (!m) return false;
          const closed = new Promise<void>((resolve) => {
            if (req.socket.destroyed) resolve();
            else req.socket.once('close', () => resolve());
          });
          req.resume(); // take whatever body comes
          res.on('error', () => undefined);
          if (m[1] === 'stream') {
            res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 16 * CHUNK.length });
            res.write(CHUNK);
          }
          const h = { req, res, closed };
          all.push(h);
          arrived.set(m[2] as string, h);
          waiting.get(m[2] as string)?.(h);
          return true;
        },
      }),
    arrival: (id) => {
      const h = arrived.get(id);
      if (h) return Promise.resolve(h);
      return withDeadline(
        `request ${id} to reach the backend`,
        new Promise<Held>((resolve) => waiting.set(id, resolve)),
        DEADLINE_MS,
      );
    },
  };
}

/** A small answer, all of it, as the bench's backend gives (waits until it is written). */
function answerWhole(h: Held): Promise<void> {
  if (h.res.destroyed || h.req.socket.destroyed) return Promise.resolve(); // the proxy gave it up (nginx)
  const body = JSON.stringify({ universe: 'old', ok: true });
  const written = new Promise<void>((resolve) => {
    h.res.once('finish', () => resolve());
    h.res.once('close', () => resolve());
  });
  h.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  h.res.end(body);
  return withDeadline('the whole answer to be written', written, DEADLINE_MS);
}

/** The answer's head and a first part of its body, never the rest. */
function answerPartly(h: Held): void {
  if (h.res.destroyed) return;
  if (!h.res.headersSent)
    h.res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 16 * CHUNK.length });
  h.res.write(CHUNK);
}

function connect(port: number): Promise<net.Socket> {
  return withDeadline(
    'a client connection',
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
      s.once('error', reject);
    }).then((s) => {
      s.on('error', () => undefined); // a reset, either way, is what the test is about
      return s;
    }),
    DEADLINE_MS,
  );
}

/**
 * The client leaves: `fin` closes its side and waits until the proxy closes its own (it has noticed;
 * every proxy here treats a half-close as a client gone, as node:http does), `reset` sends an RST.
 */
async function leave(s: net.Socket, how: Leave, label: string): Promise<void> {
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.resume();
  if (how === 'fin') s.end();
  else s.resetAndDestroy();
  await withDeadline(
    `${label} to close the connection of a client that closed its side`,
    closed,
    DEADLINE_MS,
  );
}

function firstBytes(s: net.Socket): Promise<void> {
  return withDeadline(
    'the first bytes of the answer',
    new Promise<void>((resolve) => s.once('data', () => resolve())),
    DEADLINE_MS,
  );
}

function exchange(port: number, method: 'GET' | 'POST'): Promise<{ status: number; body: string }> {
  return withDeadline(
    `a ${method} after the clients that left`,
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path: '/bench',
          agent: false, // a fresh connection each time, so that every worker gets some
          headers: method === 'POST' ? { 'content-type': 'application/json' } : {},
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(method === 'POST' ? POST_BODY : undefined);
    }),
    DEADLINE_MS,
  );
}

describe('the bench proxies outlive clients that leave', () => {
  const backend = heldBackend();
  let echo: EchoBackend;
  let dir: string;
  let nextId = 0;

  before(async () => {
    echo = await backend.start();
    dir = mkdtempSync(join(tmpdir(), 'imago-test-bench-proxies-'));
  });
  after(async () => {
    for (const h of backend.all) h.res.destroy();
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Each way for a client to leave, then the checks; fails at the first step that ends a process. */
  async function outlives(proxy: BenchProcess, streamsRequestBodies: boolean): Promise<void> {
    /** Fresh connections, so that every worker answers one (node:cluster hands them round-robin). */
    const probe = async (): Promise<void> => {
      for (let i = 0; i < 2 * WORKERS; i++) {
        const get = await exchange(proxy.port, 'GET');
        assert.equal(get.status, 200, `${proxy.label} GET after the clients left: ${get.body}`);
      }
    };
    const died = (what: string, failure: string): string =>
      `${proxy.label} died of a client that left ${what}: ${failure}\n${logExcerpt(proxy.logPath).join('\n')}`;
    /**
     * A worker that dies of a step dies before it can answer a later connection (the step's answer was
     * in its socket before the probe's connection was handed to it), so probing after each step names
     * the step; a probe that fails names the process that ended, once it has.
     */
    const step = async (what: string, run: () => Promise<void>): Promise<void> => {
      await run();
      try {
        await probe();
      } catch (err) {
        const failure = await waitUntil(`${proxy.label} to show what ended`, async () => proxy.failure(), {
          timeoutMs: DEADLINE_MS,
        }).catch(() => undefined);
        if (failure) assert.fail(died(what, failure));
        throw err;
      }
      const failure = proxy.failure();
      if (failure) assert.fail(died(what, failure));
    };
    const send = async (head: string, body?: Buffer): Promise<net.Socket> => {
      const s = await connect(proxy.port);
      s.write(body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : head);
      return s;
    };
    // Its processes as they serve (nginx forks its workers after it binds the port).
    await probe();
    assert.equal(proxy.failure(), undefined);

    for (const how of LEAVES) {
      await step(`right after connecting (${how})`, async () => {
        await leave(await connect(proxy.port), how, proxy.label);
      });
      await step(`in the middle of the request line (${how})`, async () => {
        await leave(await send('GET /bench HT'), how, proxy.label);
      });
      await step(`before the end of the head (${how})`, async () => {
        await leave(await send('GET /bench HTTP/1.1\r\nhost: x\r\n'), how, proxy.label);
      });
      await step(`during the request body (${how})`, async () => {
        const id = `b${nextId++}`;
        const s = await send(
          `POST /hold/${id} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${POST_BODY.length}\r\n\r\n`,
          POST_BODY.subarray(0, 1000),
        );
        // nginx reads the whole body before it forwards: nothing reaches the backend then.
        const held = streamsRequestBodies ? await backend.arrival(id) : undefined;
        await leave(s, how, proxy.label);
        if (held)
          await withDeadline(`${proxy.label} to give up the upstream request`, held.closed, DEADLINE_MS);
      });
      for (const method of ['GET', 'POST'] as const) {
        for (const answer of ['whole', 'partial'] as const) {
          await step(`before the ${answer} answer to a ${method} (${how})`, async () => {
            const id = `a${nextId++}`;
            const s =
              method === 'GET'
                ? await send(`GET /hold/${id} HTTP/1.1\r\nhost: x\r\n\r\n`)
                : await send(
                    `POST /hold/${id} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${POST_BODY.length}\r\n\r\n`,
                    POST_BODY,
                  );
            const held = await backend.arrival(id);
            await leave(s, how, proxy.label);
            // The answer comes after the client has gone: whole (as the bench's backend answers: the
            // proxy has it all at once, and may keep the upstream connection) or never ending.
            if (answer === 'whole') return answerWhole(held);
            answerPartly(held);
            await withDeadline(`${proxy.label} to give up the upstream request`, held.closed, DEADLINE_MS);
          });
        }
      }
      await step(`during the answer (${how})`, async () => {
        const id = `d${nextId++}`;
        const s = await send(`GET /stream/${id} HTTP/1.1\r\nhost: x\r\n\r\n`);
        const held = await backend.arrival(id);
        await firstBytes(s);
        await leave(s, how, proxy.label);
        answerPartly(held); // more of the answer, for a client that has gone
        await withDeadline(`${proxy.label} to give up the upstream request`, held.closed, DEADLINE_MS);
      });
    }

    for (let i = 0; i < 2 * WORKERS; i++) {
      const get = await exchange(proxy.port, 'GET');
      assert.equal(get.status, 200, `${proxy.label} GET after the clients left: ${get.body}`);
      assert.equal((JSON.parse(get.body) as { universe: string }).universe, 'old');
      const post = await exchange(proxy.port, 'POST');
      assert.equal(post.status, 200, `${proxy.label} POST after the clients left: ${post.body}`);
      assert.equal((JSON.parse(post.body) as { bodyBytes: number }).bodyBytes, POST_BODY.length);
    }
    const failure = proxy.failure();
    assert.equal(failure, undefined, `${proxy.label}: ${failure}\n${logExcerpt(proxy.logPath).join('\n')}`);
  }

  // What the bench reports when a proxy dies: a worker that ends counts even when node:cluster
  // replaces it (Imago's ingress does), and so does the whole proxy.
  test('a proxy that loses a worker, or dies, says so', async () => {
    const proxy = await startProxy('imago', { upstream: echo.url, workers: WORKERS, dir });
    try {
      assert.equal(proxy.failure(), undefined);
      const workers = [...processTree([proxy.pid])]
        .filter(([pid, st]) => pid !== proxy.pid && st?.comm === 'node')
        .map(([pid]) => pid);
      assert.equal(workers.length, WORKERS, `workers of ${proxy.label}: ${workers.join(', ')}`);
      process.kill(workers[0] as number, 'SIGKILL');
      const lost = await waitUntil('the lost worker to show', async () => proxy.failure(), {
        timeoutMs: DEADLINE_MS,
      });
      // The primary and its workers, and the replacement when it was seen before the loss was asked.
      assert.match(
        lost,
        new RegExp(`^its process ${workers[0]} ended \\(of the (${WORKERS + 1}|${WORKERS + 2}) it ran`),
      );
      // Replaced by then or not, the loss stays reported.
      await exchange(proxy.port, 'GET');
      assert.match(proxy.failure() ?? '', new RegExp(`^its process ${workers[0]} ended`));
      process.kill(proxy.pid, 'SIGKILL');
      const died = await waitUntil(
        'the proxy to be reported dead',
        async () => (proxy.failure()?.startsWith('it was killed') ? proxy.failure() : undefined),
        { timeoutMs: DEADLINE_MS },
      );
      assert.equal(died, 'it was killed by SIGKILL');
    } finally {
      await proxy.stop();
    }
  });

  const cases: { target: ProxyTarget; streamsRequestBodies: boolean }[] = [
    { target: 'imago', streamsRequestBodies: true },
    { target: 'nginx', streamsRequestBodies: false },
    { target: 'minimal', streamsRequestBodies: true },
  ];
  for (const { target, streamsRequestBodies } of cases) {
    test(`${target}: clients leave before the head, during the body, before and during the answer`, async (t: TestContext) => {
      const nginx = findNginx();
      if (target === 'nginx' && !nginx) {
        assert.notEqual(
          process.env.CI,
          'true',
          'nginx is not installed, and CI must run this test: .ci/run installs it with apt-get',
        );
        t.skip('nginx is not installed (apt-get install -y nginx): skipped outside CI');
        return;
      }
      const proxy = await startProxy(target, { upstream: echo.url, workers: WORKERS, dir, nginx });
      try {
        await outlives(proxy, streamsRequestBodies);
      } finally {
        await proxy.stop();
      }
    });
  }
});
