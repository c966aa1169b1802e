// `imago ingress` as an operator runs it: a node in its own process, its control token from the
// environment. It proxies, answers its control endpoint only with the token, stops on SIGTERM, and
// restarted on the same state file resumes the route its driver last set (here: new). Balancing and
// health-check options reach every worker, and bad values are refused naming the option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { processTree } from '../src/bench/process-tree.js';
import { startEchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil, withDeadline } from '../src/deadline.js';
import { freePort } from '../src/universe/ports.js';
import { root } from './fixtures/driver-run.js';
import { answeringUniverse, controlCall, twoUniverses } from './fixtures/ingress-control.js';
import { SlowClient } from './fixtures/slow-client.js';

const token = 'cli-test-token-0123456789abcdef';
const fixture = twoUniverses('imago-ingress-cli-');

interface Node {
  child: ChildProcess;
  info: { url: string; control: string; route: string };
  exit: Promise<number | null>;
  /** performance.now() when it said it listens: the node is at least this old. */
  since: number;
}

async function startNode(
  env: Record<string, string>,
  ports: { listen: number; control: number },
  extra: { old?: string; args?: string[] } = {},
): Promise<Node> {
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin/imago.js'),
      'ingress',
      '--old',
      extra.old ?? fixture.old.url,
      '--listen',
      `127.0.0.1:${ports.listen}`,
      '--control-port',
      String(ports.control),
      '--state',
      join(fixture.dir, 'edge.json'),
      '--workers',
      '1',
      '--json',
      ...(extra.args ?? []),
    ],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const line = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    void exit.then((code) => reject(new Error(`imago ingress exited ${code}`)));
  });
  const info = JSON.parse(await withDeadline('imago ingress listening', line, 30_000)) as Node['info'];
  return { child, info, exit, since: performance.now() };
}

function control(node: Node, path: string, body?: unknown, auth = token) {
  return controlCall(node.info.control, auth, path, body);
}

const universe = (node: Node): Promise<string> => answeringUniverse(node.info.url);

test('imago ingress proxies, obeys its control endpoint, stops on SIGTERM and resumes its route', async () => {
  const ports = { listen: await freePort(), control: await freePort() };
  const node = await startNode({ IMAGO_INGRESS_TOKEN: token }, ports);
  assert.equal(node.info.route, 'old');
  assert.equal(await universe(node), 'old');
  assert.equal((await control(node, '/v1/state', undefined, 'wrong-token-wrong-token')).status, 401);
  assert.equal(
    (await control(node, '/v1/upstreams', { epoch: 1, universe: 'new', urls: [fixture.new.url] })).status,
    200,
  );
  assert.equal((await control(node, '/v1/release', { epoch: 2, route: 'new' })).status, 200);
  assert.equal(await universe(node), 'new');

  node.child.kill('SIGTERM');
  assert.equal(await withDeadline('ingress stopping', node.exit, 15_000), 143);
  await assert.rejects(request(`${node.info.url}/x`), 'the port is closed');

  const again = await startNode({ IMAGO_INGRESS_TOKEN: token }, ports);
  assert.equal(again.info.route, 'new', 'the state file, not the command line, decides the route');
  assert.equal(await universe(again), 'new');
  assert.equal((await control(again, '/v1/state')).json.epoch, 2);
  again.child.kill('SIGTERM');
  await withDeadline('ingress stopping', again.exit, 15_000);
});

/** Runs `imago ingress` with `args`, expecting it to refuse to start. */
async function refused(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    [join(root, 'bin/imago.js'), 'ingress', '--old', fixture.old.url, ...args],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await withDeadline(
    'imago ingress refusing',
    new Promise<number | null>((resolve) => child.once('exit', resolve)),
    15_000,
  );
  return { code, stderr };
}

