/**
 * `imago bench convert`: bulk copy vs a raw COPY pipe, change catch-up vs native logical replication
 * (small and large transactions), and apply lag vs native — each against its reference in the same
 * run, repeated, medians reported. See docs/benchmarks.md for recorded figures.
 */
import { startCluster } from '../universe/cluster.js';
import type { Scenario } from './scenarios.js';
import { imagoCopySeconds, parseBulkLineage, rawCopySeconds, seedBulk } from './convert-bulk.js';
import { applyLag, catchUpRates } from './convert-stream.js';
import { median } from './load.js';

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

export const convertScenario: Scenario = {
  describe: 'conversion: bulk vs COPY pipe, catch-up and lag vs native logical replication',
  async run({ out, options }) {
    // Counts: checked as options are parsed (cli/arguments.ts).
    const repetitions = Number(options.repetitions ?? 3);
    const bulkRepetitions = Number(options.bulkRepetitions ?? 7);
    const rows = Number(options.rows ?? 200_000);
    const small = Number(options.smallTransactions ?? 200_000);
    const lagSeconds = Number(options.duration ?? 5);
    const lineage = parseBulkLineage(options.lineage);
    out.say(`starting two PostgreSQL clusters (old, new)…`);
    const [oldCluster, newCluster] = await Promise.all([
      startCluster({
        name: 'bench-old',
        ephemeral: true,
        settings: { synchronous_commit: 'on', max_worker_processes: 16 },
      }),
      startCluster({ name: 'bench-new', ephemeral: true, settings: { max_worker_processes: 16 } }),
    ]);
    try {
      const bulkUrl = await seedBulk(oldCluster, rows);
      const raw: number[] = [];
      const imago: number[] = [];
      let targetRows = 0;
      // One round of both arms first, not counted: the first copy of a process runs before the JIT
      // has compiled the row path (0.2–0.3 s of a ~1 s copy of 200,000 rows; a production table's
      // copy amortises it). A bulk repetition takes seconds, so more of them cost little: single
      // ratios spread 0.35–0.64 on our shared machines, and the median of three moved with them.
      for (let i = -1; i < bulkRepetitions; i++) {
        const pipe = rows / (await rawCopySeconds(bulkUrl, newCluster, i + 1));
        const b = await imagoCopySeconds(bulkUrl, newCluster, i + 1, lineage);
        const what = i < 0 ? 'bulk warm-up' : `bulk ${i + 1}/${bulkRepetitions}`;
        out.say(
          `${what}: COPY pipe ${Math.round(pipe)} rows/s, Imago ${Math.round(rows / b.seconds)} rows/s (→ ${b.targetRows} target rows)`,
        );
        if (i < 0) continue;
        raw.push(pipe);
        imago.push(rows / b.seconds);
        targetRows = b.targetRows;
      }
      const smallRuns: { nativePerS: number; imagoPerS: number }[] = [];
      const largeRuns: { nativePerS: number; imagoPerS: number }[] = [];
      for (let i = 0; i < repetitions; i++) {
        const s = await catchUpRates(oldCluster, newCluster, `small${i}`, {
          transactions: small,
          rowsPerTransaction: 1,
        });
        smallRuns.push(s);
        const l = await catchUpRates(oldCluster, newCluster, `large${i}`, {
          transactions: 20,
          rowsPerTransaction: 10_000,
        });
        largeRuns.push(l);
        out.say(
          `catch-up ${i + 1}/${repetitions}: small txns native ${Math.round(s.nativePerS)}/s Imago ${Math.round(s.imagoPerS)}/s; ` +
            `large txns native ${Math.round(l.nativePerS)}/s Imago ${Math.round(l.imagoPerS)}/s`,
        );
      }
      const lag = await applyLag(oldCluster, newCluster, 'lag', 1000, lagSeconds);
      out.say(
        `lag at 1000 txn/s (${lag.transactions} txns): native p50 ${round(lag.native.p50)} ms p99 ${round(lag.native.p99)} ms; Imago p50 ${round(lag.imago.p50)} ms p99 ${round(lag.imago.p99)} ms`,
      );
      const ratio = (runs: { nativePerS: number; imagoPerS: number }[]) =>
        median(runs.map((r) => r.imagoPerS / r.nativePerS));
      return {
        scenario: 'convert',
        repetitions,
        bulk_repetitions: bulkRepetitions,
        rows,
        target_rows: targetRows,
        lineage,
        copy_rows_per_s: Math.round(median(raw)),
        imago_rows_per_s: Math.round(median(imago)),
        ratio_vs_copy: round(median(imago.map((v, i) => v / (raw[i] as number)))),
        // Each repetition's ratio: how far the median can be trusted on a shared machine.
        ratio_vs_copy_runs: imago.map((v, i) => round(v / (raw[i] as number))),
        native_small_per_s: Math.round(median(smallRuns.map((r) => r.nativePerS))),
        imago_small_per_s: Math.round(median(smallRuns.map((r) => r.imagoPerS))),
        ratio_vs_native_small: round(ratio(smallRuns)),
        ratio_vs_native_small_runs: smallRuns.map((r) => round(r.imagoPerS / r.nativePerS)),
        native_large_per_s: Math.round(median(largeRuns.map((r) => r.nativePerS))),
        imago_large_per_s: Math.round(median(largeRuns.map((r) => r.imagoPerS))),
        ratio_vs_native_large: round(ratio(largeRuns)),
        ratio_vs_native_large_runs: largeRuns.map((r) => round(r.imagoPerS / r.nativePerS)),
        lag_transactions: lag.transactions,
        lag_ms_p50: round(lag.imago.p50),
        lag_ms_p99: round(lag.imago.p99),
        native_lag_ms_p50: round(lag.native.p50),
        native_lag_ms_p99: round(lag.native.p99),
      };
    } finally {
      await Promise.all([oldCluster.stop(), newCluster.stop()]);
    }
  },
};
