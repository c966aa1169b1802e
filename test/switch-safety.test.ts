// Fast checks (no PostgreSQL) of the review's findings on the switch's safety: the journal's phase
// never moves back past COMMIT; a COMMIT whose write failed is settled by re-reading the journal; an
// abort releases at a higher epoch than PREPARE and a late hold is refused; nodes keep their upstreams
// across a restart and the precheck requires them; unconfirmed nodes are re-sent the decision; a
// reset connection never repeats a write; a detached app that never gets healthy is killed with its
// children; the app does not inherit Imago's secrets; passwords with '@' are masked whole.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request } from 'undici';
import { startEchoBackend } from '../src/bench/proxy-backend.js';
import { waitUntil } from '../src/deadline.js';
import { phaseMoveAllowed } from '../src/driver/phases.js';
import { appEnvironment, startDetachedApp } from '../src/driver/new-app.js';
import { MemoryControlStore, startIngress, type Ingress } from '../src/ingress/index.js';
import { redactText, redactUrl } from '../src/redact.js';
import {
  CommitInDoubtError,
  IngressNode,
  Redriver,
  memoryJournal,
  runSwitchover,
  type Fence,
  type SwitchJournal,
  type SwitchOptions,
} from '../src/switchover/index.js';
import { freePort } from '../src/universe/ports.js';

const TOKEN = 'switch-safety-token-0123456789';

describe('journal phases', () => {
  test('never back past COMMIT; only the defined moves back before it', () => {
    assert.equal(phaseMoveAllowed('switched', 'provisioning', true), false);
    assert.equal(phaseMoveAllowed('switched', 'ready', true), false);
    assert.equal(phaseMoveAllowed('switched', 'aborting', true), false);
    assert.equal(phaseMoveAllowed('switching', 'ready', true), false, 'COMMIT stands');
    assert.equal(phaseMoveAllowed('switching', 'ready', false), true, 'abort before COMMIT');
    assert.equal(phaseMoveAllowed('ready', 'copying', false), false, 'no copy over from ready on');
    assert.equal(phaseMoveAllowed('ready', 'provisioning', false), false);
    assert.equal(phaseMoveAllowed('streaming', 'copying', false), true);
    assert.equal(phaseMoveAllowed('ready', 'aborting', false), true);
    assert.equal(phaseMoveAllowed('aborting', 'aborted', false), true);
    assert.equal(phaseMoveAllowed('aborting', 'ready', false), false);
    assert.equal(phaseMoveAllowed('switched', 'finished', true), true);
    assert.equal(phaseMoveAllowed('finished', 'switched', true), false);
  });
});

interface Node {
  ingress: Ingress;
  node: IngressNode;
}

async function startNode(
  name: string,
  upstreams: { old: string[]; new?: string[] },
  store = new MemoryControlStore(),
  port?: number,
  route: 'old' | 'new' = 'old',
): Promise<Node> {
  const ingress = await startIngress({
    upstreams,
    route,
    control: { token: TOKEN, store, nodeId: name, port },
  });
  const control = ingress.control;
  assert.ok(control);
  return { ingress, node: new IngressNode({ name, control: control.url, token: TOKEN }) };
}

/** A fence that does nothing and needs no database. */
const noFence = {
  mode: 'none',
  plan: () => Promise.resolve({ mode: 'none' }),
  standBy: () => Promise.resolve(),
  apply: () => Promise.resolve(0n),
  lift: () => Promise.resolve(),
} as unknown as Fence;

const caughtUp = {
  catchUp: () => Promise.resolve({ markerLsn: 0n, waitedMs: 0 }),
  bringSequencesPast: () => Promise.resolve(0),
};

function switchOptions(nodes: Node[], journal: SwitchJournal): SwitchOptions {
  return {
    nodes: nodes.map((n) => n.node),
    converter: caughtUp,
    fence: noFence,
    journal,
    budget: {
      maxPauseMs: 5_000,
      maxCatchUpLagMs: 1_000,
      deadlines: {
        precheckMs: 2_000,
        prepareMs: 1_000,
        drainMs: 1_000,
        fenceMs: 1_000,
        catchUpMs: 1_000,
        commitMs: 2_000,
      },
    },
  };
}

