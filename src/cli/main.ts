/**
 * The `imago` command line. Each command lives in its own file under commands/ and registers itself
 * on the program; this file only assembles them and turns errors into exit codes.
 */
import { Command } from 'commander';
import { registerDemo } from './commands/demo.js';
import { registerBench } from './commands/bench.js';
import { registerConvert } from './commands/convert.js';

const program = new Command()
  .name('imago')
  .description(
    'Online upgrades of an HTTP service on PostgreSQL: parallel universe, change-stream conversion, atomic switchover.',
  )
  .showHelpAfterError();

registerDemo(program);
registerBench(program);
registerConvert(program);

await program.parseAsync(process.argv);
