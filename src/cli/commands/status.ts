import type { Command } from 'commander';
import { loadPlan } from '../../plan/index.js';
import { upgradeStatus } from '../../driver/index.js';
import { output, reportError } from '../output.js';
import { connectClient } from '../../database.js';
import type pg from 'pg';
import { findCapture } from '../../capture/orphans.js';
import { formatBytes } from '../../capture/wal-watch.js';
import { deferredTables } from '../../conversion/deferred-indexes.js';
import { existsSync } from 'node:fs';
import { loadReport, reportPath, summarize } from '../../runtime-test/index.js';

/** `query` on a database named by the plan; undefined for an embedded one (it exists only while its driver runs). */
async function onDatabase<T>(
  url: string,
  which: string,
  query: (c: pg.Client) => Promise<T>,
): Promise<T | undefined> {
  if (url === 'embedded') return undefined;
  const client = await connectClient(url, which);
  try {
    return await query(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** `imago status <file>`: phase, conversion progress and lag, gate, journal tail. */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('phase, progress, lag, late writes and the journal tail of an upgrade')
    .argument('<file>', 'the plan')
    .option('--json', 'end with one JSON line on stdout')
    .option('--tail <n>', 'journal events to show', '10')
    .action(async (file: string, opts: { json?: boolean; tail: string }) => {
      const out = output(Boolean(opts.json));
      try {
        const plan = await loadPlan(file);
        const s = await upgradeStatus(plan, Math.max(1, Number(opts.tail) || 10));
        out.say(
          `upgrade ${s.name}: ${s.phase}${s.driverRunning ? ' (driver running)' : ' (no driver running)'}`,
        );
        const conversion = s.figures?.conversion as Record<string, unknown> | undefined;
        const copy = s.figures?.copy as Record<string, unknown> | undefined;
        if (copy && !conversion)
          out.say(
            `  copy: ${String(copy.copiedRows)} of about ${String(copy.estimatedRows)} rows (now ${String(copy.table)})${copy.etaSeconds === undefined ? '' : `, about ${String(copy.etaSeconds)} s left`}`,
          );
        if (conversion)
          out.say(
            `  conversion: ${String(conversion.copiedRows)} rows copied, ${String(conversion.appliedTransactions)} transactions applied up to ${String(conversion.appliedLsn)}, apply lag ${String(conversion.lastApplyLagMs)} ms`,
          );
        if (s.lateWrites) out.say(`  late writes after the fence: ${s.lateWrites}`);
        const reportFile = reportPath(plan.stateDir, plan.name);
        const runtimeTest = existsSync(reportFile)
          ? summarize(loadReport(reportFile), plan.runtimeTest.gate)
          : undefined;
        if (runtimeTest) {
          out.say(`  ${runtimeTest.line} (imago report for the whole)`);
          for (const reason of runtimeTest.gate.reasons.slice(0, 5)) out.say(`    gate: ${reason}`);
        }
        // Imago's publications and slots on the old database.
        const capture = await onDatabase(plan.old.database, 'old', findCapture);
        for (const c of capture ?? []) {
          const wal =
            c.retainedWalBytes === undefined ? '' : `, holds ${formatBytes(c.retainedWalBytes)} of WAL`;
          const left = !c.active && !s.driverRunning ? ' — left over: `imago abort` drops it' : '';
          out.say(
            `  capture ${c.name}: publication ${c.publication}, slot ${c.slot ?? '(none)'} ${c.active ? 'streaming' : 'idle'}${wal}${left}`,
          );
        }
        // Target tables whose indexes an unfinished copy deferred: the new schema lacks them until the
        // copy runs again or the upgrade is aborted.
        const deferredIndexes = await onDatabase(plan.new.database, 'new', deferredTables);
        if (deferredIndexes?.length)
          out.say(
            `  new database: indexes of ${deferredIndexes.join(', ')} deferred by an unfinished copy — rebuilt when the copy runs again (\`imago start\`) or by \`imago abort\``,
          );
        for (const e of s.journal)
          out.say(`  ${e.at}  ${e.phase.padEnd(12)} ${e.event} ${JSON.stringify(e.detail)}`);
        out.result({
          ...s,
          ...(capture ? { capture } : {}),
          ...(deferredIndexes ? { deferredIndexes } : {}),
          ...(runtimeTest ? { runtimeTest } : {}),
        });
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}
