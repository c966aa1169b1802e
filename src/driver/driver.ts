/**
 * The upgrade driver: runs a plan through planned → provisioning → copying → streaming → testing →
 * ready → switching → switched → finished (or aborting → aborted), journaling every step before
 * acting on it, so that a driver killed at any moment and started again resumes where it was:
 * - before `copying` finished: the conversion resumes or restarts its copy cleanly (Converter.prepare);
 * - streaming onwards: the conversion resumes from its checkpoint on the same slot; from `ready` on it
 *   must never start over (that would empty the targets), so it is prepared with `neverReset`;
 * - from `switching` on the new app is never restarted nor the copy redone, and no node is sent back
 *   to the old universe: the journal's phase never moves backwards past COMMIT (phaseMoveAllowed);
 * - mid-switch: a COMMIT in the journal is carried out (every node flips), anything else aborts
 *   (fence lifted from the journaled record, every node released to the old universe);
 * - ready / switched: every node is brought back to the journal's route (a node that was cut off
 *   learns the outcome this way).
 * Commands (`switch`, `abort`, `finish`) arrive through the journal's command queue.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { withDeadline } from '../deadline.js';
import { dropCapture } from '../capture/drop.js';
import {
  Throttler,
  activeSessionsSignal,
  commandSignal,
  type ThrottleSignal,
} from '../conversion/throttler.js';
import { Converter } from '../conversion/converter.js';
import { restoreDeferred } from '../conversion/deferred-indexes.js';
import { loadConversion } from '../conversion/load-module.js';
import type { Conversion } from '../conversion/api.js';
import { ImagoError, errorMessage } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';
import { databasePasswords, fillPlaceholders } from '../plan/placeholders.js';
import {
  CommitInDoubtError,
  Fence,
  IngressNode,
  LateWriteDetector,
  Redriver,
  releaseAll,
  runSwitchover,
  type FenceRecord,
} from '../switchover/index.js';
import { checkSourceTables, checkTargetTables } from './preflight.js';
import { provideDatabases, type Databases } from './databases.js';
import { RemoteRuntimeTest } from '../runtime-test/remote.js';
import { reportPath } from '../runtime-test/index.js';
import { Journal, type Command, type JournalEvent } from './journal.js';
import { startDetachedApp, stopDetachedApp } from './new-app.js';
import { appHealth, healthyWithin } from '../universe/app-health.js';
import {
  SWITCH_EVENT_PHASE,
  before,
  beforeCommit,
  isTerminal,
  phaseMoveAllowed,
  type Phase,
} from './phases.js';

/** How often, while testing, the nodes are checked to be mirroring. */
const MIRROR_CHECK_EVERY_MS = 5_000;
/** Least time between two "gate closed" progress lines. */
const GATE_SAY_EVERY_MS = 3_000;

export interface DriverOptions {
  plan: UpgradePlan;
  say: (line: string) => void;
  /** Fault injection (tests, benches): the driver SIGKILLs itself right after journaling this event. */
  crashAfter?: string;
  /**
   * Give up instead of driving: abort the upgrade from the phase the journal is in (`imago abort`
   * when no driver runs, e.g. after a crash). A switch interrupted before COMMIT is aborted first; a
   * COMMIT stands, and then the abort is refused.
   */
  abort?: string;
  /** The plan's file as the user named it, for the hints the driver prints (default `<plan>`). */
  planFile?: string;
}

interface NewApp {
  url: string;
  pid?: number;
}

export class Driver {
  private journal!: Journal;
  private dbs!: Databases;
  private phase: Phase | undefined;
  private converter: Converter | undefined;
  private readonly nodes: IngressNode[];
  private readonly lateWrites = new LateWriteDetector();
  private streamFailure: unknown;
  private wake: () => void = () => {};
  private heartbeat: NodeJS.Timeout | undefined;
  private fence!: Fence;
  /** A COMMIT stands in the journal: the phase can no longer go back (nor the nodes to old). */
  private committed = false;
  /** Nodes that did not confirm the last decision, re-sent it by the command loop until they do. */
  private readonly redriver = new Redriver();
  /** Mirroring and comparison before the switch, when the plan requires a runtime test. */
  private runtimeTest: RemoteRuntimeTest | undefined;
  /** When the nodes' mirroring was last checked (gateOpened). */
  private mirrorCheckedAt = performance.now();
  /** The gate's reasons last said, and when. */
  private lastGate = { reasons: '', at: -Infinity };

