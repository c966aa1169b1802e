/**
 * The runtime-test bench's placement of the two universes: the CPUs it plans for each, and pinning real
 * processes — a parent and the child it forked before the pin — read back from /proc.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { parsePlacement, pin, planPlacement } from '../src/bench/placement.js';
import { waitUntil } from '../src/deadline.js';

const allowed = (pid: number) =>
  /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];

test('placement: split unless asked to share; anything else is refused by name', () => {
  assert.equal(parsePlacement(undefined), 'split');
  assert.equal(parsePlacement('shared'), 'shared');
  assert.throws(() => parsePlacement('half'), /expected "split" or "shared", not half/);
  assert.deepEqual(planPlacement('shared'), { mode: 'shared' });
  const cpus = availableParallelism();
  const split = planPlacement('split');
  if (cpus < 2) assert.equal(split.mode, 'shared');
  else if (split.mode === 'split') {
    const half = Math.ceil(cpus / 2);
    assert.equal(split.oldCpus, half === 1 ? '0' : `0-${half - 1}`);
    assert.equal(split.newCpus, half === cpus - 1 ? String(half) : `${half}-${cpus - 1}`);
  } else assert.match(split.note ?? '', /taskset/);
});

test('placement: a pin covers the process, its threads and the children it already has', async (t) => {
  const placement = planPlacement('split');
  if (placement.mode !== 'split') return t.skip(placement.note ?? 'no split on this machine');
  // A shell that has forked a sleeping child before it is pinned.
  const parent = spawn('sh', ['-c', 'sleep 30 & wait'], { stdio: 'ignore' });
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
  pin([pid], placement.newCpus);
  assert.equal(allowed(pid), placement.newCpus);
  assert.equal(allowed(child), placement.newCpus);
  pin([child], placement.oldCpus);
  assert.equal(allowed(child), placement.oldCpus);
  assert.equal(allowed(pid), placement.newCpus, 'pinning the child leaves its parent where it was');
});
