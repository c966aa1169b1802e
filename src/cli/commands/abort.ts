import type { Command } from 'commander';
import { registerDriverCommand } from './command-runner.js';

export function registerAbort(program: Command): void {
  registerDriverCommand(
    program,
    'abort',
    'give up the upgrade: drop the capture, stop the new app; the old universe keeps serving',
  );
}
