import type { Analysis } from "./context.js";
import { automationWorkloads, findingBase, workloadUse } from "./context.js";

/**
 * A credential that does not expire on its own (AWS AKIA keys, legacy service-account tokens,
 * personal access tokens and deploy keys) in use by automation. When it was in use from the start
 * to the end of the scanned window, it was also not rotated within it.
 */
export const analyseLongLived: Analysis = (usage, context) => {
  if (!usage.longLived) return [];
  const workloads = automationWorkloads(usage);
  if (workloads.length === 0) return [];
  const span = context.aggregate.windowEnd - context.aggregate.windowStart;
  const notRotated =
    span > 0 &&
    usage.first <= context.aggregate.windowStart + span * 0.1 &&
    usage.last >= context.aggregate.windowEnd - span * 0.1;
  return [
    {
      ...findingBase(usage),
      kind: "long-lived-credential",
      severity: usage.principalKind === "workload" ? "low" : "medium",
      owasp: ["NHI7"],
      message: notRotated
        ? "long-lived credential {0} ({1}) is used by automation and was not rotated within the scanned window"
        : "long-lived credential {0} ({1}) is used by automation",
      arguments: [usage.credential, usage.credentialKind],
      workloads: workloads.map(workloadUse),
    },
  ];
};
