/**
 * How commands talk to people and machines: human lines go to stderr when --json is set, so that
 * stdout's last line is always one JSON object a script can parse.
 */
import { ImagoError } from '../errors.js';
import { redactText, redactValue } from '../redact.js';
import { teardownAll } from '../universe/teardown.js';

/** What a shell reports for a process that SIGPIPE ended (128 + 13): `yes | head` exits so. */
export const CLOSED_OUTPUT_EXIT_CODE = 141;

export interface Output {
  json: boolean;
  /** A progress or report line for people. */
  say(line: string): void;
  /** The command's result: one JSON line with --json, else nothing (the human report was said). */
  result(value: unknown): void;
}

export function output(json: boolean): Output {
  return {
    json,
    say: (line) => (json ? process.stderr : process.stdout).write(`${redactText(line)}\n`),
    result: (value) => {
      if (json) process.stdout.write(`${JSON.stringify(redactValue(value))}\n`);
    },
  };
}

/** Prints an error without a stack trace when it is the user's to fix; with one when it is ours. */
export function reportError(err: unknown, json: boolean): number {
  if (err instanceof ImagoError) {
    const lines = [`imago: ${err.message}`, `  at fault: ${err.subject}`];
    if (err.hint) lines.push(`  hint: ${err.hint}`);
    process.stderr.write(`${redactText(lines.join('\n'))}\n`);
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ error: redactText(err.message), subject: redactText(err.subject), hint: err.hint && redactText(err.hint) })}\n`,
      );
    }
    return 2;
  }
  process.stderr.write(
    `imago: internal error: ${redactText(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`,
  );
  if (json) process.stdout.write(`${JSON.stringify({ error: redactText(String(err)) })}\n`);
  return 1;
}

/**
 * A reader that goes away (`imago status | head`) ends the command the way it ends a Unix tool:
 * quietly, with the exit code of a process SIGPIPE ended. Node ignores SIGPIPE and reports the broken
 * pipe as an EPIPE error on the stream, which, unhandled, would crash with a stack trace. What the
 * command started (clusters, apps, a conversion) is stopped first, as on Ctrl-C.
 */
export function endQuietlyOnClosedOutput(): void {
  let ending = false;
  const onError = (err: NodeJS.ErrnoException): void => {
    // Once ending, later writes fail too (the stream is destroyed): nothing more to say.
    if (ending) return;
    if (err.code !== 'EPIPE') throw err;
    ending = true;
    void teardownAll().finally(() => process.exit(CLOSED_OUTPUT_EXIT_CODE));
  };
  process.stdout.on('error', onError);
  process.stderr.on('error', onError);
}