/** A journal whose COMMIT write reports an error; `stored` says whether the row landed anyway. */
function failingCommit(stored: boolean, readable = true): SwitchJournal & { events: string[] } {
  const inner = memoryJournal();
  const events: string[] = [];
  return {
    events,
    record: async (event, detail) => {
      if (event === 'switch-commit') {
        if (stored) await inner.record(event, detail);
        throw new Error('connection terminated unexpectedly');
      }
      events.push(event);
      await inner.record(event, detail);
    },
    committed: (epoch) =>
      readable ? inner.committed!(epoch) : Promise.reject(new Error('journal unreachable')),
  };
}

describe('switch protocol', () => {
  test('a COMMIT stored despite a write error is carried out, not aborted', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const n = await startNode('n1', { old: [backend.url], new: [backend.url] });
    try {
      const journal = failingCommit(true);
      const r = await runSwitchover(switchOptions([n], journal));
      assert.equal(r.switched, true, r.reason);
      assert.equal(n.ingress.route(), 'new');
      assert.ok(!journal.events.includes('switch-abort'));
    } finally {
      await n.ingress.close();
      await backend.close();
    }
  });

  test('a COMMIT not stored aborts; the abort releases at a higher epoch and a late hold is refused', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const n = await startNode('n1', { old: [backend.url], new: [backend.url] });
    try {
      const r = await runSwitchover(switchOptions([n], failingCommit(false)));
      assert.equal(r.switched, false);
      assert.equal(r.releaseEpoch, r.epoch + 1);
      assert.equal(n.ingress.route(), 'old');
      assert.equal(n.ingress.holding(), false);
      // The PREPARE of this attempt, delayed past its release: refused, the node does not hold.
      await assert.rejects(n.node.hold(r.epoch, 1_000), /409/);
      await assert.rejects(n.node.hold(r.releaseEpoch, 1_000), /409/);
      assert.equal(n.ingress.holding(), false);
    } finally {
      await n.ingress.close();
      await backend.close();
    }
  });

  test('a COMMIT that cannot be settled leaves the nodes holding (in doubt), released by nobody', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const n = await startNode('n1', { old: [backend.url], new: [backend.url] });
    try {
      await assert.rejects(runSwitchover(switchOptions([n], failingCommit(true, false))), CommitInDoubtError);
      assert.equal(n.ingress.holding(), true);
      assert.equal(n.ingress.route(), 'old');
    } finally {
      await n.ingress.close();
      await backend.close();
    }
  });

  test('the precheck refuses when a node has no upstreams for the new universe', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const a = await startNode('a', { old: [backend.url], new: [backend.url] });
    const b = await startNode('b', { old: [backend.url] });
    try {
      const r = await runSwitchover(switchOptions([a, b], memoryJournal()));
      assert.equal(r.held, false);
      assert.match(r.reason ?? '', /no upstreams for the new universe on b/);
      assert.equal(a.ingress.holding(), false);
    } finally {
      await a.ingress.close();
      await b.ingress.close();
      await backend.close();
    }
  });
});

