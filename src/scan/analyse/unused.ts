import type { Analysis } from "./context.js";
import { findingBase } from "./context.js";

const dayMs = 86_400_000;

/**
 * A credential whose last use lies long before the end of the scanned window: it is probably no
 * longer needed and should be revoked. Only credentials seen in the logs can be judged.
 */
export const analyseUnused: Analysis = (usage, context) => {
  const idleMs = context.aggregate.windowEnd - usage.last;
  if (usage.principalKind === "service" || Number.isNaN(idleMs) || idleMs < context.staleAfterMs) return [];
  return [
    {
      ...findingBase(usage),
      kind: "unused-credential",
      severity: "low",
      owasp: ["NHI1"],
      message: `credential {0} was last used {1}, ${Math.floor(idleMs / dayMs)} days before the end of the scanned logs`,
      arguments: [usage.credential, new Date(usage.last).toISOString()],
      workloads: [],
    },
  ];
};
