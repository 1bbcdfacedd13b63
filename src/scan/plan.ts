import type { Finding, WorkloadUse } from "./model.js";

/** Finding kinds whose credential should be split into one agent per workload. */
const splitKinds = new Set([
  "shared-credential",
  "credential-outside-workload",
  "human-credential-automation",
]);

export interface PlannedTool {
  name: string;
  actions: string[];
}

export interface PlannedAgent {
  name: string;
  owner: string;
  environment: string;
  /** The workload this agent replaces the shared credential for. */
  workload: string;
  tools: PlannedTool[];
  /** Draft Cedar policy permitting exactly the observed actions. */
  policy: { id: string; text: string };
}

export interface PlanEntry {
  credential: string;
  agents: PlannedAgent[];
}

/** Lowercase name of 1 to 63 characters from `[a-z0-9._-]`, as writ's agent and tool names need. */
function slug(value: string, max = 63): string {
  const cleaned = value
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .replace(/-+$/, "");
  return (cleaned || "x").slice(0, max).replace(/[^a-z0-9]+$/, "") || "x";
}

/** An action name as writ's tool registry accepts it: letters, digits, `.`, `-`, `_`. */
function actionName(value: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return (cleaned || "call").slice(0, 128);
}

/** The tool an observed service becomes: `s3.amazonaws.com` becomes `aws-s3`. */
export function toolNameOf(service: string): string {
  const aws = /^([a-z0-9-]+)\.amazonaws\.com$/.exec(service);
  return slug(aws !== null ? `aws-${aws[1]}` : service);
}

function toolsOf(workload: WorkloadUse): PlannedTool[] {
  const byTool = new Map<string, Set<string>>();
  for (const { value } of workload.actions) {
    const space = value.indexOf(" ");
    const service = space === -1 ? "unknown" : value.slice(0, space);
    const action = space === -1 ? value : value.slice(space + 1);
    const tool = toolNameOf(service);
    const actions = byTool.get(tool) ?? new Set<string>();
    actions.add(actionName(action));
    byTool.set(tool, actions);
  }
  return [...byTool].map(([name, actions]) => ({ name, actions: [...actions].sort() }));
}

/** A Cedar string literal; names are already restricted, but quotes and backslashes stay escaped. */
function cedarString(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** One `permit` per tool, listing only the actions the workload was seen to use. */
export function draftPolicy(spiffeId: string, tools: PlannedTool[]): string {
  return tools
    .map(
      (tool) =>
        `permit (\n  principal == Agent::${cedarString(spiffeId)},\n  action in [${tool.actions
          .map((action) => `Action::${cedarString(`${tool.name}:${action}`)}`)
          .join(", ")}],\n  resource == Tool::${cedarString(tool.name)}\n);`,
    )
    .join("\n");
}

/**
 * Proposes, per shared credential, one agent per workload that used it, with the tools and actions
 * that workload used in the window, and a draft policy for them. `trustDomain` names the agents'
 * SPIFFE IDs in the drafts.
 */
export function buildPlan(
  findings: Finding[],
  options: { trustDomain: string; environment: string },
): PlanEntry[] {
  const entries = new Map<string, PlanEntry>();
  const taken = new Set<string>();
  for (const finding of findings) {
    if (!splitKinds.has(finding.kind) || entries.has(finding.credential)) continue;
    const agents: PlannedAgent[] = [];
    for (const workload of finding.workloads) {
      let name = slug(`${finding.principal.split("/")[0]}-${workload.toolchain}`, 56);
      for (let suffix = 2; taken.has(name); suffix += 1) name = `${slug(name, 56)}-${suffix}`;
      taken.add(name);
      const environment = slug(workload.environment ?? options.environment);
      const tools = toolsOf(workload);
      const spiffeId = `spiffe://${options.trustDomain}/agent/${name}`;
      agents.push({
        name,
        owner: finding.principal,
        environment,
        workload: workload.id,
        tools,
        policy: { id: `scan.${name}`, text: draftPolicy(spiffeId, tools) },
      });
    }
    if (agents.length > 0) entries.set(finding.credential, { credential: finding.credential, agents });
  }
  return [...entries.values()];
}
