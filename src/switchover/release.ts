/**
 * The last phase of a switch decision (COMMIT → new, ABORT → old): every node releases its queue to
 * the decided universe. A decision is never taken back, so a node that does not answer is retried
 * until the deadline, then reported; the running driver keeps re-sending it to such nodes (Redriver,
 * below) until they confirm, and a resumed driver re-sends it with a newer epoch.
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

/**
 * Nodes that did not confirm a decision: re-sent it with a growing interval until each confirms, so a
 * node that was unreachable at the switch does not hold (and answer 503) until a driver restart. A
 * node that answers with the decided route and no hold counts as confirmed; one at a higher epoch
 * (restarted from its store, or realigned meanwhile) gets the decision at its own epoch.
 */
export class Redriver {
  private pending: IngressNode[] = [];
  private attempts = 0;
  private nextAt = 0;
  route: 'old' | 'new' = 'old';
  epoch = 0;

  constructor(private readonly opts: { baseMs?: number; capMs?: number; now?: () => number } = {}) {}

  /** Replaces what is pending with `decision` for `nodes` (those still unconfirmed). */
  set(nodes: IngressNode[], route: 'old' | 'new', epoch: number): void {
    this.pending = [...nodes];
    this.route = route;
    this.epoch = epoch;
    this.attempts = 0;
    this.nextAt = this.now();
  }

  get unconfirmed(): string[] {
    return this.pending.map((n) => n.name);
  }

  /** Milliseconds until the next attempt is due (Infinity when nothing is pending). */
  dueInMs(): number {
    return this.pending.length === 0 ? Infinity : Math.max(0, this.nextAt - this.now());
  }

  /** Re-sends the decision to the pending nodes if due; returns the nodes that confirmed now. */
  async tick(timeoutMs = 2_000): Promise<string[]> {
    if (this.dueInMs() > 0) return [];
    const confirmed: IngressNode[] = [];
    await Promise.all(
      this.pending.map(async (node) => {
        try {
          const s = await node.state(timeoutMs);
          if (s.route === this.route && !s.holding && s.epoch >= this.epoch) {
            confirmed.push(node);
            return;
          }
          await node.release(Math.max(this.epoch, s.epoch), this.route, timeoutMs);
          confirmed.push(node);
        } catch {
          // still unreachable (or refusing): tried again later
        }
      }),
    );
    this.pending = this.pending.filter((n) => !confirmed.includes(n));
    this.attempts++;
    const base = this.opts.baseMs ?? 500;
    const cap = this.opts.capMs ?? 30_000;
    this.nextAt = this.now() + Math.min(cap, base * 2 ** (this.attempts - 1));
    return confirmed.map((n) => n.name);
  }

  private now(): number {
    return (this.opts.now ?? performance.now.bind(performance))();
  }
}
