/**
 * The wiki workload in its own process, driven over IPC by a benchmark: clients measured from the
 * process that also runs the ingress and the comparator would count that process's event-loop
 * delays as client latency. Each `phase` message runs the load for a while and answers with what the
 * clients saw.
 */
import { startLoad } from './load.js';
import { VERSION_HEADER, wikiOperations } from '../../examples/wiki/workload.js';

export interface PhaseRequest {
  url: string;
  rate: number;
  workers: number;
  seconds: number;
  pages: number;
  runId: string;
}

export interface PhaseResult {
  latencies: number[];
  /** When each request was sent (epoch ms, same order as latencies). */
  sentAt: number[];
  failed: number;
  failures: string[];
  writes: number;
}

process.on('message', (msg: PhaseRequest) => {
  void (async () => {
    const load = startLoad({
      url: msg.url,
      workers: msg.workers,
      rate: msg.rate,
      next: wikiOperations(msg.pages, msg.runId),
      versionHeader: VERSION_HEADER,
    });
    // The phase's length is what is being measured over, not a synchronisation.
    await new Promise((resolve) => setTimeout(resolve, msg.seconds * 1000));
    const r = await load.stop();
    const reply: PhaseResult = {
      latencies: r.answers.map((a) => a.receivedAt - a.sentAt),
      sentAt: r.answers.map((a) => performance.timeOrigin + a.sentAt),
      failed: r.failed,
      failures: r.failures,
      writes: r.acknowledged.length,
    };
    process.send?.(reply);
  })();
});
process.on('disconnect', () => process.exit(0));
