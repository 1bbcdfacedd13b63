import { randomUUID } from "node:crypto";
import type { RequestContext } from "../../policy/engine.js";
import type { AccessTokenClaims } from "../../tokens/access-token.js";
import type { McpTargetKind } from "../../tools/mcp-config.js";
import type { Tool } from "../../tools/registry.js";
import type { GatewayBackend, TaskFacts } from "../backend.js";
import { actorChain, currentActor, principalOf, taskContext } from "../decision.js";
import type { RiskScorer } from "../risk.js";
import { matchTargets, resolvePathArgument, type McpAction } from "./match.js";

/** An authenticated MCP request: who calls, for which task, on which tool. */
export interface McpCaller {
  claims: AccessTokenClaims;
  task: TaskFacts | undefined;
  tool: Tool;
  actions: McpAction[];
  /** `TOOL:ACTION` for each action the token grants. */
  tokenActions: string[];
  /** The address the request came from: the socket's peer, never a forwarding header. */
  clientIp: string;
  /** Where relative and `~` paths in arguments resolve, as the upstream server resolves them. */
  pathBase: { cwd: string; home: string };
}

/** What was decided about one MCP message, for the audit event and the JSON-RPC error. */
export interface McpOutcome {
  decisionId: string;
  mcpMethod: string;
  /** The MCP tool or prompt name, or the resource URI. */
  target: string | null;
  action: string | null;
  policies: string[];
  errors: string[];
  riskScore: number | null;
  /** The task's initiator: a person's SPIFFE ID, a schedule, or the parent task. */
  initiator: string | null;
  reason: string;
  args: Record<string, string | number> | null;
  clientIp: string | null;
}

/** The maximum length of a target kept whole in an audit event or an error message. */
const maxRecordedTargetLength = 1024;

/** Cuts a target an agent sent so that one request cannot write megabytes into the audit log. */
export function recordedTarget(target: string): string {
  return target.length <= maxRecordedTargetLength
    ? target
    : `${target.slice(0, maxRecordedTargetLength)}…[${target.length} characters]`;
}

export function newMcpOutcome(mcpMethod: string, target: string | null): McpOutcome {
  return {
    decisionId: randomUUID(),
    mcpMethod: recordedTarget(mcpMethod),
    target: target === null ? null : recordedTarget(target),
    action: null,
    policies: [],
    errors: [],
    riskScore: null,
    initiator: null,
    reason: "",
    args: null,
    clientIp: null,
  };
}

/** Returns the actions of `kind` that the token grants, which listings show. */
export function grantedActions(caller: McpCaller, kind: McpTargetKind): McpAction[] {
  return caller.actions.filter(
    (action) =>
      action.target.kind === kind && caller.tokenActions.includes(`${caller.tool.name}:${action.name}`),
  );
}

/**
 * Decides one `tools/call`, `resources/read` or `prompts/get`: matches the action, reads its declared
 * arguments (paths resolved), and evaluates Cedar. Among several matching actions the first the
 * token names is decided, else the first, to be denied.
 */
export async function decideMcp(
  dependencies: { risk: RiskScorer; backend: GatewayBackend },
  caller: McpCaller,
  kind: McpTargetKind,
  name: string,
  callArguments: Record<string, unknown>,
  outcome: McpOutcome,
): Promise<boolean> {
  const candidates = matchTargets(caller.actions, kind, name);
  const chosen =
    candidates.find((action) => caller.tokenActions.includes(`${caller.tool.name}:${action.name}`)) ??
    candidates[0];
  if (chosen === undefined) {
    outcome.reason = `no action of the tool matches this ${kind}`;
    return false;
  }
  outcome.action = chosen.name;
  outcome.initiator = caller.task?.initiator ?? null;
  const grant = caller.claims.authorization_details?.find((detail) => detail.type === "agent_task");
  if (caller.task === undefined || grant === undefined) {
    outcome.reason = "the token names no task";
    return false;
  }
  // The MCP gateway cannot hold a call while people decide, so an action that needs approval is
  // refused rather than let through without it.
  if (chosen.approval !== undefined) {
    outcome.reason = "this action needs approval, which the MCP gateway cannot wait for";
    return false;
  }

  const context: RequestContext = {
    ...taskContext(caller.task, grant, caller.claims),
    method: outcome.mcpMethod,
    path: name,
    risk: chosen.risk,
    risk_score: dependencies.risk.score(caller.task.id, caller.tool.name),
    action_name: `${caller.tool.name}:${chosen.name}`,
    token_actions: caller.tokenActions,
  };
  outcome.riskScore = context.risk_score;
  if (chosen.args !== undefined && chosen.args.length > 0) {
    const args: Record<string, string | number> = {};
    for (const declared of chosen.args) {
      const value = callArguments[declared.name];
      if (declared.type === "long" ? !Number.isSafeInteger(value) : typeof value !== "string") {
        outcome.reason = `argument "${declared.name}" is missing or not a ${declared.type}`;
        return false;
      }
      args[declared.name] =
        declared.type === "path"
          ? await resolvePathArgument(value as string, caller.pathBase)
          : (value as string | number);
    }
    context.args = args;
    outcome.args = args;
  }

  const result = dependencies.backend.policy.evaluate({
    principal: principalOf(caller.claims),
    action: `${caller.tool.name}:${chosen.name}`,
    tool: caller.tool,
    context,
  });
  outcome.policies = result.policies;
  outcome.errors = result.errors;
  outcome.reason = result.decision === "allow" ? "permitted by policy" : "denied by policy";
  return result.decision === "allow";
}

