/**
 * Entry of one ingress worker process (forked by cluster.ts through node:cluster). It runs an ordinary
 * single-process ingress that serves the connections its primary accepts and hands it, and applies, in the order they arrive, the
 * transitions its primary sends (hold, release, upstreams), acknowledging each only after it has been
 * applied: the primary acknowledges a transition only when every worker has. The hold queue and the
 * in-flight counts live here, per worker; the primary aggregates them.
 */
import { Socket } from 'node:net';
import type { Ingress } from './index.js';
import { startIngress } from './index.js';
import type { PrimaryMessage, WorkerMessage, WorkerReply } from './cluster-protocol.js';

let ingress: Ingress | undefined;
/** Asked to close: connections still handed to it are refused (the primary gives them to another). */
let closing = false;
let markStarted!: () => void;
/** Commands that arrive while the ingress is starting wait for it, in arrival order. */
const started = new Promise<void>((resolve) => (markStarted = resolve));

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

async function answer(id: number, run: () => unknown): Promise<void> {
  let reply: WorkerReply;
  try {
    await started;
    reply = { t: 'reply', id, ok: true, value: await run() };
  } catch (err) {
    reply = { t: 'reply', id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  send(reply);
}

function need(): Ingress {
  if (!ingress) throw new Error('ingress worker not started yet');
  return ingress;
}

process.on('message', (msg: PrimaryMessage, handle: unknown) => {
  switch (msg.t) {
    case 'connection':
      // Acknowledged before anything is read from it: the primary closes its copy on `adopted`, and
      // hands a refused one to another worker.
      if (ingress && !closing && handle instanceof Socket) {
        send({ t: 'adopted', id: msg.id });
        ingress.adopt(handle);
      } else {
        send({ t: 'refused', id: msg.id });
        if (handle instanceof Socket) handle.destroy();
      }
      return;
    case 'init':
      // The primary accepts; this worker serves what it is handed (connection-dispatch.ts).
      void startIngress({ ...msg.options, workers: 1 }, false).then(
        async (i) => {
          if (msg.mirror) await i.mirror(msg.mirror.enabled, msg.mirror.sink);
          ingress = i;
          markStarted();
          send({ t: 'ready', port: i.port });
        },
        (err: unknown) => {
          send({ t: 'failed', error: err instanceof Error ? err.message : String(err) });
          process.exit(1);
        },
      );
      return;
    case 'hold':
      void answer(msg.id, () => need().hold());
      return;
    case 'release':
      void answer(msg.id, () => need().release(msg.route));
      return;
    case 'mirror':
      void answer(msg.id, () => need().mirror(msg.enabled, msg.sink));
      return;
    case 'upstreams':
      void answer(msg.id, () => need().setUpstreams(msg.universe, msg.urls));
      return;
    case 'drained':
      void answer(msg.id, () => need().drained(msg.universe, msg.timeoutMs));
      return;
    case 'stats':
      void answer(msg.id, () => {
        const i = need();
        return {
          pid: process.pid,
          ...i.stats(),
          inFlight: { old: i.inFlight('old'), new: i.inFlight('new') },
          route: i.route(),
          holding: i.holding(),
        };
      });
      return;
    case 'metrics':
      void answer(msg.id, () => need().metricsJson());
      return;
    case 'close':
      closing = true;
      void answer(msg.id, async () => {
        await ingress?.close();
      }).then(() => process.disconnect());
      return;
  }
});

// The primary going away (crash, kill) takes the workers with it rather than leaving them serving a
// route nobody controls any more.
process.on('disconnect', () => {
  void (ingress?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});

send({ t: 'hello' });
