/**
 * What to show of an app that failed to start: the first error block of its log, not its last lines.
 * A Node app that throws at start ends its log with the stack's innermost frames and Node's version
 * banner; the message that says what went wrong is above them. Secrets are masked in what is shown
 * (connection passwords, and the passwords the app was handed).
 */
import { readFileSync } from 'node:fs';
import { ImagoError } from '../errors.js';
import { redactText } from '../redact.js';

/** Lines shown at most: the message and the top of its stack, not every frame. */
const MAX_LINES = 12;
/** A line that starts an error: `TypeError: …`, `Error [ERR_X]: …`, a logger's `ERROR …`, `fatal: …`. */
const ERROR_NAME = /^\s*(?:Uncaught\s+)?[A-Za-z_$][\w$.]*(?:Error|Exception)\b/;
// nginx's severities above [error] too, in their brackets (as words they are common English).
const ERROR_WORD = /\b(?:error|fatal|exception|panic|uncaught|unhandled)\b|\[(?:alert|emerg|crit)\]/i;
/** Node prints where it threw (`file:line`, the source line) above a caret line: code, not the error. */
const CARET = /^\s*\^+\s*$/;
const STACK_FRAME = /^\s+at\s/;
/** Colours from a logger (Nest, pino-pretty): matched and shown without them. */
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * The first error block of a log: the line that starts it and what belongs to it (stack frames,
 * indented detail such as `code: 'ECONNREFUSED'`, a closing brace, an error named on the next line),
 * up to a blank line or another unindented one.
 * Undefined when no line looks like an error.
 */
export function firstErrorBlock(log: string): string[] | undefined {
  const lines = log.replace(ANSI, '').split(/\r?\n/);
  const start = lines.findIndex(
    (line, i) =>
      !STACK_FRAME.test(line) &&
      // Node's excerpt of the throwing code: `file:line`, the source line, a caret line.
      !CARET.test(lines[i + 1] ?? '') &&
      !CARET.test(lines[i + 2] ?? '') &&
      (ERROR_NAME.test(line) || ERROR_WORD.test(line)),
  );
  if (start < 0) return undefined;
  const block = [lines[start] as string];
  for (const line of lines.slice(start + 1)) {
    // An error named right under a logger's line (`ERROR [ExceptionHandler] …` then
    // `PrismaClientInitializationError: …`) is the same error.
    if (line.trim() === '' || !(/^\s|^[}\]]/.test(line) || ERROR_NAME.test(line))) break;
    block.push(line);
  }
  return block.length > MAX_LINES ? [...block.slice(0, MAX_LINES), '    …'] : block;
}

/** The log's last lines, without Node's `Node.js v20.x` banner: when no line looks like an error. */
export function lastLines(log: string, count = 5): string[] {
  return log
    .replace(ANSI, '')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '' && !/^Node\.js v\d/.test(l))
    .slice(-count);
}

/** `text` with connection passwords, bearer tokens and each of `secrets` masked. */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let masked = text;
  // Longest first: a password containing another is masked whole.
  for (const s of [...secrets].filter((s) => s.length > 0).sort((a, b) => b.length - a.length))
    masked = masked.split(s).join('***');
  return redactText(masked);
}

/**
 * The error for an app that exited while starting, or did not become healthy in time: `reason`
 * (e.g. "the new app exited while starting (exit code 1)"), then the log's first error block (or
 * its last lines), and the log's path.
 */
export function startFailure(
  reason: string,
  logFile: string,
  secrets: readonly string[] = [],
  /** Where this start's output begins in the log (it may hold earlier starts' before). */
  fromByte = 0,
): ImagoError {
  let log = '';
  try {
    log = readFileSync(logFile).subarray(fromByte).toString('utf8');
  } catch {
    // No log (it was never written): the reason and the path are all there is to say.
  }
  const block = firstErrorBlock(log);
  const excerpt = block ?? lastLines(log);
  const heading = block ? 'its first error' : excerpt.length > 0 ? 'the end of its log' : 'its log is empty';
  const body = excerpt.map((l) => `    ${l}`).join('\n');
  return new ImagoError(
    maskSecrets(`${reason}; ${heading}${body ? `:\n${body}` : ''}\n  log: ${logFile}`, secrets),
    logFile,
    'fix what the error says (the app, or its settings in the plan), then run imago start again',
  );
}
