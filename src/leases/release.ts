import { randomUUID } from "node:crypto";
import type { BrokerContext } from "../broker/context.js";
import { WritError } from "../errors/writ-error.js";
import { actorChain, currentActor, principalOf, taskContext } from "../gateway/decision.js";
import { getTask } from "../tasks/tasks.js";
import type { AccessTokenClaims } from "../tokens/access-token.js";
import { getTool } from "../tools/registry.js";

/** Cedar's decision on releasing a task's system credential to the caller, for the audit event. */
export interface ReleaseDecision {
  decision_id: string;
  allowed: boolean;
  /** The identity that asked: the agent, a delegate, or a person who joined the task. */
  actor: string;
  action: string;
  template: string;
  policies: string[];
  errors: string[];
  reason: string;
}

/**
 * Decides with Cedar whether the caller may receive its task's credential on `systemName`, as the
 * gateways decide a tool call. The action is the template the task's lease was made from. The
 * context carries the task, the token's actions and whether a person joined the task, and
 * `risk_score` is 0 because the broker keeps no request history.
 *
 * Throws `not_found` when the task has no active lease on the system, as reading the credential does.
 */
export async function decideCredentialRelease(
  context: BrokerContext,
  claims: AccessTokenClaims,
  systemName: string,
): Promise<ReleaseDecision> {
  const taskId = claims.task_id as string;
  const lease = await context.store.db
    .selectFrom("leases")
    .select("template")
    .where("system", "=", systemName)
    .where("task_id", "=", taskId)
    .where("state", "=", "active")
    .executeTakeFirst();
  if (lease === undefined) {
    throw new WritError("not_found", `the task has no active credential on system "${systemName}"`);
  }
  const actor = currentActor(actorChain(claims));
  const decision: ReleaseDecision = {
    decision_id: randomUUID(),
    allowed: false,
    actor,
    action: `${systemName}:${lease.template}`,
    template: lease.template,
    policies: [],
    errors: [],
    reason: "",
  };
  const [task, tool] = await Promise.all([getTask(context, taskId), getTool(context, systemName)]);
  const action = tool?.actions.find((entry) => entry.name === lease.template);
  const grant = claims.authorization_details?.find((detail) => detail.type === "agent_task");
  if (task === undefined || tool === undefined || action === undefined || grant === undefined) {
    decision.reason = "the task, its system or the template is gone";
    return decision;
  }
  const tokenActions = (grant.actions ?? []).map((name) => `${systemName}:${name}`);
  const result = context.policy.evaluate({
    principal: principalOf(claims),
    action: decision.action,
    tool,
    context: {
      ...taskContext(task, grant, claims),
      method: "GET",
      path: "/credentials",
      risk: action.risk,
      risk_score: 0,
      action_name: decision.action,
      token_actions: tokenActions,
    },
  });
  decision.allowed = result.decision === "allow";
  decision.policies = result.policies;
  decision.errors = result.errors;
  decision.reason = decision.allowed ? "permitted by policy" : "denied by policy";
  return decision;
}
