import type { Command } from 'commander';
import { loadPlan, type UpgradePlan } from '../../plan/index.js';
import { Driver, NoDriverError, sendCommand } from '../../driver/index.js';
import { output, reportError } from '../output.js';

/** `switch`, `abort` and `finish` are all "ask the running driver and follow the journal". */
export function registerDriverCommand(
  program: Command,
  name: 'switch' | 'abort' | 'finish',
  description: string,
): void {
  const command = program
    .command(name)
    .description(description)
    .argument('<file>', 'the plan')
    .option('--json', 'end with one JSON line on stdout')
    .option('--timeout <s>', 'how long to wait for the driver', '120');
  if (name === 'switch')
    command.option('--force', 'switch although the runtime-test gate is closed (journaled with its reasons)');
  command.action(async (file: string, opts: { json?: boolean; timeout: string; force?: boolean }) => {
    const out = output(Boolean(opts.json));
    try {
      const plan = await loadPlan(file);
      const result = await sendCommand(plan, name, {
        timeoutMs: Math.max(1, Number(opts.timeout) || 120) * 1000,
        ...(opts.force ? { args: { force: true } } : {}),
        onEvent: (e) => out.say(`  ${e.phase.padEnd(12)} ${e.event}`),
      }).catch((err: unknown) => {
        // Nothing to ask: an abort is carried out here, from the journal (a crashed driver's leftovers).
        if (name === 'abort' && err instanceof NoDriverError) return abortWithoutDriver(plan, out.say);
        throw err;
      });
      out.say(
        result.ok
          ? `${name}: done (${String(result.phase)})`
          : `${name}: refused: ${String(result.error ?? result.reason)}`,
      );
      if (result.reason) out.say(`  reason: ${String(result.reason)}`);
      if (result.hint) out.say(`  hint: ${String(result.hint)}`);
      out.result(result);
      if (!result.ok || result.switched === false) process.exitCode = 1;
    } catch (err) {
      process.exitCode = reportError(err, out.json);
    }
  });
}

/** `imago abort` with no driver running: this process takes the journal's lock and aborts. */
async function abortWithoutDriver(
  plan: UpgradePlan,
  say: (line: string) => void,
): Promise<Record<string, unknown>> {
  say(`no driver is running upgrade ${plan.name}: aborting it from its journal`);
  const phase = await new Driver({ plan, say, abort: 'imago abort (no driver running)' }).run();
  if (phase === 'aborted') return { ok: true, aborted: true, phase };
  return { ok: false, phase, reason: `the upgrade is already ${phase}` };
}
