import { DeadlineError } from './errors.js';

/**
 * Polls `check` until it returns a value other than undefined, or throws DeadlineError.
 * Used where the thing waited for has no event to listen to (a server accepting connections).
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs, intervalMs = 25, hint }: { timeoutMs: number; intervalMs?: number; hint?: string },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new DeadlineError(what, timeoutMs, hint);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Rejects with DeadlineError if `promise` has not settled within `timeoutMs`. */
export async function withDeadline<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs: number,
  hint?: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(what, timeoutMs, hint)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Like Promise.all, but returns (or throws the first failure) only once every promise has settled. */
export async function settleAll(promises: Iterable<Promise<unknown>>): Promise<void> {
  for (const result of await Promise.allSettled(promises))
    if (result.status === 'rejected') throw result.reason;
}
