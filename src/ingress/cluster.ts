/**
 * Multi-process ingress: a primary forks `workers` processes with node:cluster; the primary listens and
 * hands each connection to a worker (connection-dispatch.ts: round-robin, and a connection whose
 * worker died before taking it goes to another) and each runs the ordinary single-process proxy. The primary owns the state (route, hold, upstreams), the control endpoint and
 * the control store; workers hold no state of their own beyond their hold queue and in-flight counts.
 *
 * Atomicity across processes: a transition changes the primary's state, is sent to every worker over
 * its (ordered) IPC channel, and resolves only when every worker has acknowledged having applied it.
 * So once `release('new')` resolves no worker can dispatch to 'old'; once `hold()` resolves every
 * worker queues new requests. A worker that does not acknowledge within `ackTimeoutMs` is killed (a
 * dead worker dispatches nothing) and replaced; a replacement starts from the current state, already
 * holding if a hold is in force, before it is given connections. Hold queues are per worker and released in arrival
 * order per worker. `drained()` waits until every worker has nothing in flight for the universe.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { AggregatorRegistry } from 'prom-client';
import { ImagoError } from '../errors.js';
import { checkBalance, type BackendHealth } from './backends.js';
import type {
  PrimaryMessage,
  WorkerInit,
  WorkerIngressOptions,
  WorkerMessage,
  WorkerMirror,
  WorkerStats,
} from './cluster-protocol.js';
import { startControlEndpoint, type ControlEndpoint } from './control-endpoint.js';
import { FileControlStore, MemoryControlStore, type ControlStore } from './control-store.js';
import { ConnectionDispatcher, type ConnectionTaker } from './connection-dispatch.js';
import { checkHealthCheckOptions } from './health-check.js';
import type { IngressOptions } from './index.js';
import type { MirrorSink } from './mirror-sink.js';
import { UNIVERSES, type UniverseName } from './universe.js';
import { checkUpstreamUrls } from './upstream-url.js';
import { TS_LOADER } from '../loader/args.js';

export interface IngressClusterOptions extends Omit<IngressOptions, 'onDispatch' | 'mirror'> {
  /** Worker processes; default: the number of cores (os.availableParallelism()). */
  workers?: number;
  /** Extra node flags for the workers (e.g. --cpu-prof); the TypeScript loader is added when needed. */
  workerExecArgv?: string[];
  /** How long a worker has to acknowledge a transition before it is killed and replaced. Default 5 000 ms. */
  ackTimeoutMs?: number;
}

export interface IngressCluster {
  readonly port: number;
  readonly url: string;
  /** Number of worker processes. */
  readonly workers: number;
  route(): UniverseName;
  holding(): boolean;
  /** Resolves once every worker uses the new backends. */
  setUpstreams(universe: UniverseName, urls: string[]): Promise<void>;
  /** Resolves once every worker queues new requests. */
  hold(): Promise<void>;
  /**
   * Optionally flips, then releases every worker's queue (arrival order per worker); resolves once all
   * workers have, with the total released. Rejects, changing nothing, if the route has no upstreams.
   */
  release(route?: UniverseName): Promise<{ released: number }>;
  /** Requests in flight to `universe`, summed over workers. */
  inFlight(universe: UniverseName): Promise<number>;
  /** Resolves when no worker has a request in flight to `universe`; rejects naming the total on deadline. */
  drained(universe: UniverseName, timeoutMs: number): Promise<void>;
  /** Totals over workers, and each worker's own figures. */
  stats(): Promise<{
    requests: Record<UniverseName, number>;
    errors: Record<UniverseName, number>;
    held: number;
    maxHoldMs: number;
    /** A backend is up when every worker has it in rotation. */
    backends: Record<UniverseName, BackendHealth[]>;
    perWorker: WorkerStats[];
  }>;
  /** Prometheus text, aggregated over workers (sums; the route gauge is the max). */
  metrics(): Promise<string>;
  /** Process ids of the current workers (tests, CPU accounting). */
  workerPids(): number[];
  readonly control: { url: string; port: number; epoch(): number } | undefined;
  /** Closes the control endpoint and every worker (held requests get the hold refusal). */
  close(): Promise<void>;
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** One worker process and its request/acknowledgement bookkeeping. */
class WorkerLink implements ConnectionTaker {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Connections sent and not yet acknowledged: each is settled once, by the worker or by its exit. */
  private readonly handoffs = new Map<number, (taken: boolean) => void>();
  readonly ready: Promise<number>;
  readonly exited: Promise<void>;
  gone = false;
  /** Until the worker says hello its channel may not be listened to yet: commands wait here. */
  private helloSeen = false;
  private backlog: PrimaryMessage[] = [];

