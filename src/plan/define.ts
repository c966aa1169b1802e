/**
 * `defineUpgrade({...})`: the typed way to write a plan in TypeScript. It only gives the editor the
 * plan's type; validation happens when Imago loads the file, the same as for YAML.
 */
import type { UpgradePlanInput } from './schema.js';

export function defineUpgrade(plan: UpgradePlanInput): UpgradePlanInput {
  return plan;
}

/** Reads an environment variable for a plan; undefined lets validation name the field that needs it. */
export function env(name: string): string {
  return process.env[name] ?? '';
}
