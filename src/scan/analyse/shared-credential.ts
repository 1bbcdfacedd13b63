import type { Analysis } from "./context.js";
import { toolchainCategory } from "../toolchain.js";
import { automationWorkloads, findingBase, isHumanPrincipal, workloadUse } from "./context.js";

/**
 * One credential used by two or more distinct automated workloads: different toolchains, source
 * addresses, repositories or environments. Console and browser use is left out, and so is a person's
 * command-line use, because a person moving between networks is not a second workload.
 */
export const analyseSharedCredential: Analysis = (usage, context) => {
  const human = isHumanPrincipal(usage, context);
  const candidates = automationWorkloads(usage).filter(
    (workload) => !human || toolchainCategory(workload.toolchain) === "automation",
  );
  // A workload without a user agent differs from another only if it ran somewhere else.
  const known = candidates;
  const workloads = known.filter(
    (workload) =>
      workload.toolchain !== "unknown" ||
      !known.some(
        (other) =>
          other !== workload &&
          other.source === workload.source &&
          other.repository === workload.repository &&
          other.environment === workload.environment,
      ),
  );
  if (workloads.length < 2) return [];
  const toolchains = new Set(workloads.map((workload) => workload.toolchain));
  return [
    {
      ...findingBase(usage),
      kind: "shared-credential",
      severity: usage.longLived ? "critical" : "high",
      owasp: usage.environments.size > 1 ? ["NHI9", "NHI8"] : ["NHI9"],
      message: `credential {0} is shared by ${workloads.length} workloads using ${toolchains.size} toolchains: {1}`,
      arguments: [usage.credential, [...toolchains].join(", ")],
      workloads: workloads.map(workloadUse),
    },
  ];
};
