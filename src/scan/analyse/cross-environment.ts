import type { Analysis } from "./context.js";
import { findingBase, workloadUse } from "./context.js";

/** One credential used in more than one environment, so a leak in one reaches the others. */
export const analyseCrossEnvironment: Analysis = (usage) => {
  if (usage.environments.size < 2) return [];
  const environments = usage.environments.list().map((seen) => seen.value);
  return [
    {
      ...findingBase(usage),
      kind: "cross-environment-credential",
      severity: "high",
      owasp: ["NHI8"],
      message: `credential {0} is used in ${environments.length} environments: {1}`,
      arguments: [usage.credential, environments.join(", ")],
      workloads: [...usage.workloads.values()].map(workloadUse),
    },
  ];
};
