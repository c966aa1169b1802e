/**
 * The upgrade plan: what to upgrade from and to, how to convert, which ingress nodes to switch and
 * within which budget. This role owns the plan's shape, its validation (precise, per-field errors)
 * and loading from TypeScript or YAML. It must never start, connect to or change anything: checks
 * that need the world (reachable databases, sample copy time) belong to the driver's dry run.
 */
export { defineUpgrade, env } from './define.js';
export { loadPlan, parseYamlPlan, validatePlan } from './load.js';
export type {
  UpgradePlan,
  UpgradePlanInput,
  AppSpec,
  IngressNodeSpec,
  SwitchoverSpec,
  FencingMode,
} from './schema.js';
export { fencingModes } from './schema.js';
