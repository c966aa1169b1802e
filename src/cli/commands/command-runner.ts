import type { Command } from 'commander';
import { loadPlan } from '../../plan/index.js';
import { sendCommand } from '../../driver/index.js';
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
