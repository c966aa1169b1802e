/**
 * Prometheus metrics of one ingress, per universe: requests, latency, errors, in flight, backends up,
 * held now, hold duration, mirror queue and drops. Each ingress has its own Registry (several run in
 * one process in tests). The two metrics touched by every request (requests_total,
 * request_duration_seconds) are plain number arrays indexed by universe/class/status, turned into
 * Prometheus values only when scraped: prom-client's observe()/inc() hash their labels on every call,
 * which the proxy, being CPU-bound, cannot spare.
 */
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import type { BackendSet } from './backends.js';
import type { DrainTracker } from './drain.js';
import type { ForwardOutcome } from './forward.js';
import type { Mirror } from './mirror.js';
import type { Router } from './router.js';
import type { RequestClass } from './classify.js';
import { UNIVERSES, type UniverseName } from './universe.js';

const STATUS_CLASSES = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const CLASSES: readonly RequestClass[] = ['read', 'write'];
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Index into STATUS_CLASSES. */
function statusClassIndex(status: number): number {
  if (status >= 500) return 5;
  if (status >= 400) return 4;
  if (status >= 300) return 3;
  if (status >= 200) return 2;
  return status >= 100 ? 1 : 0;
}

function bump(a: Float64Array, i: number, by: number): void {
  a[i] = (a[i] as number) + by;
}

const universeIndex = (u: UniverseName): number => (u === 'old' ? 0 : 1);

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/**
 * A metric read by the registry through get() (the shape prom-client's own metrics and its
 * AggregatorRegistry use), backed by arrays the hot path increments without any lookup.
 */
function arrayMetric(
  name: string,
  help: string,
  type: 'counter' | 'histogram',
  values: () => MetricValue[],
): Metric {
  const m = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type, values: values(), aggregator: 'sum' }),
    reset: () => undefined,
  };
  return m as unknown as Metric;
}

export class IngressMetrics {
  readonly registry = new Registry();
  /** [universe][class][status class] request counts. */
  private readonly requestCounts = new Float64Array(2 * 2 * STATUS_CLASSES.length);
  /** [universe][bucket] non-cumulative counts; the last slot is +Inf. */
  private readonly durationBuckets = new Float64Array(2 * (DURATION_BUCKETS.length + 1));
  private readonly durationSum = new Float64Array(2);
  private readonly durationCount = new Float64Array(2);
  private readonly errors: Counter<'universe' | 'kind'>;
  readonly holdDuration: Histogram;
  readonly mirrorDropped: Counter;

  constructor(deps: {
    router: Router;
    drain: DrainTracker;
    backends: BackendSet;
    mirror: () => Mirror | undefined;
  }) {
    const registers = [this.registry];
    this.registry.registerMetric(
      arrayMetric(
        'imago_ingress_requests_total',
        'Requests answered, by universe, read/write class and status class',
        'counter',
        () => this.requestValues(),
      ),
    );
    this.registry.registerMetric(
      arrayMetric(
        'imago_ingress_request_duration_seconds',
        'Time from dispatch to the end of the upstream response',
        'histogram',
        () => this.durationValues(),
      ),
    );
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
      name: 'imago_ingress_backends_up',
      help: 'Backends in rotation (not failed, passively or by their health check), by universe',
      labelNames: ['universe'],
      registers,
      // Each cluster worker judges the backends on its own: the aggregate is the most pessimistic.
      aggregator: 'min',
      collect() {
        const health = deps.backends.health();
        for (const u of UNIVERSES) this.labels(u).set(health[u].filter((b) => b.up).length);
      },
    });
    new Gauge({
      name: 'imago_ingress_route',
      help: '1 for the universe requests are routed to',
      labelNames: ['universe'],
      registers,
      // Across cluster workers (all on the same route) the aggregate is the value, not the sum.
      aggregator: 'max',
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
    const u = universeIndex(universe);
    bump(
      this.requestCounts,
      (u * 2 + (cls === 'read' ? 0 : 1)) * STATUS_CLASSES.length + statusClassIndex(status),
      1,
    );
    const seconds = ms / 1000;
    let b = 0;
    while (b < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[b] as number)) b++;
    bump(this.durationBuckets, u * (DURATION_BUCKETS.length + 1) + b, 1);
    bump(this.durationSum, u, seconds);
    bump(this.durationCount, u, 1);
    if (outcome === 'upstream-error')
      this.errors.labels(universe, status === 504 ? 'timeout' : 'failure').inc();
  }

  private requestValues(): MetricValue[] {
    const out: MetricValue[] = [];
    for (let u = 0; u < 2; u++)
      for (let c = 0; c < 2; c++)
        for (let sc = 0; sc < STATUS_CLASSES.length; sc++) {
          const value = this.requestCounts[(u * 2 + c) * STATUS_CLASSES.length + sc] as number;
          if (value === 0) continue;
          const labels = {
            universe: UNIVERSES[u] as string,
            class: CLASSES[c] as string,
            status: STATUS_CLASSES[sc] as string,
          };
          out.push({ value, labels });
        }
    return out;
  }

  private durationValues(): MetricValue[] {
    const out: MetricValue[] = [];
    const name = 'imago_ingress_request_duration_seconds';
    for (let u = 0; u < 2; u++) {
      const universe = UNIVERSES[u] as string;
      let acc = 0;
      for (let b = 0; b <= DURATION_BUCKETS.length; b++) {
        acc += this.durationBuckets[u * (DURATION_BUCKETS.length + 1) + b] as number;
        const le = b < DURATION_BUCKETS.length ? (DURATION_BUCKETS[b] as number) : '+Inf';
        out.push({ value: acc, labels: { le, universe }, metricName: `${name}_bucket` });
      }
      out.push({ value: this.durationSum[u] as number, labels: { universe }, metricName: `${name}_sum` });
      out.push({ value: this.durationCount[u] as number, labels: { universe }, metricName: `${name}_count` });
    }
    return out;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
