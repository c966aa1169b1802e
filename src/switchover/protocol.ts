/**
 * The two-phase switch across N ingress nodes (DESIGN.md, "Atomic switchover"):
 *
 *   precheck (gate; every node answers; a probe fence marker measures the catch-up time against the
 *   budget; the fence can work) → PREPARE (every node holds, acknowledging the epoch) → drain (no
 *   request in flight at the old universe on any node) → fence (old database's writes stopped) →
 *   catch-up (the conversion applied everything up to the fence LSN) → sequences → (after a move the
 *   other way: the destination database's fence lifted) → COMMIT, written to
 *   the journal first → every node flips to the new universe and releases its queue in order.
 *
 * A step past its deadline, a node that does not acknowledge, or the pause budget running out before
 * COMMIT → ABORT: the fence is lifted and every node releases to the old universe at PREPARE's epoch
 * + 1 (a node refuses a hold at or below its last release's epoch, so a late PREPARE cannot hold it
 * again). A COMMIT write that fails is settled by re-reading the journal (see recordCommit). Nothing is served
 * by both: a node dispatches nothing while it holds, and flips only after COMMIT, which is only
 * written once every node has drained. Each attempt uses a new epoch, so a delayed command from an
 * earlier attempt is refused by the nodes.
 *
 * A rollback (`direction: 'back'`, docs/rollback.md) is the same protocol the other way: it drains at
 * the new universe, fences the new database, waits for the reverse stream, commits and flips to the
 * old universe; an abort leaves the new universe serving. Its journal events are named `rollback-…`.
 */
import { DeadlineError, errorMessage } from '../errors.js';
import { withDeadline } from '../deadline.js';
import { formatLsn } from '../capture/lsn.js';
import type { SwitchoverSpec } from '../plan/index.js';
import type { Fence, FenceRecord } from './fence.js';
import type { LateWriteDetector } from './late-writes.js';
import type { IngressNode, NodeState } from './nodes.js';
import { releaseAll } from './release.js';

export type SwitchStep =
  'precheck' | 'prepare' | 'drain' | 'fence' | 'catch-up' | 'sequences' | 'unfence' | 'commit' | 'flip';

/** Forward: old → new (the switch). Back: new → old (a rollback after the switch). */
export type SwitchDirection = 'forward' | 'back';

type Universe = 'old' | 'new';
type SwitchEvent = 'refused' | 'prepare' | 'commit' | 'abort' | 'aborted' | 'done';

/** The universes and journal event names of each direction. */
const DIRECTIONS: Record<
  SwitchDirection,
  { from: Universe; to: Universe; event: (e: SwitchEvent) => string; verb: string; done: string }
> = {
  forward: {
    from: 'old',
    to: 'new',
    event: (e) => (e === 'done' ? 'switched' : `switch-${e}`),
    verb: 'switch',
    done: 'switched',
  },
  back: {
    from: 'new',
    to: 'old',
    event: (e) => (e === 'done' ? 'rolled-back' : `rollback-${e}`),
    verb: 'rollback',
    done: 'rolled back',
  },
};

/** The journal event that records a COMMIT in `direction`. */
export function commitEvent(direction: SwitchDirection): string {
  return DIRECTIONS[direction].event('commit');
}

/** Where the decision is made durable; the driver's journal, or a list in the demo and benches. */
export interface SwitchJournal {
  record(event: string, detail?: Record<string, unknown>): Promise<void>;
  /**
   * After a failed COMMIT record (`switch-commit`, `rollback-commit`): reads the journal again (on a fresh connection) and says
   * whether the COMMIT of `epoch` is there after all; throws when it cannot tell. Without it, a failed
   * COMMIT write is treated as in doubt.
   */
  committed?(epoch: number): Promise<boolean>;
}

/**
 * The COMMIT write failed and the journal could not be read to settle it: the decision may exist.
 * Nothing is released (the nodes keep holding, the fence stays); the driver's recovery decides from
 * the journal once it can read it.
 */
export class CommitInDoubtError extends Error {
  constructor(
    readonly epoch: number,
    cause: string,
  ) {
    super(
      `the outcome of COMMIT at epoch ${epoch} is unknown (${cause}): the nodes keep holding until the journal can be read`,
    );
    this.name = 'CommitInDoubtError';
  }
}

/**
 * What the switch needs from the stream into the universe it switches to: the forward conversion, or
 * for a rollback the reverse stream (its sequences are the old database's).
 */
