/**
 * The `imago` command line. Each command lives in its own file under commands/ and registers itself
 * on the program; this file only assembles them and turns errors into exit codes.
 */
import { Command } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { registerDemo } from './commands/demo.js';
import { registerBench } from './commands/bench.js';
import { registerPlan } from './commands/plan.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';
import { registerSwitch } from './commands/switch.js';
import { registerAbort } from './commands/abort.js';
import { registerFinish } from './commands/finish.js';
import { registerConvert } from './commands/convert.js';
import { registerReport } from './commands/report.js';
import { registerIngress } from './commands/ingress.js';
import { endQuietlyOnClosedOutput } from './output.js';

endQuietlyOnClosedOutput();

const program = new Command()
  .name('imago')
  .description(
    'Online upgrades of an HTTP service on PostgreSQL: parallel universe, change-stream conversion, atomic switchover.',
  )
  .version(pkg.version, '-V, --version', 'print the version of Imago')
  .showHelpAfterError();

registerDemo(program);
registerBench(program);
registerPlan(program);
registerStart(program);
registerStatus(program);
registerSwitch(program);
registerAbort(program);
registerFinish(program);
registerConvert(program);
registerReport(program);
registerIngress(program);

await program.parseAsync(process.argv);