test('imago ingress without a control token says what to set, without a stack trace', async () => {
  const env = { ...process.env };
  delete env.IMAGO_INGRESS_TOKEN;
  const { code, stderr } = await refused([], env);
  assert.equal(code, 2);
  assert.match(
    stderr,
    /control token is not set\n {2}at fault: IMAGO_INGRESS_TOKEN\n {2}hint: export IMAGO_INGRESS_TOKEN=/,
  );
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/);
});

test('imago ingress refuses an unknown balancing policy and a health interval without a path', async () => {
  const policy = await refused(['--balance', 'fastest']);
  assert.notEqual(policy.code, 0);
  assert.match(policy.stderr, /option '--balance <round-robin\|least-busy>' argument 'fastest' is invalid/);
  assert.match(policy.stderr, /expected round-robin or least-busy/);
  const interval = await refused(['--health-interval', '500'], {
    ...process.env,
    IMAGO_INGRESS_TOKEN: token,
  });
  assert.equal(interval.code, 2);
  assert.match(
    interval.stderr,
    /--health-interval is given without --health-path\n {2}at fault: --health-interval/,
  );
});

test('imago ingress --balance and --health-path reach every worker: a failing backend shows down', async () => {
  const sick = await startEchoBackend({
    name: 'sick',
    handler: (req, res) => {
      if (req.url !== '/healthz') return false;
      res.writeHead(503).end();
      return true;
    },
  });
  const ports = { listen: await freePort(), control: await freePort() };
  const node = await startNode({ IMAGO_INGRESS_TOKEN: token }, ports, {
    old: sick.url,
    args: [
      '--workers',
      '2',
      '--balance',
      'least-busy',
      '--state',
      join(fixture.dir, 'health.json'),
      '--health-path',
      '/healthz',
      '--health-interval',
      '50',
    ],
  });
  try {
    const backends = await waitUntil(
      'the failing health check in /v1/state',
      async () => {
        const state = (await control(node, '/v1/state')).json as { backends: { old: unknown[] } };
        return (state.backends.old as { up: boolean }[]).some((b) => !b.up) ? state.backends.old : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    assert.deepEqual(backends, [{ url: sick.url, up: false }]);
    const metrics = await request(`${node.info.control}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.match(await metrics.body.text(), /imago_ingress_backends_up\{universe="old"\} 0\n/);
    // Its only backend: still tried rather than refused.
    assert.equal(await universe(node), 'sick');
  } finally {
    node.child.kill('SIGTERM');
    await withDeadline('ingress stopping', node.exit, 15_000);
    await sick.close();
  }
});

/** A raw client whose GET is sent (in the kernel's hands) once this resolves; `answer` is all it got. */
async function sentGet(port: number): Promise<{ answer: Promise<string> }> {
  const socket = net.connect(port, '127.0.0.1');
  let got = '';
  const answer = new Promise<string>((resolve, reject) => {
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
  });
  answer.catch(() => undefined);
  await withDeadline('the connection', once(socket, 'connect'), 10_000);
  await new Promise<void>((resolve, reject) =>
    socket.write('GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return { answer };
}

const liveWorkers = (primary: number): number[] =>
  [...processTree([primary])]
    .filter(([pid, st]) => pid !== primary && st?.comm === 'node' && st.state !== 'Z')
    .map(([pid]) => pid)
    .sort((a, b) => a - b);

test('imago ingress --workers 2: connections that reach a worker dying unseen are served by another', async () => {
  const ports = { listen: await freePort(), control: await freePort() };
  const node = await startNode({ IMAGO_INGRESS_TOKEN: token }, ports, {
    args: ['--workers', '2', '--state', join(fixture.dir, 'dispatch.json')],
  });
  const primary = node.child.pid as number;
  try {
    for (let round = 0; round < 4; round++) {
      const workers = await waitUntil(
        'two workers',
        async () => {
          const w = liveWorkers(primary);
          return w.length === 2 ? w : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 20 },
      );
      // Stopped, the primary cannot see the death before the connections: they are accepted by the
      // kernel meanwhile and it finds both at once, as on a loaded machine.
      process.kill(primary, 'SIGSTOP');
      let clients: { answer: Promise<string> }[];
      try {
        process.kill(workers[0] as number, 'SIGKILL');
        clients = await Promise.all(Array.from({ length: 6 }, () => sentGet(ports.listen)));
      } finally {
        process.kill(primary, 'SIGCONT');
      }
      const answers = await withDeadline(
        `round ${round}: every client answered after worker ${workers[0]} was killed`,
        Promise.all(clients.map((c) => c.answer)),
        10_000,
      );
      for (const a of answers) assert.match(a, /^HTTP\/1\.1 200 /, `round ${round}: ${a.slice(0, 80)}`);
    }
  } finally {
    process.kill(primary, 'SIGCONT');
    node.child.kill('SIGTERM');
    await withDeadline('ingress stopping', node.exit, 15_000);
  }
});

test('imago ingress --request-timeout: a slow body on a node older than it gets 200, a slower one 408', async () => {
  const ports = { listen: await freePort(), control: await freePort() };
  const requestMs = 1_500;
  const node = await startNode({ IMAGO_INGRESS_TOKEN: token }, ports, {
    args: [
      '--request-timeout',
      String(requestMs),
      '--headers-timeout',
      '1000',
      '--state',
      join(fixture.dir, 'slow.json'),
    ],
  });
  const clients: SlowClient[] = [];
  try {
    // Before the fix every body still arriving ~0.3 s after its head got 408 once the node was older
    // than its request timeout: the node's clock is waited out, then bodies are sent at a pace.
    await new Promise((resolve) => setTimeout(resolve, node.since + requestMs + 50 - performance.now()));
    const port = Number(new URL(node.info.url).port);
    const upload = async (bytesPerSecond: number): Promise<{ status?: number; ms: number }> => {
      const c = await SlowClient.connect(port);
      clients.push(c);
      const sent = performance.now();
      await c.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n');
      await c.pace(Buffer.alloc(1000, 'u'), bytesPerSecond, 100);
      const [answer] = await c.answered(1);
      return { status: answer?.status, ms: performance.now() - sent };
    };
    const [slow, tooSlow] = await Promise.all([upload(1_250), upload(400)]);
    assert.equal(slow.status, 200, 'a body taking 0.8 s of a 1.5 s request timeout');
    assert.equal(tooSlow.status, 408, 'a body taking 2.5 s');
    assert.ok(tooSlow.ms >= requestMs, `408 after ${tooSlow.ms.toFixed(0)} ms`);
  } finally {
    for (const c of clients) c.destroy();
    node.child.kill('SIGTERM');
    await withDeadline('ingress stopping', node.exit, 15_000);
  }
});

test('imago ingress refuses a request timeout that is not a whole number of milliseconds', async () => {
  const bad = await refused(['--request-timeout', '1.5s']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /option '--request-timeout <ms>' argument '1.5s' is invalid/);
});

test('imago ingress on an unusable state file names the file and the field, without a stack trace', async () => {
  const state = join(fixture.dir, 'broken.json');
  writeFileSync(
    state,
    JSON.stringify({
      epoch: 4,
      route: 'new',
      holding: false,
      mirror: false,
      upstreams: { new: ['file:///etc/passwd'] },
    }),
  );
  const { code, stderr } = await refused(['--state', state, '--workers', '1'], {
    ...process.env,
    IMAGO_INGRESS_TOKEN: token,
  });
  assert.equal(code, 2, stderr);
  assert.ok(stderr.includes(`ingress state file ${state}`), stderr);
  assert.match(stderr, /field upstreams\.new\[0\]: 'file:\/\/\/etc\/passwd' is not an http:\/\/ URL/);
  assert.match(stderr, /hint: .*remove the file/);
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/);
});

test('imago ingress refuses a backend URL it would not use, naming it', async () => {
  const bad = await refused(['--new', 'file:///etc/passwd']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /'file:\/\/\/etc\/passwd' is not an http:\/\/ URL: expected an http:\/\/ URL/);
});
