/**
 * The upgrade driver: the state machine from plan to finished (or aborted), its journal in the
 * control schema, crash-resume, the command queue through which `imago switch|abort|finish` reach a
 * running driver, and the dry run behind `imago plan`. It must never act before journaling what it
 * is about to do when a crash in between would leave the upgrade ambiguous (provisioned apps, fences,
 * switch decisions), and never write to the old database beyond capture and fencing.
 */
export { Driver, type DriverOptions } from './driver.js';
export { Journal, type JournalEvent } from './journal.js';
export { PHASES, type Phase } from './phases.js';
export { dryRun, type DryRun } from './dry-run.js';
export { knownDatabases, provideDatabases } from './databases.js';
export { upgradeStatus, sendCommand, NoDriverError, type UpgradeStatus } from './client.js';
export { StartOver, type StartOverPlan, type Removal } from './start-over.js';
