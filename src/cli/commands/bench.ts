import type { Command } from 'commander';
import { ImagoError } from '../../errors.js';
import { BenchIncomplete } from '../../bench/bench-incomplete.js';
import { scenarios } from '../../bench/scenarios.js';
import { redactText } from '../../redact.js';
import { output, reportError } from '../output.js';
import { count } from '../arguments.js';

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      `run a benchmark scenario against its reference (${Object.keys(scenarios).join(', ') || 'none yet'})`,
    )
    .argument('<scenario>', 'which benchmark')
    .option('--json', 'end with one JSON line on stdout')
    .option('--repetitions <n>', 'alternating repetitions per target (medians are reported)', count)
    .option('--duration <s>', 'seconds per measurement')
    .option('--trials <n>', 'trials (switchover)')
    .option('--workers <n>', 'proxy: ingress worker processes (default: one per core)')
    .option('--rate <n>', 'switchover: requests per second of the load (default 400)')
    .option('--pages <n>', 'switchover: pages seeded in the old wiki (default 300)')
    .option('--rows <n>', 'convert: rows of the bulk-copy table (default 200000)')
    .option(
      '--bulk-repetitions <n>',
      'convert: bulk-copy repetitions after one warm-up round (default 7; --repetitions counts the catch-up ones)',
      count,
    )
    .option(
      '--lineage <how>',
      'convert: "keyed" (default: read from the target rows, which carry the source key) or "stored" (a lineage row per source row)',
    )
    .option(
      '--small-transactions <n>',
      'convert: single-row transactions in the small backlog (default 200000)',
    )
    .option('--sample-rate <x>', 'runtime-test: share of reads mirrored (default: the wiki plan’s)')
    .option(
      '--max-compared-per-second <n>',
      'runtime-test: reads compared per endpoint and second, "none" for no limit (default: the wiki plan’s)',
    )
    .option(
      '--calibration-rate <x>',
      'runtime-test: share of matching reads noise-sampled (default: the wiki plan’s)',
    )
    .option(
      '--placement <mode>',
      'runtime-test: "split" the CPUs between old and new universe (default with 2 or more CPUs and taskset) or "shared"',
    )
    .allowUnknownOption(false)
    .action(async (name: string, opts: Record<string, string | boolean | undefined>) => {
      const out = output(Boolean(opts.json));
      try {
        const load = scenarios[name];
        if (!load) {
          throw new ImagoError(
            `unknown benchmark scenario "${name}"`,
            name,
            `choose one of: ${Object.keys(scenarios).join(', ')}`,
          );
        }
        const scenario = await load();
        const result = await scenario.run({ out, options: opts });
        out.result(result);
      } catch (err) {
        if (err instanceof BenchIncomplete && out.json) {
          // One JSON line still: the figures measured until it stopped, and what stopped it.
          process.exitCode = reportError(err, false);
          out.result({
            ...err.figures,
            error: redactText(err.message),
            subject: redactText(err.subject),
            hint: err.hint,
          });
        } else process.exitCode = reportError(err, out.json);
      }
    });
}
