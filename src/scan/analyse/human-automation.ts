import { toolchainCategory } from "../toolchain.js";
import type { Analysis } from "./context.js";
import { findingBase, isHumanPrincipal, workloadUse } from "./context.js";

/**
 * A person's credential driving automation: the principal also signs in interactively, yet the
 * credential runs SDKs, infrastructure tools or CI. The automation should get its own identity.
 */
export const analyseHumanAutomation: Analysis = (usage, context) => {
  if (!isHumanPrincipal(usage, context)) return [];
  const automated = [...usage.workloads.values()].filter(
    (workload) => toolchainCategory(workload.toolchain) === "automation",
  );
  if (automated.length === 0) return [];
  const toolchains = [...new Set(automated.map((workload) => workload.toolchain))];
  return [
    {
      ...findingBase(usage),
      kind: "human-credential-automation",
      severity: usage.longLived ? "high" : "medium",
      owasp: usage.longLived ? ["NHI7"] : [],
      message: "credential {0} of person {1} drives automation: {2}",
      arguments: [usage.credential, usage.principal, toolchains.join(", ")],
      workloads: automated.map(workloadUse),
    },
  ];
};
