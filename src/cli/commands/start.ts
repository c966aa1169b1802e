import type { Command } from 'commander';
import { loadPlan } from '../../plan/index.js';
import { Driver } from '../../driver/index.js';
import { output, reportError } from '../output.js';

/** `imago start <file>`: runs the driver in the foreground until the upgrade is finished or aborted. */
export function registerStart(program: Command): void {
  program
    .command('start')
    .description(
      'run (or resume) the upgrade: provision, copy, stream, then wait for switch / abort / finish',
    )
    .argument('<file>', 'the plan')
    .option('--json', 'end with one JSON line on stdout')
    .action(async (file: string, opts: { json?: boolean }) => {
      const out = output(Boolean(opts.json));
      try {
        const plan = await loadPlan(file);
        const phase = await new Driver({
          plan,
          say: out.say,
          crashAfter: process.env.IMAGO_CRASH_AFTER,
        }).run();
        out.say(`upgrade ${plan.name}: ${phase}`);
        out.result({ name: plan.name, phase });
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}
