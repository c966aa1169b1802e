import type { Command } from 'commander';
import { registerDriverCommand } from './command-runner.js';

export function registerSwitch(program: Command): void {
  registerDriverCommand(
    program,
    'switch',
    'switch every ingress node to the new universe (two-phase, within the budget; aborts otherwise)',
  );
}
