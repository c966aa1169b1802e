/**
 * The atomic switch across ingress nodes and the write fencing of the old database. This role owns
 * the two-phase protocol (precheck, PREPARE, drain, fence, catch-up, COMMIT, flip; or ABORT), its
 * per-step deadlines, fencing and late-write detection. It must never decide without the journal:
 * COMMIT is recorded before any node flips, and it never sends one request to both universes (that
 * is enforced by the nodes holding until the decision).
 */
export { runSwitchover, commitEvent, CommitInDoubtError } from './protocol.js';
export type {
  SwitchOptions,
  SwitchResult,
  SwitchJournal,
  SwitchStep,
  SwitchDirection,
  CatchUpSource,
} from './protocol.js';
export { releaseAll, Redriver } from './release.js';
export { Fence, type FenceRecord } from './fence.js';
export { LateWriteDetector, type LateWrite } from './late-writes.js';
export { IngressNode, type NodeState } from './nodes.js';
export { memoryJournal } from './memory-journal.js';
