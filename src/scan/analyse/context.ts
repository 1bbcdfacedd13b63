import type { CredentialUsage, UsageAggregator, WorkloadTally } from "../aggregate.js";
import { timelineResolutionMs } from "../aggregate.js";
import type { Finding, WorkloadUse } from "../model.js";
import { toolchainCategory } from "../toolchain.js";

/** What every analysis may read besides the credential itself. */
export interface AnalysisContext {
  aggregate: UsageAggregator;
  /** A credential last used this long before the end of the window is reported as unused. */
  staleAfterMs: number;
}

/** One finding kind's rule: the findings it raises for one credential. */
export type Analysis = (usage: CredentialUsage, context: AnalysisContext) => Finding[];

export function workloadUse(workload: WorkloadTally): WorkloadUse {
  const use: WorkloadUse = {
    id: workload.id,
    toolchain: workload.toolchain,
    count: workload.count,
    first: workload.first,
    last: workload.last,
    actions: workload.actions.list(),
    location: workload.location,
    timeline: [...workload.perMinute.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([minute, count]) => ({ time: minute * timelineResolutionMs, count })),
  };
  if (workload.source !== undefined) use.source = workload.source;
  if (workload.repository !== undefined) use.repository = workload.repository;
  if (workload.environment !== undefined) use.environment = workload.environment;
  return use;
}

/** The workloads that ran automation (not a console or browser), busiest first. */
export function automationWorkloads(usage: CredentialUsage): WorkloadTally[] {
  return [...usage.workloads.values()]
    .filter((workload) => toolchainCategory(workload.toolchain) !== "interactive")
    .sort((a, b) => b.count - a.count);
}

/** True when a person stands behind the credential's principal. */
export function isHumanPrincipal(usage: CredentialUsage, context: AnalysisContext): boolean {
  if (usage.principalKind === "human") return true;
  return usage.principalKind === "unknown" && context.aggregate.interactivePrincipals.has(usage.principal);
}

/** Fields every finding about `usage` shares. */
export function findingBase(
  usage: CredentialUsage,
): Pick<Finding, "credential" | "naming" | "credentialKind" | "principal" | "location"> {
  return {
    credential: usage.credential,
    naming: usage.naming,
    credentialKind: usage.credentialKind,
    principal: usage.principal,
    location: usage.location,
  };
}