  constructor(private readonly o: DriverOptions) {
    this.nodes = o.plan.ingress.nodes.map((n) => new IngressNode(n));
  }

  private get plan(): UpgradePlan {
    return this.o.plan;
  }

  /** Runs until the upgrade is finished or aborted; returns the final phase. */
  async run(): Promise<Phase> {
    const { plan, say } = this.o;
    this.dbs = await provideDatabases(plan, say);
    this.journal = await Journal.open(this.dbs.control, plan.name, { lock: true });
    try {
      return await this.drive();
    } finally {
      clearInterval(this.heartbeat);
      await this.stopRuntimeTest();
      await this.converter?.stop().catch(() => {});
      await this.journal.close();
    }
  }

  private async drive(): Promise<Phase> {
    const { plan, say } = this.o;
    const events = await this.journal.events();
    this.phase = events.at(-1)?.phase;
    if (this.phase === undefined) {
      if (this.o.abort !== undefined)
        throw new ImagoError(
          `upgrade ${plan.name} has not started: there is nothing to abort`,
          plan.name,
          'its journal is empty; no capture or app of this upgrade exists',
        );
      await this.record('planned', 'planned', {
        planHash: planHash(plan),
        nodes: this.nodes.map((n) => n.name),
      });
    } else if (isTerminal(this.phase)) {
      // Nothing to resume, and nothing journaled: an ended upgrade's journal ends with its end.
      say(endedUpgrade(plan.name, events.at(-1), this.o.planFile ?? '<plan>'));
      return this.phase;
    } else {
      say(`resuming upgrade ${plan.name} from phase ${this.phase}`);
      await this.record(this.phase, 'resumed', { pid: process.pid });
    }
    const conversion = await loadConversion(plan.conversion);
    this.fence = new Fence(
      this.dbs.old,
      plan.switchover.fencing.mode,
      plan.switchover.fencing.role,
      Object.keys(conversion.tables),
    );
    if (this.o.abort !== undefined) return this.abortStopped(this.o.abort, events);
    if (this.phase === 'aborting') return this.abort('resumed an interrupted abort');
    if (this.phase === 'switching') await this.recoverSwitch(events);
    else if (this.phase === 'switched') this.committed = true;
    if (this.current === 'switched' && events.some((e) => e.event === 'finishing'))
      return this.completeFinish();

    // Before anything is started: a source table that cannot be captured is refused now, not after a
    // new app was started that the refusal would leave running (the capture checks again).
    // The same for the targets: one without a primary key is refused now; missing ones (the new app
    // may create its schema when it starts) are checked once it is up, before the copy.
    let targetsPending = false;
    if (before(this.current, 'copying')) {
      await checkSourceTables(this.dbs.old, Object.keys(conversion.tables), plan.capture.replicaIdentityFull);
      targetsPending = (await this.checkTargets(conversion, 'later')).pending;
    }
    let app = lastDetail<NewApp>(events, 'provisioned');
    if (!before(this.current, 'switching')) {
      // The new app serves the clients now: never restarted, never replaced; a slow or failing one is
      // reported (a restart would cut the requests it is serving, and lose writes in flight).
      if (!app)
        throw new ImagoError(
          `the journal records no provisioned new app although the upgrade is ${this.current}`,
          plan.name,
        );
      if (!(await healthyWithin(app.url, appHealth(plan.new.app), 5_000)).healthy) {
        say(`warning: the new app at ${app.url} does not answer its health check; it is not restarted`);
        await this.record(this.current, 'app-unhealthy', { ...app });
      }
      await this.ensureUpstreams(app);
    } else if (before(this.current, 'copying') || !app) app = await this.provision(events);
    else if (!(await healthyWithin(app.url, appHealth(plan.new.app), 5_000)).healthy)
      app = await this.provision(events);
    else await this.ensureUpstreams(app);
    if (targetsPending) {
      const started = app.pid;
      // A refusal leaves nothing running that the driver started (a resume provisions again).
      await this.checkTargets(conversion, 'refuse').catch(async (err: unknown) => {
        if (started !== undefined) {
          say(`stopping the new app (pid ${started}): the new database cannot take the conversion`);
          await stopDetachedApp(started);
        }
        throw err;
      });
    }

    const converter = new Converter({
      sourceUrl: this.dbs.old,
      targetUrl: this.dbs.new,
      conversion,
      name: plan.name,
      ...conversionSettings(plan, this.dbs.old, say),
    });
    this.converter = converter;
    converter.onApplied(this.lateWrites.observe);
    this.lateWrites.onLateWrite((w) => {
      say(`late write after the fence: ${Object.keys(w.tables).join(', ')} at ${w.commitTime} (${w.lsn})`);
      void this.record(this.current, 'late-write', { ...w }).catch(() => {});
    });
    const committed = lastDetail<{ fenceLsn?: string }>(events, 'switch-commit');
    if (this.current === 'switched' && committed?.fenceLsn)
      this.lateWrites.arm(parseLsnText(committed.fenceLsn));

    const prepared = before(this.current, 'ready')
      ? await converter.prepare(say)
      : // From ready on the targets hold everything converted so far: never emptied (neverReset throws).
        await converter.prepare(say, { neverReset: true });
    if (!prepared.resumed && !before(this.current, 'ready'))
      throw new ImagoError(
        `the conversion cannot resume from its checkpoint in phase ${this.current}`,
        plan.name,
        'the slot or the checkpoint is gone; the copy is not started over from ready on',
      );
    if (!prepared.resumed || before(this.current, 'streaming')) {
      if (this.current !== 'copying') await this.record('copying', 'copying');
      const started = performance.now();
      const copied = await converter.copy((p) => {
        say(`  copy ${p.table}: ${p.rows} rows`);
        void this.journal.heartbeat({ phase: 'copying', copy: p }).catch(() => {});
      });
      await this.record('copying', 'copied', {
        ...copied,
        ms: Math.round(performance.now() - started),
        // The copy was done before the restart (nothing copied now): its figures, from the checkpoint.
        ...(prepared.resumed ? { resumed: true, rows: converter.conversionStats().copiedRows } : {}),
      });
    }
    await converter.startStreaming((err) => {
      this.streamFailure = err;
      this.wake();
    });
    if (before(this.current, 'streaming')) await this.record('streaming', 'streaming');
    this.heartbeat = setInterval(() => void this.beat().catch(() => {}), 1_000);
    if (this.current === 'streaming') await this.record('testing', 'testing');
    if (plan.runtimeTest.required && before(this.current, 'switching')) {
      // Latencies measured while v2's tables have no statistics would be judged by the gate
      // (statistics.ts). Waited for a minute at most: commands are served only after this.
      say('waiting for the new database’s planner statistics (ANALYZE) before the runtime test');
      await withDeadline('the ANALYZE after the copy', converter.statisticsReady(), 60_000).catch(() =>
        say('  still analyzing after 60 s: the runtime test starts anyway (the precheck waits for it)'),
      );
      const { required: _required, collector, ...config } = plan.runtimeTest;
      this.runtimeTest = await RemoteRuntimeTest.start({
        config,
        conversion: converter,
        newAppUrl: app.url,
        oldUrls: 'url' in plan.old.app ? [plan.old.app.url] : [],
        reportFile: reportPath(plan.stateDir, plan.name),
        collector,
        say,
      });
      // Forced: a node may still ship to the collector of a driver that ran before this one.
      await this.runtimeTest.mirrorOn(this.nodes, true);
    } else if (this.current === 'testing') {
      await this.record('ready', 'gate-passed', { runtimeTest: 'not required' });
    }
    await this.ensureRoute(this.current === 'switched' ? 'new' : 'old');
    say(`upgrade ${plan.name} is ${this.current}; new universe at ${app.url}`);
    return this.commandLoop(app);
  }

