/**
 * The runtime test as the driver runs it, for ingress nodes in their own processes: the nodes ship
 * each read they mirror (request and the old universe's answer) to a collector here; here the read
 * waits for the consistency barrier on the driver's own conversion, goes to the new app, and both
 * answers are compared (src/runtime-test/). The report is saved under the plan's stateDir, where
 * `imago report` and `imago status` read it; the gate is evaluated on it before the switch.
 *
 * Evidence lives as long as the driver: a driver restarted before the switch gathers it afresh.
 */
import { BackendSet, Mirror, type MirrorSink } from '../ingress/index.js';
import type { Converter } from '../conversion/converter.js';
import { errorMessage } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';
import { RuntimeTest, reportPath, type GateVerdict, type RuntimeTestSummary } from '../runtime-test/index.js';
import { startCollector, type Collector } from '../runtime-test/collector.js';
import type { IngressNode } from '../switchover/index.js';

/** How long a control call to one node may take. */
const NODE_CALL_MS = 2_000;

export class DriverRuntimeTest {
  private constructor(
    private readonly test: RuntimeTest,
    private readonly mirror: Mirror,
    private readonly backends: BackendSet,
    private readonly collector: Collector,
    private readonly plan: UpgradePlan,
    private readonly say: (line: string) => void,
  ) {}

  static async start(
    plan: UpgradePlan,
    converter: Converter,
    newAppUrl: string,
    say: (line: string) => void,
  ): Promise<DriverRuntimeTest> {
    const { required: _required, collector: where, ...config } = plan.runtimeTest;
    const test = new RuntimeTest({
      config,
      conversion: converter,
      // Noise samples go straight to the old app: through the ingress they would be mirrored again.
      oldUrls: 'url' in plan.old.app ? [plan.old.app.url] : [],
      reportFile: reportPath(plan.stateDir, plan.name),
    });
    const backends = new BackendSet({ connectMs: 5_000, headersMs: 10_000, bodyMs: 10_000 });
    backends.set('new', [newAppUrl]);
    // The nodes sample (before capturing anything); every read shipped here is compared.
    const mirror = new Mirror(test.mirrorOptions({ sampleRate: 1 }), backends);
    mirror.enabled = true;
    const collector = await startCollector({
      host: where.host,
      port: where.port,
      advertise: where.advertise,
      // The arrival time stands for the old answer's: it is later (so the barrier stays sound) and
      // read on this host's clock, which the barrier's markers use too.
      onExchange: (x) => void mirror.enqueue({ target: 'new', ...x, primaryDoneAt: Date.now() }),
    });
    say(`runtime test: collecting mirrored reads at ${collector.sink.url}`);
    return new DriverRuntimeTest(test, mirror, backends, collector, plan, say);
  }

  /**
   * Turns mirroring on at every node that is not mirroring (`force`: at every node, e.g. after a driver
   * restart, when a node may still ship to the previous driver's collector). Failures are reported,
   * not thrown: a node that does not mirror only slows the evidence down.
   */
  async mirrorOn(nodes: readonly IngressNode[], force = false): Promise<void> {
    await Promise.all(
      nodes.map(async (node) => {
        try {
          const state = await node.state(NODE_CALL_MS);
          if (force || !state.mirror) await node.mirror(state.epoch, true, this.sink, NODE_CALL_MS);
        } catch (err) {
          this.say(`runtime test: could not turn mirroring on at ${node.name}: ${errorMessage(err)}`);
        }
      }),
    );
  }

  /** Turns mirroring off at every node (after the switch, or on abort). */
  async mirrorOff(nodes: readonly IngressNode[]): Promise<void> {
    await Promise.all(
      nodes.map(async (node) => {
        try {
          const state = await node.state(NODE_CALL_MS);
          if (state.mirror) await node.mirror(state.epoch, false, undefined, NODE_CALL_MS);
        } catch (err) {
          this.say(`runtime test: could not turn mirroring off at ${node.name}: ${errorMessage(err)}`);
        }
      }),
    );
  }

  private get sink(): MirrorSink {
    return { ...this.collector.sink, sampleRate: this.plan.runtimeTest.sampleRate };
  }

  gate(): GateVerdict {
    return this.test.gate(this.plan.runtimeTest.gate);
  }

  summary(): RuntimeTestSummary {
    return this.test.summary();
  }

  /** Reads shipped by the nodes so far, and what the driver's mirror did with them. */
  stats(): Record<string, unknown> {
    return { collector: { ...this.collector.counts }, mirror: this.mirror.stats() };
  }

  async close(): Promise<void> {
    this.mirror.enabled = false;
    await this.collector.close();
    await this.test.close();
    await this.backends.close();
  }
}
