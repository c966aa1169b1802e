/**
 * Messages between the ingress primary (cluster.ts) and its worker processes (cluster-worker.ts), sent
 * over node:cluster's IPC channel with the 'advanced' serialization (structured clone: RegExp
 * classification rules survive). A channel delivers in order, so a worker applies transitions in the
 * order the primary decided them.
 */
import type { BackendHealth } from './backends.js';
import type { IngressOptions } from './index.js';
import type { MirrorSink } from './mirror-sink.js';
import type { UniverseName } from './universe.js';

/** The part of IngressOptions a worker can receive: no callbacks, no control endpoint. */
export type WorkerIngressOptions = Omit<IngressOptions, 'onDispatch' | 'mirror' | 'control' | 'workers'>;

/** Mirroring as the primary decided it: workers ship their copies to the sink (a runtime test). */
export interface WorkerMirror {
  enabled: boolean;
  sink: MirrorSink;
}

/** What a worker starts from: the options, and mirroring if it is on. */
export interface WorkerInit {
  options: WorkerIngressOptions;
  mirror?: WorkerMirror;
}

export type PrimaryMessage =
  | ({ t: 'init' } & WorkerInit)
  | ({ t: 'mirror'; id: number } & WorkerMirror)
  | { t: 'hold'; id: number }
  | { t: 'release'; id: number; route: UniverseName }
  | { t: 'upstreams'; id: number; universe: UniverseName; urls: string[] }
  | { t: 'drained'; id: number; universe: UniverseName; timeoutMs: number }
  | { t: 'stats'; id: number }
  | { t: 'metrics'; id: number }
  | { t: 'close'; id: number }
  /** Sent with a client connection's socket as the handle; answered by `adopted` or `refused`. */
  | { t: 'connection'; id: number };

export type WorkerReply =
  { t: 'reply'; id: number; ok: true; value: unknown } | { t: 'reply'; id: number; ok: false; error: string };

export type WorkerMessage =
  | { t: 'hello' }
  | { t: 'ready'; port: number }
  | { t: 'failed'; error: string }
  | { t: 'adopted' | 'refused'; id: number }
  | WorkerReply;

export interface WorkerStats {
  pid: number;
  requests: Record<UniverseName, number>;
  errors: Record<UniverseName, number>;
  held: number;
  maxHoldMs: number;
  inFlight: Record<UniverseName, number>;
  route: UniverseName;
  holding: boolean;
  /** This worker's view: each judges its backends on its own (passive failures, health checks). */
  backends: Record<UniverseName, BackendHealth[]>;
}
