import type { Finding } from "../model.js";
import type { Analysis } from "./context.js";
import { findingBase, workloadUse } from "./context.js";

/**
 * A credential issued to one instance or pod, used outside it. The signs are more than one source
 * address or toolchain, a desktop user agent (no instance or pod runs one), or an address where an
 * unbound credential, such as a person's key, is also used. Stolen instance-profile and pod tokens
 * show this way in a log.
 */
export const analyseOutsideWorkload: Analysis = (usage, context) => {
  const findings: Finding[] = [];
  for (const [boundTo, bound] of usage.bound) {
    const sources = bound.sources.list().map((seen) => seen.value);
    const toolchains = bound.toolchains.list().map((seen) => seen.value);
    const desktop = bound.desktopAgents.list().map((seen) => seen.value);
    const sharedSources = sources.filter(
      (source) => (context.aggregate.sourceCredentials.get(source)?.size ?? 0) > 0,
    );
    let evidence: string;
    let value: string;
    let others = "";
    if (desktop.length > 0) {
      evidence = "from a desktop user agent {2}";
      value = desktop[0] as string;
    } else if (sources.length > 1 || toolchains.length > 1) {
      evidence = `from ${sources.length} source addresses and ${toolchains.length} toolchains: {2}`;
      value = [...sources, ...toolchains].join(", ");
    } else if (sharedSources.length > 0) {
      others = [...(context.aggregate.sourceCredentials.get(sharedSources[0] as string) ?? [])].join(", ");
      evidence = "from {2}, an address where {3} is also used";
      value = sharedSources[0] as string;
    } else {
      continue;
    }
    findings.push({
      ...findingBase(usage),
      location: bound.location,
      kind: "credential-outside-workload",
      severity: "critical",
      owasp: ["NHI9"],
      message: `credential {0} bound to {1} was used outside it, ${evidence}`,
      arguments: [usage.credential, boundTo, value, others],
      workloads: [...usage.workloads.values()].map(workloadUse),
    });
  }
  return findings;
};