export interface CatchUpSource {
  catchUp(timeoutMs: number): Promise<{ markerLsn: bigint; waitedMs: number }>;
  bringSequencesPast(): Promise<number>;
  /** Resolves once the new database's tables have planner statistics (the ANALYZE after the copy). */
  statisticsReady?(): Promise<void>;
}

export interface SwitchOptions {
  /** Default forward. */
  direction?: SwitchDirection;
  nodes: IngressNode[];
  converter: CatchUpSource;
  fence: Fence;
  budget: Pick<SwitchoverSpec, 'maxPauseMs' | 'maxCatchUpLagMs' | 'deadlines'>;
  journal: SwitchJournal;
  lateWrites?: LateWriteDetector;
  /**
   * The fence of the database switched to, left by the last move the other way (a rollback fences
   * the new database, a switch the old one): lifted after the catch-up and before COMMIT, so that a
   * failure to lift aborts cleanly instead of flipping clients onto a database they cannot write;
   * put back if the switch aborts after it. Its app gets no request before the flip meanwhile.
   */
  unfence?: { lift(): Promise<void>; restore(): Promise<void> };
  /** Returns why the runtime-test gate is closed, or undefined when it is open. */
  gate?: () => Promise<string | undefined>;
  /** Fault injection in tests and benches: runs before each step. */
  beforeStep?: (step: SwitchStep) => Promise<void> | void;
  log?: (line: string) => void;
}

export interface SwitchResult {
  switched: boolean;
  /** False when the precheck refused: nothing was held. */
  held: boolean;
  epoch: number;
  /** The epoch of the final release: `epoch` after COMMIT, `epoch + 1` after an abort. */
  releaseEpoch: number;
  /** First hold sent → last node released: the longest extra wait a request saw. */
  pauseMs: number;
  prepareMs: number;
  drainMs: number;
  fenceMs: number;
  catchUpMs: number;
  /** Catch-up time measured by the precheck's probe marker, before anything was held. */
  predictedCatchUpMs: number;
  heldRequests: number;
  fenceLsn?: string;
  step?: SwitchStep;
  reason?: string;
  /** Nodes that did not confirm the final release (re-driven by the driver on resume). */
  unconfirmed: string[];
}