  constructor(
    readonly worker: Worker,
    initOptions: () => WorkerInit,
    startTimeoutMs: number,
  ) {
    let readyResolve!: (port: number) => void;
    let readyReject!: (err: Error) => void;
    this.ready = new Promise<number>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    // Nobody may be awaiting `ready` when a worker dies during start; the exit handler reports it.
    this.ready.catch(() => undefined);
    const startTimer = setTimeout(
      () =>
        readyReject(
          new Error(`ingress worker ${worker.process.pid} did not start within ${startTimeoutMs} ms`),
        ),
      startTimeoutMs,
    );
    worker.on('message', (msg: WorkerMessage) => {
      switch (msg.t) {
        case 'hello': {
          // The state is read now, when the worker can receive it: any transition decided before this
          // point is in it, any later one follows on the same ordered channel.
          this.helloSeen = true;
          this.post({ t: 'init', ...initOptions() });
          const backlog = this.backlog;
          this.backlog = [];
          for (const m of backlog) this.post(m);
          return;
        }
        case 'ready':
          clearTimeout(startTimer);
          readyResolve(msg.port);
          return;
        case 'failed':
          clearTimeout(startTimer);
          readyReject(new Error(`ingress worker failed to start: ${msg.error}`));
          return;
        case 'adopted':
        case 'refused': {
          const settled = this.handoffs.get(msg.id);
          this.handoffs.delete(msg.id);
          settled?.(msg.t === 'adopted');
          return;
        }
        case 'reply': {
          const p = this.pending.get(msg.id);
          if (!p) return;
          this.pending.delete(msg.id);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(new Error(msg.error));
          return;
        }
      }
    });
    this.exited = new Promise<void>((resolve) => {
      worker.once('exit', () => {
        this.gone = true;
        clearTimeout(startTimer);
        readyReject(new Error(`ingress worker ${worker.process.pid} exited during start`));
        // A dead worker dispatches nothing: what waited on it is settled as done.
        for (const p of this.pending.values()) p.resolve(undefined);
        this.pending.clear();
        // Its acknowledgements would have come before the channel closed: these it never took.
        for (const settled of this.handoffs.values()) settled(false);
        this.handoffs.clear();
        resolve();
      });
    });
  }

  take(socket: Socket, settled: (taken: boolean) => void): void {
    if (this.gone) return settled(false);
    const id = this.nextId++;
    this.handoffs.set(id, settled);
    const msg: PrimaryMessage = { t: 'connection', id };
    const failed = (): void => {
      // Not delivered (the channel is closing): the exit settles it if it has not been already.
      const s = this.handoffs.get(id);
      this.handoffs.delete(id);
      s?.(false);
    };
    try {
      this.worker.send(msg, socket, { keepOpen: true }, (err) => {
        if (err) failed();
      });
    } catch {
      failed();
    }
  }

  private post(msg: PrimaryMessage): void {
    if (this.gone) return;
    try {
      this.worker.send(msg);
    } catch {
      // The channel closed under us: the exit handler settles everything.
    }
  }

