/**
 * Consent for a command that removes things: on a terminal the user types the name of what is
 * removed (a y/N is answered by habit); elsewhere (a script, CI) only `--yes` consents, since nobody
 * can answer. Refused either way with nothing removed.
 */
import { createInterface } from 'node:readline/promises';
import { ImagoError } from '../errors.js';

export async function confirmByName(
  name: string,
  { yes, what }: { yes: boolean; what: string },
): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY)
    throw new ImagoError(
      `${what} needs a confirmation, and stdin is not a terminal to ask on`,
      '--yes',
      'run it again with --yes to confirm; nothing was removed',
    );
  // The question goes to stderr: with --json, stdout carries only the result.
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`type the upgrade name (${name}) to confirm: `)).trim();
    if (answer !== name)
      throw new ImagoError(
        `not confirmed: "${answer}" is not the upgrade name`,
        name,
        `type ${name} exactly, or pass --yes; nothing was removed`,
      );
  } finally {
    rl.close();
  }
}
