import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from '../../demo/wiki-demo.js';
import { output, reportError } from '../output.js';
import { count } from '../arguments.js';

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds ≥ 0');
  return n;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'upgrade the example wiki v1 → v2 online under live load, then verify every acknowledged write',
    )
    .option('--json', 'end with one JSON line on stdout (human lines go to stderr)')
    .option('--pages <n>', 'pages seeded in the old wiki', count, 2000)
    .option('--revisions <n>', 'revisions per seeded page', count, 5)
    .option('--rate <n>', 'requests per second of the live load', count, 200)
    .option('--workers <n>', 'concurrent clients of the live load', count, 16)
    .option('--stream-seconds <s>', 'load on the change stream before the switch', seconds, 4)
    .option('--after-switch-seconds <s>', 'load after the switch', seconds, 3)
    .option(
      '--min-compared <n>',
      'runtime test: reads compared per endpoint before the gate opens',
      count,
      30,
    )
    .option(
      '--gate-seconds <s>',
      'runtime test: longest wait for the gate before giving up the switch',
      seconds,
      60,
    )
    .option(
      '--old-url <url>',
      'use this PostgreSQL server for the old universe instead of an embedded cluster',
    )
    .option(
      '--new-url <url>',
      'use this PostgreSQL server for the new universe instead of an embedded cluster',
    )
    .action(async (opts) => {
      const out = output(Boolean(opts.json));
      try {
        const report = await runDemo({ ...opts, say: out.say });
        printReport(report, out.say);
        out.result(report);
        if (!report.switched || report.failed_requests > 0 || report.lost_writes > 0) process.exitCode = 1;
      } catch (err) {
        process.exitCode = reportError(err, out.json);
      }
    });
}

function printReport(r: Awaited<ReturnType<typeof runDemo>>, say: (line: string) => void): void {
  say('');
  say(`result: ${r.switched ? 'SWITCHED to wiki v2' : `NOT switched (${r.abort_reason ?? 'unknown'})`}`);
  say(
    `  switch pause        ${r.pause_ms} ms (drain ${r.drain_ms} ms, catch-up ${r.catch_up_ms} ms, ${r.held_requests} requests held)`,
  );
  say(
    `  requests            ${r.requests} (${r.served_by_old} by v1, ${r.served_by_new} by v2), ${r.failed_requests} failed`,
  );
  say(
    `  latency             p50 ${r.latency_p50_ms} ms, p99 ${r.latency_p99_ms} ms, max ${r.latency_max_ms} ms`,
  );
  say(`  acknowledged writes ${r.acknowledged_writes}, lost ${r.lost_writes}`);
  say(`  mixed versions      ${r.mixed_version_answers} old answers after a client saw the new version`);
  say(
    `  runtime test        ${r.compared_reads} reads compared with v1's answers, ${r.unexpected_mismatches} unexpected mismatches, ${r.noisy_reads} noisy; gate ${r.gate_passed ? 'passed' : 'closed'}`,
  );
  say(
    `  conversion          ${r.copied_rows} rows copied → ${r.converted_rows} rows, ${r.streamed_transactions} transactions streamed`,
  );
  say(`  duration            ${r.duration_s} s`);
  for (const f of r.failures ?? []) say(`  failure: ${f}`);
  for (const l of r.lost ?? []) say(`  lost: ${l}`);
}
