/**
 * What a user's project imports as `imago`: the conversion API (defineConversion, identity, their
 * types) and the plan's (defineUpgrade, env). `imago/conversion` and `imago/plan` give each alone.
 * The files are TypeScript: they are loaded by Imago's own process (its loader runs users'
 * conversions and plans), and type-checked by the user's editor from the same sources.
 */
export * from './conversion/api.js';
export { defineUpgrade, env } from './plan/define.js';
export type { UpgradePlanInput } from './plan/schema.js';
