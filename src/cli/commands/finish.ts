import type { Command } from 'commander';
import { registerDriverCommand } from './command-runner.js';

export function registerFinish(program: Command): void {
  registerDriverCommand(
    program,
    'finish',
    'after the switch: stop the change stream and drop the capture on the old database',
  );
}
