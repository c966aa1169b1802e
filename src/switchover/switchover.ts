/**
 * The atomic switch at the ingress: hold new requests, drain the old universe's in-flight ones, wait
 * until the conversion has applied everything the old database committed (a fence marker written
 * after the drain), bring the new database's sequences past converted values, then flip and release
 * the held requests in arrival order. Any step past its deadline aborts: the held requests are
 * released to the old universe, which keeps serving as if nothing happened.
 *
 * Clients are served by the old version or the new one, never a mix: no request is dispatched while
 * the hold is on, and the flip happens only after the last old response has been received.
 */
import type { Ingress } from '../ingress/index.js';
import type { Converter } from '../conversion/converter.js';
import { errorMessage } from '../errors.js';

export interface SwitchBudget {
  /** Longest wait for in-flight requests at the old universe to finish. */
  drainMs: number;
  /** Longest wait for the change stream to apply everything up to the fence. */
  catchUpMs: number;
}

export interface SwitchResult {
  switched: boolean;
  /** Hold start → release: the longest extra wait a request saw. */
  pauseMs: number;
  drainMs: number;
  catchUpMs: number;
  heldRequests: number;
  /** Why it aborted. */
  reason?: string;
}

export const DEFAULT_BUDGET: SwitchBudget = { drainMs: 5000, catchUpMs: 5000 };

export async function switchover(
  ingress: Ingress,
  converter: Converter,
  budget: SwitchBudget = DEFAULT_BUDGET,
  log: (line: string) => void = () => {},
): Promise<SwitchResult> {
  const started = performance.now();
  let drainMs = 0;
  let catchUpMs = 0;
  ingress.hold();
  try {
    await ingress.drained('old', budget.drainMs);
    drainMs = performance.now() - started;
    const caughtUp = await converter.catchUp(budget.catchUpMs);
    catchUpMs = caughtUp.waitedMs;
    await converter.bringSequencesPast();
    const { released } = ingress.release('new');
    const pauseMs = performance.now() - started;
    log(
      `switched: paused ${pauseMs.toFixed(1)} ms (drain ${drainMs.toFixed(1)} ms, catch-up ${catchUpMs} ms), released ${released} held requests to the new universe`,
    );
    return { switched: true, pauseMs, drainMs, catchUpMs, heldRequests: released };
  } catch (err) {
    const { released } = ingress.release('old');
    const pauseMs = performance.now() - started;
    const reason = errorMessage(err);
    log(
      `switch aborted after ${pauseMs.toFixed(1)} ms: ${reason}; ${released} held requests released to the old universe`,
    );
    return { switched: false, pauseMs, drainMs, catchUpMs, heldRequests: released, reason };
  }
}
