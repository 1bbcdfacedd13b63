import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg } from "node:os";
import { dirname } from "node:path";
import type { MetricResult } from "./metric.js";

/** The document written to `bench/results/latest.json`. */
export interface ResultsFile {
  generated_at: string;
  node: string;
  cpus: number;
  /** The processor model as the operating system reports it. */
  cpu_model: string;
  /**
   * The one-minute load average before and after the run. A start figure near or above `cpus` means
   * other processes competed for the CPU, and the figures understate what the machine can do.
   */
  load_average_1m: { start: number; end: number };
  metrics: MetricResult[];
}

/** Returns the one-minute load average, rounded to two decimals. */
export function loadAverage(): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100;
}

/**
 * Builds the results document for `metrics`, stamped with the time, the Node.js version, the CPUs and
 * the load average at the start, `loadAtStart`, and now.
 */
export function resultsFile(metrics: MetricResult[], loadAtStart: number): ResultsFile {
  return {
    generated_at: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    cpu_model: cpus()[0]?.model ?? "unknown",
    load_average_1m: { start: loadAtStart, end: loadAverage() },
    metrics,
  };
}

/** Writes the results document as JSON, creating its folder when missing. */
export async function writeResultsFile(path: string, results: ResultsFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(results, null, 2)}\n`);
}

/** Formats a number with thousands separators and at most `decimals` decimals. */
export function formatNumber(value: number, decimals = 0): string {
  return value.toLocaleString("en-US", { maximumFractionDigits: decimals });
}

/** Formats the results as a plain-text table: metric, value, unit, baseline, ratio; then any notes. */
export function formatTable(metrics: MetricResult[]): string {
  const header = ["metric", "value", "unit", "baseline", "ratio"];
  const rows = metrics.map((metric) => [
    metric.name,
    formatNumber(metric.value, 2),
    metric.unit,
    metric.baseline === undefined ? "-" : `${formatNumber(metric.baseline.value, 2)} ${metric.baseline.unit}`,
    metric.ratio === undefined ? "-" : formatNumber(metric.ratio, 3),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] as string).length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] as number))
      .join("  ")
      .trimEnd();

  const lines = [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)];
  for (const metric of metrics) {
    lines.push("");
    if (metric.baseline !== undefined) lines.push(`${metric.name} baseline: ${metric.baseline.name}`);
    if (metric.target !== undefined) lines.push(`${metric.name} target: ${metric.target}`);
    if (metric.notes !== undefined) lines.push(`${metric.name}: ${metric.notes}`);
  }
  return lines.join("\n");
}
