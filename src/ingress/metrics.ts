/**
 * Prometheus metrics of one ingress, per universe: requests, latency, errors, in flight, held now,
 * hold duration, mirror queue and drops. Each ingress has its own Registry (several run in one process
 * in tests). Label children for the hot path are created once, because label lookup per request costs
 * CPU the proxy does not have to spare.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DrainTracker } from './drain.js';
import type { ForwardOutcome } from './forward.js';
import type { Mirror } from './mirror.js';
import type { Router } from './router.js';
import type { RequestClass } from './classify.js';
import { UNIVERSES, type UniverseName } from './universe.js';

type StatusClass = '2xx' | '3xx' | '4xx' | '5xx' | '1xx' | 'none';

function statusClass(status: number): StatusClass {
  if (status >= 500) return '5xx';
  if (status >= 400) return '4xx';
  if (status >= 300) return '3xx';
  if (status >= 200) return '2xx';
  return status >= 100 ? '1xx' : 'none';
}

export class IngressMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'universe' | 'class' | 'status'>;
  private readonly duration: Record<UniverseName, Histogram.Internal<'universe'>>;
  private readonly errors: Counter<'universe' | 'kind'>;
  readonly holdDuration: Histogram;
  readonly mirrorDropped: Counter;
  /** Requests counted per (universe, class, status class): children cached by key. */
  private readonly children = new Map<string, Counter.Internal>();

  constructor(deps: { router: Router; drain: DrainTracker; mirror: () => Mirror | undefined }) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'imago_ingress_requests_total',
      help: 'Requests answered, by universe, read/write class and status class',
      labelNames: ['universe', 'class', 'status'],
      registers,
    });
    const duration = new Histogram({
      name: 'imago_ingress_request_duration_seconds',
      help: 'Time from dispatch to the end of the upstream response',
      labelNames: ['universe'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.duration = { old: duration.labels('old'), new: duration.labels('new') };
    this.errors = new Counter({
      name: 'imago_ingress_upstream_errors_total',
      help: 'Requests that failed upstream (answered 502/504 or cut), by universe',
      labelNames: ['universe', 'kind'],
      registers,
    });
    new Gauge({
      name: 'imago_ingress_in_flight',
      help: 'Requests dispatched whose upstream response is not complete',
      labelNames: ['universe'],
      registers,
      collect() {
        for (const u of UNIVERSES) this.labels(u).set(deps.drain.inFlight(u));
      },
    });
    new Gauge({
      name: 'imago_ingress_route',
      help: '1 for the universe requests are routed to',
      labelNames: ['universe'],
      registers,
      collect() {
        for (const u of UNIVERSES) this.labels(u).set(deps.router.route() === u ? 1 : 0);
      },
    });
    new Gauge({
      name: 'imago_ingress_held_requests',
      help: 'Requests waiting in the hold queue now',
      registers,
      collect() {
        this.set(deps.router.heldCount());
      },
    });
    this.holdDuration = new Histogram({
      name: 'imago_ingress_hold_duration_seconds',
      help: 'How long held requests waited before release or refusal',
      buckets: [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: 'imago_ingress_mirror_queue',
      help: 'Mirror copies waiting to be sent',
      registers,
      collect() {
        this.set(deps.mirror()?.stats().queued ?? 0);
      },
    });
    this.mirrorDropped = new Counter({
      name: 'imago_ingress_mirror_dropped_total',
      help: 'Mirror copies dropped because the mirror queue was full',
      registers,
    });
  }

  completed(
    universe: UniverseName,
    cls: RequestClass,
    outcome: ForwardOutcome,
    status: number,
    ms: number,
  ): void {
    const sc = statusClass(status);
    const key = `${universe}|${cls}|${sc}`;
    let child = this.children.get(key);
    if (child === undefined) {
      child = this.requests.labels(universe, cls, sc);
      this.children.set(key, child);
    }
    child.inc();
    this.duration[universe].observe(ms / 1000);
    if (outcome === 'upstream-error')
      this.errors.labels(universe, status === 504 ? 'timeout' : 'failure').inc();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
