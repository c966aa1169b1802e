/**
 * The last phase of a switch decision (COMMIT → new, ABORT → old): every node releases its queue to
 * the decided universe. A decision is never taken back, so a node that does not answer is retried
 * until the deadline, then reported; the driver re-sends the decision on resume, with a newer epoch.
 */
import type { IngressNode } from './nodes.js';

export async function releaseAll(
  nodes: IngressNode[],
  epoch: number,
  route: 'old' | 'new',
  deadlineMs: number,
): Promise<{ released: number; unconfirmed: string[] }> {
  const end = performance.now() + deadlineMs;
  let released = 0;
  const unconfirmed: string[] = [];
  await Promise.all(
    nodes.map(async (node) => {
      for (let attempt = 0; ; attempt++) {
        const left = end - performance.now();
        try {
          const ack = await node.release(epoch, route, Math.max(1, Math.min(1_000, left)));
          released += ack.released ?? 0;
          return;
        } catch {
          if (end - performance.now() <= 0) {
            unconfirmed.push(node.name);
            return;
          }
          // Back off a little between attempts at a node that is restarting.
          await new Promise((resolve) =>
            setTimeout(resolve, Math.min(50 * 2 ** attempt, 500, Math.max(0, left))),
          );
        }
      }
    }),
  );
  return { released, unconfirmed };
}
