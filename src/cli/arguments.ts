/** Parsers of command-line option values shared by the commands (commander reports what they throw). */
import { InvalidArgumentError } from 'commander';

/** A count: a whole number of at least 1. */
export function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}
