// End to end, nothing mocked: real clusters, real logical replication, real HTTP, real processes.
// The demo at a small scale must pass its runtime test with no unexpected mismatch, then switch with
// no failed request, no lost write and no mixed answers;
// Ctrl-C in the middle of an upgrade must leave no process behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { runDemo } from '../src/demo/wiki-demo.js';
import { withDeadline } from '../src/deadline.js';

test('the wiki upgrades online under load: switched, nothing failed, nothing lost, never a mix', async () => {
  const lines: string[] = [];
  const report = await runDemo({
    pages: 300,
    revisions: 3,
    rate: 120,
    workers: 8,
    streamSeconds: 1.5,
    afterSwitchSeconds: 1.5,
    say: (line) => lines.push(line),
  });
  assert.equal(report.switched, true, `${report.abort_reason}\n${lines.join('\n')}`);
  assert.equal(report.failed_requests, 0, (report.failures ?? []).join('\n'));
  assert.equal(report.lost_writes, 0, (report.lost ?? []).join('\n'));
  assert.equal(report.mixed_version_answers, 0);
  assert.ok(report.acknowledged_writes > 20, `only ${report.acknowledged_writes} writes acknowledged`);
  assert.ok(report.served_by_old > 0 && report.served_by_new > 0, 'both versions served part of the load');
  assert.ok(report.converted_rows > 300 * 3, `converted ${report.converted_rows} rows`);
  assert.ok(report.streamed_transactions > 0, 'changes arrived through the stream');
  assert.equal(report.gate_passed, true, 'the runtime test let the switch happen');
  assert.ok(report.compared_reads >= 3 * 30, `compared ${report.compared_reads} reads`);
  assert.equal(report.unexpected_mismatches, 0, 'v2 answers as v1 does, edits running meanwhile');
});

function descendants(pid: number): number[] {
  const table = execFileSync('ps', ['-eo', 'pid=,ppid=,stat=']).toString().trim().split('\n');
  const rows = table
    .map((l) => l.trim().split(/\s+/))
    .map(([p, pp, s]) => ({ pid: Number(p), ppid: Number(pp), zombie: s?.startsWith('Z') }));
  const found: number[] = [];
  const walk = (parent: number) => {
    for (const r of rows) {
      if (r.ppid !== parent || r.zombie) continue;
      found.push(r.pid);
      walk(r.pid);
    }
  };
  walk(pid);
  return found;
}

function alive(pid: number): boolean {
  try {
    const stat = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)])
      .toString()
      .trim();
    return stat !== '' && !stat.startsWith('Z');
  } catch {
    return false;
  }
}

test('Ctrl-C during the upgrade stops every process the demo started', async () => {
  const cli = spawn(process.execPath, ['bin/imago.js', 'demo', '--pages', '100', '--stream-seconds', '30'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
  const streaming = new Promise<void>((resolve) => {
    createInterface({ input: cli.stdout }).on('line', (line) => {
      if (line.startsWith('streaming changes')) resolve();
    });
  });
  await withDeadline('demo reaching the streaming phase', streaming, 60_000);
  const started = descendants(cli.pid ?? 0);
  assert.ok(started.length >= 4, `expected clusters and apps among ${started.length} processes`);
  cli.kill('SIGINT');
  const code = await withDeadline('demo exiting after SIGINT', exited, 30_000);
  assert.equal(code, 130);
  assert.deepEqual(started.filter(alive), []);
});
