/**
 * The runtime test for ingress nodes in other processes (the driver's, and the bench's): the nodes
 * ship each read they mirror (request and the old universe's answer) to a collector here; here the
 * read waits for the consistency barrier on the conversion, goes to the new app, and both answers are
 * compared. Comparing here rather than at the edge keeps the parsing and diffing of answers off the
 * proxy's event loop, and the barrier next to the conversion it waits on.
 */
import { BackendSet, Mirror, type MirrorSink, type MirrorStats } from '../ingress/index.js';
import { errorMessage } from '../errors.js';
import { waitUntil } from '../deadline.js';
import type { CatchUpSource } from './barrier.js';
import type { GateCriteria, RuntimeTestConfig } from './config.js';
import type { GateVerdict } from './gate.js';
import { RuntimeTest } from './index.js';
import type { RuntimeTestReport } from './report.js';
import type { RuntimeTestSummary } from './render.js';
import { startCollector, type Collector } from './collector.js';

/** What the runtime test needs of an ingress node (switchover's IngressNode has it). */
export interface MirroringNode {
  readonly name: string;
  state(timeoutMs: number): Promise<{ epoch: number; mirror?: boolean }>;
  mirror(epoch: number, enabled: boolean, sink: MirrorSink | undefined, timeoutMs: number): Promise<unknown>;
}

export interface RemoteRuntimeTestOptions {
  config: RuntimeTestConfig;
  /** The conversion whose catch-up the barrier waits on. */
  conversion: CatchUpSource;
  newAppUrl: string;
  /** Old universe base URLs for noise samples (straight to the app: through the ingress they would be mirrored again). */
  oldUrls: string[];
  reportFile?: string;
  collector?: { host?: string; port?: number; advertise?: string };
  say?: (line: string) => void;
}

/** How long a control call to one node may take. */
const NODE_CALL_MS = 2_000;

export class RemoteRuntimeTest {
  private constructor(
    private readonly test: RuntimeTest,
    private readonly mirror: Mirror,
    private readonly backends: BackendSet,
    private readonly collector: Collector,
    private readonly o: RemoteRuntimeTestOptions,
  ) {}

  static async start(o: RemoteRuntimeTestOptions): Promise<RemoteRuntimeTest> {
    const test = new RuntimeTest({
      config: o.config,
      conversion: o.conversion,
      oldUrls: o.oldUrls,
      ...(o.reportFile ? { reportFile: o.reportFile } : {}),
    });
    const backends = new BackendSet({ connectMs: 5_000, headersMs: 10_000, bodyMs: 10_000 });
    backends.set('new', [o.newAppUrl]);
    // The nodes sample (before capturing anything); every read shipped here is compared.
    const mirror = new Mirror(test.mirrorOptions({ sampleRate: 1 }), backends);
    mirror.enabled = true;
    const collector = await startCollector({
      ...o.collector,
      // The arrival time stands for the old answer's: it is later (so the barrier stays sound) and
      // read on this host's clock, which the barrier's markers use too.
      onExchange: (x) => void mirror.enqueue({ target: 'new', ...x, primaryDoneAt: Date.now() }),
    });
    o.say?.(`runtime test: collecting mirrored reads at ${collector.sink.url}`);
    return new RemoteRuntimeTest(test, mirror, backends, collector, o);
  }

  /** What a node needs to ship here, with the plan's sample rate. */
  get sink(): MirrorSink {
    return { ...this.collector.sink, sampleRate: this.o.config.sampleRate };
  }

  /**
   * Turns mirroring on at every node that is not mirroring (`force`: at every node, e.g. after a driver
   * restart, when a node may still ship to the previous driver's collector). Failures are reported,
   * not thrown: a node that does not mirror only slows the evidence down.
   */
  async mirrorOn(nodes: readonly MirroringNode[], force = false): Promise<void> {
    await this.eachNode(nodes, 'on', async (node, state) => {
      if (force || !state.mirror) await node.mirror(state.epoch, true, this.sink, NODE_CALL_MS);
    });
  }

  /** Turns mirroring off at every node (after the switch, or on abort). */
  async mirrorOff(nodes: readonly MirroringNode[], force = false): Promise<void> {
    await this.eachNode(nodes, 'off', async (node, state) => {
      if (force || state.mirror) await node.mirror(state.epoch, false, undefined, NODE_CALL_MS);
    });
  }

  private async eachNode(
    nodes: readonly MirroringNode[],
    what: string,
    act: (node: MirroringNode, state: { epoch: number; mirror?: boolean }) => Promise<void>,
  ): Promise<void> {
    await Promise.all(
      nodes.map(async (node) => {
        try {
          await act(node, await node.state(NODE_CALL_MS));
        } catch (err) {
          this.o.say?.(
            `runtime test: could not turn mirroring ${what} at ${node.name}: ${errorMessage(err)}`,
          );
        }
      }),
    );
  }

  gate(criteria: GateCriteria = this.o.config.gate ?? {}): GateVerdict {
    return this.test.gate(criteria);
  }

  summary(): RuntimeTestSummary {
    return this.test.summary();
  }

  report(): RuntimeTestReport {
    return this.test.report();
  }

  /** Reads shipped by the nodes so far, and what this side's mirror did with them. */
  stats(): { collector: { accepted: number; refused: number }; mirror: MirrorStats } {
    return { collector: { ...this.collector.counts }, mirror: this.mirror.stats() };
  }

  /** Resolves once every read received has been compared (bounded). */
  async settled(timeoutMs: number): Promise<void> {
    await waitUntil(
      'the runtime test to compare what it received',
      async () => {
        const s = this.mirror.stats();
        return s.queued === 0 && s.inFlight === 0 ? true : undefined;
      },
      { timeoutMs },
    );
  }

  async close(): Promise<void> {
    this.mirror.enabled = false;
    await this.collector.close();
    await this.test.close();
    await this.backends.close();
  }
}
