/**
 * The policies writ ships. Site policies are added beside them and cannot remove them: a `forbid`
 * always wins in Cedar.
 *
 * - `writ.permit_task_actions`: the token's own actions, unless the action is high-risk, which needs an
 *   explicit site `permit`.
 * - `writ.forbid_other_environment`: a task never reaches a tool of another environment.
 * - `writ.forbid_action_outside_token`: nothing the token does not name. An MCP protocol method
 *   outside the gateway's fixed list (`Action::"protocol_method"`) on a target the token grants is
 *   exempt, since no shipped policy permits it: it passes only where a site policy does.
 * - `writ.permit_breakglass`: during an approved break-glass window (`context.breakglass`, true when
 *   the token carries `breakglass_id`), the token's own actions, high-risk ones included.
 */
export const defaultPolicies: Readonly<Record<string, string>> = {
  "writ.permit_task_actions": `permit (principal, action, resource)
when { context.token_actions.contains(context.action_name) && context.risk != "high" };`,
  "writ.forbid_other_environment": `forbid (principal, action, resource)
unless { context.environment == resource.environment };`,
  "writ.forbid_action_outside_token": `forbid (principal, action, resource)
unless {
  context.token_actions.contains(context.action_name) ||
  (action == Action::"protocol_method" && context has target_granted && context.target_granted)
};`,
  "writ.permit_breakglass": `permit (principal, action, resource)
when { context.breakglass && context.token_actions.contains(context.action_name) };`,
};

/** The prefix of shipped policy ids; site policies may not use it. */
export const defaultPolicyPrefix = "writ.";
