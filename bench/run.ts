/**
 * Runs the benchmarks: `node --import tsx bench/run.ts [metric ...]` runs the named metrics, or all
 * of them when none is named, prints a table and writes bench/results/latest.json.
 */
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { auditAppend } from "./audit-append.js";
import { gatewayAddedLatency, gatewayThroughput, revocationPropagation } from "./gateway.js";
import type { Metric, MetricResult } from "./lib/metric.js";
import { formatTable, loadAverage, resultsFile, writeResultsFile } from "./lib/report.js";
import { mcpToolsCallLatency } from "./mcp-latency.js";
import { scanThroughput } from "./scan-throughput.js";
import { tokenIssuance } from "./token-issuance.js";

/** Every metric, in the order they run. A new benchmark is one more module listed here. */
const metrics: Metric[] = [
  tokenIssuance,
  scanThroughput,
  mcpToolsCallLatency,
  gatewayAddedLatency,
  gatewayThroughput,
  revocationPropagation,
  auditAppend,
];

const resultsPath = fileURLToPath(new URL("./results/latest.json", import.meta.url));

function usage(): string {
  const width = Math.max(...metrics.map((metric) => metric.name.length));
  const lines = metrics.map((metric) => `  ${metric.name.padEnd(width)}  ${metric.summary}`);
  return ["usage: node --import tsx bench/run.ts [metric ...]", "metrics:", ...lines].join("\n");
}

function selectMetrics(names: string[]): Metric[] {
  if (names.length === 0) return metrics;
  const unknown = names.filter((name) => !metrics.some((metric) => metric.name === name));
  if (unknown.length > 0) throw new Error(`unknown metric "${unknown.join('", "')}"\n${usage()}`);
  return metrics.filter((metric) => names.includes(metric.name));
}

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  if (names.includes("--help") || names.includes("-h")) {
    console.log(usage());
    return;
  }
  const selected = selectMetrics(names);

  const loadAtStart = loadAverage();
  if (loadAtStart > availableParallelism() / 2) {
    console.error(
      `note: the load average is ${loadAtStart} on ${availableParallelism()} CPUs; other processes ` +
        "compete with the benchmark, so its figures will be low",
    );
  }
  const results: MetricResult[] = [];
  for (const metric of selected) {
    console.error(`running ${metric.name} ...`);
    results.push(await metric.run());
  }

  const document = resultsFile(results, loadAtStart);
  console.log(formatTable(results));
  console.log(
    `\nload average (1 min): ${document.load_average_1m.start} at start, ${document.load_average_1m.end} at end`,
  );
  await writeResultsFile(resultsPath, document);
  console.log(`written to ${resultsPath}`);

  const failed = results.filter((result) => (result.errors ?? 0) > 0);
  if (failed.length > 0) {
    console.error(`failed operations in: ${failed.map((result) => result.name).join(", ")}`);
    process.exitCode = 1;
  }
}

try {
  await main();
} catch (error) {
  console.error(`bench: ${(error as Error).message}`);
  process.exitCode = 1;
}