  private get current(): Phase {
    return this.phase ?? 'planned';
  }

  private async record(
    phase: Phase,
    event: string,
    detail: Record<string, unknown> = {},
  ): Promise<JournalEvent> {
    if (!phaseMoveAllowed(this.phase, phase, this.committed))
      throw new ImagoError(
        `refusing to move upgrade ${this.plan.name} from ${this.phase ?? 'nothing'} to ${phase} (${event})`,
        event,
        this.committed ? 'a COMMIT is in the journal: the switch stands' : undefined,
      );
    const e = await this.journal.append(phase, event, detail);
    this.phase = phase;
    if (event === 'switch-commit') this.committed = true;
    if (this.o.crashAfter === event) process.kill(process.pid, 'SIGKILL');
    return e;
  }

  /** The target tables' checks (preflight.ts); their narrowing warnings are said. */
  private async checkTargets(
    conversion: Conversion,
    missing: 'refuse' | 'later',
  ): Promise<{ pending: boolean }> {
    const { warnings, pending } = await checkTargetTables(
      this.dbs.old,
      this.dbs.new,
      conversion,
      missing,
      this.o.plan.capture.replicaIdentityFull,
    );
    if (!pending) for (const w of warnings) this.o.say(`warning: ${w}`);
    return { pending };
  }

