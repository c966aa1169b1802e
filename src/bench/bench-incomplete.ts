/**
 * A benchmark that could not finish (a process under test died, its load generator failed): what
 * stopped it, as an ImagoError, with the figures measured until then, which `imago bench` still prints.
 */
import { ImagoError } from '../errors.js';

export class BenchIncomplete extends ImagoError {
  constructor(
    message: string,
    subject: string,
    hint: string,
    readonly figures: Record<string, unknown>,
  ) {
    super(message, subject, hint);
    this.name = 'BenchIncomplete';
  }
}
