import { isDesktopAgent, toolchainCategory } from "../toolchain.js";
import type { Analysis } from "./context.js";
import { findingBase, workloadUse } from "./context.js";

/**
 * An automation credential (role session, service account token, app token) used by a person:
 * from a console or browser, or from a command-line tool on a desktop operating system.
 */
export const analyseAutomationInteractive: Analysis = (usage) => {
  if (usage.principalKind !== "workload") return [];
  const interactive = [...usage.workloads.values()].filter((workload) => {
    const category = toolchainCategory(workload.toolchain);
    return category === "interactive";
  });
  const desktop = usage.userAgents.list().filter((seen) => isDesktopAgent(seen.value));
  if (interactive.length === 0 && desktop.length === 0) return [];
  const evidence =
    interactive.length > 0 ? interactive.map((workload) => workload.id) : desktop.map((seen) => seen.value);
  return [
    {
      ...findingBase(usage),
      kind: "automation-credential-interactive",
      severity: "high",
      owasp: ["NHI10"],
      message: "automation credential {0} was used interactively: {1}",
      arguments: [usage.credential, evidence.join(", ")],
      workloads: [...usage.workloads.values()].map(workloadUse),
    },
  ];
};
