import type { Command } from 'commander';
import { loadPlan } from '../../plan/index.js';
import { dryRun, type DryRun } from '../../driver/index.js';
import { output, reportError } from '../output.js';

/** `imago plan <file>`: validates the plan, then a dry run (what will be created, copy estimate). */
export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('validate an upgrade plan and dry-run it: what would be created, estimated copy time')
    .argument('<file>', 'the plan (.ts with defineUpgrade, or .yaml)')
    .option('--json', 'end with one JSON line on stdout')
    .option('--no-dry-run', 'only validate the file')
    .action(async (file: string, opts: { json?: boolean; dryRun: boolean }) => {
      const out = output(Boolean(opts.json));
      try {
        const plan = await loadPlan(file);
        out.say(`plan ${plan.name}: valid`);
        if (!opts.dryRun) return out.result({ valid: true, name: plan.name });
        const run = await dryRun(plan);
        print(run, out.say);
        out.result({ valid: true, ...run });
        if (run.problems.length > 0) process.exitCode = 1;
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}

function print(run: DryRun, say: (line: string) => void): void {
  say('would create:');
  for (const [where, items] of Object.entries(run.creates))
    for (const item of items) say(`  ${where}: ${item}`);
  for (const t of run.tables)
    say(
      `  table ${t.table}: ~${t.rows} rows, ${(t.bytes / 1e6).toFixed(1)} MB; sample of ${t.sampled} at ${t.rowsPerSecond} rows/s${t.transformErrors ? ` (${t.transformErrors} transform errors without the new database's lookups)` : ''}`,
    );
  if (run.estimatedCopySeconds !== null)
    say(`estimated copy (read + transform): ${run.estimatedCopySeconds} s`);
  for (const n of run.nodes)
    say(
      `ingress ${n.name}: ${n.reachable ? `reachable, route ${n.route}, epoch ${n.epoch}` : `UNREACHABLE (${n.error})`}`,
    );
  say(
    `fencing: ${run.fencing.mode}${run.fencing.role ? ` of role ${run.fencing.role}` : ''}${run.fencing.ok ? '' : ` — ${run.fencing.error}`}`,
  );
  for (const w of run.warnings) say(`warning: ${w}`);
  for (const p of run.problems) say(`problem: ${p}`);
}