  /** Sends a command; resolves with the worker's answer, or undefined if the worker is gone. */
  call<T>(
    msg: PrimaryMessage extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never,
  ): Promise<T | undefined> {
    if (this.gone) return Promise.resolve(undefined);
    // A transition decided before the worker asked for its state is part of that state already.
    if (!this.helloSeen && (msg.t === 'hold' || msg.t === 'release' || msg.t === 'upstreams')) {
      return Promise.resolve(undefined);
    }
    const id = this.nextId++;
    return new Promise<T | undefined>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const full = { ...msg, id } as PrimaryMessage;
      if (this.helloSeen) this.post(full);
      else this.backlog.push(full);
    });
  }
}

function mergeHealth(perWorker: WorkerStats[]): Record<UniverseName, BackendHealth[]> {
  const merged = { old: new Map<string, boolean>(), new: new Map<string, boolean>() };
  for (const s of perWorker)
    for (const u of UNIVERSES)
      for (const b of s.backends[u]) merged[u].set(b.url, (merged[u].get(b.url) ?? true) && b.up);
  const list = (m: Map<string, boolean>): BackendHealth[] => [...m].map(([url, up]) => ({ url, up }));
  return { old: list(merged.old), new: list(merged.new) };
}

/** The worker entry next to this file: .ts when running from source (through Imago's loader), else .js. */
function workerEntry(): { exec: string; loader: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const exec = fileURLToPath(new URL(`./cluster-worker.${fromSource ? 'ts' : 'js'}`, import.meta.url));
  return { exec, loader: fromSource ? [...TS_LOADER] : [] };
}

