/**
 * The control endpoint's state file (issue 21): a refused transition leaves nothing in it, what it
 * holds is what the node applied, and a node whose file is unusable refuses to start naming the file
 * and the field. Before, `POST /v1/upstreams` with a `file://` URL answered 500 after saving it, and the
 * node then failed to start on every restart until the file was edited by hand.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ImagoError } from '../src/errors.js';
import {
  MemoryControlStore,
  startIngress,
  startIngressCluster,
  type ControlState,
  type Ingress,
  type IngressCluster,
} from '../src/ingress/index.js';
import { answeringUniverse, controlCall, twoUniverses } from './fixtures/ingress-control.js';

const token = 'control-state-token-0123456789';

function call(node: { control: { url: string } | undefined }, path: string, body?: unknown) {
  assert.ok(node.control);
  return controlCall(node.control.url, token, path, body);
}

const universe = (node: { url: string }): Promise<string> => answeringUniverse(node.url);

const fixture = twoUniverses('imago-control-state-');

const REFUSED: Array<{ url: string; says: RegExp }> = [
  { url: 'file:///etc/passwd', says: /'file:\/\/\/etc\/passwd' is not an http:\/\/ URL/ },
  { url: 'https://127.0.0.1:8443', says: /'https:\/\/127\.0\.0\.1:8443' is not an http:\/\/ URL/ },
  { url: 'not a url', says: /'not a url' is not a URL/ },
  {
    url: 'http://app:s3cret@127.0.0.1:3000',
    says: /'http:\/\/app:\*\*\*@127\.0\.0\.1:3000' carries credentials/,
  },
  { url: 'http://127.0.0.1:3000/?x=1', says: /has a query or fragment/ },
];

for (const kind of ['one process', 'a cluster'] as const) {
  describe(`refused upstreams on ${kind}`, () => {
    let node: Ingress | IngressCluster;
    let store: string;
    const start = (): Promise<Ingress | IngressCluster> => {
      const options = {
        upstreams: { old: [fixture.old.url] },
        route: 'old' as const,
        control: { token, store, nodeId: 'n1' },
      };
      return kind === 'one process' ? startIngress(options) : startIngressCluster({ ...options, workers: 1 });
    };
    before(async () => {
      store = join(fixture.dir, `${kind.replace(' ', '-')}.json`);
      node = await start();
      assert.equal(
        (await call(node, '/v1/upstreams', { epoch: 1, universe: 'new', urls: [fixture.new.url] })).status,
        200,
      );
    });
    after(async () => {
      await node.close();
    });

    test('are answered 400 naming the URL, and neither applied nor saved', async () => {
      const saved = await readFile(store, 'utf8');
      for (const { url, says } of REFUSED) {
        const r = await call(node, '/v1/upstreams', {
          epoch: 2,
          universe: 'new',
          urls: [fixture.new.url, url],
        });
        assert.equal(r.status, 400, `${url}: ${JSON.stringify(r.json)}`);
        assert.match(String(r.json.error), says);
        assert.doesNotMatch(JSON.stringify(r.json), /s3cret/);
        assert.equal(await readFile(store, 'utf8'), saved, `${url} reached the state file`);
        const state = await call(node, '/v1/state');
        assert.deepEqual((state.json.upstreams as { new: string[] }).new, [fixture.new.url]);
        assert.equal(state.json.epoch, 1, 'a refused transition does not move the epoch');
      }
      // The universe it would have changed still works, and the node restarts from its file.
      assert.equal((await call(node, '/v1/release', { epoch: 2, route: 'new' })).status, 200);
      assert.equal(await universe(node), 'new');
      await node.close();
      node = await start();
      assert.equal(node.route(), 'new');
      assert.equal(await universe(node), 'new');
      assert.deepEqual(await readdir(fixture.dir).then((f) => f.filter((n) => n.endsWith('.tmp'))), []);
    });

    test('the routed universe cannot be left without upstreams', async () => {
      const r = await call(node, '/v1/upstreams', { epoch: 3, universe: node.route(), urls: [] });
      assert.equal(r.status, 409, JSON.stringify(r.json));
      assert.match(String(r.json.error), /universe 'new' is the route/);
      assert.equal(await universe(node), 'new');
    });
  });
}

test('in process, setUpstreams refuses a bad URL whole: the universe keeps its backends', async () => {
  const node = await startIngress({ upstreams: { old: [fixture.old.url] }, route: 'old' });
  try {
    assert.throws(
      () => node.setUpstreams('old', [fixture.new.url, 'ftp://127.0.0.1/']),
      (err: unknown) => err instanceof ImagoError && err.subject === 'ftp://127.0.0.1/',
    );
    assert.deepEqual(
      node.stats().backends.old.map((b) => b.url),
      [fixture.old.url],
    );
    assert.equal(await universe(node), 'old');
  } finally {
    await node.close();
  }
});

test('a transition the node refuses to apply is not saved (mirror without a mirror)', async () => {
  const store = join(fixture.dir, 'mirror.json');
  const node = await startIngress({
    upstreams: { old: [fixture.old.url] },
    route: 'old',
    control: { token, store },
  });
  try {
    const r = await call(node, '/v1/mirror', { epoch: 1, enabled: true });
    assert.equal(r.status, 409, JSON.stringify(r.json));
    assert.match(String(r.json.error), /mirroring is not configured/);
    assert.equal(existsSync(store), false, 'the refused transition was saved');
    assert.equal((await call(node, '/v1/state')).json.epoch, 0);
  } finally {
    await node.close();
  }
});

test('the state is saved after the transition is applied, and a failed save is not acknowledged', async () => {
  // What the node does at the moment its state is saved (set once it has started).
  const watched: { holding: () => boolean } = { holding: () => false };
  const seen: Array<{ saved: boolean; applied: boolean }> = [];
  let failNext = false;
  class WatchedStore extends MemoryControlStore {
    override save(state: ControlState): Promise<void> {
      seen.push({ saved: state.holding, applied: watched.holding() });
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('disk full'));
      }
      return super.save(state);
    }
  }
  const store = new WatchedStore();
  const node = await startIngress({
    upstreams: { old: [fixture.old.url] },
    route: 'old',
    control: { token, store },
  });
  watched.holding = () => node.holding();
  try {
    failNext = true;
    const failed = await call(node, '/v1/hold', { epoch: 1 });
    assert.equal(failed.status, 500);
    assert.match(String(failed.json.error), /applied but not saved.*disk full/);
    // The driver retries the same epoch: applied again (idempotent) and saved this time.
    assert.equal((await call(node, '/v1/hold', { epoch: 1 })).status, 200);
    assert.deepEqual(seen, [
      { saved: true, applied: true },
      { saved: true, applied: true },
    ]);
    assert.equal((await store.load())?.holding, true);
  } finally {
    node.release();
    await node.close();
  }
});

describe('a node whose state file is unusable', () => {
  const cases: Array<{ name: string; text: string; says: RegExp }> = [
    {
      name: 'a refused upstream',
      text: JSON.stringify({
        epoch: 3,
        route: 'new',
        holding: false,
        mirror: false,
        upstreams: { new: ['file:///etc/passwd'] },
      }),
      says: /field upstreams\.new\[0\]: 'file:\/\/\/etc\/passwd' is not an http:\/\/ URL/,
    },
    {
      name: 'a route that is not a universe',
      text: JSON.stringify({ epoch: 3, route: 'sideways', holding: false, mirror: false }),
      says: /field route: /,
    },
    { name: 'not JSON', text: '{"epoch": 3,', says: /is not JSON/ },
  ];
  for (const c of cases) {
    test(`refuses to start, naming the file and the field: ${c.name}`, async () => {
      const store = join(fixture.dir, `bad-${c.name.replaceAll(' ', '-')}.json`);
      await writeFile(store, c.text);
      await assert.rejects(
        startIngress({ upstreams: { old: [fixture.old.url] }, route: 'old', control: { token, store } }),
        (err: unknown) => {
          assert.ok(err instanceof ImagoError, String(err));
          assert.ok(err.message.includes(store), err.message);
          assert.match(err.message, c.says);
          assert.ok(err.subject.includes(store), err.subject);
          assert.match(err.hint ?? '', /remove the file/);
          return true;
        },
      );
      assert.equal(await readFile(store, 'utf8'), c.text, 'the file is left for the operator');
    });
  }
});
