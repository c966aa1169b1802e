/**
 * What a user's plan file imports as `imago/plan`: defineUpgrade and env to write the plan, and what
 * its `runtimeTest` section is written with (expectJson, the typed mapping of an intended
 * difference, and the section's types). Only these: the plan role's index also pulls in its
 * loaders, which a plan file has no use for.
 */
export { defineUpgrade, env } from './define.js';
export type { UpgradePlanInput } from './schema.js';
export { expectJson } from '../runtime-test/expected.js';
export type * from '../runtime-test/config.js';