/**
 * Appends the decision to the audit log; the message is forwarded only once this resolves. `failed`
 * follows an allow whose message was not relayed after all.
 */
export async function recordMcp(
  backend: GatewayBackend,
  claims: AccessTokenClaims | undefined,
  tool: string,
  outcome: McpOutcome,
  verdict: "allowed" | "denied" | "failed",
): Promise<void> {
  const chain = claims === undefined ? undefined : actorChain(claims);
  await backend.record({
    kind: `tool_call.${verdict}`,
    actor: chain === undefined ? "anonymous" : currentActor(chain),
    task_id: claims?.task_id ?? null,
    jti: claims?.jti ?? null,
    data: {
      decision_id: outcome.decisionId,
      decision: verdict === "denied" ? "deny" : "allow",
      reason: outcome.reason,
      initiator: outcome.initiator,
      sub: chain?.sub ?? null,
      actors: chain?.actors ?? [],
      tool,
      action: outcome.action,
      method: "POST",
      mcp_method: outcome.mcpMethod,
      path: outcome.target,
      args: outcome.args,
      policies: outcome.policies,
      errors: outcome.errors,
      risk_score: outcome.riskScore,
      jkt: claims?.cnf.jkt ?? null,
      client_ip: outcome.clientIp,
      breakglass_id: claims?.breakglass_id ?? null,
    },
  });
}

/** The Cedar action of MCP protocol methods that the gateway relays only when a site policy permits. */
export const protocolMethodAction = "protocol_method";

/**
 * Decides a protocol method outside the gateway's fixed list, such as `logging/setLevel`: the shipped
 * policies permit none, so a site policy must permit `Action::"protocol_method"` for the method
 * (`context.method`) and its target (`context.path`: a resource URI, a completion reference name, or a
 * log level). `targetGranted` says whether the token grants that target; the shipped policies forbid
 * the method otherwise, whatever a site policy permits.
 */
export function decideProtocolMethod(
  dependencies: { risk: RiskScorer; backend: GatewayBackend },
  caller: McpCaller,
  outcome: McpOutcome,
  targetGranted: boolean,
): boolean {
  const grant = caller.claims.authorization_details?.find((detail) => detail.type === "agent_task");
  if (caller.task === undefined || grant === undefined) {
    outcome.reason = "the token names no task";
    return false;
  }
  const context: RequestContext = {
    ...taskContext(caller.task, grant, caller.claims),
    method: outcome.mcpMethod,
    path: outcome.target ?? "",
    risk: "low",
    risk_score: dependencies.risk.peek(caller.task.id, caller.tool.name),
    action_name: `${caller.tool.name}:${outcome.mcpMethod}`,
    token_actions: caller.tokenActions,
    target_granted: targetGranted,
  };
  outcome.riskScore = context.risk_score;
  outcome.action = protocolMethodAction;
  const result = dependencies.backend.policy.evaluate({
    principal: principalOf(caller.claims),
    action: protocolMethodAction,
    tool: caller.tool,
    context,
  });
  outcome.policies = result.policies;
  outcome.errors = result.errors;
  outcome.reason =
    result.decision === "allow" ? "permitted by policy" : "no policy permits this protocol method";
  return result.decision === "allow";
}