  /** Starts (or checks) the new app; before `copying` it is the provisioning phase, later the phase stays. */
  private async provision(events: JournalEvent[]): Promise<NewApp> {
    const { plan, say } = this.o;
    if (!before(this.current, 'switching'))
      throw new ImagoError(`the new app is not provisioned again in phase ${this.current}`, plan.name);
    const phase: Phase = before(this.current, 'copying') ? 'provisioning' : this.current;
    await this.record(phase, 'provisioning');
    const spec = plan.new.app;
    let app: NewApp;
    if ('url' in spec) {
      const answer = await healthyWithin(spec.url, appHealth(spec), 5_000);
      if (!answer.healthy)
        throw new ImagoError(
          `the new app does not answer its health check: ${answer.seen}`,
          spec.url,
          'start it, or set new.app.healthPath and healthStatus to what it answers when up; then run imago start again',
        );
      app = { url: spec.url };
    } else {
      for (const pid of startedPids(events)) await stopDetachedApp(pid);
      const env = Object.fromEntries(
        Object.entries(spec.env).map(([k, v]) => [k, fillPlaceholders(v, this.dbs)]),
      );
      const started = await startDetachedApp({
        command: spec.command,
        env,
        cwd: spec.cwd ?? plan.baseDir,
        health: appHealth(spec),
        logDir: join(plan.stateDir, plan.name),
        secrets: databasePasswords(this.dbs),
        // Journaled before the health wait: a driver killed meanwhile still knows what to stop.
        onSpawn: async (pid) => void (await this.record(phase, 'app-starting', { pid })),
      });
      say(`new universe's app started (pid ${started.pid}) at ${started.url}; log ${started.logFile}`);
      app = { url: started.url, pid: started.pid };
    }
    for (const node of this.nodes) {
      const state = await node.state(2_000);
      await node.setUpstreams(state.epoch, 'new', [app.url], 2_000);
    }
    await this.record(phase, 'provisioned', { ...app });
    return app;
  }

