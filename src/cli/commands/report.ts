import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ImagoError } from '../../errors.js';
import { loadPlan } from '../../plan/index.js';
import {
  Redactor,
  loadReport,
  redactReport,
  redactorFor,
  renderReport,
  reportPath,
  summarize,
  type GateCriteria,
} from '../../runtime-test/index.js';
import { output, reportError } from '../output.js';

/** `imago report <plan>`: the runtime test's whole report (endpoints, noise, mismatches, samples, gate). */
export function registerReport(program: Command): void {
  program
    .command('report')
    .description(
      'the runtime test report: per endpoint compared/mismatched/noisy/errors, latency, sample diffs, gate',
    )
    .argument('[plan]', 'the plan (the report is read from its stateDir)')
    .option('--file <path>', 'read this report file instead of the plan’s')
    .option('--json', 'end with one JSON line on stdout: the report and the gate verdict')
    .action(async (planFile: string | undefined, opts: { json?: boolean; file?: string }) => {
      const out = output(Boolean(opts.json));
      try {
        let file = opts.file;
        let criteria: GateCriteria | undefined;
        let redactor = new Redactor();
        if (file === undefined) {
          if (planFile === undefined)
            throw new ImagoError(
              'no plan and no --file given',
              'imago report',
              'imago report <plan> or --file <path>',
            );
          const plan = await loadPlan(planFile);
          file = reportPath(plan.stateDir, plan.name);
          criteria = plan.runtimeTest.gate;
          redactor = redactorFor(plan.runtimeTest);
        }
        if (!existsSync(file))
          throw new ImagoError(
            'no runtime test report yet',
            file,
            'the driver writes it while mirroring runs (imago start); check the plan’s stateDir',
          );
        // Masked again as the plan says now: the file may be from a version that masked less.
        const report = redactReport(loadReport(file), redactor);
        for (const line of renderReport(report, criteria)) out.say(line);
        out.result({ ...report, gate: summarize(report, criteria).gate });
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}
