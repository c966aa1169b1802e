/**
 * The lines of a bench child's log that tell why it died: its first error block (a Node stack
 * trace's head, nginx's [error]/[alert]/[emerg]/[crit]), else its last lines — read as the driver
 * reads a new app's log that failed to start (src/universe/startup-error.ts), by the same rules.
 */
import { readFileSync } from 'node:fs';
import { firstErrorBlock, lastLines } from '../universe/startup-error.js';

const WIDTH = 200;

export function logExcerpt(path: string, count = 8): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return ['(no log was written)'];
  }
  if (text.trim() === '') return ['(the log is empty)'];
  const picked = firstErrorBlock(text) ?? lastLines(text, count);
  return picked.map((l) => (l.length > WIDTH ? `${l.slice(0, WIDTH)}…` : l));
}