export async function startIngressCluster(options: IngressClusterOptions): Promise<IngressCluster> {
  if (!cluster.isPrimary) throw new Error('startIngressCluster must run in a primary process');
  const count = options.workers ?? availableParallelism();
  if (!Number.isInteger(count) || count < 1)
    throw new Error(`workers must be a positive integer, not ${count}`);
  // Refused here rather than by every worker failing to start.
  checkBalance(options.balance);
  if (options.healthCheck) checkHealthCheckOptions(options.healthCheck);
  for (const u of UNIVERSES) checkUpstreamUrls(u, options.upstreams[u] ?? []);
  const ackTimeoutMs = options.ackTimeoutMs ?? 5_000;
  const store: ControlStore =
    typeof options.control?.store === 'string'
      ? new FileControlStore(options.control.store)
      : (options.control?.store ?? new MemoryControlStore());
  const restored = options.control ? await store.load() : undefined;

  // The state every worker follows; changed only by the transitions below, before they are sent.
  const state = {
    route: restored?.route ?? options.route,
    holding: restored?.holding ?? options.holding ?? false,
    upstreams: {
      old: [...(restored?.upstreams?.old?.length ? restored.upstreams.old : (options.upstreams.old ?? []))],
      new: [...(restored?.upstreams?.new?.length ? restored.upstreams.new : (options.upstreams.new ?? []))],
    },
  };
  // The primary listens and hands each connection to a worker (connection-dispatch.ts); workers
  // never listen themselves, so the port is known before any of them starts.
  const host = options.host ?? '127.0.0.1';
  const dispatcher = new ConnectionDispatcher();
  const { port, url } = await dispatcher.listen(options.port ?? 0, host);
  // Several workers mirror only by shipping to a runtime-test sink: a comparator callback cannot be
  // handed to another process. Not persisted: the sink's token lives as long as its driver.
  let mirror: WorkerMirror | undefined;
  const initOptions = (): WorkerInit => ({ options: workerOptions(), ...(mirror ? { mirror } : {}) });
  const workerOptions = (): WorkerIngressOptions => ({
    host,
    port,
    upstreams: { old: state.upstreams.old, new: state.upstreams.new },
    route: state.route,
    holding: state.holding,
    hold: options.hold,
    limits: options.limits,
    classify: options.classify,
    mirrorLimits: options.mirrorLimits,
    balance: options.balance,
    healthCheck: options.healthCheck,
  });

  const { exec, loader } = workerEntry();
  let closing = false;
  const links = new Set<WorkerLink>();
  const fork = (): WorkerLink => {
    cluster.setupPrimary({
      exec,
      args: [],
      execArgv: [...loader, ...(options.workerExecArgv ?? [])],
      serialization: 'advanced',
    });
    const link = new WorkerLink(cluster.fork(), initOptions, 30_000);
    links.add(link);
    // Connections go to a worker only once its ingress runs.
    link.ready.then(
      () => dispatcher.add(link),
      () => undefined,
    );
    void link.exited.then(() => {
      links.delete(link);
      dispatcher.remove(link);
      // A crashed worker is replaced; the replacement starts from the current state.
      if (!closing) void fork().ready.catch(() => undefined);
    });
    return link;
  };

  const started = Array.from({ length: count }, () => fork());
  try {
    await Promise.all(started.map((l) => l.ready));
  } catch (err) {
    closing = true;
    await dispatcher.close();
    for (const l of started) l.worker.process.kill('SIGKILL');
    await Promise.all(started.map((l) => l.exited));
    throw err;
  }

  /** Sends to every live worker and waits for all acknowledgements; a silent worker is killed. */
  const broadcast = async <T>(
    msg: Parameters<WorkerLink['call']>[0],
    timeoutMs = ackTimeoutMs,
  ): Promise<(T | undefined)[]> => {
    const current = [...links];
    return Promise.all(
      current.map(async (link) => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        try {
          const r = await Promise.race([link.call<T>(msg), timedOut]);
          if (r !== 'timeout') return r;
          // It may or may not have applied the transition: only a dead worker is certain not to
          // dispatch against it. Its replacement starts from the new state.
          link.worker.process.kill('SIGKILL');
          await link.exited;
          return undefined;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
  };

  // Transitions one at a time, in call order (the control endpoint serialises its own as well).
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(run: () => Promise<T>): Promise<T> => {
    const next = chain.then(run);
    chain = next.catch(() => undefined);
    return next;
  };

  const hold = (): Promise<void> =>
    serial(async () => {
      state.holding = true;
      await broadcast({ t: 'hold' });
    });
  const release = (route?: UniverseName): Promise<{ released: number }> =>
    serial(async () => {
      const target = route ?? state.route;
      if (state.upstreams[target].length === 0) {
        throw new Error(
          `cannot release to universe '${target}': it has no upstreams (call setUpstreams first)`,
        );
      }
      state.route = target;
      state.holding = false;
      const acks = await broadcast<{ released: number }>({ t: 'release', route: target });
      return { released: acks.reduce((n, a) => n + (a?.released ?? 0), 0) };
    });
  const setUpstreams = (universe: UniverseName, urls: string[]): Promise<void> =>
    serial(async () => {
      // Refused before the state every worker (and every replacement) starts from is changed.
      checkUpstreamUrls(universe, urls);
      state.upstreams[universe] = [...urls];
      await broadcast({ t: 'upstreams', universe, urls: [...urls] });
    });
  const setMirror = (enabled: boolean, sink?: MirrorSink): Promise<void> =>
    serial(async () => {
      const to = sink ?? mirror?.sink;
      if (!to)
        throw new ImagoError(
          'mirroring with several ingress workers needs a runtime-test sink',
          'mirror',
          'give the sink (POST /v1/mirror with sink), as the driver does',
        );
      mirror = { enabled, sink: to };
      await broadcast({ t: 'mirror', ...mirror });
    });
  const workerStats = async (): Promise<WorkerStats[]> =>
    (await broadcast<WorkerStats>({ t: 'stats' })).filter((s): s is WorkerStats => s !== undefined);
  const inFlight = async (universe: UniverseName): Promise<number> =>
    (await workerStats()).reduce((n, s) => n + s.inFlight[universe], 0);
  const drained = async (universe: UniverseName, timeoutMs: number): Promise<void> => {
    const results = await Promise.allSettled(
      [...links].map((l) => l.call({ t: 'drained', universe, timeoutMs })),
    );
    if (results.every((r) => r.status === 'fulfilled')) return;
    const left = await inFlight(universe);
    if (left === 0) return;
    throw new Error(
      `drain of universe '${universe}' timed out after ${timeoutMs} ms with ${left} request(s) still in flight across ${links.size} workers`,
    );
  };
  const stats = async (): Promise<Awaited<ReturnType<IngressCluster['stats']>>> => {
    const perWorker = await workerStats();
    const sum = (pick: (s: WorkerStats) => Record<UniverseName, number>): Record<UniverseName, number> => {
      const out = { old: 0, new: 0 };
      for (const s of perWorker) for (const u of UNIVERSES) out[u] += pick(s)[u];
      return out;
    };
    return {
      requests: sum((s) => s.requests),
      errors: sum((s) => s.errors),
      held: perWorker.reduce((n, s) => n + s.held, 0),
      maxHoldMs: perWorker.reduce((m, s) => Math.max(m, s.maxHoldMs), 0),
      backends: mergeHealth(perWorker),
      perWorker,
    };
  };
  const metricsText = async (): Promise<string> => {
    const perWorker = (await broadcast<object[]>({ t: 'metrics' })).filter(
      (m): m is object[] => m !== undefined,
    );
    return AggregatorRegistry.aggregate(perWorker).metrics();
  };

  let control: ControlEndpoint | undefined;
  const closeWorkers = async (): Promise<void> => {
    closing = true;
    // No new connections; those in hand-off settle as their workers answer or exit.
    const stopped = dispatcher.close();
    const all = [...links];
    await Promise.all(
      all.map(async (l) => {
        const closed = l.call({ t: 'close' });
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            l.worker.process.kill('SIGKILL');
            resolve();
          }, 10_000);
        });
        await Promise.race([closed.then(() => l.exited), late]);
        await l.exited;
        clearTimeout(timer);
      }),
    );
    await stopped;
  };

  if (options.control) {
    try {
      control = await startControlEndpoint(
        {
          route: () => state.route,
          holding: () => state.holding,
          hold,
          release,
          hasUpstreams: (u) => state.upstreams[u].length > 0,
          upstreamUrls: (u) => [...state.upstreams[u]],
          setUpstreams,
          mirroring: () => mirror?.enabled ?? false,
          setMirror,
          drained,
          snapshot: async () => {
            const s = await stats();
            const inFlightNow = { old: 0, new: 0 };
            for (const w of s.perWorker) for (const u of UNIVERSES) inFlightNow[u] += w.inFlight[u];
            return {
              port,
              workers: links.size,
              inFlight: inFlightNow,
              held: s.held,
              requests: s.requests,
              errors: s.errors,
              backends: s.backends,
            };
          },
          metrics: async () => ({
            contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
            text: await metricsText(),
          }),
        },
        { token: options.control.token, port: options.control.port, store, nodeId: options.control.nodeId },
        { epoch: restored?.epoch ?? 0, releasedEpoch: restored?.releasedEpoch },
      );
    } catch (err) {
      await closeWorkers();
      throw err;
    }
  }

  let closed: Promise<void> | undefined;
  return {
    port,
    url,
    workers: count,
    route: () => state.route,
    holding: () => state.holding,
    setUpstreams,
    hold,
    release,
    inFlight,
    drained,
    stats,
    metrics: metricsText,
    workerPids: () => [...links].map((l) => l.worker.process.pid ?? 0),
    control: control && { url: control.url, port: control.port, epoch: () => control.epoch() },
    close: () =>
      (closed ??= (async () => {
        await control?.close();
        await closeWorkers();
      })()),
  };
}
