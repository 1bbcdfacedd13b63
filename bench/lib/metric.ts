/** A reference figure measured in the same run, against which a metric is compared. */
export interface Baseline {
  name: string;
  value: number;
  unit: string;
}

/** One row of the results: what `bench/results/latest.json` stores under `metrics`. */
export interface MetricResult {
  name: string;
  value: number;
  unit: string;
  baseline?: Baseline;
  /** `value / baseline.value`, present only with a baseline. */
  ratio?: number;
  /** The figure the project aims for, as text. */
  target?: string;
  notes?: string;
  /** Failed operations during the run; any failure makes `bench/run.ts` exit with status 1. */
  errors?: number;
  /** Supporting figures (counts, latency percentiles, CPU use) for readers of the JSON file. */
  details?: Record<string, number | string>;
}

/** A benchmark that `bench/run.ts` can run by name. */
export interface Metric {
  /** The name on the command line and in the results, in snake_case. */
  name: string;
  /** One line on what is measured, for the usage text. */
  summary: string;
  /** Runs the benchmark and resolves with its results. Rejects when it could not measure. */
  run(): Promise<MetricResult>;
}
