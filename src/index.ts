/**
 * What a user's project imports as `imago`: the conversion API (defineConversion, identity, their
 * types) and the plan's (defineUpgrade, env, expectJson, the runtime test's types).
 * `imago/conversion` and `imago/plan` give each alone. The files are TypeScript: they are loaded by
 * Imago's own process (its loader runs users' conversions and plans), and type-checked by the
 * user's editor from the same sources.
 */
export * from './conversion/api.js';
export * from './plan/api.js';