export async function runSwitchover(o: SwitchOptions): Promise<SwitchResult> {
  const log = o.log ?? (() => {});
  const way = DIRECTIONS[o.direction ?? 'forward'];
  const d = o.budget.deadlines;
  const r: SwitchResult = {
    switched: false,
    held: false,
    epoch: 0,
    releaseEpoch: 0,
    pauseMs: 0,
    prepareMs: 0,
    drainMs: 0,
    fenceMs: 0,
    catchUpMs: 0,
    predictedCatchUpMs: 0,
    heldRequests: 0,
    unconfirmed: [],
  };
  let step: SwitchStep = 'precheck';
  let fenceRecord: FenceRecord;
  try {
    await o.beforeStep?.('precheck');
    // One deadline for the whole precheck: the statistics, then the catch-up probes share it.
    const precheckEnd = performance.now() + d.precheckMs;
    // Before the gate: the new version's queries must not be planned from empty-table guesses
    // (statistics.ts), neither for the switch nor for the latencies the gate judges.
    if (o.converter.statisticsReady)
      await withDeadline(
        'the new database’s planner statistics (the ANALYZE after the copy)',
        o.converter.statisticsReady(),
        d.precheckMs,
        'it is still running on the new database (pg_stat_progress_analyze shows it): switch again once it ends, or raise switchover.deadlines.precheckMs',
      );
    const closed = await o.gate?.();
    if (closed) throw new Error(`runtime-test gate closed: ${closed}`);
    const states = await Promise.all(o.nodes.map((n) => n.state(d.prepareMs)));
    // A node without backends for the new universe would refuse the flip (or answer 502 after it).
    const bare = o.nodes.filter((_, i) => !states[i]?.upstreams?.[way.to]?.length).map((n) => n.name);
    if (bare.length > 0) throw new Error(`no upstreams for the ${way.to} universe on ${bare.join(', ')}`);
    // Nor should it flip to backends all out of rotation (failing health checks or connections).
    const failing = o.nodes.filter((_, i) => noBackendUp(states[i], way.to)).map((n) => n.name);
    if (failing.length > 0)
      throw new Error(
        `every ${way.to}-universe backend is out of rotation (failing its health check or its connections) on ${failing.join(', ')}`,
      );
    const left = precheckEnd - performance.now();
    if (left <= 0)
      throw new DeadlineError(
        'the precheck (statistics, gate, nodes, catch-up probe)',
        d.precheckMs,
        'raise switchover.deadlines.precheckMs',
      );
    r.predictedCatchUpMs = await predictCatchUp(o.converter, o.budget.maxCatchUpLagMs, left, log);
    fenceRecord = await o.fence.plan();
    // Connected now, before anything is held: inside the pause a connect would cost tens of ms.
    await o.fence.standBy(d.prepareMs);
    r.epoch = Math.max(0, ...states.map((s) => s.epoch)) + 1;
  } catch (err) {
    r.step = step;
    r.reason = errorMessage(err);
    log(`${way.verb} refused at precheck: ${r.reason}`);
    await o.journal.record(way.event('refused'), { reason: r.reason }).catch(() => {});
    return r;
  }

  await o.journal.record(way.event('prepare'), {
    epoch: r.epoch,
    fence: fenceRecord,
    nodes: o.nodes.map((n) => n.name),
    predictedCatchUpMs: r.predictedCatchUpMs,
  });
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  /** A step's deadline, cut to what is left of the pause budget. */
  const within = (stepMs: number): number => {
    const left = o.budget.maxPauseMs - elapsed();
    if (left <= 0)
      throw new DeadlineError(`the ${way.verb} within the pause budget (maxPauseMs)`, o.budget.maxPauseMs);
    return Math.min(stepMs, left);
  };
  let fenceApplied = false;
  let unfenced = false;
  try {
    step = 'prepare';
    await o.beforeStep?.(step);
    r.held = true;
    await all(o.nodes, (n) => n.hold(r.epoch, within(d.prepareMs)));
    r.prepareMs = elapsed();

    step = 'drain';
    await o.beforeStep?.(step);
    await all(o.nodes, (n) => n.drain(way.from, within(d.drainMs)));
    r.drainMs = elapsed() - r.prepareMs;

    step = 'fence';
    await o.beforeStep?.(step);
    const fenceStarted = elapsed();
    fenceApplied = fenceRecord.mode !== 'none';
    const fenceLsn = await o.fence.apply(fenceRecord, within(d.fenceMs));
    r.fenceMs = elapsed() - fenceStarted;
    r.fenceLsn = formatLsn(fenceLsn);
    o.lateWrites?.arm(fenceLsn);

    step = 'catch-up';
    await o.beforeStep?.(step);
    // The marker is written after the fence LSN: once it is applied, applied ≥ fence LSN.
    const caughtUp = await o.converter.catchUp(within(d.catchUpMs));
    r.catchUpMs = caughtUp.waitedMs;

    step = 'sequences';
    await o.beforeStep?.(step);
    await withDeadline(
      'bringing sequences past converted values',
      o.converter.bringSequencesPast(),
      within(d.catchUpMs),
    );

    if (o.unfence) {
      step = 'unfence';
      await o.beforeStep?.(step);
      // Set first: a lift cut short by its deadline may have happened all the same.
      unfenced = true;
      await withDeadline(`lifting the ${way.to} database's fence`, o.unfence.lift(), within(d.fenceMs));
    }

    step = 'commit';
    await o.beforeStep?.(step);
    within(d.commitMs);
    // The decision exists once it is in the journal; a driver that dies after this line flips on resume.
    await recordCommit(o.journal, way.event('commit'), r.epoch, r.fenceLsn, log);
  } catch (err) {
    // In doubt: neither flip nor release (either could contradict the journal); recovery decides.
    if (err instanceof CommitInDoubtError) throw err;
    o.lateWrites?.disarm();
    r.step = step;
    r.reason = errorMessage(err);
    await o.journal.record(way.event('abort'), { epoch: r.epoch, step, reason: r.reason }).catch(() => {});
    if (fenceApplied)
      await o.fence
        .lift(fenceRecord)
        .catch((e: unknown) => log(`could not lift the fence: ${errorMessage(e)}`));
    if (unfenced)
      await o.unfence
        ?.restore()
        .catch((e: unknown) => log(`could not fence the ${way.to} database again: ${errorMessage(e)}`));
    // A higher epoch than PREPARE's: a hold of this attempt arriving late is refused by the nodes.
    r.releaseEpoch = r.epoch + 1;
    const released = await releaseAll(o.nodes, r.releaseEpoch, way.from, d.commitMs);
    r.pauseMs = elapsed();
    r.heldRequests = released.released;
    r.unconfirmed = released.unconfirmed;
    await o.journal
      .record(way.event('aborted'), {
        epoch: r.epoch,
        releaseEpoch: r.releaseEpoch,
        pauseMs: r.pauseMs,
        unconfirmed: r.unconfirmed,
      })
      .catch(() => {});
    log(
      `${way.verb} aborted at ${step} after ${r.pauseMs.toFixed(1)} ms: ${r.reason}; ${r.heldRequests} held requests released to the ${way.from} universe`,
    );
    return r;
  }

  step = 'flip';
  await o.beforeStep?.(step);
  r.releaseEpoch = r.epoch;
  const released = await releaseAll(o.nodes, r.epoch, way.to, d.commitMs);
  r.pauseMs = elapsed();
  r.switched = true;
  r.heldRequests = released.released;
  r.unconfirmed = released.unconfirmed;
  await o.journal.record(way.event('done'), {
    epoch: r.epoch,
    pauseMs: r.pauseMs,
    fenceLsn: r.fenceLsn,
    unconfirmed: r.unconfirmed,
  });
  log(
    `${way.done} at epoch ${r.epoch}: paused ${r.pauseMs.toFixed(1)} ms (prepare ${r.prepareMs.toFixed(1)}, drain ${r.drainMs.toFixed(1)}, fence ${r.fenceMs.toFixed(1)}, catch-up ${r.catchUpMs} ms), ${r.heldRequests} held requests released to the ${way.to} universe`,
  );
  return r;
}

