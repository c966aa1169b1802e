/**
 * Lets the demo's live load run for a while (a phase of the scenario, not a synchronisation), and
 * returns early if `failure()` reports something.
 */
export async function settle(ms: number, failure: () => unknown): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end && failure() === undefined) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(100, Math.max(0, end - performance.now()))));
  }
}
