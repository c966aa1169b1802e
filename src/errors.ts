/**
 * Errors a user can cause (a bad plan, an unreachable database, a transform that throws).
 * They carry the thing at fault and a hint, and the CLI prints them without a stack trace.
 */
export class ImagoError extends Error {
  constructor(
    message: string,
    /** What is at fault: a file, a table and key, a URL (passwords redacted). */
    readonly subject: string,
    /** What the user can do about it. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ImagoError';
  }
}

/** A deadline passed while waiting for something that should have happened. */
export class DeadlineError extends ImagoError {
  constructor(what: string, ms: number, hint?: string) {
    super(`${what} did not happen within ${ms} ms`, what, hint);
    this.name = 'DeadlineError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The hint for a user module (plan, conversion) that failed to import: a .ts file outside an ESM
 * package is loaded as CommonJS, and requiring Imago's ES modules from it fails in a confusing way.
 */
export function moduleLoadHint(err: unknown, fallback: string): string {
  return /require\(\) (of )?ES Module|ERR_REQUIRE_(ESM|CYCLE)/i.test(errorMessage(err))
    ? 'the file is loaded as CommonJS: name it .mts, or put "type": "module" in the package.json next to it'
    : fallback;
}
