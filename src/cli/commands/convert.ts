/**
 * `imago convert`: the conversion process on its own — capture, bulk copy, then the change stream —
 * until stopped. Stopped or killed at any point, the same command resumes: from the checkpoint once
 * the copy is done, or by starting the copy over if it was interrupted.
 */
import type { Command } from 'commander';
import { Converter } from '../../conversion/converter.js';
import { loadConversion } from '../../conversion/load-module.js';
import { onTeardown } from '../../universe/teardown.js';
import { output, reportError } from '../output.js';

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('run the conversion pipeline (old → new database) until stopped; resumes where it stopped')
    .requiredOption('--old-url <url>', 'connection string of the old database (wal_level=logical)')
    .requiredOption('--new-url <url>', 'connection string of the new database (schema already created)')
    .requiredOption('--conversion <module>', 'the conversion module (default export of defineConversion)')
    .option('--name <name>', 'names the slot, publication and checkpoint', 'imago')
    .option(
      '--replica-identity-full <tables>',
      'comma-separated tables Imago may set to REPLICA IDENTITY FULL',
    )
    .option('--drop-capture-on-exit', 'drop the slot and publication when stopped (no resume)')
    .option('--json', 'progress as JSON lines on stdout')
    .action(async (opts) => {
      const out = output(Boolean(opts.json));
      const event = (kind: string, data: Record<string, unknown>) =>
        out.json ? out.result({ event: kind, ...data }) : out.say(`${kind} ${JSON.stringify(data)}`);
      let converter: Converter | undefined;
      try {
        converter = new Converter({
          sourceUrl: opts.oldUrl,
          targetUrl: opts.newUrl,
          conversion: await loadConversion(opts.conversion),
          name: opts.name,
          replicaIdentityFull: opts.replicaIdentityFull?.split(',').filter(Boolean),
          // WAL held past its threshold, a copy run again, statistics not gathered: the user's to see.
          onWarning: (message) =>
            out.json ? out.result({ event: 'warning', message }) : out.say(`warning: ${message}`),
        });
        const running = converter;
        onTeardown('conversion', () => running.stop({ dropCapture: Boolean(opts.dropCaptureOnExit) }));
        const { resumed } = await converter.prepare((line) => event('note', { message: line }));
        event('prepared', { resumed });
        const copied = await converter.copy((p) => event('copy', { ...p }));
        event('copied', { ...copied });
        const failure = new Promise<unknown>((resolve) => {
          running.startStreaming(resolve).then(() => event('streaming', {}), resolve);
        });
        const err = await failure;
        throw err;
      } catch (err) {
        await converter?.stop().catch(() => {});
        process.exitCode = reportError(err, out.json);
      }
    });
}
