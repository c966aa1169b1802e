/**
 * The runtime-test bench's placement of the two universes: the halves it plans from the CPUs it may
 * use, and pinning real processes — a parent, the child it forked before the pin, a node process's
 * threads — read back from /proc, in the bench's order (old side first, then the rest of the tree).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { cpuList, parseCpuList, parsePlacement, pin, planPlacement } from '../src/bench/placement.js';
import { waitUntil } from '../src/deadline.js';

const allowed = (pid: number, task = pid) =>
  /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'))?.[1];

test('placement: split unless asked to share; anything else is refused by name', () => {
  assert.equal(parsePlacement(undefined), 'split');
  assert.equal(parsePlacement('shared'), 'shared');
  assert.throws(() => parsePlacement('half'), /expected "split" or "shared", not half/);
  assert.deepEqual(planPlacement('shared'), { mode: 'shared' });
  assert.deepEqual(planPlacement('split', [3]), { mode: 'shared', note: 'one CPU: nothing to split' });
});

test('placement: the CPUs allowed, not 0…n-1, in two halves', (t) => {
  assert.deepEqual(parseCpuList('0-2,5,7-8'), [0, 1, 2, 5, 7, 8]);
  assert.equal(cpuList([0, 1, 2, 5, 7, 8]), '0-2,5,7-8');
  const halves = (cpus: number[]) => {
    const p = planPlacement('split', cpus);
    return p.mode === 'split' ? [p.oldCpus, p.newCpus] : p.note;
  };
  if (planPlacement('split', [0, 1]).mode !== 'split') return t.skip('taskset not found');
  assert.deepEqual(halves([0, 1]), ['0', '1']);
  assert.deepEqual(halves([0, 1, 2]), ['0-1', '2']);
  assert.deepEqual(halves([4, 5, 6, 7]), ['4-5', '6-7']);
  assert.deepEqual(halves([1, 3, 5, 7]), ['1,3', '5,7']);
});

test('placement: a pin covers the process, its threads and its children, but not subtrees pinned apart', async (t) => {
  const placement = planPlacement('split');
  if (placement.mode !== 'split') return t.skip(placement.note ?? 'no split on this machine');
  if (!existsSync(`/proc/${process.pid}/task/${process.pid}/children`))
    return t.skip('this kernel does not list children in /proc');
  // A shell that has forked a node child (several threads) before anything is pinned.
  const parent = spawn('sh', ['-c', `${process.execPath} -e 'setTimeout(() => {}, 30000)' & wait`], {
    stdio: 'ignore',
  });
  t.after(() => void parent.kill('SIGKILL'));
  const pid = parent.pid ?? 0;
  const child = await waitUntil(
    'the shell to fork its child',
    async () => {
      const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
      return children ? Number(children.split(' ')[0]) : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 10 },
  );
  t.after(() => void process.kill(child, 'SIGKILL'));
  // Node starts its threads (V8 platform, libuv) at once; wait until there are several.
  await waitUntil(
    'the child to start its threads',
    async () => (readdirSync(`/proc/${child}/task`).length > 1 ? true : undefined),
    { timeoutMs: 5_000, intervalMs: 10 },
  );
  // The bench's order: the subtree first, then the tree around it.
  pin([child], placement.oldCpus);
  pin([pid], placement.newCpus, [child]);
  assert.equal(allowed(pid), placement.newCpus);
  for (const task of readdirSync(`/proc/${child}/task`))
    assert.equal(allowed(child, Number(task)), placement.oldCpus, `thread ${task} of the child`);
  // Without the exception the tree's pin reaches the child too.
  pin([pid], placement.newCpus);
  assert.equal(allowed(child), placement.newCpus);
  // A process that has ended is not an error.
  const ended = spawn('true');
  await new Promise((resolve) => ended.once('exit', resolve));
  assert.doesNotThrow(() => pin([ended.pid ?? 0], placement.oldCpus));
});
