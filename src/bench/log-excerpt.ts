/**
 * The lines of a bench child's log that tell why it died: from the first line that reads like an error
 * (a Node stack trace's head, nginx's [error]/[alert]/[emerg]/[crit]), else its last lines.
 */
import { readFileSync } from 'node:fs';

const ERROR_LINE = /error|alert|emerg|crit|fatal|uncaught|exception|exited|killed|signal/i;
const WIDTH = 200;

export function logExcerpt(path: string, count = 8): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return ['(no log was written)'];
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return ['(the log is empty)'];
  const first = lines.findIndex((l) => ERROR_LINE.test(l));
  const picked = first >= 0 ? lines.slice(first, first + count) : lines.slice(-count);
  return picked.map((l) => (l.length > WIDTH ? `${l.slice(0, WIDTH)}…` : l));
}