describe('rollback: the switch protocol the other way', () => {
  test('drains at new, journals rollback-*, flips to old; an abort leaves new serving', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new' });
    const n = await startNode('n1', { old: [oldB.url], new: [newB.url] }, undefined, undefined, 'new');
    try {
      const failed = memoryJournal();
      const aborted = await runSwitchover({
        ...switchOptions([n], failed),
        direction: 'back',
        beforeStep: (step) => {
          if (step === 'catch-up') throw new Error('the reverse stream is behind');
        },
      });
      assert.equal(aborted.switched, false);
      assert.equal(n.ingress.route(), 'new', 'an aborted rollback leaves the new universe serving');
      assert.equal(n.ingress.holding(), false);
      assert.deepEqual(
        failed.events.map((e) => e.event),
        ['rollback-prepare', 'rollback-abort', 'rollback-aborted'],
      );

      const journal = memoryJournal();
      const r = await runSwitchover({ ...switchOptions([n], journal), direction: 'back' });
      assert.equal(r.switched, true, r.reason);
      assert.equal(n.ingress.route(), 'old');
      assert.deepEqual(
        journal.events.map((e) => e.event),
        ['rollback-prepare', 'rollback-commit', 'rolled-back'],
      );
      assert.ok(r.epoch > aborted.releaseEpoch, 'a new epoch for each attempt');
      const answer = await request(`${n.ingress.url}/x`);
      assert.match(await answer.body.text(), /old/, 'served by the old universe');
      assert.ok(await journal.committed?.(r.epoch), 'the memory journal settles a rollback COMMIT too');
    } finally {
      await n.ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test("the destination's fence is lifted before COMMIT, and put back when the switch aborts after", async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new' });
    const n = await startNode('n1', { old: [oldB.url], new: [newB.url] }, undefined, undefined, 'new');
    try {
      // One list for the journal's events and the fence's moves, to see their order.
      const order: string[] = [];
      const journal: SwitchJournal = {
        record: (event) => Promise.resolve(void order.push(event)),
      };
      const unfence = {
        lift: () => Promise.resolve(void order.push('lift')),
        restore: () => Promise.resolve(void order.push('restore')),
      };
      const aborted = await runSwitchover({
        ...switchOptions([n], journal),
        direction: 'back',
        unfence,
        beforeStep: (step) => {
          if (step === 'commit') throw new Error('the journal is unreachable');
        },
      });
      assert.equal(aborted.switched, false);
      assert.deepEqual(order, ['rollback-prepare', 'lift', 'rollback-abort', 'restore', 'rollback-aborted']);
      assert.equal(n.ingress.route(), 'new');

      order.length = 0;
      const r = await runSwitchover({ ...switchOptions([n], journal), direction: 'back', unfence });
      assert.equal(r.switched, true, r.reason);
      assert.deepEqual(order, ['rollback-prepare', 'lift', 'rollback-commit', 'rolled-back']);
    } finally {
      await n.ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('the precheck of a rollback needs upstreams of the old universe', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const n = await startNode('n1', { old: [], new: [backend.url] }, undefined, undefined, 'new');
    try {
      const r = await runSwitchover({ ...switchOptions([n], memoryJournal()), direction: 'back' });
      assert.equal(r.held, false);
      assert.match(r.reason ?? '', /no upstreams for the old universe on n1/);
    } finally {
      await n.ingress.close();
      await backend.close();
    }
  });
});

describe('ingress nodes', () => {
  test('a restarted node keeps the upstreams set through the control endpoint, and its released epoch', async () => {
    const oldB = await startEchoBackend({ name: 'old' });
    const newB = await startEchoBackend({ name: 'new' });
    const store = new MemoryControlStore();
    let n = await startNode('n1', { old: [oldB.url] }, store);
    try {
      await n.node.setUpstreams(1, 'new', [newB.url], 1_000);
      await n.node.hold(2, 1_000);
      await n.node.release(3, 'old', 1_000);
      await n.ingress.close();
      // Restarted with only its command line's upstreams: the store brings `new` back.
      n = await startNode('n1', { old: [oldB.url] }, store);
      assert.deepEqual((await n.node.state(1_000)).upstreams?.new, [newB.url]);
      await assert.rejects(n.node.hold(3, 1_000), /409/, 'a hold at a released epoch stays refused');
      await n.node.hold(4, 1_000);
      const released = await n.node.release(4, 'new', 1_000);
      assert.equal(released.route, 'new');
      const r = await request(`${n.ingress.url}/x`);
      assert.equal(r.statusCode, 200);
      assert.equal((JSON.parse(await r.body.text()) as { universe: string }).universe, 'new');
    } finally {
      await n.ingress.close();
      await oldB.close();
      await newB.close();
    }
  });

  test('a node unreachable at the decision is re-sent it until it confirms', async () => {
    const backend = await startEchoBackend({ name: 'b' });
    const port = await freePort();
    const offline = new IngressNode({ name: 'late', control: `http://127.0.0.1:${port}`, token: TOKEN });
    let clock = 0;
    const redriver = new Redriver({ baseMs: 100, now: () => clock });
    redriver.set([offline], 'new', 5);
    assert.deepEqual(await redriver.tick(500), []);
    assert.deepEqual(redriver.unconfirmed, ['late']);
    assert.equal(redriver.dueInMs(), 100, 'backs off');
    assert.deepEqual(await redriver.tick(500), [], 'not due yet');
    // The node comes back (from its store: still holding at the PREPARE's epoch).
    const store = new MemoryControlStore({
      epoch: 5,
      route: 'old',
      holding: true,
      mirror: false,
      upstreams: { new: [backend.url] },
    });
    const n = await startNode('late', { old: [backend.url] }, store, port);
    try {
      clock += 100;
      assert.deepEqual(await redriver.tick(1_000), ['late']);
      assert.equal(redriver.dueInMs(), Infinity);
      assert.equal(n.ingress.route(), 'new');
      assert.equal(n.ingress.holding(), false);
    } finally {
      await n.ingress.close();
      await backend.close();
    }
  });
});

describe('retries after a connection reset', () => {
  /** A backend that reads the request head, counts it, and resets the connection. */
  async function resettingBackend(): Promise<{ url: string; hits: () => number; close(): Promise<void> }> {
    let hits = 0;
    const server = net.createServer((socket) => {
      socket.once('data', () => {
        hits++;
        socket.resetAndDestroy();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      hits: () => hits,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  test('a DELETE or bodyless POST is not repeated on another backend; a GET is', async () => {
    const a = await resettingBackend();
    const b = await resettingBackend();
    const good = await startEchoBackend({ name: 'good' });
    const ingress = await startIngress({ upstreams: { old: [a.url, b.url] }, route: 'old' });
    try {
      for (const method of ['DELETE', 'POST'] as const) {
        const before = a.hits() + b.hits();
        const r = await request(`${ingress.url}/item/1`, { method });
        await r.body.text();
        assert.equal(r.statusCode, 502, method);
        assert.equal(a.hits() + b.hits() - before, 1, `${method} reached exactly one backend`);
      }
      ingress.setUpstreams('old', [a.url, good.url]);
      for (let i = 0; i < 2; i++) {
        const r = await request(`${ingress.url}/page/1`);
        await r.body.text();
        assert.equal(r.statusCode, 200, 'the GET went on to the next backend');
      }
    } finally {
      await ingress.close();
      await a.close();
      await b.close();
      await good.close();
    }
  });
});

describe('the new app', () => {
  test('one that never answers its health check is killed with its children, its pid known first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'imago-new-app-'));
    let spawned = 0;
    try {
      await assert.rejects(
        startDetachedApp({
          command: ['sh', '-c', 'sleep 60 & echo $! > child.pid; sleep 60'],
          env: {},
          cwd: dir,
          logDir: dir,
          timeoutMs: 300,
          onSpawn: (pid) => Promise.resolve(void (spawned = pid)),
        }),
      );
      assert.ok(spawned > 0, 'the pid was handed over before the health wait');
      const child = Number(readFileSync(join(dir, 'child.pid'), 'utf8').trim());
      for (const pid of [spawned, child])
        await waitUntil(`process ${pid} gone`, () => Promise.resolve(gone(pid) ? true : undefined), {
          timeoutMs: 5_000,
        });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("inherits an allow-list of Imago's environment plus the plan's, not its secrets", () => {
    const env = appEnvironment(
      { PATH: '/bin', LC_ALL: 'C', PGPASSWORD: 'secret', IMAGO_TOKEN: 't', HOME: '/h' },
      { DATABASE_URL: 'postgresql://x' },
    );
    assert.deepEqual(env, { PATH: '/bin', LC_ALL: 'C', HOME: '/h', DATABASE_URL: 'postgresql://x' });
  });
});

/** Gone or a zombie (exited, not yet reaped by its new parent). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

test("passwords containing '@' are masked whole", () => {
  assert.equal(redactUrl('postgresql://u:p@ss@h/db'), 'postgresql://u:***@h/db');
  assert.equal(redactText('url postgresql://u:p@s@s@h:5432/db end'), 'url postgresql://u:***@h:5432/db end');
  assert.equal(redactUrl('postgresql://u:plain@h/db'), 'postgresql://u:***@h/db');
});
