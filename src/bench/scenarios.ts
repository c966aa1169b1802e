/**
 * Benchmark scenarios for `imago bench <scenario>`. Each compares Imago against a reference measured
 * in the same run (this machine is shared and noisy), repeats, reports medians and returns one JSON
 * object that the command prints as its last line.
 */
import type { Output } from '../cli/output.js';

export interface BenchOptions {
  out: Output;
  /** Scenario-specific options from the command line (`--repetitions 5`, `--duration 10`…). */
  options: Record<string, string | boolean | undefined>;
}

export interface Scenario {
  describe: string;
  run(opts: BenchOptions): Promise<Record<string, unknown>>;
}

export const scenarios: Record<string, () => Promise<Scenario>> = {};
scenarios.proxy = async () => (await import('./proxy.js')).proxyScenario;
scenarios.convert = async () => (await import('./convert.js')).convertScenario;
scenarios['runtime-test'] = async () => (await import('./runtime-test.js')).runtimeTestScenario;
scenarios.switchover = async () => (await import('./switchover.js')).switchoverScenario;