  /** Waits for commands until the upgrade is finished or aborted. */
  private async commandLoop(app: NewApp): Promise<Phase> {
    await this.journal.listen('imago_control', () => this.wake());
    let autoTried = false;
    for (;;) {
      if (this.streamFailure) {
        await this.record(this.current, 'error', { message: errorMessage(this.streamFailure) });
        // One the user must fix (a row the new database refuses) keeps its own subject and hint.
        if (this.streamFailure instanceof ImagoError) throw this.streamFailure;
        throw new ImagoError(
          `the change stream failed: ${errorMessage(this.streamFailure)}`,
          this.plan.name,
          'fix the cause and run imago start again: it resumes from the checkpoint',
        );
      }
      const command = await this.journal.take();
      if (command) {
        await this.record(this.current, 'command', { id: command.id, command: command.command });
        const result = await this.execute(command, app).catch((err: unknown) => {
          // The COMMIT may or may not be in the journal: only a recovery reading it may decide.
          if (err instanceof CommitInDoubtError) throw err;
          return { ok: false, error: errorMessage(err) };
        });
        await this.journal.complete(command.id, { ...result, phase: this.current });
      } else if (this.current === 'testing' && (await this.gateOpened())) {
        continue;
      } else if (
        this.plan.switchover.auto &&
        this.current === 'ready' &&
        !autoTried &&
        // After a restart in `ready` the evidence is gathered afresh: auto waits for the gate again.
        (this.runtimeTest?.gate().pass ?? true)
      ) {
        autoTried = true;
        await this.switch();
      } else if (this.redriver.dueInMs() === 0) {
        await this.redrive();
      } else {
        // Woken by a NOTIFY or a stream failure; the timer covers a lost notification and re-sends.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(1_000, this.redriver.dueInMs()));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      if (isTerminal(this.phase)) return this.current;
    }
  }

  private async execute(command: Command, app: NewApp): Promise<Record<string, unknown>> {
    switch (command.command) {
      case 'switch': {
        if (this.current === 'switched') return { ok: true, switched: true, already: true };
        const force = command.args.force === true;
        let forced = false;
        if (this.current === 'testing') {
          const verdict = this.runtimeTest?.gate();
          if (verdict && !verdict.pass) {
            if (!force)
              return {
                ok: false,
                error: `the runtime-test gate is closed: ${verdict.reasons.join('; ')}`,
                gate: verdict,
                hint: 'wait for more evidence (imago report), fix the new version, or imago switch --force',
              };
            await this.record('ready', 'gate-forced', { command: command.id, reasons: verdict.reasons });
            forced = true;
          } else await this.gateOpened();
        }
        if (this.current !== 'ready') return { ok: false, error: `cannot switch in phase ${this.current}` };
        return { ok: true, ...(await this.switch(force, forced)) };
      }
      case 'abort':
        if (this.current === 'switched')
          return {
            ok: false,
            error:
              'already switched: the new universe has taken writes the old one lacks; rollback needs the reverse stream',
          };
        await this.abort(String(command.args.reason ?? 'imago abort'), app);
        return { ok: true, aborted: true };
      case 'finish':
        if (this.current !== 'switched')
          return { ok: false, error: `cannot finish in phase ${this.current}: switch first` };
        // The intent first: a driver killed while the capture is being dropped completes the finish
        // on resume, instead of resuming a stream whose slot is gone.
        await this.record('switched', 'finishing');
        await this.converter?.stop({ dropCapture: true });
        this.converter = undefined;
        await this.record('finished', 'finished', { lateWrites: this.lateWrites.writes().length });
        return { ok: true, finished: true };
      default:
        return { ok: false, error: `unknown command ${command.command}` };
    }
  }

  /**
   * In `testing`: moves to `ready` once the gate holds (journaled with the evidence), and keeps every
   * node mirroring. True when the phase moved.
   */
  private async gateOpened(): Promise<boolean> {
    const rt = this.runtimeTest;
    if (!rt) return false;
    const verdict = rt.gate();
    if (!verdict.pass) {
      // Progress, not a flood: said when the reasons change, at most every few seconds.
      const reasons = verdict.reasons.join('; ');
      if (reasons !== this.lastGate.reasons && performance.now() - this.lastGate.at > GATE_SAY_EVERY_MS) {
        this.o.say(`runtime-test gate closed: ${reasons}`);
        this.lastGate = { reasons, at: performance.now() };
      }
      // A node that restarted comes back without its sink: checked every few seconds, not every tick.
      if (performance.now() - this.mirrorCheckedAt > MIRROR_CHECK_EVERY_MS) {
        this.mirrorCheckedAt = performance.now();
        await rt.mirrorOn(this.nodes);
      }
      return false;
    }
    const { endpoints, compared, gate } = rt.summary();
    await this.record('ready', 'gate-passed', { runtimeTest: 'passed', compared, endpoints, gate });
    this.o.say(`runtime-test gate passed: ${compared} reads compared`);
    return true;
  }

  private async stopRuntimeTest(): Promise<void> {
    const rt = this.runtimeTest;
    this.runtimeTest = undefined;
    if (!rt) return;
    await rt.mirrorOff(this.nodes);
    await rt.close().catch((err: unknown) => this.o.say(`runtime test: ${errorMessage(err)}`));
  }

  /** `force`: past a closed gate (journaled as gate-forced, unless `forcedAlready` for this command). */
  private async switch(force = false, forcedAlready = false): Promise<Record<string, unknown>> {
    const converter = this.converter;
    if (!converter) throw new Error('no conversion running');
    const plan = this.plan;
    // The evidence is in (the precheck judges it): comparing during the pause would compete with the
    // protocol for this process. Mirroring resumes if the switch does not happen.
    await this.runtimeTest?.mirrorOff(this.nodes);
    const result = await runSwitchover({
      nodes: this.nodes,
      converter,
      fence: this.fence,
      budget: plan.switchover,
      lateWrites: this.lateWrites,
      // Evaluated again at precheck: evidence gathered since `ready` counts (a regression seen late).
      gate: async () => {
        const verdict = this.runtimeTest?.gate();
        if (!verdict || verdict.pass) return undefined;
        if (!force) return verdict.reasons.join('; ');
        if (!forcedAlready) await this.record(this.current, 'gate-forced', { reasons: verdict.reasons });
        return undefined;
      },
      // Fault injection between protocol steps (IMAGO_CRASH_AFTER=step:<step>), for the crash tests.
      beforeStep: (step) => {
        if (this.o.crashAfter === `step:${step}`) process.kill(process.pid, 'SIGKILL');
      },
      journal: {
        record: async (event, detail) =>
          void (await this.record(SWITCH_EVENT_PHASE[event] ?? this.current, event, detail)),
        committed: (epoch) => this.commitStored(epoch),
      },
      log: this.o.say,
    });
    if (result.held) this.redrive_(result.unconfirmed, result.switched ? 'new' : 'old', result.releaseEpoch);
    // The new universe serves now: copies would go to the old one, which is not what is tested.
    if (result.switched) await this.stopRuntimeTest();
    else await this.runtimeTest?.mirrorOn(this.nodes, true);
    return { ...result };
  }

  /** Reads the journal on a fresh connection (the driver's own may be what failed): is COMMIT there? */
  private async commitStored(epoch: number): Promise<boolean> {
    const journal = await Journal.open(this.dbs.control, this.plan.name);
    try {
      const stored = (await journal.events()).some(
        (e) => e.event === 'switch-commit' && e.detail.epoch === epoch,
      );
      if (stored) {
        this.committed = true;
        this.phase = 'switching';
      }
      return stored;
    } finally {
      await journal.close();
    }
  }

  /** Hands the nodes that did not confirm a decision to the redriver (re-sent by the command loop). */
  private redrive_(unconfirmed: string[], route: 'old' | 'new', epoch: number): void {
    const nodes = this.nodes.filter((n) => unconfirmed.includes(n.name));
    this.redriver.set(nodes, route, epoch);
    if (nodes.length > 0)
      this.o.say(`nodes ${unconfirmed.join(', ')} did not confirm ${route}: re-sending until they do`);
  }

  private async redrive(): Promise<void> {
    const confirmed = await this.redriver.tick();
    if (confirmed.length > 0)
      await this.record(this.current, 'nodes-confirmed', {
        route: this.redriver.route,
        epoch: this.redriver.epoch,
        nodes: confirmed,
        unconfirmed: this.redriver.unconfirmed,
      });
  }

  /**
   * Mid-switch after a restart: the journal decides (DESIGN.md: a COMMIT stands, anything else aborts).
   * An abort journaled after a COMMIT of the same epoch wins: the protocol writes one only when the
   * COMMIT write failed and a re-read did not find it, so such a COMMIT landed too late to count.
   */
  private async recoverSwitch(events: JournalEvent[]): Promise<void> {
    const prepareAt = events.findLastIndex((e) => e.event === 'switch-prepare');
    const after = events.slice(prepareAt);
    const prepare = events[prepareAt]?.detail as { epoch?: number; fence?: FenceRecord } | undefined;
    const d = this.plan.switchover.deadlines;
    const epoch = (await this.maxEpoch(prepare?.epoch ?? 0)) + 1;
    const commitAt = after.findLastIndex((e) => e.event === 'switch-commit');
    const commit = after[commitAt];
    const overruled =
      commit !== undefined &&
      after
        .slice(commitAt + 1)
        .some((e) => e.event === 'switch-abort' && e.detail.epoch === commit.detail.epoch);
    if (commit && !overruled) {
      this.committed = true;
      this.o.say('the driver stopped after COMMIT: flipping every node to the new universe');
      const r = await releaseAll(this.nodes, epoch, 'new', d.commitMs);
      await this.record('switched', 'switched', { epoch, recovered: true, unconfirmed: r.unconfirmed });
      this.redrive_(r.unconfirmed, 'new', epoch);
      return;
    }
    this.o.say('the driver stopped during a switch before COMMIT: aborting it');
    if (!after.some((e) => e.event === 'switch-abort'))
      await this.record('switching', 'switch-abort', {
        epoch,
        reason: 'driver restarted before COMMIT',
        recovered: true,
      });
    // A fence that cannot be lifted must not keep the nodes holding: reported, and released anyway.
    if (prepare?.fence)
      await this.fence.lift(prepare.fence).catch(async (e: unknown) => {
        this.o.say(`could not lift the fence: ${errorMessage(e)}`);
        await this.record('switching', 'fence-lift-failed', { error: errorMessage(e), fence: prepare.fence });
      });
    const r = await releaseAll(this.nodes, epoch, 'old', d.commitMs);
    await this.record('ready', 'switch-aborted', { epoch, recovered: true, unconfirmed: r.unconfirmed });
    this.redrive_(r.unconfirmed, 'old', epoch);
  }

  /** Brings every node to `route`, not holding, with a fresh epoch (only nodes that differ). */
  private async ensureRoute(route: 'old' | 'new'): Promise<void> {
    if (route === 'old' && !this.mayGoBack())
      throw new ImagoError(
        `refusing to send the nodes back to the old universe in phase ${this.current}`,
        route,
      );
    const states = await Promise.all(this.nodes.map((n) => n.state(2_000).catch(() => undefined)));
    const off = this.nodes.filter((_, i) => {
      const s = states[i];
      return !s || s.route !== route || s.holding;
    });
    if (off.length === 0) return;
    const epoch = (await this.maxEpoch(0)) + 1;
    const r = await releaseAll(off, epoch, route, this.plan.switchover.deadlines.commitMs);
    await this.record(this.current, 'nodes-realigned', {
      route,
      epoch,
      nodes: off.map((n) => n.name),
      unconfirmed: r.unconfirmed,
    });
    this.redrive_(r.unconfirmed, route, epoch);
  }

  /** Brings every node's `new` upstreams to the app (a node restarted without them could not flip). */
  private async ensureUpstreams(app: NewApp): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        try {
          const state = await node.state(2_000);
          const urls = state.upstreams?.new ?? [];
          if (urls.length === 1 && urls[0] === app.url) return;
          await node.setUpstreams(state.epoch, 'new', [app.url], 2_000);
          await this.record(this.current, 'upstreams-set', { node: node.name, url: app.url });
        } catch (err) {
          this.o.say(`could not set the new universe's upstream on ${node.name}: ${errorMessage(err)}`);
        }
      }),
    );
  }

  /** Resumed after `finishing` was journaled: the stream is not resumed (its slot may be gone). */
  private async completeFinish(): Promise<Phase> {
    this.o.say('the driver stopped while finishing: dropping the capture and finishing');
    await this.ensureRoute('new');
    await dropCapture(this.dbs.old, this.plan.name);
    await this.record('finished', 'finished', { recovered: true });
    return 'finished';
  }

  private async maxEpoch(floor: number): Promise<number> {
    const states = await Promise.all(this.nodes.map((n) => n.state(2_000).catch(() => undefined)));
    return Math.max(floor, ...states.map((s) => s?.epoch ?? 0));
  }

  /** Whether the old universe may serve again: no COMMIT in the journal, and a phase before one. */
  private mayGoBack(): boolean {
    return !this.committed && beforeCommit(this.current);
  }

  /** Aborts with no command loop: what the journal says was left running is stopped and dropped. */
  private async abortStopped(reason: string, events: JournalEvent[]): Promise<Phase> {
    if (this.phase === 'switching') await this.recoverSwitch(events);
    if (!this.mayGoBack())
      throw new ImagoError(
        `upgrade ${this.plan.name} is ${this.current}: it can no longer be aborted`,
        this.plan.name,
        'a COMMIT is in the journal and the new universe serves the clients; `imago start` resumes the driver, `imago finish` completes the upgrade',
      );
    return this.abort(reason, lastDetail<NewApp>(events, 'provisioned'));
  }

  private async abort(reason: string, app?: NewApp): Promise<Phase> {
    await this.record('aborting', 'aborting', { reason });
    await this.stopRuntimeTest();
    if (this.converter) await this.converter.stop({ dropCapture: true });
    else {
      // No converter (resumed mid-abort, or aborted after a crash): the capture on the old database
      // may still be there, and the new schema may lack the indexes an unfinished copy deferred.
      await dropCapture(this.dbs.old, this.plan.name);
      await restoreDeferred(this.dbs.new).catch((err: unknown) =>
        this.o.say(`warning: could not rebuild the indexes the copy deferred: ${errorMessage(err)}`),
      );
    }
    this.converter = undefined;
    await this.ensureRoute('old');
    const events = await this.journal.events();
    const pids = new Set(startedPids(events));
    if (app?.pid) pids.add(app.pid);
    for (const pid of pids) await stopDetachedApp(pid);
    await this.record('aborted', 'aborted', { reason });
    return 'aborted';
  }

  private async beat(): Promise<void> {
    await this.journal.heartbeat({
      phase: this.current,
      conversion: this.converter?.conversionStats(),
      ...(this.runtimeTest ? { runtimeTest: this.runtimeTest.stats() } : {}),
      lateWrites: this.lateWrites.writes().length,
    });
  }
}

