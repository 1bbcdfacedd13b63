import type { PlanEntry } from "../plan.js";
import type { ScanResult } from "../scan.js";

/** The `--json` document: findings, malformed records and the plan when one was built. */
export function renderJson(result: ScanResult, plan?: PlanEntry[]): unknown {
  const { aggregate } = result;
  return {
    files: result.files.length,
    records: result.records,
    credentials: aggregate.credentials.size,
    window: {
      start: Number.isFinite(aggregate.windowStart) ? new Date(aggregate.windowStart).toISOString() : null,
      end: Number.isFinite(aggregate.windowEnd) ? new Date(aggregate.windowEnd).toISOString() : null,
    },
    findings: result.findings,
    malformed_count: result.malformedCount,
    malformed: result.malformed,
    ...(plan === undefined ? {} : { plan }),
  };
}
