import { ApiError } from "../cli/admin-client.js";
import { connect, type GlobalOptions } from "../cli/target.js";
import { draftPolicy, type PlanEntry } from "./plan.js";

/** Counts of what `applyPlan` registered. */
export interface AppliedPlan {
  agents: number;
  tools: number;
  policies: number;
}

/** Calls the API, treating `conflict` (already registered) as done, so that a re-run is harmless. */
async function createOnce(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.code === "conflict") return false;
    throw error;
  }
}

/**
 * Registers a plan through the admin API: each tool with its observed actions, each agent without a
 * key (federated, to be bound to its workload with `writ agent bind`), and each agent's policy,
 * written for the SPIFFE ID the broker assigned. Tool actions get the placeholder spec `POST /<action>`,
 * because a log shows which API action was called, not the HTTP route a gateway would match.
 */
export async function applyPlan(plan: PlanEntry[], options: GlobalOptions): Promise<AppliedPlan> {
  const target = await connect(options);
  const applied: AppliedPlan = { agents: 0, tools: 0, policies: 0 };
  try {
    // Tools are shared between agents, so each is created once with every action any agent needs.
    const tools = new Map<string, { environment: string; actions: Set<string> }>();
    for (const agent of plan.flatMap((entry) => entry.agents)) {
      for (const tool of agent.tools) {
        const merged = tools.get(tool.name) ?? { environment: agent.environment, actions: new Set<string>() };
        for (const action of tool.actions) merged.actions.add(action);
        tools.set(tool.name, merged);
      }
    }
    for (const [name, tool] of tools) {
      const created = await createOnce(() =>
        target.client.call("POST", "/v1/tools", {
          name,
          kind: "http",
          environment: tool.environment,
          actions: [...tool.actions].map((action) => ({ name: action, spec: `POST /${action}` })),
        }),
      );
      if (created) applied.tools += 1;
    }
    for (const agent of plan.flatMap((entry) => entry.agents)) {
      const created = await createOnce(() =>
        target.client.call("POST", "/v1/agents", {
          name: agent.name,
          owner: agent.owner,
          environment: agent.environment,
        }),
      );
      if (created) applied.agents += 1;
      const registered = await target.client.call<{ spiffe_id: string }>(
        "GET",
        `/v1/agents/${encodeURIComponent(agent.name)}`,
      );
      const text = draftPolicy(registered.spiffe_id, agent.tools);
      if (text === "") continue;
      if (await createOnce(() => target.client.call("POST", "/v1/policies", { id: agent.policy.id, text })))
        applied.policies += 1;
    }
  } finally {
    await target.close();
  }
  return applied;
}