/**
 * The detached apps that may still run: the last one provisioned and any spawned after it (an earlier
 * one was stopped when a later one was provisioned; its pid may belong to another process by now).
 */
function startedPids(events: JournalEvent[]): number[] {
  const from = Math.max(
    0,
    events.findLastIndex((e) => e.event === 'provisioned'),
  );
  const pids = new Set<number>();
  for (const e of events.slice(from))
    if ((e.event === 'app-starting' || e.event === 'provisioned') && typeof e.detail.pid === 'number')
      pids.add(e.detail.pid);
  return [...pids];
}

/** What `imago start` says of an upgrade that ended: when, and for an aborted one how to begin again. */
function endedUpgrade(upgrade: string, last: JournalEvent | undefined, planFile: string): string {
  if (last?.phase === 'aborted')
    return `upgrade ${upgrade} was aborted at ${last.at}; to begin again: imago start ${planFile} --fresh`;
  return `upgrade ${upgrade} finished at ${last?.at ?? 'an unknown time'}; there is nothing to resume`;
}

function lastDetail<T>(events: JournalEvent[], event: string): T | undefined {
  return events.findLast((e) => e.event === event)?.detail as T | undefined;
}

function planHash(plan: UpgradePlan): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex').slice(0, 16);
}

function parseLsnText(text: string): bigint {
  const [hi = '0', lo = '0'] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** The plan's capture settings as Converter options: consent, parallelism, WAL limits, throttle signals. */
function conversionSettings(plan: UpgradePlan, oldUrl: string, say: (line: string) => void) {
  const { capture } = plan;
  const signals: ThrottleSignal[] = [];
  if (capture.throttleCommand) signals.push(commandSignal(capture.throttleCommand));
  if (capture.throttleMaxActiveSessions !== undefined) {
    signals.push(activeSessionsSignal(oldUrl, capture.throttleMaxActiveSessions));
  }
  return {
    replicaIdentityFull: capture.replicaIdentityFull,
    parallel: capture.parallel,
    wal: { warnBytes: capture.walWarnMb * 1024 * 1024, limitBytes: capture.walLimitMb * 1024 * 1024 },
    onWarning: (message: string) => say(`warning: ${message}`),
    ...(signals.length
      ? {
          throttle: new Throttler(signals, {
            onChange: (s) => say(s.throttled ? `copy throttled: ${s.reason}` : 'copy resumes'),
          }),
        }
      : {}),
  };
}
