import type { Command } from 'commander';
import { loadPlan, type UpgradePlan } from '../../plan/index.js';
import { Driver, StartOver, provideDatabases, type StartOverPlan } from '../../driver/index.js';
import { ImagoError } from '../../errors.js';
import { confirmByName } from '../confirm.js';
import { output, reportError, type Output } from '../output.js';

interface StartOptions {
  json?: boolean;
  fresh?: boolean;
  yes?: boolean;
}

/** `imago start <file>`: runs the driver in the foreground until the upgrade is finished or aborted. */
export function registerStart(program: Command): void {
  program
    .command('start')
    .description(
      'run (or resume) the upgrade: provision, copy, stream, then wait for switch / abort / finish',
    )
    .argument('<file>', 'the plan')
    .option('--json', 'end with one JSON line on stdout')
    .option(
      '--fresh',
      'begin an aborted upgrade again: first remove what its attempt left (listed, then confirmed)',
    )
    .option('--yes', 'confirm --fresh without being asked (required when stdin is not a terminal)')
    .action(async (file: string, opts: StartOptions) => {
      const out = output(Boolean(opts.json));
      try {
        if (opts.yes && !opts.fresh)
          throw new ImagoError(
            '--yes confirms --fresh, which is not given',
            '--yes',
            'add --fresh, or drop --yes',
          );
        const plan = await loadPlan(file);
        const startedOver = opts.fresh ? await startOver(plan, file, Boolean(opts.yes), out) : undefined;
        const phase = await new Driver({
          plan,
          say: out.say,
          crashAfter: process.env.IMAGO_CRASH_AFTER,
          planFile: file,
        }).run();
        out.say(`upgrade ${plan.name}: ${phase}`);
        out.result({ name: plan.name, phase, ...(startedOver ? { startedOver } : {}) });
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}

/** --fresh: says what the aborted attempt left, asks, removes it; a never-started upgrade is left as is. */
async function startOver(plan: UpgradePlan, file: string, yes: boolean, out: Output): Promise<StartOverPlan> {
  const over = await StartOver.open(plan, await provideDatabases(plan, out.say), file);
  try {
    const { previous, removals } = over.plan;
    if (!previous) {
      out.say(`upgrade ${plan.name} has not started: --fresh has nothing to remove`);
      return over.plan;
    }
    out.say(`upgrade ${plan.name} was ${previous.phase} at ${previous.at}; starting over removes:`);
    for (const r of removals) out.say(`  ${r.database} database ${r.server}: ${r.what}`);
    out.say('  (the old database’s application data is not touched)');
    await confirmByName(plan.name, { yes, what: `starting ${plan.name} over` });
    await over.carryOut();
    out.say(`upgrade ${plan.name}: the aborted attempt is removed; starting over`);
    return over.plan;
  } finally {
    await over.close();
  }
}
