import type { UsageAggregator } from "../aggregate.js";
import { severityRank, type Finding } from "../model.js";
import { analyseAutomationInteractive } from "./automation-interactive.js";
import type { Analysis, AnalysisContext } from "./context.js";
import { analyseCrossEnvironment } from "./cross-environment.js";
import { analyseHumanAutomation } from "./human-automation.js";
import { analyseLongLived } from "./long-lived.js";
import { analyseOutsideWorkload } from "./outside-workload.js";
import { analyseSharedCredential } from "./shared-credential.js";
import { analyseUnused } from "./unused.js";

const analyses: Analysis[] = [
  analyseSharedCredential,
  analyseOutsideWorkload,
  analyseHumanAutomation,
  analyseAutomationInteractive,
  analyseLongLived,
  analyseCrossEnvironment,
  analyseUnused,
];

/** Runs every analysis over every credential; findings come most severe first. */
export function analyse(aggregate: UsageAggregator, options: { staleAfterMs: number }): Finding[] {
  const context: AnalysisContext = { aggregate, staleAfterMs: options.staleAfterMs };
  const findings = [...aggregate.credentials.values()].flatMap((usage) =>
    analyses.flatMap((analysis) => analysis(usage, context)),
  );
  return findings.sort(
    (a, b) => severityRank(b.severity) - severityRank(a.severity) || a.credential.localeCompare(b.credential),
  );
}