/**
 * Writes the COMMIT. If the write fails, the row may still have been stored (the server committed,
 * the answer was lost): the journal is read again to settle it. Committed → go on and flip; not there
 * → the error stands and the switch aborts (an abort journaled after a COMMIT of the same epoch wins
 * in recovery, for a COMMIT that lands after the read); cannot tell → CommitInDoubtError.
 */
async function recordCommit(
  journal: SwitchJournal,
  event: string,
  epoch: number,
  fenceLsn: string | undefined,
  log: (line: string) => void,
): Promise<void> {
  try {
    await journal.record(event, { epoch, fenceLsn });
  } catch (err) {
    if (!journal.committed) throw new CommitInDoubtError(epoch, errorMessage(err));
    let stored: boolean;
    try {
      stored = await journal.committed(epoch);
    } catch (readErr) {
      throw new CommitInDoubtError(epoch, `${errorMessage(err)}; re-reading: ${errorMessage(readErr)}`);
    }
    if (!stored) throw err;
    log(`the COMMIT write reported an error but is in the journal: going on (${errorMessage(err)})`);
  }
}

/**
 * Measures how long the stream takes to apply everything committed so far, with a probe fence marker,
 * and repeats until that time fits the budget: a lagging stream catches up between probes, so the
 * switch waits for a moment when the pause will be short instead of holding traffic and hoping.
 */
async function predictCatchUp(
  converter: CatchUpSource,
  budgetMs: number,
  deadlineMs: number,
  log: (line: string) => void,
): Promise<number> {
  const end = performance.now() + deadlineMs;
  for (;;) {
    const left = end - performance.now();
    if (left <= 0)
      throw new DeadlineError(
        `the measured catch-up time coming under maxCatchUpLagMs (${budgetMs} ms)`,
        deadlineMs,
      );
    const probe = await converter.catchUp(left);
    if (probe.waitedMs <= budgetMs) return probe.waitedMs;
    log(`precheck: catch-up took ${probe.waitedMs} ms (budget ${budgetMs} ms); measuring again`);
  }
}

/** True when a node reports its backends of `universe` and none is in rotation. */
function noBackendUp(state: NodeState | undefined, universe: Universe): boolean {
  const health = state?.backends?.[universe];
  return health !== undefined && health.length > 0 && !health.some((b) => b.up);
}

/** Runs `fn` on every node at once; any failure fails the step, naming every node that failed. */
async function all<T>(nodes: IngressNode[], fn: (n: IngressNode) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(nodes.map(fn));
  const failed = settled.flatMap((s, i) =>
    s.status === 'rejected' ? [`${nodes[i]?.name}: ${errorMessage(s.reason)}`] : [],
  );
  if (failed.length > 0) throw new Error(failed.join('; '));
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
