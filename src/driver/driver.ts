/**
 * The upgrade driver: runs a plan through planned → provisioning → copying → streaming → testing →
 * ready → switching → switched → finished (or aborting → aborted), journaling every step before
 * acting on it, so that a driver killed at any moment and started again resumes where it was:
 * - before `copying` finished: the conversion resumes or restarts its copy cleanly (Converter.prepare);
 * - streaming onwards: the conversion resumes from its checkpoint on the same slot;
 * - mid-switch: a COMMIT in the journal is carried out (every node flips), anything else aborts
 *   (fence lifted from the journaled record, every node released to the old universe);
 * - ready / switched: every node is brought back to the journal's route (a node that was cut off
 *   learns the outcome this way).
 * Commands (`switch`, `abort`, `finish`) arrive through the journal's command queue.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Converter } from '../conversion/converter.js';
import { loadConversion } from '../conversion/load-module.js';
import { ImagoError, errorMessage } from '../errors.js';
import type { UpgradePlan } from '../plan/index.js';
import {
  Fence,
  IngressNode,
  LateWriteDetector,
  releaseAll,
  runSwitchover,
  type FenceRecord,
} from '../switchover/index.js';
import { provideDatabases, type Databases } from './databases.js';
import { Journal, type Command, type JournalEvent } from './journal.js';
import { healthy, startDetachedApp, stopDetachedApp } from './new-app.js';
import { SWITCH_EVENT_PHASE, before, isTerminal, type Phase } from './phases.js';

export interface DriverOptions {
  plan: UpgradePlan;
  say: (line: string) => void;
  /** Fault injection (tests, benches): the driver SIGKILLs itself right after journaling this event. */
  crashAfter?: string;
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
      await this.converter?.stop().catch(() => {});
      await this.journal.close();
    }
  }

  private async drive(): Promise<Phase> {
    const { plan, say } = this.o;
    const events = await this.journal.events();
    this.phase = events.at(-1)?.phase;
    if (this.phase === undefined) {
      await this.record('planned', 'planned', {
        planHash: planHash(plan),
        nodes: this.nodes.map((n) => n.name),
      });
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
    if (isTerminal(this.phase)) return this.phase as Phase;
    if (this.phase === 'aborting') return this.abort('resumed an interrupted abort');
    if (this.phase === 'switching') await this.recoverSwitch(events);

    let app = lastDetail<NewApp>(events, 'provisioned');
    if (before(this.current, 'copying') || !app) app = await this.provision(events);
    else if (!(await healthy(app.url, healthPath(plan)))) app = await this.provision(events);

    const converter = new Converter({
      sourceUrl: this.dbs.old,
      targetUrl: this.dbs.new,
      conversion,
      name: plan.name,
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

    const prepared = (await converter.prepare()) as { resumed?: boolean };
    if (!prepared.resumed || before(this.current, 'streaming')) {
      if (this.current !== 'copying') await this.record('copying', 'copying');
      const started = performance.now();
      const copied = await converter.copy((p) => {
        say(`  copy ${p.table}: ${p.rows} rows`);
        void this.journal.heartbeat({ phase: 'copying', copy: p }).catch(() => {});
      });
      await this.record('copying', 'copied', { ...copied, ms: Math.round(performance.now() - started) });
    }
    await converter.startStreaming((err) => {
      this.streamFailure = err;
      this.wake();
    });
    if (before(this.current, 'streaming')) await this.record('streaming', 'streaming');
    this.heartbeat = setInterval(() => void this.beat().catch(() => {}), 1_000);
    if (this.current === 'streaming') await this.record('testing', 'testing');
    if (this.current === 'testing') {
      // The runtime test (mirror, differ, verdicts) is its own role; until it lands, the gate is the plan's.
      await this.record('ready', 'gate-passed', {
        runtimeTest: plan.runtimeTest.required ? 'required' : 'not required',
      });
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
    const e = await this.journal.append(phase, event, detail);
    this.phase = phase;
    if (this.o.crashAfter === event) process.kill(process.pid, 'SIGKILL');
    return e;
  }

  private async provision(events: JournalEvent[]): Promise<NewApp> {
    const { plan, say } = this.o;
    await this.record('provisioning', 'provisioning');
    const spec = plan.new.app;
    let app: NewApp;
    if ('url' in spec) {
      if (!(await healthy(spec.url, '/healthz')))
        throw new ImagoError(
          'the new app does not answer its health check',
          spec.url,
          'start it, then run imago start again',
        );
      app = { url: spec.url };
    } else {
      const previous = lastDetail<NewApp>(events, 'provisioned');
      if (previous?.pid) await stopDetachedApp(previous.pid);
      const env = Object.fromEntries(
        Object.entries(spec.env).map(([k, v]) => [
          k,
          v.replaceAll('{{new.database}}', this.dbs.new).replaceAll('{{old.database}}', this.dbs.old),
        ]),
      );
      const started = await startDetachedApp({
        command: spec.command,
        env,
        cwd: spec.cwd ?? plan.baseDir,
        healthPath: spec.healthPath,
        logDir: join(plan.stateDir, plan.name),
      });
      say(`new universe's app started (pid ${started.pid}) at ${started.url}; log ${started.logFile}`);
      app = { url: started.url, pid: started.pid };
    }
    for (const node of this.nodes) {
      const state = await node.state(2_000);
      await node.setUpstreams(state.epoch, 'new', [app.url], 2_000);
    }
    await this.record('provisioning', 'provisioned', { ...app });
    return app;
  }

  /** Waits for commands until the upgrade is finished or aborted. */
  private async commandLoop(app: NewApp): Promise<Phase> {
    await this.journal.listen('imago_control', () => this.wake());
    let autoTried = false;
    for (;;) {
      if (this.streamFailure) {
        await this.record(this.current, 'error', { message: errorMessage(this.streamFailure) });
        throw new ImagoError(
          `the change stream failed: ${errorMessage(this.streamFailure)}`,
          this.plan.name,
          'fix the cause and run imago start again: it resumes from the checkpoint',
        );
      }
      const command = await this.journal.take();
      if (command) {
        await this.record(this.current, 'command', { id: command.id, command: command.command });
        const result = await this.execute(command, app).catch((err: unknown) => ({
          ok: false,
          error: errorMessage(err),
        }));
        await this.journal.complete(command.id, { ...result, phase: this.current });
      } else if (this.plan.switchover.auto && this.current === 'ready' && !autoTried) {
        autoTried = true;
        await this.switch();
      } else {
        // Woken by a NOTIFY or a stream failure; the timer only covers a lost notification.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
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
      case 'switch':
        if (this.current === 'switched') return { ok: true, switched: true, already: true };
        if (this.current !== 'ready') return { ok: false, error: `cannot switch in phase ${this.current}` };
        return { ok: true, ...(await this.switch()) };
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
        await this.converter?.stop({ dropCapture: true });
        this.converter = undefined;
        await this.record('finished', 'finished', { lateWrites: this.lateWrites.writes().length });
        return { ok: true, finished: true };
      default:
        return { ok: false, error: `unknown command ${command.command}` };
    }
  }

  private async switch(): Promise<Record<string, unknown>> {
    const converter = this.converter;
    if (!converter) throw new Error('no conversion running');
    const plan = this.plan;
    const result = await runSwitchover({
      nodes: this.nodes,
      converter,
      fence: this.fence,
      budget: plan.switchover,
      lateWrites: this.lateWrites,
      gate: () =>
        Promise.resolve(
          plan.runtimeTest.required
            ? 'the plan requires a runtime test, which is not available yet'
            : undefined,
        ),
      // Fault injection between protocol steps (IMAGO_CRASH_AFTER=step:<step>), for the crash tests.
      beforeStep: (step) => {
        if (this.o.crashAfter === `step:${step}`) process.kill(process.pid, 'SIGKILL');
      },
      journal: {
        record: async (event, detail) =>
          void (await this.record(SWITCH_EVENT_PHASE[event] ?? this.current, event, detail)),
      },
      log: this.o.say,
    });
    return { ...result };
  }

  /** Mid-switch after a restart: the journal decides (DESIGN.md: a COMMIT stands, anything else aborts). */
  private async recoverSwitch(events: JournalEvent[]): Promise<void> {
    const prepareAt = events.findLastIndex((e) => e.event === 'switch-prepare');
    const after = events.slice(prepareAt);
    const prepare = events[prepareAt]?.detail as { epoch?: number; fence?: FenceRecord } | undefined;
    const d = this.plan.switchover.deadlines;
    const epoch = (await this.maxEpoch(prepare?.epoch ?? 0)) + 1;
    if (after.some((e) => e.event === 'switch-commit')) {
      this.o.say('the driver stopped after COMMIT: flipping every node to the new universe');
      const r = await releaseAll(this.nodes, epoch, 'new', d.commitMs);
      await this.record('switched', 'switched', { epoch, recovered: true, unconfirmed: r.unconfirmed });
      return;
    }
    this.o.say('the driver stopped during a switch before COMMIT: aborting it');
    if (!after.some((e) => e.event === 'switch-abort'))
      await this.record('switching', 'switch-abort', {
        epoch,
        reason: 'driver restarted before COMMIT',
        recovered: true,
      });
    if (prepare?.fence) await this.fence.lift(prepare.fence);
    const r = await releaseAll(this.nodes, epoch, 'old', d.commitMs);
    await this.record('ready', 'switch-aborted', { epoch, recovered: true, unconfirmed: r.unconfirmed });
  }

  /** Brings every node to `route`, not holding, with a fresh epoch (only nodes that differ). */
  private async ensureRoute(route: 'old' | 'new'): Promise<void> {
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
  }

  private async maxEpoch(floor: number): Promise<number> {
    const states = await Promise.all(this.nodes.map((n) => n.state(2_000).catch(() => undefined)));
    return Math.max(floor, ...states.map((s) => s?.epoch ?? 0));
  }

  private async abort(reason: string, app?: NewApp): Promise<Phase> {
    await this.record('aborting', 'aborting', { reason });
    if (this.converter) await this.converter.stop({ dropCapture: true });
    else {
      // Resumed mid-abort: the capture on the old database may still be there.
      const conversion = await loadConversion(this.plan.conversion);
      const c = new Converter({
        sourceUrl: this.dbs.old,
        targetUrl: this.dbs.new,
        conversion,
        name: this.plan.name,
      });
      await c.prepare().catch(() => {});
      await c.stop({ dropCapture: true });
    }
    this.converter = undefined;
    await this.ensureRoute('old');
    const events = await this.journal.events();
    const started = app ?? lastDetail<NewApp>(events, 'provisioned');
    if (started?.pid) await stopDetachedApp(started.pid);
    await this.record('aborted', 'aborted', { reason });
    return 'aborted';
  }

  private async beat(): Promise<void> {
    await this.journal.heartbeat({
      phase: this.current,
      conversion: this.converter?.conversionStats(),
      lateWrites: this.lateWrites.writes().length,
    });
  }
}

function lastDetail<T>(events: JournalEvent[], event: string): T | undefined {
  return events.findLast((e) => e.event === event)?.detail as T | undefined;
}

function healthPath(plan: UpgradePlan): string {
  return 'healthPath' in plan.new.app ? plan.new.app.healthPath : '/healthz';
}

function planHash(plan: UpgradePlan): string {
  return createHash('sha256').update(JSON.stringify(plan)).digest('hex').slice(0, 16);
}

function parseLsnText(text: string): bigint {
  const [hi = '0', lo = '0'] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}
